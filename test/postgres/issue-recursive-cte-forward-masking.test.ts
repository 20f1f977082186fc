// Regression (red-team round 9: masking). In WITH RECURSIVE every name of the list is in scope in
// every query of it, also before its own definition; masking took a name used before its CTE's
// definition for the table of that name. A read-only grant read phones raw with `WITH RECURSIVE a AS
// (SELECT id FROM orders), orders AS (SELECT phone || '' AS id FROM customers) SELECT id FROM a`:
// planned as orders.id (clean), run over the second CTE. A read-write grant could copy them the same
// way into a table of its own (`... INSERT INTO t SELECT id FROM a`).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { assertNoneOf, maskedPhonesFixture, noRawPhones, refusedByRule } from "./fixture.ts";

describe("WITH RECURSIVE names used before their definition", () => {
	const f = maskedPhonesFixture();
	const { c, phones } = f;

	const cases = [
		"WITH RECURSIVE a AS (SELECT id FROM orders), orders AS (SELECT phone || '' AS id FROM customers) SELECT id FROM a",
		"WITH RECURSIVE a AS (SELECT * FROM orders), orders AS (SELECT phone || '' AS id FROM customers) SELECT * FROM a",
		"WITH RECURSIVE a(x) AS (SELECT status FROM orders), orders(status) AS (SELECT phone || '' FROM customers) SELECT x FROM a",
		"SELECT * FROM (WITH RECURSIVE a AS (SELECT status FROM orders), orders AS (SELECT phone || '' AS status FROM customers) SELECT status FROM a) s",
	];
	noRawPhones(f, cases, "all");

	test("read-write: not copied into the agent's own table", async () => {
		await c.rw.query("CREATE TABLE fwd_copy (id text)");
		await assert.rejects(
			c.rw.query("WITH RECURSIVE a AS (SELECT id FROM orders), orders AS (SELECT phone || '' AS id FROM customers) INSERT INTO fwd_copy SELECT id FROM a"),
			refusedByRule("mask:copy-masked-data"),
		);
		assert.equal((await c.fx.pg.query("SELECT count(*)::int AS n FROM fwd_copy")).rows[0]?.n, 0);
	});

	test("a CTE used after its definition, or a table, still plans as before; a later one does not", async () => {
		const r = await c.ro.query("WITH RECURSIVE o AS (SELECT status FROM orders), a AS (SELECT status FROM o) SELECT status FROM a LIMIT 1");
		assert.match(r.rows[0].status, /^[a-z]+$/);
		const both = await c.ro.query(
			"WITH RECURSIVE o AS (SELECT status FROM orders), a AS (SELECT status FROM customer_x), customer_x AS (SELECT phone || '' AS status FROM customers) SELECT (SELECT status FROM o LIMIT 1) AS s, a.status AS p FROM a",
		);
		assert.match(both.rows[0].s, /^[a-z]+$/);
		assertNoneOf(phones, both.rows);
	});
});
