/**
 * Regression test for a bug found by e2e journey 2 (revoking the bot's grant in git): when the
 * upstream server ended a session with its own FATAL (here: the operator's pg_terminate_backend of a
 * revoked grant's role), the gateway batched the relayed FATAL and then ended the client connection
 * before writing the batch, so psql saw only "SSL connection has been closed unexpectedly" and never
 * learned why. Now the batch is flushed before the end.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { printLogsOnFailure, run } from "../env/index.ts";
import { type Fixture, startFixture } from "../postgres/fixture.ts";

let fx: Fixture;
before(async () => {
	fx = await startFixture({ grants: [{ name: "alice-rw", user: "alice", access: "read-write" }] });
});
after(async () => {
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

test("issue-upstream-fatal-lost: the server's FATAL reaches psql when the backend is terminated mid-query", { timeout: 60_000 }, async () => {
	const token = await fx.token("alice");
	const psql = run("/usr/bin/psql", ["-X", "-v", "VERBOSITY=verbose", "-c", "SELECT pg_sleep(30) AS fatal_marker", fx.dsn(token)], { env: { PATH: process.env.PATH ?? "" } });
	let pid: number | undefined;
	for (let i = 0; i < 200 && pid === undefined; i++) {
		const r = await fx.pg.query<{ pid: number }>("SELECT pid FROM pg_stat_activity WHERE query LIKE '%fatal_marker%' AND pid <> pg_backend_pid()");
		pid = r.rows[0]?.pid;
		if (pid === undefined) await new Promise((res) => setTimeout(res, 50));
	}
	assert.ok(pid, "the statement is running upstream");
	await fx.pg.query("SELECT pg_terminate_backend($1)", [pid]);
	const r = await psql;
	assert.equal(r.code, 2);
	assert.match(r.stderr, /FATAL:\s+57P01: terminating connection due to administrator command/, r.stderr);
	const session = fx.recorder.sessions.find((s) => s.events.some((e) => e.type === "statement" && e.sql.includes("fatal_marker")));
	assert.equal(session?.end?.reason, "upstream-closed");
});
