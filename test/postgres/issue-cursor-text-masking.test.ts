// Regression (red-team round 12: masking). pg_cursors and pg_prepared_statements show the session's
// cursors and prepared statements with their text, which code may make at run time from masked
// values: a read-only grant gave a DBA's generic helper `dyn(q text) RETURNS refcursor` (`OPEN c
// FOR EXECUTE q`) the text `'SELECT ' || quote_literal(phone)`, and `SELECT statement FROM
// pg_cursors` (or `pg_cursor()`) read the phone raw; a helper running `EXECUTE 'PREPARE dp AS ' ||
// q` did the same through pg_prepared_statements and pg_backend_memory_contexts (a cached plan's
// context is named by its query text). Every column of these views, and of the functions behind
// them, is opaque to masking now.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import { assertNoneOf, fixtureWithClients } from "./fixture.ts";

describe("text of cursors and prepared statements made at run time", () => {
	const phones: string[] = [];
	const c = fixtureWithClients({ maskRules: CORPUS_MASK_RULES }, async (fx) => {
		phones.push(...(await fx.pg.query("SELECT phone FROM customers ORDER BY id")).rows.map((r) => r.phone as string));
		// a DBA's helpers (existing code, whose results masking masks)
		await fx.pg.query("CREATE FUNCTION dyn(q text) RETURNS refcursor LANGUAGE plpgsql AS $$ DECLARE c refcursor := 'dync'; BEGIN OPEN c FOR EXECUTE q; RETURN c; END $$");
		await fx.pg.query("CREATE FUNCTION dynp(q text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'PREPARE dp AS ' || q; END $$");
	});

	const CURSOR_READS = [
		"SELECT name, statement FROM pg_cursors",
		"SELECT statement FROM pg_catalog.pg_cursors WHERE statement LIKE '%555%'",
		"SELECT c.statement FROM pg_cursor() c",
		"SELECT s FROM (SELECT statement || '' AS s FROM pg_cursors) q",
	];

	test("the server shows the phone in the cursor's text (what masking now masks)", async () => {
		const d = await c.fx.pg.connect();
		try {
			await d.query("BEGIN");
			await d.query("SELECT dyn('SELECT ' || quote_literal(phone)) FROM customers WHERE id = 1");
			const r = await d.query("SELECT statement FROM pg_cursors");
			assert.ok(String(r.rows[0]?.statement).includes(phones[0]!));
			await d.query("COMMIT");
		} finally {
			await d.end();
		}
	});

	for (const sql of CURSOR_READS) {
		test(`read-only: ${sql}`, async () => {
			await c.ro.query("BEGIN");
			try {
				await c.ro.query("SELECT dyn('SELECT ' || quote_literal(phone)) FROM customers WHERE id = 1");
				const r = await c.ro.query(sql);
				assert.equal(r.rows.length, 1);
				assertNoneOf(phones, r.rows);
				assertNoneOf(phones, (await c.ro.query({ text: sql, values: [] })).rows);
			} finally {
				await c.ro.query("COMMIT");
			}
		});
	}

	test("read-only: a statement a helper prepared, read in pg_prepared_statements and memory contexts", async () => {
		await c.ro.query("SELECT dynp('SELECT ' || quote_literal(phone)) FROM customers WHERE id = 1");
		const r = await c.ro.query("SELECT name, statement FROM pg_prepared_statements");
		assert.equal(r.rows.length, 1);
		assertNoneOf(phones, r.rows);
		assertNoneOf(phones, (await c.ro.query("SELECT * FROM pg_prepared_statement()")).rows);
		// a cached plan's memory context is named by its query text (superuser upstream credential)
		const m = await c.ro.query("SELECT name, ident FROM pg_backend_memory_contexts WHERE ident LIKE '%PREPARE dp%'");
		assert.ok(m.rows.length >= 1);
		assertNoneOf(phones, m.rows);
		assertNoneOf(phones, (await c.ro.query("SELECT ident FROM pg_get_backend_memory_contexts() WHERE ident LIKE '%PREPARE dp%'")).rows);
		await c.ro.query("DEALLOCATE dp");
	});
});
