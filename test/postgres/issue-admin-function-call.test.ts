// Regression (red-team round: guardrails and access levels). The protocol's FunctionCall message
// (fast path) calls a function by OID: nothing to classify. It was refused for non-admin grants and
// forwarded for admin grants, whose GuardrailRules are their only guard, and which treat other code
// they cannot see as meeting every rule (issue-admin-invisible-code). Through the real gateway to a
// real PostgreSQL, under an admin grant whose rule blocks the function purge, FunctionCall(purge's
// OID, '(1,n1)') deleted a row (`SELECT purge(t2) FROM t2` is refused). Now a FunctionCall meets
// the strongest SQL rule of the connection: refused when any rule blocks or needs approval (a
// fast-path call cannot be held for approval); forwarded when there is none.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import type { ServerMessage } from "../../gateway/postgres/protocol.ts";
import { clientMessages, Writer } from "../../gateway/postgres/serializer.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { CONNECTION, type Fixture, startFixture } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

const GUARDRAILS: GuardrailRule[] = [{ name: "no-purge", action: "block", sql: { functions: ["purge"] } }];

/** FunctionCall: one text argument, text result. */
function functionCall(oid: number, arg: string): Buffer {
	const a = Buffer.from(arg);
	return new Writer().int32(oid).int16(1).int16(0).int16(1).int32(a.length).bytes(a).int16(0).message(0x46); // F
}

const errorOf = (ms: ServerMessage[]) => ms.find((m) => m.type === "errorResponse") as { fields: Record<string, string> } | undefined;

describe("FunctionCall under an admin grant meets the connection's rules", () => {
	let fx: Fixture;
	let unruled: Fixture;
	let oid = 0;
	const count = async (): Promise<number> => (await fx.pg.query("SELECT count(*)::int AS n FROM t2")).rows[0]!.n;
	before(async () => {
		fx = await startFixture({ guardrails: GUARDRAILS });
		await fx.pg.query("CREATE TABLE t2 (id int PRIMARY KEY, note text)");
		await fx.pg.query("INSERT INTO t2 SELECT g, 'n' || g FROM generate_series(1, 3) g");
		await fx.pg.query("CREATE FUNCTION purge(t2) RETURNS int LANGUAGE sql AS 'DELETE FROM t2 WHERE id = $1.id RETURNING 1'");
		oid = (await fx.pg.query("SELECT 'purge(t2)'::regprocedure::oid::int AS oid")).rows[0]!.oid;
		// the same server, a gateway whose connection has no guardrail rules
		unruled = await startFixture({ pg: fx.pg });
	});
	after(async () => {
		await unruled?.stop();
		await fx?.stop();
	});
	printLogsOnFailure(() => [["postgres", fx?.pg]]);

	test("refused when a rule could apply", async () => {
		const c = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("root"));
		try {
			c.send(functionCall(oid, "(1,n1)"));
			const ms = await c.until("readyForQuery");
			assert.equal(errorOf(ms)?.fields.C, "42501", JSON.stringify(ms));
			assert.match(errorOf(ms)?.fields.M ?? "", /FunctionCall/);
			assert.equal(await count(), 3);
			// the session goes on
			c.send(clientMessages.query("SELECT 1"));
			assert.ok((await c.until("readyForQuery")).some((m) => m.type === "dataRow"));
		} finally {
			c.end();
		}
	});

	test("forwarded for an admin grant without rules", async () => {
		const c = await RawClient.login(unruled.port, unruled.caPem, CONNECTION, await unruled.token("root"));
		try {
			c.send(functionCall(oid, "(3,n3)"));
			const ms = await c.until("readyForQuery");
			assert.equal(errorOf(ms), undefined, JSON.stringify(ms));
			assert.ok(ms.some((m) => m.type === "functionCallResponse"));
			assert.equal(await count(), 2);
		} finally {
			c.end();
		}
	});
});
