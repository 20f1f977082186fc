/** Listener options and handshake variants: direct TLS, idle timeout, allowInsecure, error catalogue docs. */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { connect as tlsConnect } from "node:tls";
import pg from "pg";
import { PG_ERROR_CATALOGUE } from "../../gateway/postgres/errors.ts";
import { startPostgresListener } from "../../gateway/postgres/listener.ts";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { decodeServerMessage, ServerParser } from "../../gateway/postgres/server-parser.ts";
import { CONNECTION, DEFAULT_GRANTS, type Fixture, startFixture } from "./fixture.ts";

let fx: Fixture;
before(async () => {
	fx = await startFixture({ allowInsecure: true });
});
after(async () => {
	await fx?.stop();
});

test("direct TLS (sslnegotiation=direct, ALPN postgresql) reaches the startup handshake", async () => {
	const first = await new Promise<string>((resolve, reject) => {
		const s = tlsConnect({ host: "127.0.0.1", port: fx.port, ca: fx.caPem, servername: "localhost", ALPNProtocols: ["postgresql"] }, () => {
			assert.equal(s.alpnProtocol, "postgresql");
			s.write(clientMessages.startup({ user: "agent", database: CONNECTION }));
		});
		const p = new ServerParser();
		s.on("data", (c: Buffer) => {
			p.push(c);
			const f = p.next();
			if (f) {
				s.destroy();
				resolve(JSON.stringify(decodeServerMessage(f)));
			}
		});
		s.on("error", reject);
	});
	assert.match(first, /"type":"authentication","auth":3/);
});

test("a protocol 3.2 StartupMessage is answered with NegotiateProtocolVersion 3.0", async () => {
	const { RawClient } = await import("./raw-client.ts");
	const c = await RawClient.open(fx.port, fx.caPem);
	const startup = clientMessages.startup({ user: "agent", database: CONNECTION, "_pq_.test_option": "x" });
	startup.writeInt32BE(196610, 4);
	c.send(startup);
	const first = await c.next();
	assert.equal(first.type, "negotiateProtocolVersion");
	if (first.type === "negotiateProtocolVersion") {
		assert.equal(first.minorVersion, 0);
		assert.deepEqual(first.unrecognized, ["_pq_.test_option"]);
	}
	assert.equal((await c.next()).type, "authentication");
	c.socket.destroy();
});

test("idle timeout ends a quiet session with FATAL 57P05", async () => {
	const idle = startPostgresListener({ store: fx.store, recorder: fx.recorder, allowInsecure: true, idleTimeoutMs: 600 });
	const { port } = await idle.listen(0);
	const c = new pg.Client({ ...fx.clientConfig("alice", await fx.token("alice")), port, ssl: false });
	const err = new Promise<pg.DatabaseError>((resolve) => c.on("error", (e) => resolve(e as pg.DatabaseError)));
	await c.connect();
	try {
		assert.equal((await c.query("select 1 as x")).rows[0].x, 1);
		const e = await err;
		assert.equal(e.code, "57P05");
		assert.match(e.message, /idle timeout/);
	} finally {
		await c.end().catch(() => undefined);
		await idle.close();
	}
});

test("allowInsecure lets a local-dev client send its token without TLS", async () => {
	const c = new pg.Client({ ...fx.clientConfig("alice", await fx.token("alice")), ssl: false });
	await c.connect();
	assert.equal((await c.query("select 2 as x")).rows[0].x, 2);
	await c.end();
});

test("a new bundle applies to open sessions: new guardrails and masks at once, a changed grant ends the session", async () => {
	const c = await fx.connect("alice");
	c.on("error", () => undefined);
	try {
		assert.equal((await c.query("select count(*)::int as n from orders")).rows[0].n, 400);
		fx.store.update(
			fx.makeBundle(2, DEFAULT_GRANTS, {
				guardrails: [{ name: "no-orders", action: "block", sql: { tables: ["orders"] } }],
				maskRules: [{ name: "names", columns: ["customers.name"], strategy: { type: "redact" } }],
			}),
		);
		await assert.rejects(c.query("select count(*) from orders"), (e: pg.DatabaseError) => {
			assert.equal(e.code, "42501", e.message);
			assert.match(e.message, /no-orders/);
			return true;
		});
		assert.equal((await c.query("select name from customers where id = 1")).rows[0].name, "****");
		const ended = new Promise<pg.DatabaseError>((resolve) => c.on("error", (e) => resolve(e as pg.DatabaseError)));
		fx.store.update(fx.makeBundle(3, DEFAULT_GRANTS.map((g) => (g.user === "alice" ? { ...g, access: "read-only" as const } : g))));
		const e = await ended;
		assert.equal(e.code, "57P01");
		assert.match(e.message, /alice-rw changed/);
	} finally {
		await c.end().catch(() => undefined);
	}
});

test("a grant's dynamic role is used upstream instead of the Connection's credential", async () => {
	await fx.pg.createRole("dyn_reader", { password: "dyn-secret-1", grants: ["GRANT SELECT ON orders TO $role"] });
	fx.store.update(
		fx.makeBundle(10, [...DEFAULT_GRANTS, { name: "dyn", user: "dora", access: "read-only", credential: { username: "dyn_reader", password: "dyn-secret-1" } }]),
	);
	const c = await fx.connect("dora");
	try {
		assert.equal((await c.query("select current_user as u")).rows[0].u, "dyn_reader");
		assert.equal((await c.query("select count(*)::int as n from orders")).rows[0].n, 400);
		// the role's own privileges apply too: no SELECT on customers
		await assert.rejects(c.query("select count(*) from customers"), (e: pg.DatabaseError) => e.code === "42501" && /permission denied/.test(e.message));
	} finally {
		await c.end();
	}
	const s = fx.recorder.sessions.at(-1)!;
	assert.equal(s.meta.target.upstreamUser, "dyn_reader");
	assert.ok(!JSON.stringify(s).includes("dyn-secret-1"), "the recording never holds the credential");
});

test("every error code in the catalogue is documented in README.md", () => {
	const readme = readFileSync(join(import.meta.dirname, "../../gateway/postgres/README.md"), "utf8");
	for (const [code, { sqlstate }] of Object.entries(PG_ERROR_CATALOGUE)) {
		assert.match(readme, new RegExp(`\`${code}\`\\s*\\|\\s*${sqlstate}`), `README documents ${code} (${sqlstate})`);
	}
});
