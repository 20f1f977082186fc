// Regression (red-team round 9 on guardrails, the lead "code run at Bind time"). The server converts
// a Bind's parameters when it makes the portal, and a domain's input runs the domain's CHECK, which
// may call any function: with `CREATE DOMAIN noted AS text CHECK (note(VALUE))`, note the agent's
// own SQL function inserting into notes, Parse `SELECT $1::noted`, Bind 'hello' and Sync, with no
// Execute, wrote a row. Only Executes (and, since round 9, Binds the server refused) were recorded,
// so the recording showed nothing of the statement or its parameter: a write no auditor could see.
// A Bind whose portal has no Execute queued behind it is recorded now (commandTag BIND).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { CONNECTION, type Fixture, startFixture } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

let fx: Fixture;
let c: pg.Client;
before(async () => {
	fx = await startFixture();
	c = await fx.connect("alice");
	await c.query("CREATE TABLE notes (body text)");
	await c.query("CREATE FUNCTION note(text) RETURNS boolean LANGUAGE sql AS $$ INSERT INTO notes VALUES ($1) RETURNING true $$");
	await c.query("CREATE DOMAIN noted AS text CHECK (note(VALUE))");
});
after(async () => {
	await c?.end().catch(() => undefined);
	await fx?.stop();
});

const notes = async (): Promise<string[]> => (await fx.pg.query("SELECT body FROM notes ORDER BY body")).rows.map((r) => r.body as string);

test("a Bind without an Execute, whose parameter ran code, is recorded with its parameters", async () => {
	const raw = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("alice"));
	raw.send(clientMessages.parse("", "SELECT $1::noted AS n"), clientMessages.bind("", "", [Buffer.from("hello")]), clientMessages.sync());
	const ms = await raw.until("readyForQuery");
	raw.end();
	assert.ok(ms.some((m) => m.type === "bindComplete"), JSON.stringify(ms));
	assert.deepEqual(await notes(), ["hello"], "the domain's CHECK ran at Bind");
	const event = fx.recorder.statements().find((e) => e.sql === "SELECT $1::noted AS n");
	assert.ok(event, "no statement event for the Bind that wrote a row");
	assert.deepEqual(event.params, ["hello"]);
	assert.equal(event.commandTag, "BIND");
	assert.equal(event.error, undefined);
});

test("a Bind followed by its Execute is recorded once, as the Execute", async () => {
	await c.query({ text: "SELECT $1::noted AS m", values: ["again"] });
	const events = fx.recorder.statements().filter((e) => e.sql === "SELECT $1::noted AS m");
	assert.equal(events.length, 1, JSON.stringify(events));
	assert.equal(events[0]?.commandTag, "SELECT 1");
	assert.deepEqual(events[0]?.params, ["again"]);
});
