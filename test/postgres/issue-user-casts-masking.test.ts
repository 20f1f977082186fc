// Regression (red-team round 12: masking). A cast runs its function where the text shows only a
// type name, and masking trusted every cast. A read-write agent, while no masking applied to it,
// made `CREATE TYPE mood AS ENUM ('a')`, `CREATE FUNCTION lf(mood) RETURNS text ... SELECT
// string_agg(phone, ',') FROM customers` and (with an admin grant since SQL round 10 reserved it)
// `CREATE CAST (mood AS text) WITH FUNCTION lf(mood)`;
// once a MaskingPolicy was merged, a read-only grant's `SELECT 'a'::mood::text` (also CAST(... AS
// text), a domain over text, `ARRAY[...]::text[]`) returned every phone raw (a DBA's cast did the
// same). A cast into a type that a cast calling a non-built-in, non-C function produces is opaque
// now; and while such a cast is implicit or assignment, which PostgreSQL calls with no cast
// written (`upper('a'::mood)`, an INSERT into a text column), every value is.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import { assertNoneOf, DEFAULT_GRANTS, fixtureWithClients, refusedMatching } from "./fixture.ts";

const CAST_SETUP = [
	"CREATE TYPE mood AS ENUM ('a')",
	"CREATE FUNCTION lf(mood) RETURNS text LANGUAGE sql AS $$ SELECT string_agg(phone, ',') FROM customers $$",
];

describe("a cast an agent made while no masking applied", () => {
	const phones: string[] = [];
	// no masking at first: the fixture's bundle has no MaskingPolicy
	const c = fixtureWithClients({}, async (fx) => {
		phones.push(...(await fx.pg.query("SELECT phone FROM customers ORDER BY id")).rows.map((r) => r.phone as string));
		await fx.pg.query("CREATE DOMAIN dtext AS text");
	});

	test("made through the gateway without masking, the cast is read through under masking", async () => {
		for (const sql of CAST_SETUP) await c.rw.query(sql);
		// CREATE CAST is an admin grant's since SQL round 10: the read-write grant is refused, the admin
		// grant (no masking applies to it yet either) makes it
		await assert.rejects(c.rw.query("CREATE CAST (mood AS text) WITH FUNCTION lf(mood)"), (e: { code?: string }) => e.code === "42501");
		await c.admin.query("CREATE CAST (mood AS text) WITH FUNCTION lf(mood)");
		// these sessions ran DDL without masking: they end when masking starts to apply (round 11)
		c.rw.on("error", () => undefined);
		c.admin.on("error", () => undefined);
		c.fx.store.update(c.fx.makeBundle(2, DEFAULT_GRANTS, { maskRules: CORPUS_MASK_RULES }));
		for (const sql of [
			"SELECT 'a'::mood::text AS v",
			"SELECT CAST('a'::mood AS text) AS v",
			"SELECT upper('a'::mood::text) AS v",
			"SELECT 'a'::mood::dtext AS v",
			"SELECT (ARRAY['a'::mood]::text[])[1] AS v",
		]) {
			const r = await c.ro.query(sql);
			assert.equal(r.rows.length, 1, sql);
			assertNoneOf(phones, r.rows);
			assertNoneOf(phones, (await c.ro.query({ text: sql, values: [] })).rows);
		}
	});

	test("the server calls the cast's function (what masking now masks)", async () => {
		const r = await c.fx.pg.query("SELECT 'a'::mood::text AS v");
		assert.ok(phones.every((p) => String(r.rows[0]!.v).includes(p)));
	});

	test("casts into other types are not affected", async () => {
		const r = await c.ro.query("SELECT id::int8 AS i, name FROM customers WHERE id = 1");
		assert.equal(r.rows[0]!.i, "1");
		assert.notEqual(r.rows[0]!.name, null);
	});
});

describe("an implicit cast calling a user function", () => {
	const phones: string[] = [];
	const c = fixtureWithClients({ maskRules: CORPUS_MASK_RULES }, async (fx) => {
		phones.push(...(await fx.pg.query("SELECT phone FROM customers ORDER BY id")).rows.map((r) => r.phone as string));
		for (const sql of CAST_SETUP) await fx.pg.query(sql);
		await fx.pg.query("CREATE CAST (mood AS text) WITH FUNCTION lf(mood) AS IMPLICIT");
		await fx.pg.query("CREATE TABLE scratch12 (id int, v text)");
		await fx.pg.query("GRANT ALL ON scratch12 TO PUBLIC");
	});

	test("a call given the type is masked", async () => {
		for (const sql of ["SELECT upper('a'::mood) AS v", "SELECT concat_ws(',', 'a'::mood) AS v"]) {
			const r = await c.ro.query(sql);
			assert.equal(r.rows.length, 1, sql);
			assertNoneOf(phones, r.rows);
		}
		const direct = await c.fx.pg.query("SELECT upper('a'::mood) AS v");
		assert.ok(phones.every((p) => String(direct.rows[0]!.v).includes(p)));
	});

	test("a write that assigns the type to a text column is refused", async () => {
		await assert.rejects(c.rw.query("INSERT INTO scratch12 VALUES (1, 'a'::mood)"), refusedMatching(/Drawbridge rule: mask:/));
		assert.equal((await c.fx.pg.query("SELECT count(*)::int AS n FROM scratch12")).rows[0]!.n, 0);
	});
});
