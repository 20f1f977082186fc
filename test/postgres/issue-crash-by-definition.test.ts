// Regression (red-team round 8: access levels). The memory-trusting definitions refused before
// (issue-memory-trusting-ddl) left out two that only a superuser may make and that hand the
// server's own structures to whatever functions they name. Over a superuser static credential a
// read-write grant crashed PostgreSQL (every session of every application ended, crash recovery)
// with
//  - CREATE TEXT SEARCH TEMPLATE evil (INIT = gtsvector_decompress, LEXIZE = dsimple_lexize), then
//    CREATE TEXT SEARCH DICTIONARY d (TEMPLATE = evil, a = 'b') (the init function ran on the
//    option list as if it were an index entry);
//  - CREATE AGGREGATE evil_agg(int8) (sfunc = int8_avg_accum, stype = internal, finalfunc =
//    string_agg_finalfn), then SELECT evil_agg(x) FROM generate_series(1, 100000) x;
//  - CREATE FUNCTION evil_f(int) ... SUPPORT gtsvector_decompress ..., then a query calling it.
// Text search parsers and templates, aggregates with internal state and planner support functions
// (CREATE/ALTER FUNCTION ... SUPPORT) are `system` now
// (reserved for admin grants); dictionaries, configurations and other aggregates stay writes.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { fixtureWithClients, refusedByRule } from "./fixture.ts";

describe("definitions that hand the server's internals to functions are reserved for admin grants", () => {
	const c = fixtureWithClients({}, async (fx) => {
		await fx.pg.query("CREATE FUNCTION my_f(int) RETURNS int LANGUAGE sql AS 'SELECT 1'");
	});

	test("refused for a read-write grant", async () => {
		for (const sql of [
			"CREATE TEXT SEARCH TEMPLATE evil (INIT = gtsvector_decompress, LEXIZE = dsimple_lexize)",
			"CREATE TEXT SEARCH PARSER evilp (START = prsd_start, GETTOKEN = prsd_nexttoken, END = prsd_end, LEXTYPES = prsd_lextype)",
			"CREATE AGGREGATE evil_agg(int8) (sfunc = int8_avg_accum, stype = internal, finalfunc = string_agg_finalfn)",
			"CREATE AGGREGATE evil_old (BASETYPE = int8, SFUNC = int8_avg_accum, STYPE = 'internal', FINALFUNC = string_agg_finalfn)",
			"CREATE FUNCTION evil_f(int) RETURNS int LANGUAGE sql SUPPORT gtsvector_decompress AS 'SELECT 1'",
			"ALTER FUNCTION my_f(int) SUPPORT gtsvector_decompress",
		]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("builtin:system"), sql);
		}
		assert.equal((await c.fx.pg.query("SELECT count(*)::int AS n FROM pg_ts_template WHERE tmplname = 'evil'")).rows[0]!.n, 0);
		assert.equal((await c.fx.pg.query("SELECT count(*)::int AS n FROM pg_proc WHERE proname LIKE 'evil%'")).rows[0]!.n, 0);
		// the server is up and the session goes on
		assert.equal((await c.rw.query("SELECT 1 AS one")).rows[0].one, 1);
	});

	test("dictionaries, configurations and aggregates over ordinary state stay allowed", async () => {
		await c.rw.query("BEGIN");
		try {
			await c.rw.query("CREATE TEXT SEARCH DICTIONARY my_simple (TEMPLATE = simple)");
			await c.rw.query("CREATE TEXT SEARCH CONFIGURATION my_cfg (PARSER = default)");
			await c.rw.query("CREATE AGGREGATE my_sum(int8) (sfunc = int8pl, stype = int8)");
			await c.rw.query("CREATE FUNCTION my_g(int) RETURNS int LANGUAGE sql IMMUTABLE AS 'SELECT $1'");
			assert.equal((await c.rw.query("SELECT my_sum(x)::int AS s FROM generate_series(1, 4) x")).rows[0].s, 10);
		} finally {
			await c.rw.query("ROLLBACK");
		}
	});
});
