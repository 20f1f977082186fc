// Regression (red-team round 11: masking). Only tables have system columns (`xmin`, `ctid`,
// `tableoid`...); a subquery or CTE has a column of such a name only when its query names one so.
// Masking took a name of that list that an item's known columns lacked as the clean system column,
// for any item, and `oid` (an ordinary column since PostgreSQL 12) with them. A scalar subquery over
// `*` is named after its first column, which the plan cannot name: in `SELECT s.xmin || '' FROM
// (SELECT (SELECT * FROM (SELECT c.phone AS xmin) q) FROM customers c) s` PostgreSQL read the phone
// while the plan said "system column, clean", and a read-only grant got every phone raw. A system
// column name is clean now only on a table.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { assertNoneOf, maskedPhonesFixture, noRawPhones } from "./fixture.ts";

describe("system column names on items without system columns", () => {
	const f = maskedPhonesFixture();
	const { c, phones } = f;

	noRawPhones(
		f,
		[
			"SELECT s.xmin || '' AS v FROM (SELECT (SELECT * FROM (SELECT c.phone AS xmin) q) FROM customers c) s",
			"SELECT s.ctid || '' AS v FROM (SELECT (SELECT * FROM (SELECT c.phone AS ctid) q) FROM customers c) s",
			"SELECT s.oid || '' AS v FROM (SELECT (SELECT * FROM (SELECT c.phone AS oid) q) FROM customers c) s",
			"WITH w AS (SELECT (SELECT * FROM (SELECT c.phone AS tableoid) q) FROM customers c) SELECT w.tableoid || '' AS v FROM w",
		],
		"all",
	);

	test("the server names the column after the inner one", async () => {
		const r = await c.fx.pg.query("SELECT s.xmin AS v FROM (SELECT (SELECT * FROM (SELECT c.phone AS xmin) q) FROM customers c ORDER BY c.id) s");
		assert.deepEqual(
			r.rows.map((x) => x.v),
			phones,
		);
	});

	test("system columns of tables stay readable", async () => {
		const r = await c.ro.query("SELECT xmin::text AS a, c.ctid::text AS b, tableoid::regclass::text AS t, phone FROM customers c WHERE id = 1");
		assert.match(r.rows[0].a, /^\d+$/);
		assert.match(r.rows[0].b, /^\(\d+,\d+\)$/);
		assert.equal(r.rows[0].t, "customers");
		assertNoneOf(phones, r.rows);
	});
});
