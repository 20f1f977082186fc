// Regression (red-team round 10 on guardrails: later writes redirected). Under a rule blocking INSERT,
// UPDATE and DELETE of accounts, a read-write grant replaced the DBA's updatable view the application
// writes through: `CREATE OR REPLACE VIEW account_balances AS SELECT id, balance FROM scratch` (a
// CREATE VIEW over scratch, which no rule names) sent the application's next updates of balances to
// scratch, so accounts silently kept its old values, as a DO INSTEAD rule on accounts would (round 9
// bound those). Replacing a view (or its ON SELECT rule) binds INSERT/UPDATE/DELETE/MERGE on the view
// itself now, which the catalog leads to the table it reads today.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { fixtureWithClients, refusedByRule } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [
	{ name: "keep-accounts", action: "block", sql: { statementKinds: ["INSERT", "UPDATE", "DELETE"], tables: ["public.accounts"] } },
];

describe("replacing a view the application writes through", () => {
	const c = fixtureWithClients({ guardrails: GUARDRAILS }, async (fx) => {
		for (const sql of [
			"CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)",
			"INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 3) g",
			"CREATE TABLE scratch (id int PRIMARY KEY, balance int NOT NULL)",
			"INSERT INTO scratch SELECT g, 0 FROM generate_series(1, 3) g",
			"CREATE VIEW account_balances AS SELECT id, balance FROM accounts",
		]) {
			await fx.pg.query(sql);
		}
	});

	test("replacing the DBA's view over the ruled table is refused", async () => {
		for (const sql of [
			"CREATE OR REPLACE VIEW account_balances AS SELECT id, balance FROM scratch",
			"CREATE OR REPLACE VIEW public.account_balances AS SELECT id, balance FROM scratch WHERE false",
		]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("keep-accounts"), sql);
		}
		// the application's write through the view still reaches accounts
		await c.fx.pg.query("UPDATE account_balances SET balance = 150 WHERE id = 1");
		assert.deepEqual((await c.fx.pg.query("SELECT balance FROM accounts WHERE id = 1")).rows, [{ balance: 150 }]);
	});

	test("new views, and replacing views over other tables, stay allowed", async () => {
		await c.rw.query("CREATE VIEW scratch_v AS SELECT id, balance FROM scratch");
		await c.rw.query("CREATE OR REPLACE VIEW scratch_v AS SELECT id, balance FROM scratch WHERE balance >= 0");
		await c.rw.query("CREATE OR REPLACE VIEW fresh_v AS SELECT id FROM scratch");
	});
});
