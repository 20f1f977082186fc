// Regression (red-team round: error text). Through the real gateway against a real PostgreSQL with
// the demo masking rules (phone hashed, email redacted; no detector knows phones), a read-only
// grant read masked values out of ErrorResponse messages:
// - a view's own WHERE is evaluated for every reader, but the plan of `SELECT id FROM v` is clean
//   (the view's WHERE is not an output), and errors after a clean RowDescription kept their text
//   unless their class was 22/23/P0/00/01/02: `CREATE VIEW v AS SELECT id FROM customers WHERE
//   quote_ident(phone)::regclass IS NOT NULL` then `SELECT id FROM v` gave 42P01 `relation
//   "+1-555-0101" does not exist`;
// - the scrub hid quoted spans and tokens holding a digit, but PostgreSQL appends some values
//   unquoted after a colon: `SELECT translate(phone, '0123456789', 'abcdefghij')::regoper` gave
//   `operator does not exist: +b-fff-abab` (the phone, digits as letters), `substr(email, 1, 5)`
//   likewise, one query per value.
// Now every error and notice is scrubbed while masking applies, except analysis errors pointing
// into the client's own text (class 42 with a position), and the scrub drops what follows `: `.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { type Fixture, startFixture } from "./fixture.ts";

let fx: Fixture;
let phone: string;
let email: string;

before(async () => {
	fx = await startFixture({
		maskRules: CORPUS_MASK_RULES,
		grants: [
			{ name: "ro", user: "ro", access: "read-only" },
			{ name: "rw", user: "rw", access: "read-write" },
		],
	});
	const r = await fx.pg.query("select phone, email from customers where id = 1");
	phone = r.rows[0]!.phone;
	email = r.rows[0]!.email;
});
after(async () => {
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

/** Every form of the phone and email a query below could print: raw, digits spelled as letters, prefixes. */
function secrets(): string[] {
	const letters = (s: string) => s.replace(/\d/g, (d) => "abcdefghij"[Number(d)]!);
	return [phone, letters(phone), phone.replace(/\D/g, ""), email, email.slice(0, 5), letters(email.split("@")[0]!)];
}

async function errorOf(c: pg.Client, sql: string): Promise<pg.DatabaseError> {
	try {
		await c.query(sql);
	} catch (e) {
		return e as pg.DatabaseError;
	}
	assert.fail(`${sql} did not fail`);
}

function assertScrubbed(e: pg.DatabaseError): void {
	const text = JSON.stringify({ m: e.message, d: e.detail, h: e.hint, w: e.where });
	for (const s of secrets()) assert.ok(!text.includes(s), `${s} leaked: ${text}`);
}

test("an error raised by a view's own WHERE does not print the masked value it met", async () => {
	const rw = await fx.connect("rw");
	const ro = await fx.connect("ro");
	try {
		await rw.query("CREATE VIEW leaky_where AS SELECT id FROM customers WHERE quote_ident(phone)::regclass IS NOT NULL");
		await rw.query("CREATE VIEW leaky_oper AS SELECT id FROM customers WHERE translate(phone, '0123456789', 'abcdefghij')::regoper IS NOT NULL");
		for (const sql of ["SELECT id FROM leaky_where", "SELECT id FROM leaky_oper", "SELECT count(*) FROM leaky_where", "SELECT o.id FROM orders o JOIN leaky_where l ON l.id = o.customer_id"]) {
			for (const c of [ro, rw]) {
				const e = await errorOf(c, sql);
				assert.match(String(e.code), /^42/, `${sql}: ${e.message}`);
				assertScrubbed(e);
			}
		}
		// the session goes on
		assert.equal((await ro.query("SELECT 1 AS one")).rows[0]!.one, 1);
	} finally {
		await ro.end();
		await rw.end();
	}
});

test("values PostgreSQL prints unquoted after a colon are scrubbed", async () => {
	const ro = await fx.connect("ro");
	try {
		for (const sql of [
			"SELECT translate(phone, '0123456789', 'abcdefghij')::regoper FROM customers WHERE id = 1",
			"SELECT translate(phone, '0123456789', 'abcdefghij')::regoperator FROM customers WHERE id = 1",
			"SELECT substr(email, 1, 5)::regoper FROM customers WHERE id = 1",
			"SELECT ('a.b.c.' || translate(split_part(email, '@', 1), '0123456789', 'abcdefghij'))::regclass FROM customers WHERE id = 1",
			"SELECT ('a.b.c.' || translate(split_part(email, '@', 1), '0123456789', 'abcdefghij'))::regconfig FROM customers WHERE id = 1",
		]) {
			const e = await errorOf(ro, sql);
			assertScrubbed(e);
		}
		// What is left is the message's template; analysis errors in the client's own text keep theirs.
		assert.match((await errorOf(ro, "SELECT substr(email, 1, 5)::regoper FROM customers WHERE id = 1")).message, /^operator does not exist: \*\*\*$/);
		assert.equal((await errorOf(ro, "SELECT no_such_column FROM orders")).message, 'column "no_such_column" does not exist');
		assert.equal((await errorOf(ro, "SELECT 1/0")).message, "division by zero");
	} finally {
		await ro.end();
	}
});
