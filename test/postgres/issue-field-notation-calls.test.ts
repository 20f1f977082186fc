// Regression (red-team round: guardrails and access levels). PostgreSQL resolves `(x).name` and
// `t.name` as a call of the one-argument function `name` when no column or field has that name,
// whatever the argument's type ("field notation"). The parse tree holds a field selection there,
// not a function call, so neither the built-in function risks nor rules on functions saw it.
// Through the real gateway to a real PostgreSQL:
//  - read-only grant: SELECT ('/etc/hostname'::text).pg_read_file read a server file, and
//    (v.p).pg_ls_dir listed the data directory;
//  - read-write grant: SELECT (pg_backend_pid()).pg_cancel_backend signalled a backend;
//  - admin grant, rule blocking the function purge: SELECT x.purge FROM t2 x deleted rows;
//  - masking: SELECT (card_number::bigint).pg_advisory_lock FROM customers took a lock whose key
//    pg_locks listed (classid, objid = the whole card number) to a read-only grant.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { DEMO_RULES } from "../../gateway/policy/corpus/catalog.ts";
import { refusedByRule, fixtureWithClients } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [{ name: "no-purge", action: "block", sql: { functions: ["purge"] } }];

describe("function calls in field notation are classified as calls", () => {
	const c = fixtureWithClients({ guardrails: GUARDRAILS, maskRules: DEMO_RULES }, async (fx) => {
		await fx.pg.query("CREATE TABLE t2 (id int PRIMARY KEY, note text)");
		await fx.pg.query("INSERT INTO t2 SELECT g, 'n' || g FROM generate_series(1, 3) g");
		await fx.pg.query("CREATE FUNCTION purge(t2) RETURNS int LANGUAGE sql AS 'DELETE FROM t2 WHERE id = $1.id RETURNING 1'");
	});
	const count = async (): Promise<number> => (await c.fx.pg.query("SELECT count(*)::int AS n FROM t2")).rows[0]!.n;

	test("read-only: server files through (x).pg_read_file", async () => {
		await assert.rejects(c.ro.query("SELECT ('/etc/hostname'::text).pg_read_file"), refusedByRule("grant:read-only"));
		await assert.rejects(c.ro.query("SELECT (v.p).pg_ls_dir FROM (VALUES ('.'::text)) v(p)"), refusedByRule("grant:read-only"));
		await assert.rejects(c.ro.query("SELECT ('select 1'::text).crosstab"), refusedByRule("grant:read-only"));
		// field selection and qualified columns stay allowed
		assert.equal((await c.ro.query("SELECT x.id FROM t2 x WHERE x.id = 1")).rows[0].id, 1);
		assert.equal((await c.ro.query("SELECT (r).note FROM (SELECT t2 AS r FROM t2 WHERE id = 2) s")).rows[0].note, "n2");
	});

	test("read-write: backend signals through (x).pg_cancel_backend", async () => {
		await assert.rejects(c.rw.query("SELECT (pg_backend_pid()).pg_cancel_backend"), refusedByRule("builtin:server-access"));
	});

	test("admin: a rule on a function meets its calls in field notation", async () => {
		for (const sql of ["SELECT x.purge FROM t2 x WHERE id = 1", "SELECT (t2).purge FROM t2", "SELECT public.t2.purge FROM t2"]) {
			await assert.rejects(c.admin.query(sql), refusedByRule("no-purge"), sql);
		}
		assert.equal(await count(), 3);
	});

	test("masking: a masked value passed to a state function in field notation is refused", async () => {
		await assert.rejects(
			c.ro.query("SELECT (card_number::bigint).pg_advisory_lock FROM customers WHERE id = 1"),
			refusedByRule("mask:copy-masked-data"),
		);
		await assert.rejects(c.ro.query("SELECT (c.card_number::float8).setseed FROM customers c WHERE id = 1"), refusedByRule("mask:copy-masked-data"));
		const locks = await c.ro.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'");
		assert.equal(locks.rows[0].n, 0);
		// clean values still may take advisory locks this way
		await c.ro.query("SELECT (id::bigint).pg_advisory_xact_lock FROM customers WHERE id = 1");
	});
});
