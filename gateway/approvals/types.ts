/**
 * Just-in-time approvals: the contract between the data paths (which hold a risky command) and the
 * approvals component (which stores ApprovalRequests in Kubernetes or, standalone, locally).
 */
import type { Identity, Protocol, ResourceKey, SubjectMatcher } from "../config/bundle.ts";

export type ApprovalPhase = "Pending" | "Approved" | "Denied" | "Expired" | "Cancelled";

export interface ApprovalDecisionRecord {
	decision: "approve" | "deny";
	/** `user:<name>` of the approver, from a verified token. */
	by: string;
	at: string;
	comment?: string;
	/** Verified `iss` and `sub` of the approver's token (distinct-approver counting, audit). */
	issuer?: string;
	subject?: string;
}

export interface ApprovalRequestInput {
	sessionId: string;
	protocol: Protocol;
	connection: string;
	grant: ResourceKey;
	requester: Pick<Identity, "issuer" | "subject" | "username" | "groups" | "serviceAccount"> & {
		/**
		 * Set when the requester presented a grant's shared credential (an operator token or SSH
		 * certificate of the grant, `Identity.grant`): the grant's subjects. The credential names one of
		 * them (`sub`), but any of them may hold it, so none of them may decide (rule 4).
		 */
		sharedBy?: SubjectMatcher[];
	};
	/** The command as the requester sent it, masked. */
	command: string;
	/** Name of the GuardrailRule that asked for approval. */
	rule: string;
	approvers: SubjectMatcher[];
	minApprovals: number;
	timeoutSeconds: number;
	reuseWindowSeconds?: number;
}

export interface ApprovalRequestRecord extends ApprovalRequestInput {
	id: string;
	phase: ApprovalPhase;
	createdAt: string;
	expiresAt: string;
	decisions: ApprovalDecisionRecord[];
	/** Where a human approves it: CLI line and web URL. */
	approveHint: string;
	/** When the request left Pending (the deciding vote, expiry or cancellation). */
	decidedAt?: string;
	/** Why it left Pending when no vote decided it (expiry, client disconnect). */
	reason?: string;
	/**
	 * Set on the record `request()` returns when an approval inside its reuse window was found instead
	 * of creating a new request: the id of that approved request (also `id`).
	 */
	reusedFrom?: string;
}

export interface ApprovalService {
	/**
	 * Create (or, inside a reuse window, find an already approved) request. Returns at once; the
	 * caller tells the client where to approve and then awaits `waitForDecision`.
	 */
	request(input: ApprovalRequestInput): Promise<ApprovalRequestRecord>;
	/** Resolves when the request leaves Pending (or the signal aborts: then the request is cancelled). */
	waitForDecision(id: string, signal: AbortSignal): Promise<ApprovalRequestRecord>;
	get(id: string): Promise<ApprovalRequestRecord | undefined>;
	list(filter?: { phase?: ApprovalPhase }): Promise<ApprovalRequestRecord[]>;
	/** Refuses self-approval, non-approvers, decisions after expiry. */
	decide(id: string, approver: Identity, decision: "approve" | "deny", comment?: string): Promise<ApprovalRequestRecord>;
}
