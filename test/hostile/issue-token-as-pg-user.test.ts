/**
 * Regression (red-team of token transport): a token pasted into the PostgreSQL user name as well as
 * the password (`PGUSER=$TOKEN PGPASSWORD=$TOKEN`, a common slip) was echoed and kept:
 * - without a database name, libpq and node-postgres send the user name as the database name, so the
 *   gateway answered `FATAL no PostgreSQL connection named "<the whole token>"` and logged that line
 *   (`postgres connection refused`) in its own log;
 * - with a database name, the session opened and the recording kept the token as `clientUser`, where
 *   every auditor reads it while it is still valid.
 * Errors, logs and recordings never hold a token now: the refusal says what went where instead, and
 * a user name that is a token is not recorded.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import pg from "pg";
import { printLogsOnFailure } from "../env/index.ts";
import { CONNECTION, type GatewayFixture, MemoryRecorder, startGatewayFixture } from "../faults/fixture.ts";
import { tokenEchoed } from "./jwt-attacks.ts";

let f: GatewayFixture;
const recorder = new MemoryRecorder();
const logged: string[] = [];
const log = {
	info: (o: unknown, m?: string) => void logged.push(`${JSON.stringify(o)} ${m ?? ""}`),
	warn: (o: unknown, m?: string) => void logged.push(`${JSON.stringify(o)} ${m ?? ""}`),
};

before(async () => {
	f = await startGatewayFixture({ recorder, listener: { log } });
});
after(async () => {
	await f?.stop();
});
printLogsOnFailure(() => [["postgres", f?.pg]]);

test("issue token-as-pg-user: the token as user and database name is refused without being echoed or logged", async () => {
	const token = await f.token("alice");
	const c = new pg.Client(f.clientConfig(token, token, { database: token }));
	c.on("error", () => undefined);
	const err = await c.connect().then(
		() => undefined,
		(e: { code?: string; message?: string; detail?: string }) => e,
	);
	await c.end().catch(() => undefined);
	assert.ok(err, "connection was accepted");
	assert.equal(err.code, "3D000", JSON.stringify(err));
	assert.match(err.message ?? "", /is a token: the token goes in the password/);
	assert.ok(!tokenEchoed(`${err.message} ${err.detail ?? ""}`, token), "the FATAL echoes the token");
	assert.ok(logged.length > 0, "the refusal was logged");
	assert.ok(!logged.some((l) => tokenEchoed(l, token)), `the gateway log holds the token: ${logged.join("\n")}`);
});

test("issue token-as-pg-user: a session opened with the token as user name does not record it", async () => {
	const token = await f.token("alice");
	const c = new pg.Client(f.clientConfig(token, token, { database: CONNECTION }));
	c.on("error", () => undefined);
	await c.connect();
	await c.query("SELECT 1");
	await c.end();
	const session = recorder.sessions.at(-1);
	assert.ok(session, "no session recorded");
	assert.ok(!tokenEchoed(JSON.stringify(session.meta), token), `the recording holds the token: ${JSON.stringify(session.meta.target)}`);
	assert.ok(!logged.some((l) => tokenEchoed(l, token)), "the gateway log holds the token");
});

test("issue token-as-pg-user: an ordinary unknown database name is still named", async () => {
	const c = new pg.Client(f.clientConfig("alice", await f.token("alice"), { database: "shop-typo" }));
	c.on("error", () => undefined);
	const err = await c.connect().then(
		() => undefined,
		(e: { code?: string; message?: string }) => e,
	);
	await c.end().catch(() => undefined);
	assert.match(err?.message ?? "", /no PostgreSQL connection named "shop-typo"/);
});
