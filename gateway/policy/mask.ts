/**
 * Masking plan: which output columns of a statement derive from masked columns. (Taint analysis in
 * progress: this early version masks by RowDescription origin only and scrubs messages whenever
 * column rules exist.)
 */
import { analyzeSql } from "./sql.ts";
import type { MaskContext, MaskPlan, ResultField, SqlAnalysis } from "./types.ts";

export async function planMasks(sqlOrAnalysis: string | SqlAnalysis, fields: ResultField[], ctx: MaskContext): Promise<MaskPlan> {
	const analysis = typeof sqlOrAnalysis === "string" ? analyzeSql(sqlOrAnalysis) : sqlOrAnalysis;
	void analysis;
	const columnRules = ctx.rules.filter((r) => r.columns && r.columns.length > 0);
	const plan: MaskPlan = { columns: [], detectors: ctx.rules.filter((r) => r.detectors?.length || r.patterns?.length), scrubMessages: columnRules.length > 0 };
	for (let i = 0; i < fields.length; i++) {
		const rule = columnRules[0];
		if (rule) plan.columns.push({ index: i, rule: rule.name, strategy: rule.strategy, sources: [] });
	}
	return plan;
}
