/**
 * Refusals before authentication: `maxConnections` (FATAL 53300) and drain (FATAL 57P03). Both are
 * answered after TLS, at the StartupMessage, so a client that sent SSLRequest (psql, node-postgres
 * with ssl) reads the message; neighbours are untouched and a freed slot is usable again.
 */
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, test } from "node:test";
import pg from "pg";
import { type PostgresListener, type RefusalReason, startPostgresListener } from "../../gateway/postgres/listener.ts";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { issueCert, run } from "../env/index.ts";
import { CONNECTION, type Fixture, startFixture } from "./fixture.ts";

let fx: Fixture;
let tls: { certPem: string; keyPem: string };
before(async () => {
	fx = await startFixture();
	const cert = await issueCert(fx.pg.ca, { cn: "localhost", name: "gateway-limits" });
	tls = { certPem: cert.certPem, keyPem: cert.keyPem };
});
after(async () => {
	await fx?.stop();
});

async function listener(opts: { maxConnections?: number }): Promise<{ l: PostgresListener; port: number; refused: RefusalReason[] }> {
	const refused: RefusalReason[] = [];
	const l = startPostgresListener({ store: fx.store, recorder: fx.recorder, tls, ...opts, onRefused: (r) => refused.push(r) });
	const { port } = await l.listen(0);
	return { l, port, refused };
}

async function client(port: number, user = "alice"): Promise<pg.Client> {
	const c = new pg.Client(fx.clientConfig(user, await fx.token(user), { port }));
	c.on("error", () => undefined);
	await c.connect();
	return c;
}

async function refusedWith(port: number): Promise<pg.DatabaseError> {
	const c = new pg.Client(fx.clientConfig("alice", await fx.token("alice"), { port }));
	c.on("error", () => undefined);
	try {
		await c.connect();
	} catch (e) {
		return e as pg.DatabaseError;
	}
	await c.end();
	throw new assert.AssertionError({ message: "the connection was accepted" });
}

async function waitFor(what: string, cond: () => boolean, timeoutMs = 10_000): Promise<void> {
	const deadline = Date.now() + timeoutMs;
	while (!cond()) {
		if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
		await new Promise((r) => setTimeout(r, 20));
	}
}

function libpqEnv(port: number, token: string): Record<string, string> {
	return {
		...(process.env as Record<string, string>),
		PGHOST: "localhost",
		PGPORT: String(port),
		PGDATABASE: CONNECTION,
		PGUSER: "agent",
		PGPASSWORD: token,
		PGSSLMODE: "verify-full",
		PGSSLROOTCERT: fx.caFile,
		PGCONNECT_TIMEOUT: "10",
	};
}

test("maxConnections reached: node-postgres (after TLS) gets FATAL 53300 naming the limit, neighbours keep working, a freed slot is reused", async () => {
	const { l, port, refused } = await listener({ maxConnections: 2 });
	const open: pg.Client[] = [];
	try {
		open.push(await client(port), await client(port, "bob"));
		assert.equal(l.connectionCount, 2);

		const e = await refusedWith(port);
		assert.equal(e.code, "53300", e.message);
		assert.equal(e.severity, "FATAL");
		assert.match(e.message, /too many clients.*at most 2 concurrent PostgreSQL connections/);
		assert.deepEqual(refused, ["max-connections"]);
		// Refused before any authentication work: nothing was recorded for it.
		const recorded = fx.recorder.sessions.length;

		for (const c of open) assert.equal((await c.query("select 7 as x")).rows[0].x, 7);
		assert.equal((await refusedWith(port)).code, "53300");
		assert.equal(fx.recorder.sessions.length, recorded);

		await open.shift()!.end();
		await waitFor("the slot to free", () => l.connectionCount < 2);
		const next = await client(port);
		open.push(next);
		assert.equal((await next.query("select 8 as x")).rows[0].x, 8);
		assert.equal((await open[0]!.query("select 9 as x")).rows[0].x, 9);
		assert.deepEqual(refused, ["max-connections", "max-connections"]);
	} finally {
		for (const c of open) await c.end().catch(() => undefined);
		await l.close();
	}
});

test("maxConnections reached: psql (SSLRequest, verify-full) prints the FATAL message on stderr", async () => {
	const { l, port } = await listener({ maxConnections: 1 });
	const holder = await client(port);
	try {
		const r = await run("/usr/bin/psql", ["-X", "-c", "select 1"], { env: libpqEnv(port, await fx.token("alice")) });
		assert.equal(r.code, 2, `psql exit ${r.code}: ${r.stderr}`);
		assert.match(r.stderr, /FATAL: {2}sorry, too many clients already: this Drawbridge gateway accepts at most 1 concurrent PostgreSQL connections/);
		assert.equal((await holder.query("select 1 as x")).rows[0].x, 1);

		await holder.end();
		await waitFor("the slot to free", () => l.connectionCount === 0);
		const ok = await run("/usr/bin/psql", ["-X", "-A", "-t", "-c", "select 41 + 1"], { env: libpqEnv(port, await fx.token("alice")) });
		assert.equal(ok.code, 0, ok.stderr);
		assert.equal(ok.stdout.trim(), "42");
	} finally {
		await holder.end().catch(() => undefined);
		await l.close();
	}
});

test("drain: a new connection gets FATAL 57P03 (node-postgres and psql) while a live session finishes its query and runs more; CancelRequests still work", async () => {
	const { l, port, refused } = await listener({});
	const live = await client(port);
	const busy = await client(port);
	try {
		const running = live.query("select pg_sleep(1.5), 5 as x");
		const sleeping = busy.query("select pg_sleep(30)");
		await new Promise((r) => setTimeout(r, 300));
		l.drain();

		const e = await refusedWith(port);
		assert.equal(e.code, "57P03", e.message);
		assert.equal(e.severity, "FATAL");
		assert.match(e.message, /the Drawbridge gateway is shutting down/);
		const r = await run("/usr/bin/psql", ["-X", "-c", "select 1"], { env: libpqEnv(port, await fx.token("alice")) });
		assert.equal(r.code, 2, r.stderr);
		assert.match(r.stderr, /FATAL: {2}the Drawbridge gateway is shutting down: not accepting new connections/);
		assert.deepEqual(refused, ["shutting-down", "shutting-down"]);

		// The live session is unaffected: its running query completes and it can start another.
		assert.equal((await running).rows[0].x, 5);
		assert.equal((await live.query("select 6 as x")).rows[0].x, 6);
		assert.equal(l.sessionCount, 2);

		// Ctrl-C during the drain still reaches the upstream (a CancelRequest is not a new session).
		const { processID, secretKey } = busy as unknown as { processID: number; secretKey: number };
		const key = Buffer.alloc(4);
		key.writeInt32BE(secretKey);
		await new Promise<void>((resolve) => {
			const s = connect(port, "127.0.0.1", () => s.end(clientMessages.cancelRequest(processID, key)));
			s.on("close", () => resolve());
		});
		await assert.rejects(sleeping, (x: pg.DatabaseError) => x.code === "57014");
	} finally {
		await live.end().catch(() => undefined);
		await busy.end().catch(() => undefined);
		await l.close();
	}
});

test("maxConnections must be a positive integer", () => {
	assert.throws(() => startPostgresListener({ store: fx.store, recorder: fx.recorder, maxConnections: 0 }), TypeError);
	assert.throws(() => startPostgresListener({ store: fx.store, recorder: fx.recorder, maxConnections: 1.5 }), TypeError);
});
