// Regression (red-team round 10 on guardrails: "without WHERE"). Under a rule blocking UPDATE, DELETE
// and MERGE without WHERE, a read-write grant emptied or rewrote a whole table through the gateway with
// conditions that filter nothing: `DELETE FROM notes WHERE body IS NULL OR body IS NOT NULL`, `DELETE
// FROM notes WHERE (SELECT true)`, `DELETE FROM notes WHERE now() IS NOT NULL`, a condition only on
// another relation (`UPDATE notes SET body = '' FROM flags WHERE flags.id = 1`, `DELETE FROM notes
// USING flags WHERE flags.id = 1`, `MERGE INTO notes USING flags ON flags.id = 1 WHEN MATCHED THEN
// DELETE`) and an extended-protocol `DELETE FROM notes WHERE $1` bound to true. Only conditions
// without any column, an OR with such an arm and a column compared with itself counted as no WHERE.
// Now a condition that reads no column of the target (the same answer for every row) counts as no
// WHERE too, and so does an OR of complementary arms (`x IS NULL OR x IS NOT NULL`, `p OR NOT p`).
// Likewise an upsert (`INSERT ... ON CONFLICT DO UPDATE`) whose rows come from an unfiltered query
// (`INSERT INTO notes SELECT id, '' FROM notes ON CONFLICT (id) DO UPDATE SET body = excluded.body`
// rewrote every note; an upsert carried no WHERE at all) is an UPDATE without WHERE now.
import assert from "node:assert/strict";
import { beforeEach, describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { fixtureWithClients, refusedByRule } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [
	{ name: "no-unbounded-writes", action: "block", sql: { statementKinds: ["UPDATE", "DELETE", "MERGE"], withoutWhere: true } },
];

describe("conditions that filter no row of the written table", () => {
	const c = fixtureWithClients({ guardrails: GUARDRAILS }, async (fx) => {
		await fx.pg.query("CREATE TABLE notes (id int PRIMARY KEY, body text)");
		await fx.pg.query("CREATE TABLE flags (id int PRIMARY KEY, note_id int)");
		await fx.pg.query("INSERT INTO flags VALUES (1, 2)");
	});
	beforeEach(async () => {
		await c.fx.pg.query("TRUNCATE notes");
		await c.fx.pg.query("INSERT INTO notes SELECT g, 'note ' || g FROM generate_series(1, 5) g");
	});

	const notes = async (): Promise<{ n: number; kept: number }> =>
		(await c.fx.pg.query("SELECT count(*)::int AS n, count(*) FILTER (WHERE body LIKE 'note %')::int AS kept FROM notes")).rows[0] as { n: number; kept: number };

	test("a vacuous condition meets the rule, in the simple and the extended protocol", async () => {
		for (const sql of [
			"DELETE FROM notes WHERE body IS NULL OR body IS NOT NULL",
			"DELETE FROM notes WHERE NOT (id = 1) OR id = 1",
			"DELETE FROM notes WHERE (SELECT true)",
			"DELETE FROM notes WHERE now() IS NOT NULL",
			"DELETE FROM notes WHERE EXISTS (SELECT 1 FROM flags WHERE flags.id = 1)",
			"DELETE FROM notes USING flags WHERE flags.id = 1",
			"UPDATE notes SET body = '' FROM flags WHERE flags.id = 1",
			"MERGE INTO notes USING flags ON flags.id = 1 WHEN MATCHED THEN DELETE",
		]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("no-unbounded-writes"), sql);
			await assert.rejects(c.rw.query({ text: sql, values: [] }), refusedByRule("no-unbounded-writes"), sql);
		}
		await assert.rejects(c.rw.query({ text: "DELETE FROM notes WHERE $1", values: [true] }), refusedByRule("no-unbounded-writes"));
		assert.deepEqual(await notes(), { n: 5, kept: 5 });
	});

	test("an upsert whose rows come from an unfiltered query meets the rule", async () => {
		for (const sql of [
			"INSERT INTO notes SELECT id, '' FROM notes ON CONFLICT (id) DO UPDATE SET body = excluded.body",
			"INSERT INTO notes SELECT g, '' FROM generate_series(1, 1000) g ON CONFLICT (id) DO UPDATE SET body = excluded.body",
			"INSERT INTO notes SELECT id, '' FROM notes WHERE true ON CONFLICT (id) DO UPDATE SET body = '' WHERE 1 = 1",
		]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("no-unbounded-writes"), sql);
		}
		assert.deepEqual(await notes(), { n: 5, kept: 5 });
	});

	test("conditions on the written rows still run", async () => {
		await c.rw.query("DELETE FROM notes WHERE id = $1", [5]);
		await c.rw.query("UPDATE notes SET body = 'flagged' FROM flags WHERE flags.note_id = notes.id AND flags.id = 1");
		await c.rw.query("DELETE FROM notes n USING flags f WHERE f.note_id = n.id AND f.id = 1");
		await c.rw.query("DELETE FROM notes n WHERE EXISTS (SELECT 1 FROM flags f WHERE f.note_id = n.id)");
		await c.rw.query("MERGE INTO notes USING flags ON notes.id = flags.id WHEN MATCHED THEN UPDATE SET body = 'merged'");
		await c.rw.query("DELETE FROM notes WHERE body IS NULL OR id IS NOT NULL AND id = 4");
		await c.rw.query("INSERT INTO notes VALUES (3, 'upserted') ON CONFLICT (id) DO UPDATE SET body = excluded.body");
		await c.rw.query("INSERT INTO notes SELECT id, 'kept' FROM flags WHERE id = 1 ON CONFLICT (id) DO UPDATE SET body = notes.body");
		assert.deepEqual((await c.fx.pg.query("SELECT id, body FROM notes ORDER BY id")).rows, [
			{ id: 1, body: "merged" },
			{ id: 3, body: "upserted" },
		]);
	});
});
