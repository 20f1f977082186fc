// Regression (red-team round: access levels). Some definitions only a superuser may make are
// trusted by the server with raw memory. Over a superuser static credential a read-write grant ran
// CREATE CAST (text AS jsonb) WITHOUT FUNCTION (a plain write to the classifier), then SELECT
// repeat('abcdefgh', 20)::text::jsonb -> 'x' crashed the PostgreSQL server: every session of every
// application ended and the server went through crash recovery. A cast WITHOUT FUNCTION, a base
// type (I/O functions and storage), ALTER TYPE ... SET and operator classes/families are now
// `system` (reserved for admin grants); composite, enum and range types stay writes (casts WITH
// FUNCTION / WITH INOUT became `system` too in red-team round 10: issue-cast-resolution.test.ts).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { refusedByRule, fixtureWithClients } from "./fixture.ts";

describe("definitions the server trusts with raw memory are reserved for admin grants", () => {
	const c = fixtureWithClients();

	test("refused for a read-write grant", async () => {
		for (const sql of [
			"CREATE CAST (text AS jsonb) WITHOUT FUNCTION",
			"CREATE TYPE raw_t (INPUT = int4in, OUTPUT = textout, INTERNALLENGTH = 4)",
			"CREATE OPERATOR CLASS oc FOR TYPE int USING btree AS OPERATOR 1 <",
		]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("builtin:system"), sql);
		}
		assert.equal((await c.fx.pg.query("SELECT count(*)::int AS n FROM pg_cast WHERE castmethod = 'b' AND casttarget = 'jsonb'::regtype")).rows[0]!.n, 0);
		// the server is up and the session goes on
		assert.equal((await c.rw.query("SELECT 1 AS one")).rows[0].one, 1);
	});

	test("ordinary types stay allowed", async () => {
		await c.rw.query("BEGIN");
		try {
			await c.rw.query("CREATE TYPE mood AS ENUM ('ok', 'sad')");
			await c.rw.query("CREATE TYPE pair AS (a int, b int)");
		} finally {
			await c.rw.query("ROLLBACK");
		}
	});
});
