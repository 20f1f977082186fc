// Regression (red-team round 12: masking). The catalog prints a view's definition with pg_catalog
// alone in the search_path (round 11), so every name outside pg_catalog comes out schema-qualified
// and pg_catalog's own relations come out bare. The analysis read those bare names with the reading
// session's search_path: a read-only client that started with `search_path = s12, pg_catalog,
// public`, s12 holding a clean table named `pg_stats`, had a DBA's view over pg_catalog.pg_stats
// analysed as a view over s12.pg_stats, and `SELECT m FROM stats12` gave the phones in the
// planner's sample values (most_common_vals) raw. A bare relation name in a printed definition is
// now pg_catalog's (unless a CTE of the definition takes it).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { assertNoneOf, fixtureWithClients } from "./fixture.ts";

describe("bare pg_catalog names in view definitions", () => {
	const phones: string[] = [];
	const c = fixtureWithClients({ maskRules: [{ name: "phone", columns: ["public.customers.phone"], strategy: { type: "redact" } }] }, async (fx) => {
		phones.push(...(await fx.pg.query("SELECT phone FROM customers ORDER BY id")).rows.map((r) => r.phone as string));
		await fx.pg.query("CREATE SCHEMA s12");
		await fx.pg.query("CREATE TABLE s12.pg_stats (tablename name, attname name, most_common_vals text, histogram_bounds text)");
		// made by a DBA with the default search_path: the view reads pg_catalog.pg_stats
		await fx.pg.query(
			"CREATE VIEW public.stats12 AS SELECT tablename, attname, most_common_vals::text AS m, histogram_bounds::text AS h FROM pg_stats",
		);
		await fx.pg.query(
			"CREATE VIEW public.stats12cte AS WITH s AS (SELECT tablename, attname, most_common_vals FROM pg_stats) SELECT s.tablename, s.attname, s.most_common_vals::text AS m FROM s",
		);
	});

	let other: pg.Client;
	before(async () => {
		other = new pg.Client(c.fx.clientConfig("bob", await c.fx.token("bob")));
		const withPath = other as unknown as { getStartupConf(): Record<string, string> };
		const base = withPath.getStartupConf.bind(other);
		withPath.getStartupConf = () => ({ ...base(), search_path: "s12, pg_catalog, public" });
		other.on("error", () => undefined);
		await other.connect();
	});
	after(async () => {
		await other?.end().catch(() => undefined);
	});

	const READS = [
		"SELECT m, h FROM stats12 WHERE tablename = 'customers' AND attname = 'phone'",
		"SELECT m FROM public.stats12cte WHERE tablename = 'customers' AND attname = 'phone'",
	];

	test("the server reads pg_catalog.pg_stats through the view (phones in its sample values)", async () => {
		const r = await c.fx.pg.query(READS[0]!);
		assert.ok(phones.some((p) => String(r.rows[0]?.m).includes(p)));
	});

	for (const sql of READS) {
		test(`a session whose search_path puts a look-alike first: ${sql}`, async () => {
			assert.equal((await other.query("SHOW search_path")).rows[0].search_path, "s12, pg_catalog, public");
			const r = await other.query(sql);
			assert.equal(r.rows.length, 1);
			assertNoneOf(phones, r.rows);
			const e = await other.query({ text: sql, values: [] });
			assertNoneOf(phones, e.rows);
		});
	}

	test("the session's own bare pg_stats is still its s12 table", async () => {
		await c.fx.pg.query("INSERT INTO s12.pg_stats VALUES ('t', 'a', 'mine', NULL)");
		const r = await other.query("SELECT most_common_vals FROM pg_stats WHERE tablename = 't'");
		assert.deepEqual(r.rows, [{ most_common_vals: "mine" }]);
	});
});
