// Regression (red-team round: guardrails). Rules name statement kinds; some statements read a
// table's rows under another kind (the read-side twin of issue-writes-by-another-name). Through the
// real gateway to a real PostgreSQL, under a rule blocking SELECT of secrets, a read-write grant:
//  - COPY secrets TO STDOUT (psql) printed every row: COPY carried COPY/COPY TO, not SELECT;
//  - UPDATE scratch SET v = s.secret FROM secrets s ... RETURNING v returned them, and MERGE INTO
//    scratch USING secrets copied them into a table the grant reads (UPDATE ... FROM, DELETE ...
//    USING and MERGE ... USING read their other relations);
//  - DELETE FROM secrets WHERE id = 1 RETURNING secret returned the row it removed.
// COPY of a relation to the client, RETURNING, and the FROM/USING relations of UPDATE, DELETE and
// MERGE now carry SELECT.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { run } from "../env/index.ts";
import { refusedByRule, fixtureWithClients } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [{ name: "no-reading-secrets", action: "block", sql: { statementKinds: ["SELECT"], tables: ["public.secrets"] } }];

describe("reads by another name meet the rule on SELECT", () => {
	const c = fixtureWithClients({ guardrails: GUARDRAILS }, async (fx) => {
		await fx.pg.query("CREATE TABLE secrets (id int PRIMARY KEY, secret text NOT NULL)");
		await fx.pg.query("INSERT INTO secrets SELECT g, 'topsecret-' || g FROM generate_series(1, 3) g");
		await fx.pg.query("CREATE TABLE scratch (id int PRIMARY KEY, v text)");
		await fx.pg.query("INSERT INTO scratch SELECT g, 'x' FROM generate_series(1, 3) g");
	});
	const scratch = async (): Promise<string[]> => (await c.fx.pg.query("SELECT v FROM scratch ORDER BY id")).rows.map((r) => r.v);

	test("COPY ... TO STDOUT is a SELECT (psql)", async () => {
		const env = { PATH: process.env.PATH ?? "" };
		const r = await run("/usr/bin/psql", ["-X", "-v", "ON_ERROR_STOP=1", "-c", "COPY secrets TO STDOUT", c.fx.dsn(await c.fx.token("alice"))], { env });
		assert.notEqual(r.code, 0, r.stdout);
		assert.match(r.stderr, /no-reading-secrets/);
		assert.doesNotMatch(r.stdout, /topsecret/);
		const ok = await run("/usr/bin/psql", ["-X", "-v", "ON_ERROR_STOP=1", "-c", "COPY scratch (id) TO STDOUT", c.fx.dsn(await c.fx.token("alice"))], { env });
		assert.equal(ok.code, 0, ok.stderr);
		assert.equal(ok.stdout, "1\n2\n3\n");
	});

	test("UPDATE ... FROM, DELETE ... USING and MERGE ... USING read their other relations", async () => {
		for (const sql of [
			"UPDATE scratch SET v = s.secret FROM secrets s WHERE scratch.id = s.id RETURNING scratch.v",
			"DELETE FROM scratch USING secrets s WHERE scratch.id = s.id AND s.secret = 'topsecret-1'",
			"MERGE INTO scratch USING secrets s ON scratch.id = s.id WHEN MATCHED THEN UPDATE SET v = s.secret",
		]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("no-reading-secrets"), sql);
		}
		assert.deepEqual(await scratch(), ["x", "x", "x"]);
		await c.rw.query("UPDATE scratch SET v = 'y' WHERE id = 1");
	});

	test("RETURNING reads the rows written", async () => {
		await assert.rejects(c.rw.query("DELETE FROM secrets WHERE id = 1 RETURNING secret"), refusedByRule("no-reading-secrets"));
		await assert.rejects(c.rw.query("UPDATE secrets SET id = id WHERE id = 2 RETURNING *"), refusedByRule("no-reading-secrets"));
		assert.equal((await c.fx.pg.query("SELECT count(*)::int AS n FROM secrets")).rows[0]!.n, 3);
		// writes that return nothing are not reads
		await c.rw.query("UPDATE secrets SET secret = secret WHERE id = 3");
	});
});
