/**
 * Regression (red-team round 8: masking, portals). SQL `EXECUTE s` and `FETCH ... FROM c` sent
 * through the extended protocol were resolved once, at Parse, and masking planned every later
 * portal of that statement from the body s (or c) held then. PostgreSQL looks the name up when a
 * portal of the statement first runs. Each case showed raw phone numbers (`phone || ''`, no column
 * origin) to a read-only grant:
 *  1. node-postgres re-binding a named statement `EXECUTE s` after `DEALLOCATE s; PREPARE s AS
 *     SELECT phone || '' ...` (it sends Bind/Describe/Execute without a Parse);
 *  2. the same with `FETCH ALL FROM c` after `CLOSE c; DECLARE c CURSOR FOR SELECT phone || '' ...`;
 *  3. a portal of `EXECUTE s` bound and described, s redefined, then the portal executed (the plan
 *     of the Describe was kept);
 *  4. the same inside one segment: Describe answered (Flush), then Close of s and a Parse of s over
 *     phones, then Execute.
 * And what must keep working: a portal run in pieces keeps the plan of its first run (its rows are
 * fixed then) even when s changes afterwards; clean results stay clean.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { DEMO_RULES } from "../../gateway/policy/corpus/catalog.ts";
import type { ServerMessage } from "../../gateway/postgres/protocol.ts";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { assertNoneOf, CONNECTION, type Fixture, startFixture } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

let fx: Fixture;
let phones: string[];
let names: string[];

before(async () => {
	fx = await startFixture({ maskRules: DEMO_RULES, grants: [{ name: "ro", user: "ro", access: "read-only" }] });
	const r = await fx.pg.query<{ phone: string; name: string }>("select phone, name from customers order by id");
	phones = r.rows.map((x) => x.phone);
	names = r.rows.map((x) => x.name);
});
after(async () => {
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

const CLEAN = "select name || '' as x from customers order by id";
const MASKED = "select phone || '' as x from customers order by id";

const login = async () => RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("ro"));
const rows = (ms: ServerMessage[]) =>
	ms.filter((m): m is Extract<ServerMessage, { type: "dataRow" }> => m.type === "dataRow").map((m) => m.values[0]?.toString() ?? null);
async function simple(c: RawClient, sql: string): Promise<void> {
	c.send(clientMessages.query(sql));
	const ms = await c.until("readyForQuery");
	const err = ms.find((m) => m.type === "errorResponse");
	assert.equal(err, undefined, `${sql}: ${JSON.stringify(err)}`);
}
function assertMasked(ms: ServerMessage[], label: string, count: number): void {
	const values = rows(ms);
	assert.equal(values.length, count, `${label}: ${JSON.stringify(ms.map((m) => m.type))}`);
	assertNoneOf(phones, values);
}

test("node-postgres: a named statement `EXECUTE s` re-bound after s was redefined over phones", async () => {
	const c = await fx.connect("ro");
	try {
		await c.query(`PREPARE s AS ${CLEAN}`);
		const q = { name: "q", text: "EXECUTE s" };
		assert.deepEqual((await c.query(q)).rows.map((r) => r.x), names, "clean values stay clean");
		await c.query("DEALLOCATE s");
		await c.query(`PREPARE s AS ${MASKED}`);
		const r = await c.query(q);
		assert.equal(r.rows.length, phones.length);
		assertNoneOf(phones, r.rows);
	} finally {
		await c.end();
	}
});

test("node-postgres: a named statement `FETCH ALL FROM c` re-bound after c was re-declared over phones", async () => {
	const c = await fx.connect("ro");
	try {
		await c.query("BEGIN");
		await c.query(`DECLARE c CURSOR FOR ${CLEAN}`);
		const q = { name: "f", text: "FETCH ALL FROM c" };
		assert.deepEqual((await c.query(q)).rows.map((r) => r.x), names, "clean values stay clean");
		await c.query("CLOSE c");
		await c.query(`DECLARE c CURSOR FOR ${MASKED}`);
		const r = await c.query(q);
		assert.equal(r.rows.length, phones.length);
		assertNoneOf(phones, r.rows);
		await c.query("ROLLBACK");
	} finally {
		await c.end();
	}
});

test("a portal of `EXECUTE s` described before s was redefined is planned when it runs", async () => {
	const c = await login();
	try {
		await simple(c, "begin");
		await simple(c, `prepare s as ${CLEAN}`);
		c.send(clientMessages.parse("q", "execute s"), clientMessages.bind("p", "q"), clientMessages.describe("P", "p"), clientMessages.sync());
		const described = await c.until("readyForQuery");
		assert.ok(described.some((m) => m.type === "rowDescription"), JSON.stringify(described));
		await simple(c, "deallocate s");
		await simple(c, `prepare s as ${MASKED}`);
		c.send(clientMessages.execute("p"), clientMessages.sync());
		assertMasked(await c.until("readyForQuery"), "describe, redefine, execute", phones.length);
		await simple(c, "rollback");
	} finally {
		c.end();
	}
});

test("within one segment: Describe answered, then Close and Parse of s, then Execute", async () => {
	const c = await login();
	try {
		await simple(c, "begin");
		await simple(c, `prepare s as ${CLEAN}`);
		c.send(clientMessages.parse("q", "execute s"), clientMessages.bind("p", "q"), clientMessages.describe("P", "p"), clientMessages.flush());
		await c.until("rowDescription");
		c.send(clientMessages.close("S", "s"), clientMessages.parse("s", MASKED), clientMessages.execute("p"), clientMessages.sync());
		assertMasked(await c.until("readyForQuery"), "close and parse in the segment", phones.length);
		await simple(c, "rollback");
	} finally {
		c.end();
	}
});

test("still works: a portal run in pieces keeps its first run's plan when s changes afterwards", async () => {
	const c = await login();
	try {
		await simple(c, "begin");
		await simple(c, `prepare s as ${MASKED}`);
		c.send(clientMessages.parse("q", "execute s"), clientMessages.bind("p", "q"), clientMessages.execute("p", 2), clientMessages.sync());
		const first = await c.until("readyForQuery");
		assert.ok(first.some((m) => m.type === "portalSuspended"), JSON.stringify(first.map((m) => m.type)));
		assertMasked(first, "first piece", 2);
		await simple(c, "deallocate s");
		await simple(c, `prepare s as ${CLEAN}`);
		// the rest of the rows were computed at the first run: phones, still masked
		c.send(clientMessages.execute("p"), clientMessages.sync());
		assertMasked(await c.until("readyForQuery"), "rest", phones.length - 2);
		await simple(c, "rollback");
		// and a clean s through a fresh portal shows its values
		await simple(c, "begin");
		await simple(c, `prepare s2 as ${CLEAN}`);
		c.send(clientMessages.parse("q2", "execute s2"), clientMessages.bind("p2", "q2"), clientMessages.execute("p2"), clientMessages.sync());
		assert.deepEqual(rows(await c.until("readyForQuery")), names);
		await simple(c, "rollback");
	} finally {
		c.end();
	}
});
