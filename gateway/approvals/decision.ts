/**
 * The approval rules, as pure functions of (request record, approver identity, clock). Both stores
 * (Kubernetes and local) and every surface go through these; they are table-tested in
 * test/approvals/decision.test.ts.
 *
 * Rules (docs/approvals.md "Rules"):
 * 1. The approver's token must be unexpired (the identity module verified signature, issuer, audience).
 * 2. Grant-scoped data-path tokens (issuer kind `drawbridge`, or any token carrying a `grant` claim) may
 *    not decide: humans decide with their OIDC token, automation with its service-account token.
 * 3. Only a Pending request can be decided; past `expiresAt` it is Expired (HTTP 410).
 * 4. The requester can never decide their own request. "Same person" is judged conservatively: same
 *    issuer+subject, same Kubernetes service account (from the identity or a `system:serviceaccount:`
 *    subject), or the same user name (case-insensitive) under any issuer. A request made with a grant's
 *    shared credential (the operator's token of the grant) may have been made by any subject of that
 *    grant (`requester.sharedBy`): none of them decides it.
 * 5. The approver must match one of the request's approver subjects (users, groups, service accounts,
 *    claim matchers).
 * 6. Each approver decides once; approvals are counted per distinct approver.
 * 7. Any deny makes the request Denied; `minApprovals` distinct approvals make it Approved.
 */
import { randomBytes } from "node:crypto";
import type { BundleGrant, Identity, SubjectMatcher } from "../config/bundle.ts";
import { subjectMatches } from "../identity/grants.ts";
import { ApprovalError } from "./errors.ts";
import type { ApprovalDecisionRecord, ApprovalPhase, ApprovalRequestInput, ApprovalRequestRecord } from "./types.ts";

export type Requester = ApprovalRequestInput["requester"];

/** Longest allowed approval timeout (one day): a held command should not wait longer. */
export const MAX_TIMEOUT_SECONDS = 86_400;
/** Longest allowed reuse window (one day). */
export const MAX_REUSE_WINDOW_SECONDS = 86_400;

export function isFinalPhase(phase: ApprovalPhase): boolean {
	return phase !== "Pending";
}

/** `user:<name>` or `serviceaccount:<namespace>/<name>`: how an identity appears in decisions and logs. */
export function principalName(who: Requester): string {
	const sa = serviceAccountOf(who);
	if (sa) return `serviceaccount:${sa.namespace}/${sa.name}`;
	return `user:${who.username}`;
}

/** Subjects as approvers read them: `user:alice`, `group:sre`, `serviceaccount:ns/name`, `claims(<issuer>)`. */
export function describeSubjects(subjects: readonly SubjectMatcher[]): string {
	return subjects
		.map((a) => (a.kind === "ServiceAccount" ? `serviceaccount:${a.namespace}/${a.name}` : a.kind === "Claims" ? `claims(${a.issuer})` : `${a.kind.toLowerCase()}:${a.name}`))
		.join(", ");
}

/**
 * Who asked, as every surface shows it to approvers (CLI, Slack, webhooks; the web page's script says
 * the same). A request made with a grant's shared credential names only the grant's first User subject
 * (`sub`), which whoever writes the grant chooses: any subject of the grant may have sent it, so all of
 * them are named. Before, the CLI and Slack said `user:ceo` for a request anyone holding such a token
 * made, and approvers decided believing the ceo asked.
 */
export function describeRequester(record: Pick<ApprovalRequestRecord, "requester">): string {
	const who = principalName(record.requester);
	const shared = record.requester.sharedBy;
	return shared ? `${who} (the grant's shared credential: any of ${describeSubjects(shared)})` : who;
}

function serviceAccountOf(who: Requester): { namespace: string; name: string } | undefined {
	if (who.serviceAccount) return who.serviceAccount;
	const m = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(who.subject);
	return m ? { namespace: m[1]!, name: m[2]! } : undefined;
}

/**
 * The requester of a command `identity` sent under `grant`, as the data paths record it. An operator
 * credential of the grant (`identity.grant`) is one per grant, delivered to every subject of it through
 * one Secret, and names only the first (`sub`): whoever of them sent the command, `sharedBy` lists them
 * all so that none can approve it.
 */
export function requesterOf(identity: Identity, grant: Pick<BundleGrant, "subjects">): Requester {
	return {
		issuer: identity.issuer,
		subject: identity.subject,
		username: identity.username,
		groups: identity.groups,
		...(identity.serviceAccount ? { serviceAccount: identity.serviceAccount } : {}),
		...(identity.grant !== undefined ? { sharedBy: grant.subjects.map((s) => ({ ...s })) } : {}),
	};
}

/** Conservative "is this the same principal?" used for self-approval and distinct-approver counting. */
export function samePrincipal(a: Requester, b: Requester): boolean {
	// Empty issuer/subject (a decision read back from a store without them) never matches by itself.
	if (a.subject !== "" && a.issuer !== "" && a.issuer === b.issuer && a.subject === b.subject) return true;
	const saA = serviceAccountOf(a);
	const saB = serviceAccountOf(b);
	if (saA && saB) return saA.namespace === saB.namespace && saA.name === saB.name;
	if (saA || saB) return false;
	return normalise(a.username) !== "" && normalise(a.username) === normalise(b.username);
}

function normalise(name: string): string {
	return name.trim().toLowerCase();
}

export function matchesAnyApprover(identity: Identity, approvers: readonly SubjectMatcher[]): boolean {
	return approvers.some((m) => subjectMatches(identity, m));
}

/**
 * May `identity` see this request (list/show)? The requester and every matching approver may. A grant's
 * shared credential (an operator token or SSH certificate of the grant, `identity.grant`) stands for
 * that grant, not for the person its `sub` names (the grant's first User subject, which any repository
 * may write) nor for the groups it carries (the grant's Group subjects): it sees only requests made
 * with a credential of the same grant. Before, such a token listed every request of the user its `sub`
 * names, on every connection, and every request its groups may approve.
 */
export function canView(record: ApprovalRequestRecord, identity: Identity): boolean {
	if (identity.grant !== undefined) return madeWithCredentialOf(record, identity.issuer, identity.grant);
	return samePrincipal(record.requester, identity) || matchesAnyApprover(identity, record.approvers);
}

/** Was `record` requested with a shared credential of `grant` from `issuer`? */
function madeWithCredentialOf(record: Pick<ApprovalRequestRecord, "requester" | "grant">, issuer: string, grant: string): boolean {
	return record.requester.sharedBy !== undefined && record.requester.issuer === issuer && record.grant === grant;
}

/**
 * Do two requests count against the same requester's limits (`requestRefusal`)? Personal credentials:
 * rule 4's "same person" (`samePrincipal`). A grant's shared credential is one requester per grant,
 * whoever of its subjects holds it, and never the person its `sub` names: before, its requests filled
 * that person's own 5 pending (and the denied-retry pause), so whoever could read the token Secret of
 * any grant naming a user first (a grant any team's repository may write) kept that user from asking.
 */
export function sameRequester(a: Pick<ApprovalRequestRecord, "requester" | "grant">, b: Pick<ApprovalRequestRecord, "requester" | "grant">): boolean {
	if (a.requester.sharedBy !== undefined) return madeWithCredentialOf(b, a.requester.issuer, a.grant);
	if (b.requester.sharedBy !== undefined) return false;
	return samePrincipal(a.requester, b.requester);
}

/** Throws TypeError for malformed input from a data path (our own misuse, not untrusted input). */
export function validateInput(input: ApprovalRequestInput): void {
	if (!input.sessionId || !input.connection || !input.grant || !input.rule) {
		throw new TypeError("approval request needs sessionId, connection, grant and rule");
	}
	if (!input.requester?.issuer || !input.requester.subject) {
		throw new TypeError("approval request needs a verified requester (issuer and subject)");
	}
	if (!Array.isArray(input.approvers) || input.approvers.length === 0) {
		throw new TypeError(`rule ${input.rule}: requireApproval without approvers can never be approved`);
	}
	if (!Number.isInteger(input.minApprovals) || input.minApprovals < 1) {
		throw new TypeError(`rule ${input.rule}: minApprovals must be an integer >= 1`);
	}
	if (!Number.isFinite(input.timeoutSeconds) || input.timeoutSeconds <= 0 || input.timeoutSeconds > MAX_TIMEOUT_SECONDS) {
		throw new TypeError(`rule ${input.rule}: timeoutSeconds must be in (0, ${MAX_TIMEOUT_SECONDS}]`);
	}
	const reuse = input.reuseWindowSeconds;
	if (reuse !== undefined && (!Number.isFinite(reuse) || reuse < 0 || reuse > MAX_REUSE_WINDOW_SECONDS)) {
		throw new TypeError(`rule ${input.rule}: reuseWindowSeconds must be in [0, ${MAX_REUSE_WINDOW_SECONDS}]`);
	}
}

/** A fresh id, valid as a Kubernetes object name: `ar-` and 10 hex digits. */
export function newApprovalId(): string {
	return `ar-${randomBytes(5).toString("hex")}`;
}

export function approveHintFor(id: string, webBaseUrl?: string): string {
	const cli = `drawbridge approvals approve ${id}`;
	return webBaseUrl ? `${cli} or ${webBaseUrl.replace(/\/+$/, "")}/approvals/${id}` : cli;
}

/** The Pending record for a new request. */
export function newRecord(input: ApprovalRequestInput, id: string, now: Date, approveHint: string): ApprovalRequestRecord {
	validateInput(input);
	const requester: Requester = {
		issuer: input.requester.issuer,
		subject: input.requester.subject,
		username: input.requester.username,
		groups: [...(input.requester.groups ?? [])],
		...(input.requester.serviceAccount ? { serviceAccount: { ...input.requester.serviceAccount } } : {}),
		...(input.requester.sharedBy ? { sharedBy: input.requester.sharedBy.map((s) => ({ ...s })) } : {}),
	};
	return {
		...input,
		requester,
		approvers: input.approvers.map((a) => ({ ...a })),
		id,
		phase: "Pending",
		createdAt: now.toISOString(),
		expiresAt: new Date(now.getTime() + input.timeoutSeconds * 1000).toISOString(),
		decisions: [],
		approveHint,
	};
}

/** Pending past `expiresAt` → Expired; anything else unchanged (returns undefined when no change). */
export function expireIfDue(record: ApprovalRequestRecord, now: Date): ApprovalRequestRecord | undefined {
	if (record.phase !== "Pending" || now.getTime() < Date.parse(record.expiresAt)) return undefined;
	return { ...record, phase: "Expired", decidedAt: record.expiresAt, reason: "expired before enough approvals" };
}

/** Pending → Cancelled (the waiting client went away). Undefined when it already left Pending. */
export function cancel(record: ApprovalRequestRecord, now: Date, reason: string): ApprovalRequestRecord | undefined {
	if (record.phase !== "Pending") return undefined;
	return { ...record, phase: "Cancelled", decidedAt: now.toISOString(), reason };
}

/** Who this decision record names, as a Requester-shaped value for `samePrincipal`. */
function decisionPrincipal(d: ApprovalDecisionRecord): Requester {
	const sa = /^serviceaccount:([^/]+)\/(.+)$/.exec(d.by);
	return {
		issuer: d.issuer ?? "",
		subject: d.subject ?? "",
		username: d.by.replace(/^(user|serviceaccount):/, ""),
		groups: [],
		...(sa ? { serviceAccount: { namespace: sa[1]!, name: sa[2]! } } : {}),
	};
}

/**
 * Check every rule and return the record with the decision applied (possibly now Approved/Denied).
 * Throws ApprovalError when refused. A Pending request past its expiry throws `expired`; the caller
 * should also persist `expireIfDue`.
 */
export function applyDecision(
	record: ApprovalRequestRecord,
	approver: Identity,
	decision: "approve" | "deny",
	comment: string | undefined,
	now: Date,
): ApprovalRequestRecord {
	if (decision !== "approve" && decision !== "deny") throw new ApprovalError("bad-request", `unknown decision ${String(decision)}`);
	checkApproverCredential(approver, now);
	if (record.phase === "Expired") throw new ApprovalError("expired", `approval ${record.id} expired at ${record.expiresAt}`);
	if (record.phase !== "Pending") throw new ApprovalError("already-decided", `approval ${record.id} is already ${record.phase}`);
	if (now.getTime() >= Date.parse(record.expiresAt)) {
		throw new ApprovalError("expired", `approval ${record.id} expired at ${record.expiresAt}`);
	}
	if (samePrincipal(record.requester, approver)) {
		throw new ApprovalError("self-approval", `${principalName(approver)} requested ${record.id} and cannot decide it`);
	}
	if (record.requester.sharedBy?.some((s) => subjectMatches(approver, s))) {
		throw new ApprovalError(
			"self-approval",
			`${record.id} was requested with grant ${record.grant}'s shared credential, which ${principalName(approver)} holds as a subject of that grant: another approver must decide it`,
		);
	}
	if (!matchesAnyApprover(approver, record.approvers)) {
		throw new ApprovalError("not-an-approver", `${principalName(approver)} is not an approver of ${record.id}`);
	}
	if (record.decisions.some((d) => samePrincipal(decisionPrincipal(d), approver))) {
		throw new ApprovalError("already-voted", `${principalName(approver)} already decided ${record.id}`);
	}
	const entry: ApprovalDecisionRecord = {
		decision,
		by: principalName(approver),
		at: now.toISOString(),
		issuer: approver.issuer,
		subject: approver.subject,
		...(comment ? { comment: comment.slice(0, 1024) } : {}),
	};
	const decisions = [...record.decisions, entry];
	let phase: ApprovalPhase = "Pending";
	if (decision === "deny") phase = "Denied";
	else if (countApprovals(decisions) >= record.minApprovals) phase = "Approved";
	const next: ApprovalRequestRecord = { ...record, decisions, phase };
	if (phase !== "Pending") next.decidedAt = entry.at;
	return next;
}

/** Rules 1 and 2: an unexpired token of a kind that may decide. Throws ApprovalError. */
export function checkApproverCredential(approver: Identity, now: Date): void {
	if (!(approver.tokenExpiresAt instanceof Date) || approver.tokenExpiresAt.getTime() <= now.getTime()) {
		throw new ApprovalError("unauthenticated", "the approver's token has expired");
	}
	if (approver.issuerKind === "drawbridge" || approver.grant !== undefined) {
		throw new ApprovalError(
			"credential-not-allowed",
			"grant-scoped Drawbridge tokens cannot decide approvals; use your OIDC or service-account token",
		);
	}
}

/** Approvals by distinct approvers. */
export function countApprovals(decisions: readonly ApprovalDecisionRecord[]): number {
	const seen: Requester[] = [];
	for (const d of decisions) {
		if (d.decision !== "approve") continue;
		const p = decisionPrincipal(d);
		if (!seen.some((s) => samePrincipal(s, p))) seen.push(p);
	}
	return seen.length;
}

/**
 * Longest command one approval may be for, in UTF-16 code units (the ApprovalRequest CRD caps
 * `spec.command` at 16384 characters). A longer command is refused before anyone is asked: stored in
 * Kubernetes it was cut to this length, so approvers (web page, CLI, Slack, `kubectl get ar`) decided
 * on a prefix while the data path ran the whole command, whatever followed the cut.
 */
export const MAX_COMMAND_CHARS = 16_384;

/** Why `input.command` cannot be shown to approvers whole (so must not be held), or undefined. */
export function commandRefusal(input: ApprovalRequestInput): ApprovalError | undefined {
	if (input.command.length <= MAX_COMMAND_CHARS) return undefined;
	return new ApprovalError(
		"bad-request",
		`the command is ${input.command.length} characters long; approvers are shown at most ${MAX_COMMAND_CHARS}, so it cannot be held for approval (nobody was asked)`,
	);
}

/** Limits on how often one requester may ask (`requestRefusal`). */
export interface RequestLimits {
	/** Requests of one requester Pending at once (default 5). */
	maxPendingPerRequester: number;
	/** Requests one requester may create per minute (default 20). */
	maxPerRequesterPerMinute: number;
	/** After a deny, the same requester's same command on the same connection is refused this long, seconds (default 60). */
	deniedRetrySeconds: number;
}

export const DEFAULT_REQUEST_LIMITS: RequestLimits = Object.freeze({
	maxPendingPerRequester: 5,
	maxPerRequesterPerMinute: 20,
	deniedRetrySeconds: 60,
});

/**
 * Why a new request by `input.requester` is refused before it reaches approvers, or undefined. Every
 * request notifies approvers (webhooks, Slack): an agent retrying a denied command in a loop, or
 * holding statements in many sessions at once, must not flood them. "Same requester" is
 * `sameRequester`: rule 4's conservative test for personal credentials, the grant for shared ones.
 */
export function requestRefusal(
	records: readonly ApprovalRequestRecord[],
	input: ApprovalRequestInput,
	now: Date,
	limits: RequestLimits = DEFAULT_REQUEST_LIMITS,
): ApprovalError | undefined {
	const t = now.getTime();
	let pending = 0;
	let lastMinute = 0;
	for (const r of records) {
		if (!sameRequester(r, input)) continue;
		if (r.phase === "Pending" && t < Date.parse(r.expiresAt)) pending++;
		if (t - Date.parse(r.createdAt) < 60_000) lastMinute++;
		if (
			r.phase === "Denied" &&
			r.decidedAt &&
			r.connection === input.connection &&
			r.command === input.command &&
			t - Date.parse(r.decidedAt) < limits.deniedRetrySeconds * 1000
		) {
			return new ApprovalError(
				"rate-limited",
				`the same command was denied in ${r.id} at ${r.decidedAt}; not asking again before ${new Date(Date.parse(r.decidedAt) + limits.deniedRetrySeconds * 1000).toISOString()}`,
			);
		}
	}
	if (pending >= limits.maxPendingPerRequester) {
		return new ApprovalError("rate-limited", `${askerName(input)} already has ${pending} approval requests pending (at most ${limits.maxPendingPerRequester})`);
	}
	if (lastMinute >= limits.maxPerRequesterPerMinute) {
		return new ApprovalError("rate-limited", `${askerName(input)} made ${lastMinute} approval requests in the last minute (at most ${limits.maxPerRequesterPerMinute})`);
	}
	return undefined;
}

/** Who the limits are counted for, in their messages. */
function askerName(input: ApprovalRequestInput): string {
	return input.requester.sharedBy !== undefined ? `grant ${input.grant}'s shared credential` : principalName(input.requester);
}

/**
 * An Approved request that may be reused for `input`: same requester (issuer+subject), protocol,
 * connection, grant, rule and exact command, the same approver subjects and at least as many
 * approvals as the rule asks for now (a rule tightened after the approval asks again), approved less
 * than the reuse window ago. The window is
 * the smaller of the approved request's and the new request's (0 or absent on either side: no reuse).
 */
export function findReusable(
	records: readonly ApprovalRequestRecord[],
	input: ApprovalRequestInput,
	now: Date,
): ApprovalRequestRecord | undefined {
	const wanted = input.reuseWindowSeconds ?? 0;
	if (wanted <= 0) return undefined;
	let best: ApprovalRequestRecord | undefined;
	for (const r of records) {
		if (r.phase !== "Approved" || !r.decidedAt) continue;
		const window = Math.min(wanted, r.reuseWindowSeconds ?? 0);
		if (window <= 0) continue;
		if (
			r.requester.issuer !== input.requester.issuer ||
			r.requester.subject !== input.requester.subject ||
			r.protocol !== input.protocol ||
			r.connection !== input.connection ||
			r.grant !== input.grant ||
			r.rule !== input.rule ||
			r.command !== input.command ||
			// approved under the approvers the rule names now, by at least as many of them
			JSON.stringify(r.approvers) !== JSON.stringify(input.approvers) ||
			r.minApprovals < input.minApprovals
		) {
			continue;
		}
		const decided = Date.parse(r.decidedAt);
		if (now.getTime() >= decided + window * 1000) continue;
		if (!best || Date.parse(best.decidedAt!) < decided) best = r;
	}
	return best;
}
