/**
 * Approval errors. One base class with a typed `code` union (STYLE 5); every surface converts it at its
 * edge: the REST API to an HTTP status (`APPROVAL_ERROR_HTTP_STATUS`), the CLI to an exit message, the
 * data paths to their protocol's error (a PostgreSQL ErrorResponse, an SSH stderr line, a kube Status).
 *
 * `TypeError` is kept for our own misuse (bad input from a data path); `ApprovalError` is for untrusted
 * input (an approver, a token, a stale request).
 */
export type ApprovalErrorCode =
	/** No credential, or the credential could not be verified / has expired. */
	| "unauthenticated"
	/** The requester tried to approve or deny their own request. */
	| "self-approval"
	/** The approver matches none of the request's approver subjects. */
	| "not-an-approver"
	/** The credential kind may not decide (e.g. a grant-scoped data-path token). */
	| "credential-not-allowed"
	/** The caller may not see this request. */
	| "forbidden"
	| "not-found"
	/** The request already left Pending (Approved, Denied, Cancelled). */
	| "already-decided"
	/** This approver already recorded a decision on the request. */
	| "already-voted"
	/** The request expired before the decision arrived. */
	| "expired"
	/** Storage kept conflicting after retries (another writer won every time). */
	| "conflict"
	/** The request body or parameters are malformed. */
	| "bad-request"
	/** The requester has too many requests pending or made too many lately, or retried a denied command at once. */
	| "rate-limited"
	/** The backing store (Kubernetes API, local directory) failed. */
	| "unavailable";

export class ApprovalError extends Error {
	override readonly name = "ApprovalError";
	constructor(
		readonly code: ApprovalErrorCode,
		message: string,
	) {
		super(message);
	}
}

/** HTTP status each code maps to on the admin REST API. */
export const APPROVAL_ERROR_HTTP_STATUS: Record<ApprovalErrorCode, number> = {
	unauthenticated: 401,
	"self-approval": 403,
	"not-an-approver": 403,
	"credential-not-allowed": 403,
	forbidden: 403,
	"not-found": 404,
	"already-decided": 409,
	"already-voted": 409,
	conflict: 409,
	expired: 410,
	"bad-request": 400,
	"rate-limited": 429,
	unavailable: 503,
};

/** Human-readable catalogue, kept in step with the code union and docs/approvals.md by a test. */
export const APPROVAL_ERROR_CATALOGUE: Record<ApprovalErrorCode, string> = {
	unauthenticated: "No valid bearer token: missing, unverifiable, or expired.",
	"self-approval": "The requester can never approve or deny their own request.",
	"not-an-approver": "The caller matches none of the request's approver subjects.",
	"credential-not-allowed": "This kind of credential may not decide approvals (use a personal OIDC or service-account token).",
	forbidden: "The caller is neither an approver nor the requester of this request.",
	"not-found": "No approval request with this id.",
	"already-decided": "The request is no longer pending.",
	"already-voted": "This approver has already recorded a decision on the request.",
	expired: "The request expired before the decision arrived.",
	conflict: "The request kept changing under concurrent writers; retry.",
	"bad-request": "The request body or parameters are malformed.",
	"rate-limited": "The requester has too many approval requests pending or made lately, or asked again for a command just denied.",
	unavailable: "The approvals store is unavailable.",
};
