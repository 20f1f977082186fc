// Regression (red-team round 10 on guardrails: names that capture other sessions' SQL). The
// application's SQL names its tables and functions unqualified, and PostgreSQL finds them through the
// search_path, whose default starts with "$user" (a schema named like the role). Under a rule
// blocking INSERT, UPDATE and DELETE of public.accounts, a read-write grant ran `CREATE TABLE
// app.accounts (...)` in the application's own (empty) schema app: a CREATE TABLE naming no ruled
// table, after which the application's `INSERT INTO accounts ...` went to the agent's table (with
// the gateway's credential being the application's role, as it often is, the agent can also create
// that schema). Likewise `CREATE VIEW app.accounts`, renaming a table to accounts, and routines: `CREATE
// FUNCTION app.fee(numeric)` in front of the DBA's public.fee, an overload `fee(int)` that matches
// the DBA's calls better, a function named like a built-in. A name an existing relation has in another
// schema now binds that relation's writes; a routine name an existing routine (or a built-in) has
// reaches every table's writes.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { fixtureWithClients, refusedByRule } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [
	{ name: "keep-accounts", action: "block", sql: { statementKinds: ["INSERT", "UPDATE", "DELETE"], tables: ["public.accounts"] } },
];

describe("names that capture what other sessions' SQL finds by name", () => {
	const c = fixtureWithClients({ guardrails: GUARDRAILS }, async (fx) => {
		for (const sql of [
			"CREATE ROLE app LOGIN",
			// the application's own schema, empty: its default search_path looks here first
			"CREATE SCHEMA app AUTHORIZATION app",
			"CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)",
			"GRANT ALL ON accounts TO app",
			"CREATE FUNCTION fee(amount numeric) RETURNS numeric LANGUAGE sql AS 'SELECT amount / 100'",
		]) {
			await fx.pg.query(sql);
		}
	});

	/** The application (role app, default search_path "$user", public) inserts; the schema the row went to. */
	async function applicationInsert(id: number): Promise<string> {
		const rs = (await c.fx.pg.query(
			`SET ROLE app; INSERT INTO accounts VALUES (${id}, 100);
			 SELECT n.nspname AS s FROM pg_class r JOIN pg_namespace n ON n.oid = r.relnamespace WHERE r.oid = 'accounts'::regclass`,
		)) as unknown as { rows: { s: string }[] }[];
		return rs[2]!.rows[0]!.s;
	}

	test("a relation or routine named like an existing one elsewhere is refused", async () => {
		await c.rw.query("CREATE TABLE app.staging (id int, balance int)");
		for (const sql of [
			"CREATE TABLE app.accounts (id int, balance int)",
			"CREATE VIEW app.accounts AS SELECT * FROM app.staging",
			"CREATE TABLE app.accounts AS SELECT * FROM app.staging",
			"ALTER TABLE app.staging RENAME TO accounts",
			"CREATE FUNCTION app.fee(amount numeric) RETURNS numeric LANGUAGE sql AS 'SELECT 0::numeric'",
			"CREATE FUNCTION fee(amount int) RETURNS numeric LANGUAGE sql AS 'SELECT 0::numeric'",
			"CREATE FUNCTION app.lower(t text) RETURNS text LANGUAGE sql AS 'SELECT t'",
		]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("keep-accounts"), sql);
		}
		assert.equal(await applicationInsert(1), "public");
	});

	test("new names, and temporary tables, stay allowed", async () => {
		await c.rw.query("CREATE TABLE app.ledger_copy (id int)");
		await c.rw.query("CREATE FUNCTION app.fresh_total() RETURNS int LANGUAGE sql AS 'SELECT 1'");
		await c.rw.query("ALTER TABLE app.ledger_copy RENAME TO ledger_copy2");
		await c.rw.query("CREATE TEMP TABLE accounts (id int)");
		await c.rw.query("DROP TABLE pg_temp.accounts");
		assert.equal(await applicationInsert(2), "public");
	});
});
