/** Just-in-time approval of a held statement, with the approvals component's real service (local store). */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import type { NoticeMessage } from "pg-protocol/dist/messages.js";
import type { StoreApprovalService } from "../../gateway/approvals/service.ts";
import type { ApprovalRequestInput, ApprovalRequestRecord, ApprovalService } from "../../gateway/approvals/types.ts";
import { APPROVER_SAM, type Fixture, startFixture, localApprovals } from "./fixture.ts";

let fx: Fixture;
let approvals: StoreApprovalService;

/**
 * The real service, whose `request` can be held after the store has created the request, as a slow
 * store round trip holds it: `holdNext` returns the created id and a function that lets `request` return.
 */
class SlowToReturn implements ApprovalService {
	#next?: { created: (id: string) => void; released: Promise<void> };
	constructor(private readonly inner: ApprovalService) {}
	holdNext(): { created: Promise<string>; release: () => void } {
		let release!: () => void;
		const released = new Promise<void>((r) => {
			release = r;
		});
		const created = new Promise<string>((resolve) => {
			this.#next = { created: resolve, released };
		});
		return { created, release };
	}
	async request(input: ApprovalRequestInput): Promise<ApprovalRequestRecord> {
		const record = await this.inner.request(input);
		const next = this.#next;
		this.#next = undefined;
		if (next) {
			next.created(record.id);
			await next.released;
		}
		return record;
	}
	waitForDecision(id: string, signal: AbortSignal) {
		return this.inner.waitForDecision(id, signal);
	}
	get(id: string) {
		return this.inner.get(id);
	}
	list(filter?: Parameters<ApprovalService["list"]>[0]) {
		return this.inner.list(filter);
	}
	decide(...args: Parameters<ApprovalService["decide"]>) {
		return this.inner.decide(...args);
	}
}
let slow: SlowToReturn;
const sam = APPROVER_SAM;

before(async () => {
	approvals = localApprovals();
	slow = new SlowToReturn(approvals);
	fx = await startFixture({
		approvals: slow,
		guardrails: [
			{
				name: "approve-deletes",
				action: "requireApproval",
				sql: { statementKinds: ["DELETE"] },
				approval: { approvers: [{ kind: "Group", name: "dba" }], minApprovals: 1, timeoutSeconds: 20 },
			},
		],
	});
	await fx.pg.query("create table if not exists tickets (id int primary key, old boolean)");
	await fx.pg.query("insert into tickets select g, g % 2 = 0 from generate_series(1, 10) g on conflict do nothing");
});
after(async () => {
	await fx?.stop();
	await approvals?.close();
});

function pendingId(c: pg.Client): Promise<{ id: string; notice: NoticeMessage }> {
	return new Promise((resolve) => {
		c.once("notice", (n: NoticeMessage) => {
			const id = /approval (\S+) pending/.exec(n.message ?? "")?.[1] ?? "";
			resolve({ id, notice: n });
		});
	});
}

test("held DELETE runs once approved; the client gets a NOTICE naming the approval and approvers", async () => {
	const c = await fx.connect("alice");
	try {
		const noticed = pendingId(c);
		const q = c.query("delete from tickets where old");
		const { id, notice } = await noticed;
		assert.ok(id);
		assert.match(notice.detail ?? "", /group:dba/);
		assert.ok(notice.hint, "hint says where to approve");
		await approvals.decide(id, sam, "approve");
		const r = await q;
		assert.equal(r.rowCount, 5);
		const rec = fx.recorder.statements().find((e) => e.approvalId === id);
		assert.equal(rec?.decision, "approved");
	} finally {
		await c.end();
	}
});

test("denied: the statement fails with 42501 and the connection stays usable (extended protocol)", async () => {
	const c = await fx.connect("alice");
	try {
		const noticed = pendingId(c);
		const q = c.query("delete from tickets where id = $1", [1]);
		const { id } = await noticed;
		await approvals.decide(id, sam, "deny");
		await assert.rejects(q, (e: pg.DatabaseError) => e.code === "42501" && /denied/.test(e.message));
		assert.equal((await c.query("select count(*)::int as n from tickets where id = 1")).rows[0].n, 1);
	} finally {
		await c.end();
	}
});

test("client disconnect cancels the pending approval", async () => {
	const c = await fx.connect("alice");
	c.on("error", () => undefined);
	const noticed = pendingId(c);
	c.query("delete from tickets").catch(() => undefined);
	const { id } = await noticed;
	(c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
	const deadline = Date.now() + 5000;
	let phase = "";
	while (Date.now() < deadline) {
		phase = (await approvals.get(id))?.phase ?? "";
		if (phase !== "Pending") break;
		await new Promise((r) => setTimeout(r, 100));
	}
	assert.equal(phase, "Cancelled");
	assert.equal((await fx.pg.query("select count(*)::int as n from tickets")).rows[0]?.n, 5);
});

test("client disconnect while the request is still being created cancels it (the session closed before the wait began)", async () => {
	const hold = slow.holdNext();
	const c = await fx.connect("alice");
	c.on("error", () => undefined);
	c.query("delete from tickets").catch(() => undefined);
	const id = await hold.created;
	const sessionsBefore = fx.recorder.sessions.length;
	const session = fx.recorder.sessions[sessionsBefore - 1];
	(c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
	for (let i = 0; i < 100 && !session?.end; i++) await new Promise((r) => setTimeout(r, 50));
	assert.ok(session?.end, "the gateway closed the session while the request was being created");
	hold.release();
	const deadline = Date.now() + 5000;
	let phase = "";
	while (Date.now() < deadline) {
		phase = (await approvals.get(id))?.phase ?? "";
		if (phase !== "Pending") break;
		await new Promise((r) => setTimeout(r, 100));
	}
	assert.equal(phase, "Cancelled");
	assert.equal((await fx.pg.query("select count(*)::int as n from tickets")).rows[0]?.n, 5);
});
