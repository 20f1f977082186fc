/**
 * Outgoing approval webhooks. `notify()` only enqueues (the decision path never waits on a webhook);
 * a small worker pool delivers with exponential backoff. Every delivery is signed:
 *
 *   Drawbridge-Signature: t=<unix seconds>,v1=<hex HMAC-SHA-256(secret, "<t>.<raw body>")>
 *
 * Receivers recompute the HMAC over the exact bytes received, compare in constant time and refuse
 * timestamps outside a tolerance (replay protection); `verifyWebhookSignature` does exactly that.
 * Payloads and the Slack-compatible format are documented in docs/approvals.md.
 */
import { createHmac, randomUUID, timingSafeEqual } from "node:crypto";
import type { ApprovalEvent, ApprovalEventType, ApprovalNotifier } from "./service.ts";
import type { SubjectMatcher } from "../config/bundle.ts";
import type { ApprovalRequestRecord } from "./types.ts";
import { countApprovals, describeRequester } from "./decision.ts";
import { visibleText } from "./visible.ts";

export const WEBHOOK_API_VERSION = "drawbridge.dev/approval-webhook/v1" as const;
export const SIGNATURE_HEADER = "drawbridge-signature";
export const EVENT_HEADER = "drawbridge-event";
export const DELIVERY_HEADER = "drawbridge-delivery";

export interface WebhookTarget {
	/** For logs and metrics. */
	name: string;
	url: string;
	/** HMAC key (at least 16 bytes recommended); never logged. */
	secret: string;
	/** `drawbridge` (default): the JSON payload below; `slack`: Slack incoming-webhook blocks. */
	format?: "drawbridge" | "slack";
	/** Only these event types (default: all). */
	events?: ApprovalEventType[];
}

export interface WebhookNotifierOptions {
	targets: WebhookTarget[];
	/** Base URL of the admin server's web pages; approve/deny/show links are built from it. */
	webBaseUrl?: string;
	/** Attempts per delivery, including the first (default 6). */
	maxAttempts?: number;
	/** First retry delay, ms; doubles each attempt with ±20% jitter (default 1000). */
	initialBackoffMs?: number;
	/** Retry delay cap, ms (default 60000). */
	maxBackoffMs?: number;
	/** Per-attempt timeout, ms (default 5000). */
	timeoutMs?: number;
	/** Deliveries held at most (oldest dropped beyond, default 1000). */
	queueLimit?: number;
	/** Parallel deliveries (default 4). */
	concurrency?: number;
	/** Failures and drops are reported here (never the secret). */
	onError?: (message: string) => void;
}

/** The JSON body of a `drawbridge`-format delivery. */
export interface ApprovalWebhookPayload {
	apiVersion: typeof WEBHOOK_API_VERSION;
	type: ApprovalEventType;
	deliveryId: string;
	sentAt: string;
	approval: {
		id: string;
		phase: ApprovalRequestRecord["phase"];
		protocol: ApprovalRequestRecord["protocol"];
		connection: string;
		grant: string;
		rule: string;
		command: string;
		sessionId: string;
		requester: {
			username: string;
			issuer: string;
			subject: string;
			serviceAccount?: { namespace: string; name: string };
			/** Set when the request was made with a grant's shared credential: the grant's subjects, any of whom may have sent it. */
			sharedBy?: SubjectMatcher[];
		};
		approvers: ApprovalRequestRecord["approvers"];
		minApprovals: number;
		approvals: number;
		decisions: { decision: "approve" | "deny"; by: string; at: string; comment?: string }[];
		createdAt: string;
		expiresAt: string;
		decidedAt?: string;
		reason?: string;
		approveHint: string;
	};
	links?: { show: string; approve: string; deny: string };
}

interface Job {
	target: WebhookTarget;
	type: ApprovalEventType;
	deliveryId: string;
	body: string;
	attempt: number;
}

const EVENT_TYPES: readonly ApprovalEventType[] = [
	"approval.requested",
	"approval.decision",
	"approval.approved",
	"approval.denied",
	"approval.expired",
	"approval.cancelled",
];

/**
 * Validate webhook targets from configuration (e.g. a JSON/YAML file read by gateway/main.ts, which
 * resolves secrets from files before calling this). Throws TypeError naming the bad entry.
 */
export function parseWebhookTargets(value: unknown): WebhookTarget[] {
	if (value === undefined || value === null) return [];
	if (!Array.isArray(value)) throw new TypeError("webhooks: expected a list");
	return value.map((raw, i) => {
		const t = raw as Record<string, unknown>;
		const where = `webhooks[${i}]`;
		if (typeof t !== "object" || t === null) throw new TypeError(`${where}: expected an object`);
		if (typeof t.name !== "string" || !t.name) throw new TypeError(`${where}.name: required`);
		if (typeof t.url !== "string" || !/^https?:\/\/[^\s]+$/.test(t.url)) throw new TypeError(`${where}.url: an http(s) URL is required`);
		if (typeof t.secret !== "string" || t.secret.length < 16) throw new TypeError(`${where}.secret: at least 16 characters required`);
		if (t.format !== undefined && t.format !== "drawbridge" && t.format !== "slack") throw new TypeError(`${where}.format: drawbridge or slack`);
		if (t.events !== undefined && (!Array.isArray(t.events) || !t.events.every((e) => EVENT_TYPES.includes(e as ApprovalEventType)))) {
			throw new TypeError(`${where}.events: a list of ${EVENT_TYPES.join(", ")}`);
		}
		return Object.freeze({
			name: t.name,
			url: t.url,
			secret: t.secret,
			...(t.format ? { format: t.format as "drawbridge" | "slack" } : {}),
			...(t.events ? { events: [...(t.events as ApprovalEventType[])] } : {}),
		});
	});
}

export function signWebhookBody(secret: string, body: string, timestampSec: number): string {
	const mac = createHmac("sha256", secret).update(`${timestampSec}.${body}`).digest("hex");
	return `t=${timestampSec},v1=${mac}`;
}

export type SignatureCheck = { ok: true } | { ok: false; reason: "malformed" | "stale" | "mismatch" };

/**
 * Verify a `Drawbridge-Signature` header over the raw body. Accepts several `v1=` values (secret
 * rotation) and refuses timestamps more than `toleranceSec` (default 300) away from `nowSec`.
 */
export function verifyWebhookSignature(
	secret: string,
	header: string | undefined,
	rawBody: string | Buffer,
	options: { toleranceSec?: number; nowSec?: number } = {},
): SignatureCheck {
	if (!header) return { ok: false, reason: "malformed" };
	let t: number | undefined;
	const sigs: string[] = [];
	for (const part of header.split(",")) {
		const [k, v] = part.trim().split("=", 2);
		if (k === "t" && v && /^\d{1,12}$/.test(v)) t = Number(v);
		else if (k === "v1" && v && /^[0-9a-f]{64}$/.test(v)) sigs.push(v);
	}
	if (t === undefined || sigs.length === 0) return { ok: false, reason: "malformed" };
	const now = options.nowSec ?? Math.floor(Date.now() / 1000);
	if (Math.abs(now - t) > (options.toleranceSec ?? 300)) return { ok: false, reason: "stale" };
	const body = typeof rawBody === "string" ? rawBody : rawBody.toString("utf8");
	const expected = createHmac("sha256", secret).update(`${t}.${body}`).digest();
	for (const s of sigs) {
		if (timingSafeEqual(expected, Buffer.from(s, "hex"))) return { ok: true };
	}
	return { ok: false, reason: "mismatch" };
}

export function approvalLinks(webBaseUrl: string, id: string): { show: string; approve: string; deny: string } {
	const show = `${webBaseUrl.replace(/\/+$/, "")}/approvals/${encodeURIComponent(id)}`;
	return { show, approve: `${show}?decision=approve`, deny: `${show}?decision=deny` };
}

export function buildPayload(event: ApprovalEvent, deliveryId: string, sentAt: Date, webBaseUrl?: string): ApprovalWebhookPayload {
	const r = event.record;
	const payload: ApprovalWebhookPayload = {
		apiVersion: WEBHOOK_API_VERSION,
		type: event.type,
		deliveryId,
		sentAt: sentAt.toISOString(),
		approval: {
			id: r.id,
			phase: r.phase,
			protocol: r.protocol,
			connection: r.connection,
			grant: r.grant,
			rule: r.rule,
			command: r.command,
			sessionId: r.sessionId,
			requester: {
				username: r.requester.username,
				issuer: r.requester.issuer,
				subject: r.requester.subject,
				...(r.requester.serviceAccount ? { serviceAccount: { ...r.requester.serviceAccount } } : {}),
				...(r.requester.sharedBy ? { sharedBy: r.requester.sharedBy.map((m) => ({ ...m })) } : {}),
			},
			approvers: r.approvers,
			minApprovals: r.minApprovals,
			approvals: countApprovals(r.decisions),
			decisions: r.decisions.map((d) => ({ decision: d.decision, by: d.by, at: d.at, ...(d.comment ? { comment: d.comment } : {}) })),
			createdAt: r.createdAt,
			expiresAt: r.expiresAt,
			...(r.decidedAt ? { decidedAt: r.decidedAt } : {}),
			...(r.reason ? { reason: r.reason } : {}),
			approveHint: r.approveHint,
		},
	};
	if (webBaseUrl) payload.links = approvalLinks(webBaseUrl, r.id);
	return payload;
}

function slackEscape(s: string): string {
	return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}

function describeApprovers(r: ApprovalRequestRecord): string {
	return r.approvers
		.map((a) => (a.kind === "ServiceAccount" ? `serviceaccount:${a.namespace}/${a.name}` : a.kind === "Claims" ? `claims@${a.issuer}` : `${a.kind.toLowerCase()}:${a.name}`))
		.join(", ");
}

const SLACK_TITLE: Record<ApprovalEventType, string> = {
	"approval.requested": "Approval requested",
	"approval.decision": "Approval vote recorded",
	"approval.approved": "Approved",
	"approval.denied": "Denied",
	"approval.expired": "Expired",
	"approval.cancelled": "Cancelled (client disconnected)",
};

/** Characters of the command shown in a Slack message (a section's text is limited to 3000). */
export const SLACK_COMMAND_CHARS = 2500;

/** A Slack incoming-webhook message (Block Kit): summary, the masked command, approve/deny buttons. */
export function buildSlackMessage(event: ApprovalEvent, webBaseUrl?: string): Record<string, unknown> {
	const r = event.record;
	const title = `${SLACK_TITLE[event.type]}: ${r.id}`;
	const who = visibleText(describeRequester(r));
	// The agent's own text: bidi overrides, `\r` and invisible characters are shown as escapes, so the
	// code block cannot read as another command; a command too long for one block says so in words.
	const whole = visibleText(r.command);
	const cut = whole.length > SLACK_COMMAND_CHARS;
	const command = cut ? whole.slice(0, SLACK_COMMAND_CHARS) : whole;
	const text = `${title} — ${who} on ${r.connection} (${r.protocol}), rule ${r.rule}${cut ? " (command too long for this message: read it whole before deciding)" : ""}`;
	const blocks: Record<string, unknown>[] = [
		{ type: "header", text: { type: "plain_text", text: title.slice(0, 150) } },
		{
			type: "section",
			fields: [
				{ type: "mrkdwn", text: `*Requester*\n${slackEscape(who)}` },
				{ type: "mrkdwn", text: `*Connection*\n${slackEscape(r.connection)} (${r.protocol})` },
				{ type: "mrkdwn", text: `*Grant*\n${slackEscape(r.grant)}` },
				{ type: "mrkdwn", text: `*Rule*\n${slackEscape(r.rule)}` },
				{ type: "mrkdwn", text: `*Approvals*\n${countApprovals(r.decisions)} of ${r.minApprovals}` },
				{ type: "mrkdwn", text: `*Approvers*\n${slackEscape(describeApprovers(r))}` },
			],
		},
		{ type: "section", text: { type: "mrkdwn", text: "```" + slackEscape(command.replace(/```/g, "'''")) + "```" } },
	];
	if (cut) {
		blocks.push({
			type: "section",
			text: {
				type: "mrkdwn",
				text: `:warning: *Only the first ${SLACK_COMMAND_CHARS} of ${whole.length} characters of the command are shown above; what follows is not.* Read the whole command on the approval page (Details) or with \`drawbridge approvals show ${r.id}\` before deciding.`,
			},
		});
	}
	if (r.decisions.length > 0) {
		const lines = r.decisions.map((d) => `${d.decision === "approve" ? "✅" : "⛔"} ${slackEscape(visibleText(d.by))} at ${d.at}${d.comment ? `: ${slackEscape(visibleText(d.comment))}` : ""}`);
		blocks.push({ type: "section", text: { type: "mrkdwn", text: lines.join("\n").slice(0, 2900) } });
	}
	if (r.phase === "Pending" && webBaseUrl) {
		const links = approvalLinks(webBaseUrl, r.id);
		blocks.push({
			type: "actions",
			elements: [
				{ type: "button", text: { type: "plain_text", text: "Approve" }, style: "primary", url: links.approve, action_id: "approve" },
				{ type: "button", text: { type: "plain_text", text: "Deny" }, style: "danger", url: links.deny, action_id: "deny" },
				{ type: "button", text: { type: "plain_text", text: "Details" }, url: links.show, action_id: "show" },
			],
		});
	}
	blocks.push({
		type: "context",
		elements: [{ type: "mrkdwn", text: slackEscape(`${r.phase} · expires ${r.expiresAt} · ${r.approveHint}`) }],
	});
	return { text, blocks };
}

export class WebhookNotifier implements ApprovalNotifier {
	readonly #targets: WebhookTarget[];
	readonly #webBaseUrl: string | undefined;
	readonly #maxAttempts: number;
	readonly #initialBackoffMs: number;
	readonly #maxBackoffMs: number;
	readonly #timeoutMs: number;
	readonly #queueLimit: number;
	readonly #concurrency: number;
	readonly #onError: (message: string) => void;
	readonly #queue: Job[] = [];
	readonly #timers = new Set<NodeJS.Timeout>();
	readonly #idleWaiters: (() => void)[] = [];
	#inFlight = 0;
	#closed = false;
	/** Counters for metrics and tests. */
	readonly stats = { delivered: 0, failed: 0, retried: 0, dropped: 0 };

	constructor(options: WebhookNotifierOptions) {
		for (const t of options.targets) {
			if (!/^https?:\/\//.test(t.url)) throw new TypeError(`webhook ${t.name}: url must be http(s)`);
			if (!t.secret) throw new TypeError(`webhook ${t.name}: a signing secret is required`);
		}
		this.#targets = options.targets.map((t) => Object.freeze({ ...t }));
		this.#webBaseUrl = options.webBaseUrl;
		this.#maxAttempts = options.maxAttempts ?? 6;
		this.#initialBackoffMs = options.initialBackoffMs ?? 1000;
		this.#maxBackoffMs = options.maxBackoffMs ?? 60_000;
		this.#timeoutMs = options.timeoutMs ?? 5000;
		this.#queueLimit = options.queueLimit ?? 1000;
		this.#concurrency = options.concurrency ?? 4;
		this.#onError = options.onError ?? (() => {});
	}

	notify(event: ApprovalEvent): void {
		if (this.#closed) return;
		const sentAt = new Date();
		for (const target of this.#targets) {
			if (target.events && !target.events.includes(event.type)) continue;
			const deliveryId = randomUUID();
			const body =
				target.format === "slack"
					? JSON.stringify(buildSlackMessage(event, this.#webBaseUrl))
					: JSON.stringify(buildPayload(event, deliveryId, sentAt, this.#webBaseUrl));
			this.#enqueue({ target, type: event.type, deliveryId, body, attempt: 0 });
		}
		this.#pump();
	}

	/** Resolves when nothing is queued, in flight or waiting for a retry (tests, graceful shutdown). */
	idle(): Promise<void> {
		if (this.#isIdle()) return Promise.resolve();
		return new Promise((resolve) => this.#idleWaiters.push(resolve));
	}

	/** Stop: pending retries are abandoned. */
	close(): void {
		this.#closed = true;
		for (const t of this.#timers) clearTimeout(t);
		this.#timers.clear();
		this.#queue.length = 0;
		this.#checkIdle();
	}

	#enqueue(job: Job): void {
		this.#queue.push(job);
		while (this.#queue.length > this.#queueLimit) {
			const dropped = this.#queue.shift()!;
			this.stats.dropped++;
			this.#onError(`webhook ${dropped.target.name}: queue full, dropped ${dropped.type} delivery ${dropped.deliveryId}`);
		}
	}

	#isIdle(): boolean {
		return this.#queue.length === 0 && this.#inFlight === 0 && this.#timers.size === 0;
	}

	#checkIdle(): void {
		if (!this.#isIdle()) return;
		for (const w of this.#idleWaiters.splice(0)) w();
	}

	#pump(): void {
		while (!this.#closed && this.#inFlight < this.#concurrency && this.#queue.length > 0) {
			const job = this.#queue.shift()!;
			this.#inFlight++;
			void this.#deliver(job).finally(() => {
				this.#inFlight--;
				this.#pump();
				this.#checkIdle();
			});
		}
	}

	async #deliver(job: Job): Promise<void> {
		job.attempt++;
		let retryable = true;
		let problem: string;
		try {
			const res = await fetch(job.target.url, {
				method: "POST",
				headers: {
					"content-type": "application/json",
					"user-agent": "drawbridge-approvals/1",
					[SIGNATURE_HEADER]: signWebhookBody(job.target.secret, job.body, Math.floor(Date.now() / 1000)),
					[EVENT_HEADER]: job.type,
					[DELIVERY_HEADER]: job.deliveryId,
				},
				body: job.body,
				signal: AbortSignal.timeout(this.#timeoutMs),
				redirect: "error",
			});
			await res.body?.cancel().catch(() => {});
			if (res.ok) {
				this.stats.delivered++;
				return;
			}
			problem = `HTTP ${res.status}`;
			retryable = res.status >= 500 || res.status === 408 || res.status === 429;
		} catch (err) {
			problem = (err as Error).name === "TimeoutError" ? "timed out" : (err as Error).message;
		}
		if (!retryable || job.attempt >= this.#maxAttempts || this.#closed) {
			this.stats.failed++;
			this.#onError(`webhook ${job.target.name}: ${job.type} delivery ${job.deliveryId} failed after ${job.attempt} attempt(s): ${problem}`);
			return;
		}
		this.stats.retried++;
		const base = Math.min(this.#maxBackoffMs, this.#initialBackoffMs * 2 ** (job.attempt - 1));
		const delay = Math.round(base * (0.8 + Math.random() * 0.4));
		const timer = setTimeout(() => {
			this.#timers.delete(timer);
			this.#enqueue(job);
			this.#pump();
			this.#checkIdle();
		}, delay);
		timer.unref();
		this.#timers.add(timer);
	}
}
