/**
 * The shared service over the standalone store: two service instances ("replicas") over one
 * directory see the same request; the waiting one resolves when the other decides; concurrent
 * decisions are never lost; expiry and client disconnect end a wait.
 */
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { ApprovalError } from "../../gateway/approvals/errors.ts";
import { LocalApprovalStore } from "../../gateway/approvals/local-store.ts";
import { type ApprovalEvent, StoreApprovalService } from "../../gateway/approvals/service.ts";
import { bot, human, input } from "./fixtures.ts";

const sam = human("sam@example.com", ["support-leads"]);
const kim = human("kim@example.com", ["support-leads"]);

async function pair(t: { after: (fn: () => Promise<void>) => void }) {
	const dir = await mkdtemp(join(tmpdir(), "approvals-"));
	const events: ApprovalEvent[] = [];
	const notifier = { notify: (e: ApprovalEvent) => void events.push(e) };
	const a = new StoreApprovalService({ store: new LocalApprovalStore({ directory: dir }), notifier, waitPollIntervalMs: 200 });
	const b = new StoreApprovalService({ store: new LocalApprovalStore({ directory: dir }), notifier, waitPollIntervalMs: 200 });
	t.after(async () => {
		await a.close();
		await b.close();
		// close() waits for writes in flight (tested below); the retries only cover a slow file system.
		await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
	});
	return { a, b, dir, events };
}

test("replica B decides what replica A waits for", async (t) => {
	const { a, b, events } = await pair(t);
	const created = await a.request(input());
	assert.match(created.id, /^ar-[0-9a-f]{10}$/);
	assert.equal(created.approveHint, `drawbridge approvals approve ${created.id}`);
	const seen = await b.get(created.id);
	assert.equal(seen?.phase, "Pending");
	assert.deepEqual((await b.list({ phase: "Pending" })).map((r) => r.id), [created.id]);

	const waiting = a.waitForDecision(created.id, new AbortController().signal);
	const decided = await b.decide(created.id, sam, "approve", "ok");
	assert.equal(decided.phase, "Approved");
	const result = await waiting;
	assert.equal(result.phase, "Approved");
	assert.equal(result.decisions[0]?.by, "user:sam@example.com");
	assert.deepEqual(
		events.map((e) => e.type),
		["approval.requested", "approval.approved"],
	);
});

test("self-approval through another replica is refused and leaves the request Pending", async (t) => {
	const { a, b } = await pair(t);
	const r = await a.request(input({ approvers: [{ kind: "ServiceAccount", namespace: "support", name: "bot" }] }));
	await assert.rejects(b.decide(r.id, bot, "approve"), (e: unknown) => e instanceof ApprovalError && e.code === "self-approval");
	assert.equal((await a.get(r.id))?.phase, "Pending");
});

test("two approvers at once on two replicas: both decisions recorded", async (t) => {
	const { a, b } = await pair(t);
	const r = await a.request(input({ minApprovals: 2 }));
	const [x, y] = await Promise.all([a.decide(r.id, sam, "approve"), b.decide(r.id, kim, "approve")]);
	const final = await a.get(r.id);
	assert.equal(final?.phase, "Approved");
	assert.deepEqual(final?.decisions.map((d) => d.by).sort(), ["user:kim@example.com", "user:sam@example.com"]);
	assert.deepEqual([x.phase, y.phase].sort(), ["Approved", "Pending"]);
});

test("a wait ends with Expired at expiry; late approval gets `expired`", async (t) => {
	const { a, b, events } = await pair(t);
	const r = await a.request(input({ timeoutSeconds: 0.4 }));
	const result = await a.waitForDecision(r.id, new AbortController().signal);
	assert.equal(result.phase, "Expired");
	await assert.rejects(b.decide(r.id, sam, "approve"), (e: unknown) => e instanceof ApprovalError && e.code === "expired");
	assert.equal(events.filter((e) => e.type === "approval.expired").length, 1, "expiry announced once");
});

test("a disconnecting client cancels its request", async (t) => {
	const { a, b } = await pair(t);
	const r = await a.request(input());
	const ac = new AbortController();
	const waiting = a.waitForDecision(r.id, ac.signal);
	ac.abort();
	const result = await waiting;
	assert.equal(result.phase, "Cancelled");
	assert.equal((await b.get(r.id))?.phase, "Cancelled");
	await assert.rejects(b.decide(r.id, sam, "approve"), (e: unknown) => e instanceof ApprovalError && e.code === "already-decided");
});

test("a disconnecting client's cancel is retried when the store fails to write it", async () => {
	/** A real LocalApprovalStore whose first two updates fail, as a Kubernetes store does on a timeout. */
	class FlakyUpdates extends LocalApprovalStore {
		failures = 2;
		override update(...args: Parameters<LocalApprovalStore["update"]>) {
			if (this.failures-- > 0) return Promise.reject(new ApprovalError("unavailable", "store timed out (injected)"));
			return super.update(...args);
		}
	}
	const store = new FlakyUpdates();
	const s = new StoreApprovalService({ store, sweepIntervalMs: 0, waitPollIntervalMs: 60_000 });
	try {
		const r = await s.request(input());
		const ac = new AbortController();
		const waiting = s.waitForDecision(r.id, ac.signal);
		ac.abort();
		assert.equal((await waiting).phase, "Cancelled");
		assert.equal(store.failures, -1, "two failed writes, then the one that landed");
		assert.equal((await s.get(r.id))?.phase, "Cancelled");
	} finally {
		await s.close();
	}
});

test("reuse window: an approved exact statement is reused by the same requester", async (t) => {
	const { a, b } = await pair(t);
	const first = await a.request(input({ reuseWindowSeconds: 600 }));
	await b.decide(first.id, sam, "approve");
	const again = await b.request(input({ reuseWindowSeconds: 600 }));
	assert.equal(again.phase, "Approved");
	assert.equal(again.reusedFrom, first.id);
	const other = await b.request(input({ reuseWindowSeconds: 600, command: "DELETE FROM tickets" }));
	assert.equal(other.phase, "Pending");
});

test("ids that are not ours never reach the file system", async (t) => {
	const { a, dir } = await pair(t);
	assert.equal(await a.get("../../etc/passwd"), undefined);
	await assert.rejects(a.decide("../x", sam, "approve"), (e: unknown) => e instanceof ApprovalError && e.code === "not-found");
	assert.deepEqual(await readdir(dir), []);
});

test("memory-only store behaves the same", async (t) => {
	const s = new StoreApprovalService({ store: new LocalApprovalStore(), sweepIntervalMs: 0 });
	t.after(() => s.close());
	const r = await s.request(input());
	const waiting = s.waitForDecision(r.id, new AbortController().signal);
	await s.decide(r.id, sam, "deny", "not now");
	assert.equal((await waiting).phase, "Denied");
});

test("sweep: marks overdue requests Expired once, deletes decided ones past retention", async (t) => {
	const dir = await mkdtemp(join(tmpdir(), "approvals-sweep-"));
	let now = new Date("2026-03-01T10:00:00.000Z");
	const events: ApprovalEvent[] = [];
	const mk = () =>
		new StoreApprovalService({
			store: new LocalApprovalStore({ directory: dir }),
			notifier: { notify: (e) => void events.push(e) },
			sweepIntervalMs: 0,
			retainDecidedMs: 3600_000,
			now: () => now,
		});
	const a = mk();
	const b = mk();
	t.after(async () => {
		await a.close();
		await b.close();
		// close() waits for writes in flight (tested below); the retries only cover a slow file system.
		await rm(dir, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
	});
	const overdue = await a.request(input({ timeoutSeconds: 60 }));
	const decided = await a.request(input({ timeoutSeconds: 600 }));
	await a.decide(decided.id, sam, "deny");
	now = new Date(now.getTime() + 61_000);
	const [x, y] = await Promise.all([a.sweep(), b.sweep()]);
	assert.equal(x.expired + y.expired, 1, "one replica wins the transition");
	assert.equal((await b.get(overdue.id))?.phase, "Expired");
	assert.equal(events.filter((e) => e.type === "approval.expired").length, 1);
	now = new Date(now.getTime() + 3600_000);
	const swept = await a.sweep();
	assert.deepEqual(swept, { expired: 0, deleted: 2, failed: 0 });
	assert.deepEqual(await a.list(), []);
	assert.deepEqual((await readdir(dir)).filter((f) => f.endsWith(".json")), []);
});

test("close() waits for writes in flight and refuses later ones, so the folder can go at once", async () => {
	const dir = await mkdtemp(join(tmpdir(), "approvals-close-"));
	const store = new LocalApprovalStore({ directory: dir });
	const service = new StoreApprovalService({ store, sweepIntervalMs: 0 });
	const created = await service.request(input());
	// An update in flight when close() is called: close resolves only after it landed.
	let landed = false;
	const inflight = store
		.update(created.id, (r) => {
			return { ...r, reason: "touched before close" };
		})
		.then((x) => {
			landed = true;
			return x;
		});
	await service.close();
	assert.equal(landed, true, "close() returned before the write in flight finished");
	assert.equal((await inflight).changed, true);
	// Later writes are refused with a clear error, and nothing appears in the folder afterwards.
	await assert.rejects(
		store.update(created.id, (r) => r),
		(e: unknown) => e instanceof ApprovalError && e.code === "unavailable" && /closed/.test(e.message),
	);
	await assert.rejects(store.create({ ...(await store.get(created.id))!, id: "ar-0000000001" }), (e: unknown) => e instanceof ApprovalError && e.code === "unavailable");
	await rm(dir, { recursive: true });
	await new Promise((r) => setTimeout(r, 100));
	await assert.rejects(readdir(dir), (e: NodeJS.ErrnoException) => e.code === "ENOENT");
});
