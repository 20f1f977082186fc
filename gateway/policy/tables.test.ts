import assert from "node:assert/strict";
import { test } from "node:test";
import type { GuardrailRule } from "../config/bundle.ts";
import { demoContext } from "./corpus/catalog.ts";
import { evaluateSqlGuardrails } from "./guardrails.ts";
import { analyzeSql, statementTree } from "./sql.ts";
import { withBaseTables } from "./tables.ts";

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
