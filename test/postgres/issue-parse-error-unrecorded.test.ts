// Regression (red-team round 10 on recordings: unrecorded actions). A statement the server refused at
// Parse left no statement event: Parse `SELECT * FROM payroll_2027`, Bind, Execute, Sync answered
// 42P01 (the table does not exist: an agent probing for names learns as much from the error as from a
// result), and the recording showed nothing, while the same statement as a simple Query is recorded
// with its error. Only Executes and Binds were recorded in the extended protocol; a refused Parse is
// recorded now with the server's error, whatever follows it in the segment (the server skips that).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { CONNECTION, type Fixture, startFixture } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

let fx: Fixture;
before(async () => {
	fx = await startFixture();
});
after(async () => {
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

test("a Parse the server refused is recorded with its error, as its simple-query twin is", async () => {
	const sql = "SELECT * FROM payroll_2027";
	const c = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("alice"));
	try {
		c.send(clientMessages.query(sql));
		await c.until("readyForQuery");
		c.send(clientMessages.parse("", sql), clientMessages.bind("", "", []), clientMessages.execute("", 0), clientMessages.sync());
		const ms = await c.until("readyForQuery");
		const err = ms.find((m) => m.type === "errorResponse") as { fields: Record<string, string> } | undefined;
		assert.equal(err?.fields.C, "42P01", JSON.stringify(ms));
		c.send(clientMessages.parse("named", `${sql} WHERE salary > 0`), clientMessages.sync());
		await c.until("readyForQuery");
	} finally {
		c.end();
	}
	const events = fx.recorder.statements().filter((e) => e.sql === sql);
	assert.equal(events.length, 2, `the simple Query and the Parse: ${JSON.stringify(fx.recorder.statements())}`);
	for (const e of events) assert.equal(e.error?.code, "42P01", JSON.stringify(e));
	const named = fx.recorder.statements().filter((e) => e.sql === `${sql} WHERE salary > 0`);
	assert.equal(named.length, 1, JSON.stringify(fx.recorder.statements()));
	assert.equal(named[0]!.error?.code, "42P01");
});
