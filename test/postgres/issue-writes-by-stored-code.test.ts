// Regression (red-team round 10 on guardrails: what a DBA's code does for the statement). Table rules
// and statement kinds matched what the statement's text names. Under a rule blocking DELETE and UPDATE
// of accounts and a rule blocking TRUNCATE, a read-write grant ran the DBA's routines and triggers:
// `SELECT close_dormant()` (a SQL function deleting dormant accounts) deleted accounts, `CALL
// reset_ledger()` (a procedure truncating ledger) emptied ledger, and `INSERT INTO payouts ...` (a
// table whose AFTER INSERT trigger, through a PL/pgSQL routine, debits accounts) updated balances.
// The gateway now follows, through the catalog, the stored code a statement runs and the bodies of the
// user routines called (test/postgres/issue-functions-by-stored-code.test.ts for rules on functions):
// what they write and read counts as the statement's tables and kinds, and an unfiltered write in
// them as a write without WHERE. A routine the statement calls that runs SQL built at run time
// (`SELECT run_sql('DELETE FROM accounts')`, a DBA's helper doing `EXECUTE q`, deleted every account)
// makes the statement `unknown` (deny by default).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { fixtureWithClients, refusedByRule } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [
	{ name: "keep-accounts", action: "block", sql: { statementKinds: ["DELETE", "UPDATE"], tables: ["public.accounts"] } },
	{ name: "no-truncate", action: "block", sql: { statementKinds: ["TRUNCATE"] } },
];

describe("what a DBA's routines and triggers write for the statement", () => {
	const c = fixtureWithClients({ guardrails: GUARDRAILS }, async (fx) => {
		for (const sql of [
			"CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL, dormant boolean NOT NULL DEFAULT false)",
			"INSERT INTO accounts SELECT g, 100, g > 3 FROM generate_series(1, 5) g",
			"CREATE TABLE ledger (id int, amount int)",
			"INSERT INTO ledger VALUES (1, 10), (2, 20)",
			"CREATE FUNCTION close_dormant() RETURNS bigint LANGUAGE sql AS $$ WITH d AS (DELETE FROM accounts WHERE dormant RETURNING 1) SELECT count(*) FROM d $$",
			"CREATE PROCEDURE reset_ledger() LANGUAGE sql AS $$ TRUNCATE ledger $$",
			"CREATE FUNCTION debit(acct int, amount int) RETURNS void LANGUAGE plpgsql AS $$ BEGIN UPDATE accounts SET balance = balance - amount WHERE id = acct; END $$",
			"CREATE FUNCTION payout_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM debit(NEW.acct, NEW.amount); RETURN NEW; END $$",
			"CREATE TABLE payouts (acct int, amount int)",
			"CREATE TRIGGER payout AFTER INSERT ON payouts FOR EACH ROW EXECUTE FUNCTION payout_row()",
			"CREATE FUNCTION balance_of(acct int) RETURNS int LANGUAGE sql AS $$ SELECT balance FROM accounts WHERE id = acct $$",
			"CREATE TABLE notes (id int, body text)",
			// a DBA's helper running SQL it is given, and a generic audit trigger building its INSERT
			"CREATE FUNCTION run_sql(q text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE q; END $$",
			"CREATE TABLE notes_audit (op text, at timestamptz)",
			"CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN EXECUTE format('INSERT INTO %I VALUES ($1, now())', TG_TABLE_NAME || '_audit') USING TG_OP; RETURN NEW; END $$",
			"CREATE TRIGGER audited AFTER INSERT ON notes FOR EACH ROW EXECUTE FUNCTION audit_row()",
		]) {
			await fx.pg.query(sql);
		}
	});
	const state = async (): Promise<{ accounts: number; total: number; ledger: number }> =>
		(
			await c.fx.pg.query(
				"SELECT (SELECT count(*)::int FROM accounts) AS accounts, (SELECT sum(balance)::int FROM accounts) AS total, (SELECT count(*)::int FROM ledger) AS ledger",
			)
		).rows[0] as { accounts: number; total: number; ledger: number };

	test("a routine or trigger writing a ruled table meets the rule", async () => {
		for (const [sql, rule] of [
			["SELECT close_dormant()", "keep-accounts"],
			["SELECT n FROM close_dormant() n", "keep-accounts"],
			["CALL reset_ledger()", "no-truncate"],
			["INSERT INTO payouts VALUES (1, 50)", "keep-accounts"],
			["SELECT debit(2, 50)", "keep-accounts"],
		] as const) {
			await assert.rejects(c.rw.query(sql), refusedByRule(rule), sql);
			await assert.rejects(c.rw.query({ text: sql, values: [] }), refusedByRule(rule), sql);
		}
		assert.deepEqual(await state(), { accounts: 5, total: 500, ledger: 2 });
	});

	test("a routine the statement calls that runs SQL built at run time is refused (deny by default)", async () => {
		for (const sql of ["SELECT run_sql('DELETE FROM accounts')", "SELECT public.run_sql('UPDATE accounts SET balance = 0')"]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("builtin:unknown"), sql);
			await assert.rejects(c.admin.query(sql), refusedByRule("keep-accounts"), sql);
		}
		assert.deepEqual(await state(), { accounts: 5, total: 500, ledger: 2 });
	});

	test("routines that write nothing ruled, and tables without such code, stay allowed", async () => {
		assert.deepEqual((await c.rw.query("SELECT balance_of(1) AS b")).rows, [{ b: 100 }]);
		// the audit trigger's EXECUTE is not the statement's choice: the INSERT runs (and is audited)
		await c.rw.query("INSERT INTO notes VALUES (1, 'x')");
		await c.rw.query("DELETE FROM notes WHERE id = 1");
		assert.deepEqual((await c.fx.pg.query("SELECT op FROM notes_audit")).rows, [{ op: "INSERT" }]);
		assert.deepEqual(await state(), { accounts: 5, total: 500, ledger: 2 });
	});
});
