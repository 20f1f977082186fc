// Regression (red-team round: guardrails and access levels). Functions that run SQL, or act on a
// relation, named only inside their string arguments: the classifier saw a SELECT of a function
// with constant arguments. Through the real gateway to a real PostgreSQL with contrib extensions a
// DBA commonly installs (tablefunc, xml2, pg_surgery, pageinspect):
//  - read-only grant: SELECT * FROM crosstab('select 1::text, 2::text, pg_read_file(''/etc/hostname'')')
//    read a server file (crosstab's SPI is read-only, pg_read_file is a read; the read-only upstream
//    session does not stop it);
//  - read-only grant: SELECT heap_force_kill('accounts', ARRAY['(0,1)']::tid[]) destroyed a row (the
//    read-only transaction does not stop pg_surgery);
//  - read-write grant, rule blocking DELETE of accounts: xpath_table(..., criteria => 'false; DELETE
//    FROM accounts; SELECT 1, 2') deleted every account (xml2 runs `SELECT key, doc FROM rel WHERE
//    criteria` as assembled);
//  - admin grant, rule blocking SELECT of accounts: table_to_xml('accounts', ...),
//    schema_to_xml('public', ...), crosstab('select ... from accounts') and get_raw_page('accounts', 0)
//    returned its rows.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { refusedByRule, refusedMatching, fixtureWithClients } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [{ name: "keep-accounts", action: "block", sql: { statementKinds: ["SELECT", "DELETE"], tables: ["public.accounts"] } }];

describe("SQL and relations named in function arguments meet the rules and access levels", () => {
	const c = fixtureWithClients({ guardrails: GUARDRAILS }, async (fx) => {
		await fx.pg.query("CREATE TABLE accounts (id int PRIMARY KEY, secret text NOT NULL)");
		await fx.pg.query("INSERT INTO accounts SELECT g, 'topsecret-' || g FROM generate_series(1, 5) g");
		await fx.pg.query("CREATE TABLE report (region text, month text, total int)");
		await fx.pg.query("INSERT INTO report VALUES ('north', 'jan', 1), ('north', 'feb', 2)");
		for (const ext of ["tablefunc", "xml2", "pg_surgery", "pageinspect"]) await fx.pg.query(`CREATE EXTENSION ${ext}`);
	});
	const count = async (): Promise<number> => (await c.fx.pg.query("SELECT count(*)::int AS n FROM accounts")).rows[0]!.n;

	test("read-only: crosstab's SQL text is classified (no server file read)", async () => {
		await assert.rejects(
			c.ro.query("SELECT * FROM crosstab('select 1::text, 2::text, pg_read_file(''/etc/hostname'')') AS t(a text, b text)"),
			refusedByRule("grant:read-only"),
		);
		await assert.rejects(c.ro.query("SELECT * FROM crosstab(current_query()) AS t(a text, b text)"), refusedByRule("grant:read-only"));
		// a crosstab of a constant read stays allowed
		const r = await c.ro.query("SELECT * FROM crosstab('select region, month, total from report order by 1, 2') AS t(region text, a int, b int)");
		assert.equal(r.rows.length, 1);
	});

	test("read-only: pg_surgery is refused (the read-only transaction does not stop it)", async () => {
		await assert.rejects(c.ro.query("SELECT heap_force_kill('accounts', ARRAY['(0,1)']::tid[])"), refusedByRule("grant:read-only"));
		await assert.rejects(c.ro.query("SELECT heap_force_freeze('accounts', ARRAY['(0,2)']::tid[])"), refusedByRule("grant:read-only"));
		assert.equal(await count(), 5);
	});

	test("read-write: xpath_table's assembled SQL is refused", async () => {
		await assert.rejects(
			c.rw.query("SELECT * FROM xpath_table('1', '''<a/>''', 'pg_class', '/a', 'false; DELETE FROM accounts; SELECT 1, 2') AS t(id int, x text)"),
			refusedByRule("builtin:unknown"),
		);
		await assert.rejects(c.rw.query("SELECT * FROM connectby('accounts', 'id', 'id', '1', 0) AS t(a int, b int, c int)"), refusedByRule("builtin:unknown"));
		assert.equal(await count(), 5);
	});

	test("admin: a relation named in a string meets the rule on it", async () => {
		for (const sql of [
			"SELECT table_to_xml('accounts', true, false, '')",
			"SELECT table_to_xml('Public.\"accounts\"'::regclass, true, false, '')",
			"SELECT schema_to_xml('public', true, false, '')",
			"SELECT database_to_xml(true, false, '')",
			"SELECT * FROM crosstab('select id::text, id::text, secret from accounts') AS t(a text, b text)",
			"SELECT encode(get_raw_page('accounts', 0), 'escape')",
			"SELECT heap_force_kill('accounts', ARRAY['(0,1)']::tid[])",
		]) {
			await assert.rejects(c.admin.query(sql), refusedMatching(/keep-accounts/), sql);
		}
		assert.equal(await count(), 5);
		// other tables stay readable by name
		const r = await c.admin.query("SELECT table_to_xml('report', true, false, '') AS x");
		assert.match(r.rows[0].x, /north/);
	});
});
