// Regression (red-team round 10: masking). A subquery's columns are looked up by the names
// PostgreSQL gives them, and an unqualified name not found at one query level is looked for at the
// outer ones. A scalar subquery without AS is named after its own column: the leftmost branch's of
// a set operation, `column1` of VALUES, the first column of a `*`. Masking named only a plain
// SELECT's first target, and every other form `?column?`, so the name was missing from the inner
// level and found at an outer one: `SELECT (SELECT zz || '' FROM (SELECT (SELECT c.phone AS zz UNION
// ALL SELECT NULL)) s) FROM customers c, (SELECT 'x' AS zz) o` read s.zz (the phone) where the plan
// saw o's clean zz, and a read-only grant got every phone raw. Such subqueries are now named as
// PostgreSQL names them, and a column named after a `*` may be any name looked up at its level.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { assertNoneOf, maskedPhonesFixture, noRawPhones } from "./fixture.ts";

describe("names of scalar subqueries", () => {
	const f = maskedPhonesFixture();
	const { c, phones } = f;

	noRawPhones(
		f,
		[
			"SELECT (SELECT zz || '' FROM (SELECT (SELECT c.phone AS zz UNION ALL SELECT NULL WHERE false)) s) AS v FROM customers c, (SELECT 'x' AS zz) o",
			"SELECT (SELECT column1 || '' FROM (SELECT (VALUES (c.phone))) s) AS v FROM customers c, (SELECT 'x' AS column1) o",
			"SELECT (SELECT zz || '' FROM (SELECT (SELECT * FROM (SELECT c.phone AS zz) q)) s) AS v FROM customers c, (SELECT 'x' AS zz) o",
			"SELECT (SELECT zz || '' FROM (SELECT (SELECT (q).* FROM (SELECT c.phone AS zz) q)) s) AS v FROM customers c, (SELECT 'x' AS zz) o",
			"SELECT (SELECT zz || '' FROM (SELECT (SELECT * FROM (SELECT c.phone AS zz) q)::text) s) AS v FROM customers c, (SELECT 'x' AS zz) o",
			"SELECT (SELECT zz || '' FROM (SELECT (SELECT * FROM (SELECT c.phone AS zz) q)) s LEFT JOIN (SELECT 'x' AS zz) o USING (zz)) AS v FROM customers c",
		],
		"all",
	);

	test("the server names them so (the inner column is the one read)", async () => {
		const r = await c.fx.pg.query(
			"SELECT (SELECT zz FROM (SELECT (SELECT c.phone AS zz UNION ALL SELECT NULL WHERE false)) s) AS v FROM customers c, (SELECT 'x' AS zz) o ORDER BY c.id",
		);
		assert.deepEqual(
			r.rows.map((x) => x.v),
			phones,
		);
	});

	test("clean scalar subqueries stay readable", async () => {
		const r = await c.ro.query("SELECT (SELECT zz FROM (SELECT (SELECT c.name AS zz UNION ALL SELECT NULL WHERE false)) s) AS v FROM customers c WHERE c.id = 1");
		assert.match(r.rows[0].v, /^[A-Z][a-z]+ [A-Z][a-z]+$/);
		assertNoneOf(phones, r.rows);
	});
});
