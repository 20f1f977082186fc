/**
 * Push webhooks that trigger an immediate sync. Pure: headers + raw body + shared secret in, verdict out.
 *
 * - GitHub: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256(secret, body)>`, event in `X-GitHub-Event`.
 * - Gitea/Forgejo: `X-Gitea-Signature: <hex HMAC-SHA256(secret, body)>` (also `X-Forgejo-Signature`),
 *   event in `X-Gitea-Event`.
 * Comparison is constant-time. A webhook without a valid signature is refused (401) and never syncs.
 * The body is only parsed after the signature verifies.
 */

import { createHmac, timingSafeEqual } from "node:crypto";

export type WebhookErrorCode = "NO_SECRET" | "MISSING_SIGNATURE" | "BAD_SIGNATURE" | "BAD_BODY";

export class WebhookError extends Error {
	readonly code: WebhookErrorCode;
	/** HTTP status to answer with. */
	readonly status: number;
	constructor(code: WebhookErrorCode, message: string, status: number) {
		super(message);
		this.name = "WebhookError";
		this.code = code;
		this.status = status;
	}
}

export interface WebhookVerdict {
	provider: "github" | "gitea";
	event: string;
	/** `refs/heads/main` for pushes. */
	ref?: string;
	after?: string;
	/** Whether this event should trigger a sync of `branch`. */
	triggersSync: boolean;
}

type Headers = Record<string, string | string[] | undefined>;

function header(h: Headers, name: string): string | undefined {
	const want = name.toLowerCase();
	const key = Object.keys(h).find((k) => k.toLowerCase() === want);
	const v = key === undefined ? undefined : h[key];
	return Array.isArray(v) ? v[0] : v;
}

function hmacHex(secret: string, body: Uint8Array): Buffer {
	return createHmac("sha256", secret).update(body).digest();
}

function equalHex(expected: Buffer, givenHex: string): boolean {
	if (!/^[0-9a-fA-F]{64}$/.test(givenHex)) return false;
	const given = Buffer.from(givenHex, "hex");
	return given.length === expected.length && timingSafeEqual(given, expected);
}

/** Verifies a webhook request; throws WebhookError on anything but a correctly signed body. */
export function verifyWebhook(headers: Headers, body: Uint8Array, secret: string, branch: string): WebhookVerdict {
	if (!secret) throw new WebhookError("NO_SECRET", "webhook secret not configured", 503);
	const expected = hmacHex(secret, body);
	const gh = header(headers, "x-hub-signature-256");
	const gitea = header(headers, "x-gitea-signature") ?? header(headers, "x-forgejo-signature");
	let provider: WebhookVerdict["provider"];
	if (gh !== undefined) {
		if (!gh.startsWith("sha256=") || !equalHex(expected, gh.slice(7))) throw new WebhookError("BAD_SIGNATURE", "signature does not match", 401);
		provider = "github";
	} else if (gitea !== undefined) {
		if (!equalHex(expected, gitea)) throw new WebhookError("BAD_SIGNATURE", "signature does not match", 401);
		provider = "gitea";
	} else {
		throw new WebhookError("MISSING_SIGNATURE", "no X-Hub-Signature-256 or X-Gitea-Signature header", 401);
	}
	const event = header(headers, provider === "github" ? "x-github-event" : "x-gitea-event") ?? header(headers, "x-gitea-event") ?? "push";
	if (event === "ping") return { provider, event, triggersSync: false };
	let payload: { ref?: unknown; after?: unknown };
	try {
		payload = JSON.parse(Buffer.from(body).toString("utf8")) as typeof payload;
	} catch {
		throw new WebhookError("BAD_BODY", "body is not JSON", 400);
	}
	const ref = typeof payload.ref === "string" ? payload.ref : undefined;
	const after = typeof payload.after === "string" ? payload.after : undefined;
	// The branch may be given by its full name (`refs/heads/main`), as the fetch accepts it.
	const triggersSync = event === "push" && (ref === undefined || ref === (branch.startsWith("refs/heads/") ? branch : `refs/heads/${branch}`));
	return { provider, event, ...(ref ? { ref } : {}), ...(after ? { after } : {}), triggersSync };
}

/** Signs a body the way GitHub does (tests and the bench use it). */
export function signGithub(secret: string, body: Uint8Array | string): string {
	return `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
}

/** Signs a body the way Gitea does. */
export function signGitea(secret: string, body: Uint8Array | string): string {
	return createHmac("sha256", secret).update(body).digest("hex");
}
