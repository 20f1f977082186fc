// Regression (red-team round 8: guardrails and access levels). A table's data also lives in
// relations with names of their own: its TOAST table (values over ~2 kB, out of line) and its
// indexes (the indexed values). Table rules resolve names through the catalog, which knew these
// relations but not whose data they hold. Through the real gateway to a real PostgreSQL (static
// superuser credential), under a rule blocking SELECT of secrets:
//  - every grant read a long secret with SELECT convert_from(chunk_data, 'UTF8') FROM
//    pg_toast.pg_toast_<oid> (the TOAST table, named by the grant after a catalog look-up);
//  - an admin grant (pageinspect installed) read the indexed secrets with SELECT data FROM
//    bt_page_items('secrets_code_idx', 1), and raw index pages with get_raw_page.
// The catalog now names the table an index or TOAST table belongs to, and table rules follow it.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { fixtureWithClients, refusedByRule } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [{ name: "no-reading-secrets", action: "block", sql: { statementKinds: ["SELECT"], tables: ["public.secrets"] } }];

describe("a table's TOAST table and indexes are the table for its rules", () => {
	let toast = "";
	const c = fixtureWithClients({ guardrails: GUARDRAILS }, async (fx) => {
		await fx.pg.query("CREATE EXTENSION pageinspect");
		await fx.pg.query("CREATE TABLE secrets (id int PRIMARY KEY, code text NOT NULL, secret text NOT NULL)");
		// stored out of line and uncompressed: the TOAST chunks hold the text as written
		await fx.pg.query("ALTER TABLE secrets ALTER COLUMN secret SET STORAGE EXTERNAL");
		await fx.pg.query("INSERT INTO secrets SELECT g, 'code-' || g, 'topsecret-' || g || repeat('x', 4000) FROM generate_series(1, 3) g");
		await fx.pg.query("CREATE INDEX secrets_code_idx ON secrets (code)");
		toast = (await fx.pg.query("SELECT reltoastrelid::regclass::text AS t FROM pg_class WHERE relname = 'secrets'")).rows[0]!.t;
		const raw = await fx.pg.query(`SELECT count(*)::int AS n FROM ${toast} WHERE convert_from(chunk_data, 'UTF8') LIKE 'topsecret-%'`);
		assert.ok(raw.rows[0]!.n > 0, "the TOAST chunks hold the secrets (the server itself)");
	});

	test("reading the TOAST table is refused", async () => {
		// the name is found in the catalog, as an agent would
		const found = await c.ro.query("SELECT reltoastrelid::regclass::text AS t FROM pg_class WHERE relname = 'secrets'");
		assert.equal(found.rows[0].t, toast);
		for (const client of [c.ro, c.rw, c.admin]) {
			await assert.rejects(client.query(`SELECT convert_from(chunk_data, 'UTF8') FROM ${toast}`), refusedByRule("no-reading-secrets"));
			await assert.rejects(client.query(`SELECT chunk_data FROM ${toast.replace("pg_toast.", "pg_toast.\"")}" WHERE chunk_seq = 0`), refusedByRule("no-reading-secrets"));
		}
	});

	test("reading an index's entries or pages is refused (admin grant)", async () => {
		for (const sql of [
			"SELECT data FROM bt_page_items('secrets_code_idx', 1)",
			"SELECT data FROM bt_page_items('public.secrets_code_idx', 1)",
			"SELECT length(get_raw_page('secrets_code_idx', 1))",
			"SELECT length(get_raw_page('secrets_pkey', 1))",
		]) {
			await assert.rejects(c.admin.query(sql), refusedByRule("no-reading-secrets"), sql);
		}
	});

	test("other tables' indexes and catalogs stay readable", async () => {
		await c.admin.query("SELECT count(*) FROM bt_page_items('pg_class_oid_index', 1)");
		await c.ro.query("SELECT count(*) FROM pg_class");
	});
});
