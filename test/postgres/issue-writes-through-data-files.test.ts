// Regression (red-team round 9 on guardrails). Round 8 made reading a server file reach every table
// for SELECT rules (a table's data file is its rows); writing one was a plain server-file access,
// which admin grants keep, with no statement kind or table for rules to meet. Under a rule blocking
// DELETE/UPDATE/TRUNCATE on accounts, an admin grant erased every account through the table's data
// file: `SELECT lo_export(lo_from_bytea(0, ''), pg_relation_filepath('accounts'))` (the path is
// relative to the data directory) and `COPY (SELECT 1 WHERE false) TO '<that file>'` left it empty.
// A written server file can be any table's rows, a configuration file naming programs the server
// runs, or a library a later LOAD runs: such statements (and LOAD, and settings naming programs or
// libraries) are code the classifier cannot see now, which meets every rule, as COPY ... PROGRAM.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type pg from "pg";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { type Fixture, refusedByRule, startFixture } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [
	{ name: "keep-accounts", action: "block", sql: { statementKinds: ["DELETE", "UPDATE", "TRUNCATE", "DROP"], tables: ["public.accounts"] } },
];

describe("writing a server file reaches every table's rows", () => {
	let fx: Fixture;
	let admin: pg.Client;
	let dataFile = "";
	let emptyObject = 0;
	const accounts = async (): Promise<number> => (await fx.pg.query("SELECT count(*)::int AS n FROM accounts")).rows[0]!.n;
	before(async () => {
		fx = await startFixture({ guardrails: GUARDRAILS });
		await fx.pg.query("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)");
		await fx.pg.query("INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 5) g");
		// clean buffers: nothing writes the erased pages back
		await fx.pg.query("CHECKPOINT");
		dataFile = (await fx.pg.query("SELECT current_setting('data_directory') || '/' || pg_relation_filepath('accounts') AS f")).rows[0]!.f;
		admin = await fx.connect("root");
		emptyObject = (await admin.query("SELECT lo_from_bytea(0, '')::int AS o")).rows[0]!.o;
	});
	after(async () => {
		await admin?.end().catch(() => undefined);
		await fx?.stop();
	});
	printLogsOnFailure(() => [["postgres", fx?.pg]]);

	const cases: [string, () => string][] = [
		["lo_export of an empty large object to the table's file", () => `SELECT lo_export(${emptyObject}, pg_relation_filepath('accounts'))`],
		["pg_catalog.lo_export of it", () => `SELECT pg_catalog.lo_export(${emptyObject}, pg_relation_filepath('accounts'))`],
		["COPY of no rows to the table's file", () => `COPY (SELECT 1 WHERE false) TO '${dataFile}'`],
	];
	for (const [name, sql] of cases) {
		test(`an admin grant's ${name} meets the rule on accounts`, async () => {
			const err = await admin.query(sql()).then(
				() => undefined,
				(e: Error) => e,
			);
			assert.equal(await accounts(), 5, "the table's rows were erased");
			assert.ok(err, "not refused");
			refusedByRule("keep-accounts")(err);
		});
	}

	test("LOAD of a library and settings naming programs or libraries meet it too", async () => {
		for (const sql of [
			"LOAD 'auto_explain'",
			"ALTER SYSTEM SET archive_command = 'psql -c \"DELETE FROM accounts\"'",
			"ALTER DATABASE shop SET session_preload_libraries = 'auto_explain'",
		]) {
			await assert.rejects(admin.query(sql), refusedByRule("keep-accounts"), sql);
		}
		// settings that run nothing are the admin's as before
		await admin.query("ALTER SYSTEM SET work_mem = '8MB'");
		await admin.query("ALTER SYSTEM RESET work_mem");
	});
});
