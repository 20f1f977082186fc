// Regression (red-team round: masking and code PostgreSQL runs where the statement shows no call).
// Through the real gateway against a real PostgreSQL with the demo masking rules (phone hashed),
// a read-write grant and a SQL function lf(id) that returns customers.phone (its own results are
// masked as an opaque function), these returned raw phone numbers:
// - a column default or generated column of a new table: `CREATE TABLE t1 (a int, b text DEFAULT
//   lf(1))`, `INSERT INTO t1 (a) VALUES (1)`, `SELECT b FROM t1`; likewise a domain's default, and
//   a generated column over an inherited masked column (`CREATE TABLE child2 (x text GENERATED ALWAYS
//   AS (phone || '') STORED) INHERITS (customers)`, then `INSERT INTO child2 SELECT * FROM customers`);
// - an operator: `CREATE OPERATOR ### (function = lf, rightarg = int)`, `SELECT ### 1` (operators
//   were not function calls to the taint analysis, also when made earlier outside the gateway);
// - a cast: `CREATE CAST (int4 AS text) WITH FUNCTION lf(int)`, `SELECT 5::text`;
// - a state function bound to an operator or aggregate: `CREATE OPERATOR ~~~ (function =
//   pg_try_advisory_lock, ...)`, `SELECT 7 ~~~ ascii(substr(phone, 1, 1))` (pg_locks), `CREATE
//   AGGREGATE leakagg(text, bool) (sfunc = set_config, ..., initcond = 'application_name')`,
//   `SELECT leakagg(phone, false)` (application_name);
// - a function created in pg_catalog (`pg_catalog.innocent`), trusted as a built-in by its schema;
// - a function created under a built-in's name in an open transaction (`lower(bigint)`), which the
//   catalog's own connection cannot see, so `lower` still looked built-in;
// - a built-in renamed: `ALTER FUNCTION query_to_xml(...) RENAME TO harmless`, whose SQL text runs
//   unmasked once its name is not the one masking knows.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { assertNoneOf, type Fixture, refusedByRule, startFixture } from "./fixture.ts";

let fx: Fixture;
let phones: string[];

before(async () => {
	fx = await startFixture({
		maskRules: CORPUS_MASK_RULES,
		grants: [
			{ name: "ro", user: "ro", access: "read-only" },
			{ name: "rw", user: "rw", access: "read-write" },
		],
	});
	phones = (await fx.pg.query("select phone from customers order by id")).rows.map((r) => r.phone as string);
	// made by someone else (a DBA, or before masking applied): only their use goes through the gateway
	for (const sql of [
		"create function lf(int) returns text language sql as 'select phone from customers where id = $1'",
		"create function lfi(int) returns text language sql immutable as 'select phone from customers where id = $1'",
		"create operator ##> (function = lf, rightarg = int)",
		"create view op_view as select ##> 2 as x",
		"create function pg_catalog.innocent(int) returns text language sql as 'select phone from customers where id = $1'",
		// an extension's operators (hstore || hstore) call C functions: `||` stays trusted
		"create extension if not exists hstore",
	]) {
		await fx.pg.query(sql);
	}
});
after(async () => {
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

const assertNoPhone = (value: unknown) => assertNoneOf(phones, value);
const refusedBy = refusedByRule;

async function rw(): Promise<pg.Client> {
	const c = await fx.connect("rw");
	c.on("error", () => undefined);
	return c;
}

test("a new table's defaults and generated columns, and a domain's default, cannot call code that reads masked columns", async () => {
	const c = await rw();
	try {
		for (const sql of [
			"CREATE TABLE t1 (a int, b text DEFAULT lf(1))",
			"CREATE TABLE t1 (a int, b text GENERATED ALWAYS AS (lfi(a)) STORED)",
			"CREATE TABLE t1 (a int, b xml DEFAULT query_to_xml('select phone from customers', true, true, ''))",
			"CREATE DOMAIN d1 AS text DEFAULT lf(2)",
		]) {
			await assert.rejects(c.query(sql), refusedBy("mask:copy-masked-data"), sql);
		}
		await c.query("CREATE DOMAIN d2 AS text DEFAULT 'none'");
		await assert.rejects(c.query("ALTER DOMAIN d2 SET DEFAULT lf(3)"), refusedBy("mask:copy-masked-data"));
		// what would have followed: nothing was created, so nothing holds a phone
		await c.query("CREATE TABLE t2 (a int, b d2)");
		await c.query("INSERT INTO t2 (a) VALUES (1)");
		assertNoPhone((await c.query("SELECT * FROM t2")).rows);
		// ordinary defaults and generated columns still work
		await c.query("CREATE TABLE t3 (a int DEFAULT 5, b text DEFAULT 'x', c timestamptz DEFAULT now(), d int GENERATED ALWAYS AS (a * 2) STORED)");
		await c.query("INSERT INTO t3 (b) VALUES ('y')");
		assert.deepEqual((await c.query("SELECT a, b, d FROM t3")).rows, [{ a: 5, b: "y", d: 10 }]);
	} finally {
		await c.end();
	}
});

test("a generated column of a new table computes from its row's masked columns only into a column masked as strongly", async () => {
	// child2.phone is masked (its parent's rule), so INSERT INTO child2 SELECT * FROM customers is
	// allowed; x, computed from phone, is named by no rule and showed raw phones.
	const c = await rw();
	try {
		await assert.rejects(
			c.query("CREATE TABLE child2 (x text GENERATED ALWAYS AS (phone || '') STORED) INHERITS (customers)"),
			refusedBy("mask:copy-masked-data"),
		);
		await c.query("CREATE TABLE child3 (x bigint GENERATED ALWAYS AS (id * 2) STORED) INHERITS (customers)");
		await c.query("INSERT INTO child3 SELECT * FROM customers WHERE id = 1");
		const r = await c.query("SELECT x, phone FROM child3");
		assertNoPhone(r.rows);
		assert.equal(r.rows[0]!.x, "2");
		await c.query("DROP TABLE child3");
	} finally {
		await c.end();
	}
});

test("operators and casts bound to a function masking cannot see are refused, and existing user operators are opaque", async () => {
	const c = await rw();
	try {
		await assert.rejects(c.query("CREATE OPERATOR ### (function = lf, rightarg = int)"), refusedBy("mask:hidden-call"));
		// a cast is server-wide state for a read-write grant (red-team round 10), before masking looks
		await assert.rejects(c.query("CREATE CAST (int4 AS text) WITH FUNCTION lf(int) AS IMPLICIT"), refusedBy("builtin:system"));
		assertNoPhone((await c.query("SELECT 5::text AS t, lower(6::text) AS l")).rows);
		// an operator made outside the gateway is a call of a function that is not a built-in
		const r = await c.query("SELECT ##> 1 AS a, (##> 2) || '' AS b, x FROM op_view");
		assertNoPhone(r.rows);
		assert.deepEqual(r.rows, [{ a: null, b: null, x: null }]); // opaque: the strongest rule (iban, null)
		// a state function bound to an operator, a cast or an aggregate gets masked values unseen
		const other = await fx.connect("ro");
		try {
			for (const sql of [
				"CREATE OPERATOR ~~~ (function = pg_try_advisory_lock, leftarg = int, rightarg = int)",
				"CREATE AGGREGATE leakagg(text, bool) (sfunc = set_config, stype = text, initcond = 'application_name')",
			]) {
				await assert.rejects(c.query(sql), refusedBy("mask:hidden-call"), sql);
			}
			await assert.rejects(c.query("CREATE CAST (bigint AS bool) WITH FUNCTION pg_try_advisory_lock(bigint)"), refusedBy("builtin:system"));
			await c.query("SELECT 7 ~~~ ascii(substr(phone, 1, 1)) FROM customers WHERE id = 1").catch(() => undefined);
			await c.query("SELECT leakagg(phone, false) FROM customers WHERE id = 1").catch(() => undefined);
			assertNoPhone((await c.query("SHOW application_name")).rows);
			assert.deepEqual((await other.query("SELECT objid FROM pg_locks WHERE locktype = 'advisory'")).rows, []);
		} finally {
			await other.end();
		}
		await c.query("CREATE AGGREGATE concat_all(text) (sfunc = textcat, stype = text, initcond = '')");
		// an operator over a built-in function is fine, and masked like the function would be
		await c.query("CREATE OPERATOR #### (function = textcat, leftarg = text, rightarg = text)");
		const s = await c.query("SELECT phone #### '' AS p, 1 + 1 AS two, name #### '!' AS n, status || '!' AS st FROM customers, orders WHERE customers.id = 1 AND orders.id = 1");
		assertNoPhone(s.rows);
		assert.equal(s.rows[0]!.two, 2);
		assert.match(String(s.rows[0]!.n), /!$/);
		assert.match(String(s.rows[0]!.st), /^[a-z]+!$/);
	} finally {
		await c.end();
	}
});

test("functions in pg_catalog, under a built-in's name or renamed are not taken for built-ins", async () => {
	const c = await rw();
	const ro = await fx.connect("ro");
	try {
		assertNoPhone((await ro.query("SELECT innocent(3) AS v")).rows);
		await assert.rejects(
			c.query("CREATE FUNCTION pg_catalog.innocent2(int) RETURNS text LANGUAGE sql AS 'select phone from customers where id = $1'"),
			refusedBy("mask:shadow"),
		);
		await c.query("BEGIN");
		await assert.rejects(
			c.query("CREATE FUNCTION lower(bigint) RETURNS text LANGUAGE sql AS 'select phone from customers where id = $1'"),
			refusedBy("mask:shadow"),
		);
		await c.query("ROLLBACK");
		await c.query("BEGIN");
		await c.query("CREATE FUNCTION lower(bigint) RETURNS text LANGUAGE sql AS 'select phone from customers where id = $1'").catch(() => undefined);
		assertNoPhone(await c.query("SELECT lower(8::bigint) AS v").then((r) => r.rows).catch(() => []));
		await c.query("ROLLBACK");
		await assert.rejects(c.query("CREATE AGGREGATE max(text) (sfunc = textcat, stype = text)"), refusedBy("mask:shadow"));
		await assert.rejects(c.query("ALTER FUNCTION query_to_xml(text, bool, bool, text) RENAME TO harmless"), refusedBy("mask:shadow"));
		await assert.rejects(c.query("ALTER FUNCTION lf(int) SET SCHEMA pg_catalog"), refusedBy("mask:shadow"));
		assertNoPhone(await c.query("SELECT harmless('select phone from customers where id = 9', true, true, '') AS v").then((r) => r.rows).catch(() => []));
		// an ordinary function is still created and called (its result is opaque, hence masked)
		await c.query("CREATE FUNCTION order_total(int) RETURNS numeric LANGUAGE sql AS 'select coalesce(sum(amount), 0) from orders where customer_id = $1'");
		assert.equal((await c.query("SELECT order_total(1) AS t")).rows.length, 1);
	} finally {
		await c.end();
		await ro.end();
	}
});
