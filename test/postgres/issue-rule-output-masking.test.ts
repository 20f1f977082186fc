// Regression (red-team round: rows a statement's text does not show). A rule on INSERT/UPDATE/DELETE
// whose action is a SELECT sends that SELECT's rows to whoever runs the write, and the write's text
// says nothing about them. Through the real gateway against a real PostgreSQL with the demo masking
// rules (phone hashed; no detector knows phones), a read-write grant ran
// `CREATE RULE r AS ON INSERT TO t DO INSTEAD SELECT phone || '' AS p FROM customers` and then
// `INSERT INTO t VALUES (1)` returned raw phones: the INSERT has no RETURNING, so the plan of the
// RowDescription that came back had no output to taint and masked nothing. A rule made outside the
// gateway (by the DBA, or before masking applied) did the same for any grant that may write.
// Now a rule whose action returns masked columns is refused while masking applies
// (`mask:rule-output`), and rows returned by a write without RETURNING are masked whole whoever
// made the rule.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { assertNoneOf, type Fixture, refusedByRule, startFixture } from "./fixture.ts";

let fx: Fixture;
let phones: string[];

before(async () => {
	fx = await startFixture({ maskRules: CORPUS_MASK_RULES, grants: [{ name: "rw", user: "rw", access: "read-write" }] });
	await fx.pg.query("CREATE TABLE rule_t (a int)");
	await fx.pg.query("CREATE TABLE rule_dba (a int)");
	await fx.pg.query("CREATE TABLE rule_sink (a int)");
	// made outside the gateway (a DBA, or before masking applied)
	await fx.pg.query("CREATE RULE dba_r AS ON UPDATE TO rule_dba DO ALSO SELECT phone || '' AS p FROM customers WHERE id <= 3");
	await fx.pg.query("INSERT INTO rule_dba VALUES (1)");
	phones = (await fx.pg.query("SELECT phone FROM customers WHERE id <= 3")).rows.map((r) => String(r.phone));
});
after(async () => {
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

test("a rule whose action returns masked columns cannot be created", async () => {
	const c = await fx.connect("rw");
	try {
		for (const sql of [
			"CREATE RULE r1 AS ON INSERT TO rule_t DO INSTEAD SELECT phone || '' AS p FROM customers WHERE id <= 3",
			"CREATE RULE r2 AS ON UPDATE TO rule_t DO ALSO SELECT phone FROM customers",
			"CREATE RULE r3 AS ON DELETE TO rule_t DO INSTEAD (SELECT 1; SELECT lower(email) FROM customers)",
			// what INSERT ... RETURNING returns comes from the rule's RETURNING
			"CREATE RULE r4 AS ON INSERT TO rule_t DO INSTEAD INSERT INTO rule_sink VALUES (NEW.a) RETURNING (SELECT ascii(substr(phone, 4, 1)) FROM customers LIMIT 1)",
		]) {
			await assert.rejects(c.query(sql), refusedByRule("mask:rule-output"), sql);
		}
		const r = await c.query("INSERT INTO rule_t VALUES (1)");
		assertNoneOf(phones, r.rows);
		assert.equal((await fx.pg.query("SELECT count(*)::int AS n FROM pg_rules WHERE tablename = 'rule_t'")).rows[0]!.n, 0);
		// a rule returning clean columns is still allowed
		await c.query("CREATE RULE r_clean AS ON INSERT TO rule_t DO ALSO SELECT id, status FROM orders WHERE id = 1");
		const clean = await c.query("DROP RULE r_clean ON rule_t");
		assert.equal(clean.command, "DROP");
	} finally {
		await c.end();
	}
});

test("rows a write without RETURNING returns (a rule made outside the gateway) are masked", async () => {
	const c: pg.Client = await fx.connect("rw");
	try {
		const r = await c.query({ text: "UPDATE rule_dba SET a = a + 1", rowMode: "array" });
		const rows = (Array.isArray(r) ? r : [r]).flatMap((x: pg.QueryResult) => x.rows);
		assert.equal(rows.length, 3, JSON.stringify(r));
		assertNoneOf(phones, rows);
		// the write itself ran
		assert.equal((await fx.pg.query("SELECT a FROM rule_dba")).rows[0]!.a, 2);
	} finally {
		await c.end();
	}
});
