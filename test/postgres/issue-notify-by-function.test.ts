// Regression (red-team round 8: guardrails). `pg_notify(channel, payload)` is NOTIFY, but carried
// only the SELECT kind: through the real gateway to a real PostgreSQL, under a rule blocking NOTIFY
// (an application's workers LISTEN on `jobs` and run what they are told), a read-write grant's
// SELECT pg_notify('jobs', 'run-migration') reached the workers. It carries NOTIFY now.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { Notification } from "pg";
import { fixtureWithClients, refusedByRule } from "./fixture.ts";

describe("pg_notify is a NOTIFY", () => {
	const c = fixtureWithClients({ guardrails: [{ name: "no-notify", action: "block", sql: { statementKinds: ["NOTIFY"] } }] });

	test("SELECT pg_notify(...) meets a rule on NOTIFY", async () => {
		const worker = await c.fx.pg.connect();
		try {
			const got: string[] = [];
			let wake: (() => void) | undefined;
			worker.on("notification", (n: Notification) => {
				got.push(n.payload ?? "");
				wake?.();
			});
			await worker.query("LISTEN jobs");
			for (const sql of ["SELECT pg_notify('jobs', 'run-migration')", "SELECT pg_catalog.pg_notify('jobs', 'run-migration')", "SELECT 1 FROM (SELECT pg_notify('jobs', 'run-migration')) s"]) {
				await assert.rejects(c.rw.query(sql), refusedByRule("no-notify"), sql);
			}
			// the first notification the worker gets is the marker sent after them
			const marker = new Promise<void>((resolve) => {
				wake = () => got.length > 0 && resolve();
				wake();
			});
			await c.fx.pg.query("NOTIFY jobs, 'marker'");
			await marker;
			assert.deepEqual(got, ["marker"]);
		} finally {
			await worker.end();
		}
	});
});
