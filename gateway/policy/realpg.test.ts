/**
 * The masking half of the bypass corpus against a real PostgreSQL 15 (test/env): every "masked"
 * statement is run for real (inside a rolled-back transaction), and the plan is computed from the
 * real RowDescription (table OID + attribute number) and a Catalog that reads the real pg_catalog
 * (pg_class, pg_attribute, pg_get_viewdef, pg_proc). This checks the corpus data (result widths)
 * and that origin + taint agree with what the server really returns. The PostgreSQL data path
 * replays the whole corpus through the proxy in test/postgres.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import { type PostgresHandle, printLogsOnFailure, startPostgres } from "../../test/env/index.ts";
import { demoContext } from "./corpus/catalog.ts";
import { CORPUS_MASK_RULES, SQL_BYPASS_CORPUS } from "./corpus/sql-bypass.ts";
import { planMasks } from "./mask.ts";
import { SessionSqlState } from "./session.ts";
import { analyzeSql } from "./sql.ts";
import type { Catalog, FunctionCatalog, RelationInfo, ResultField } from "./types.ts";

let server: PostgresHandle;
let client: pg.Client;

/** Catalog over a live connection, resolved as PostgreSQL does (to_regclass uses search_path). */
class LiveCatalog implements Catalog, FunctionCatalog {
	constructor(readonly c: pg.Client) {}

	async #load(where: string, param: string | number): Promise<RelationInfo | undefined> {
		const r = await this.c.query(
			`SELECT c.oid::int AS oid, n.nspname, c.relname, c.relkind
			   FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE ${where}`,
			[param],
		);
		const row = r.rows[0] as { oid: number; nspname: string; relname: string; relkind: string; def?: string | null } | undefined;
		if (!row) return undefined;
		// Printed as the gateway's catalog prints it: pg_catalog alone in the search_path (for this
		// statement only), so names outside pg_catalog come out schema-qualified.
		row.def = (
			await this.c.query(
				`SELECT CASE WHEN $2 IN ('v', 'm') THEN pg_catalog.pg_get_viewdef($1::oid) END AS def
				   FROM (SELECT pg_catalog.set_config('search_path', 'pg_catalog', true)) p`,
				[row.oid, row.relkind],
			)
		).rows[0]?.def;
		const cols = await this.c.query(
			"SELECT attname, attnum::int AS attnum FROM pg_attribute WHERE attrelid = $1 AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
			[row.oid],
		);
		const kinds: Record<string, RelationInfo["kind"]> = { r: "table", v: "view", m: "matview", f: "foreign", p: "partitioned" };
		const info: RelationInfo = {
			oid: row.oid,
			schema: row.nspname,
			name: row.relname,
			kind: kinds[row.relkind] ?? "other",
			columns: cols.rows.map((x: { attname: string; attnum: number }) => ({ name: x.attname, attnum: x.attnum })),
		};
		if (typeof row.def === "string") info.viewDefinition = row.def;
		return info;
	}

	relation(schema: string | undefined, name: string): Promise<RelationInfo | undefined> {
		const q = schema ? `${quoteIdent(schema)}.${quoteIdent(name)}` : quoteIdent(name);
		return this.#load("c.oid = to_regclass($1)", q);
	}

	relationByOid(oid: number): Promise<RelationInfo | undefined> {
		return this.#load("c.oid = $1", oid);
	}

	async isBuiltinFunction(schema: string | undefined, name: string): Promise<boolean> {
		const r = await this.c.query(
			`SELECT bool_and(n.nspname = 'pg_catalog') AS builtin FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
			  WHERE p.proname = $2 AND ($1::text IS NULL OR n.nspname = $1) AND ($1::text IS NOT NULL OR n.nspname = ANY (current_schemas(true)))`,
			[schema ?? null, name],
		);
		return (r.rows[0] as { builtin: boolean | null }).builtin === true;
	}
}

function quoteIdent(s: string): string {
	return `"${s.replace(/"/g, '""')}"`;
}

before(async () => {
	server = await startPostgres();
	client = await server.connect();
	await client.query(`
		CREATE FUNCTION get_email(int) RETURNS text LANGUAGE sql AS 'SELECT email FROM customers WHERE id = $1';
		CREATE FUNCTION public.lower(text) RETURNS text LANGUAGE sql AS 'SELECT $1';
		CREATE FUNCTION open_cursor() RETURNS refcursor LANGUAGE plpgsql AS $$
		  DECLARE c refcursor := 'refcursor_from_function';
		  BEGIN OPEN c FOR SELECT email FROM customers; RETURN c; END $$;
	`);
});

after(async () => {
	await client?.end();
	await server?.stop();
});

printLogsOnFailure(() => [["postgres", server]]);

const cases = SQL_BYPASS_CORPUS.filter((c) => c.expect === "masked" && !/^\s*COPY/i.test(c.sql));

test("real catalog: the seeded views analyse from pg_get_viewdef", async () => {
	const cat = new LiveCatalog(client);
	const v = await cat.relation(undefined, "customer_order_totals");
	assert.equal(v?.kind, "view");
	assert.ok(v?.viewDefinition && analyzeSql(v.viewDefinition).ok, v?.viewDefinition);
	assert.equal(await cat.isBuiltinFunction(undefined, "lower"), false, "public.lower exists next to pg_catalog.lower");
	assert.equal(await cat.isBuiltinFunction("pg_catalog", "lower"), true);
	assert.equal(await cat.isBuiltinFunction(undefined, "get_email"), false);
	assert.equal(await cat.isBuiltinFunction(undefined, "upper"), true);
});

for (const c of cases) {
	test(`real PostgreSQL: corpus ${c.id} is masked (${c.note})`, async () => {
		const ctx = demoContext({ rules: CORPUS_MASK_RULES, catalog: new LiveCatalog(client) });
		const state = new SessionSqlState();
		await client.query("BEGIN");
		try {
			if (c.id === "mask-fetch-unknown-cursor") await client.query("SELECT open_cursor()");
			for (const s of c.setup ?? []) {
				await client.query(s);
				state.record(state.resolve(analyzeSql(s)));
			}
			if (c.scrub && (c.masked ?? []).length === 0) {
				// The statement fails and PostgreSQL prints the masked value in the error: the plan
				// must tell the data path to scrub messages.
				await assert.rejects(client.query(c.sql), /@example\.com|\d{5}/);
				// A SELECT fails after its RowDescription: its plan must tell the data path to scrub. Other
				// statements (EXPLAIN ANALYZE, UPDATE) fail before any RowDescription, where the data path
				// scrubs without a plan (checked end to end by test/postgres/bypass-corpus.test.ts).
				if (/^\s*select\b/i.test(c.sql)) {
					const plan = await planMasks(analyzeSql(c.sql), [], ctx);
					assert.equal(plan.scrubMessages, true);
				}
				return;
			}
			if (c.scrub) {
				// Cases that fail on purpose (a value formatted into the error text): the premise is that
				// PostgreSQL errors here; that the gateway scrubs the text is checked end to end by
				// test/postgres/bypass-corpus.test.ts (the scrubbing is the data path's, not the plan's).
				const failed = await client.query("SAVEPOINT scrub_case").then(() =>
					client.query(c.sql).then(
						() => undefined,
						(e: Error) => e,
					),
				);
				if (failed) {
					assert.ok(failed instanceof Error && failed.message.length > 0, `${c.id}: ${c.sql} fails in PostgreSQL`);
					return;
				}
				await client.query("RELEASE SAVEPOINT scrub_case");
			}
			const raw = (await client.query(c.sql)) as pg.QueryResult | pg.QueryResult[];
			const result = Array.isArray(raw) ? raw[raw.length - 1]! : raw;
			assert.equal(result.fields.length, c.width, `result width of ${c.sql}`);
			const fields: ResultField[] = result.fields.map((f) => ({
				name: f.name,
				tableOid: f.tableID,
				columnAttr: f.columnID,
				typeOid: f.dataTypeID,
				format: 0,
			}));
			const analysis = state.resolve(analyzeSql(c.sql));
			assert.ok(analysis.ok);
			const plan = await planMasks(analysis, fields, ctx, { statementIndex: analysis.statements.length - 1 });
			const masked = new Set(plan.columns.map((x) => x.index));
			for (const i of c.masked ?? []) assert.ok(masked.has(i), `column ${i} (${fields[i]?.name}) leaks: ${JSON.stringify(plan.columns)}`);
		} finally {
			await client.query("ROLLBACK");
			for (const s of c.setup ?? []) {
				const a = analyzeSql(s);
				if (a.ok && a.statements[0]?.prepared) await client.query(`DEALLOCATE ${a.statements[0].prepared.name}`);
			}
		}
	});
}

test("real PostgreSQL: clean columns stay clean with real origins (control)", async () => {
	const ctx = demoContext({ rules: CORPUS_MASK_RULES, catalog: new LiveCatalog(client) });
	const r = await client.query("SELECT c.id, c.name, o.amount, o.status FROM customers c JOIN orders o ON o.customer_id = c.id LIMIT 1");
	const fields: ResultField[] = r.fields.map((f) => ({ name: f.name, tableOid: f.tableID, columnAttr: f.columnID, typeOid: f.dataTypeID, format: 0 }));
	const plan = await planMasks("SELECT c.id, c.name, o.amount, o.status FROM customers c JOIN orders o ON o.customer_id = c.id LIMIT 1", fields, ctx);
	assert.deepEqual(plan.columns, []);
	const star = await client.query("SELECT * FROM customers LIMIT 1");
	const starFields: ResultField[] = star.fields.map((f) => ({ name: f.name, tableOid: f.tableID, columnAttr: f.columnID, typeOid: f.dataTypeID, format: 0 }));
	const starPlan = await planMasks("SELECT * FROM customers LIMIT 1", starFields, ctx);
	assert.deepEqual(
		starPlan.columns.map((x) => x.index),
		[2, 3, 4, 5],
	);
});

/**
 * Differential check of `readOnly` against PostgreSQL's own read-only transactions: a statement we
 * call read-only must never fail with 25006 (read_only_sql_transaction) inside BEGIN READ ONLY, and
 * a statement PostgreSQL refuses with 25006 must not be read-only for us. Statements with
 * server-side effects (programs, files, signals, identity) are not executed.
 */
const READ_ONLY_SAMPLES = [
	"SELECT 1",
	"SHOW ALL",
	"SET application_name = 'x'",
	"SET LOCAL statement_timeout = 1000",
	"RESET application_name",
	"EXPLAIN SELECT * FROM orders",
	"EXPLAIN DELETE FROM orders",
	"EXPLAIN ANALYZE SELECT count(*) FROM orders",
	"DECLARE c CURSOR FOR SELECT * FROM orders",
	"VALUES (1)",
	"TABLE customer_contacts",
	"SAVEPOINT s",
	"LISTEN ch",
	"UNLISTEN *",
	"DISCARD PLANS",
	"SET CONSTRAINTS ALL DEFERRED",
	"SELECT lower(name), now(), count(*) OVER () FROM customers",
	"PREPARE ro_p AS SELECT 1",
	"COPY (SELECT 1) TO STDOUT",
	"WITH x AS (SELECT * FROM orders) SELECT count(*) FROM x",
];
const WRITE_SAMPLES = [
	"INSERT INTO orders VALUES (9999, 1, 1, 'x')",
	"UPDATE orders SET status = 'x' WHERE id = 1",
	"DELETE FROM orders WHERE id = 1",
	"MERGE INTO orders o USING orders s ON o.id = s.id WHEN MATCHED THEN DO NOTHING",
	"TRUNCATE orders",
	"CREATE TABLE t_ro (x int)",
	"CREATE TEMP TABLE t_tmp AS SELECT 1",
	"SELECT * INTO t_into FROM orders",
	"SELECT * FROM orders FOR UPDATE",
	"WITH d AS (DELETE FROM orders WHERE id = 1 RETURNING 1) SELECT * FROM d",
	"EXPLAIN ANALYZE DELETE FROM orders WHERE id = 1",
	"SELECT nextval('s_ro')",
	"NOTIFY ch",
	"LOCK TABLE orders IN EXCLUSIVE MODE",
	"COMMENT ON TABLE orders IS 'x'",
	"CREATE INDEX ON orders (status)",
	"ALTER TABLE orders ADD COLUMN y int",
	"DROP VIEW customer_contacts",
	"GRANT SELECT ON orders TO PUBLIC",
	"PREPARE TRANSACTION 'x'",
	"PREPARE w_p AS DELETE FROM orders WHERE id = 1",
];

test("real PostgreSQL: readOnly agrees with BEGIN READ ONLY (no false read-only)", async () => {
	await client.query("CREATE SEQUENCE IF NOT EXISTS s_ro");
	const corpusSql = SQL_BYPASS_CORPUS.filter((c) => !c.setup && !c.sql.includes("\u0000")).map((c) => c.sql);
	const executable = (sql: string): boolean => {
		const a = analyzeSql(sql);
		if (!a.ok) return false;
		const dangerous = new Set(["server-access", "identity-switch", "privilege", "system", "opaque-code", "unknown", "dynamic-sql"]);
		return a.statements.every((s) => !(s.risks ?? []).some((r) => dangerous.has(r.kind)) && !/^(BEGIN|START|COMMIT|ROLLBACK|RESET ALL|DISCARD ALL)/.test(s.kind));
	};
	let refused = 0;
	for (const sql of [...READ_ONLY_SAMPLES, ...WRITE_SAMPLES, ...corpusSql.filter(executable)]) {
		const a = analyzeSql(sql);
		assert.ok(a.ok, sql);
		const ours = a.statements.every((s) => s.readOnly);
		await client.query("BEGIN READ ONLY");
		let code: string | undefined;
		try {
			await client.query(sql);
		} catch (err) {
			code = (err as { code?: string }).code;
		} finally {
			await client.query("ROLLBACK");
			await client.query("DEALLOCATE ALL");
			await client.query("CLOSE ALL");
		}
		if (code === "25006") {
			refused++;
			assert.equal(ours, false, `PostgreSQL refuses in a read-only transaction but we call it read-only: ${sql}`);
		} else if (READ_ONLY_SAMPLES.includes(sql)) {
			assert.equal(ours, true, `${sql} should be read-only`);
			assert.equal(code, undefined, `${sql} failed: ${code}`);
		}
	}
	assert.ok(refused >= 15, `PostgreSQL refused only ${refused} statements: the samples do not exercise it`);
});
