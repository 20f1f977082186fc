/**
 * Replays the SQL bypass corpus (corpus/sql-bypass.ts) through the policy functions: every hostile
 * statement must be blocked (or held for approval) or masked; none may leak.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { demoContext } from "./corpus/catalog.ts";
import { CORPUS_GUARDRAILS, CORPUS_MASK_RULES, SQL_BYPASS_CORPUS } from "./corpus/sql-bypass.ts";
import { evaluateSqlGuardrails } from "./guardrails.ts";
import { checkMaskedWrites, planMasks } from "./mask.ts";
import { SessionSqlState } from "./session.ts";
import { analyzeSql } from "./sql.ts";
import type { ResultField } from "./types.ts";

test("the bypass corpus has at least 100 statements with unique ids", () => {
	assert.ok(SQL_BYPASS_CORPUS.length >= 100, `only ${SQL_BYPASS_CORPUS.length} cases`);
	const ids = new Set(SQL_BYPASS_CORPUS.map((c) => c.id));
	assert.equal(ids.size, SQL_BYPASS_CORPUS.length);
	assert.ok(SQL_BYPASS_CORPUS.filter((c) => c.expect === "masked").length >= 50);
});

function syntheticFields(width: number): ResultField[] {
	// tableOid 0: no RowDescription origin, so only the parse-tree taint can mask (the hard case).
	return Array.from({ length: width }, (_, i) => ({ name: `c${i}`, tableOid: 0, columnAttr: 0, typeOid: 25, format: 0 as const }));
}

for (const c of SQL_BYPASS_CORPUS) {
	test(`corpus ${c.id}: ${c.note}`, async () => {
		const access = c.access ?? "read-only";
		const ctx = demoContext({ rules: CORPUS_MASK_RULES });
		const state = new SessionSqlState();
		for (const s of c.setup ?? []) {
			const a = state.resolve(analyzeSql(s));
			const v = evaluateSqlGuardrails({ analysis: a, access, rules: CORPUS_GUARDRAILS });
			assert.notEqual(v.action, "block", `setup statement blocked: ${s} (${v.message})`);
			state.record(a);
		}
		const analysis = state.resolve(analyzeSql(c.sql));
		const verdict = evaluateSqlGuardrails({ analysis, access, rules: CORPUS_GUARDRAILS, grant: "team/corpus" });
		const maskBlock = analysis.ok ? await checkMaskedWrites(analysis, ctx) : undefined;
		switch (c.expect) {
			case "blocked":
				assert.ok(
					verdict.action === "block" || maskBlock !== undefined,
					`not blocked: ${c.sql}\nverdict: ${JSON.stringify(verdict)}`,
				);
				if (verdict.action === "block") assert.ok(verdict.sqlstate && verdict.rule && verdict.message);
				break;
			case "approval":
				assert.equal(verdict.action, "requireApproval", JSON.stringify(verdict));
				break;
			case "masked": {
				assert.ok(analysis.ok, "masked cases must parse");
				assert.notEqual(verdict.action, "block", `unexpectedly blocked: ${verdict.message}`);
				const last = analysis.statements.length - 1;
				const plan = await planMasks(analysis, syntheticFields(c.width ?? 1), ctx, { statementIndex: last });
				const masked = new Set(plan.columns.map((x) => x.index));
				for (const i of c.masked ?? []) {
					assert.ok(masked.has(i), `column ${i} leaks for ${c.sql}\nplan: ${JSON.stringify(plan.columns)}`);
				}
				if ((c.masked ?? []).length > 0 || c.scrub) assert.equal(plan.scrubMessages, true, "errors must be scrubbed");
				break;
			}
		}
	});
}
