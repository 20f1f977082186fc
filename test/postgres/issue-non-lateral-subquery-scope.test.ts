// Regression (red-team round 10: masking). A subquery in FROM without LATERAL does not see the FROM
// items before it (a JOIN's left side included): PostgreSQL looks its names up at the outer query
// levels. Masking analysed it in the scope of its own level, so a sibling's clean column shadowed
// the outer masked one: `SELECT (SELECT s.v FROM (SELECT 'x' AS zz) c, (SELECT zz || '' AS v) s) FROM
// (SELECT phone AS zz FROM customers) o` reads o.zz, the phone, where the plan saw c.zz, and a
// read-only grant got every phone raw (an expression has no column origin). A JOIN's ON condition
// likewise sees only the join's two sides: a state function given the outer phone there
// (`pg_try_advisory_lock(77, ascii(substr(zz, 2, 1)))`) was planned as given c's clean zz and put
// phone characters in pg_locks. Such subqueries are now analysed without their level's FROM items,
// and ON with its join's items only; LATERAL subqueries, functions and XMLTABLE still see the items
// before them.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { assertNoneOf, maskedPhonesFixture, noRawPhones, refusedByRule } from "./fixture.ts";

describe("subqueries in FROM without LATERAL", () => {
	const f = maskedPhonesFixture();
	const { c, phones } = f;

	noRawPhones(
		f,
		[
			"SELECT (SELECT s.v FROM (SELECT 'x' AS zz) c, (SELECT zz || '' AS v) s) FROM (SELECT phone AS zz FROM customers) o",
			"SELECT (SELECT s.v FROM (SELECT 'x' AS zz) c JOIN (SELECT zz || '' AS v) s ON true) FROM (SELECT phone AS zz FROM customers) o",
			"SELECT (SELECT s.v FROM (SELECT 'x' AS zz) c, (SELECT c.zz || '' AS v) s) FROM (SELECT phone AS zz FROM customers) c",
			"SELECT (SELECT s.column1 FROM (SELECT 'x' AS zz) c, (VALUES (zz || '')) s) FROM (SELECT phone AS zz FROM customers) o",
		],
		"all",
	);

	test("the server reads the outer column", async () => {
		const r = await c.fx.pg.query(
			"SELECT (SELECT s.v FROM (SELECT 'x' AS zz) c, (SELECT zz || '' AS v) s) AS v FROM (SELECT id, phone AS zz FROM customers) o ORDER BY o.id",
		);
		assert.deepEqual(
			r.rows.map((x) => x.v),
			phones,
		);
	});

	test("a state function in ON given the outer column is refused", async () => {
		const sql =
			"SELECT (SELECT 1 FROM (SELECT 'x' AS zz) a, (SELECT 1 AS k) b JOIN (SELECT 1 AS k) d ON pg_try_advisory_lock(77, ascii(substr(zz, 2, 1)))) FROM (SELECT phone AS zz FROM customers) o";
		await assert.rejects(c.ro.query(sql), refusedByRule("mask:copy-masked-data"));
		const locks = await c.fx.pg.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory' AND classid = 77");
		assert.equal(locks.rows[0]!.n, 0);
	});

	test("LATERAL subqueries and functions see the items before them", async () => {
		for (const sql of [
			"SELECT (SELECT s.v FROM (SELECT 'x' AS zz) c, LATERAL (SELECT zz || '' AS v) s) AS v FROM (SELECT phone AS zz FROM customers) o",
			"SELECT (SELECT s.v FROM (SELECT 'x' AS zz) c, upper(zz || '') s(v)) AS v FROM (SELECT phone AS zz FROM customers) o",
		]) {
			const r = await c.ro.query(sql);
			assert.ok(r.rows.length === phones.length && r.rows.every((x) => x.v === "x" || x.v === "X"), `${sql}: ${JSON.stringify(r.rows)}`);
			assertNoneOf(phones, r.rows);
		}
	});
});
