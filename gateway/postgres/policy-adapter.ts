/**
 * The narrow slice of gateway/policy the PostgreSQL data path calls. Kept as an interface so the
 * session code names exactly what it depends on; `defaultSqlPolicy()` binds it to gateway/policy.
 */
import type { MaskRule, MaskStrategy } from "../config/bundle.ts";
import { evaluateSqlGuardrails, planMasks, SessionSqlState, analyzeSql } from "../policy/index.ts";
import type { GuardrailVerdict, MaskContext, MaskPlan, ResultField, SqlAnalysis, SqlGuardrailInput } from "../policy/types.ts";

export interface SqlSessionState {
	resolve(analysis: SqlAnalysis): SqlAnalysis;
	record(analysis: SqlAnalysis): void;
}

/** Masks one wire value (null in, null out); must return a valid value of the type, or null. */
export type ValueMasker = (value: Buffer | null, format: 0 | 1, typeOid: number) => Buffer | null;
/** Masks detected content in a text; undefined when nothing matched. */
export type TextDetector = (text: string) => string | undefined;

export interface SqlPolicyApi {
	analyze(sql: string): SqlAnalysis;
	evaluate(input: SqlGuardrailInput): GuardrailVerdict;
	newSessionState(): SqlSessionState;
	/** Mask plan for one result set of `analysis` (one statement). */
	planMasks(analysis: SqlAnalysis, fields: ResultField[], ctx: MaskContext): Promise<MaskPlan>;
	compileValueMasker(strategy: MaskStrategy, key: Buffer): ValueMasker;
	compileDetectorRules(rules: readonly MaskRule[], key: Buffer): TextDetector | undefined;
}

type MaskingModule = {
	compileValueMasker?: SqlPolicyApi["compileValueMasker"];
	compileDetectorRules?: SqlPolicyApi["compileDetectorRules"];
};

async function tryImport(path: string): Promise<MaskingModule> {
	try {
		return (await import(path)) as MaskingModule;
	} catch {
		return {};
	}
}

/** The real policy (gateway/policy/index.ts). */
export async function defaultSqlPolicy(): Promise<SqlPolicyApi> {
	// Value maskers and detectors are bound by name so this file does not break while the policy
	// component is still adding them; if they are missing, masking fails closed (NULL, no detection
	// is impossible: every text value is then NULLed).
	const index = await tryImport("../policy/index.ts");
	const values = index.compileValueMasker ? index : await tryImport("../policy/maskvalue.ts");
	const detectors = index.compileDetectorRules ? index : await tryImport("../policy/detectors.ts");
	return {
		analyze: analyzeSql,
		evaluate: evaluateSqlGuardrails,
		newSessionState: () => new SessionSqlState(),
		planMasks: (analysis, fields, ctx) => planMasks(analysis, fields, ctx),
		compileValueMasker: values.compileValueMasker ?? (() => () => null),
		compileDetectorRules:
			detectors.compileDetectorRules ??
			((rules) => (rules.length > 0 ? (text: string) => (text.length > 0 ? "" : undefined) : undefined)),
	};
}
