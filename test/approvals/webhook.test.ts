/**
 * Outgoing webhooks against a receiver of our own. `FakeSlackReceiver` stands in for Slack (which
 * cannot exist here) and for any customer endpoint: a real HTTP server on port 0 that records raw
 * bodies and headers and verifies signatures exactly as a receiver should.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { test } from "node:test";
import { LocalApprovalStore } from "../../gateway/approvals/local-store.ts";
import { StoreApprovalService } from "../../gateway/approvals/service.ts";
import {
	type ApprovalWebhookPayload,
	signWebhookBody,
	verifyWebhookSignature,
	WebhookNotifier,
} from "../../gateway/approvals/webhook.ts";
import { human, input } from "./fixtures.ts";

const SECRET = "whsec-test-0123456789abcdef";
const sam = human("sam@example.com", ["support-leads"]);

interface Received {
	headers: IncomingMessage["headers"];
	body: string;
}

/** Stand-in for Slack / a customer webhook endpoint. `plan` gives the status per request (then 200). */
class FakeSlackReceiver {
	readonly received: Received[] = [];
	readonly #server: Server;
	#plan: number[];
	#hang = false;
	url = "";

	constructor(plan: number[] = []) {
		this.#plan = [...plan];
		this.#server = createServer((req, res) => this.#handle(req, res));
	}

	hang(): void {
		this.#hang = true;
	}

	async start(): Promise<this> {
		await new Promise<void>((r) => this.#server.listen(0, "127.0.0.1", r));
		this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/hooks/approvals`;
		return this;
	}

	async stop(): Promise<void> {
		this.#server.closeAllConnections();
		await new Promise<void>((r) => this.#server.close(() => r()));
	}

	#handle(req: IncomingMessage, res: ServerResponse): void {
		const chunks: Buffer[] = [];
		req.on("data", (c: Buffer) => chunks.push(c));
		req.on("end", () => {
			this.received.push({ headers: req.headers, body: Buffer.concat(chunks).toString("utf8") });
			if (this.#hang) return;
			const status = this.#plan.shift() ?? 200;
			res.writeHead(status).end(status === 200 ? "ok" : "nope");
		});
	}
}

async function receiver(t: { after: (fn: () => Promise<void>) => void }, plan: number[] = []) {
	const r = await new FakeSlackReceiver(plan).start();
	t.after(() => r.stop());
	return r;
}

test("signed drawbridge payloads for request and decision; receiver verifies them", async (t) => {
	const hook = await receiver(t);
	const notifier = new WebhookNotifier({ targets: [{ name: "ops", url: hook.url, secret: SECRET }], webBaseUrl: "https://gw.example/admin/" });
	const svc = new StoreApprovalService({ store: new LocalApprovalStore(), notifier, sweepIntervalMs: 0 });
	t.after(() => svc.close());
	const r = await svc.request(input());
	await svc.decide(r.id, sam, "approve", "go");
	await notifier.idle();
	assert.equal(hook.received.length, 2);
	const [first, second] = hook.received as [Received, Received];
	for (const got of hook.received) {
		assert.deepEqual(verifyWebhookSignature(SECRET, got.headers["drawbridge-signature"] as string, got.body), { ok: true });
		assert.equal(got.headers["content-type"], "application/json");
	}
	assert.deepEqual(verifyWebhookSignature("wrong-secret", first.headers["drawbridge-signature"] as string, first.body), { ok: false, reason: "mismatch" });
	assert.deepEqual(
		verifyWebhookSignature(SECRET, first.headers["drawbridge-signature"] as string, first.body.replace("tickets", "tickets2")),
		{ ok: false, reason: "mismatch" },
		"a tampered body fails",
	);
	const p1 = JSON.parse(first.body) as ApprovalWebhookPayload;
	assert.equal(p1.apiVersion, "drawbridge.dev/approval-webhook/v1");
	assert.equal(p1.type, "approval.requested");
	assert.equal(first.headers["drawbridge-event"], "approval.requested");
	assert.equal(first.headers["drawbridge-delivery"], p1.deliveryId);
	assert.equal(p1.approval.id, r.id);
	assert.equal(p1.approval.command, input().command);
	assert.equal(p1.approval.requester.serviceAccount?.name, "bot");
	assert.deepEqual(p1.links, {
		show: `https://gw.example/admin/approvals/${r.id}`,
		approve: `https://gw.example/admin/approvals/${r.id}?decision=approve`,
		deny: `https://gw.example/admin/approvals/${r.id}?decision=deny`,
	});
	const p2 = JSON.parse(second.body) as ApprovalWebhookPayload;
	assert.equal(p2.type, "approval.approved");
	assert.equal(p2.approval.approvals, 1);
	assert.equal(p2.approval.decisions[0]?.by, "user:sam@example.com");
	assert.equal(p2.approval.decisions[0]?.comment, "go");
});

test("replayed (stale) and malformed signatures are refused", () => {
	const body = '{"x":1}';
	const now = 1_800_000_000;
	const header = signWebhookBody(SECRET, body, now);
	assert.deepEqual(verifyWebhookSignature(SECRET, header, body, { nowSec: now + 299 }), { ok: true });
	assert.deepEqual(verifyWebhookSignature(SECRET, header, body, { nowSec: now + 301 }), { ok: false, reason: "stale" });
	assert.deepEqual(verifyWebhookSignature(SECRET, header, body, { nowSec: now - 301 }), { ok: false, reason: "stale" });
	assert.deepEqual(verifyWebhookSignature(SECRET, undefined, body), { ok: false, reason: "malformed" });
	assert.deepEqual(verifyWebhookSignature(SECRET, "t=abc,v1=00", body), { ok: false, reason: "malformed" });
	const rotated = `${header},v1=${"0".repeat(64)}`;
	assert.deepEqual(verifyWebhookSignature(SECRET, rotated, body, { nowSec: now }), { ok: true }, "any v1 may match");
});

test("retries with backoff on 5xx, gives up at once on 4xx", async (t) => {
	const flaky = await receiver(t, [503, 500]);
	const gone = await receiver(t, [404]);
	const errors: string[] = [];
	const notifier = new WebhookNotifier({
		targets: [
			{ name: "flaky", url: flaky.url, secret: SECRET },
			{ name: "gone", url: gone.url, secret: SECRET },
		],
		initialBackoffMs: 20,
		onError: (m) => errors.push(m),
	});
	const svc = new StoreApprovalService({ store: new LocalApprovalStore(), notifier, sweepIntervalMs: 0 });
	t.after(() => svc.close());
	await svc.request(input());
	await notifier.idle();
	assert.equal(flaky.received.length, 3, "two failures then success");
	const ids = new Set(flaky.received.map((r) => r.headers["drawbridge-delivery"]));
	assert.equal(ids.size, 1, "retries keep the delivery id");
	for (const got of flaky.received) {
		assert.deepEqual(verifyWebhookSignature(SECRET, got.headers["drawbridge-signature"] as string, got.body), { ok: true });
	}
	assert.equal(gone.received.length, 1);
	assert.deepEqual(notifier.stats, { delivered: 1, failed: 1, retried: 2, dropped: 0 });
	assert.equal(errors.length, 1);
	assert.match(errors[0]!, /gone: approval.requested delivery .* failed after 1 attempt\(s\): HTTP 404/);
	assert.ok(!errors[0]!.includes(SECRET));
});

test("a hanging webhook never blocks the decision path", async (t) => {
	const slow = await receiver(t);
	slow.hang();
	const notifier = new WebhookNotifier({ targets: [{ name: "slow", url: slow.url, secret: SECRET }], timeoutMs: 1500, maxAttempts: 1 });
	t.after(() => notifier.close());
	const svc = new StoreApprovalService({ store: new LocalApprovalStore(), notifier, sweepIntervalMs: 0 });
	t.after(() => svc.close());
	const started = Date.now();
	const r = await svc.request(input());
	const waiting = svc.waitForDecision(r.id, new AbortController().signal);
	await svc.decide(r.id, sam, "approve");
	assert.equal((await waiting).phase, "Approved");
	assert.ok(Date.now() - started < 1000, `decided in ${Date.now() - started} ms while the webhook hangs`);
	await notifier.idle();
	assert.equal(notifier.stats.failed, 2, "both deliveries timed out");
});

test("Slack-compatible message: blocks with approve/deny links while pending", async (t) => {
	const slack = await receiver(t);
	const notifier = new WebhookNotifier({
		targets: [{ name: "slack", url: slack.url, secret: SECRET, format: "slack" }],
		webBaseUrl: "https://gw.example",
	});
	const svc = new StoreApprovalService({ store: new LocalApprovalStore(), notifier, sweepIntervalMs: 0 });
	t.after(() => svc.close());
	const r = await svc.request(input({ command: "DELETE FROM t WHERE a < 1 AND b > 2 & c" }));
	await svc.decide(r.id, sam, "deny", "not during <freeze>");
	await notifier.idle();
	const [requested, denied] = slack.received.map((x) => JSON.parse(x.body) as { text: string; blocks: { type: string; elements?: { url?: string; text?: { text: string } }[]; text?: { text: string } }[] });
	assert.ok(requested && denied);
	assert.match(requested.text, new RegExp(`Approval requested: ${r.id}`));
	const actions = requested.blocks.find((b) => b.type === "actions");
	assert.deepEqual(
		actions?.elements?.map((e) => [e.text?.text, e.url]),
		[
			["Approve", `https://gw.example/approvals/${r.id}?decision=approve`],
			["Deny", `https://gw.example/approvals/${r.id}?decision=deny`],
			["Details", `https://gw.example/approvals/${r.id}`],
		],
	);
	assert.ok(requested.blocks.some((b) => b.text?.text.includes("a &lt; 1 AND b &gt; 2 &amp; c")), "mrkdwn escaped");
	assert.equal(denied.blocks.find((b) => b.type === "actions"), undefined, "no buttons once decided");
	assert.ok(denied.blocks.some((b) => b.text?.text.includes("not during &lt;freeze&gt;")));
	for (const got of slack.received) {
		assert.deepEqual(verifyWebhookSignature(SECRET, got.headers["drawbridge-signature"] as string, got.body), { ok: true });
	}
});
