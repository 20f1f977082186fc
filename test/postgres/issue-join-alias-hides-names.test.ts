// Regression (red-team round 10: masking). An alias on a join hides the names of the tables inside
// it (PostgreSQL documents `SELECT a.* FROM (my_table AS a JOIN your_table AS b ON ...) AS c` as
// invalid: a is not visible outside c), so a qualified name such as `a.zz` there is looked up at
// the outer query levels. Masking still found the inner a: `SELECT (SELECT a.zz || '' FROM ((SELECT
// 'x' AS zz) a JOIN (SELECT 1 AS k) b ON true) AS j) FROM (SELECT phone AS zz FROM customers) a`
// reads the outer a's zz, the phone, where the plan read the inner clean one, and a read-only grant
// got every phone raw (also the whole row `a`, `a.*`, and a `USING (...) AS u` alias inside an
// aliased join). Items inside an aliased join are no longer found by their names.
// Nor are their columns unqualified: they are reached through the join's alias under the names of
// its column list, so `((SELECT 'x' AS zz) a JOIN b ON true) AS j(p, q)` leaves no zz inside, and an
// unqualified zz is the outer one (the phone), where the plan read the inner a's clean zz.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { assertNoneOf, maskedPhonesFixture, noRawPhones } from "./fixture.ts";

describe("a join's alias hides the names inside it", () => {
	const f = maskedPhonesFixture();
	const { c, phones } = f;

	noRawPhones(
		f,
		[
			"SELECT (SELECT a.zz || '' FROM ((SELECT 'x' AS zz) a JOIN (SELECT 1 AS k) b ON true) AS j) AS v FROM (SELECT phone AS zz FROM customers) a",
			"SELECT (SELECT a.zz || '' FROM ((SELECT 'x' AS zz, 1 AS k) a JOIN (SELECT 1 AS k) b USING (k)) AS j) AS v FROM (SELECT phone AS zz FROM customers) a",
			"SELECT (SELECT a FROM ((SELECT 'x' AS zz) a JOIN (SELECT 1 AS k) b ON true) AS j)::text AS v FROM (SELECT phone AS zz FROM customers) a",
			"SELECT (SELECT a.* FROM ((SELECT 'x' AS zz) a JOIN (SELECT 1 AS k) b ON true) AS j)::text AS v FROM (SELECT phone AS zz FROM customers) a",
			"SELECT (SELECT u.zz || '' FROM (((SELECT 'x' AS zz, 1 AS k) a JOIN (SELECT 1 AS k) b USING (k) AS u) JOIN (SELECT 2 AS m) d ON true) AS j) AS v FROM (SELECT phone AS zz FROM customers) u",
			// the alias's column list renames the join's columns: no zz is left inside it
			"SELECT (SELECT zz || '' FROM ((SELECT 'x' AS zz) a JOIN (SELECT 1 AS k) b ON true) AS j(p, q)) AS v FROM (SELECT phone AS zz FROM customers) o",
			"SELECT (SELECT zz || '' FROM ((SELECT 'x' AS zz) a JOIN (SELECT 1 AS k) b ON true) AS j(p)) AS v FROM (SELECT phone AS zz FROM customers) o",
			"SELECT (SELECT zz || '' FROM ((SELECT 'x' AS zz, 1 AS k) a JOIN (SELECT 1 AS k) b USING (k)) AS j(q, p)) AS v FROM (SELECT phone AS zz FROM customers) o",
		],
		"all",
	);

	test("the server reads the outer alias", async () => {
		const r = await c.fx.pg.query(
			"SELECT (SELECT a.zz || '' FROM ((SELECT 'x' AS zz) a JOIN (SELECT 1 AS k) b ON true) AS j) AS v FROM (SELECT id, phone AS zz FROM customers) a ORDER BY a.id",
		);
		assert.deepEqual(
			r.rows.map((x) => x.v),
			phones,
		);
	});

	test("the server reads the outer column when the join's column list renames the inner one", async () => {
		const r = await c.fx.pg.query(
			"SELECT (SELECT zz || '' FROM ((SELECT 'x' AS zz) a JOIN (SELECT 1 AS k) b ON true) AS j(p, q)) AS v FROM (SELECT id, phone AS zz FROM customers) o ORDER BY o.id",
		);
		assert.deepEqual(
			r.rows.map((x) => x.v),
			phones,
		);
	});

	test("an aliased join's renamed columns keep their own masks", async () => {
		const r = await c.ro.query("SELECT j.* FROM (orders o JOIN customers c ON o.customer_id = c.id) AS j(a, b, e, d) LIMIT 5");
		assert.equal(r.rows.length, 5);
		assertNoneOf(phones, r.rows);
		const named = await c.ro.query("SELECT j.p, j.name FROM (customers a JOIN (SELECT 1 AS k) b ON true) AS j(p) WHERE j.p = 1");
		assert.deepEqual(named.rows, [{ p: 1, name: named.rows[0]?.name }]);
		assert.match(String(named.rows[0]?.name), /^[A-Z][a-z]+ [A-Z][a-z]+$/);
	});

	test("names inside a join without an alias, and an aliased join's columns, stay readable", async () => {
		const r = await c.ro.query(
			"SELECT (SELECT j.zz || zz FROM ((SELECT 'x' AS zz) a JOIN (SELECT 1 AS k) b ON true) AS j) AS v, (SELECT a.zz FROM (SELECT 'y' AS zz) a JOIN (SELECT 1 AS k) b ON true) AS w FROM customers LIMIT 1",
		);
		assert.deepEqual(r.rows, [{ v: "xx", w: "y" }]);
	});
});
