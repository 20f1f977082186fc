/**
 * gateway/policy: protocol-neutral decisions. Data paths import from here only.
 * See README.md in this folder for the API and its guarantees.
 */
export { evaluateKubeRequest } from "./kube.ts";
export { compileDetector, compileDetectorRules, DetectorPatternError, detectAndMask, ibanValid, luhnValid, ssnValid } from "./detectors.ts";
export { checkMaskedWrites, type PlanOptions, planMasks } from "./mask.ts";
export { compileStringMasker, compileValueMasker, maskValue, TypeOid } from "./maskvalue.ts";
export { analyzeSql, clearSqlCache, loadSqlParser } from "./sql.ts";
export { evaluateSqlGuardrails, SQLSTATE_INSUFFICIENT_PRIVILEGE, SQLSTATE_SYNTAX_ERROR } from "./guardrails.ts";
export { SessionSqlState } from "./session.ts";
export { evaluateSshAccess, evaluateSshCommand, parseShellCommand } from "./ssh.ts";
export type * from "./types.ts";
