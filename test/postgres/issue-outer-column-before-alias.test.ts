// Regression (red-team round 9: masking). An unqualified name is a column of any query level,
// innermost first, before it is a table alias (a whole-row reference): PostgreSQL looks for columns
// at every level and only then for relations. Masking stopped at the first level with an alias of
// that name: `SELECT (SELECT phone FROM (SELECT 1) phone) FROM customers` was planned as the inner
// alias's clean whole row and ran as the outer customers.phone, raw to a read-only grant (a scalar
// subquery reports no column origin).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { assertNoneOf, maskedPhonesFixture, noRawPhones } from "./fixture.ts";

describe("outer columns win over inner aliases of the same name", () => {
	const f = maskedPhonesFixture();
	const { c, phones } = f;

	const cases = [
		"SELECT (SELECT phone FROM (SELECT 1) phone) FROM customers",
		"SELECT (SELECT phone || '' FROM (SELECT 1 AS a) phone) FROM customers",
		"SELECT (SELECT phone FROM orders phone LIMIT 1) FROM customers",
		"SELECT (SELECT (SELECT phone FROM (SELECT 1) phone) FROM (SELECT 2) q) FROM customers",
	];
	noRawPhones(f, cases, "all");

	test("an alias with no column of its name anywhere is still a whole-row reference", async () => {
		const r = await c.ro.query("SELECT (SELECT o::text FROM orders o WHERE o.id = 1) AS row, (SELECT phone FROM (SELECT 1) phone) AS p FROM customers LIMIT 1");
		assert.match(r.rows[0].row, /^\(1,/);
		assertNoneOf(phones, r.rows);
	});
});
