/** Table tests of the pure approval rules (gateway/approvals/decision.ts). */
import assert from "node:assert/strict";
import { test } from "node:test";
import {
	applyDecision,
	canView,
	cancel,
	countApprovals,
	expireIfDue,
	findReusable,
	newRecord,
	principalName,
	samePrincipal,
	validateInput,
} from "../../gateway/approvals/decision.ts";
import { APPROVAL_ERROR_CATALOGUE, APPROVAL_ERROR_HTTP_STATUS, ApprovalError } from "../../gateway/approvals/errors.ts";
import type { ApprovalRequestRecord } from "../../gateway/approvals/types.ts";
import type { Identity } from "../../gateway/config/bundle.ts";
import { bot, human, input, OIDC, serviceAccount } from "./fixtures.ts";

const T0 = new Date("2026-03-01T10:00:00.000Z");
const at = (sec: number) => new Date(T0.getTime() + sec * 1000);
const sam = human("sam@example.com", ["support-leads"]);
const kim = human("kim@example.com", ["support-leads"]);
const outsider = human("eve@example.com", ["support"]);

function pending(overrides: Parameters<typeof input>[0] = {}): ApprovalRequestRecord {
	return newRecord(input(overrides), "ar-0123456789", T0, "drawbridge approvals approve ar-0123456789");
}

function refusal(fn: () => unknown): string {
	try {
		fn();
	} catch (err) {
		if (err instanceof ApprovalError) return err.code;
		throw err;
	}
	return "accepted";
}

test("newRecord: Pending, expiry = now + timeout, no decisions", () => {
	const r = pending();
	assert.equal(r.phase, "Pending");
	assert.equal(r.createdAt, "2026-03-01T10:00:00.000Z");
	assert.equal(r.expiresAt, "2026-03-01T10:15:00.000Z");
	assert.deepEqual(r.decisions, []);
});

test("validateInput refuses malformed requests from a data path with TypeError", () => {
	const bad: [string, Parameters<typeof input>[0]][] = [
		["no approvers", { approvers: [] }],
		["minApprovals 0", { minApprovals: 0 }],
		["fractional minApprovals", { minApprovals: 1.5 }],
		["zero timeout", { timeoutSeconds: 0 }],
		["timeout over a day", { timeoutSeconds: 86_401 }],
		["negative reuse window", { reuseWindowSeconds: -1 }],
		["no rule", { rule: "" }],
	];
	for (const [name, o] of bad) assert.throws(() => validateInput(input(o)), TypeError, name);
	validateInput(input({ reuseWindowSeconds: 600 }));
});

test("samePrincipal: issuer+subject, service accounts, user names across issuers", () => {
	const rows: [string, Identity, Identity, boolean][] = [
		["same token subject", sam, human("sam@example.com"), true],
		["same user name under another issuer", sam, human("SAM@example.com", [], { issuer: "https://other", subject: "x" }), true],
		["different users", sam, kim, false],
		["same SA via identity", bot, serviceAccount("support", "bot", { issuer: "https://other" }), true],
		[
			"SA from subject string",
			bot,
			{ ...human("x"), issuer: "https://k", subject: "system:serviceaccount:support:bot", serviceAccount: undefined },
			true,
		],
		["other SA", bot, serviceAccount("support", "bot2"), false],
		["SA vs human with same name", serviceAccount("ns", "alice"), human("alice"), false],
		["same subject, different issuer, different names", sam, human("kim@example.com", [], { subject: "sub-sam@example.com", issuer: "https://x" }), false],
	];
	for (const [name, a, b, want] of rows) assert.equal(samePrincipal(a, b), want, name);
});

test("applyDecision: refusals, by rule", () => {
	const expiredToken = human("sam@example.com", ["support-leads"], { tokenExpiresAt: at(-1) });
	const grantToken: Identity = { ...sam, issuerKind: "drawbridge", issuer: "https://drawbridge", grant: "support/x" };
	const approved = applyDecision(pending(), sam, "approve", undefined, at(1));
	const selfHuman = human("ann@example.com", ["support-leads"]);
	const byAnn = pending({ requester: selfHuman });
	const rows: [string, ApprovalRequestRecord, Identity, "approve" | "deny", Date, string][] = [
		["approver with valid token", pending(), sam, "approve", at(1), "accepted"],
		["approver may deny", pending(), sam, "deny", at(1), "accepted"],
		["expired approver token", pending(), expiredToken, "approve", at(1), "unauthenticated"],
		["grant-scoped data-path token", pending(), grantToken, "approve", at(1), "credential-not-allowed"],
		["self approval (service account)", pending({ approvers: [{ kind: "ServiceAccount", namespace: "support", name: "bot" }] }), bot, "approve", at(1), "self-approval"],
		["self approval (human in the approver group)", byAnn, selfHuman, "approve", at(1), "self-approval"],
		["self deny is refused too", byAnn, selfHuman, "deny", at(1), "self-approval"],
		["non-approver", pending(), outsider, "approve", at(1), "not-an-approver"],
		["after expiry", pending(), sam, "approve", at(900), "expired"],
		["already Expired", { ...pending(), phase: "Expired" }, sam, "approve", at(1), "expired"],
		["already Approved", approved, kim, "approve", at(2), "already-decided"],
		["already Cancelled", { ...pending(), phase: "Cancelled" }, sam, "deny", at(2), "already-decided"],
		["user matcher", pending({ approvers: [{ kind: "User", name: "kim@example.com" }] }), kim, "approve", at(1), "accepted"],
		["user matcher, other user", pending({ approvers: [{ kind: "User", name: "kim@example.com" }] }), sam, "approve", at(1), "not-an-approver"],
		[
			"service account approver",
			pending({ approvers: [{ kind: "ServiceAccount", namespace: "ops", name: "approver-bot" }] }),
			serviceAccount("ops", "approver-bot"),
			"approve",
			at(1),
			"accepted",
		],
	];
	for (const [name, record, who, decision, now, want] of rows) {
		assert.equal(
			refusal(() => applyDecision(record, who, decision, "ok", now)),
			want,
			name,
		);
	}
});

test("applyDecision: minimum approvals count distinct approvers; any deny wins", () => {
	let r = pending({ minApprovals: 2 });
	r = applyDecision(r, sam, "approve", "looks fine", at(10));
	assert.equal(r.phase, "Pending");
	assert.deepEqual(r.decisions[0], { decision: "approve", by: "user:sam@example.com", at: at(10).toISOString(), issuer: OIDC, subject: "sub-sam@example.com", comment: "looks fine" });
	assert.equal(refusal(() => applyDecision(r, sam, "approve", undefined, at(11))), "already-voted");
	assert.equal(
		refusal(() => applyDecision(r, human("Sam@example.com", ["support-leads"], { issuer: "https://idp2", subject: "other" }), "approve", undefined, at(11))),
		"already-voted",
		"the same person through another issuer is not a second approver",
	);
	const approved = applyDecision(r, kim, "approve", undefined, at(12));
	assert.equal(approved.phase, "Approved");
	assert.equal(approved.decidedAt, at(12).toISOString());
	assert.equal(countApprovals(approved.decisions), 2);

	const stripped = approved.decisions.map(({ issuer: _i, subject: _s, ...d }) => d);
	assert.equal(countApprovals(stripped), 2, "decisions without issuer/subject (as stored in the CRD) still count per person");

	const denied = applyDecision(r, kim, "deny", "no", at(12));
	assert.equal(denied.phase, "Denied");
	assert.equal(denied.decisions.length, 2);
});

test("expireIfDue and cancel only touch Pending requests", () => {
	assert.equal(expireIfDue(pending(), at(899)), undefined);
	assert.equal(expireIfDue(pending(), at(900))?.phase, "Expired");
	assert.equal(expireIfDue({ ...pending(), phase: "Approved" }, at(10_000)), undefined);
	assert.equal(cancel(pending(), at(5), "gone")?.phase, "Cancelled");
	assert.equal(cancel({ ...pending(), phase: "Denied" }, at(5), "gone"), undefined);
});

test("findReusable: same requester, connection, grant, rule and exact command inside the window", () => {
	const base = { reuseWindowSeconds: 600 };
	const approved = applyDecision(pending(base), sam, "approve", undefined, at(60));
	const rows: [string, Parameters<typeof input>[0], Date, boolean][] = [
		["same statement within window", base, at(61), true],
		["window ends", base, at(660), false],
		["different command", { ...base, command: "DELETE FROM tickets" }, at(61), false],
		["different connection", { ...base, connection: "other" }, at(61), false],
		["different grant", { ...base, grant: "support/other" }, at(61), false],
		["new request asks for no reuse", { reuseWindowSeconds: 0 }, at(61), false],
		["smaller requested window wins", { reuseWindowSeconds: 30 }, at(100), false],
		[
			"different requester",
			{ ...base, requester: { issuer: OIDC, subject: "sub-x", username: "x", groups: [] } },
			at(61),
			false,
		],
	];
	for (const [name, o, now, want] of rows) assert.equal(findReusable([approved], input(o), now)?.id === approved.id, want, name);
	const denied = applyDecision(pending(base), sam, "deny", undefined, at(60));
	assert.equal(findReusable([denied], input(base), at(61)), undefined, "denied requests are never reused");
	const noWindow = applyDecision(pending(), sam, "approve", undefined, at(60));
	assert.equal(findReusable([noWindow], input(base), at(61)), undefined, "the approved request had no window");
});

test("canView: requester and approvers only", () => {
	const r = pending();
	assert.equal(canView(r, bot), true);
	assert.equal(canView(r, sam), true);
	assert.equal(canView(r, outsider), false);
});

test("principalName", () => {
	assert.equal(principalName(sam), "user:sam@example.com");
	assert.equal(principalName(bot), "serviceaccount:support/bot");
});

test("error catalogue and HTTP statuses cover every code", () => {
	assert.deepEqual(Object.keys(APPROVAL_ERROR_HTTP_STATUS).sort(), Object.keys(APPROVAL_ERROR_CATALOGUE).sort());
	assert.equal(APPROVAL_ERROR_HTTP_STATUS.expired, 410);
	assert.equal(APPROVAL_ERROR_HTTP_STATUS["self-approval"], 403);
	assert.equal(APPROVAL_ERROR_HTTP_STATUS.unauthenticated, 401);
});

test("docs/approvals.md lists every error code", async () => {
	const { readFile } = await import("node:fs/promises");
	const doc = await readFile(new URL("../../docs/approvals.md", import.meta.url), "utf8");
	for (const code of Object.keys(APPROVAL_ERROR_CATALOGUE)) assert.ok(doc.includes(`\`${code}\``), `docs/approvals.md misses ${code}`);
});
