/**
 * Regression (red-team round 8: masking, names resolved through names). SQL and protocol names
 * share one namespace, so SQL `FETCH` can read a protocol portal and SQL `EXECUTE` can run a
 * protocol statement. When that portal or statement is itself `EXECUTE s` (or `FETCH ... FROM c`),
 * the policy resolved one level only: the plan was made from the bare EXECUTE tree, which has no
 * outputs, so nothing was masked, and `phone || ''` (no column origin) reached a read-only grant raw:
 *  1. `FETCH ALL FROM p`, p a protocol portal bound to `EXECUTE s`, s over phones;
 *  2. (held before, by accident: the resolved inner FETCH had lost its parse tree, so the plan was
 *     opaque) `FETCH ALL FROM p`, p a protocol portal bound to `FETCH ALL FROM c`, c over phones;
 *  3. SQL `EXECUTE q`, q a protocol statement `EXECUTE s`.
 * A name that holds EXECUTE/FETCH now counts as unknown: a cursor of it is masked whole, an
 * EXECUTE of it is refused (26000, rule `session:unknown-prepared`, as for a name never seen).
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

before(async () => {
	fx = await startFixture({ maskRules: DEMO_RULES, grants: [{ name: "ro", user: "ro", access: "read-only" }] });
	phones = (await fx.pg.query<{ phone: string }>("select phone from customers order by id")).rows.map((x) => x.phone);
});
after(async () => {
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

const MASKED = "select phone || '' as x from customers order by id";
const login = async () => RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("ro"));
const values = (ms: ServerMessage[]) =>
	ms.filter((m): m is Extract<ServerMessage, { type: "dataRow" }> => m.type === "dataRow").map((m) => m.values[0]?.toString() ?? null);
async function simple(c: RawClient, sql: string): Promise<ServerMessage[]> {
	c.send(clientMessages.query(sql));
	return c.until("readyForQuery");
}
const noError = (ms: ServerMessage[], what: string) =>
	assert.equal(
		ms.find((m) => m.type === "errorResponse"),
		undefined,
		`${what}: ${JSON.stringify(ms.find((m) => m.type === "errorResponse"))}`,
	);

test("SQL FETCH of a protocol portal bound to EXECUTE s", async () => {
	const c = await login();
	try {
		noError(await simple(c, "begin"), "begin");
		noError(await simple(c, `prepare s as ${MASKED}`), "prepare");
		c.send(clientMessages.parse("q", "execute s"), clientMessages.bind("p", "q"), clientMessages.sync());
		noError(await c.until("readyForQuery"), "bind");
		const ms = await simple(c, "fetch all from p");
		noError(ms, "fetch");
		const got = values(ms);
		assert.equal(got.length, phones.length, JSON.stringify(ms.map((m) => m.type)));
		assertNoneOf(phones, got);
		noError(await simple(c, "rollback"), "rollback");
	} finally {
		c.end();
	}
});

test("SQL FETCH of a protocol portal bound to FETCH ALL FROM c", async () => {
	const c = await login();
	try {
		noError(await simple(c, "begin"), "begin");
		noError(await simple(c, `declare c cursor for ${MASKED}`), "declare");
		c.send(clientMessages.parse("q", "fetch all from c"), clientMessages.bind("p", "q"), clientMessages.sync());
		noError(await c.until("readyForQuery"), "bind");
		const ms = await simple(c, "fetch all from p");
		noError(ms, "fetch");
		const got = values(ms);
		assert.equal(got.length, phones.length, JSON.stringify(ms.map((m) => m.type)));
		assertNoneOf(phones, got);
		noError(await simple(c, "rollback"), "rollback");
	} finally {
		c.end();
	}
});

test("SQL EXECUTE of a protocol statement holding EXECUTE s is refused, not planned from nothing", async () => {
	const c = await login();
	try {
		noError(await simple(c, `prepare s as ${MASKED}`), "prepare");
		c.send(clientMessages.parse("q", "execute s"), clientMessages.sync());
		noError(await c.until("readyForQuery"), "parse");
		const ms = await simple(c, "execute q");
		assertNoneOf(phones, values(ms));
		const err = ms.find((m): m is Extract<ServerMessage, { type: "errorResponse" }> => m.type === "errorResponse");
		assert.equal(err?.fields.C, "26000", JSON.stringify(ms));
		assert.equal(err?.fields.D, "Drawbridge rule: session:unknown-prepared", JSON.stringify(ms));
	} finally {
		c.end();
	}
});
