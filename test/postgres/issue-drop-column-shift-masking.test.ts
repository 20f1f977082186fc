// Regression (red-team round: masking by position). Masking knows a relation's columns from the
// catalog, which is read on another connection and cannot see DDL before it commits. DROP COLUMN moves
// every later column one place left, so inside an open transaction a read-write grant ran
// `ALTER TABLE customers DROP COLUMN id CASCADE, DROP COLUMN name; ALTER TABLE customers ADD COLUMN
// id int, ADD COLUMN name text` and then `SELECT * FROM (SELECT * FROM customers UNION ALL SELECT *
// FROM customers) u` (a set operation carries no column origin in RowDescription): the taint of the
// old second column (name, clean) fell on phone, and raw phones came back (no detector knows them);
// the ROLLBACK left no trace. Without DROP COLUMN, `CREATE DOMAIN dz AS integer; ALTER TABLE
// s9.customers ALTER COLUMN id TYPE dz; DROP DOMAIN dz CASCADE` dropped the column the same way.
// Now DROP COLUMN of a relation holding masked columns, and any DROP ... CASCADE (it may drop columns
// of tables it does not name), are refused while masking applies (`mask:rename-masked`, like
// renaming a column).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { assertNoneOf, type Fixture, refusedByRule, startFixture } from "./fixture.ts";

let fx: Fixture;
let phones: string[];

before(async () => {
	fx = await startFixture({ maskRules: CORPUS_MASK_RULES, grants: [{ name: "rw", user: "rw", access: "read-write" }] });
	await fx.pg.query("CREATE TABLE scratch (a int, b text, c text)");
	// rule customers.phone covers every schema's customers
	await fx.pg.query("CREATE SCHEMA s9; CREATE TABLE s9.customers (id int, name text, phone text); INSERT INTO s9.customers SELECT id, name, phone FROM public.customers");
	phones = (await fx.pg.query("SELECT phone FROM customers")).rows.map((r) => String(r.phone));
});
after(async () => {
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

const UNION = "SELECT * FROM (SELECT * FROM customers UNION ALL SELECT * FROM customers) u LIMIT 4";

test("a column of a masked table cannot be dropped to move the others under clean positions", async () => {
	const c = await fx.connect("rw");
	c.on("notice", () => undefined);
	try {
		await c.query("BEGIN");
		await assert.rejects(c.query("ALTER TABLE customers DROP COLUMN id CASCADE, DROP COLUMN name"), refusedByRule("mask:rename-masked"));
		await c.query("ROLLBACK");
		await c.query("BEGIN");
		await assert.rejects(c.query("ALTER TABLE customers DROP COLUMN name CASCADE"), refusedByRule("mask:rename-masked"));
		await c.query("ROLLBACK");
		// one string, one implicit transaction: refused as a whole
		await assert.rejects(
			c.query(`ALTER TABLE customers DROP COLUMN id CASCADE, DROP COLUMN name; ALTER TABLE customers ADD COLUMN id int, ADD COLUMN name text; ${UNION}`),
			refusedByRule("mask:rename-masked"),
		);
		const r = await c.query(UNION);
		assert.equal(r.rows.length, 4);
		assertNoneOf(phones, r.rows);
		// the same shift through a type the columns use, dropped with CASCADE
		await c.query("BEGIN");
		await c.query("CREATE DOMAIN dz AS integer");
		await c.query("CREATE DOMAIN dn AS text");
		await c.query("ALTER TABLE s9.customers ALTER COLUMN id TYPE dz, ALTER COLUMN name TYPE dn");
		await assert.rejects(c.query("DROP DOMAIN dz, dn CASCADE"), refusedByRule("mask:rename-masked"));
		await c.query("ROLLBACK");
		const s9 = await c.query("SELECT * FROM (SELECT * FROM s9.customers UNION ALL SELECT * FROM s9.customers) u LIMIT 4");
		assert.equal(s9.rows.length, 4);
		assertNoneOf(phones, s9.rows);
		// the table is untouched, and columns of tables without masked columns can still be dropped
		assert.equal((await fx.pg.query("SELECT count(*)::int AS n FROM information_schema.columns WHERE table_schema = 'public' AND table_name = 'customers' AND column_name IN ('id', 'name')")).rows[0]!.n, 2);
		await c.query("ALTER TABLE scratch DROP COLUMN b");
		await c.query("CREATE DOMAIN dclean AS text");
		await c.query("DROP DOMAIN dclean");
	} finally {
		await c.end();
	}
});
