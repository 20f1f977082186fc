/**
 * Red-team regression (approvals, round 9): a subject of a grant approved their own command by
 * sending it with the grant's shared credential.
 *
 * The operator delivers one token per grant (Secret `drawbridge-token-<grant>`), shared by every
 * subject of the grant, and its `sub` is the grant's FIRST User subject. A request held for approval
 * recorded that `sub` as the requester, so when kim (second subject, and an approver of the rule) sent
 * `DELETE` with the grant's token, the request read "requested by lee" and kim's own approval passed
 * the never-the-requester rule: the DELETE ran on kim's word alone. A request made with a grant's
 * shared credential now lists the grant's subjects (`requester.sharedBy`), and none of them may decide
 * it (403 `self-approval`); another approver still can. Real PostgreSQL through the real listener, the
 * approvals component's real service; the request also survives the ApprovalRequest mapping.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import { objectToRecord, recordToObject } from "../../gateway/approvals/kube-mapping.ts";
import type { StoreApprovalService } from "../../gateway/approvals/service.ts";
import type { ApprovalRequestRecord } from "../../gateway/approvals/types.ts";
import type { Identity, SubjectMatcher } from "../../gateway/config/bundle.ts";
import { grantSubjectsDigest } from "../../gateway/config/canonical.ts";
import { type GatewayFixture, startGatewayFixture } from "../faults/fixture.ts";
import { localApprovals } from "../postgres/fixture.ts";

const SUBJECTS: SubjectMatcher[] = [
	{ kind: "User", name: "lee" },
	{ kind: "User", name: "kim" },
];

function approver(name: string): Identity {
	return {
		issuer: "https://idp.drawbridge.test",
		issuerKind: "oidc",
		subject: `${name}-sub`,
		username: name,
		groups: [],
		tokenExpiresAt: new Date(Date.now() + 3_600_000),
		claims: {},
	};
}

let fx: GatewayFixture;
let approvals: StoreApprovalService;

before(async () => {
	approvals = localApprovals();
	fx = await startGatewayFixture({
		grants: [{ name: "oncall-rw", user: "lee", access: "read-write", subjects: SUBJECTS }],
		guardrails: [
			{
				name: "approve-deletes",
				action: "requireApproval",
				sql: { statementKinds: ["DELETE"], tables: ["shared_cred_jobs"] },
				approval: { approvers: [{ kind: "User", name: "kim" }, { kind: "User", name: "sam" }], minApprovals: 1, timeoutSeconds: 60 },
			},
		],
		listener: { approvals },
	});
	// Set up directly on the server (the rule holds the gateway's TRUNCATE too).
	await fx.pg.query("create table if not exists shared_cred_jobs (id int primary key)");
	await fx.pg.query("truncate shared_cred_jobs");
	await fx.pg.query("insert into shared_cred_jobs values (1), (2)");
});

after(async () => {
	await fx?.stop();
	await approvals?.close();
});

async function pending(seen: Set<string>): Promise<ApprovalRequestRecord> {
	const end = Date.now() + 20_000;
	while (Date.now() < end) {
		const hit = (await approvals.list({ phase: "Pending" })).find((r) => !seen.has(r.id));
		if (hit) {
			seen.add(hit.id);
			return hit;
		}
		await new Promise((r) => setTimeout(r, 50));
	}
	throw new Error("the DELETE was not held");
}

async function client(password: string): Promise<pg.Client> {
	const { default: pgmod } = await import("pg");
	const c = new pgmod.Client(fx.clientConfig("agent", password));
	c.on("error", () => {});
	await c.connect();
	return c;
}

test("issue approval-shared-credential: no subject of the grant decides a request made with the grant's shared token", async () => {
	const seen = new Set<string>();
	const grantToken = await fx.token("lee", {
		issuer: "operator",
		claims: { grant: "team/oncall-rw", grantSubjects: grantSubjectsDigest(SUBJECTS) },
	});
	// kim, holding the grant's token (it says sub: lee), sends a DELETE that needs approval...
	const c = await client(grantToken);
	try {
		const result = c.query("DELETE FROM shared_cred_jobs WHERE id = 1");
		result.catch(() => {});
		const held = await pending(seen);
		assert.equal(held.requester.username, "lee");
		assert.deepEqual(held.requester.sharedBy, SUBJECTS, "the request names everyone who holds the credential");
		// ...and approves it. Before: approved (the requester read as lee), and the DELETE ran.
		await assert.rejects(approvals.decide(held.id, approver("kim"), "approve"), (e: { code?: string; message: string }) => {
			assert.equal(e.code, "self-approval", e.message);
			assert.match(e.message, /shared credential/);
			return true;
		});
		await assert.rejects(approvals.decide(held.id, approver("lee"), "deny"), /self-approval|requested/);
		assert.equal((await approvals.get(held.id))?.phase, "Pending", "no subject's decision counted");
		// An approver who is not a subject of the grant decides.
		await approvals.decide(held.id, approver("sam"), "approve");
		assert.equal((await result).rowCount, 1);

		// The field survives the ApprovalRequest resource (a structural CRD prunes what its schema lacks).
		const back = objectToRecord(recordToObject(held, "drawbridge-system"));
		assert.deepEqual(back?.requester.sharedBy, SUBJECTS);
	} finally {
		await c.end().catch(() => {});
	}
});

test("issue approval-shared-credential: a request made with a personal token is still decided by another subject", async () => {
	const seen = new Set<string>((await approvals.list()).map((r) => r.id));
	const c = await client(await fx.token("lee"));
	try {
		const result = c.query("DELETE FROM shared_cred_jobs WHERE id = 2");
		result.catch(() => {});
		const held = await pending(seen);
		assert.equal(held.requester.sharedBy, undefined);
		await approvals.decide(held.id, approver("kim"), "approve");
		assert.equal((await result).rowCount, 1);
	} finally {
		await c.end().catch(() => {});
	}
});
