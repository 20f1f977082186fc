// Regression (red-team round 9: masking). `(x).*` in a select list expands to every field of x's
// composite type, but masking counted it as one output column: a subquery's later columns moved,
// and a name looked up among them was not found (clean). Where PostgreSQL reports no column origin
// (the composite comes from a scalar subquery, a function, ROW()), nothing else masked them: a
// read-only grant read a phone raw with `SELECT s.phone FROM (SELECT (SELECT c FROM customers c
// LIMIT 1).*) s`, and by position with a column alias list, `SELECT s.d FROM (SELECT (SELECT c FROM
// customers c LIMIT 1).*, 1, 2, 3) s(a, b, cc, d)`.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { assertNoneOf, maskedPhonesFixture, noRawPhones } from "./fixture.ts";

describe("(x).* expansions in select lists are masked", () => {
	const f = maskedPhonesFixture();
	const { c, phones } = f;

	const one = "(SELECT c FROM customers c WHERE c.id = 1)";
	const cases = [
		`SELECT s.phone FROM (SELECT ${one}.*) s`,
		`SELECT s.d FROM (SELECT ${one}.*, 1, 2, 3) s(a, b, cc, d)`,
		`WITH w AS (SELECT ${one}.*) SELECT phone FROM w`,
		`SELECT x.phone FROM (VALUES (1)) v(n), LATERAL (SELECT ${one}.*) x`,
		`SELECT s.phone FROM (SELECT (jsonb_populate_record(null::customers, (SELECT to_jsonb(c) FROM customers c WHERE c.id = 1))).*) s`,
	];

	noRawPhones(f, cases, 1);

	test("clean composites still expand unmasked, next to a masked one", async () => {
		assert.deepEqual((await c.ro.query("SELECT s.x AS a FROM (SELECT (information_schema._pg_expandarray(ARRAY[7])).*) s")).rows, [{ a: 7 }]);
		const r = await c.ro.query(`SELECT s.x, t.phone FROM (SELECT (information_schema._pg_expandarray(ARRAY[7])).*) s, (SELECT ${one}.*) t`);
		assert.equal(r.rows[0].x, 7);
		assertNoneOf(phones, r.rows);
	});
});
