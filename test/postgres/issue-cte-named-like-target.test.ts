// Regression (red-team round 11: masking). The table an INSERT, UPDATE, DELETE or MERGE writes is
// always a table: PostgreSQL never takes it for a CTE of the same name. Masking resolved the target
// like a FROM item, so under `WITH customers AS (SELECT 1 AS z)` the plan's customers was the CTE,
// without a phone: a read-write grant's `UPDATE customers SET name = phone` (and MERGE's UPDATE SET,
// INSERT ... SELECT lined up against the CTE's columns) copied every phone into a clean column, and
// `UPDATE customers SET name = name RETURNING phone || ''` returned them raw. The target is now
// resolved as the table it is.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { assertNoneOf, maskedPhonesFixture, refusedByRule } from "./fixture.ts";

describe("a CTE named like the written table", () => {
	const f = maskedPhonesFixture();
	const { c, phones } = f;

	/** Runs `sql` in a transaction rolled back afterwards (the fixture's rows stay as seeded). */
	async function inRollback<T>(fn: () => Promise<T>): Promise<T> {
		await c.rw.query("BEGIN");
		try {
			return await fn();
		} finally {
			await c.rw.query("ROLLBACK");
		}
	}

	test("RETURNING of the real table's masked column is masked", async () => {
		const sql = "WITH customers AS (SELECT 'x' AS phone) UPDATE customers SET name = name RETURNING phone || '' AS v";
		const r = await inRollback(() => c.rw.query(sql));
		assert.equal(r.rows.length, phones.length);
		assertNoneOf(phones, r.rows);
		const e = await inRollback(() => c.rw.query({ text: sql, values: [] }));
		assertNoneOf(phones, e.rows);
	});

	for (const sql of [
		"WITH customers AS (SELECT 1 AS z) UPDATE customers SET name = phone WHERE id = 1",
		"WITH customers AS (SELECT 1 AS z) MERGE INTO customers USING (SELECT 1 AS k) s ON customers.id = 1 WHEN MATCHED THEN UPDATE SET name = phone",
		"WITH customers AS (SELECT 1 AS x, 'y' AS phone) INSERT INTO customers SELECT id + 1000, phone FROM public.customers",
	]) {
		test(`copying the masked column into a clean one is refused: ${sql}`, async () => {
			await inRollback(() => assert.rejects(c.rw.query(sql), refusedByRule("mask:copy-masked-data")));
		});
	}

	test("the server writes the table, not the CTE", async () => {
		const direct = await c.fx.pg.connect();
		try {
			await direct.query("BEGIN");
			await direct.query("WITH customers AS (SELECT 1 AS z) UPDATE customers SET name = phone WHERE id = 1");
			const r = await direct.query("SELECT name FROM customers WHERE id = 1");
			assert.equal(r.rows[0]?.name, phones[0]);
			await direct.query("ROLLBACK");
		} finally {
			await direct.end();
		}
	});

	test("writes under such a CTE that copy nothing masked still run", async () => {
		const r = await inRollback(() => c.rw.query("WITH customers AS (SELECT 1 AS z) UPDATE customers SET name = upper(name) WHERE id = 1 RETURNING name, phone"));
		assert.equal(r.rows.length, 1);
		assert.match(r.rows[0].name, /^[A-Z]+ [A-Z]+$/);
		assertNoneOf(phones, r.rows);
	});
});
