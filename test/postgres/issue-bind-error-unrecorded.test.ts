// Regression (red-team round 9, a lead left by the masking round): an extended-protocol statement
// whose Bind the server refused left no statement event. `SELECT $1::int` bound with 'abc' fails at
// Bind (22P02); the Execute behind it is skipped, and the recording said nothing of the statement,
// its parameters or the error: an agent's attempts that fail at Bind were invisible to auditors.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import { type Fixture, startFixture } from "./fixture.ts";

let fx: Fixture;
let c: pg.Client;
before(async () => {
	fx = await startFixture();
	c = await fx.connect("alice");
});
after(async () => {
	await c?.end().catch(() => undefined);
	await fx?.stop();
});

test("a statement the server refuses at Bind is recorded with its parameters and the error", async () => {
	await assert.rejects(c.query("SELECT $1::int AS n", ["abc"]), (e: Error & { code?: string }) => e.code === "22P02");
	const event = fx.recorder.statements().find((e) => e.sql === "SELECT $1::int AS n");
	assert.ok(event, "no statement event for the refused Bind");
	assert.deepEqual(event.params, ["abc"]);
	assert.equal(event.error?.code, "22P02");
	// The session goes on, and the next statement is recorded once, on its own.
	assert.deepEqual((await c.query("SELECT $1::int AS n", ["7"])).rows, [{ n: 7 }]);
	const again = fx.recorder.statements().filter((e) => e.sql === "SELECT $1::int AS n");
	assert.equal(again.length, 2);
	assert.deepEqual(again[1]?.params, ["7"]);
	assert.equal(again[1]?.error, undefined);
});
