/**
 * Regression (found by the SIGTERM drain fault test): when the gateway ended a session itself —
 * shutdown, or the grant expiring — while a statement was running upstream, it sent Terminate and
 * closed, but a backend busy in a statement does not read its socket: the statement went on running
 * in PostgreSQL (a `pg_sleep(120)` for two more minutes; any long query after its grant had ended).
 * The gateway now cancels the running statement with the upstream's cancel key first.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { printLogsOnFailure, startPostgres, type PostgresHandle } from "../env/index.ts";
import { type GatewayFixture, startGatewayFixture, waitFor } from "./fixture.ts";

let pgh: PostgresHandle;
before(async () => {
	pgh = await startPostgres();
});
after(async () => {
	await pgh?.stop();
});
printLogsOnFailure(() => [["postgres", pgh]]);

async function sleeping(f: GatewayFixture, tag: string) {
	const c = await f.connect("alice");
	c.on("error", () => undefined);
	const sql = `SELECT pg_sleep(120) /* ${tag} */`;
	const result = c.query(sql).then(
		() => ({ code: "completed", message: "" }),
		(e: Error & { code?: string }) => ({ code: e.code ?? "", message: e.message }),
	);
	const running = async () => (await pgh.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = $1", [sql])).rows[0]!.n as number;
	await waitFor(`${tag} running`, async () => (await running()) === 1);
	return { c, result, running };
}

test("issue ended-session-query-keeps-running: grant expiry cancels the statement running upstream", { timeout: 180_000 }, async () => {
	const f = await startGatewayFixture({ pg: pgh, grants: [{ name: "alice-short", user: "alice", access: "read-write", expiresInMs: 4_000 }] });
	try {
		const { c, result, running } = await sleeping(f, "grant-expiry");
		const r = await result;
		assert.equal(r.code, "57P01", JSON.stringify(r));
		assert.match(r.message, /grant team\/alice-short expired/);
		await waitFor("the statement no longer runs in PostgreSQL", async () => (await running()) === 0, 60_000, 200);
		await c.end().catch(() => undefined);
	} finally {
		await f.stop();
	}
});

test("issue ended-session-query-keeps-running: listener shutdown cancels the statement running upstream", { timeout: 180_000 }, async () => {
	const f = await startGatewayFixture({ pg: pgh });
	const { c, result, running } = await sleeping(f, "shutdown");
	await f.stop();
	const r = await result;
	assert.equal(r.code, "57P01", JSON.stringify(r));
	await waitFor("the statement no longer runs in PostgreSQL", async () => (await running()) === 0, 60_000, 200);
	await c.end().catch(() => undefined);
});
