// Regression (red-team round 8: guardrails and access levels). The planner's statistics keep sample
// values of every analysed column: most common values and histogram bounds (pg_stats, over
// pg_statistic; pg_stats_ext and pg_stats_ext_exprs for extended statistics). Through the real
// gateway to a real PostgreSQL (autovacuum or a DBA had run ANALYZE), under a rule blocking SELECT of
// secrets, a read-only grant read the secrets back with
//  - SELECT most_common_vals::text FROM pg_stats WHERE tablename = 'secrets';
//  - SELECT stavalues1::text FROM pg_statistic WHERE starelid = 'secrets'::regclass;
//  - SELECT histogram_bounds::text FROM pg_catalog.pg_stats WHERE attname = 'secret';
//  - the extended statistics' most common value combinations (pg_stats_ext);
//  - and a DBA's monitoring view over pg_stats;
// none of them names secrets. Reading the statistics catalogs now counts as reading every table
// for rules that name tables (and SELECT).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { fixtureWithClients, refusedByRule } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [{ name: "no-reading-secrets", action: "block", sql: { statementKinds: ["SELECT"], tables: ["public.secrets"] } }];

describe("the statistics catalogs are reads of every table", () => {
	const c = fixtureWithClients({ guardrails: GUARDRAILS }, async (fx) => {
		await fx.pg.query("CREATE TABLE secrets (id int PRIMARY KEY, secret text NOT NULL, kind text NOT NULL)");
		// few distinct values: each is a most common value
		await fx.pg.query("INSERT INTO secrets SELECT g, 'topsecret-' || (g % 3), 'k' || (g % 2) FROM generate_series(1, 300) g");
		await fx.pg.query("CREATE STATISTICS secrets_mcv (mcv) ON secret, kind FROM secrets");
		await fx.pg.query("ANALYZE secrets");
		// a DBA's monitoring view over the statistics
		await fx.pg.query("CREATE VIEW column_stats AS SELECT tablename, attname, most_common_vals::text AS mcv FROM pg_stats");
	});

	test("pg_stats, pg_statistic and pg_stats_ext are refused under a rule on SELECT of a table", async () => {
		const leaks = (await c.fx.pg.query("SELECT most_common_vals::text AS v FROM pg_stats WHERE tablename = 'secrets' AND attname = 'secret'")).rows;
		assert.match(String(leaks[0]?.v), /topsecret-1/, "the statistics hold the values (the server itself)");
		for (const sql of [
			"SELECT most_common_vals::text FROM pg_stats WHERE tablename = 'secrets'",
			"SELECT histogram_bounds::text FROM pg_catalog.pg_stats WHERE attname = 'secret'",
			"SELECT stavalues1::text FROM pg_statistic WHERE starelid = 'secrets'::regclass",
			"SELECT most_common_vals::text FROM pg_stats_ext WHERE statistics_name = 'secrets_mcv'",
			"SELECT s.v FROM (SELECT most_common_vals::text AS v FROM pg_stats) s",
			"SELECT mcv FROM column_stats WHERE tablename = 'secrets'",
		]) {
			for (const client of [c.ro, c.rw, c.admin]) {
				await assert.rejects(client.query(sql), refusedByRule("no-reading-secrets"), sql);
			}
		}
	});

	test("catalogs without row values stay readable", async () => {
		const r = await c.ro.query("SELECT count(*)::int AS n FROM pg_class WHERE relname = 'secrets'");
		assert.equal(r.rows[0].n, 1);
		await c.ro.query("SELECT n_live_tup FROM pg_stat_user_tables WHERE relname = 'secrets'");
	});
});
