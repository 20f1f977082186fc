// Regression (red-team round: masking). Masking analyses names with a catalog read on another
// connection, which cannot see an open transaction's changes. A read-write grant created its own
// table mytab (x text), then ran `BEGIN; DROP TABLE mytab; CREATE VIEW public.mytab AS SELECT phone
// AS x FROM customers; SELECT x || '' FROM mytab`: the catalog still described the dropped table, x
// was clean to the analysis, and the phones came back raw (a plain `SELECT x` was masked only by the
// RowDescription origin). Creating a relation under an unqualified name that resolved was already
// refused; the schema-qualified spelling was allowed as "the same relation". Likewise `CREATE RULE
// "_RETURN" AS ON SELECT TO rt DO INSTEAD SELECT phone AS x FROM customers` (PostgreSQL 15 turns
// the empty table rt into a view) then `SELECT x || '' FROM rt` in the same transaction.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { type Fixture, startFixture } from "./fixture.ts";

let fx: Fixture;
let phones: string[];

before(async () => {
	fx = await startFixture({ maskRules: CORPUS_MASK_RULES, grants: [{ name: "rw", user: "rw", access: "read-write" }] });
	phones = (await fx.pg.query("select phone from customers order by id")).rows.map((r) => r.phone as string);
});
after(async () => {
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

test("a relation cannot be re-created under a name the catalog still sees in the same transaction", async () => {
	const c = await fx.connect("rw");
	c.on("error", () => undefined);
	try {
		await c.query("CREATE TABLE mytab (x text)");
		await c.query("BEGIN");
		await c.query("DROP TABLE mytab");
		await assert.rejects(c.query("CREATE VIEW public.mytab AS SELECT phone AS x FROM customers"), (e: { code?: string; detail?: string; message: string }) => {
			assert.equal(e.code, "42501", e.message);
			assert.equal(e.detail, "Drawbridge rule: mask:shadow");
			return true;
		});
		const r = await c.query("SELECT x || '' AS y FROM mytab LIMIT 3").catch(() => ({ rows: [] }));
		const text = JSON.stringify(r.rows);
		for (const p of phones) assert.ok(!text.includes(p), `raw phone ${p} in ${text}`);
		await c.query("ROLLBACK");
		// after the DROP commits, the name is free again
		await c.query("DROP TABLE mytab");
		await c.query("CREATE VIEW public.mytab AS SELECT phone AS x FROM customers");
		const v = await c.query("SELECT x || '' AS y FROM mytab LIMIT 3");
		assert.equal(v.rows.length, 3);
		for (const p of phones) assert.ok(!JSON.stringify(v.rows).includes(p));
		// OR REPLACE of a clean view stays allowed
		await c.query("CREATE VIEW public.clean_v AS SELECT id FROM orders");
		await c.query("CREATE OR REPLACE VIEW public.clean_v AS SELECT id, status FROM orders");
	} finally {
		await c.end();
	}
});

test("a rule ON SELECT cannot turn a table into a view over masked columns", async () => {
	// PostgreSQL 15 converts an empty table with an ON SELECT DO INSTEAD rule into a view; inside the
	// transaction the catalog still described the table (x clean), and x || '' showed raw phones.
	const c = await fx.connect("rw");
	c.on("error", () => undefined);
	try {
		await c.query("CREATE TABLE rt (x text)");
		await c.query("BEGIN");
		await assert.rejects(c.query(`CREATE RULE "_RETURN" AS ON SELECT TO rt DO INSTEAD SELECT phone AS x FROM customers`), (e: { code?: string; detail?: string }) => {
			assert.equal(e.code, "42501");
			assert.equal(e.detail, "Drawbridge rule: mask:replace-view");
			return true;
		});
		const r = await c.query("SELECT x || '' AS y FROM rt LIMIT 3").catch(() => ({ rows: [] }));
		for (const p of phones) assert.ok(!JSON.stringify(r.rows).includes(p), JSON.stringify(r.rows));
		await c.query("ROLLBACK");
	} finally {
		await c.end();
	}
});
