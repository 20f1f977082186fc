/**
 * Regression (found by the upstream-restart fault test): with masking active, PostgreSQL's own
 * "FATAL 57P01 terminating connection due to administrator command" for a session busy in a query
 * arrived in the same chunk as that query's RowDescription. The RowDescription waits for an async
 * mask plan; the upstream socket closed meanwhile and the session closed at once, dropping the
 * FATAL: the client saw only "Connection terminated unexpectedly". Now frames already received are
 * relayed before closing (also after a socket error), and an upstream that vanishes without a FATAL
 * of its own (SIGKILLed backend, or a reset that lost it) gets a FATAL 08006 from the gateway instead
 * of a bare disconnect.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { printLogsOnFailure } from "../env/index.ts";
import { type GatewayFixture, startGatewayFixture, waitFor } from "./fixture.ts";

let f: GatewayFixture;
before(async () => {
	f = await startGatewayFixture({ maskRules: [{ name: "email", columns: ["customers.email"], strategy: { type: "redact" } }] });
});
after(async () => {
	await f?.stop();
});
printLogsOnFailure(() => [["postgres", f?.pg]]);

async function busySession(tag: string) {
	const c = await f.connect("bob");
	c.on("error", () => undefined);
	const sql = `SELECT pg_sleep(60) /* ${tag} */`;
	const result = c.query(sql).then(
		() => ({ code: "none", message: "completed" }),
		(e: Error & { code?: string }) => ({ code: e.code ?? "", message: e.message }),
	);
	let pid = 0;
	await waitFor(`${tag} running`, async () => {
		const r = await f.pg.query("SELECT pid FROM pg_stat_activity WHERE query = $1 AND state = 'active'", [sql]);
		pid = r.rows[0]?.pid ?? 0;
		return pid > 0;
	});
	return { c, result, pid };
}

test("issue fatal-lost-behind-mask-plan: a masked session busy in a query gets PostgreSQL's FATAL 57P01 on restart", async () => {
	const { c, result } = await busySession("restart");
	await f.pg.restart();
	const r = await result;
	// 57P01 relayed from PostgreSQL; 08006 from the gateway if the server's socket reset lost it.
	assert.ok(["57P01", "08006"].includes(r.code), JSON.stringify(r));
	await c.end().catch(() => undefined);
});

test("issue fatal-lost-behind-mask-plan: a backend killed with SIGKILL gives the client FATAL 08006 from the gateway", async () => {
	const { c, result, pid } = await busySession("sigkill");
	process.kill(pid, "SIGKILL");
	const r = await result;
	assert.equal(r.code, "08006", JSON.stringify(r));
	assert.match(r.message, /upstream PostgreSQL server closed the connection/);
	await c.end().catch(() => undefined);
	// PostgreSQL recovers from the crash; the gateway serves again.
	await waitFor("PostgreSQL back after crash recovery", async () => {
		try {
			const d = await f.connect("alice");
			await d.query("SELECT 1");
			await d.end();
			return true;
		} catch {
			return false;
		}
	}, 60_000, 250);
});
