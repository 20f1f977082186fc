/**
 * Regression: the gateway's idea of what a prepared-statement or portal name holds upstream could
 * differ from the server's, and masking planned from the wrong statement. Each case showed raw
 * phone numbers (hash-masked column) to a read-only grant:
 *  1. SQL DEALLOCATE of a protocol statement, then SQL PREPARE of a masked query under its name;
 *  2. a re-Parse of a taken name fails upstream (42P05), the next segment's Bind (pipelined) used
 *     the failed definition;
 *  3. a Bind over a WITH HOLD cursor's name fails (42P03), Execute of that name used the failed Bind;
 *  4. a Describe skipped after an error marked the portal described, Execute after ROLLBACK TO
 *     SAVEPOINT sent rows without a plan.
 * Plus what must keep working: cursor-style fetches across Syncs and a pipelined Parse; Sync; Bind.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { ServerMessage } from "../../gateway/postgres/protocol.ts";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { DEMO_RULES } from "../../gateway/policy/corpus/catalog.ts";
import { CONNECTION, type Fixture, startFixture } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

let fx: Fixture;
let phones: Set<string>;
before(async () => {
	fx = await startFixture({ maskRules: DEMO_RULES, grants: [{ name: "ro", user: "ro", access: "read-only" }] });
	const r = await fx.pg.query<{ x: string }>("select upper(phone) as x from customers");
	phones = new Set(r.rows.map((row) => row.x));
});
after(async () => {
	await fx?.stop();
});

const MASKED = "select upper(phone) as x from customers";
const CLEAN = "select 'a'::text as x";
const login = async () => RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("ro"));
const rows = (ms: ServerMessage[]) =>
	ms.filter((m): m is Extract<ServerMessage, { type: "dataRow" }> => m.type === "dataRow").map((m) => m.values[0]?.toString() ?? null);
function assertMasked(ms: ServerMessage[], label: string): void {
	const values = rows(ms);
	assert.ok(values.length > 0, `${label}: no rows (${JSON.stringify(ms.map((m) => m.type))})`);
	const leaked = values.filter((v) => v !== null && phones.has(v));
	assert.deepEqual(leaked.slice(0, 3), [], `${label}: raw phone numbers reached the client`);
}

test("SQL DEALLOCATE + PREPARE under a protocol statement's name: the Bind sees the SQL body", async () => {
	const c = await login();
	c.send(clientMessages.parse("s", CLEAN), clientMessages.sync());
	await c.until("readyForQuery");
	c.send(clientMessages.query("deallocate s"));
	await c.until("readyForQuery");
	c.send(clientMessages.query(`prepare s as ${MASKED}`));
	await c.until("readyForQuery");
	c.send(clientMessages.bind("", "s"), clientMessages.execute(""), clientMessages.sync());
	assertMasked(await c.until("readyForQuery"), "deallocate+prepare");
	c.end();
});

test("a failed re-Parse does not redefine the name for a pipelined Bind in the next segment", async () => {
	const c = await login();
	c.send(clientMessages.parse("s", MASKED), clientMessages.sync());
	await c.until("readyForQuery");
	c.send(clientMessages.parse("s", CLEAN), clientMessages.sync(), clientMessages.bind("", "s"), clientMessages.execute(""), clientMessages.sync());
	const first = await c.until("readyForQuery");
	assert.equal((first[0] as Extract<ServerMessage, { type: "errorResponse" }>).fields.C, "42P05");
	assertMasked(await c.until("readyForQuery"), "failed re-parse");
	c.end();
});

test("a failed Bind over a WITH HOLD cursor's name does not redefine the portal", async () => {
	const c = await login();
	c.send(clientMessages.query(`declare p cursor with hold for ${MASKED}`));
	await c.until("readyForQuery");
	c.send(clientMessages.parse("c", CLEAN), clientMessages.bind("p", "c"), clientMessages.sync());
	const bind = await c.until("readyForQuery");
	assert.ok(bind.some((m) => m.type === "errorResponse"));
	c.send(clientMessages.execute("p"), clientMessages.sync());
	assertMasked(await c.until("readyForQuery"), "failed bind");
	c.send(clientMessages.query("close p"));
	await c.until("readyForQuery");
	c.end();
});

test("a Describe skipped after an error does not stand in for the plan of a later Execute", async () => {
	const c = await login();
	c.send(clientMessages.query("begin"));
	await c.until("readyForQuery");
	c.send(clientMessages.parse("m", MASKED), clientMessages.bind("p", "m"), clientMessages.sync());
	await c.until("readyForQuery");
	c.send(clientMessages.query("savepoint s"));
	await c.until("readyForQuery");
	c.send(
		clientMessages.parse("z", "select 1/0"),
		clientMessages.bind("z1", "z"),
		clientMessages.execute("z1"),
		clientMessages.describe("P", "p"),
		clientMessages.sync(),
	);
	await c.until("readyForQuery");
	c.send(clientMessages.query("rollback to savepoint s"));
	await c.until("readyForQuery");
	c.send(clientMessages.execute("p"), clientMessages.sync());
	assertMasked(await c.until("readyForQuery"), "skipped describe");
	c.send(clientMessages.query("rollback"));
	await c.until("readyForQuery");
	c.end();
});

test("still works: a portal fetched in pieces across Syncs, and Parse; Sync; Bind pipelined", async () => {
	const c = await login();
	c.send(clientMessages.query("begin"));
	await c.until("readyForQuery");
	c.send(
		clientMessages.parse("f", "select id, upper(phone) as x from customers order by id"),
		clientMessages.bind("cur", "f"),
		clientMessages.describe("P", "cur"),
		clientMessages.execute("cur", 5),
		clientMessages.sync(),
	);
	const first = await c.until("readyForQuery");
	assert.equal(rows(first).length, 5);
	assert.ok(first.some((m) => m.type === "portalSuspended"));
	c.send(clientMessages.execute("cur", 5), clientMessages.sync(), clientMessages.execute("cur", 5), clientMessages.sync());
	const second = await c.until("readyForQuery");
	const third = await c.until("readyForQuery");
	const ids = [...first, ...second, ...third]
		.filter((m): m is Extract<ServerMessage, { type: "dataRow" }> => m.type === "dataRow")
		.map((m) => Number(m.values[0]?.toString()));
	assert.deepEqual(ids, Array.from({ length: 15 }, (_, i) => i + 1), "ids are not masked and come in order");
	for (const m of [...second, ...third]) {
		if (m.type === "dataRow") assert.ok(!phones.has(m.values[1]?.toString() ?? ""), "phone masked in later fetches");
	}
	c.send(clientMessages.query("commit"));
	await c.until("readyForQuery");
	c.send(clientMessages.parse("n", "select id from orders order by id limit 2"), clientMessages.sync(), clientMessages.bind("", "n"), clientMessages.execute(""), clientMessages.sync());
	await c.until("readyForQuery");
	assert.deepEqual(rows(await c.until("readyForQuery")), ["1", "2"]);
	c.end();
});
