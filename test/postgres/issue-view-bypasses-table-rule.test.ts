// Regression (found while wiring withBaseTables): a GuardrailRule naming a table was matched against
// the tables as written, so the same DELETE through an auto-updatable view over that table
// (`customer_contacts` over `customers`) was not blocked by the rule.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { printLogsOnFailure } from "../env/index.ts";
import { type Fixture, startFixture } from "./fixture.ts";

let fx: Fixture;

before(async () => {
	fx = await startFixture({
		guardrails: [{ name: "no-customer-deletes", action: "block", message: "customers are never deleted by agents", sql: { statementKinds: ["DELETE"], tables: ["customers"] } }],
	});
});
after(async () => {
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

for (const [label, sql] of [
	["the table itself", "DELETE FROM customers WHERE id = 1"],
	["a view over it", "DELETE FROM customer_contacts WHERE id = 1"],
	["a schema-qualified view", "DELETE FROM public.customer_contacts WHERE id = 1"],
	["a view in a writable CTE", "WITH gone AS (DELETE FROM customer_contacts WHERE id = 1 RETURNING id) SELECT count(*) FROM gone"],
] as const) {
	test(`a table rule blocks DELETE through ${label} (simple and extended protocol)`, async () => {
		const c = await fx.connect("alice");
		try {
			for (const run of [() => c.query(sql), () => c.query({ text: sql, values: [] })]) {
				await assert.rejects(run(), (e: { code?: string; message: string }) => {
					assert.equal(e.code, "42501", e.message);
					assert.match(e.message, /no-customer-deletes/);
					return true;
				});
			}
			const left = await c.query("SELECT count(*)::int AS n FROM customers WHERE id = 1");
			assert.equal(left.rows[0].n, 1);
		} finally {
			await c.end();
		}
	});
}

test("statements on other tables are untouched by the table rule", async () => {
	const c = await fx.connect("alice");
	try {
		const r = await c.query("DELETE FROM orders WHERE id = -1");
		assert.equal(r.rowCount, 0);
	} finally {
		await c.end();
	}
});
