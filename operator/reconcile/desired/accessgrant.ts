/**
 * What should exist for one AccessGrant at one instant. Pure: the grant, its Connection (if found) and
 * the time in; phase, reason, window, credentials wanted and the next instant to look again out.
 *
 * Pending → Active → Expired; Revoked when the grant is being deleted (removed from git or by hand);
 * Invalid when it cannot be honoured (unknown Connection, access kind not matching the Connection type,
 * spec failing validation). Invalid is re-evaluated whenever the grant or its Connection changes.
 */

import { createHash } from "node:crypto";
import type { AccessGrant, Connection, Condition } from "../../../crds/index.ts";
import { grantWindow, MAX_GRANT_DAYS, MAX_GRANT_MS, validateSpec } from "../../../crds/index.ts";
import type { GrantOrigin } from "../../../gateway/config/bundle.ts";
import { roleNameFor } from "../../credentials/postgres-roles.ts";
import { ANNOTATIONS } from "../labels.ts";

export type GrantPhase = "Pending" | "Active" | "Expired" | "Revoked" | "Invalid";

export type GrantReason =
	| "NotYetValid"
	| "Granted"
	| "GrantEnded"
	| "RemovedFromSource"
	| "ConnectionNotFound"
	| "ConnectionTypeMismatch"
	| "ConnectionNameInUse"
	| "InvalidSpec";

export interface WantedToken {
	/** Secret in the grant's namespace receiving the token. */
	secretName: string;
	subject: string;
	groups: string[];
}

export interface WantedPgRole {
	role: string;
	connectionKey: string;
}

export interface GrantDecision {
	phase: GrantPhase;
	reason: GrantReason;
	message: string;
	window?: { notBefore: Date; expiresAt: Date };
	origin: GrantOrigin;
	/** When the operator first saw the approving commit (status.origin.firstSeenAt); absent without a commit. */
	firstSeenAt?: string;
	/** Next instant the decision changes on its own (notBefore, expiresAt). */
	requeueAt?: Date;
	token?: WantedToken;
	pgRole?: WantedPgRole;
}

/** The approving change, from the annotations gitsync applies; for resources created in the cluster, none but creation time. */
export function originOf(grant: AccessGrant): GrantOrigin & { committedAt: string } {
	const a = grant.metadata.annotations ?? {};
	const pr = a[ANNOTATIONS.pullRequest] ? Number(a[ANNOTATIONS.pullRequest]) : undefined;
	const committedAt = a[ANNOTATIONS.committedAt] ?? grant.metadata.creationTimestamp ?? new Date(0).toISOString();
	const o: GrantOrigin & { committedAt: string } = { committedAt };
	if (a[ANNOTATIONS.repository]) o.repository = a[ANNOTATIONS.repository];
	if (a[ANNOTATIONS.path]) o.path = a[ANNOTATIONS.path];
	if (a[ANNOTATIONS.commit]) o.commit = a[ANNOTATIONS.commit];
	if (a[ANNOTATIONS.author]) o.author = a[ANNOTATIONS.author];
	if (a[ANNOTATIONS.committer]) o.committer = a[ANNOTATIONS.committer];
	if (pr !== undefined && Number.isSafeInteger(pr) && pr > 0) o.pullRequest = pr;
	if (a[ANNOTATIONS.url]) o.url = a[ANNOTATIONS.url];
	return o;
}

/**
 * When the operator first saw the grant's approving commit: `status.origin.firstSeenAt` while the
 * status still names the same commit, else `now` (a new approval, or a grant not reconciled yet). The
 * reconciler writes it to status with its first decision, so it stays put across syncs and restarts.
 * Undefined for resources created in the cluster (no commit; their creationTimestamp is the server's).
 */
export function firstSeenOf(grant: AccessGrant, now: Date): string | undefined {
	const commit = grant.metadata.annotations?.[ANNOTATIONS.commit];
	if (!commit) return undefined;
	const seen = grant.status?.origin;
	if (seen?.commit === commit && seen.firstSeenAt && !Number.isNaN(Date.parse(seen.firstSeenAt))) return new Date(seen.firstSeenAt).toISOString();
	return now.toISOString();
}

/**
 * Where a window without `notBefore` starts: the approving commit's committer time, but never later
 * than when the operator first saw that commit. The committer time is whatever the commit says (a
 * fast-forward merge keeps the contributor's own), so a date in the future would otherwise start the
 * grant late and end it late. An earlier date is taken as written: it only shortens the window.
 */
export function approvalTime(origin: { committedAt: string }, firstSeenAt: string | undefined): Date {
	const committed = new Date(origin.committedAt);
	if (firstSeenAt === undefined) return committed;
	const seen = new Date(firstSeenAt);
	return Number.isNaN(committed.getTime()) || seen.getTime() < committed.getTime() ? seen : committed;
}

/**
 * Name of the Secret receiving a grant's token (same namespace as the grant): `drawbridge-token-<grant>`,
 * or, when that is longer than a Secret name may be (grant names over 236 characters), its first part
 * and a digest of the whole grant name. Before, the name was cut at 253 characters: two grants whose
 * names share the first 236 characters shared one Secret, and each reconcile wrote its own token over
 * the other's (whoever may read "their" Secret by name read the other grant's token).
 */
export function tokenSecretName(grantName: string): string {
	const name = `drawbridge-token-${grantName}`;
	if (name.length <= 253) return name;
	const digest = createHash("sha256").update(grantName).digest("hex").slice(0, 16);
	// A DNS subdomain's labels end with a letter or digit: no `.` or `-` before the digest's `-`.
	const head = name.slice(0, 253 - digest.length - 1).replace(/[.-]+$/, "");
	return `${head}-${digest}`;
}

function connectionType(c: Connection): string {
	return c.spec.type;
}

/**
 * `nameHeldBy`: the Connection (`namespace/name`) of another namespace that holds the grant's
 * Connection's name in the gateway bundle (`withoutDuplicateNames`): the grant's Connection is left out
 * of the bundle with its grants, so the grant is Invalid and no credential is issued for it.
 */
export function decideGrant(grant: AccessGrant, connection: Connection | undefined, now: Date, nameHeldBy?: string): GrantDecision {
	const decision = decideGrantAt(grant, connection, now, nameHeldBy);
	const firstSeenAt = firstSeenOf(grant, now);
	return firstSeenAt === undefined || decision.phase === "Revoked" ? decision : { ...decision, firstSeenAt };
}

function decideGrantAt(grant: AccessGrant, connection: Connection | undefined, now: Date, nameHeldBy: string | undefined): GrantDecision {
	const origin = originOf(grant);
	const ns = grant.metadata.namespace ?? "default";
	const key = `${ns}/${grant.metadata.name}`;
	if (grant.metadata.deletionTimestamp) {
		return { phase: "Revoked", reason: "RemovedFromSource", message: "the grant was deleted (removed from git or by hand); credentials revoked", origin };
	}
	const specErrors = validateSpec("AccessGrant", grant.spec);
	if (specErrors.length > 0) {
		return { phase: "Invalid", reason: "InvalidSpec", message: specErrors.map((e) => `${e.field}: ${e.message}`).join("; "), origin };
	}
	// A window counted from the approving commit (no notBefore) needs that commit's time. When the
	// history walk stopped before it, only a later commit is known: counting from it would bring an
	// ended grant back. Fail closed until the grant is approved again in a commit the walk reaches.
	if (grant.spec.notBefore === undefined && grant.metadata.annotations?.[ANNOTATIONS.undated] === "true") {
		return {
			phase: "Invalid",
			reason: "InvalidSpec",
			message: `the commit that approved this grant is older than the history the operator reads (oldest commit read: ${origin.commit ?? "?"} at ${origin.committedAt}), so a window counted from it cannot be dated; approve the grant again in a new commit, or give it notBefore and expiresAt`,
			origin,
		};
	}
	let window: { notBefore: Date; expiresAt: Date };
	try {
		window = grantWindow(grant.spec, approvalTime(origin, firstSeenOf(grant, now)));
	} catch (e) {
		return { phase: "Invalid", reason: "InvalidSpec", message: (e as Error).message, origin };
	}
	// The CRD caps `duration` and `expiresAt - notBefore`; an `expiresAt` alone starts at the merge,
	// which no schema can see, so the cap is enforced here for every form.
	const lengthMs = window.expiresAt.getTime() - window.notBefore.getTime();
	if (lengthMs > MAX_GRANT_MS) {
		const from = grant.spec.notBefore !== undefined ? "notBefore" : `the approving commit (${window.notBefore.toISOString()})`;
		return {
			phase: "Invalid",
			reason: "InvalidSpec",
			message: `spec.expiresAt: a grant cannot last longer than ${MAX_GRANT_DAYS} days; ${window.expiresAt.toISOString()} is ${Math.ceil(lengthMs / 86_400_000)} days after ${from}`,
			origin,
		};
	}
	if (!connection) {
		return { phase: "Invalid", reason: "ConnectionNotFound", message: `Connection ${ns}/${grant.spec.connection} not found`, window, origin };
	}
	if (nameHeldBy !== undefined) {
		return {
			phase: "Invalid",
			reason: "ConnectionNameInUse",
			message: `Connection ${ns}/${grant.spec.connection} is left out of the gateway bundle: its name is used by the older Connection ${nameHeldBy} (agents name Connections without a namespace)`,
			window,
			origin,
		};
	}
	const want = grant.spec.postgres ? "postgres" : grant.spec.ssh ? "ssh" : "kubernetes";
	if (connectionType(connection) !== want) {
		return {
			phase: "Invalid",
			reason: "ConnectionTypeMismatch",
			message: `grant gives ${want} access but Connection ${ns}/${grant.spec.connection} is of type ${connectionType(connection)}`,
			window,
			origin,
		};
	}
	const t = now.getTime();
	if (t < window.notBefore.getTime()) {
		return { phase: "Pending", reason: "NotYetValid", message: `the grant starts at ${window.notBefore.toISOString()}`, window, origin, requeueAt: window.notBefore };
	}
	if (t >= window.expiresAt.getTime()) {
		return { phase: "Expired", reason: "GrantEnded", message: `the grant ended at ${window.expiresAt.toISOString()}`, window, origin };
	}
	const decision: GrantDecision = {
		phase: "Active",
		reason: "Granted",
		message: `active until ${window.expiresAt.toISOString()}`,
		window,
		origin,
		requeueAt: window.expiresAt,
	};
	const users = grant.spec.subjects.filter((s) => s.kind === "User").map((s) => s.name!);
	const groups = grant.spec.subjects.filter((s) => s.kind === "Group").map((s) => s.name!);
	if (users.length > 0 || groups.length > 0) {
		decision.token = { secretName: tokenSecretName(grant.metadata.name), subject: users[0] ?? `grant:${key}`, groups };
	}
	if (grant.spec.postgres && connection.spec.postgres?.credentialMode === "dynamic") {
		const connKey = `${connection.metadata.namespace ?? ns}/${connection.metadata.name}`;
		decision.pgRole = { role: roleNameFor(key, connKey), connectionKey: connKey };
	}
	return decision;
}

/** Merges a condition into a list the Kubernetes way: lastTransitionTime only moves when status changes. */
export function setCondition(list: readonly Condition[] | undefined, next: Omit<Condition, "lastTransitionTime">, now: Date): Condition[] {
	const out = [...(list ?? [])];
	const i = out.findIndex((c) => c.type === next.type);
	const prev = i >= 0 ? out[i] : undefined;
	const lastTransitionTime = prev && prev.status === next.status ? prev.lastTransitionTime : now.toISOString();
	const merged: Condition = { ...next, lastTransitionTime };
	if (i >= 0) out[i] = merged;
	else out.push(merged);
	return out;
}

/** Conditions for a decision: `Ready` (usable now) and `CredentialsIssued`. */
export function grantConditions(prev: readonly Condition[] | undefined, d: GrantDecision, generation: number | undefined, now: Date, credentialError?: string): Condition[] {
	const g = generation !== undefined ? { observedGeneration: generation } : {};
	let list = setCondition(prev, { type: "Ready", status: d.phase === "Active" && !credentialError ? "True" : "False", reason: d.reason, message: d.message, ...g }, now);
	const wantsCreds = d.token !== undefined || d.pgRole !== undefined;
	list = setCondition(
		list,
		credentialError
			? { type: "CredentialsIssued", status: "False", reason: "CredentialError", message: credentialError, ...g }
			: d.phase === "Active"
				? { type: "CredentialsIssued", status: "True", reason: wantsCreds ? "Issued" : "NotNeeded", message: wantsCreds ? "credentials issued" : "subjects present their own tokens", ...g }
				: { type: "CredentialsIssued", status: "False", reason: d.phase === "Pending" ? "NotYetValid" : "Revoked", message: d.phase === "Pending" ? "credentials are issued when the grant starts" : "no credentials outstanding", ...g },
		now,
	);
	return list;
}
