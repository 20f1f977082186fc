/** Protocol-level behaviour through the gateway with a raw client: pipelining, errors, COPY, bad input. */
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, test } from "node:test";
import type { ServerMessage } from "../../gateway/postgres/protocol.ts";
import { clientMessages, Writer } from "../../gateway/postgres/serializer.ts";
import { CONNECTION, type Fixture, startFixture } from "./fixture.ts";
import { RawClient, types } from "./raw-client.ts";

let fx: Fixture;
before(async () => {
	fx = await startFixture({
		guardrails: [{ name: "no-truncate", action: "block", sql: { statementKinds: ["TRUNCATE"] } }],
	});
	await fx.pg.query("create table if not exists notes (id serial primary key, body text)");
});
after(async () => {
	await fx?.stop();
});

const login = async (user = "alice") => RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token(user));
const err = (ms: ServerMessage[]) => ms.find((m) => m.type === "errorResponse") as Extract<ServerMessage, { type: "errorResponse" }> | undefined;
const rfq = (ms: ServerMessage[]) => (ms.at(-1) as Extract<ServerMessage, { type: "readyForQuery" }>).status;

test("pipelined extended protocol: a blocked Parse mid-pipeline errors, the rest is skipped until Sync, order kept", async () => {
	const c = await login();
	c.send(
		clientMessages.parse("a", "select 1 as one"),
		clientMessages.bind("", "a"),
		clientMessages.describe("P", ""),
		clientMessages.execute(""),
		clientMessages.sync(),
		clientMessages.parse("", "truncate notes"),
		clientMessages.bind("", ""),
		clientMessages.execute(""),
		clientMessages.sync(),
		clientMessages.bind("p2", "a"),
		clientMessages.execute("p2"),
		clientMessages.sync(),
	);
	const first = await c.until("readyForQuery");
	assert.deepEqual(types(first), ["parseComplete", "bindComplete", "rowDescription", "dataRow", "commandComplete", "readyForQuery"]);
	const second = await c.until("readyForQuery");
	assert.deepEqual(types(second), ["errorResponse", "readyForQuery"]);
	assert.equal(err(second)?.fields.C, "42501");
	assert.match(err(second)?.fields.M ?? "", /no-truncate/);
	assert.equal(rfq(second), "I");
	const third = await c.until("readyForQuery");
	assert.deepEqual(types(third), ["bindComplete", "dataRow", "commandComplete", "readyForQuery"]);
	c.end();
});

test("transaction status: a blocked statement inside BEGIN leaves the client in E, ROLLBACK returns to I", async () => {
	const c = await login();
	c.send(clientMessages.query("begin"));
	assert.equal(rfq(await c.until("readyForQuery")), "T");
	c.send(clientMessages.query("insert into notes(body) values ('kept?')"));
	assert.equal(rfq(await c.until("readyForQuery")), "T");
	c.send(clientMessages.query("truncate notes"));
	const blocked = await c.until("readyForQuery");
	assert.equal(err(blocked)?.fields.C, "42501");
	assert.equal(rfq(blocked), "E");
	c.send(clientMessages.query("rollback"));
	assert.equal(rfq(await c.until("readyForQuery")), "I");
	c.send(clientMessages.query("select count(*) from notes where body = 'kept?'"));
	const rows = (await c.until("readyForQuery")).find((m) => m.type === "dataRow") as Extract<ServerMessage, { type: "dataRow" }>;
	assert.equal(rows.values[0]?.toString(), "0");
	c.end();
});

test("multi-statement query: every statement classified first; one blocked statement blocks the whole string", async () => {
	const c = await login();
	c.send(clientMessages.query("insert into notes(body) values ('multi'); truncate notes; select 1"));
	const ms = await c.until("readyForQuery");
	assert.deepEqual(types(ms), ["errorResponse", "readyForQuery"]);
	c.send(clientMessages.query("select count(*) from notes where body = 'multi'"));
	const r = (await c.until("readyForQuery")).find((m) => m.type === "dataRow") as Extract<ServerMessage, { type: "dataRow" }>;
	assert.equal(r.values[0]?.toString(), "0");
	c.end();
});

test("COPY FROM STDIN and COPY TO STDOUT relay", async () => {
	const c = await login();
	c.send(clientMessages.query("copy notes(body) from stdin"));
	const start = await c.until("copyInResponse");
	assert.equal(start.at(-1)?.type, "copyInResponse");
	c.send(clientMessages.copyData(Buffer.from("copied one\ncopied two\n")), clientMessages.copyDone());
	const done = await c.until("readyForQuery");
	assert.ok(done.some((m) => m.type === "commandComplete" && m.tag === "COPY 2"));
	c.send(clientMessages.query("copy (select body from notes where body like 'copied%' order by 1) to stdout"));
	const out = await c.until("readyForQuery");
	const data = out.filter((m) => m.type === "copyData").map((m) => (m as { data: Buffer }).data.toString()).join("");
	assert.equal(data, "copied one\ncopied two\n");
	c.end();
});

test("NOTIFY reaches a listening session; FunctionCall is blocked for non-admin grants", async () => {
	const listener = await login();
	listener.send(clientMessages.query("listen chan"));
	await listener.until("readyForQuery");
	const c = await login();
	c.send(clientMessages.query("notify chan, 'hello'"));
	await c.until("readyForQuery");
	const n = await listener.until("notificationResponse");
	assert.equal((n.at(-1) as { payload: string }).payload, "hello");
	const fc = new Writer().int32(1598).int16(0).int16(0).int16(0).message(0x46); // F: md5? any oid
	c.send(fc);
	const ms = await c.until("readyForQuery");
	assert.equal(err(ms)?.fields.C, "42501");
	assert.match(err(ms)?.fields.M ?? "", /FunctionCall/);
	c.send(clientMessages.query("select 1"));
	assert.ok((await c.until("readyForQuery")).some((m) => m.type === "dataRow"));
	listener.end();
	c.end();
});

test("bad input gets clean errors and never affects another session", async () => {
	const healthy = await login();
	const cases: { name: string; bytes: Buffer; plain?: boolean; expect: RegExp }[] = [
		{ name: "garbage before startup", bytes: Buffer.from("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), plain: true, expect: /08P01|message_too_large|startup packet/ },
		{ name: "oversized startup length", bytes: Buffer.from([0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]), plain: true, expect: /startup packet length/ },
		{ name: "protocol 2", bytes: Buffer.from([0, 0, 0, 8, 0, 2, 0, 0]), plain: true, expect: /unsupported frontend protocol/ },
	];
	for (const k of cases) {
		const c = await RawClient.open(fx.port, fx.caPem, k.plain);
		c.send(k.bytes);
		const ms = await c.rest(3000);
		assert.match(JSON.stringify(ms), k.expect, k.name);
	}
	// cleartext token on a plain connection is refused
	const plain = await RawClient.open(fx.port, fx.caPem, true);
	plain.send(clientMessages.startup({ user: "a", database: CONNECTION }));
	const refused = await plain.rest(3000);
	assert.equal(err(refused)?.fields.C, "28000");
	assert.match(err(refused)?.fields.M ?? "", /TLS/);
	// a second SSLRequest inside TLS
	const twice = await RawClient.open(fx.port, fx.caPem);
	twice.send(clientMessages.sslRequest());
	assert.match(JSON.stringify(await twice.rest(3000)), /SSLRequest repeated/);
	// GSSENCRequest declined, then SSLRequest works
	const gss = await new Promise<Buffer>((resolve) => {
		const s = connect(fx.port, "127.0.0.1", () => s.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30])));
		s.once("data", (b: Buffer) => {
			s.destroy();
			resolve(b);
		});
	});
	assert.equal(gss.toString(), "N");
	// after authentication: oversized, truncated-then-closed, unknown type
	const big = await login();
	const huge = Buffer.alloc(5);
	huge[0] = 0x51;
	huge.writeInt32BE(0x7ffffff0, 1);
	big.send(huge);
	const bigErr = await big.rest(3000);
	assert.equal(err(bigErr)?.fields.C, "08P01");
	assert.match(err(bigErr)?.fields.M ?? "", /exceeds/);
	const trunc = await login();
	trunc.socket.end(Buffer.from([0x51, 0, 0, 0, 100, 0x73]));
	await trunc.rest(2000);
	const bad = await login();
	bad.send(Buffer.from([0x7a, 0, 0, 0, 4]));
	assert.match(JSON.stringify(await bad.rest(3000)), /invalid frontend message type/);
	// alg none token
	const header = Buffer.from(JSON.stringify({ alg: "none" })).toString("base64url");
	const payload = Buffer.from(JSON.stringify({ iss: "https://issuer.drawbridge.test", sub: "alice", aud: "drawbridge-gateway", exp: 9999999999 })).toString("base64url");
	await assert.rejects(RawClient.login(fx.port, fx.caPem, CONNECTION, `${header}.${payload}.`), /28P01/);
	await assert.rejects(RawClient.login(fx.port, fx.caPem, "nope", await fx.token("alice")), /3D000/);
	// the healthy session is unaffected
	healthy.send(clientMessages.query("select 42"));
	const ok = await healthy.until("readyForQuery");
	assert.equal((ok.find((m) => m.type === "dataRow") as { values: Buffer[] }).values[0]?.toString(), "42");
	healthy.end();
});

test("grant end: revocation terminates the session with FATAL 57P01 naming the grant", async () => {
	const c = await login("root");
	fx.store.update(fx.makeBundle(2, [{ name: "alice-rw", user: "alice", access: "read-write" }]));
	const ms = await c.rest(3000);
	const e = err(ms);
	assert.equal(e?.fields.S, "FATAL");
	assert.equal(e?.fields.C, "57P01");
	assert.match(e?.fields.M ?? "", /team\/root-admin was revoked/);
	const ended = fx.recorder.sessions.find((s) => s.meta.grant === "team/root-admin");
	await new Promise((r) => setTimeout(r, 50));
	assert.equal(ended?.end?.reason, "grant-revoked");
});

test("grant expiry terminates the session", async () => {
	fx.store.update(fx.makeBundle(3, [{ name: "short", user: "alice", access: "read-write", expiresInMs: 4000 }]));
	const c = await login();
	const ms = await c.rest(10_000);
	assert.match(err(ms)?.fields.M ?? "", /team\/short expired at/);
	assert.equal(err(ms)?.fields.C, "57P01");
});
