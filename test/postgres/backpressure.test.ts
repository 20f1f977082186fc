/** Streaming and backpressure: a client that stops reading must stop the upstream, not fill the gateway's memory. */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { CONNECTION, type Fixture, startFixture } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

let fx: Fixture;
before(async () => {
	fx = await startFixture({ maskRules: [{ name: "email", columns: ["wide.email"], strategy: { type: "redact" } }] });
	await fx.pg.query(
		"create table wide as select g as id, 'user' || g || '@example.com' as email, repeat('x', 200) as pad from generate_series(1, 300000) g",
	);
});
after(async () => {
	await fx?.stop();
});

test("a paused client pauses the upstream; memory stays flat; the result then completes, masked", async () => {
	const c = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("alice"));
	global.gc?.();
	const before = process.memoryUsage();
	c.socket.pause();
	c.send(clientMessages.query("select id, email, pad from wide"));
	// ~75 MB of result: with the client not reading, the gateway must stop reading upstream
	await new Promise((r) => setTimeout(r, 2500));
	const during = process.memoryUsage();
	// Our buffers (JS heap and Buffers) stay flat; RSS also moves with allocator/OpenSSL behaviour.
	const grown = during.heapUsed + during.arrayBuffers - (before.heapUsed + before.arrayBuffers);
	assert.ok(grown < 32 * 1024 * 1024, `gateway buffers grew by ${(grown / 1048576).toFixed(1)} MiB while the client was paused`);
	// And the server is really held back: its backend waits to write to us (ClientWrite).
	const act = await fx.pg.query<{ state: string; wait_event: string | null }>(
		"select state, wait_event from pg_stat_activity where query = 'select id, email, pad from wide'",
	);
	assert.equal(act.rows[0]?.state, "active");
	assert.equal(act.rows[0]?.wait_event, "ClientWrite");
	c.socket.resume();
	const ms = await c.until("readyForQuery", 60_000);
	const rows = ms.filter((m) => m.type === "dataRow");
	assert.equal(rows.length, 300_000);
	const first = rows[0] as { values: Buffer[] };
	assert.equal(first.values[1]?.toString(), "****");
	c.end();
});
