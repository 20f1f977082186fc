// Regression (red-team round 8: guardrails and access levels). A SQL function's body is classified
// when the function is created, but PostgreSQL looks its relation names up again at every call. A
// name that meant nothing (check_function_bodies off) or a scratch table when the function was
// created could be handed later to a DBA's view over a ruled table, or to a partition of one, by
// renaming or moving that relation; nothing the gateway saw afterwards named the ruled table. Under a
// rule blocking DELETE/UPDATE on accounts and ledger, through the real gateway to a real PostgreSQL, a
// read-write grant:
//  - created wipe() deleting from `reporting.gone`, renamed the DBA's view reporting.acct_v (over
//    accounts) to gone, and SELECT wipe() deleted every account;
//  - did the same with ledger's partition archive.ledger_2024 (ALTER TABLE ... RENAME TO);
//  - moved the view with ALTER VIEW ... SET SCHEMA public under a name its function used;
//  - renamed the schema `reporting` to a name its function used (the rule names public tables only).
// Renaming or moving a view, partition or inheritance child now escapes the rules of every table
// whose rows it reaches, and renaming a schema meets every rule that names tables.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { fixtureWithClients, refusedByRule } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [
	{ name: "keep-money", action: "block", sql: { statementKinds: ["DELETE", "UPDATE"], tables: ["public.accounts", "public.ledger"] } },
];

describe("names handed to a ruled table's rows after a function naming them was created", () => {
	const c = fixtureWithClients({ guardrails: GUARDRAILS }, async (fx) => {
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
			"CREATE VIEW scratch_v AS SELECT * FROM scratch",
			"CREATE SCHEMA spare",
			"CREATE VIEW spare.scratch_v AS SELECT * FROM public.scratch",
		]) {
			await fx.pg.query(s);
		}
	});
	const state = async (): Promise<string> =>
		JSON.stringify(
			(
				await c.fx.pg.query(
					"SELECT (SELECT sum(balance) FROM accounts)::int AS a, (SELECT count(*) FROM ledger)::int AS l, to_regclass('reporting.acct_v') IS NOT NULL AS v, to_regclass('archive.ledger_2024') IS NOT NULL AS p",
				)
			).rows[0],
		);

	test("renaming or moving a view or partition of a ruled table is refused", async () => {
		const before = await state();
		await c.rw.query("SET check_function_bodies = off");
		await c.rw.query("CREATE FUNCTION wipe_v() RETURNS void LANGUAGE sql AS 'DELETE FROM reporting.gone WHERE id > 0'");
		await c.rw.query("CREATE FUNCTION wipe_p() RETURNS void LANGUAGE sql AS 'DELETE FROM archive.gone WHERE id > 0'");
		await c.rw.query("CREATE FUNCTION wipe_m() RETURNS void LANGUAGE sql AS 'DELETE FROM public.acct_v WHERE id > 0'");
		await c.rw.query("CREATE FUNCTION zero_s() RETURNS void LANGUAGE sql AS 'UPDATE rep2.acct_v SET balance = 0 WHERE id > 0'");
		for (const [sql, call] of [
			["ALTER VIEW reporting.acct_v RENAME TO gone", "SELECT wipe_v()"],
			["ALTER TABLE reporting.acct_v RENAME TO gone", "SELECT wipe_v()"],
			["ALTER TABLE archive.ledger_2024 RENAME TO gone", "SELECT wipe_p()"],
			["ALTER VIEW reporting.acct_v SET SCHEMA public", "SELECT wipe_m()"],
			["ALTER SCHEMA reporting RENAME TO rep2", "SELECT zero_s()"],
		] as const) {
			await assert.rejects(c.rw.query(sql), refusedByRule("keep-money"), sql);
			// had the rename run, the function would now reach the ruled rows
			await assert.rejects(c.rw.query(call), /does not exist/, call);
		}
		assert.equal(await state(), before);
	});

	test("renaming relations that reach no ruled table still works", async () => {
		for (const sql of [
			"ALTER VIEW scratch_v RENAME TO scratch_v2",
			"ALTER TABLE scratch RENAME TO scratch2",
			"ALTER TABLE scratch SET SCHEMA archive",
			"ALTER SCHEMA spare RENAME TO spare2",
		]) {
			await c.rw.query("BEGIN");
			try {
				await c.rw.query(sql);
			} finally {
				await c.rw.query("ROLLBACK");
			}
		}
	});
});
