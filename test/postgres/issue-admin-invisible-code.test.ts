// Regression (red-team round: guardrails). Admin grants skip the built-in refusals but keep their
// GuardrailRules, and code the classifier cannot see matches every rule (DO ... EXECUTE, C function
// bodies). Three more ways to run SQL or programs the classifier cannot see were plain
// `server-access` risks, which admin grants skip: under an admin grant whose rule blocks DROP, through
// the real gateway to a real PostgreSQL (trust auth on its unix socket, as many installations have
// for local maintenance):
//  - COPY (SELECT 1) TO PROGRAM 'psql ... -c "DROP TABLE accounts"' dropped the table;
//  - SELECT dblink_exec('host=<socket dir> ...', 'DROP TABLE accounts') dropped it too;
//  - a postgres_fdw loopback (CREATE SERVER, USER MAPPING, CREATE FOREIGN TABLE ft ... OPTIONS
//    (table_name 'accounts')) then DELETE FROM ft deleted every account under a rule on DELETE of
//    accounts (the foreign table's name is not the remote one).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type pg from "pg";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { type Fixture, startFixture } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [
	{ name: "no-drop", action: "block", sql: { statementKinds: ["DROP", "TRUNCATE"] } },
	{ name: "keep-accounts", action: "block", sql: { statementKinds: ["DELETE", "UPDATE"], tables: ["public.accounts"] } },
];

function refused(e: { code?: string; message: string }): boolean {
	assert.equal(e.code, "42501", e.message);
	assert.match(e.message, /no-drop|keep-accounts/);
	return true;
}

describe("admin grants: SQL and programs the classifier cannot see meet every rule", () => {
	let fx: Fixture;
	let root: pg.Client;
	const accounts = async (): Promise<number> =>
		(await fx.pg.query("SELECT count(*)::int AS n FROM pg_class WHERE relname = 'accounts'")).rows[0]!.n > 0
			? (await fx.pg.query("SELECT count(*)::int AS n FROM accounts")).rows[0]!.n
			: -1;
	before(async () => {
		fx = await startFixture({ guardrails: GUARDRAILS });
		await fx.pg.query("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)");
		await fx.pg.query("INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 5) g");
		await fx.pg.query("CREATE EXTENSION dblink");
		await fx.pg.query("CREATE EXTENSION postgres_fdw");
		root = await fx.connect("root");
	});
	after(async () => {
		await root?.end();
		await fx?.stop();
	});
	printLogsOnFailure(() => [["postgres", fx?.pg]]);

	/** A test that fails on old code drops the table; the next one starts with it again. */
	const ensureAccounts = async (): Promise<void> => {
		await fx.pg.query("CREATE TABLE IF NOT EXISTS accounts (id int PRIMARY KEY, balance int NOT NULL)");
		await fx.pg.query("INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 5) g ON CONFLICT DO NOTHING");
	};
	const local = () => `host=${fx.pg.socketDir} port=${fx.pg.port} user=${fx.pg.superuser} dbname=${fx.pg.database}`;

	test("COPY ... TO PROGRAM", async () => {
		await ensureAccounts();
		const cmd = `psql "${local()}" -c "DROP TABLE accounts"`;
		await assert.rejects(root.query(`COPY (SELECT 1) TO PROGRAM '${cmd.replaceAll("'", "''")}'`), refused);
		assert.equal(await accounts(), 5);
	});

	test("dblink_exec and dblink", async () => {
		await ensureAccounts();
		await assert.rejects(root.query(`SELECT dblink_exec('${local()}', 'DROP TABLE accounts')`), refused);
		await assert.rejects(root.query(`SELECT * FROM dblink('${local()}', 'DELETE FROM accounts RETURNING 1') AS t(x int)`), refused);
		assert.equal(await accounts(), 5);
	});

	test("a foreign table over a loopback server", async () => {
		await ensureAccounts();
		for (const sql of [
			`CREATE SERVER loop FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '${fx.pg.socketDir}', port '${fx.pg.port}', dbname '${fx.pg.database}')`,
			`CREATE USER MAPPING FOR CURRENT_USER SERVER loop OPTIONS (user '${fx.pg.superuser}', password_required 'false')`,
		]) {
			await root.query(sql);
		}
		await assert.rejects(root.query("CREATE FOREIGN TABLE ft (id int, balance int) SERVER loop OPTIONS (table_name 'accounts')"), refused);
		await assert.rejects(root.query("IMPORT FOREIGN SCHEMA public LIMIT TO (accounts) FROM SERVER loop INTO pg_temp"), refused);
		assert.equal(await accounts(), 5);
		// what stays allowed for the admin
		assert.equal((await root.query("SELECT count(*)::int AS n FROM accounts")).rows[0].n, 5);
		await root.query("COPY (SELECT 1) TO STDOUT");
	});
});
