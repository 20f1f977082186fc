/**
 * The Drawbridge API (group access.drawbridge.dev, version v1alpha1): types, schemas, validation,
 * YAML loading and duration helpers. Both the operator and the gateway may import this module.
 */
export {
	grantLengthMs,
	grantPhaseAt,
	grantWindow,
	formatDuration,
	isTimestamp,
	mustParseDuration,
	parseDuration,
	type GrantTiming,
	type GrantWindow,
} from "./duration.ts";
export {
	API_VERSION,
	CATEGORY,
	GROUP,
	KINDS,
	VERSION,
	kindDef,
	type AccessGrant,
	type ApprovalRequest,
	type Connection,
	type DrawbridgeResource,
	type GitSource,
	type GuardrailPolicy,
	type KindDef,
	type KindName,
	type MaskingPolicy,
	type ObjectMeta,
	type PrinterColumn,
} from "./kinds.ts";
export { loadManifests, type LoadError, type LoadErrorCode, type LoadResult, type Manifest, type Position } from "./load.ts";
export { allCrds, crdFor } from "./openapi.ts";
export { GRANT_PHASES, KUBERNETES_VERBS, MAX_GRANT_DAYS, MAX_GRANT_MS, POSTGRES_ACCESS, type AccessGrantSpec, type AccessGrantStatus } from "./schema/accessgrant.ts";
export { APPROVAL_PHASES, type ApprovalRequestSpec, type ApprovalRequestStatus } from "./schema/approvalrequest.ts";
export { CONNECTION_TYPES, TLS_MODES, type ConnectionSpec, type ConnectionStatus } from "./schema/connection.ts";
export type { GitSourceSpec, GitSourceStatus } from "./schema/gitsource.ts";
export { GUARDRAIL_ACTIONS, type GuardrailPolicySpec, type GuardrailRule } from "./schema/guardrailpolicy.ts";
export type { Condition, LabelSelector, SecretKeyRef, Subject } from "./schema/kit.ts";
export { CONTENT_DETECTORS, MASK_STRATEGIES, type MaskingPolicySpec, type PolicyStatus } from "./schema/maskingpolicy.ts";
export {
	applyDefaults,
	formatPath,
	validateResource,
	validateSpec,
	type FieldError,
	type FieldErrorType,
	type PathSegment,
	type ValidationResult,
} from "./validate.ts";
