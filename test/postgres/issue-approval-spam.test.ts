/**
 * Red-team round (approvals): a denied agent retrying in a loop, or holding statements in many
 * sessions at once, paged approvers once per attempt: nothing limited how often one requester may
 * ask. Real PostgreSQL through the gateway, the approvals component's real service and store.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import type { NoticeMessage } from "pg-protocol/dist/messages.js";
import { findReusable } from "../../gateway/approvals/decision.ts";
import type { StoreApprovalService } from "../../gateway/approvals/service.ts";
import { APPROVER_SAM, type Fixture, startFixture, localApprovals } from "./fixture.ts";

let fx: Fixture;
let approvals: StoreApprovalService;
const sam = APPROVER_SAM;

before(async () => {
	approvals = localApprovals();
	fx = await startFixture({
		approvals,
		guardrails: [
			{
				name: "approve-deletes",
				action: "requireApproval",
				sql: { statementKinds: ["DELETE"] },
				approval: { approvers: [{ kind: "Group", name: "dba" }], minApprovals: 1, timeoutSeconds: 20 },
			},
		],
	});
	await fx.pg.query("create table if not exists stickets (id int primary key)");
});
after(async () => {
	await fx?.stop();
	await approvals?.close();
});

test("a denied command retried at once is refused without paging approvers again", async () => {
	const c = await fx.connect("alice");
	try {
		const held = new Promise<string>((resolve) => c.once("notice", (n: NoticeMessage) => resolve(n.message ?? "")));
		const q = c.query("delete from stickets");
		const id = /approval (\S+) pending/.exec(await held)?.[1];
		assert.ok(id);
		await approvals.decide(id, sam, "deny");
		await assert.rejects(q, (e: pg.DatabaseError) => e.code === "42501");
		const before = (await approvals.list()).length;
		for (let i = 0; i < 10; i++) {
			await assert.rejects(c.query("delete from stickets"), (e: pg.DatabaseError) => e.code === "42501" && /denied in ar-/.test(e.message));
		}
		assert.equal((await approvals.list()).length, before, "no new requests reached approvers");
	} finally {
		await c.end();
	}
});

test("one agent holding statements in many sessions at once gets at most 5 requests pending", async () => {
	const clients = await Promise.all(Array.from({ length: 8 }, () => fx.connect("alice")));
	try {
		const settled: string[] = [];
		const outcomes = clients.map((c, i) =>
			c.query(`delete from stickets where id = ${i}`).then(
				() => "ran",
				(e: pg.DatabaseError) => {
					settled.push(e.message);
					return e.message;
				},
			),
		);
		const deadline = Date.now() + 15_000;
		while (Date.now() < deadline && settled.length < 3) await new Promise((r) => setTimeout(r, 50));
		const pending = await approvals.list({ phase: "Pending" });
		assert.equal(pending.length, 5);
		assert.equal(settled.filter((m) => /5 approval requests pending/.test(m)).length, 3, settled.join("\n"));
		for (const p of pending) await approvals.decide(p.id, sam, "deny");
		await Promise.all(outcomes);
	} finally {
		await Promise.all(clients.map((c) => c.end()));
	}
});

test("an approval is not reused once the rule asks for other approvers or more approvals", () => {
	const input = {
		sessionId: "s2",
		protocol: "postgres" as const,
		connection: "shop-prod",
		grant: "team/alice-rw",
		requester: { issuer: "i", subject: "alice", username: "alice", groups: [] },
		command: "delete from t",
		rule: "r",
		approvers: [{ kind: "Group" as const, name: "security" }],
		minApprovals: 2,
		timeoutSeconds: 60,
		reuseWindowSeconds: 600,
	};
	const now = new Date();
	const approved = {
		...input,
		sessionId: "s1",
		approvers: [{ kind: "Group" as const, name: "dba" }],
		minApprovals: 1,
		id: "ar-0000000001",
		phase: "Approved" as const,
		createdAt: new Date(now.getTime() - 60_000).toISOString(),
		expiresAt: new Date(now.getTime() + 60_000).toISOString(),
		decidedAt: new Date(now.getTime() - 30_000).toISOString(),
		decisions: [],
		approveHint: "",
	};
	assert.equal(findReusable([approved], input, now), undefined);
	assert.equal(findReusable([{ ...approved, approvers: input.approvers }], input, now), undefined, "fewer approvals than now required");
	assert.equal(findReusable([{ ...approved, approvers: input.approvers, minApprovals: 2 }], input, now)?.id, approved.id);
});
