/**
 * gateway/policy: protocol-neutral decisions. Data paths import from here only.
 * See README.md in this folder for the API and its guarantees.
 */
export { compileDetector, compileDetectorRules, DetectorPatternError, detectAndMask, ibanValid, luhnValid, ssnValid } from "./detectors.ts";
export { POLICY_ERROR_CODES, PolicyError, type PolicyErrorCode } from "./errors.ts";
export {
	BUILTIN_BLOCKED_RISKS,
	compileSqlRules,
	evaluateSqlGuardrails,
	SQLSTATE_INSUFFICIENT_PRIVILEGE,
	SQLSTATE_INVALID_SQL_STATEMENT_NAME,
	SQLSTATE_SYNTAX_ERROR,
} from "./guardrails.ts";
export { compileKubeRules, compileResource, evaluateKubeRequest } from "./kube.ts";
export { checkMaskedWrites, type PlanOptions, planMasks } from "./mask.ts";
export { compileStringMasker, compileValueMasker, maskValue, TypeOid } from "./maskvalue.ts";
export { SessionSqlState, sqlNameEffects } from "./session.ts";
export { analyzeSql, clearSqlCache, loadSqlParser, statementCacheKey, statementTree, unseenCode } from "./sql.ts";
export { withBaseTables } from "./tables.ts";
export { compileSshRules, evaluateSshAccess, evaluateSshCommand, parseShellCommand } from "./ssh.ts";
export type * from "./types.ts";
