// Regression (red-team round 10 on recordings: unrecorded actions). The protocol's FunctionCall
// message (fast path) runs any function by OID. It is refused below admin and while masking or a
// binding rule applies, and recorded then; under an admin grant of a connection without such rules it
// was forwarded and left NO statement event: FunctionCall(purge's OID, '(3,n3)') deleted a row, and
// the recording showed nothing, neither the call, nor its argument, nor its failure, nor a call still
// running when the session ended. A forwarded call is recorded now like a statement
// (`<FunctionCall oid=N>`, kind FUNCTIONCALL, arguments as parameters), once, when it completes,
// fails or is cut off.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { ServerMessage } from "../../gateway/postgres/protocol.ts";
import { Writer } from "../../gateway/postgres/serializer.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { CONNECTION, type Fixture, startFixture } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

/** FunctionCall (F): text arguments, text result. */
function functionCall(oid: number, args: string[]): Buffer {
	const w = new Writer().int32(oid).int16(1).int16(0).int16(args.length);
	for (const a of args) {
		const b = Buffer.from(a, "utf8");
		w.int32(b.length).bytes(b);
	}
	return w.int16(0).message(0x46);
}

const errorOf = (ms: ServerMessage[]) => ms.find((m) => m.type === "errorResponse") as { fields: Record<string, string> } | undefined;

async function until(what: string, ok: () => boolean | Promise<boolean>): Promise<void> {
	const deadline = Date.now() + 60_000;
	while (!(await ok())) {
		if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
		await new Promise((r) => setTimeout(r, 50));
	}
}

describe("a forwarded FunctionCall is recorded", () => {
	let fx: Fixture;
	let purge = 0;
	let sleep = 0;
	const count = async (): Promise<number> => (await fx.pg.query("SELECT count(*)::int AS n FROM t3")).rows[0]!.n;
	const calls = (oid: number) => fx.recorder.statements().filter((e) => e.sql === `<FunctionCall oid=${oid}>`);
	before(async () => {
		// no guardrail or masking rules: FunctionCall is forwarded for the admin grant (root)
		fx = await startFixture();
		await fx.pg.query("CREATE TABLE t3 (id int PRIMARY KEY, note text)");
		await fx.pg.query("INSERT INTO t3 SELECT g, 'n' || g FROM generate_series(1, 3) g");
		await fx.pg.query("CREATE FUNCTION purge(t3) RETURNS int LANGUAGE sql AS 'DELETE FROM t3 WHERE id = $1.id RETURNING 1'");
		purge = (await fx.pg.query("SELECT 'purge(t3)'::regprocedure::oid::int AS oid")).rows[0]!.oid;
		sleep = (await fx.pg.query("SELECT 'pg_sleep(float8)'::regprocedure::oid::int AS oid")).rows[0]!.oid;
	});
	after(async () => {
		await fx?.stop();
	});
	printLogsOnFailure(() => [["postgres", fx?.pg]]);

	test("a call that deleted a row leaves a statement event with its argument", async () => {
		const c = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("root"));
		try {
			c.send(functionCall(purge, ["(3,n3)"]));
			const ms = await c.until("readyForQuery");
			assert.equal(errorOf(ms), undefined, JSON.stringify(ms));
			assert.ok(ms.some((m) => m.type === "functionCallResponse"));
			assert.equal(await count(), 2);
		} finally {
			c.end();
		}
		const events = calls(purge);
		assert.equal(events.length, 1, `no (or more than one) statement event for the call: ${JSON.stringify(fx.recorder.statements())}`);
		assert.deepEqual(events[0]!.params, ["(3,n3)"]);
		assert.deepEqual(events[0]!.statementKinds, ["FUNCTIONCALL"]);
		assert.equal(events[0]!.decision, "allow");
		assert.equal(events[0]!.error, undefined);
	});

	test("a call that failed is recorded with its error", async () => {
		const c = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("root"));
		try {
			c.send(functionCall(purge, ["(not a row"]));
			const ms = await c.until("readyForQuery");
			assert.ok(errorOf(ms), JSON.stringify(ms));
		} finally {
			c.end();
		}
		const events = calls(purge).filter((e) => e.params?.[0] === "(not a row");
		assert.equal(events.length, 1, JSON.stringify(fx.recorder.statements()));
		assert.equal(events[0]!.error?.code, "22P02"); // malformed record literal
	});

	test("a call still running when the session ends is recorded then", async () => {
		const c = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("root"));
		c.send(functionCall(sleep, ["600"]));
		await until("pg_sleep running", async () => (await fx.pg.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event = 'PgSleep'")).rows[0]!.n > 0);
		c.end();
		await until("the session's end", () => fx.recorder.sessions.every((s) => s.end !== undefined));
		const events = calls(sleep);
		assert.equal(events.length, 1, JSON.stringify(fx.recorder.statements()));
		assert.deepEqual(events[0]!.params, ["600"]);
		assert.equal(events[0]!.error?.code, "57P01");
	});
});
