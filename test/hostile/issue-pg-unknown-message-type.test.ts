/**
 * Regression (found by fuzzing the client-message parser through the listener, counterexample
 * [0, 0, 0] then Sync): after authentication the parser waited for the length of a message whose
 * type byte is not a frontend message type, swallowing the following Sync and Query as "body" —
 * the session hung. PostgreSQL itself rejects an unknown type byte at once; so does the gateway now
 * (FATAL 08P01 "invalid frontend message type").
 */
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, test } from "node:test";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { decodeServerMessage, ServerParser } from "../../gateway/postgres/server-parser.ts";
import type { ServerMessage } from "../../gateway/postgres/protocol.ts";
import { CONNECTION, type GatewayFixture, startGatewayFixture, waitFor } from "../faults/fixture.ts";

let f: GatewayFixture;
before(async () => {
	f = await startGatewayFixture({ listener: { allowInsecure: true } });
});
after(async () => {
	await f?.stop();
});

test("issue pg-unknown-message-type: an unknown type byte after authentication ends the session with FATAL 08P01 at once", async () => {
	const msgs: ServerMessage[] = [];
	let closed = false;
	const parser = new ServerParser();
	const s = connect(f.port, "127.0.0.1");
	s.on("data", (c: Buffer) => {
		parser.push(c);
		for (let fr = parser.next(); fr; fr = parser.next()) msgs.push(decodeServerMessage(fr));
	});
	s.on("close", () => {
		closed = true;
	});
	s.on("error", () => undefined);
	s.write(clientMessages.startup({ user: "bob", database: CONNECTION }));
	await waitFor("password request", () => msgs.some((m) => m.type === "authentication"));
	s.write(clientMessages.password(await f.token("bob")));
	await waitFor("ready", () => msgs.some((m) => m.type === "readyForQuery"));
	s.write(Buffer.from([0, 0, 0]));
	s.write(clientMessages.query("SELECT 1"));
	await waitFor("session ended", () => closed, 30_000);
	const err = msgs.find((m) => m.type === "errorResponse");
	assert.ok(err && err.type === "errorResponse", JSON.stringify(msgs.map((m) => m.type)));
	assert.equal(err.fields.C, "08P01");
	assert.match(err.fields.M ?? "", /invalid frontend message type 0/);
	const c = await f.connect("alice");
	await c.end();
});
