import { createHash } from "node:crypto";

/** Labels, annotations, finalizers and names the operator writes. One place, so prune logic and docs agree. */

export const FIELD_MANAGER = "drawbridge-operator";

export const LABELS = Object.freeze({
	/** On every object applied from git: which GitSource owns it (`<namespace>.<name>`, hashed if too long). */
	gitSource: "access.drawbridge.dev/git-source",
	/** On every object the operator creates itself (token Secrets, role Secrets, bundle). */
	managedBy: "app.kubernetes.io/managed-by",
	/** On credential Secrets: the grant (`<namespace>.<name>`) they belong to. */
	grant: "access.drawbridge.dev/grant",
	/** On credential Secrets: `token` or `postgres-role`. */
	credential: "access.drawbridge.dev/credential",
});

export const MANAGED_BY_VALUE = "drawbridge-operator";

export const ANNOTATIONS = Object.freeze({
	repository: "access.drawbridge.dev/repository",
	path: "access.drawbridge.dev/path",
	commit: "access.drawbridge.dev/commit",
	author: "access.drawbridge.dev/author",
	committer: "access.drawbridge.dev/committer",
	committedAt: "access.drawbridge.dev/committed-at",
	/** "true" when the approving commit lies beyond the history walked (committed-at is then not the approval's time). */
	undated: "access.drawbridge.dev/approval-undated",
	pullRequest: "access.drawbridge.dev/pull-request",
	url: "access.drawbridge.dev/approval-url",
	/** On credential Secrets: when the credential stops working. */
	expiresAt: "access.drawbridge.dev/expires-at",
	/** On token Secrets: when the token was minted (refresh is scheduled from it). */
	issuedAt: "access.drawbridge.dev/issued-at",
	/** On bundle Secret: hash of the bundle content without version/time, to avoid bumping for nothing. */
	contentHash: "access.drawbridge.dev/content-hash",
});

export const GRANT_FINALIZER = "access.drawbridge.dev/credentials";

/** A label value (<= 63 chars, [a-z0-9A-Z.-_]) for `namespace.name`. */
export function labelValue(namespace: string, name: string): string {
	const v = `${namespace}.${name}`;
	if (v.length <= 63) return v;
	// Deterministic, collision-resistant shortening.
	return `${v.slice(0, 50)}-${createHash("sha256").update(v).digest("hex").slice(0, 12)}`;
}
