// Regression (red-team round: deferred and implicit execution). Statements that were allowed made
// the server run a blocked action later or implicitly, checked through the gateway against a real
// PostgreSQL under a GuardrailPolicy blocking DROP/TRUNCATE, unbounded DELETE/UPDATE/MERGE, DELETE and
// UPDATE on `accounts`, and pg_read_file/pg_terminate_backend/lo_export/dblink*:
//  - MERGE INTO accounts ... WHEN MATCHED THEN DELETE deleted every row: MERGE carried the kind MERGE
//    only, so a rule on DELETE (or UPDATE) of a table never met it;
//  - INSERT INTO accounts SELECT id, 0 FROM accounts ON CONFLICT (id) DO UPDATE SET balance = 0
//    updated every account under the same rule (kind INSERT only);
//  - ALTER TABLE accounts ADD COLUMN k int DEFAULT 1 REFERENCES src(id) ON DELETE CASCADE, then the
//    allowed DELETE FROM src WHERE id = 1, deleted every account (a foreign key's referential action
//    is a DELETE or UPDATE of the referencing table that no later statement names);
//  - CREATE AGGREGATE rf(bigint, bigint) (sfunc1 = pg_read_file, stype1 = text, initcond1 =
//    '/etc/hostname') then SELECT rf(0, 100) read a server file: PostgreSQL still accepts the obsolete
//    spellings sfunc1/stype1/initcond1, and sfunc1 was not a function-naming option;
//  - (admin grant) DO $$ DECLARE t text; BEGIN t := pg_read_file(...); ... END $$: a PL/pgSQL
//    assignment's expression was never classified, so function rules did not see it;
//  - (later round) CREATE TRIGGER ... ON t ... EXECUTE FUNCTION check_foreign_key(1, 'cascade',
//    'id', 'accounts', 'id') (contrib refint), then DELETE FROM t WHERE id = 1, deleted an account.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type pg from "pg";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { type Fixture, startFixture } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [
	{ name: "no-drop", action: "block", sql: { statementKinds: ["DROP", "TRUNCATE"] } },
	{ name: "no-unbounded-writes", action: "block", sql: { statementKinds: ["UPDATE", "DELETE", "MERGE"], withoutWhere: true } },
	{ name: "keep-accounts", action: "block", sql: { statementKinds: ["DELETE", "UPDATE"], tables: ["public.accounts"] } },
	{
		name: "dangerous-functions",
		action: "block",
		sql: { functions: ["pg_read_file", "pg_terminate_backend", "lo_export", "dblink*"] },
	},
];

const SETUP = [
	"create table accounts (id int primary key, balance int not null)",
	"insert into accounts select g, 100 from generate_series(1, 5) g",
	"create table src (id int primary key)",
	"insert into src values (1), (2)",
	"create table t (id int, note text)",
	"create extension refint",
];

const ACCOUNTS = "SELECT count(*)::int AS n, sum(balance)::int AS total FROM accounts";

function refusedBy(rule: RegExp) {
	return (e: { code?: string; message: string }) => {
		assert.equal(e.code, "42501", e.message);
		assert.match(e.message, rule);
		return true;
	};
}

async function inRolledBack<T>(c: pg.Client, run: () => Promise<T>): Promise<T> {
	await c.query("begin");
	try {
		return await run();
	} finally {
		await c.query("rollback");
	}
}

describe("deferred and implicit execution under guardrails", () => {
	let fx: Fixture;
	let before0: unknown;
	before(async () => {
		fx = await startFixture({ guardrails: GUARDRAILS });
		for (const s of SETUP) await fx.pg.query(s);
		before0 = (await fx.pg.query(ACCOUNTS)).rows[0];
	});
	after(async () => {
		await fx?.stop();
	});
	printLogsOnFailure(() => [["postgres", fx?.pg]]);

	const attacks: { user: "alice" | "root"; steps: string[]; rule: RegExp; note: string }[] = [
		{
			user: "alice",
			steps: ["MERGE INTO accounts a USING (SELECT id FROM accounts) s ON a.id = s.id WHEN MATCHED THEN DELETE"],
			rule: /keep-accounts/,
			note: "MERGE ... THEN DELETE is a DELETE of the target",
		},
		{
			user: "alice",
			steps: ["MERGE INTO accounts a USING (SELECT id FROM accounts) s ON a.id = s.id WHEN MATCHED THEN UPDATE SET balance = 0"],
			rule: /keep-accounts/,
			note: "MERGE ... THEN UPDATE is an UPDATE of the target",
		},
		{
			user: "alice",
			steps: ["INSERT INTO accounts SELECT id, 0 FROM accounts ON CONFLICT (id) DO UPDATE SET balance = excluded.balance"],
			// an upsert from an unfiltered query is an UPDATE without WHERE too (red-team round 10)
			rule: /keep-accounts|no-unbounded-writes/,
			note: "INSERT ... ON CONFLICT DO UPDATE updates existing rows",
		},
		{
			user: "alice",
			steps: ["ALTER TABLE accounts ADD COLUMN k int DEFAULT 1 REFERENCES src(id) ON DELETE CASCADE", "DELETE FROM src WHERE id = 1"],
			rule: /keep-accounts/,
			note: "ON DELETE CASCADE deletes accounts when src rows go",
		},
		{
			user: "alice",
			steps: ["ALTER TABLE accounts ADD COLUMN k int DEFAULT 1, ADD CONSTRAINT k_fk FOREIGN KEY (k) REFERENCES src(id) ON UPDATE CASCADE", "UPDATE src SET id = 9 WHERE id = 1"],
			rule: /keep-accounts/,
			note: "ON UPDATE CASCADE updates accounts when src keys change",
		},
		{
			user: "alice",
			steps: ["ALTER TABLE accounts ADD COLUMN k int DEFAULT 1 REFERENCES src(id) ON DELETE SET NULL", "DELETE FROM src WHERE id = 1"],
			rule: /keep-accounts/,
			note: "ON DELETE SET NULL updates accounts",
		},
		{
			user: "alice",
			steps: ["CREATE AGGREGATE rf(bigint, bigint) (sfunc1 = pg_read_file, stype1 = text, initcond1 = '/etc/hostname')", "SELECT rf(0, 100)"],
			rule: /reserved for admin grants/,
			note: "obsolete aggregate spelling sfunc1",
		},
		{
			user: "root",
			steps: ["DO $$ DECLARE t text; BEGIN t := pg_read_file('/etc/hostname'); RAISE NOTICE '%', t; END $$"],
			rule: /dangerous-functions/,
			note: "PL/pgSQL assignment",
		},
		{
			user: "root",
			steps: [
				"CREATE FUNCTION wipe_all() RETURNS SETOF accounts LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY EXECUTE 'DELETE FROM accounts RETURNING *'; END $$",
				"SELECT count(*) FROM wipe_all()",
			],
			rule: /no-drop|keep-accounts|no-unbounded/,
			note: "RETURN QUERY EXECUTE in a PL/pgSQL function",
		},
		{
			user: "root",
			steps: ["DO $$ DECLARE a text[]; BEGIN a[1] = pg_read_file('/etc/hostname'); END $$"],
			rule: /dangerous-functions/,
			note: "PL/pgSQL assignment to an array element with =",
		},
		{
			user: "alice",
			steps: ["CREATE VIEW va AS SELECT * FROM accounts", "DELETE FROM va WHERE id > 0"],
			rule: /keep-accounts/,
			note: "an updatable view over accounts, used before the catalog knows it",
		},
		{
			user: "alice",
			steps: ["CREATE VIEW vb AS SELECT id, balance FROM public.accounts WHERE balance > 0", "UPDATE vb SET balance = 0 WHERE id > 0"],
			rule: /keep-accounts/,
			note: "a filtered updatable view",
		},
		{
			user: "alice",
			// PostgreSQL 15 and older turn an empty table with an ON SELECT rule into a view.
			steps: ["CREATE TABLE tv (id int, balance int)", 'CREATE RULE "_RETURN" AS ON SELECT TO tv DO INSTEAD SELECT * FROM accounts', "DELETE FROM tv WHERE id > 0"],
			rule: /keep-accounts/,
			note: "a table turned into an updatable view by an ON SELECT rule",
		},
		{
			user: "alice",
			steps: ["CREATE TABLE px (id int, balance int)", "ALTER TABLE accounts INHERIT px", "DELETE FROM px WHERE id > 0"],
			rule: /keep-accounts/,
			note: "accounts made a child of a new table, deleted through the parent",
		},
		{
			user: "alice",
			steps: [
				"CREATE TABLE pp (id int primary key, balance int not null) PARTITION BY RANGE (id)",
				"ALTER TABLE pp ATTACH PARTITION accounts FOR VALUES FROM (0) TO (1000)",
				"DELETE FROM pp WHERE id > 0",
			],
			rule: /keep-accounts/,
			note: "accounts attached as a partition of a new table, deleted through it",
		},
		{
			user: "alice",
			steps: ["ALTER TABLE accounts ALTER COLUMN balance TYPE int USING balance * 0"],
			rule: /keep-accounts/,
			note: "ALTER COLUMN ... TYPE ... USING rewrites every row",
		},
		{
			user: "alice",
			steps: ["ALTER TABLE t ALTER COLUMN note TYPE text USING 'gone'"],
			rule: /no-unbounded-writes/,
			note: "a USING that ignores the old value is an UPDATE without WHERE",
		},
		{
			// red-team round (guardrails, access levels): refint's trigger deletes rows of the table
			// named in its arguments; only the trigger's own table was in the statement
			user: "alice",
			steps: [
				"CREATE TRIGGER cfk BEFORE DELETE OR UPDATE ON t FOR EACH ROW EXECUTE FUNCTION check_foreign_key(1, 'cascade', 'id', 'accounts', 'id')",
				"INSERT INTO t VALUES (1, 'x')",
				"DELETE FROM t WHERE id = 1",
			],
			rule: /keep-accounts/,
			note: "check_foreign_key(..., 'cascade', ..., 'accounts', ...) deletes accounts when t rows go",
		},
		{
			user: "alice",
			steps: ["DELETE FROM t WHERE id = 1 OR 1 = 1"],
			rule: /no-unbounded-writes/,
			note: "an always-true OR arm is no WHERE",
		},
		{
			user: "alice",
			steps: ["UPDATE t SET note = 'x' WHERE id = id"],
			rule: /no-unbounded-writes/,
			note: "a column compared with itself is no WHERE",
		},
	];
	for (const a of attacks) {
		test(`refused (${a.user}): ${a.note}`, async () => {
			const c = await fx.connect(a.user);
			c.on("notice", () => undefined);
			try {
				await inRolledBack(c, async () => {
					let refused = false;
					for (const s of a.steps) {
						try {
							await c.query(s);
						} catch (e) {
							refusedBy(a.rule)(e as { code?: string; message: string });
							refused = true;
							break;
						}
					}
					assert.ok(refused, "every step ran");
				});
				assert.deepEqual((await fx.pg.query(ACCOUNTS)).rows[0], before0);
			} finally {
				await c.end();
			}
		});
	}

	// Already refused before this round (kept so they stay refused).
	for (const [user, sql, rule] of [
		["alice", "CREATE RULE r AS ON INSERT TO t DO ALSO DELETE FROM accounts", /keep-accounts|no-unbounded/],
		["alice", "CREATE RULE r AS ON UPDATE TO t DO INSTEAD UPDATE accounts SET balance = 0 WHERE id = 1", /keep-accounts/],
		["alice", "CREATE FUNCTION wipe() RETURNS void LANGUAGE sql AS 'DELETE FROM accounts WHERE id > 0'", /keep-accounts/],
		["alice", "CREATE FUNCTION wipe() RETURNS void LANGUAGE sql BEGIN ATOMIC TRUNCATE accounts; END", /no-drop/],
		["alice", "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN TRUNCATE accounts; RETURN NEW; END $$", /non-SQL function bodies are reserved/],
		["alice", "CREATE VIEW v AS SELECT pg_terminate_backend(pid) FROM pg_stat_activity", /process access is reserved for admin grants/],
		["alice", "CREATE TABLE x (a bool DEFAULT pg_terminate_backend(1))", /process access is reserved for admin grants/],
		["alice", "CREATE INDEX ON t ((pg_read_file(note)))", /process access is reserved for admin grants/],
		["alice", "CREATE POLICY p ON t USING (pg_terminate_backend(id))", /process access is reserved for admin grants/],
		["alice", "CREATE CAST (int AS bool) WITH FUNCTION pg_terminate_backend(int)", /process access is reserved for admin grants/],
		["alice", "CREATE FUNCTION f(int) RETURNS int LANGUAGE sql SET session_replication_role = replica AS 'select 1'", /server-wide configuration is reserved/],
		["alice", "CREATE FUNCTION f(int) RETURNS int LANGUAGE sql SET role = postgres AS 'select 1'", /switching role/],
		["alice", "CREATE FUNCTION t2(int) RETURNS bool LANGUAGE internal AS 'pg_terminate_backend'", /non-SQL function bodies are reserved/],
		["alice", "LOAD 'auto_explain'", /server-wide configuration is reserved/],
		["alice", "CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()", /server-wide configuration is reserved/],
		["root", "DO $$ BEGIN EXECUTE format('TRUNCATE %I', 'accounts'); END $$", /no-drop/],
		["root", "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN DELETE FROM accounts; RETURN NEW; END $$", /no-unbounded|keep-accounts|no-drop/],
	] as const) {
		test(`refused (${user}): ${sql}`, async () => {
			const c = await fx.connect(user);
			try {
				await inRolledBack(c, () => assert.rejects(c.query(sql), refusedBy(rule)));
			} finally {
				await c.end();
			}
		});
	}

	test("legitimate statements still run", async () => {
		const c = await fx.connect("alice");
		try {
			for (const sql of [
				"MERGE INTO accounts a USING (SELECT 9 AS id) s ON a.id = s.id WHEN NOT MATCHED THEN INSERT VALUES (s.id, 1)",
				"INSERT INTO accounts VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
				"DELETE FROM t WHERE id = 5 OR id = 6",
				"ALTER TABLE t ALTER COLUMN id TYPE bigint",
				"ALTER TABLE t ALTER COLUMN note TYPE varchar(100) USING trim(note)",
				"UPDATE t SET note = 'x' WHERE id = 5 AND true",
				"MERGE INTO t USING (SELECT 1 AS id) s ON t.id = s.id WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT VALUES (s.id, 'x')",
				"ALTER TABLE accounts ADD COLUMN k int REFERENCES src(id)",
				"ALTER TABLE accounts ADD COLUMN k2 int REFERENCES src(id) ON DELETE RESTRICT ON UPDATE NO ACTION",
				"CREATE TABLE child (id int, account int REFERENCES accounts(id) ON DELETE CASCADE)",
				"ALTER TABLE t ADD COLUMN account int REFERENCES accounts(id) ON DELETE CASCADE",
				"CREATE VIEW account_count AS SELECT count(*) AS n FROM accounts",
				"CREATE VIEW account_totals AS SELECT id, sum(balance) AS total FROM accounts GROUP BY id",
				"CREATE VIEW t_view AS SELECT * FROM t",
				"CREATE AGGREGATE mysum(int) (sfunc = int4pl, stype = int, initcond = '0')",
			]) {
				await inRolledBack(c, () => c.query(sql));
			}
		} finally {
			await c.end();
		}
		const r = await fx.connect("root");
		r.on("notice", () => undefined);
		try {
			await inRolledBack(r, () => r.query("DO $$ DECLARE t text; n int; BEGIN t := upper('x'); n = length(t); END $$"));
			// PL/pgSQL functions compile with their own header: NEW, RETURN x and parameters are known
			// (they used to be `unknown` and so met every rule of an admin grant).
			await inRolledBack(r, async () => {
				await r.query("CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.note := upper(NEW.note); RETURN NEW; END $$");
				await r.query("CREATE TRIGGER touch BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION touch()");
				await r.query("CREATE FUNCTION bump(a int, OUT b int) LANGUAGE plpgsql AS $$ BEGIN a := a + 1; b := a; END $$");
				await r.query("INSERT INTO t VALUES (1, 'x')");
				assert.deepEqual((await r.query("SELECT note, bump(1) AS b FROM t")).rows, [{ note: "X", b: 2 }]);
			});
		} finally {
			await r.end();
		}
	});
});
