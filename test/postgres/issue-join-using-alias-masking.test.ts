// Regression (red-team round 9: masking). `JOIN ... USING (cols) AS u` (PostgreSQL 14+) names the
// merged join columns; masking did not know the alias u, so `u.phone` was an unknown name (clean).
// In an inner join the merged column keeps its origin (masked by it), but a FULL join's merged
// column is COALESCE(c.phone, d.phone) with no origin: `SELECT u.phone FROM customers c FULL JOIN
// customers d USING (phone) AS u` showed phones raw to a read-only grant, and `u.phone || ''` did
// for any join type.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { assertNoneOf, maskedPhonesFixture, noRawPhones } from "./fixture.ts";

describe("the alias of a JOIN USING clause is masked like the join", () => {
	const f = maskedPhonesFixture();
	const { c, phones } = f;

	const cases = [
		"SELECT u.phone FROM customers c FULL JOIN customers d USING (phone) AS u",
		"SELECT u.phone || '' FROM customers c JOIN customers d USING (phone) AS u",
		"SELECT (SELECT u.phone FROM customers c JOIN customers d USING (phone) AS u LIMIT 1)",
	];
	noRawPhones(f, cases, "some");

	test("the sides of the join stay resolvable by their own aliases", async () => {
		// u stands for every column of both sides (conservative): c.id is read through c
		const r = await c.ro.query("SELECT c.id, u.phone FROM customers c FULL JOIN customers d USING (id, phone) AS u WHERE c.id = 1");
		assert.equal(r.rows[0].id, 1);
		assertNoneOf(phones, r.rows);
	});
});
