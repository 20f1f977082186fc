// Regression (red-team round 10 on guardrails: code later writes run, changed under them). Under a
// rule blocking INSERT, UPDATE and DELETE of accounts, a read-write grant changed what the
// application's later writes to accounts did without naming the table: `CREATE OR REPLACE FUNCTION
// initial_balance() ... 'SELECT 0'` (the DBA's function behind the balance column's DEFAULT) made
// every new account start at 0; `CREATE OR REPLACE FUNCTION valid_balance(int) ... 'SELECT true'`
// (the function of the column's CHECK) let negative balances in; `ALTER FUNCTION initial_balance()
// SET search_path = agent, public` made its body's unqualified `default_balance()` call the agent's
// own function. Round 9 covered replaced trigger functions only. Replacing a routine, or changing
// how one runs (ALTER FUNCTION), reaches every table with later writes now (where it is used is not
// known to the classifier).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { fixtureWithClients, refusedByRule } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [
	{ name: "keep-accounts", action: "block", sql: { statementKinds: ["INSERT", "UPDATE", "DELETE"], tables: ["public.accounts"] } },
];

describe("replacing or altering a routine that later writes to a ruled table run", () => {
	const c = fixtureWithClients({ guardrails: GUARDRAILS }, async (fx) => {
		await fx.pg.query("CREATE FUNCTION default_balance() RETURNS int LANGUAGE sql AS 'SELECT 100'");
		await fx.pg.query("CREATE FUNCTION initial_balance() RETURNS int LANGUAGE sql AS 'SELECT default_balance()'");
		await fx.pg.query("CREATE FUNCTION valid_balance(int) RETURNS boolean LANGUAGE sql AS 'SELECT $1 >= 0'");
		await fx.pg.query("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL DEFAULT initial_balance() CHECK (valid_balance(balance)))");
		await fx.pg.query("CREATE SCHEMA agent");
		// the agent's look-alike of default_balance (refused to the grant since the look-alike names fix,
		// issue-look-alike-names.test.ts; here as if made before it)
		await fx.pg.query("CREATE FUNCTION agent.default_balance() RETURNS int LANGUAGE sql AS 'SELECT 0'");
	});

	/** The application's own writes, straight to PostgreSQL. */
	async function applicationWrites(id: number): Promise<{ balance: number; negative: string }> {
		await c.fx.pg.query("INSERT INTO accounts (id) VALUES ($1)", [id]);
		const balance = (await c.fx.pg.query("SELECT balance FROM accounts WHERE id = $1", [id])).rows[0]!.balance as number;
		const negative = await c.fx.pg.query("UPDATE accounts SET balance = -5 WHERE id = $1", [id]).then(
			() => "accepted",
			(e: { code?: string }) => `refused ${e.code}`,
		);
		return { balance, negative };
	}

	test("a replaced DEFAULT or CHECK function, or an altered one, is refused", async () => {
		for (const sql of [
			"CREATE OR REPLACE FUNCTION initial_balance() RETURNS int LANGUAGE sql AS 'SELECT 0'",
			"CREATE OR REPLACE FUNCTION public.valid_balance(int) RETURNS boolean LANGUAGE sql AS 'SELECT true'",
			"CREATE OR REPLACE FUNCTION default_balance() RETURNS int LANGUAGE sql AS 'SELECT 0'",
			"ALTER FUNCTION initial_balance() SET search_path = agent, public",
			"ALTER FUNCTION valid_balance(int) STRICT",
		]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("keep-accounts"), sql);
		}
		assert.deepEqual(await applicationWrites(1), { balance: 100, negative: "refused 23514" });
	});

	test("new routines, and dropping them, stay allowed", async () => {
		await c.rw.query("CREATE FUNCTION agent.fresh() RETURNS int LANGUAGE sql AS 'SELECT 1'");
		assert.deepEqual((await c.rw.query("SELECT agent.fresh() AS v")).rows, [{ v: 1 }]);
		await c.rw.query("DROP FUNCTION agent.fresh()");
		assert.deepEqual(await applicationWrites(2), { balance: 100, negative: "refused 23514" });
	});
});
