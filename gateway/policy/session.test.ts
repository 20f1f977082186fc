// SessionSqlState: a name whose candidate body is itself EXECUTE or FETCH (a protocol statement or
// portal: SQL PREPARE/DECLARE cannot hold one) is not followed a second time. Its recorded body was
// resolved when it was defined, and the server looks the inner name up when it first runs; masking
// planned the bare EXECUTE tree (no outputs) and masked nothing (red-team round 8,
// test/postgres/issue-nested-name-masking.test.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { demoContext } from "./corpus/catalog.ts";
import { CORPUS_MASK_RULES } from "./corpus/sql-bypass.ts";
import { evaluateSqlGuardrails } from "./guardrails.ts";
import { planMasks } from "./mask.ts";
import { SessionSqlState } from "./session.ts";
import { analyzeSql } from "./sql.ts";
import type { SqlAnalysis, SqlStatementInfo } from "./types.ts";

function one(a: SqlAnalysis): SqlStatementInfo {
	assert.ok(a.ok && a.statements.length === 1, JSON.stringify(a));
	return a.statements[0]!;
}

test("FETCH of a portal bound to EXECUTE is unknown (masked whole); EXECUTE of a statement holding EXECUTE is refused", async () => {
	const st = new SessionSqlState();
	st.record(analyzeSql("PREPARE s AS SELECT phone || '' AS x FROM customers"));
	const exec = one(st.resolve(analyzeSql("EXECUTE s")));
	assert.ok(exec.uses?.statement, "one level is resolved");
	st.protocolDefined("cursor", "p", st.defineProtocol("cursor", "p", exec));
	st.protocolDefined("prepared", "q", st.defineProtocol("prepared", "q", exec));

	const fetch = st.resolve(analyzeSql("FETCH ALL FROM p"));
	assert.equal(one(fetch).uses?.statement, undefined);
	const plan = await planMasks(fetch, [{ name: "x", tableOid: 0, columnAttr: 0, typeOid: 25, format: 0 }], demoContext({ rules: CORPUS_MASK_RULES }));
	assert.deepEqual(
		plan.columns.map((c) => c.index),
		[0],
	);

	const verdict = evaluateSqlGuardrails({ analysis: st.resolve(analyzeSql("EXECUTE q")), access: "read-only", rules: [] });
	assert.equal(verdict.action, "block");
	assert.equal(verdict.rule, "session:unknown-prepared");

	// a portal bound to a plain SELECT is still followed
	st.protocolDefined("cursor", "p2", st.defineProtocol("cursor", "p2", one(analyzeSql("SELECT name FROM customers"))));
	assert.ok(one(st.resolve(analyzeSql("FETCH ALL FROM p2"))).uses?.statement);
});
