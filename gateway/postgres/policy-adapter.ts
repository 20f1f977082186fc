/**
 * The narrow slice of gateway/policy the PostgreSQL data path calls. Kept as an interface so the
 * session code names exactly what it depends on; `defaultSqlPolicy()` binds it to gateway/policy.
 */
import type { MaskRule, MaskStrategy } from "../config/bundle.ts";
import {
	analyzeSql,
	checkMaskedWrites,
	compileDetectorRules,
	compileValueMasker,
	evaluateSqlGuardrails,
	planMasks,
	SessionSqlState,
	sqlNameEffects,
	statementCacheKey,
	withBaseTables,
} from "../policy/index.ts";
import type {
	Catalog,
	GuardrailVerdict,
	MaskContext,
	MaskPlan,
	ResultField,
	SqlAnalysis,
	SqlGuardrailInput,
	SqlStatementInfo,
} from "../policy/types.ts";

export interface SqlSessionState {
	resolve(analysis: SqlAnalysis): SqlAnalysis;
	/** Statements forwarded upstream; returns the sequence number of the first (statement i: seq + i). */
	forwarded(analysis: SqlAnalysis): number;
	/** The server completed a forwarded statement (its CommandComplete). */
	succeeded(statement: SqlStatementInfo, seq: number): void;
	/** A named Parse ("prepared") or Bind ("cursor") forwarded; returns its sequence number. */
	defineProtocol(space: "prepared" | "cursor", name: string, body: SqlStatementInfo | undefined): number;
	/** ParseComplete/BindComplete of a definition forwarded as `seq`. */
	protocolDefined(space: "prepared" | "cursor", name: string, seq: number): void;
	/** CloseComplete of a Close forwarded as `seq`. */
	protocolClosed(space: "prepared" | "cursor", name: string, seq: number): void;
	/** A sequence number for a forwarded sync point. */
	tick(): number;
	/** ReadyForQuery 'I' after the sync point forwarded as `seq`: cursors without HOLD are gone. */
	transactionEnded(seq: number): void;
	/** Candidate bodies of a SQL-level PREPARE (PostgreSQL lets protocol-level Bind use those names too). */
	preparedStatement(name: string): readonly SqlStatementInfo[];
	/** Some definition of the name could not be classified: what it holds is unknown. */
	preparedUnknown(name: string): boolean;
}

/** Masks one wire value (null in, null out); must return a valid value of the type, or null. */
export type { MaskerShape, ValueMasker } from "../policy/maskvalue.ts";
export { binaryScannable, detectorText, writeAsciiPartial } from "../policy/maskvalue.ts";
import type { ValueMasker } from "../policy/maskvalue.ts";
/** Masks detected content in a text; undefined when nothing matched. */
export type TextDetector = (text: string) => string | undefined;

export interface SqlPolicyApi {
	analyze(sql: string): SqlAnalysis;
	/** Identity of a statement for caches keyed by meaning (statements sharing a literal-free template share it). */
	statementKey(info: SqlStatementInfo): string;
	evaluate(input: SqlGuardrailInput): GuardrailVerdict;
	/**
	 * Add the base tables behind views (recursively), so table rules cannot be bypassed through a
	 * view; with `stored`, what the stored code the statement runs does (calls, tables, kinds).
	 */
	expandTables(analysis: SqlAnalysis, catalog: Catalog, options?: { stored?: boolean }): Promise<SqlAnalysis>;
	newSessionState(): SqlSessionState;
	/** Prepared-statement and portal names a statement defines or drops when it succeeds (null: all). */
	nameEffects(info: SqlStatementInfo): { prepared?: string | null; portal?: string | null } | undefined;
	/** Mask plan for one result set of `analysis` (one statement). */
	planMasks(analysis: SqlAnalysis, fields: ResultField[], ctx: MaskContext): Promise<MaskPlan>;
	/** Before forwarding: refuse writes that would copy masked data where masking cannot follow. */
	checkMaskedWrites(analysis: SqlAnalysis, ctx: MaskContext): Promise<{ rule: string; message: string } | undefined>;
	compileValueMasker(strategy: MaskStrategy, key: Buffer): ValueMasker;
	compileDetectorRules(rules: readonly MaskRule[], key: Buffer): TextDetector | undefined;
}

/** The real policy (gateway/policy/index.ts). */
export async function defaultSqlPolicy(): Promise<SqlPolicyApi> {
	return {
		analyze: analyzeSql,
		statementKey: statementCacheKey,
		evaluate: evaluateSqlGuardrails,
		expandTables: withBaseTables,
		newSessionState: () => new SessionSqlState(),
		nameEffects: sqlNameEffects,
		planMasks: (analysis, fields, ctx) => planMasks(analysis, fields, ctx),
		checkMaskedWrites,
		compileValueMasker,
		compileDetectorRules,
	};
}
