/**
 * Red-team round 8 (masking: result formats and portals), what was tried and held: binary result
 * formats per column and for all columns (masked values stay valid wire values), composite, array
 * and jsonb results of masked columns in binary, enum and domain columns, a binary cursor fetched
 * in a simple Query, scrollable WITH HOLD cursors across COMMIT (FETCH ABSOLUTE/PRIOR/BACKWARD, MOVE),
 * a portal described twice, a named statement after DISCARD PLANS. Raw protocol client, real
 * PostgreSQL, read-only grant.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { MaskRule } from "../../gateway/config/bundle.ts";
import { DEMO_RULES } from "../../gateway/policy/corpus/catalog.ts";
import type { ServerMessage } from "../../gateway/postgres/protocol.ts";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { assertNoneOf, CONNECTION, type Fixture, startFixture } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

const RULES: MaskRule[] = [...DEMO_RULES, { name: "typed", columns: ["typed_contacts.m", "typed_contacts.e"], strategy: { type: "partial", keepLast: 2 } }];

let fx: Fixture;
let secrets: string[];

before(async () => {
	fx = await startFixture({ maskRules: RULES, grants: [{ name: "ro", user: "ro", access: "read-only" }] });
	const r = await fx.pg.query<{ email: string; phone: string; card_number: string }>("select email, phone, card_number from customers");
	secrets = r.rows.flatMap((x) => [x.email, x.phone, x.card_number]);
	await fx.pg.query("CREATE TYPE mood8 AS ENUM ('secret_mood_value')");
	await fx.pg.query("CREATE DOMAIN email8 AS text");
	await fx.pg.query("CREATE TABLE typed_contacts (id int, m mood8, e email8)");
	await fx.pg.query("INSERT INTO typed_contacts VALUES (1, 'secret_mood_value', 'domain.secret@example.org')");
	secrets.push("secret_mood_value", "domain.secret@example.org");
});
after(async () => {
	await fx?.pg.query("DROP TABLE IF EXISTS typed_contacts; DROP DOMAIN IF EXISTS email8; DROP TYPE IF EXISTS mood8").catch(() => undefined);
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

const login = async () => RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("ro"));
type DataRow = Extract<ServerMessage, { type: "dataRow" }>;
const dataRows = (ms: ServerMessage[]) => ms.filter((m): m is DataRow => m.type === "dataRow").map((m) => m.values);
function noError(ms: ServerMessage[], what: string): void {
	const e = ms.find((m) => m.type === "errorResponse");
	assert.equal(e, undefined, `${what}: ${JSON.stringify(e)}`);
}
/** No secret in any byte of any value (latin1: binary values compared byte for byte). */
function assertClean(ms: ServerMessage[], what: string): void {
	const text = dataRows(ms)
		.flat()
		.map((v) => v?.toString("latin1") ?? "");
	assertNoneOf(secrets, text);
	assert.ok(text.length > 0, `${what}: no rows`);
}
async function extended(c: RawClient, sql: string, formats: number[]): Promise<ServerMessage[]> {
	c.send(clientMessages.parse("", sql), clientMessages.bind("", "", [], formats), clientMessages.describe("P", ""), clientMessages.execute(""), clientMessages.sync());
	const ms = await c.until("readyForQuery");
	noError(ms, sql);
	return ms;
}
async function simple(c: RawClient, sql: string): Promise<ServerMessage[]> {
	c.send(clientMessages.query(sql));
	const ms = await c.until("readyForQuery");
	noError(ms, sql);
	return ms;
}

test("binary formats per column and for every column: masked values stay valid", async () => {
	const c = await login();
	try {
		const per = await extended(c, "select id, email, card_number, created from customers order by id limit 5", [1, 0, 1, 1]);
		assertClean(per, "per column");
		for (const [id, email, card, created] of dataRows(per)) {
			assert.equal(id?.length, 4);
			assert.equal(email?.toString("utf8"), "****");
			assert.match(card?.toString("utf8") ?? "", /^\*+\d{4}$/);
			assert.equal(created?.length, 8);
		}
		const all = await extended(
			c,
			"select array[email] as a, row(phone, id) as r, to_jsonb(email) as j, jsonb_build_object('e', email) as o, (email, phone)::text as t from customers order by id limit 5",
			[1],
		);
		assertClean(all, "all binary");
		// the one-byte "char" type: NULL, not a 4-byte `****` (in either format)
		for (const fmt of [0, 1]) {
			const ch = await extended(c, `select substr(email, 1, 1)::"char" as ch from customers order by id limit 3`, [fmt]);
			assert.deepEqual(dataRows(ch), [[null], [null], [null]], `"char" in format ${fmt}`);
		}
		for (const [a, r, j, o, t] of dataRows(all)) {
			assert.equal(a, null, "an array of a masked column is NULL");
			assert.equal(r, null, "a record holding a masked column is NULL");
			assert.deepEqual(j, Buffer.concat([Buffer.from([1]), Buffer.from('"****"')]), "jsonb binary: version byte and a JSON string");
			assert.deepEqual(o, Buffer.concat([Buffer.from([1]), Buffer.from('"****"')]));
			assert.equal(t?.toString("utf8"), "****");
		}
	} finally {
		c.end();
	}
});

test("enum and domain columns: text format masked as text, binary enum NULL, domain as its base type", async () => {
	const c = await login();
	try {
		const text = await extended(c, "select m, e from typed_contacts", [0]);
		assertClean(text, "text");
		assert.deepEqual(
			dataRows(text)[0]?.map((v) => v?.toString("utf8")),
			["***************ue", "***********************rg"],
		);
		const binary = await extended(c, "select m, e from typed_contacts", [1]);
		assertClean(binary, "binary");
		const desc = binary.find((m): m is Extract<ServerMessage, { type: "rowDescription" }> => m.type === "rowDescription");
		assert.equal(desc?.fields[1]?.typeOid, 25, "a domain is described as its base type");
		assert.deepEqual(
			dataRows(binary)[0]?.map((v) => v?.toString("utf8") ?? null),
			[null, "***********************rg"],
		);
	} finally {
		c.end();
	}
});

test("a binary cursor fetched in a simple Query, scrollable WITH HOLD cursors across COMMIT", async () => {
	const c = await login();
	try {
		await simple(c, "begin");
		await simple(c, "declare bc binary cursor for select email, phone from customers order by id");
		const b = await simple(c, "fetch 3 from bc");
		const desc = b.find((m): m is Extract<ServerMessage, { type: "rowDescription" }> => m.type === "rowDescription");
		assert.deepEqual(
			desc?.fields.map((f) => f.format),
			[1, 1],
		);
		assertClean(b, "binary cursor");
		await simple(c, "declare h scroll cursor with hold for select email, upper(phone) as p from customers order by id");
		await simple(c, "commit");
		for (const sql of ["fetch absolute 2 from h", "fetch prior from h", "move last in h", "fetch backward 2 from h", "fetch first from h"]) {
			const ms = await simple(c, sql);
			if (sql.startsWith("fetch")) assertClean(ms, sql);
		}
		await simple(c, "close h");
	} finally {
		c.end();
	}
});

test("a portal described twice, and a named statement after DISCARD PLANS", async () => {
	const c = await login();
	try {
		await simple(c, "begin");
		c.send(
			clientMessages.parse("n", "select email, phone || '' as p from customers order by id"),
			clientMessages.bind("p", "n"),
			clientMessages.describe("P", "p"),
			clientMessages.describe("P", "p"),
			clientMessages.execute("p", 2),
			clientMessages.sync(),
		);
		const first = await c.until("readyForQuery");
		noError(first, "describe twice");
		assertClean(first, "describe twice");
		c.send(clientMessages.describe("P", "p"), clientMessages.execute("p"), clientMessages.sync());
		const rest = await c.until("readyForQuery");
		noError(rest, "describe again, rest");
		assertClean(rest, "rest");
		await simple(c, "commit");
		await simple(c, "discard plans");
		c.send(clientMessages.bind("", "n"), clientMessages.execute(""), clientMessages.sync());
		const again = await c.until("readyForQuery");
		noError(again, "after discard plans");
		assertClean(again, "after discard plans");
	} finally {
		c.end();
	}
});
