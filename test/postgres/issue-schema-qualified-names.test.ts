// Regression (red-team round 11: masking). A column written `schema.table.column` names a relation,
// not an alias: PostgreSQL looks for that relation among the FROM items written without an alias, at
// every query level, and passes over a subquery, CTE or aliased item that merely has the table's
// name. Masking took the middle part for an alias, so in `SELECT (SELECT public.customers.phone || ''
// FROM (SELECT 'x' AS phone) customers) FROM customers` it read the inner subquery's clean phone
// while PostgreSQL read the outer table's, and a read-only grant got every phone raw (an expression
// has no column origin). Such references are now resolved as PostgreSQL resolves them.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { assertNoneOf, maskedPhonesFixture, noRawPhones } from "./fixture.ts";

describe("schema-qualified column references", () => {
	const f = maskedPhonesFixture();
	const { c, phones } = f;

	noRawPhones(
		f,
		[
			"SELECT (SELECT public.customers.phone || '' FROM (SELECT 'x' AS phone) customers) AS v FROM customers",
			"SELECT (WITH customers AS (SELECT 'x' AS phone) SELECT public.customers.phone || '' FROM customers) AS v FROM customers",
			"SELECT (SELECT row_to_json(public.customers.*)::text FROM (SELECT 1 AS a) customers) AS v FROM customers",
			"SELECT (SELECT (SELECT public.customers.phone || '' FROM (SELECT 'y' AS phone) customers) FROM (SELECT 'x' AS phone) customers) AS v FROM customers",
		],
		"all",
	);

	test("the server reads the outer table (the inner item has only the table's name)", async () => {
		const r = await c.fx.pg.query("SELECT (SELECT public.customers.phone FROM (SELECT 'x' AS phone) customers) AS v FROM customers ORDER BY id");
		assert.deepEqual(
			r.rows.map((x) => x.v),
			phones,
		);
	});

	test("clean columns read that way stay readable", async () => {
		const r = await c.ro.query("SELECT (SELECT public.customers.name FROM (SELECT 'x' AS name) customers) AS v, phone FROM customers WHERE id = 1");
		assert.match(r.rows[0].v, /^[A-Z][a-z]+ [A-Z][a-z]+$/);
		assertNoneOf(phones, r.rows);
	});
});
