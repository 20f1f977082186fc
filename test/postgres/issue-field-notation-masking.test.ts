// Regression (red-team round 9: masking). PostgreSQL calls `f(t)` for `t.f` and `f(x)` for `(x).f`
// when no column or field is named f, whatever x is (field notation). Masking planned those as a
// column that does not exist (clean) or a field of a clean value, while the call syntax `f(t)` of
// the same function was opaque (masked). A read-write grant made
// `CREATE FUNCTION g(t8) RETURNS text LANGUAGE sql AS 'SELECT string_agg(phone, ...) FROM customers'`
// (allowed: its calls are masked) and read every phone raw with `SELECT t8.g FROM t8`,
// `SELECT (t8).g FROM t8`, `SELECT ('a'::text).g` or `SELECT s.g FROM (SELECT ...) s`; a read-only
// grant did the same with any such function a DBA had made. In an open transaction the catalog's
// own connection cannot see the new function at all, so names selected with `.` count as possible
// calls until the transaction ends.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import { assertNoneOf, fixtureWithClients } from "./fixture.ts";

describe("user functions called in field notation are masked like their call syntax", () => {
	let phones: string[] = [];
	const c = fixtureWithClients({ maskRules: CORPUS_MASK_RULES }, async (fx) => {
		phones = (await fx.pg.query("SELECT phone FROM customers ORDER BY id")).rows.map((r) => r.phone as string);
		// made outside the gateway (a DBA's helper): the read-only grant only calls it
		await fx.pg.query("CREATE TABLE dba_t (a int)");
		await fx.pg.query("INSERT INTO dba_t VALUES (1)");
		await fx.pg.query("CREATE FUNCTION dba_phones(text) RETURNS text LANGUAGE sql AS $$ SELECT string_agg(phone, ',') FROM customers $$");
		await fx.pg.query("CREATE FUNCTION dba_row(dba_t) RETURNS text LANGUAGE sql AS $$ SELECT string_agg(phone, ',') FROM customers $$");
	});

	const rawFree = async (client: typeof c.ro, sql: string): Promise<void> => {
		const r = await client.query(sql);
		assert.equal(r.rows.length, 1, sql);
		assertNoneOf(phones, r.rows);
	};

	test("read-write: a function the agent made, in every field-notation form", async () => {
		await c.rw.query("CREATE TABLE t8 AS SELECT 1 AS a");
		await c.rw.query("CREATE FUNCTION g8(t8) RETURNS text LANGUAGE sql AS $$ SELECT string_agg(phone, ',') FROM customers $$");
		await c.rw.query("CREATE FUNCTION g9(text) RETURNS text LANGUAGE sql AS $$ SELECT string_agg(phone, ',') FROM customers $$");
		assert.equal((await c.rw.query("SELECT g8(t8) FROM t8")).rows[0].g8, null); // the call syntax: masked before too
		await rawFree(c.rw, "SELECT t8.g8 FROM t8");
		await rawFree(c.rw, "SELECT x.g8 FROM t8 x");
		await rawFree(c.rw, "SELECT (t8).g8 FROM t8");
		await rawFree(c.rw, "SELECT (ROW(1)::t8).g8");
		await rawFree(c.rw, "SELECT s.g8 FROM (SELECT * FROM t8) s");
		await rawFree(c.rw, "SELECT ('a'::text).g9");
		await rawFree(c.rw, `SELECT ('a'::text)."g9"`);
		// extended protocol
		const r = await c.rw.query({ text: "SELECT ($1::text).g9", values: ["a"] });
		assertNoneOf(phones, r.rows);
	});

	test("read-write: a function made in the open transaction (unseen by the catalog)", async () => {
		await c.rw.query("BEGIN");
		try {
			await c.rw.query("CREATE FUNCTION g10(text) RETURNS text LANGUAGE sql AS $$ SELECT string_agg(phone, ',') FROM customers $$");
			await rawFree(c.rw, "SELECT ('a'::text).g10");
			await c.rw.query("CREATE FUNCTION g11(dba_t) RETURNS text LANGUAGE sql AS $$ SELECT string_agg(phone, ',') FROM customers $$");
			await rawFree(c.rw, "SELECT t.g11 FROM dba_t t");
		} finally {
			await c.rw.query("ROLLBACK");
		}
	});

	test("read-only: a DBA's function", async () => {
		await rawFree(c.ro, "SELECT ('a'::text).dba_phones");
		await rawFree(c.ro, "SELECT t.dba_row FROM dba_t t");
	});

	test("columns and fields are not masked for it", async () => {
		assert.deepEqual((await c.ro.query("SELECT t.a FROM dba_t t")).rows, [{ a: 1 }]);
		// JDBC's metadata queries select fields of built-in functions' composite results
		assert.deepEqual((await c.ro.query("SELECT (information_schema._pg_expandarray(ARRAY[7])).x")).rows, [{ x: 7 }]);
		assert.deepEqual((await c.ro.query("SELECT c.name FROM customers c WHERE c.id = 1")).rows.length, 1);
		const r = await c.ro.query("SELECT t.a, t.dba_row FROM dba_t t");
		assert.equal(r.rows[0].a, 1);
		assertNoneOf(phones, r.rows);
	});
});
