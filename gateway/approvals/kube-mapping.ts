/**
 * ApprovalRequestRecord ⇄ ApprovalRequest custom resource (access.drawbridge.dev/v1alpha1). Pure
 * functions, table-tested. The object shape follows crds/schema/approvalrequest.ts: the held command
 * and the rule in `spec` (immutable), phase and decisions in `status`. What the CRD has no field for
 * travels in annotations (millisecond creation time, timeout, approve hint).
 */
import type { SubjectMatcher } from "../config/bundle.ts";
import { MAX_COMMAND_CHARS } from "./decision.ts";
import type { ApprovalDecisionRecord, ApprovalPhase, ApprovalRequestRecord } from "./types.ts";

export const APPROVAL_GROUP = "access.drawbridge.dev";
export const APPROVAL_VERSION = "v1alpha1";
export const APPROVAL_PLURAL = "approvalrequests";
export const APPROVAL_KIND = "ApprovalRequest";

export const ANNOTATION_CREATED_AT = "access.drawbridge.dev/created-at";
export const ANNOTATION_TIMEOUT = "access.drawbridge.dev/timeout-seconds";
export const ANNOTATION_HINT = "access.drawbridge.dev/approve-hint";
export const LABEL_MANAGED_BY = "app.kubernetes.io/managed-by";
export const LABEL_CONNECTION = "access.drawbridge.dev/connection";

/** The CRD caps `spec.command` at this many characters; the service refuses longer commands. */
export { MAX_COMMAND_CHARS };
const PHASES: readonly ApprovalPhase[] = ["Pending", "Approved", "Denied", "Expired", "Cancelled"];

/** The object as stored (a plain shape of the crds/ ApprovalRequest type; only the fields we use). */
export interface ApprovalRequestObject {
	apiVersion: string;
	kind: string;
	metadata: {
		name: string;
		namespace?: string;
		resourceVersion?: string;
		creationTimestamp?: string;
		labels?: Record<string, string>;
		annotations?: Record<string, string>;
	};
	spec: {
		requester: {
			username: string;
			issuer?: string;
			subject?: string;
			groups?: string[];
			serviceAccount?: { namespace: string; name: string };
			sharedBy?: SubjectMatcher[];
		};
		grant: string;
		connection: string;
		protocol: ApprovalRequestRecord["protocol"];
		sessionId: string;
		command: string;
		rule: string;
		policy?: string;
		approvers: SubjectMatcher[];
		minApprovals?: number;
		expiresAt: string;
		reuseWindow?: string;
	};
	status?: {
		phase?: ApprovalPhase;
		decisions?: { decision: "approve" | "deny"; by: string; issuer?: string; subject?: string; at: string; comment?: string }[];
		decidedAt?: string;
		conditions?: { type: string; status: "True" | "False" | "Unknown"; lastTransitionTime: string; reason: string; message: string }[];
	};
}

/** `600` → `600s` (the CRD's duration pattern: one integer and a unit); 0/absent → undefined. */
export function secondsToDuration(seconds: number | undefined): string | undefined {
	if (!seconds || seconds <= 0) return undefined;
	return `${Math.ceil(seconds)}s`;
}

export function durationToSeconds(text: string | undefined): number | undefined {
	if (!text) return undefined;
	const m = /^(\d+)(s|m|h|d)$/.exec(text);
	if (!m) return undefined;
	return Number(m[1]) * { s: 1, m: 60, h: 3600, d: 86_400 }[m[2] as "s" | "m" | "h" | "d"];
}

export function recordToObject(record: ApprovalRequestRecord, namespace: string): ApprovalRequestObject {
	const r = record.requester;
	const reuse = secondsToDuration(record.reuseWindowSeconds);
	const command = record.command.length > MAX_COMMAND_CHARS ? `${record.command.slice(0, MAX_COMMAND_CHARS - 1)}…` : record.command;
	return {
		apiVersion: `${APPROVAL_GROUP}/${APPROVAL_VERSION}`,
		kind: APPROVAL_KIND,
		metadata: {
			name: record.id,
			namespace,
			labels: { [LABEL_MANAGED_BY]: "drawbridge-gateway", [LABEL_CONNECTION]: record.connection },
			annotations: {
				[ANNOTATION_CREATED_AT]: record.createdAt,
				[ANNOTATION_TIMEOUT]: String(record.timeoutSeconds),
				[ANNOTATION_HINT]: record.approveHint,
			},
		},
		spec: {
			requester: {
				username: r.username || r.subject,
				issuer: r.issuer,
				subject: r.subject,
				groups: [...(r.groups ?? [])].slice(0, 64),
				...(r.serviceAccount ? { serviceAccount: { ...r.serviceAccount } } : {}),
				...(r.sharedBy ? { sharedBy: r.sharedBy.map((s) => ({ ...s })) } : {}),
			},
			grant: record.grant,
			connection: record.connection,
			protocol: record.protocol,
			sessionId: record.sessionId,
			command,
			rule: record.rule,
			approvers: record.approvers.map((a) => ({ ...a })),
			minApprovals: record.minApprovals,
			expiresAt: record.expiresAt,
			...(reuse ? { reuseWindow: reuse } : {}),
		},
		status: statusOf(record),
	};
}

/** The `status` for a record (what a status update writes). */
export function statusOf(record: ApprovalRequestRecord): NonNullable<ApprovalRequestObject["status"]> {
	const status: NonNullable<ApprovalRequestObject["status"]> = {
		phase: record.phase,
		decisions: record.decisions.map((d) => ({
			decision: d.decision,
			by: d.by,
			// The approver's verified issuer and subject: distinct-approver counting and audit across replicas.
			...(d.issuer ? { issuer: d.issuer } : {}),
			...(d.subject ? { subject: d.subject } : {}),
			at: d.at,
			...(d.comment ? { comment: d.comment } : {}),
		})),
	};
	if (record.decidedAt) status.decidedAt = record.decidedAt;
	if (record.phase !== "Pending") {
		status.conditions = [
			{
				type: "Decided",
				status: "True",
				lastTransitionTime: record.decidedAt ?? record.expiresAt,
				reason: record.phase,
				message: record.reason ?? describeDecision(record),
			},
		];
	}
	return status;
}

function describeDecision(record: ApprovalRequestRecord): string {
	const last = record.decisions.at(-1);
	return last ? `${record.phase} by ${last.by}` : record.phase;
}

/** Undefined for objects that are not well-formed ApprovalRequests (never trusted blindly). */
export function objectToRecord(obj: ApprovalRequestObject): ApprovalRequestRecord | undefined {
	const spec = obj?.spec;
	const name = obj?.metadata?.name;
	if (!spec || !name || typeof spec.command !== "string" || !Array.isArray(spec.approvers) || !spec.requester) return undefined;
	const annotations = obj.metadata.annotations ?? {};
	const createdAt = annotations[ANNOTATION_CREATED_AT] ?? obj.metadata.creationTimestamp ?? spec.expiresAt;
	const timeoutAnn = Number(annotations[ANNOTATION_TIMEOUT]);
	const timeoutSeconds = Number.isFinite(timeoutAnn) && timeoutAnn > 0 ? timeoutAnn : Math.max(1, (Date.parse(spec.expiresAt) - Date.parse(createdAt)) / 1000);
	const status = obj.status ?? {};
	const phase = status.phase && PHASES.includes(status.phase) ? status.phase : "Pending";
	const decisions: ApprovalDecisionRecord[] = (status.decisions ?? []).map((d) => ({
		decision: d.decision,
		by: d.by,
		...(typeof d.issuer === "string" && d.issuer ? { issuer: d.issuer } : {}),
		...(typeof d.subject === "string" && d.subject ? { subject: d.subject } : {}),
		at: d.at,
		...(d.comment ? { comment: d.comment } : {}),
	}));
	const decided = status.conditions?.find((c) => c.type === "Decided");
	const record: ApprovalRequestRecord = {
		id: name,
		sessionId: spec.sessionId,
		protocol: spec.protocol,
		connection: spec.connection,
		grant: spec.grant,
		requester: {
			issuer: spec.requester.issuer ?? "",
			subject: spec.requester.subject ?? "",
			username: spec.requester.username,
			groups: spec.requester.groups ?? [],
			...(spec.requester.serviceAccount ? { serviceAccount: spec.requester.serviceAccount } : {}),
			...(Array.isArray(spec.requester.sharedBy) ? { sharedBy: spec.requester.sharedBy } : {}),
		},
		command: spec.command,
		rule: spec.rule,
		approvers: spec.approvers,
		minApprovals: spec.minApprovals ?? 1,
		timeoutSeconds,
		phase,
		createdAt,
		expiresAt: spec.expiresAt,
		decisions,
		approveHint: annotations[ANNOTATION_HINT] ?? `drawbridge approvals approve ${name}`,
	};
	const reuse = durationToSeconds(spec.reuseWindow);
	if (reuse) record.reuseWindowSeconds = reuse;
	if (status.decidedAt) record.decidedAt = status.decidedAt;
	if (decided && phase !== "Pending" && decided.message && (phase === "Expired" || phase === "Cancelled")) record.reason = decided.message;
	return record;
}
