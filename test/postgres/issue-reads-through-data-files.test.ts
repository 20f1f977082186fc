// Regression (red-team round 8: guardrails). Admin grants keep the server's files (their built-in
// limits are skipped) but also their GuardrailRules, and a table's rows are bytes in its data file.
// Through the real gateway to a real PostgreSQL, under a rule blocking SELECT of secrets, an admin
// grant read every secret with
//  - SELECT pg_read_binary_file(pg_relation_filepath('secrets')) (the heap file, after a checkpoint);
//  - SELECT lo_get(lo_import(<data directory>/<that path>)) (the file into a large object);
//  - COPY scratch FROM '<data directory>/<a file>' ... (a server file into a table it reads).
// None names secrets. Reading a server file (pg_read_file, pg_read_binary_file, lo_import, COPY FROM
// a file) now counts as reading every table for rules that name tables (and SELECT).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { fixtureWithClients, refusedByRule } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [{ name: "no-reading-secrets", action: "block", sql: { statementKinds: ["SELECT"], tables: ["public.secrets"] } }];

describe("server files are reads of every table for an admin grant's table rules", () => {
	let path = "";
	let dataDir = "";
	const c = fixtureWithClients({ guardrails: GUARDRAILS }, async (fx) => {
		await fx.pg.query("CREATE TABLE secrets (id int PRIMARY KEY, secret text NOT NULL)");
		await fx.pg.query("INSERT INTO secrets SELECT g, 'topsecret-' || g FROM generate_series(1, 3) g");
		await fx.pg.query("CREATE TABLE scratch (line text)");
		await fx.pg.query("CHECKPOINT");
		path = (await fx.pg.query("SELECT pg_relation_filepath('secrets') AS p")).rows[0]!.p as string;
		dataDir = (await fx.pg.query("SELECT current_setting('data_directory') AS d")).rows[0]!.d as string;
		const raw = await fx.pg.query("SELECT position(convert_to('topsecret-1', 'UTF8') IN pg_read_binary_file($1)) > 0 AS hit", [path]);
		assert.equal(raw.rows[0]!.hit, true, "the data file holds the secrets (the server itself)");
	});

	test("reading the data file by function, large object or COPY is refused", async () => {
		for (const sql of [
			"SELECT pg_read_binary_file(pg_relation_filepath('secrets'))",
			`SELECT pg_read_file('${path}', 0, 8192)`,
			`SELECT ('${path}'::text).pg_read_binary_file`,
			"CREATE OPERATOR ### (rightarg = text, function = pg_read_binary_file)",
			`SELECT lo_get(lo_import('${dataDir}/${path}'))`,
			`COPY scratch FROM '${dataDir}/${path}' WITH (FORMAT text, DELIMITER E'\\x01')`,
		]) {
			await assert.rejects(c.admin.query(sql), refusedByRule("no-reading-secrets"), sql);
		}
		assert.equal((await c.fx.pg.query("SELECT count(*)::int AS n FROM scratch")).rows[0]!.n, 0);
	});

	test("without a rule on SELECT of a table, an admin grant still reads server files", async () => {
		// the rule names SELECT: a file listing is not a read of a file's contents
		await c.admin.query("SELECT count(*) FROM pg_ls_dir('.')");
	});
});
