// Regression (red-team round: masked data leaving through channels other than DataRow). Through
// the real gateway against a real PostgreSQL with the demo masking rules (email redact, card keep
// last 4, iban null, phone hash):
// - advisory lock keys are listed in pg_locks: `SELECT pg_advisory_lock(id, ascii(substr(email, 1,
//   1))) FROM customers` spelled emails out to a read-only grant, one character per statement;
// - a SQL function body ran later, unseen: `CREATE FUNCTION cp() ... INSERT INTO audit_copy SELECT
//   ... phone FROM customers` then `SELECT cp()` stored phones in an unmasked table, and a function
//   passing its parameter to set_config made the server report `leak(phone)` in a ParameterStatus;
// - the built-in trigger function tsvector_update_trigger copied a masked column into a tsvector
//   column of the same row;
// - RAISE ... USING COLUMN/TABLE/CONSTRAINT = <value> filled error fields the scrub kept;
// - a keyed hash of derived values is a codebook: `substr(phone, 1, 0) || d` hashes each digit d,
//   `substr(phone, n, 1)` is then decoded character by character under a read-only grant.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { type Fixture, startFixture } from "./fixture.ts";

let fx: Fixture;
let phone: string;
let phoneDigits: string;

before(async () => {
	fx = await startFixture({
		maskRules: CORPUS_MASK_RULES,
		grants: [
			{ name: "ro", user: "ro", access: "read-only" },
			{ name: "rw", user: "rw", access: "read-write" },
			{ name: "adm", user: "adm", access: "admin" },
		],
	});
	await fx.pg.query("create table audit_copy (id int, email text, note text)");
	await fx.pg.query("alter table customers add column tsv tsvector");
	phone = (await fx.pg.query("select phone from customers where id = 1")).rows[0]!.phone;
	phoneDigits = phone.replace(/\D/g, "").slice(-4);
});
after(async () => {
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

const refused = (e: { code?: string; detail?: string; message: string }) => {
	assert.equal(e.code, "42501", e.message);
	assert.match(e.detail ?? "", /^Drawbridge rule: mask:copy-masked-data/);
	return true;
};

async function session(user: string): Promise<{ c: pg.Client; reported: string[]; notices: Record<string, unknown>[] }> {
	const c = await fx.connect(user);
	c.on("error", () => undefined);
	const reported: string[] = [];
	const notices: Record<string, unknown>[] = [];
	(c as unknown as { connection: NodeJS.EventEmitter }).connection.on("parameterStatus", (m: { parameterName: string; parameterValue: string }) => {
		reported.push(`${m.parameterName}=${m.parameterValue}`);
	});
	c.on("notice", (n) => notices.push({ ...n }));
	return { c, reported, notices };
}

test("advisory lock keys and the random seed do not carry masked values to a read-only grant", async () => {
	const { c } = await session("ro");
	const other = await fx.connect("ro");
	try {
		await assert.rejects(c.query("SELECT pg_advisory_lock(id, ascii(substr(email, 1, 1))) FROM customers WHERE id < 3"), refused);
		await assert.rejects(c.query("SELECT pg_try_advisory_xact_lock(hashtext(phone)) FROM customers"), refused);
		await assert.rejects(c.query("SELECT setseed(ascii(substr(card_number, 1, 1)) / 1000.0) FROM customers WHERE id = 1"), refused);
		const locks = await other.query("SELECT classid, objid FROM pg_locks WHERE locktype = 'advisory'");
		assert.deepEqual(locks.rows, []);
		// clean keys still work, and the masked column next to them is masked as usual
		await c.query("BEGIN");
		const r = await c.query("SELECT pg_advisory_xact_lock(id), email FROM customers WHERE id = 1");
		assert.equal(r.rows.length, 1);
		assert.doesNotMatch(String(r.rows[0]!.email), /@/);
		await c.query("COMMIT");
		await c.query("SELECT setseed(0.5)");
	} finally {
		await c.end();
		await other.end();
	}
});

test("a SQL function body cannot copy masked columns, nor pass its parameters where masking cannot follow", async () => {
	const { c, reported } = await session("rw");
	try {
		for (const sql of [
			"CREATE FUNCTION cp() RETURNS void LANGUAGE sql AS $$INSERT INTO audit_copy SELECT id, email, phone FROM customers$$",
			"CREATE FUNCTION cp2() RETURNS void LANGUAGE sql BEGIN ATOMIC INSERT INTO audit_copy SELECT id, email, phone FROM customers; END",
			"CREATE FUNCTION keep(v text) RETURNS void LANGUAGE sql AS 'INSERT INTO audit_copy (note) VALUES (v)'",
		]) {
			await assert.rejects(c.query(sql), refused);
		}
		for (const call of ["SELECT cp()", "SELECT cp2()", "SELECT keep(phone) FROM customers WHERE id = 1"]) await c.query(call).catch(() => undefined);
		const copied = await fx.pg.query("SELECT count(*)::int AS n FROM audit_copy");
		assert.equal(copied.rows[0]!.n, 0);

		await assert.rejects(c.query("CREATE FUNCTION leak(text) RETURNS text LANGUAGE sql AS $$SELECT set_config('application_name', $1, false)$$"), refused);
		await c.query("SELECT leak(phone) FROM customers WHERE id = 1").catch(() => undefined);
		assert.ok(!reported.some((p) => p.includes(phoneDigits)), reported.join(", "));

		// functions that read, or write what is not a parameter, still work
		await c.query("CREATE FUNCTION order_total(int) RETURNS numeric LANGUAGE sql AS $$SELECT coalesce(sum(amount), 0) FROM orders WHERE customer_id = $1$$");
		const total = await c.query("SELECT order_total(1) AS t");
		assert.equal(total.rows.length, 1);
		await c.query("CREATE FUNCTION note_orders() RETURNS void LANGUAGE sql AS $$INSERT INTO audit_copy (id, note) SELECT id, status FROM orders$$");
		await c.query("SELECT note_orders()");
		await fx.pg.query("DELETE FROM audit_copy");
	} finally {
		await c.end();
	}
});

test("a built-in trigger function cannot copy a masked column into another column of the row", async () => {
	const { c } = await session("rw");
	try {
		await assert.rejects(
			c.query("CREATE TRIGGER tt BEFORE INSERT OR UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION tsvector_update_trigger(tsv, 'pg_catalog.simple', phone)"),
			refused,
		);
		await c.query("UPDATE customers SET phone = phone || ' ' WHERE id = 1").catch(() => undefined);
		const r = await c.query("SELECT tsv::text AS t FROM customers WHERE id = 1");
		assert.doesNotMatch(String(r.rows[0]!.t), new RegExp(phoneDigits));
		// the same trigger over an unmasked column is fine
		await c.query("CREATE TRIGGER tn BEFORE INSERT OR UPDATE ON customers FOR EACH ROW EXECUTE FUNCTION tsvector_update_trigger(tsv, 'pg_catalog.simple', name)");
		await c.query("DROP TRIGGER tn ON customers");
	} finally {
		await c.end();
	}
});

test("RAISE cannot put a masked value in the object-name fields of a notice", async () => {
	const { c, notices } = await session("adm");
	try {
		await c.query(`DO $x$ BEGIN RAISE NOTICE 'n' USING COLUMN = (SELECT phone FROM customers WHERE id = 1),
			TABLE = (SELECT phone FROM customers WHERE id = 1), CONSTRAINT = (SELECT phone FROM customers WHERE id = 1),
			SCHEMA = (SELECT phone FROM customers WHERE id = 1), DATATYPE = (SELECT phone FROM customers WHERE id = 1); END $x$`);
		assert.equal(notices.length, 1);
		assert.doesNotMatch(JSON.stringify(notices[0]), new RegExp(phoneDigits));
	} finally {
		await c.end();
	}
});

test("a hash-masked column cannot be decoded with a codebook of derived values", async () => {
	const c = await fx.connect("ro");
	try {
		const book = await c.query("SELECT d, substr(phone, 1, 0) || d AS h FROM customers, unnest(string_to_array('0123456789+-', NULL)) d WHERE id = 1");
		const code = new Map(book.rows.map((r: { d: string; h: string }) => [r.h, r.d]));
		const chars = await c.query("SELECT n, substr(phone, n, 1) AS h FROM customers, generate_series(1, length(phone)) n WHERE id = 1 ORDER BY n");
		const decoded = chars.rows.map((r: { h: string }) => code.get(r.h) ?? "?").join("");
		assert.notEqual(decoded, phone);
		assert.ok(code.size <= 1, `distinct hashes of chosen text: ${code.size}`);
		// the column itself keeps its pseudonym (stable across rows and sessions)
		const direct = await c.query("SELECT phone FROM customers WHERE id = 1");
		assert.match(String(direct.rows[0]!.phone), /^[0-9a-f]{16}$/);
	} finally {
		await c.end();
	}
	// nor, under a read-write grant, by writing one character of it back into the column
	const w = await fx.connect("rw");
	try {
		await assert.rejects(w.query("UPDATE customers SET phone = substr(phone, 9, 1) WHERE id = 1"), refused);
		await w.query("UPDATE customers SET phone = phone WHERE id = 1");
	} finally {
		await w.end();
	}
});
