// Regression (red-team round of session 5): the catalog cache remembered "no such relation" for its
// whole TTL (60 s), shared by every session of the Connection. Under a rule blocking DELETE on the
// partitioned table `ledger`, an agent asked about `ledger_new` first (DELETE FROM ledger_new: the
// guard's lookup cached that it does not exist), then created it as a partition of ledger, then
// deleted through it: the guard still believed ledger_new did not exist, so it had no parent and the
// rule on ledger did not apply. Now a completed statement that may change the catalog (and the end
// of its transaction) drops the cache and the mask plans built on it.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { type Fixture, startFixture } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [{ name: "keep-ledger", action: "block", sql: { statementKinds: ["DELETE", "TRUNCATE", "DROP"], tables: ["public.ledger"] } }];

let fx: Fixture;
let c: pg.Client;

before(async () => {
	fx = await startFixture({ guardrails: GUARDRAILS });
	await fx.pg.query("create table ledger (id int, amount int) partition by range (id)");
	await fx.pg.query("create table ledger_old partition of ledger for values from (0) to (100)");
	c = await fx.connect("alice");
});
after(async () => {
	await c?.end();
	await fx?.stop();
});

const refused = (e: { code?: string; message: string }) => {
	assert.equal(e.code, "42501", e.message);
	assert.match(e.message, /keep-ledger/);
	return true;
};

test("a partition created after the guard looked it up is still the ruled table's child (autocommit)", async () => {
	await assert.rejects(c.query("delete from ledger_new where id = 150"), (e: { code?: string }) => e.code === "42P01");
	await c.query("create table ledger_new partition of ledger for values from (100) to (200)");
	await c.query("insert into ledger_new values (150, 7)");
	await assert.rejects(c.query("delete from ledger_new where id = 150"), refused);
	const left = await fx.pg.query("select count(*)::int as n from ledger where id = 150");
	assert.equal(left.rows[0]?.n, 1);
});

test("the same inside a transaction: the cache is dropped again when it commits", async () => {
	await assert.rejects(c.query("delete from ledger_tx where id = 250"), (e: { code?: string }) => e.code === "42P01");
	await c.query("begin");
	await c.query("create table ledger_tx partition of ledger for values from (200) to (300)");
	await c.query("insert into ledger_tx values (250, 9)");
	await c.query("commit");
	await assert.rejects(c.query("delete from ledger_tx where id = 250"), refused);
	const left = await fx.pg.query("select count(*)::int as n from ledger where id = 250");
	assert.equal(left.rows[0]?.n, 1);
});
