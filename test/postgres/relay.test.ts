import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import pg from "pg";
import { type Fixture, startFixture } from "./fixture.ts";

let fx: Fixture;
before(async () => {
	fx = await startFixture({
		guardrails: [
			{ name: "no-drop", action: "block", sql: { statementKinds: ["DROP"] }, message: "dropping is done through migrations" },
			{ name: "no-delete-without-where", action: "block", sql: { statementKinds: ["DELETE"], withoutWhere: true } },
		],
	});
});
after(async () => {
	await fx?.stop();
});

test("node-postgres: simple and extended queries through the gateway", async () => {
	const c = await fx.connect("alice");
	try {
		const r = await c.query("select count(*)::int as n from customers");
		assert.equal(r.rows[0].n, 200);
		const p = await c.query("select id, name from customers where id = $1", [7]);
		assert.equal(p.rows[0].id, 7);
		const named = await c.query({ name: "by-id", text: "select id from customers where id = $1", values: [3] });
		assert.equal(named.rows[0].id, 3);
		const again = await c.query({ name: "by-id", text: "select id from customers where id = $1", values: [4] });
		assert.equal(again.rows[0].id, 4);
		const multi = await c.query("select 1 as a; select 2 as b");
		assert.ok(Array.isArray(multi));
	} finally {
		await c.end();
	}
	const s = fx.recorder.sessions.at(-1)!;
	assert.equal(s.meta.grant, "team/alice-rw");
	assert.equal(s.meta.origin.pullRequest, 42);
	assert.equal(s.meta.identity.username, "alice");
	await new Promise((r) => setTimeout(r, 100));
	assert.equal(s.end?.reason, "client-closed");
	assert.ok(s.events.some((e) => e.type === "statement" && e.sql.includes("count(*)") && e.rows === 1));
});

test("blocked statement: 42501 naming the rule, connection stays usable, transaction can roll back", async () => {
	const c = await fx.connect("alice");
	try {
		await assert.rejects(c.query("drop table orders"), (e: pg.DatabaseError) => {
			assert.equal(e.code, "42501");
			assert.match(e.message, /no-drop/);
			return true;
		});
		assert.equal((await c.query("select 1 as x")).rows[0].x, 1);
		await c.query("begin");
		await c.query("update customers set name = name where id = 1");
		await assert.rejects(c.query("delete from orders"), (e: pg.DatabaseError) => e.code === "42501");
		// The client sees a failed transaction, as with a real error
		await assert.rejects(c.query("select 1"), (e: pg.DatabaseError) => e.code === "25P02");
		await c.query("rollback");
		// extended protocol: blocked Parse
		await assert.rejects(c.query("drop table customers where $1", [1]), (e: pg.DatabaseError) => e.code === "42501" || e.code === "42601");
		await assert.rejects(c.query({ text: "drop table customers", values: [] }), (e: pg.DatabaseError) => e.code === "42501");
		assert.equal((await c.query("select count(*)::int as n from orders")).rows[0].n, 400);
	} finally {
		await c.end();
	}
});

test("read-only grant: writes refused by classification and by the upstream session", async () => {
	const c = await fx.connect("bob");
	try {
		await assert.rejects(c.query("update customers set name = 'x' where id = 1"), (e: pg.DatabaseError) => {
			assert.equal(e.code, "42501");
			assert.match(e.message, /read-only/);
			return true;
		});
		const r = await c.query("show default_transaction_read_only");
		assert.equal(r.rows[0].default_transaction_read_only, "on");
	} finally {
		await c.end();
	}
});

test("no grant and bad tokens: precise FATALs", async () => {
	const tok = await fx.token("mallory");
	const c = new pg.Client(fx.clientConfig("mallory", tok));
	await assert.rejects(c.connect(), (e: pg.DatabaseError) => {
		assert.equal(e.code, "28000");
		assert.match(e.message, /user:mallory/);
		assert.match(e.message, /no grant/);
		return true;
	});
	const expired = await fx.token("alice", { expiresInSec: -120 });
	const c2 = new pg.Client(fx.clientConfig("alice", expired));
	await assert.rejects(c2.connect(), (e: pg.DatabaseError) => e.code === "28P01" && /expired/.test(e.message));
	const aud = await fx.token("alice", { audience: "someone-else" });
	const c3 = new pg.Client(fx.clientConfig("alice", aud));
	await assert.rejects(c3.connect(), (e: pg.DatabaseError) => e.code === "28P01" && /audience/.test(e.message));
	const c4 = new pg.Client(fx.clientConfig("alice", "not-a-token"));
	await assert.rejects(c4.connect(), (e: pg.DatabaseError) => e.code === "28P01");
});
