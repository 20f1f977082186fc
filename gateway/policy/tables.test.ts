import assert from "node:assert/strict";
import { test } from "node:test";
import type { GuardrailRule } from "../config/bundle.ts";
import { DataCatalog, demoContext } from "./corpus/catalog.ts";
import { evaluateSqlGuardrails } from "./guardrails.ts";
import { analyzeSql, statementTree } from "./sql.ts";
import { withBaseTables } from "./tables.ts";
import type { RelationInfo } from "./types.ts";

const RULES: GuardrailRule[] = [{ name: "approve-customer-deletes", action: "requireApproval", sql: { statementKinds: ["DELETE"], tables: ["public.customers"] } }];

test("withBaseTables: a write through a view meets the base table's rules", async () => {
	const { catalog } = demoContext();
	const raw = analyzeSql("DELETE FROM customer_contacts WHERE id = 1");
	assert.equal(evaluateSqlGuardrails({ analysis: raw, access: "read-write", rules: RULES }).action, "allow", "as written, the view hides the table");
	const a = await withBaseTables(raw, catalog);
	assert.ok(a.ok);
	assert.deepEqual(a.statements[0]!.tables, ["customer_contacts", "public.customer_contacts", "public.customers"]);
	assert.equal(evaluateSqlGuardrails({ analysis: a, access: "read-write", rules: RULES }).action, "requireApproval");
	assert.ok(statementTree(a.statements[0]!), "parse tree kept for masking");
	const nested = await withBaseTables(analyzeSql("SELECT * FROM contact_emails"), catalog);
	assert.ok(nested.ok && nested.statements[0]!.tables.includes("public.customers"), "views over views");
	const plain = analyzeSql("SELECT * FROM nosuch");
	const unchanged = await withBaseTables(plain, catalog);
	assert.ok(unchanged.ok && unchanged.statements[0] === (plain.ok ? plain.statements[0] : undefined), "unknown relations stay as written");
});

const PARTED: RelationInfo[] = [
	{ oid: 17001, schema: "public", name: "parted", kind: "partitioned", columns: [{ name: "id", attnum: 1 }, { name: "email", attnum: 2 }], descendants: [{ schema: "public", name: "parted_1" }] },
	{ oid: 17002, schema: "public", name: "parted_1", kind: "table", columns: [{ name: "id", attnum: 1 }, { name: "email", attnum: 2 }], ancestors: [{ schema: "public", name: "parted" }] },
];

test("withBaseTables: partitions and inheritance children meet their ancestors' rules, and the reverse", async () => {
	const catalog = new DataCatalog(PARTED);
	const rules: GuardrailRule[] = [{ name: "keep-parted", action: "block", sql: { statementKinds: ["DROP", "TRUNCATE", "DELETE"], tables: ["public.parted"] } }];
	const leafRule: GuardrailRule[] = [{ name: "keep-leaf", action: "block", sql: { statementKinds: ["TRUNCATE"], tables: ["public.parted_1"] } }];
	const verdict = async (sql: string, r = rules) => evaluateSqlGuardrails({ analysis: await withBaseTables(analyzeSql(sql), catalog), access: "admin", rules: r }).action;
	for (const sql of ["DROP TABLE parted_1", "TRUNCATE parted_1", "DELETE FROM parted_1 WHERE id = 1"]) {
		assert.equal(evaluateSqlGuardrails({ analysis: analyzeSql(sql), access: "admin", rules }).action, "allow", `as written: ${sql}`);
		assert.equal(await verdict(sql), "block", sql);
	}
	assert.equal(await verdict("TRUNCATE parted", leafRule), "block", "a parent's TRUNCATE reaches its partitions");
	// Taking rows or a name away from the ruled table matches the rule whatever its kinds.
	assert.equal(await verdict("ALTER TABLE parted DETACH PARTITION parted_1"), "block");
	assert.equal(await verdict("ALTER TABLE parted RENAME TO parted_old"), "block");
	assert.equal(await verdict("ALTER TABLE parted SET SCHEMA archive"), "block");
	// A function body created earlier may use the new name: PostgreSQL looks it up at each call.
	assert.equal(await verdict("ALTER TABLE parted_1 RENAME TO p1"), "block", "a renamed partition hands its parent's rows to a new name");
	assert.equal(await verdict("ALTER TABLE parted_1 SET SCHEMA archive"), "block");
	assert.equal(await verdict("ALTER TABLE parted_1 NO INHERIT parted"), "block");
	const a = analyzeSql("ALTER TABLE parted ATTACH PARTITION x FOR VALUES FROM (1) TO (2)");
	assert.ok(a.ok && a.statements[0]!.kinds.includes("ATTACH PARTITION") && a.statements[0]!.kinds.includes("INSERT"), "ATTACH adds rows");
});

test("withBaseTables: renaming or moving what reaches a ruled table's rows escapes its rules (late-bound names)", async () => {
	const catalog = new DataCatalog([
		{ oid: 17101, schema: "public", name: "accounts", kind: "table", columns: [{ name: "id", attnum: 1 }] },
		{ oid: 17102, schema: "reporting", name: "acct_v", kind: "view", columns: [{ name: "id", attnum: 1 }], viewDefinition: "SELECT id FROM public.accounts" },
		{ oid: 17103, schema: "spare", name: "t", kind: "table", columns: [{ name: "id", attnum: 1 }] },
	]);
	const rules: GuardrailRule[] = [{ name: "keep-money", action: "block", sql: { statementKinds: ["DELETE"], tables: ["public.accounts"] } }];
	const verdict = async (sql: string) => evaluateSqlGuardrails({ analysis: await withBaseTables(analyzeSql(sql), catalog), access: "read-write", rules }).action;
	// a function body created earlier may name `gone`: PostgreSQL looks it up at each call
	assert.equal(await verdict("ALTER VIEW reporting.acct_v RENAME TO gone"), "block");
	assert.equal(await verdict("ALTER VIEW reporting.acct_v SET SCHEMA public"), "block");
	assert.equal(await verdict("ALTER SCHEMA reporting RENAME TO rep2"), "block");
	assert.equal(await verdict("ALTER SCHEMA spare RENAME TO spare2"), "allow");
	assert.equal(await verdict("ALTER TABLE spare.t RENAME TO u"), "allow");
});

test("withBaseTables: an index or TOAST table is read as the table whose data it holds", async () => {
	const catalog = new DataCatalog([
		{ oid: 17201, schema: "public", name: "secrets", kind: "table", columns: [{ name: "id", attnum: 1 }] },
		{ oid: 17202, schema: "pg_toast", name: "pg_toast_17201", kind: "other", columns: [{ name: "chunk_data", attnum: 3 }], owner: { schema: "public", name: "secrets" } },
		{ oid: 17203, schema: "public", name: "secrets_pkey", kind: "other", columns: [{ name: "id", attnum: 1 }], owner: { schema: "public", name: "secrets" } },
	]);
	const rules: GuardrailRule[] = [{ name: "no-reading-secrets", action: "block", sql: { statementKinds: ["SELECT"], tables: ["public.secrets"] } }];
	const verdict = async (sql: string) => evaluateSqlGuardrails({ analysis: await withBaseTables(analyzeSql(sql), catalog), access: "admin", rules }).action;
	assert.equal(await verdict("SELECT chunk_data FROM pg_toast.pg_toast_17201"), "block");
	assert.equal(await verdict("SELECT data FROM bt_page_items('secrets_pkey', 1)"), "block");
});
