// Regression (red-team round 8: guardrails and access levels). Function rules match the calls a
// statement makes; two kinds of statement hand a ruled function to later calls that name nothing
// the rule sees. Through the real gateway to a real PostgreSQL whose DBA keeps purge() (deletes
// every account) and purge_one(id), a read-write grant:
//  - under a rule `functions: [purge]` (any statement): ALTER FUNCTION purge() RENAME TO tidy, then
//    SELECT tidy() deleted every account (a function named with empty parentheses was not listed
//    in the statement's functions; `purge(int)` or bare `purge` were), likewise ALTER ROUTINE;
//  - under a rule on SELECT/INSERT/UPDATE/DELETE/CALL with `functions: [purge_one]`: CREATE
//    OPERATOR ### (function = purge_one) then SELECT ### 1, ALTER TABLE ... SET DEFAULT
//    purge_one(2) then a plain INSERT, CREATE TABLE ... DEFAULT purge_one(3), and ALTER TABLE ...
//    ADD CHECK (purge_one(id) ...) (run at once on every row) deleted accounts: the definitions
//    carried only CREATE/ALTER kinds.
// Every function an ObjectWithArgs names is listed now, and a CREATE/ALTER statement meets a
// function rule by its functions whatever the rule's statement kinds.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { fixtureWithClients, refusedByRule } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [
	{ name: "no-purge", action: "block", sql: { functions: ["purge"] } },
	{ name: "no-purge-one", action: "block", sql: { statementKinds: ["SELECT", "INSERT", "UPDATE", "DELETE", "CALL"], functions: ["purge_one"] } },
];

describe("ruled functions handed to later calls", () => {
	const c = fixtureWithClients({ guardrails: GUARDRAILS }, async (fx) => {
		for (const s of [
			"CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)",
			"INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 5) g",
			"CREATE FUNCTION purge() RETURNS void LANGUAGE sql AS 'DELETE FROM accounts'",
			"CREATE FUNCTION purge_one(int) RETURNS int LANGUAGE sql AS 'DELETE FROM accounts WHERE id = $1 RETURNING id'",
			"CREATE TABLE scratch (id int, v int)",
			"INSERT INTO scratch VALUES (1, 1)",
		]) {
			await fx.pg.query(s);
		}
	});
	const accounts = async (): Promise<number> => (await c.fx.pg.query("SELECT count(*)::int AS n FROM accounts")).rows[0]!.n;

	test("renaming a ruled function is refused", async () => {
		for (const sql of ["ALTER FUNCTION purge() RENAME TO tidy", "ALTER FUNCTION public.purge() RENAME TO tidy", "ALTER ROUTINE purge() RENAME TO tidy"]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("no-purge"), sql);
		}
		// had the rename run, this would have deleted every account
		await assert.rejects(c.rw.query("SELECT tidy()"), /does not exist/);
		assert.equal(await accounts(), 5);
	});

	test("definitions binding a ruled function for later calls meet its rule", async () => {
		for (const [sql, later] of [
			["CREATE OPERATOR ### (rightarg = int, function = purge_one)", "SELECT ### 1"],
			["ALTER TABLE scratch ALTER COLUMN v SET DEFAULT purge_one(2)", "INSERT INTO scratch (id) VALUES (9)"],
			["CREATE TABLE scratch2 (id int, v int DEFAULT purge_one(3))", "INSERT INTO scratch2 (id) VALUES (9)"],
			["ALTER TABLE scratch ADD CONSTRAINT c CHECK (purge_one(id) IS NULL OR true)", "SELECT 1"],
		] as const) {
			await assert.rejects(c.rw.query(sql), refusedByRule("no-purge-one"), sql);
			await c.rw.query(later).catch(() => undefined);
		}
		assert.equal(await accounts(), 5);
	});

	test("definitions without ruled functions, and other DDL, still run", async () => {
		await c.rw.query("BEGIN");
		try {
			await c.rw.query("ALTER TABLE scratch ALTER COLUMN v SET DEFAULT 0");
			await c.rw.query("CREATE TABLE scratch3 (id int DEFAULT abs(-1))");
			await c.rw.query("CREATE FUNCTION tidy2() RETURNS int LANGUAGE sql AS 'SELECT 1'");
			await c.rw.query("ALTER FUNCTION tidy2() RENAME TO tidy3");
		} finally {
			await c.rw.query("ROLLBACK");
		}
	});
});
