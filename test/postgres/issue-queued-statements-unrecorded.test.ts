// Regression (red-team round 10 on recordings: unrecorded actions). A client runs ahead of the
// server: statements it sends while one runs are forwarded and wait in the server's input. When the
// session ended (the client closed its socket, a grant ended, shutdown) only the first unanswered
// statement was recorded (as interrupted); the ones queued behind it were not, yet PostgreSQL reads
// and runs them once the first ends: `SELECT pg_sleep(3)` and `INSERT INTO q1 ...` sent as two
// Queries before the client closed its socket inserted the row and the recording showed only the
// sleep. Every forwarded statement without an answer is recorded now (`not answered: ... it may have
// run`): later statements of the running Query, pipelined Queries, and extended-protocol Executes.
// The running one too, unless the gateway cancelled it (grant end, shutdown): it was recorded as
// interrupted when the client left, though nothing stopped it.
import assert from "node:assert/strict";
import type { Socket } from "node:net";
import { after, before, test } from "node:test";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { CONNECTION, type Fixture, startFixture } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

let fx: Fixture;
before(async () => {
	fx = await startFixture();
	await fx.pg.query("CREATE TABLE q1 (v text)");
});
after(async () => {
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

async function until(what: string, ok: () => boolean | Promise<boolean>): Promise<void> {
	const deadline = Date.now() + 60_000;
	while (!(await ok())) {
		if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
		await new Promise((r) => setTimeout(r, 50));
	}
}

const sleeping = async () => (await fx.pg.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE wait_event = 'PgSleep'")).rows[0]!.n > 0;
const inserted = async (v: string) => (await fx.pg.query("SELECT count(*)::int AS n FROM q1 WHERE v = $1", [v])).rows[0]!.n > 0;

/** Send `messages`, wait until the sleep runs upstream, then drop the connection without a word. */
async function sendAndVanish(messages: Buffer[], value: string): Promise<void> {
	const sessions = fx.recorder.sessions.length;
	const c = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("alice"));
	c.send(...messages);
	await until("pg_sleep running", sleeping);
	(c as unknown as { socket: Socket }).socket.destroy();
	await until("the session's end", () => fx.recorder.sessions.slice(sessions).every((s) => s.end !== undefined));
	// the queued statement runs upstream after the client is gone
	await until(`the row ${value}`, () => inserted(value));
}

const recorded = (sql: string) => fx.recorder.statements().filter((e) => e.sql === sql);

test("pipelined Queries queued behind a running one are recorded when the client vanishes", async () => {
	const insert = "INSERT INTO q1 VALUES ('pipelined')";
	await sendAndVanish([clientMessages.query("SELECT pg_sleep(3)"), clientMessages.query(insert)], "pipelined");
	const events = recorded(insert);
	assert.equal(events.length, 1, `the INSERT that ran is not in the recording: ${JSON.stringify(fx.recorder.statements())}`);
	assert.match(events[0]!.error?.message ?? "", /not answered: .*it may have run/);
	assert.ok(events[0]!.statementKinds.map((k) => k.toUpperCase()).includes("INSERT"), JSON.stringify(events[0]));
});

test("the rest of a multi-statement Query is recorded", async () => {
	const insert = "INSERT INTO q1 VALUES ('multi')";
	await sendAndVanish([clientMessages.query(`SELECT pg_sleep(3); ${insert}`)], "multi");
	const events = recorded(insert);
	assert.equal(events.length, 1, JSON.stringify(fx.recorder.statements()));
	assert.match(events[0]!.error?.message ?? "", /not answered/);
});

test("extended-protocol Executes queued behind a running one are recorded", async () => {
	const insert = "INSERT INTO q1 VALUES ($1)";
	await sendAndVanish(
		[
			clientMessages.parse("", "SELECT pg_sleep(3.0)"),
			clientMessages.bind("", "", []),
			clientMessages.execute("", 0),
			clientMessages.sync(),
			clientMessages.parse("", insert),
			clientMessages.bind("", "", [Buffer.from("extended")]),
			clientMessages.execute("", 0),
			clientMessages.sync(),
		],
		"extended",
	);
	const events = recorded(insert);
	assert.equal(events.length, 1, JSON.stringify(fx.recorder.statements()));
	assert.deepEqual(events[0]!.params, ["extended"]);
	assert.match(events[0]!.error?.message ?? "", /not answered/);
	// the running one is recorded once, as not answered: nothing stopped it when the client went
	// away, it ran to its end upstream (it was recorded as "interrupted")
	const sleeps = recorded("SELECT pg_sleep(3.0)");
	assert.equal(sleeps.length, 1, JSON.stringify(sleeps));
	assert.match(sleeps[0]!.error?.message ?? "", /^not answered: .*client-closed.*it may have run$/);
});
