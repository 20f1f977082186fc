// Regression (red-team round: guardrails, name resolution). Table rules see through views and
// partitions by asking the catalog, which resolves an unqualified name with its own search_path (the
// startup one). The session can change its search_path (allowed when masking does not apply), so a
// name meant another relation to the server. Under a rule blocking DELETE/UPDATE on accounts and
// ledger, through the real gateway to a real PostgreSQL whose DBA keeps a view in `reporting` and
// ledger's partitions in `archive`:
//  - SET search_path = reporting, public; DELETE FROM acct_v WHERE id > 0 deleted every account
//    (DELETE FROM reporting.acct_v was refused: the catalog found it);
//  - SET search_path = archive, public; DELETE FROM ledger_2024 WHERE id > 0 deleted ledger rows;
//  - a SQL function created with check_function_bodies off (or with its own SET search_path clause)
//    whose body deletes from acct_v was created, and SELECT f() after SET search_path deleted them.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { type Fixture, startFixture } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [
	{ name: "keep-money", action: "block", sql: { statementKinds: ["DELETE", "UPDATE"], tables: ["public.accounts", "public.ledger"] } },
];

function refused(e: { code?: string; message: string }): boolean {
	assert.equal(e.code, "42501", e.message);
	assert.match(e.message, /keep-money/);
	return true;
}

describe("unqualified names under a changed search_path", () => {
	let fx: Fixture;
	const state = async (): Promise<string> =>
		JSON.stringify((await fx.pg.query("SELECT (SELECT sum(balance) FROM accounts)::int AS a, (SELECT count(*) FROM ledger)::int AS l")).rows[0]);
	let initial = "";
	before(async () => {
		fx = await startFixture({ guardrails: GUARDRAILS });
		for (const s of [
			"CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)",
			"INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 5) g",
			"CREATE SCHEMA reporting",
			"CREATE VIEW reporting.acct_v AS SELECT * FROM public.accounts",
			"CREATE TABLE ledger (id int, amount int) PARTITION BY RANGE (id)",
			"CREATE SCHEMA archive",
			"CREATE TABLE archive.ledger_2024 PARTITION OF public.ledger FOR VALUES FROM (0) TO (100)",
			"INSERT INTO ledger SELECT g, 1 FROM generate_series(1, 5) g",
			"CREATE TABLE scratch (id int)",
			"INSERT INTO scratch VALUES (1), (2)",
		]) {
			await fx.pg.query(s);
		}
		initial = await state();
	});
	after(async () => {
		await fx?.stop();
	});
	printLogsOnFailure(() => [["postgres", fx?.pg]]);

	test("DELETE through a view or a partition named under another search_path is refused", async () => {
		const c = await fx.connect("alice");
		try {
			await c.query("SET search_path = reporting, public");
			await assert.rejects(c.query("DELETE FROM acct_v WHERE id > 0"), refused);
			await assert.rejects(c.query("UPDATE acct_v SET balance = 0 WHERE id > 0"), refused);
			await c.query("SET search_path = archive, public");
			await assert.rejects(c.query("DELETE FROM ledger_2024 WHERE id > 0"), refused);
			// reading through them, and writing what no rule names, still works
			await c.query("SET search_path = reporting, public");
			assert.equal((await c.query("SELECT count(*)::int AS n FROM acct_v")).rows[0].n, 5);
			await c.query("DELETE FROM scratch WHERE id = 1");
		} finally {
			await c.end();
		}
		assert.equal(await state(), initial);
	});

	test("a function body naming the view is refused when created, whatever search_path it runs under", async () => {
		const c = await fx.connect("alice");
		try {
			await c.query("SET check_function_bodies = off");
			await assert.rejects(
				c.query("CREATE FUNCTION wipe() RETURNS void LANGUAGE sql AS 'DELETE FROM acct_v WHERE id > 0'"),
				refused,
			);
			await assert.rejects(
				c.query("CREATE FUNCTION zero() RETURNS void LANGUAGE sql SET search_path = reporting AS 'UPDATE acct_v SET balance = 0 WHERE id > 0'"),
				refused,
			);
			await c.query("SET search_path = reporting, public");
			await assert.rejects(c.query("SELECT wipe()"), /does not exist/);
		} finally {
			await c.end();
		}
		assert.equal(await state(), initial);
	});
});
