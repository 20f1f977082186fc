// Regression (red-team round 9 on guardrails: writes by another name). Under a rule blocking UPDATE
// of accounts, a read-write grant's `ALTER TYPE account_status RENAME VALUE 'active' TO 'closed'`
// (an ALTER TYPE naming no table) turned every active account into a closed one: renaming an enum
// value changes it in every row of every column of that type. It carries UPDATE without WHERE now,
// and reaches every table for rules naming tables (the classifier does not know which use the type).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { fixtureWithClients, refusedByRule } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [
	{ name: "keep-accounts", action: "block", sql: { statementKinds: ["UPDATE"], tables: ["public.accounts"] } },
	{ name: "hold-unbounded", action: "requireApproval", sql: { statementKinds: ["UPDATE", "DELETE"], withoutWhere: true } },
];

describe("renaming an enum value rewrites every row holding it", () => {
	const c = fixtureWithClients({ guardrails: GUARDRAILS }, async (fx) => {
		await fx.pg.query("CREATE TYPE account_status AS ENUM ('active', 'closed', 'frozen')");
		await fx.pg.query("CREATE TABLE accounts (id int PRIMARY KEY, status account_status NOT NULL)");
		await fx.pg.query("INSERT INTO accounts SELECT g, 'active' FROM generate_series(1, 5) g");
	});
	const statuses = async (): Promise<string[]> => (await c.fx.pg.query("SELECT DISTINCT status::text AS s FROM accounts")).rows.map((r) => r.s as string);

	test("ALTER TYPE ... RENAME VALUE meets the rule on UPDATE of the table using the type", async () => {
		await assert.rejects(c.rw.query("ALTER TYPE account_status RENAME VALUE 'active' TO 'gone'"), refusedByRule("keep-accounts"));
		assert.deepEqual(await statuses(), ["active"]);
	});

	test("adding a value changes no row and stays allowed", async () => {
		await c.rw.query("ALTER TYPE account_status ADD VALUE 'audited'");
		assert.deepEqual(await statuses(), ["active"]);
	});
});
