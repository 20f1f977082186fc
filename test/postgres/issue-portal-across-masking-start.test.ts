// Regression (red-team round 12: masking). A protocol portal described while no masking applied
// got no plan (nothing to mask then), and every later Execute of it sent its rows as they came: a
// read-only session bound `SELECT phone FROM customers ORDER BY id` to a named portal in an open
// transaction and ran it with a row limit; once a MaskingPolicy was merged, Execute of the same
// portal went on sending raw phones (SQL FETCH of it was masked, being a new statement); a portal
// planned under an earlier policy likewise missed a rule merged since. A portal planned under
// another policy than the one in force is described and planned again at its next Execute.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import type { ServerMessage } from "../../gateway/postgres/protocol.ts";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { assertNoneOf, CONNECTION, DEFAULT_GRANTS, type Fixture, startFixture } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

let fx: Fixture;
const phones: string[] = [];
before(async () => {
	fx = await startFixture({});
	phones.push(...(await fx.pg.query("SELECT phone FROM customers ORDER BY id")).rows.map((r) => r.phone as string));
});
after(async () => {
	await fx?.stop();
});

const values = (ms: ServerMessage[]) => ms.flatMap((m) => (m.type === "dataRow" ? m.values.map((v) => v?.toString("utf8") ?? null) : []));
const noError = (ms: ServerMessage[]) => assert.equal(ms.find((m) => m.type === "errorResponse"), undefined, JSON.stringify(ms));

test("a portal suspended before masking applied is masked at its next Execute", async () => {
	const c = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("bob"));
	try {
		c.send(clientMessages.query("BEGIN"));
		noError(await c.until("readyForQuery"));
		c.send(
			clientMessages.parse("", "SELECT phone FROM customers ORDER BY id"),
			clientMessages.bind("p", "", [], []),
			clientMessages.describe("P", "p"),
			clientMessages.execute("p", 1),
			clientMessages.sync(),
		);
		const first = await c.until("readyForQuery");
		noError(first);
		// no masking yet: the first phone as it is
		assert.deepEqual(values(first), [phones[0]]);
		fx.store.update(fx.makeBundle(2, DEFAULT_GRANTS, { maskRules: CORPUS_MASK_RULES }));
		c.send(clientMessages.execute("p", 3), clientMessages.sync());
		const next = await c.until("readyForQuery");
		noError(next);
		assert.equal(values(next).length, 3);
		assertNoneOf(phones, values(next));
		// and a describe-less Execute in a later segment too
		c.send(clientMessages.execute("p", 2), clientMessages.sync());
		const later = await c.until("readyForQuery");
		noError(later);
		assert.equal(values(later).length, 2);
		assertNoneOf(phones, values(later));
	} finally {
		c.socket.end();
	}
});

test("a portal described under masking keeps its plan across Executes", async () => {
	const c = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("bob"));
	try {
		c.send(clientMessages.query("BEGIN"));
		noError(await c.until("readyForQuery"));
		c.send(
			clientMessages.parse("", "SELECT id, phone FROM customers ORDER BY id"),
			clientMessages.bind("q", "", [], []),
			clientMessages.describe("P", "q"),
			clientMessages.execute("q", 1),
			clientMessages.sync(),
		);
		const first = await c.until("readyForQuery");
		noError(first);
		c.send(clientMessages.execute("q", 2), clientMessages.sync());
		const next = await c.until("readyForQuery");
		noError(next);
		assert.deepEqual(values(next).filter((_, i) => i % 2 === 0), ["2", "3"]);
		assertNoneOf(phones, [...values(first), ...values(next)]);
	} finally {
		c.socket.end();
	}
});

test("a portal planned under an earlier policy takes a rule merged since at its next Execute", async () => {
	const names = (await fx.pg.query("SELECT name FROM customers ORDER BY id")).rows.map((r) => r.name as string);
	fx.store.update(fx.makeBundle(3, DEFAULT_GRANTS, { maskRules: CORPUS_MASK_RULES }));
	const c = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("bob"));
	try {
		c.send(clientMessages.query("BEGIN"));
		noError(await c.until("readyForQuery"));
		c.send(
			clientMessages.parse("", "SELECT name FROM customers ORDER BY id"),
			clientMessages.bind("r", "", [], []),
			clientMessages.describe("P", "r"),
			clientMessages.execute("r", 1),
			clientMessages.sync(),
		);
		const first = await c.until("readyForQuery");
		noError(first);
		assert.deepEqual(values(first), [names[0]], "names are not masked by the corpus rules");
		const withNames = [...CORPUS_MASK_RULES, { name: "names", columns: ["customers.name"], strategy: { type: "redact" as const } }];
		fx.store.update(fx.makeBundle(4, DEFAULT_GRANTS, { maskRules: withNames }));
		c.send(clientMessages.execute("r", 2), clientMessages.sync());
		const next = await c.until("readyForQuery");
		noError(next);
		assert.equal(values(next).length, 2);
		assertNoneOf(names, values(next));
	} finally {
		c.socket.end();
	}
});
