/**
 * Regression (second review of the name tracking): the gateway's idea of what a prepared-statement,
 * cursor or portal name holds upstream still differed from the server's, and masking planned from
 * the wrong statement. Each case showed raw phone numbers (hash-masked column) to a read-only grant:
 *  1. a DEALLOCATE that never ran (`SELECT 1/0; DEALLOCATE s`) made the session state forget s; a
 *     later `PREPARE s AS <clean>`, refused upstream as a duplicate, became the only body known, and
 *     EXECUTE s ran the masked one;
 *  2. the same with a WITH HOLD cursor: `SELECT 1/0; CLOSE c`, a refused DECLARE c, FETCH c;
 *  3. SQL EXECUTE of a protocol-level (Parse) statement's name after a refused SQL PREPARE of it;
 *  4. SQL FETCH of a protocol portal's name after a refused DECLARE of it (inside a savepoint);
 *  5. a Bind after a statement that may change names in the same pipeline segment took the SQL
 *     bodies of the name (a refused PREPARE) for what it holds, ignoring the protocol statement.
 * And a hang: an extended-protocol COPY FROM STDIN as libpq sends it (a Sync after Execute, which the
 * server ignores in copy-in mode, and another after CopyDone) left a Sync expecting an answer that
 * never came: the next query closed the session, and a Bind of an older name waited forever.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { DEMO_RULES } from "../../gateway/policy/corpus/catalog.ts";
import type { ServerMessage } from "../../gateway/postgres/protocol.ts";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { CONNECTION, type Fixture, startFixture } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

let fx: Fixture;
let phones: Set<string>;
before(async () => {
	fx = await startFixture({
		maskRules: DEMO_RULES,
		grants: [
			{ name: "ro", user: "ro", access: "read-only" },
			{ name: "rw", user: "rw", access: "read-write" },
		],
	});
	const r = await fx.pg.query<{ x: string }>("select upper(phone) as x from customers");
	phones = new Set(r.rows.map((row) => row.x));
});
after(async () => {
	await fx?.stop();
});

const MASKED = "select upper(phone) as x from customers";
const CLEAN = "select 'a'::text as x";
const login = async (user = "ro") => RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token(user));
const errors = (ms: ServerMessage[]) => ms.filter((m): m is Extract<ServerMessage, { type: "errorResponse" }> => m.type === "errorResponse").map((m) => m.fields.C);
const rows = (ms: ServerMessage[]) =>
	ms.filter((m): m is Extract<ServerMessage, { type: "dataRow" }> => m.type === "dataRow").map((m) => m.values[0]?.toString() ?? null);
function assertMasked(ms: ServerMessage[], label: string): void {
	const values = rows(ms);
	assert.ok(values.length > 0, `${label}: no rows (${JSON.stringify(ms.map((m) => m.type))})`);
	const leaked = values.filter((v) => v !== null && phones.has(v));
	assert.deepEqual(leaked.slice(0, 3), [], `${label}: raw phone numbers reached the client`);
}
async function query(c: RawClient, sql: string): Promise<ServerMessage[]> {
	c.send(clientMessages.query(sql));
	return c.until("readyForQuery");
}

test("a DEALLOCATE that never ran does not hide the body a refused PREPARE of the name cannot replace", async () => {
	const c = await login();
	assert.deepEqual(errors(await query(c, `prepare s as ${MASKED}`)), []);
	assert.deepEqual(errors(await query(c, "select 1/0; deallocate s")), ["22012"]);
	assert.deepEqual(errors(await query(c, `prepare s as ${CLEAN}`)), ["42P05"]);
	assertMasked(await query(c, "execute s"), "EXECUTE after a DEALLOCATE that did not run");
	c.end();
});

test("a CLOSE that never ran does not hide a WITH HOLD cursor a refused DECLARE cannot replace", async () => {
	const c = await login();
	assert.deepEqual(errors(await query(c, `declare c cursor with hold for ${MASKED}`)), []);
	assert.deepEqual(errors(await query(c, "select 1/0; close c")), ["22012"]);
	assert.deepEqual(errors(await query(c, `declare c cursor with hold for ${CLEAN}`)), ["42P03"]);
	assertMasked(await query(c, "fetch all from c"), "FETCH after a CLOSE that did not run");
	await query(c, "close c");
	c.end();
});

test("SQL EXECUTE of a protocol statement's name runs the protocol statement", async () => {
	const c = await login();
	c.send(clientMessages.parse("s", MASKED), clientMessages.sync());
	await c.until("readyForQuery");
	assert.deepEqual(errors(await query(c, `prepare s as ${CLEAN}`)), ["42P05"]);
	assertMasked(await query(c, "execute s"), "SQL EXECUTE of a Parse name");
	c.end();
});

test("SQL FETCH of a protocol portal's name fetches the portal", async () => {
	const c = await login();
	await query(c, "begin");
	c.send(clientMessages.parse("m", MASKED), clientMessages.bind("p", "m"), clientMessages.sync());
	await c.until("readyForQuery");
	await query(c, "savepoint a");
	assert.deepEqual(errors(await query(c, `declare p cursor for ${CLEAN}`)), ["42P03"]);
	await query(c, "rollback to savepoint a");
	assertMasked(await query(c, "fetch all from p"), "SQL FETCH of a Bind name");
	await query(c, "rollback");
	c.end();
});

for (const changer of ["close all", "prepare other as select 1"]) {
	test(`a Bind after "${changer}" in the same segment does not take the SQL bodies for what the name holds`, async () => {
		const c = await login();
		c.send(clientMessages.parse("s", MASKED), clientMessages.sync());
		await c.until("readyForQuery");
		assert.deepEqual(errors(await query(c, `prepare s as ${CLEAN}`)), ["42P05"]);
		c.send(
			clientMessages.parse("q", changer),
			clientMessages.bind("", "q"),
			clientMessages.execute(""),
			clientMessages.bind("", "s"),
			clientMessages.execute(""),
			clientMessages.sync(),
		);
		const ms = await c.until("readyForQuery");
		assert.deepEqual(errors(ms), []);
		assertMasked(ms, changer);
		c.end();
	});
}

test("extended-protocol COPY FROM STDIN with libpq's two Syncs: the session goes on, nothing waits forever", async () => {
	const c = await login("rw");
	await query(c, "create temp table t (x text)");
	c.send(clientMessages.parse("s", "select count(*)::text as x from t"), clientMessages.sync());
	await c.until("readyForQuery");
	c.send(clientMessages.parse("", "copy t from stdin"), clientMessages.bind("", ""), clientMessages.execute(""), clientMessages.sync());
	await c.until("copyInResponse");
	c.send(clientMessages.copyData(Buffer.from("a\nb\n")), clientMessages.copyDone(), clientMessages.sync());
	const done = await c.until("readyForQuery");
	assert.deepEqual(errors(done), []);
	assert.ok(done.some((m) => m.type === "commandComplete"));
	// a name from an earlier segment: looked up once every earlier segment is answered
	c.send(clientMessages.bind("", "s"), clientMessages.execute(""), clientMessages.sync());
	assert.deepEqual(rows(await c.until("readyForQuery", 5000)), ["2"]);
	assert.deepEqual(rows(await query(c, "select count(*)::text from t")), ["2"]);
	// a failed copy (CopyFail) the same way
	c.send(clientMessages.parse("", "copy t from stdin"), clientMessages.bind("", ""), clientMessages.execute(""), clientMessages.sync());
	await c.until("copyInResponse");
	c.send(clientMessages.copyData(Buffer.from("c\n")), clientMessages.copyFail("client gave up"), clientMessages.sync());
	assert.deepEqual(errors(await c.until("readyForQuery")), ["57014"]);
	c.send(clientMessages.bind("", "s"), clientMessages.execute(""), clientMessages.sync());
	assert.deepEqual(rows(await c.until("readyForQuery", 5000)), ["2"]);
	c.end();
});
