/**
 * The auditor web viewer: a fastify plugin the admin server registers with `registerViewer(app, opts)`.
 *
 * Pages (server-rendered, every recorded string HTML-escaped, strict CSP, no inline script):
 *   GET  {base}/                 session list with filters and a verification badge per session
 *   GET  {base}/session?prefix=  one session: who/grant/approving commit or PR, verification badge,
 *                                SQL timeline with decisions and approvals, Kubernetes request log,
 *                                SSH/terminal playback with asciinema-player
 *   GET  {base}/login, POST {base}/login, POST {base}/logout
 * JSON / raw:
 *   GET  {base}/api/sessions, {base}/api/session?prefix=, {base}/api/verify?prefix=, {base}/api/cast?prefix=
 * Public (no login): GET /api/v1/recordings/keys — the recording public keys (JWKS).
 *
 * Auth: every page and API needs an identity in `auditorGroup`, and never a grant-scoped Drawbridge
 * token (issuer kind `drawbridge` or a `grant` claim): the operator copies a grant's Group subjects into
 * its token, so a data-path credential of a grant naming the auditor group would otherwise read every
 * recording. The injected `authenticate(request)`
 * (the gateway's OIDC/JWT verifier) sees either the request's own `Authorization: Bearer` header or,
 * for browsers, the token from the viewer's session cookie (set by POST {base}/login after the same
 * check), presented to it as a bearer header. The cookie is HttpOnly, SameSite=Strict, a Secure
 * `__Host-` cookie (plain http to a loopback host: a plain one scoped to {base}), and expires with
 * the token. POST {base}/login and {base}/logout refuse cross-site requests (Sec-Fetch-Site, else
 * Origin/Referer against Host): no login forgery.
 */
import { createHash, randomBytes } from "node:crypto";
import { readFile } from "node:fs/promises";
import { createRequire } from "node:module";
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";
import type { JWK } from "jose";
import { visibleText } from "../approvals/visible.ts";
import type { Identity } from "../config/bundle.ts";
import { listSessions, loadSession, loadStoreKeys, type SessionFilter, type SessionSummary } from "../recording/catalog.ts";
import type { StoredEvent } from "../recording/events.ts";
import { isRecordingError } from "../recording/errors.ts";
import { type SessionDocument, TERMINAL_FILE } from "../recording/format.ts";
import type { PublicKeySet } from "../recording/keys.ts";
import type { RecordingStore } from "../recording/store.ts";
import { readSignedCast, type VerifyResult, verifyAndRead, verifySession } from "../recording/verify.ts";

export interface ViewerOptions {
	store: RecordingStore;
	/** Verify the caller; return undefined or throw to refuse. */
	authenticate: (request: FastifyRequest) => Identity | undefined | Promise<Identity | undefined>;
	/** Only members of this group get in (required, no default: deny by default). */
	auditorGroup: string;
	/** Trusted recording public keys. Default: the keys published in the store (cached 60 s). */
	publicKeys?: () => Promise<PublicKeySet>;
	/** Public JWKs served at /api/v1/recordings/keys. Default: those published in the store. */
	publishedJwks?: () => Promise<JWK[]>;
	/** Mount point (default "/viewer"). */
	basePath?: string;
	/** Sessions shown per list page (default 200). */
	pageSize?: number;
	/**
	 * Browser sign-in with an OIDC provider (authorization code + PKCE). The ID token it returns is
	 * checked by `authenticate` like any bearer token, so the provider must also be a trusted issuer
	 * with `clientId` among its audiences. Without this option the login page takes a pasted token.
	 */
	oidc?: ViewerOidcOptions;
}

export interface ViewerOidcOptions {
	/** Issuer URL; discovery at `<issuer>/.well-known/openid-configuration`. */
	issuer: string;
	clientId: string;
	/** Confidential client secret (client_secret_basic); omit for a public client. */
	clientSecret?: string;
	/** Absolute URL of `{base}/oidc/callback` as registered with the provider. */
	redirectUri: string;
	/** Default: openid email profile groups. */
	scopes?: string[];
}

interface Discovery {
	authorization_endpoint: string;
	token_endpoint: string;
}

const COOKIE = "drawbridge_viewer";
const OIDC_COOKIE = "drawbridge_viewer_oidc";

function b64url(buf: Buffer): string {
	return buf.toString("base64url");
}
const PREFIX_RE = /^recordings\/\d{4}\/\d{2}\/\d{2}\/[A-Za-z0-9._-]+\/[A-Za-z0-9._-]+\/$/;

/**
 * Recorded text as the auditor sees it: every control, format and separator character but `\n` and
 * `\t` shown as an escape (`\u202e`, `\x1b`, `\r`), then HTML-escaped. The recorded agent wrote
 * that text, and bidi overrides, `\r`, ESC and zero-width characters make a page show something
 * other than what ran (`DELETE FROM accounts --<U+202E>1 = di EREHW` reads as a DELETE with a WHERE).
 */
export function escapeHtml(s: unknown): string {
	return visibleText(String(s ?? "")).replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

/**
 * `; Secure` for every cookie unless the browser talks plain http to a loopback address. The admin
 * server usually sits behind a TLS-terminating ingress, so `request.protocol` is http even when the
 * browser used https: keyed on it, the session cookie (the auditor's OIDC ID token, a bearer
 * credential for the approvals API and the data paths too) was never Secure and went out in clear
 * on any plain-http request to the host. Browsers accept Secure cookies from http://localhost.
 */
function cookieSecurity(request: FastifyRequest): string {
	return request.protocol === "https" || !isLoopbackHost(request.hostname) ? "; Secure" : "";
}

function isLoopbackHost(hostname: string): boolean {
	const h = hostname.toLowerCase().replace(/^\[|\]$/g, "");
	return h === "localhost" || h.endsWith(".localhost") || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h) || h === "::1";
}

/**
 * The viewer's cookies for this request. Where they are Secure they are `__Host-` cookies (Secure,
 * `Path=/`, no Domain): a browser lets no other host set or shadow those, so a sibling subdomain
 * (`anything.example.com` next to `gw.example.com`) cannot toss its own `Domain=example.com` session or
 * sign-in-state cookie at the viewer and sign the auditor in as someone else; cookies under the plain
 * names are ignored there. Plain http to loopback keeps plain names scoped to the viewer's paths.
 */
function cookieJar(request: FastifyRequest, base: string): { session: string; sessionPath: string; oidc: string; oidcPath: string; flags: string } {
	const flags = cookieSecurity(request);
	return flags
		? { session: `__Host-${COOKIE}`, sessionPath: "/", oidc: `__Host-${OIDC_COOKIE}`, oidcPath: "/", flags }
		: { session: COOKIE, sessionPath: base, oidc: OIDC_COOKIE, oidcPath: `${base}/oidc`, flags };
}

/** Plain http to a non-loopback host with no sign of TLS in front: the Secure cookie will not stick. */
function plainHttp(request: FastifyRequest): boolean {
	return request.protocol !== "https" && !isLoopbackHost(request.hostname) && request.headers["x-forwarded-proto"] !== "https";
}

function parseCookies(header: string | undefined): Record<string, string> {
	const out: Record<string, string> = {};
	for (const part of (header ?? "").split(";")) {
		const i = part.indexOf("=");
		if (i > 0) out[part.slice(0, i).trim()] = part.slice(i + 1).trim();
	}
	return out;
}

const CSP = [
	"default-src 'none'",
	"script-src 'self' 'wasm-unsafe-eval'",
	"worker-src 'self' blob:",
	"style-src 'self' 'unsafe-inline'",
	"img-src 'self' data:",
	"font-src 'self' data:",
	"connect-src 'self'",
	"form-action 'self'",
	"frame-ancestors 'none'",
	"base-uri 'none'",
].join("; ");

const STYLE = `
body{font:14px/1.4 system-ui,sans-serif;margin:0;color:#1d2330;background:#f6f7f9}
header{background:#1d2330;color:#fff;padding:10px 20px;display:flex;gap:20px;align-items:center}
header a{color:#fff}header .who{margin-left:auto;font-size:12px;opacity:.8}
main{padding:16px 20px}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #e3e6ea;padding:5px 8px;text-align:left;vertical-align:top}
th{background:#eef0f3;font-weight:600}
td.t{font-family:ui-monospace,monospace;font-size:12px;white-space:nowrap}
td.sql,td.mono{font-family:ui-monospace,monospace;font-size:12px;white-space:pre-wrap;word-break:break-all}
form.filters{display:flex;flex-wrap:wrap;gap:8px;margin-bottom:12px;align-items:end}
form.filters label{display:flex;flex-direction:column;font-size:12px}
.badge{display:inline-block;padding:1px 7px;border-radius:9px;font-size:12px;font-weight:600}
.ok{background:#d5f5dd;color:#0b5d1e}.bad{background:#fdd8d8;color:#8a1010}.pending{background:#eee;color:#555}.warn{background:#fff0c2;color:#6b4c00}
p.warning{background:#fff0c2;color:#6b4c00;border:1px solid #e0c060;padding:8px 12px;font-weight:600}
.d-block,.d-denied,.d-expired{color:#8a1010;font-weight:600}.d-approved{color:#6b4c00;font-weight:600}.d-allow{color:#0b5d1e}.d-audit{color:#2a4d8f}
dl{display:grid;grid-template-columns:max-content 1fr;gap:4px 16px;background:#fff;padding:12px;margin:0 0 16px}
dt{font-weight:600}dd{margin:0}
h2{font-size:16px;margin:20px 0 8px}
.problems li{color:#8a1010}
#player{max-width:1000px}
`;

/** Where the keys a verification trusted came from: pinned by the operator/administrator, or the bucket itself. */
export type KeySource = "pinned" | "bucket";

const BUCKET_KEYS_WARNING =
	"Signatures are checked against recording keys published in the recordings bucket itself: whoever can write the bucket can publish a key of their own and make a forged recording show verified. Pin the keys (--recording-trusted-keys-file; deploy/base mounts the operator's ConfigMap drawbridge-recording-trusted-keys).";

const CLIENT_JS = `"use strict";
(function () {
	var badges = document.querySelectorAll("[data-verify]");
	badges.forEach(function (el) {
		fetch("api/verify?prefix=" + encodeURIComponent(el.getAttribute("data-verify")), { credentials: "same-origin" })
			.then(function (r) { return r.json(); })
			.then(function (v) {
				var unpinned = v.ok && v.keys === "bucket";
				var lost = !v.ok && (v.problems || []).length > 0 && v.problems.every(function (p) { return p.kind === "lost"; });
				el.textContent = v.ok ? (unpinned ? "verified (bucket keys)" : "verified") : lost ? "INCOMPLETE" : "TAMPERED";
				el.className = "badge " + (v.ok ? (unpinned ? "warn" : "ok") : lost ? "warn" : "bad");
				if (!v.ok) el.title = (v.problems || []).map(function (p) { return p.message; }).join("\\n");
				else if (unpinned) el.title = ${JSON.stringify(BUCKET_KEYS_WARNING)};
			})
			.catch(function () { el.textContent = "unverifiable"; el.className = "badge bad"; });
	});
	var player = document.getElementById("player");
	if (player && window.AsciinemaPlayer) {
		window.drawbridgePlayer = window.AsciinemaPlayer.create(player.getAttribute("data-cast"), player, {
			fit: "width",
			idleTimeLimit: 2,
			speed: Number(player.getAttribute("data-speed") || "1"),
		});
	}
})();
`;

function page(base: string, title: string, who: Identity | undefined, body: string, extraHead = ""): string {
	return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)} · Drawbridge recordings</title>
<link rel="stylesheet" href="${base}/static/viewer.css">${extraHead}</head><body>
<header><strong>Drawbridge</strong><a href="${base}/">Recordings</a>${
		who
			? `<span class="who">signed in as ${escapeHtml(who.username)}</span><form method="post" action="${base}/logout"><button type="submit">Sign out</button></form>`
			: ""
	}</header>
<main>${body}</main><script src="${base}/static/viewer.js"></script></body></html>`;
}

/** Captured (masked) result rows, when the data path recorded them. */
/**
 * Terminal input (`i` events) joined into typed lines, each placed at the event that ended it, among
 * the other timeline events. The player plays output only: what was typed where the terminal did not
 * echo it (`stty -echo`, a password prompt, a shell whose lines no rule checks) was on no page.
 * Control keys stay visible as escapes (escapeHtml).
 */
function withTypedLines(events: StoredEvent[]): StoredEvent[] {
	const out: StoredEvent[] = [];
	let line = "";
	let last: Extract<StoredEvent, { type: "terminal" }> | undefined;
	for (const e of events) {
		if (e.type !== "terminal") {
			out.push(e);
			continue;
		}
		for (const ch of e.data) {
			line += ch;
			last = e;
			if (ch === "\r" || ch === "\n") {
				if (line.trim() !== "") out.push({ ...e, data: line });
				line = "";
			}
		}
	}
	if (line !== "" && last) out.push({ ...last, data: line });
	return out;
}

function capturedRows(e: { resultColumns?: string[]; resultRows?: (string | null)[][]; resultRowsTruncated?: boolean }): string {
	if (!e.resultRows?.length) return "";
	const head = e.resultColumns?.length ? `<tr>${e.resultColumns.map((c) => `<th>${escapeHtml(c)}</th>`).join("")}</tr>` : "";
	const body = e.resultRows.map((r) => `<tr>${r.map((v) => `<td class="mono">${v === null ? "<i>null</i>" : escapeHtml(v)}</td>`).join("")}</tr>`).join("");
	return `<details class="rows"><summary>${escapeHtml(e.resultRows.length)} captured row(s)${e.resultRowsTruncated ? " (capped)" : ""}</summary><table>${head}${body}</table></details>`;
}

function decisionCell(d: string | undefined): string {
	return d ? `<span class="d-${escapeHtml(d)}">${escapeHtml(d)}</span>` : "";
}

function offset(ms: number): string {
	const m = Math.floor(ms / 60000);
	return `+${String(m).padStart(2, "0")}:${((ms % 60000) / 1000).toFixed(3).padStart(6, "0")}`;
}

/** Longest identity / grant / connection filter accepted (names are far shorter). */
export const MAX_FILTER_LENGTH = 256;

/** A list filter from the query, or the reason it is malformed (answered with 400, never ignored). */
function filterFromQuery(q: Record<string, unknown>): SessionFilter | string {
	const f: SessionFilter = {};
	for (const [name, v] of Object.entries(q)) {
		if (v !== undefined && typeof v !== "string") return `${name} must be given once`;
	}
	const text = q as Record<string, string | undefined>;
	for (const name of ["identity", "grant", "connection"] as const) {
		const v = text[name];
		if (v === undefined || v === "") continue;
		if (v.length > MAX_FILTER_LENGTH) return `${name} is longer than ${MAX_FILTER_LENGTH} characters`;
		f[name] = v;
	}
	if (text.protocol && ["postgres", "ssh", "kubernetes"].includes(text.protocol)) f.protocol = text.protocol;
	const date = (name: "since" | "until") => {
		const v = text[name];
		if (!v) return undefined;
		const d = v.length <= 64 ? new Date(/^\d{4}-\d{2}-\d{2}$/.test(v) ? `${v}T00:00:00Z` : v) : new Date(Number.NaN);
		return Number.isNaN(d.getTime()) ? `${name} is not a date (YYYY-MM-DD or an ISO 8601 time)` : d;
	};
	for (const name of ["since", "until"] as const) {
		const d = date(name);
		if (typeof d === "string") return d;
		if (d) f[name] = d;
	}
	if (text.blocked === "yes") f.hasBlocked = true;
	if (text.blocked === "no") f.hasBlocked = false;
	if (text.approvals === "yes") f.hasApprovals = true;
	if (text.approvals === "no") f.hasApprovals = false;
	return f;
}

function keysWarning(keys: KeySource): string {
	return keys === "bucket" ? `<p class="warning" id="keys-warning">Unpinned recording keys. ${escapeHtml(BUCKET_KEYS_WARNING)}</p>` : "";
}

function listPage(base: string, who: Identity, q: Record<string, string | undefined>, sessions: SessionSummary[], total: number, keys: KeySource): string {
	const input = (name: string, label: string, placeholder = "") =>
		`<label>${label}<input name="${name}" value="${escapeHtml(q[name] ?? "")}" placeholder="${escapeHtml(placeholder)}"></label>`;
	const select = (name: string, label: string, options: [string, string][]) =>
		`<label>${label}<select name="${name}">${options.map(([v, t]) => `<option value="${v}"${(q[name] ?? "") === v ? " selected" : ""}>${t}</option>`).join("")}</select></label>`;
	const rows = sessions
		.map(
			(s) => `<tr data-session="${escapeHtml(s.sessionId)}">
<td>${escapeHtml(s.startedAt.replace("T", " ").replace(/\.\d+Z$/, "Z"))}</td><td>${escapeHtml(s.protocol)}</td><td>${escapeHtml(s.identity)}</td>
<td>${escapeHtml(s.connection)}</td><td>${escapeHtml(s.grant)}</td>
<td>${s.hasBlocked ? '<span class="badge bad">blocked</span> ' : ""}${s.hasApprovals ? '<span class="badge pending">approvals</span>' : ""}</td>
<td><span class="badge pending" data-verify="${escapeHtml(s.prefix)}">verifying…</span></td>
<td><a class="open" href="${base}/session?prefix=${encodeURIComponent(s.prefix)}">${escapeHtml(s.sessionId)}</a></td></tr>`,
		)
		.join("\n");
	return page(
		base,
		"Sessions",
		who,
		`${keysWarning(keys)}<form class="filters" method="get" action="${base}/">
${input("identity", "Identity", "user or subject, * wildcard")}${input("grant", "Grant", "ns/name")}${input("connection", "Connection")}
${select("protocol", "Protocol", [["", "any"], ["postgres", "postgres"], ["ssh", "ssh"], ["kubernetes", "kubernetes"]])}
${input("since", "Since", "YYYY-MM-DD")}${input("until", "Until", "YYYY-MM-DD")}
${select("blocked", "Blocked", [["", "any"], ["yes", "with blocked"], ["no", "without"]])}
${select("approvals", "Approvals", [["", "any"], ["yes", "with approvals"], ["no", "without"]])}
<button type="submit" id="apply">Filter</button></form>
<p id="count">${total} session(s)${total > sessions.length ? `, showing the latest ${sessions.length}` : ""}</p>
<table id="sessions"><thead><tr><th>Started (UTC)</th><th>Protocol</th><th>Identity</th><th>Connection</th><th>Grant</th><th>Flags</th><th>Integrity</th><th>Session</th></tr></thead>
<tbody>${rows}</tbody></table>`,
	);
}

function verifyBadge(v: VerifyResult, keys: KeySource): string {
	if (v.ok && keys === "bucket") {
		return `<span class="badge warn" id="verify" title="${escapeHtml(BUCKET_KEYS_WARNING)}">verified (bucket keys)</span> ${escapeHtml(v.chunks)} chunk(s), ${escapeHtml(v.events)} event(s), signed by key <code>${escapeHtml(v.keyId)}</code> — a key taken from the bucket itself, not pinned`;
	}
	if (v.ok) return `<span class="badge ok" id="verify">verified</span> ${escapeHtml(v.chunks)} chunk(s), ${escapeHtml(v.events)} event(s), signed by key <code>${escapeHtml(v.keyId)}</code> (pinned)`;
	// Only chunks the gateway itself signed as lost from its spool: an incomplete recording, not tampering.
	if (v.problems.length > 0 && v.problems.every((p) => p.kind === "lost")) {
		return `<span class="badge warn" id="verify">INCOMPLETE</span> the gateway lost ${escapeHtml(v.problems.length)} chunk(s) from its spool before upload; everything else verifies<ul class="problems">${v.problems.map((p) => `<li>${escapeHtml(p.message)}</li>`).join("")}</ul>`;
	}
	return `<span class="badge bad" id="verify">TAMPERED</span><ul class="problems">${v.problems.map((p) => `<li>${escapeHtml(p.message)}</li>`).join("")}</ul>`;
}

function sessionPage(base: string, who: Identity, prefix: string, doc: SessionDocument | undefined, events: StoredEvent[], hasCast: boolean, v: VerifyResult, speed: string, keys: KeySource): string {
	const o = doc?.origin ?? {};
	const approval = [
		o.pullRequest !== undefined ? `PR #${escapeHtml(o.pullRequest)}` : "",
		o.commit ? `commit <code>${escapeHtml(o.commit.slice(0, 12))}</code>` : "",
	]
		.filter(Boolean)
		.join(", ");
	const link = o.url && /^https?:\/\//.test(o.url) ? `<a id="origin" href="${escapeHtml(o.url)}" rel="noreferrer noopener" target="_blank">${approval || escapeHtml(o.url)}</a>` : approval;
	const header = doc
		? `<dl>
<dt>Session</dt><dd>${escapeHtml(doc.sessionId)} (${escapeHtml(doc.protocol)})</dd>
<dt>Identity</dt><dd>${escapeHtml(doc.identity.username)} <small>sub ${escapeHtml(doc.identity.subject)}, ${escapeHtml(doc.identity.issuer)}${doc.identity.groups.length ? `, groups ${escapeHtml(doc.identity.groups.join(", "))}` : ""}</small></dd>
<dt>Grant</dt><dd>${escapeHtml(doc.grant)}${link ? ` — approved by ${link}` : ""}</dd>
<dt>Connection</dt><dd>${escapeHtml(doc.connectionNamespace)}/${escapeHtml(doc.connection)} ${escapeHtml(Object.entries(doc.target).map(([k, val]) => `${k}=${val}`).join(" "))}</dd>
<dt>Client</dt><dd>${escapeHtml(doc.client.address)}${doc.client.application ? ` (${escapeHtml(doc.client.application)})` : ""} via ${escapeHtml(doc.gateway)}</dd>
<dt>Time</dt><dd>${escapeHtml(doc.startedAt)} → ${escapeHtml(doc.endedAt)}</dd>
<dt>Ended</dt><dd>${escapeHtml(doc.end.reason)}${doc.end.message ? `: ${escapeHtml(doc.end.message)}` : ""}${doc.recovered ? " (closed by spool recovery)" : ""}</dd>
<dt>Counts</dt><dd>${escapeHtml(doc.counts.events)} events, ${escapeHtml(doc.counts.statements)} statements, ${escapeHtml(doc.counts.execs)} commands, ${escapeHtml(doc.counts.kubeRequests)} kube requests, ${escapeHtml(doc.counts.blocked)} blocked, ${escapeHtml(doc.counts.approvals)} approval events</dd>
<dt>Integrity</dt><dd>${verifyBadge(v, keys)}</dd>
</dl>`
		: `<p>No session.json yet: the session is still open or uploading.</p><p>${verifyBadge(v, keys)}</p>`;
	const sql = withTypedLines(events.filter((e) => e.type === "statement" || e.type === "approval" || e.type === "exec" || e.type === "sftp" || e.type === "notice" || (e.type === "terminal" && e.stream === "i")));
	const timeline = sql.length
		? `<h2>Timeline: statements, commands, decisions and approvals</h2><table id="timeline"><thead><tr><th>Time</th><th>Kind</th><th>Decision</th><th>Statement / command</th><th>Rule / approval</th><th>Result</th></tr></thead><tbody>${sql
				.map((e) => {
					const t = `<td class="t">${escapeHtml(offset(e.offsetMs))}</td>`;
					switch (e.type) {
						case "statement":
							return `<tr class="ev-statement">${t}<td>SQL</td><td>${decisionCell(e.decision)}</td><td class="sql">${escapeHtml(e.sql)}${e.params?.length ? `<br><small>params ${escapeHtml(JSON.stringify(e.params))}</small>` : ""}</td><td>${escapeHtml(e.rule ?? "")} ${escapeHtml(e.approvalId ?? "")}</td><td>${escapeHtml(e.error ? `ERROR ${e.error.code} ${e.error.message}` : (e.commandTag ?? (e.rows !== undefined ? `${e.rows} rows` : "")))}${e.maskedColumns?.length ? `<br><small>masked ${escapeHtml(e.maskedColumns.join(", "))}</small>` : ""}${capturedRows(e)}</td></tr>`;
						case "approval":
							return `<tr class="ev-approval">${t}<td>Approval</td><td>${decisionCell(e.phase.toLowerCase())}</td><td class="sql">${escapeHtml(e.command)}</td><td>${escapeHtml(e.rule)} ${escapeHtml(e.approvalId)}</td><td>${e.decidedBy?.length ? `by ${escapeHtml(e.decidedBy.join(", "))}` : ""}</td></tr>`;
						case "exec":
							return `<tr class="ev-exec">${t}<td>Command</td><td>${decisionCell(e.decision)}</td><td class="sql">${escapeHtml(e.command)}</td><td>${escapeHtml(e.rule ?? "")} ${escapeHtml(e.approvalId ?? "")}</td><td>${e.exitCode !== undefined ? `exit ${escapeHtml(e.exitCode)}` : ""}${e.signal ? ` ${escapeHtml(e.signal)}` : ""}</td></tr>`;
						case "sftp":
							return `<tr class="ev-sftp">${t}<td>SFTP</td><td>${decisionCell(e.decision)}</td><td class="sql">${escapeHtml(e.op)} ${escapeHtml(e.path)}</td><td></td><td>${escapeHtml(e.bytes ?? "")}</td></tr>`;
						case "terminal":
							return `<tr class="ev-input">${t}<td>Typed</td><td></td><td class="sql">${escapeHtml(e.data)}</td><td></td><td></td></tr>`;
						default:
							return `<tr class="ev-notice">${t}<td>Notice</td><td></td><td class="sql">${escapeHtml((e as { message?: string }).message)}</td><td></td><td></td></tr>`;
					}
				})
				.join("\n")}</tbody></table>`
		: "";
	const kube = events.filter((e) => e.type === "kube.request");
	const kubeLog = kube.length
		? `<h2>Kubernetes requests</h2><table id="kube"><thead><tr><th>Time</th><th>Verb</th><th>Resource</th><th>Namespace</th><th>Name</th><th>Decision</th><th>Rule / approval</th><th>Status</th><th>Path</th></tr></thead><tbody>${kube
				.map((e) =>
					e.type === "kube.request"
						? `<tr>${`<td class="t">${escapeHtml(offset(e.offsetMs))}</td>`}<td>${escapeHtml(e.verb)}</td><td>${escapeHtml(e.resource)}${e.subresource ? `/${escapeHtml(e.subresource)}` : ""}</td><td>${escapeHtml(e.namespace ?? "")}</td><td>${escapeHtml(e.name ?? "")}</td><td>${decisionCell(e.decision)}</td><td>${escapeHtml(e.rule ?? "")} ${escapeHtml(e.approvalId ?? "")}</td><td>${escapeHtml(e.status ?? "")}</td><td class="mono">${escapeHtml(e.path)}${e.body !== undefined ? `<br><small class="kube-body">body ${escapeHtml(JSON.stringify(e.body))}</small>` : ""}</td></tr>`
						: "",
				)
				.join("\n")}</tbody></table>`
		: "";
	const player = hasCast
		? `<h2>Terminal</h2><div id="player" data-speed="${escapeHtml(speed)}" data-cast="${base}/api/cast?prefix=${encodeURIComponent(prefix)}&amp;for=player"></div>`
		: "";
	return page(
		base,
		doc?.sessionId ?? prefix,
		who,
		`${header}${player}${timeline}${kubeLog}<p><small>${escapeHtml(prefix)} · <a id="download-json" href="${base}/api/session?prefix=${encodeURIComponent(prefix)}">events (JSON)</a>${
			hasCast ? ` · <a id="download-cast" href="${base}/api/cast?prefix=${encodeURIComponent(prefix)}" download="${escapeHtml(doc?.sessionId ?? "session")}.cast">terminal.cast (asciinema play)</a>` : ""
		}</small></p>`,
		hasCast ? `<link rel="stylesheet" href="${base}/static/asciinema-player.css"><script src="${base}/static/asciinema-player.min.js"></script>` : "",
	);
}

/** Bidi controls, zero-width and other format characters, line and paragraph separators. */
const FORMAT_CHARACTERS = /[\p{Cf}\p{Zl}\p{Zp}]/gu;
const HAS_FORMAT_CHARACTER = /[\p{Cf}\p{Zl}\p{Zp}]/u;

/**
 * The terminal stream as the player gets it: format characters in the recorded output and input
 * become U+FFFD. A terminal shows them as nothing (it does not reorder text), but the player draws
 * the screen as HTML text, which the browser runs the bidi algorithm over: `FED CBA` behind a U+202E
 * showed as `ABC DEF` in the auditor's playback, and zero-width characters vanished. One column per
 * such character keeps later cursor positioning close; the downloaded terminal.cast keeps the bytes.
 */
function castForPlayer(cast: Buffer): string {
	return cast
		.toString("utf8")
		.split("\n")
		.map((line, i) => {
			// Untouched unless it holds such a character, raw or as a JSON \u escape.
			if (i === 0 || (!HAS_FORMAT_CHARACTER.test(line) && !line.includes("\\u"))) return line;
			try {
				const event = JSON.parse(line) as unknown;
				if (Array.isArray(event) && typeof event[2] === "string") {
					event[2] = event[2].replace(FORMAT_CHARACTERS, "\ufffd");
					return JSON.stringify(event);
				}
			} catch {
				// Not an event line: the player refuses it as it is.
			}
			return line.replace(FORMAT_CHARACTERS, "\ufffd");
		})
		.join("\n");
}

function loginPage(base: string, message: string, status: "info" | "error", oidc = false): string {
	const sso = oidc
		? `<form method="get" action="${base}/oidc/start"><label>User (optional hint for the provider)<br><input name="login_hint" id="login-hint" autocomplete="username"></label>
<button type="submit" id="sso">Sign in with your identity provider</button></form><p>or</p>`
		: "";
	return page(
		base,
		"Sign in",
		undefined,
		`<h2>Sign in to the recordings viewer</h2>
<p class="${status === "error" ? "d-block" : ""}" id="login-message">${escapeHtml(message)}</p>
${sso}<form method="post" action="${base}/login">
<label>OIDC ID token<br><textarea name="token" id="token" rows="6" cols="90" autocomplete="off" spellcheck="false"></textarea></label><br>
<button type="submit" id="signin">Sign in</button></form>
<p><small>Paste an ID token from your identity provider (the same token the CLI uses). Only members of the auditor group get in.</small></p>`,
	);
}

/** asciinema-player's browser bundle, served from node_modules (its package exports these paths). */
function assetPath(file: "asciinema-player.min.js" | "asciinema-player.css"): string {
	return createRequire(import.meta.url).resolve(`asciinema-player/dist/bundle/${file}`);
}

/** Register the viewer and the public keys endpoint on the admin server. */
export async function registerViewer(app: FastifyInstance, opts: ViewerOptions): Promise<void> {
	if (!opts.auditorGroup) throw new TypeError("registerViewer: auditorGroup is required");
	const base = (opts.basePath ?? "/viewer").replace(/\/$/, "");
	const pageSize = opts.pageSize ?? 200;
	let keyCache: { at: number; set: PublicKeySet; jwks: JWK[] } | undefined;
	const storeKeys = async () => {
		if (!keyCache || Date.now() - keyCache.at > 60_000) keyCache = { at: Date.now(), ...(await loadStoreKeys(opts.store)) };
		return keyCache;
	};
	const trusted = opts.publicKeys ?? (async () => (await storeKeys()).set);
	const keySource: KeySource = opts.publicKeys ? "pinned" : "bucket";
	const jwks = opts.publishedJwks ?? (async () => (await storeKeys()).jwks);
	const playerJs = await readFile(assetPath("asciinema-player.min.js"));
	const playerCss = await readFile(assetPath("asciinema-player.css"));
	const oidc = opts.oidc;
	// The sign-in form redirects to the provider, and form-action covers redirects.
	const csp = oidc ? CSP.replace("form-action 'self'", `form-action 'self' ${new URL(oidc.issuer).origin}`) : CSP;
	let discovery: Discovery | undefined;
	const discover = async (): Promise<Discovery> => {
		if (discovery) return discovery;
		// Never follow redirects: the token request carries the client secret, and a provider's
		// endpoints are what its discovery document says, not where a hop sends them.
		const issuer = oidc!.issuer.replace(/\/$/, "");
		const r = await fetch(`${issuer}/.well-known/openid-configuration`, { signal: AbortSignal.timeout(5000), redirect: "error" });
		if (!r.ok) throw new Error(`OIDC discovery failed: HTTP ${r.status}`);
		const d = (await r.json()) as Partial<Discovery> & { issuer?: unknown };
		// OpenID Connect Discovery 1.0, 4.3: the document's issuer must be the one asked for.
		if (typeof d.issuer !== "string" || d.issuer.replace(/\/$/, "") !== issuer) {
			throw new Error(`OIDC discovery document names issuer ${JSON.stringify(d.issuer)}, not ${issuer}`);
		}
		if (!d.authorization_endpoint || !d.token_endpoint) throw new Error("OIDC discovery document lacks authorization_endpoint/token_endpoint");
		discovery = { authorization_endpoint: d.authorization_endpoint, token_endpoint: d.token_endpoint };
		return discovery;
	};

	app.get("/api/v1/recordings/keys", async (request, reply) => {
		let keys: JWK[];
		try {
			keys = await jwks();
		} catch (err) {
			// Public route: the store's endpoint and bucket stay in the log.
			request.log.error({ err }, "recording keys unavailable");
			return reply.code(503).header("cache-control", "no-store").send({ error: { code: "unavailable", message: "the recording keys are unavailable; see the gateway log" } });
		}
		reply.header("cache-control", "public, max-age=300");
		return { keys };
	});

	await app.register(
		async (scope) => {
			scope.addContentTypeParser("application/x-www-form-urlencoded", { parseAs: "string", bodyLimit: 64 * 1024 }, (_req, body, done) => {
				done(null, Object.fromEntries(new URLSearchParams(body as string)));
			});
			// A failure says what failed, not where: store paths, endpoints and bucket names stay in the log.
			scope.setErrorHandler(async (error, request, reply) => {
				const status = (error as { statusCode?: number }).statusCode;
				if (status !== undefined && status >= 400 && status < 500) {
					return reply.code(status).send({ error: { code: "bad_request", message: "the request could not be read" } });
				}
				request.log.error({ err: error }, "recordings viewer failure");
				const unavailable = isRecordingError(error, "STORE_UNAVAILABLE");
				return reply
					.code(unavailable ? 503 : 500)
					.send({ error: { code: unavailable ? "unavailable" : "internal", message: unavailable ? "the recordings store is unavailable; see the gateway log" : "the viewer failed; see the gateway log" } });
			});
			scope.addHook("onSend", async (_req, reply, payload) => {
				reply.header("content-security-policy", csp);
				reply.header("x-content-type-options", "nosniff");
				reply.header("referrer-policy", "no-referrer");
				if (!reply.getHeader("cache-control")) reply.header("cache-control", "no-store");
				return payload;
			});

			const identify = async (
				request: FastifyRequest,
			): Promise<{ identity?: Identity; reason: "none" | "invalid" | "credential" | "group" | "ok" }> => {
				if (!request.headers.authorization) {
					const token = parseCookies(request.headers.cookie)[cookieJar(request, base).session];
					if (!token) return { reason: "none" };
					request.headers.authorization = `Bearer ${token}`;
				}
				let identity: Identity | undefined;
				try {
					identity = await opts.authenticate(request);
				} catch {
					identity = undefined;
				}
				if (!identity) return { reason: "invalid" };
				if (identity.issuerKind === "drawbridge" || identity.grant !== undefined) return { identity, reason: "credential" };
				if (!identity.groups.includes(opts.auditorGroup)) return { identity, reason: "group" };
				return { identity, reason: "ok" };
			};

			const refusal = (identity: Identity, reason: "group" | "credential"): string =>
				reason === "credential"
					? "grant-scoped Drawbridge tokens cannot open the recordings viewer; sign in with your OIDC identity"
					: `${identity.username} is not a member of the auditor group "${opts.auditorGroup}"`;

			const setSession = (request: FastifyRequest, reply: FastifyReply, token: string, identity: Identity) => {
				const maxAge = Math.max(0, Math.floor((identity.tokenExpiresAt.getTime() - Date.now()) / 1000));
				const jar = cookieJar(request, base);
				reply.header("set-cookie", `${jar.session}=${token}; Path=${jar.sessionPath}; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${jar.flags}`);
			};

			/** Gate: resolves the auditor or sends 401/403 (HTML pages redirect to the login page). */
			const gate = async (request: FastifyRequest, reply: FastifyReply, html: boolean): Promise<Identity | undefined> => {
				const r = await identify(request);
				if (r.reason === "ok") return r.identity;
				if (r.reason === "group" || r.reason === "credential") {
					const msg = refusal(r.identity!, r.reason);
					if (html) reply.code(403).type("text/html").send(page(base, "Forbidden", r.identity, `<h2>Forbidden</h2><p id="forbidden">${escapeHtml(msg)}</p>`));
					else reply.code(403).send({ error: { code: "forbidden", message: msg } });
					return undefined;
				}
				const msg = r.reason === "none" ? "sign in required" : "the token was refused (expired, wrong issuer or audience, or bad signature)";
				if (html) reply.code(302).header("location", `${base}/login${r.reason === "invalid" ? "?expired=1" : ""}`).send();
				else reply.code(401).header("www-authenticate", 'Bearer realm="drawbridge-recordings"').send({ error: { code: "unauthenticated", message: msg } });
				return undefined;
			};

			const prefixParam = (request: FastifyRequest, reply: FastifyReply): string | undefined => {
				const p = (request.query as Record<string, unknown>).prefix ?? "";
				// `..` anywhere: the store refuses such keys (a 500 naming the store's path before).
				if (typeof p !== "string" || !PREFIX_RE.test(p) || p.includes("..")) {
					reply.code(400).send({ error: { code: "bad_request", message: "prefix must be recordings/YYYY/MM/DD/<connection>/<session-id>/" } });
					return undefined;
				}
				return p;
			};

			scope.get("/static/viewer.js", async (_req, reply) => reply.type("text/javascript").header("cache-control", "max-age=300").send(CLIENT_JS));
			scope.get("/static/viewer.css", async (_req, reply) => reply.type("text/css").header("cache-control", "max-age=300").send(STYLE));
			scope.get("/static/asciinema-player.min.js", async (_req, reply) => reply.type("text/javascript").header("cache-control", "max-age=3600").send(playerJs));
			scope.get("/static/asciinema-player.css", async (_req, reply) => reply.type("text/css").header("cache-control", "max-age=3600").send(playerCss));

			scope.get("/login", async (request, reply) => {
				const expired = (request.query as Record<string, string>).expired;
				if (plainHttp(request)) {
					return reply
						.type("text/html")
						.send(loginPage(base, "This page was opened over plain http: the viewer's session cookie is Secure and your browser will not keep it. Open the viewer over https.", "error", Boolean(oidc)));
				}
				return reply.type("text/html").send(loginPage(base, expired ? "Your session expired or the token was refused; sign in again." : "Sign in with your OIDC identity.", expired ? "error" : "info", Boolean(oidc)));
			});
			/**
			 * Login forgery: the cookie-setting POSTs (login, logout) must come from the viewer's own pages.
			 * A browser tells where a POST comes from: `Sec-Fetch-Site` (a forbidden header, pages cannot set
			 * it) must be `same-origin`; without it, `Origin` (then `Referer`) must name this host. `Origin:
			 * null` alone is refused. A request with none of them is not from a browser, so not forgeable.
			 */
			const crossSite = (request: FastifyRequest): boolean => {
				const site = request.headers["sec-fetch-site"];
				if (site !== undefined) return site !== "same-origin";
				const from = request.headers.origin ?? request.headers.referer;
				if (from === undefined) return false;
				try {
					return new URL(from).host !== request.host;
				} catch {
					return true; // "null" and anything unparsable
				}
			};
			const refuseCrossSite = (request: FastifyRequest, reply: FastifyReply): boolean => {
				if (!crossSite(request)) return false;
				reply.code(403).type("text/html").send(loginPage(base, "Refused: this sign-in form was submitted from another site (cross-site request). Sign in from this page.", "error", Boolean(oidc)));
				return true;
			};
			scope.post("/login", async (request, reply) => {
				if (refuseCrossSite(request, reply)) return reply;
				const token = String((request.body as Record<string, string> | undefined)?.token ?? "").trim();
				if (!/^[A-Za-z0-9._~+/=-]+$/.test(token)) return reply.code(400).type("text/html").send(loginPage(base, "Paste a token (a JWT).", "error", Boolean(oidc)));
				request.headers.authorization = `Bearer ${token}`;
				const r = await identify(request);
				if (r.reason === "group" || r.reason === "credential") {
					return reply.code(403).type("text/html").send(loginPage(base, `${refusal(r.identity!, r.reason)}.`, "error", Boolean(oidc)));
				}
				if (r.reason !== "ok") return reply.code(401).type("text/html").send(loginPage(base, "The token was refused (expired, wrong issuer or audience, or bad signature).", "error", Boolean(oidc)));
				setSession(request, reply, token, r.identity!);
				return reply.code(303).header("location", `${base}/`).send();
			});

			if (oidc) {
				scope.get("/oidc/start", async (request, reply) => {
					const d = await discover();
					const state = b64url(randomBytes(16));
					const nonce = b64url(randomBytes(16));
					const verifier = b64url(randomBytes(32));
					const challenge = b64url(createHash("sha256").update(verifier).digest());
					const params = new URLSearchParams({
						client_id: oidc.clientId,
						response_type: "code",
						redirect_uri: oidc.redirectUri,
						scope: (oidc.scopes ?? ["openid", "email", "profile", "groups"]).join(" "),
						state,
						nonce,
						code_challenge: challenge,
						code_challenge_method: "S256",
					});
					const hint = String((request.query as Record<string, string>).login_hint ?? "").trim();
					if (hint && /^[\w.@+-]{1,200}$/.test(hint)) {
						// A named account: ask the provider to sign that account in, not reuse its session.
						params.set("login_hint", hint);
						params.set("prompt", "login");
					}
					// Lax: the provider redirects back with a top-level cross-site GET.
					const jar = cookieJar(request, base);
					reply.header("set-cookie", `${jar.oidc}=${state}.${nonce}.${verifier}; Path=${jar.oidcPath}; HttpOnly; SameSite=Lax; Max-Age=600${jar.flags}`);
					return reply.code(302).header("location", `${d.authorization_endpoint}?${params}`).send();
				});
				scope.get("/oidc/callback", async (request, reply) => {
					const q = request.query as Record<string, string | undefined>;
					const jar = cookieJar(request, base);
					const [state, nonce, verifier] = (parseCookies(request.headers.cookie)[jar.oidc] ?? "").split(".");
					reply.header("set-cookie", `${jar.oidc}=; Path=${jar.oidcPath}; HttpOnly; SameSite=Lax; Max-Age=0${jar.flags}`);
					const fail = (code: number, msg: string) => reply.code(code).type("text/html").send(loginPage(base, msg, "error", true));
					// The state first: without it this is anyone's link, and its error text would be theirs,
					// shown on the gateway's own page ("your account is locked, call …", "sign in at …").
					if (!state || !nonce || !verifier || typeof q.state !== "string" || q.state !== state) {
						return fail(400, "The sign-in response does not match this browser's sign-in request; start again.");
					}
					if (q.error) {
						const said = (v: unknown) => String(v).replace(/[^\x20-\x7e]/g, "?").slice(0, 200);
						return fail(401, `The identity provider refused the sign-in: ${said(q.error)}${q.error_description ? ` (${said(q.error_description)})` : ""}`);
					}
					if (typeof q.code !== "string" || !q.code) return fail(400, "The sign-in response carries no authorization code; start again.");
					const d = await discover();
					const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded" };
					const form = new URLSearchParams({ grant_type: "authorization_code", code: q.code, redirect_uri: oidc.redirectUri, code_verifier: verifier });
					if (oidc.clientSecret) headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(oidc.clientId)}:${encodeURIComponent(oidc.clientSecret)}`).toString("base64")}`;
					else form.set("client_id", oidc.clientId);
					let tr: Response;
					try {
						tr = await fetch(d.token_endpoint, { method: "POST", headers, body: form, signal: AbortSignal.timeout(10_000), redirect: "error" });
					} catch (e) {
						request.log.warn({ err: (e as Error).message, endpoint: d.token_endpoint }, "OIDC token exchange failed");
						return fail(502, "The token exchange with the identity provider failed (no answer, or a redirect, which is never followed).");
					}
					const body = (await tr.json().catch(() => ({}))) as { id_token?: string; error?: string };
					if (!tr.ok || !body.id_token) return fail(401, `The token exchange failed: ${body.error ?? `HTTP ${tr.status}`}`);
					request.headers.authorization = `Bearer ${body.id_token}`;
					const r = await identify(request);
					if (r.reason === "group" || r.reason === "credential") return fail(403, `${refusal(r.identity!, r.reason)}.`);
					if (r.reason !== "ok") return fail(401, "The identity provider's ID token was refused (issuer, audience or signature).");
					if (r.identity!.claims.nonce !== nonce) return fail(401, "The ID token's nonce does not match this sign-in; start again.");
					setSession(request, reply, body.id_token, r.identity!);
					// A same-site hop: a SameSite=Strict cookie set during a cross-site redirect chain is
					// only sent on the next navigation the page itself makes.
					return reply
						.type("text/html")
						.send(`<!doctype html><meta charset="utf-8"><meta http-equiv="refresh" content="0;url=${base}/"><title>Signed in</title><p>Signed in. <a href="${base}/">Continue</a></p>`);
				});
			}
			scope.post("/logout", async (request, reply) => {
				if (refuseCrossSite(request, reply)) return reply;
				const jar = cookieJar(request, base);
				reply.header("set-cookie", `${jar.session}=; Path=${jar.sessionPath}; HttpOnly; SameSite=Strict; Max-Age=0${jar.flags}`);
				return reply.code(303).header("location", `${base}/login`).send();
			});

			scope.get("/", async (request, reply) => {
				const who = await gate(request, reply, true);
				if (!who) return reply;
				const q = request.query as Record<string, string | undefined>;
				const filter = filterFromQuery(q);
				if (typeof filter === "string") return reply.code(400).type("text/html").send(page(base, "Bad filter", who, `<h2>Bad filter</h2><p id="bad-filter">${escapeHtml(filter)}</p><p><a href="${base}/">All sessions</a></p>`));
				const all = await listSessions(opts.store, filter);
				const shown = all.slice(-pageSize).reverse();
				return reply.type("text/html").send(listPage(base, who, q, shown, all.length, keySource));
			});
			scope.get("/session", async (request, reply) => {
				const who = await gate(request, reply, true);
				if (!who) return reply;
				const prefix = prefixParam(request, reply);
				if (!prefix) return reply;
				// Verified: the page shows exactly what was verified, not a second read of the store.
				const { result: v, content } = await verifyAndRead(opts.store, prefix, await trusted());
				const s = content ?? (await loadSession(opts.store, prefix));
				if (!s.document && s.events.length === 0) return reply.code(404).type("text/html").send(page(base, "Not found", who, `<p>No recording at ${escapeHtml(prefix)}</p>`));
				const speed = String((request.query as Record<string, string>).speed ?? "1").replace(/[^0-9.]/g, "") || "1";
				return reply.type("text/html").send(sessionPage(base, who, prefix, s.document, s.events, s.cast !== undefined, v, speed, keySource));
			});
			scope.get("/api/sessions", async (request, reply) => {
				if (!(await gate(request, reply, false))) return reply;
				const filter = filterFromQuery(request.query as Record<string, unknown>);
				if (typeof filter === "string") return reply.code(400).send({ error: { code: "bad_request", message: filter } });
				return { sessions: await listSessions(opts.store, filter) };
			});
			scope.get("/api/session", async (request, reply) => {
				if (!(await gate(request, reply, false))) return reply;
				const prefix = prefixParam(request, reply);
				if (!prefix) return reply;
				// The session page's "events (JSON)" download: the verified bytes and the verification
				// they passed, or a second read under the failure (never unmarked).
				const { result, content } = await verifyAndRead(opts.store, prefix, await trusted());
				const s = content ?? (await loadSession(opts.store, prefix));
				return { prefix, verification: { ...result, keys: keySource }, session: s.document, events: s.events, hasTerminal: s.cast !== undefined };
			});
			scope.get("/api/verify", async (request, reply) => {
				if (!(await gate(request, reply, false))) return reply;
				const prefix = prefixParam(request, reply);
				if (!prefix) return reply;
				return { ...(await verifySession(opts.store, prefix, await trusted())), keys: keySource };
			});
			scope.get("/api/cast", async (request, reply) => {
				if (!(await gate(request, reply, false))) return reply;
				const prefix = prefixParam(request, reply);
				if (!prefix) return reply;
				if (!(await opts.store.head(prefix + TERMINAL_FILE))) {
					return reply.code(404).send({ error: { code: "not_found", message: "this session has no terminal stream" } });
				}
				// The player fetches the cast by itself: serve only the one the signed manifest lists.
				const { body, reason } = await readSignedCast(opts.store, prefix, await trusted());
				if (!body) return reply.code(409).send({ error: { code: "unverified", message: `not served: ${reason}` } });
				if ((request.query as Record<string, unknown>).for === "player") return reply.type("application/x-asciicast").send(castForPlayer(body));
				return reply.type("application/x-asciicast").send(body);
			});
		},
		{ prefix: base },
	);
}
