// Regression (red-team round 10 on guardrails: which later writes succeed). Under a rule blocking
// INSERT and UPDATE of accounts, a read-write grant decided which of the application's later writes
// to accounts succeed without writing any: `ALTER TABLE accounts ADD CONSTRAINT frozen CHECK (false)
// NOT VALID` made every later INSERT and UPDATE fail (like a DO INSTEAD NOTHING rule, which round 9
// bound, but loud), `ALTER TABLE accounts DROP CONSTRAINT balance_nonneg` and `ALTER COLUMN balance
// DROP NOT NULL` let the application write what the schema refused, and `ALTER DOMAIN amount DROP
// CONSTRAINT amount_positive` did the same in every column of the domain. ALTER TABLE's constraint
// and NOT NULL changes bind INSERT/UPDATE/MERGE on the table now, and a domain's reach every table.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { fixtureWithClients, refusedByRule } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [{ name: "keep-accounts", action: "block", sql: { statementKinds: ["INSERT", "UPDATE"], tables: ["public.accounts"] } }];

describe("constraints that decide which later writes to a ruled table succeed", () => {
	const c = fixtureWithClients({ guardrails: GUARDRAILS }, async (fx) => {
		for (const sql of [
			"CREATE DOMAIN amount AS int CONSTRAINT amount_positive CHECK (VALUE > 0)",
			"CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL CONSTRAINT balance_nonneg CHECK (balance >= 0), fee amount)",
			"CREATE TABLE scratch (id int PRIMARY KEY, v int NOT NULL CONSTRAINT v_small CHECK (v < 10))",
		]) {
			await fx.pg.query(sql);
		}
	});

	/** The application's own writes, straight to PostgreSQL: what the server said to each. */
	async function applicationWrites(id: number): Promise<string[]> {
		const out: string[] = [];
		for (const [sql, params] of [
			["INSERT INTO accounts VALUES ($1, 100, 1)", [id]],
			["UPDATE accounts SET balance = -5 WHERE id = $1", [id]],
			["UPDATE accounts SET fee = 0 WHERE id = $1", [id]],
		] as const) {
			out.push(
				await c.fx.pg.query(sql, [...params]).then(
					() => "ok",
					(e: { code?: string }) => String(e.code),
				),
			);
		}
		return out;
	}

	test("adding, dropping or loosening constraints of the ruled table is refused", async () => {
		for (const sql of [
			"ALTER TABLE accounts ADD CONSTRAINT frozen CHECK (false) NOT VALID",
			"ALTER TABLE accounts DROP CONSTRAINT balance_nonneg",
			"ALTER TABLE accounts ALTER COLUMN balance DROP NOT NULL",
			"ALTER TABLE public.accounts ALTER COLUMN fee SET NOT NULL",
			"ALTER DOMAIN amount DROP CONSTRAINT amount_positive",
			"ALTER DOMAIN amount ADD CONSTRAINT amount_small CHECK (VALUE < 0) NOT VALID",
		]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("keep-accounts"), sql);
		}
		// the insert works, the negative balance and the zero fee are still refused (23514: check_violation)
		assert.deepEqual(await applicationWrites(1), ["ok", "23514", "23514"]);
	});

	test("on other tables, and validating, they stay allowed", async () => {
		await c.rw.query("ALTER TABLE scratch DROP CONSTRAINT v_small");
		await c.rw.query("ALTER TABLE scratch ADD CONSTRAINT v_smaller CHECK (v < 5) NOT VALID");
		await c.rw.query("ALTER TABLE scratch VALIDATE CONSTRAINT v_smaller");
		await c.rw.query("ALTER TABLE scratch ALTER COLUMN v DROP NOT NULL");
		await c.rw.query("ALTER TABLE accounts VALIDATE CONSTRAINT balance_nonneg");
		assert.deepEqual(await applicationWrites(2), ["ok", "23514", "23514"]);
	});
});
