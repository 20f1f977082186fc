/**
 * Regression test for a bug found by journey 1 (journey1-ci-deploy.test.ts): a statement still
 * running when the session ended (grant expired, revoked, shutdown) was never recorded: the
 * auditor's timeline of the session cut at the grant's end showed only the statements that had
 * completed, not the `SELECT pg_sleep(600)` that ran for a minute until the cut. Now the statement
 * in flight is recorded with an error naming why it was interrupted, for both the simple and the
 * extended query protocol.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import { printLogsOnFailure } from "../env/index.ts";
import { type Fixture, startFixture } from "../postgres/fixture.ts";

let fx: Fixture;
before(async () => {
	fx = await startFixture({ grants: [{ name: "root-admin", user: "root", access: "admin" }] });
});
after(async () => {
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

async function cutWhileRunning(run: (c: pg.Client) => Promise<unknown>, version: number): Promise<void> {
	fx.store.update(fx.makeBundle(version, [{ name: "short", user: "alice", access: "read-only", expiresInMs: 4_000 }]));
	const c = await fx.connect("alice");
	c.on("error", () => {});
	await c.query("SELECT 'before the end'");
	await assert.rejects(run(c), /team\/short expired at/);
	await c.end().catch(() => {});
}

async function endedSession(marker: string) {
	for (let i = 0; i < 100; i++) {
		const s = fx.recorder.sessions.find((x) => x.end && x.events.some((e) => e.type === "statement" && e.sql.includes(marker)));
		if (s) return s;
		await new Promise((r) => setTimeout(r, 50));
	}
	throw new Error(`no ended session recorded a statement with ${marker}`);
}

test("issue-inflight-statement-unrecorded: simple query running at the grant's end is recorded as interrupted", { timeout: 60_000 }, async () => {
	await cutWhileRunning((c) => c.query("SELECT pg_sleep(60) AS simple_marker"), 2);
	const s = await endedSession("simple_marker");
	assert.equal(s.end?.reason, "grant-expired");
	const stmts = s.events.filter((e) => e.type === "statement");
	assert.deepEqual(stmts.map((e) => e.type === "statement" && e.sql), ["SELECT 'before the end'", "SELECT pg_sleep(60) AS simple_marker"]);
	const last = stmts[1]!;
	assert.ok(last.type === "statement" && last.error, "recorded with an error");
	assert.equal(last.error.code, "57P01");
	assert.match(last.error.message, /interrupted: .*team\/short expired at/);
	assert.ok(last.durationMs !== undefined && last.durationMs >= 1000, `ran until the cut: ${last.durationMs} ms`);
});

test("issue-inflight-statement-unrecorded: extended-protocol execute running at the grant's end is recorded as interrupted", { timeout: 60_000 }, async () => {
	await cutWhileRunning((c) => c.query({ text: "SELECT pg_sleep($1) AS extended_marker", values: [60] }), 3);
	const s = await endedSession("extended_marker");
	const last = s.events.filter((e) => e.type === "statement").at(-1)!;
	assert.ok(last.type === "statement" && last.sql.includes("extended_marker"));
	assert.equal(last.error?.code, "57P01");
	assert.deepEqual(last.params, ["60"]);
});
