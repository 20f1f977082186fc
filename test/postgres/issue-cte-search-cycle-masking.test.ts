// Regression (red-team round 9: masking). A recursive CTE's SEARCH and CYCLE clauses add columns
// after the CTE's own: the search sequence column (`SET ord`) and the cycle path (`USING path`) are
// arrays or records of the rows' values. Masking knew only the CTE's own columns, so a name it did
// not find was clean: `WITH RECURSIVE r(p) AS (SELECT phone FROM customers UNION SELECT p FROM r)
// CYCLE p SET c USING path SELECT path::text FROM r` gave `{(+1-555-0101)}` to a read-only grant,
// and `SEARCH DEPTH FIRST BY p SET ord ... SELECT ord::text` the same. (The cases below use UNION
// ALL with a bound: with SEARCH, a UNION over an unbounded recursive term never ends.)
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { assertNoneOf, maskedPhonesFixture, noRawPhones } from "./fixture.ts";

describe("SEARCH and CYCLE columns of a recursive CTE are masked", () => {
	const f = maskedPhonesFixture();
	const { c, phones } = f;

	// the recursive term adds no rows (n < 1): one row per customer, whatever SEARCH adds
	const r = "WITH RECURSIVE r(p, n) AS (SELECT phone, 1 FROM customers UNION ALL SELECT p, n + 1 FROM r WHERE n < 1)";
	const cases = [
		`${r} CYCLE p SET c USING path SELECT path::text FROM r`,
		`${r} CYCLE p SET c USING path SELECT path FROM r`,
		`${r} SEARCH DEPTH FIRST BY p SET ord SELECT ord::text FROM r`,
		`${r} SEARCH BREADTH FIRST BY p SET ord SELECT ord::text FROM r`,
		`${r} SEARCH DEPTH FIRST BY p SET ord CYCLE p SET c USING path SELECT x.path::text, x.ord::text FROM r x`,
		`SELECT s.path::text FROM (${r} CYCLE p SET c USING path SELECT * FROM r) s`,
	];
	noRawPhones(f, cases, "all");

	test("a clean recursive CTE keeps its SEARCH and CYCLE columns (a masked one does not)", async () => {
		assertNoneOf(phones, (await c.ro.query(`${r} SEARCH DEPTH FIRST BY p SET ord SELECT ord::text FROM r`)).rows);
		const res = await c.ro.query(
			"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 2) SEARCH DEPTH FIRST BY i SET ord SELECT i, ord::text FROM n ORDER BY i",
		);
		assert.deepEqual(res.rows, [
			{ i: 1, ord: "{(1)}" },
			{ i: 2, ord: "{(1),(2)}" },
		]);
	});
});
