/**
 * The Kubernetes API data path: an HTTPS endpoint that authenticates the agent's bearer token, checks
 * its grant and the GuardrailPolicies, and forwards the request to the real kube-apiserver with the
 * gateway's own credential plus `Impersonate-User` / `Impersonate-Group`, so Kubernetes RBAC still
 * applies to the agent (the grant narrows, never widens). Watches and `logs -f` stream through;
 * upgraded connections (exec / attach / port-forward, WebSocket and SPDY) are relayed byte for byte.
 *
 * URL layout: `https://gateway:port/k8s/<connection>/<kube API path>`; without the prefix the
 * connection is the only Kubernetes connection the identity holds a grant on.
 *
 * Sequence diagram and choices: gateway/kube/README.md.
 */
import { createHmac, hash, randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import http from "node:http";
import https from "node:https";
import type { AddressInfo, Socket } from "node:net";
import type { Duplex } from "node:stream";
import { StringDecoder } from "node:string_decoder";
import type { BackendCredential, BundleConnection, BundleGrant, Identity } from "../config/bundle.ts";
import type { BundleStore, LoadedBundle } from "../config/store.ts";
import { requesterOf } from "../approvals/decision.ts";
import type { ApprovalService } from "../approvals/types.ts";
import { findGrants, noGrantMessage } from "../identity/grants.ts";
import type { Decision, Recorder, SessionRecorder } from "../recording/events.ts";
import { recordableBody, MAX_RECORDED_BODY } from "./mask.ts";
import { isMutation, type KubeRequest, mayCreate, parseKubeRequest, unsafePathReason } from "./request.ts";
import type { KubeVerdict } from "../policy/types.ts";
import { decideKubeRequest, type KubeEvaluator } from "./scope.ts";
import { type KubeErrorCode, KubeGatewayError } from "./status.ts";
import { bodyHandsOver, bodyMentions, bodyReachesNode } from "./handover.ts";
import { deleteAnswerRead, guardrailVerdict, mayHandOver, mayReachNode, mintingWrite, podStream } from "../policy/kube.ts";

/** Strictness of a guardrail action, as in gateway/policy/kube.ts. */
const RANK = { allow: 0, audit: 1, requireApproval: 2, block: 3 } as const;
import { ExecStreamObserver, type ExecStreamFraming, execStreamFraming, WsBoundary, wsChannelStatusFrame, wsCloseFrame } from "./wsexec.ts";

export const PATH_PREFIX = "/k8s/";
const TOKEN_CACHE_MAX = 10_000;

export interface KubeListenerOptions {
	store: BundleStore;
	recorder: Recorder;
	approvals: ApprovalService;
	/** Serving certificate and key (PEM). */
	tls: { certPem: string; keyPem: string };
	host?: string;
	/** 0 picks a free port (default). */
	port?: number;
	/** Replica name recorded in sessions (default `gateway`). */
	gatewayName?: string;
	/** Policy evaluator; default gateway/policy's `evaluateKubeRequest` (tests may wrap it). */
	evaluate?: KubeEvaluator;
	/** Close a per-identity recording session after this long without requests, ms (default 60000). */
	sessionIdleMs?: number;
	/** Upstream request timeout for non-streaming requests, ms (default 0 = none: watches are long). */
	upstreamTimeoutMs?: number;
	/**
	 * `Retry-After` of the 503 answered while draining, seconds (default 1). client-go (kubectl) retries
	 * a 5xx carrying Retry-After up to 10 times, on a new connection: behind a load balancer that is
	 * another replica.
	 */
	drainRetryAfterSec?: number;
	/** Called once per request refused while draining (for metrics); never given anything about the client. */
	onRefused?: (reason: KubeRefusalReason) => void;
}

/** Why a request was refused before authentication. */
export type KubeRefusalReason = "shutting-down";

/** Ends one open stream with a message (a final watch ERROR event when the stream allows it). */
type StreamEnd = (message: string, code?: KubeErrorCode) => Promise<void> | void;

export interface KubeListenerEvents {
	/** One line per handled request, for logs and tests. */
	request: [info: { verb: string; path: string; status: number; decision: Decision; grant?: string; connection?: string }];
	error: [err: Error];
}

interface Resolved {
	identity: Identity;
	connection: BundleConnection;
	grant: BundleGrant;
	bundle: LoadedBundle;
	kreq: KubeRequest;
	/** Path on the upstream (prefix removed), with query. */
	upstreamPath: string;
	token: string;
	/** Policy decision (scope + guardrails) under `grant`. */
	verdict: KubeVerdict;
	/** Set when no active grant covers the request: the 403 message. `grant` is then the first active one. */
	scopeError?: string;
	/**
	 * A patch/update whose decision is stricter if its body hands the object to a deleting controller
	 * (ownerReferences, ttlSecondsAfterFinished): that decision. The body is then read before forwarding.
	 */
	handOver?: { grant: BundleGrant; verdict: KubeVerdict };
	/**
	 * A write of a pod or pod template whose decision is stricter if its body gives the pod the node
	 * (host namespaces, a host path, privileges): that decision. The body is then read before forwarding.
	 */
	reachNode?: { grant: BundleGrant; verdict: KubeVerdict };
	/**
	 * A write that may mint a credential (a service-account token Secret, a kubelet client CSR) under
	 * grants that do not name what it amounts to: the 403 message if its body mentions `words` (read
	 * before forwarding; README "Running code and minting credentials").
	 */
	mint?: { message: string; words: readonly string[]; kinds: readonly { words: readonly string[]; message: string }[] };
	/**
	 * A named delete whose answer may be the whole object (a Pod, anything with finalizers) while a rule
	 * blocks or holds reading it: the answer is replaced by a Status unless it is one (#forward).
	 */
	hideAnswer?: { rule: string; message: string };
}

interface OpenSession {
	recorder: SessionRecorder;
	/** Armed while the session is idle; re-armed rather than reset per request (see #release). */
	idle: NodeJS.Timeout | undefined;
	/** performance.now() of the last request's end. */
	lastUsedMs: number;
	unwatch: () => void;
	inflight: number;
	/** Open streams (watches, logs -f, upgraded connections): ended when the grant ends or changes. */
	streams: Set<StreamEnd>;
	grantKey: string;
	/** grantTerms() of the grant the session was opened under. */
	grantTerms: string;
}

/** Groups the agent's token may never make the gateway impersonate. */
function safeGroup(g: string): boolean {
	// Not padded either: HTTP trims header values, so ` system:masters` would arrive as system:masters.
	return g === g.trim() && (!g.startsWith("system:") || g === "system:authenticated");
}

export function impersonatedUser(identity: Identity): string {
	if (identity.serviceAccount) return `system:serviceaccount:${identity.serviceAccount.namespace}:${identity.serviceAccount.name}`;
	return identity.username;
}

/**
 * A header value whose bytes on the wire are the UTF-8 of `value`, as the apiserver (Go) reads them.
 * Node writes a string header as Latin-1: `müller` went out as one byte 0xFC (not UTF-8: no RBAC
 * subject matches it), and `mÃ¼ller`, a different user, as the bytes of UTF-8 `müller`, which the
 * apiserver then impersonated.
 */
export function headerUtf8(value: string): string {
	return Buffer.from(value, "utf8").toString("latin1");
}

/**
 * Groups no grant's `impersonateGroups` adds, besides the `system:` ones (safeGroup): groups that
 * installers bind to cluster-admin. kubeadm (1.29+) binds `kubeadm:cluster-admins` to cluster-admin
 * and writes its admin.conf with it: system:masters by another name.
 */
const PRIVILEGED_GROUPS: ReadonlySet<string> = new Set(["kubeadm:cluster-admins"]);

/**
 * The groups impersonated for the agent: its token's groups and the grant's `impersonateGroups`, never
 * a `system:` group (system:authenticated aside, which the apiserver adds anyway) nor a group installers
 * bind to cluster-admin (PRIVILEGED_GROUPS). Only `system:masters` used to be kept out of
 * impersonateGroups, so a grant naming `kubeadm:cluster-admins`, `system:nodes`,
 * `system:bootstrappers:kubeadm:default-node-token` (kubeadm lets it get node client certificates) or
 * `system:serviceaccounts:kube-system` (every kube-system account's RBAC) had RBAC that was the
 * cluster's, not the agent's, under the grant's resources (test/kube/issue-impersonate-groups.test.ts).
 */
export function impersonatedGroups(identity: Identity, grant: BundleGrant): string[] {
	const out = new Set<string>();
	// A service account verified from a Kubernetes token keeps the groups the apiserver would give it.
	const sa = identity.issuerKind === "kubernetes" ? identity.serviceAccount : undefined;
	const saGroups = sa ? new Set(["system:serviceaccounts", `system:serviceaccounts:${sa.namespace}`]) : new Set<string>();
	for (const g of identity.groups) if ((safeGroup(g) && !PRIVILEGED_GROUPS.has(g)) || saGroups.has(g)) out.add(g);
	// HTTP trims the value: ` system:masters` would arrive as system:masters (safeGroup refuses padding).
	for (const g of grant.kubernetes?.impersonateGroups ?? []) if (safeGroup(g) && !PRIVILEGED_GROUPS.has(g)) out.add(g);
	return [...out];
}

/**
 * Headers never forwarded from the agent: credentials, impersonation, hop-by-hop, and what the
 * apiserver writes into its audit log on its client's word: `Audit-ID` (the event's id, echoed back)
 * and the forwarding headers it reads `sourceIPs` from (the gateway sends the agent's own address).
 */
const DROP_REQUEST_HEADERS = new Set([
	"audit-id",
	"x-forwarded-for",
	"x-real-ip",
	"forwarded",
	"authorization",
	"host",
	"proxy-authorization",
	"keep-alive",
	"te",
	"trailer",
	"transfer-encoding",
	"proxy-connection",
]);

/**
 * The agent's headers as forwarded upstream. `X-Remote-*` are dropped like `Impersonate-*`: an
 * apiserver that trusts the gateway's client certificate as a front proxy (requestheader auth) takes
 * the user, groups, uid and extras from them. Its `Connection` header is never forwarded, upgrade or
 * not: its options name fields an intermediary must remove before forwarding (RFC 9110 section 7.6.1),
 * and a proxy in front of the apiserver that does so (Go's httputil.ReverseProxy, most L7 proxies)
 * removed the gateway's own `Impersonate-User`/`Impersonate-Group` when the agent sent `Connection:
 * Upgrade, Impersonate-User`: the request ran as the gateway's credential
 * (test/kube/issue-connection-header.test.ts). An upgrade gets the gateway's own `Connection: Upgrade`.
 */
function filterRequestHeaders(raw: http.IncomingHttpHeaders, upgrade: boolean): http.OutgoingHttpHeaders {
	const out: http.OutgoingHttpHeaders = {};
	for (const [k, v] of Object.entries(raw)) {
		const key = k.toLowerCase();
		if (v === undefined || DROP_REQUEST_HEADERS.has(key) || key.startsWith("impersonate-") || key.startsWith("x-remote-") || key === "connection") continue;
		if (!upgrade && key === "upgrade") continue;
		out[key] = v;
	}
	if (upgrade) out["connection"] = "Upgrade";
	return out;
}

const DROP_RESPONSE_HEADERS = new Set(["connection", "keep-alive", "transfer-encoding", "proxy-connection"]);

interface UpstreamBase {
	hostname: string;
	port: number | string;
	/** `host:port` for the Host header. */
	host: string;
	/** Server URL path without a trailing slash ("" for most). */
	basePath: string;
}

/** Parsed once per connection object (bundles are frozen: a new bundle brings new objects). */
const upstreamBases = new WeakMap<BundleConnection, UpstreamBase>();

function upstreamBase(conn: BundleConnection): UpstreamBase {
	let b = upstreamBases.get(conn);
	if (!b) {
		const u = new URL(conn.kubernetes?.server ?? `https://${conn.host}:${conn.port}`);
		b = { hostname: u.hostname, port: u.port || 443, host: u.host, basePath: u.pathname.replace(/\/$/, "") };
		upstreamBases.set(conn, b);
	}
	return b;
}

/**
 * Everything the listener builds an upstream connection from: the server URL, the CA, and the
 * gateway's credential (client certificate and key, bearer token). A SHA-256 of it, so no secret is
 * kept as a map key. Two bundles with the same fingerprint for a Connection reach the apiserver the
 * same way: its pooled connections (and the watches on them) stay.
 */
function upstreamFingerprint(conn: BundleConnection, cred: BackendCredential | undefined): string {
	const k = cred?.type === "kubernetes" ? cred : undefined;
	const parts = [
		conn.kubernetes?.server ?? `https://${conn.host}:${conn.port}`,
		conn.kubernetes?.caPem ?? "",
		k?.clientCertPem ?? "",
		k?.clientKeyPem ?? "",
		k?.token ?? "",
	];
	return hash("sha256", JSON.stringify(parts), "base64");
}

/** Per connection object, with the credential object it was computed for (bundles are frozen). */
const fingerprints = new WeakMap<BundleConnection, { cred: BackendCredential | undefined; fp: string }>();

function fingerprintOf(conn: BundleConnection, cred: BackendCredential | undefined): string {
	const hit = fingerprints.get(conn);
	if (hit && hit.cred === cred) return hit.fp;
	const fp = upstreamFingerprint(conn, cred);
	fingerprints.set(conn, { cred, fp });
	return fp;
}

function credentialOf(bundle: LoadedBundle, conn: BundleConnection): BackendCredential | undefined {
	return conn.credentialRef ? bundle.bundle.credentials[conn.credentialRef] : undefined;
}

/** What a kube grant lets its sessions do: a change ends the session's open streams (they ran under the old terms). */
function grantTerms(g: BundleGrant): string {
	return JSON.stringify([g.kubernetes, g.subjects, g.connection, g.notBefore]);
}

/**
 * Largest body the gateway holds while an approval is pending: the kube-apiserver's own default limit
 * (`--max-request-bytes`, 3 MiB); a larger body is refused with 413 before an approval is requested.
 */
export const MAX_HELD_BODY = 3 * 1024 * 1024;
/** Longest body summary shown to approvers (the digest binds the whole body). */
const BODY_SUMMARY_CHARS = 4096;

/** A request body read before an approval, forwarded byte for byte once approved. */
interface HeldBody {
	bytes: Buffer;
	/** What the approver sees and the approval (and its reuse) is bound to; appended to the command. */
	describe: string;
}

/** The whole body, or undefined (reading stopped, the rest left unread) once it exceeds `limit`. */
function readBody(req: http.IncomingMessage, limit: number): Promise<Buffer | undefined> {
	return new Promise((resolve, reject) => {
		const chunks: Buffer[] = [];
		let size = 0;
		const onData = (c: Buffer) => {
			size += c.length;
			if (size <= limit) {
				chunks.push(c);
				return;
			}
			req.off("data", onData).off("end", onEnd).off("error", onError);
			req.pause();
			resolve(undefined);
		};
		const onEnd = () => resolve(Buffer.concat(chunks));
		const onError = (e: Error) => reject(e);
		req.on("data", onData).on("end", onEnd).on("error", onError);
	});
}

/**
 * The body part of an approval command: content type, size, a keyed digest of the exact bytes (keyed
 * with the bundle's masking key, so a Secret's low-entropy values cannot be guessed from it; stable
 * across replicas for reuse) and a summary with Secret values masked as in recordings. For DELETE the
 * apiserver takes every delete option from a non-empty body and ignores the query's.
 */
function describeBody(bytes: Buffer, req: http.IncomingMessage, kreq: KubeRequest, key: string): string {
	const type = String(req.headers["content-type"] ?? "");
	const encoding = String(req.headers["content-encoding"] ?? "");
	const digest = createHmac("sha256", Buffer.from(key, "base64"))
		.update(`drawbridge kube body\n${type}\n${encoding}\n`)
		.update(bytes)
		.digest("hex");
	const parsed = recordableBody(bytes, type || undefined, kreq.resource) as { unparsed?: boolean } | undefined;
	let summary = parsed?.unparsed ? "(not JSON or YAML: not shown)" : JSON.stringify(parsed);
	// A cut summary says so in words: a trailing `…` alone was easy to read past.
	if (summary.length > BODY_SUMMARY_CHARS) {
		summary = `${summary.slice(0, BODY_SUMMARY_CHARS - 1)}… (only the first ${BODY_SUMMARY_CHARS - 1} of ${summary.length} characters of the body are shown; the digest binds the rest)`;
	}
	const del =
		kreq.verb === "delete" || kreq.verb === "deletecollection"
			? " (DeleteOptions from this body apply: the apiserver ignores dryRun, propagationPolicy, gracePeriodSeconds and preconditions in the query when a body is sent)"
			: "";
	return ` with body [${type || "no content-type"}${encoding ? `, content-encoding ${encoding}` : ""}, ${bytes.length} bytes, hmac-sha256 ${digest}]${del}: ${summary}`;
}

/** No request body follows the headers (RFC 9112 section 6.3): forward at once instead of piping. */
function hasNoBody(req: http.IncomingMessage): boolean {
	const h = req.headers;
	return h["transfer-encoding"] === undefined && (h["content-length"] === undefined || h["content-length"] === "0");
}

export class KubeListener extends EventEmitter<KubeListenerEvents> {
	readonly #opts: KubeListenerOptions;
	readonly #server: https.Server;
	/**
	 * Pooled upstream connections per Connection key, with the fingerprint of the upstream definition
	 * they were built from. Replaced only when that definition changes or the Connection goes (see
	 * #onBundleChange), never because some other part of the bundle changed.
	 */
	readonly #agents = new Map<string, { fp: string; agent: https.Agent }>();
	readonly #onChange = (next: LoadedBundle): void => this.#onBundleChange(next);
	readonly #sessions = new Map<string, OpenSession>();
	readonly #sockets = new Set<Socket | Duplex>();
	readonly #evaluate: KubeEvaluator | undefined;
	readonly #tokenCache = new Map<string, Identity>();
	#tokenCacheVersion = -1;
	#draining = false;
	/** Requests being answered: plain ones until their response closes, upgraded ones until their socket does. */
	#active = 0;

	constructor(opts: KubeListenerOptions) {
		super();
		this.#opts = opts;
		this.#evaluate = opts.evaluate;
		this.#server = https.createServer({ cert: opts.tls.certPem, key: opts.tls.keyPem, keepAlive: true }, (req, res) => {
			void this.#handle(req, res);
		});
		this.#server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
			void this.#handleUpgrade(req, socket, head);
		});
		this.#server.on("connection", (s: Socket) => {
			this.#sockets.add(s);
			s.on("close", () => this.#sockets.delete(s));
		});
	}

	/**
	 * A new bundle: destroy the agents of Connections that were removed or whose upstream definition
	 * changed (requests on them end), and end the open streams of sessions whose grant terms changed.
	 * Revoked and expired grants are handled per session by BundleStore.watchGrant (#session).
	 */
	#onBundleChange(next: LoadedBundle): void {
		if (this.#agents.size > 0) {
			const conns = new Map<string, BundleConnection>();
			for (const c of next.bundle.connections) if (c.type === "kubernetes") conns.set(c.key, c);
			for (const [key, entry] of this.#agents) {
				const c = conns.get(key);
				if (c && fingerprintOf(c, credentialOf(next, c)) === entry.fp) continue;
				entry.agent.destroy();
				this.#agents.delete(key);
			}
		}
		for (const [key, s] of this.#sessions) {
			const g = next.grantsByKey.get(s.grantKey);
			// A missing grant is revocation: watchGrant's callback ends the session with that reason.
			if (!g || grantTerms(g) === s.grantTerms) continue;
			this.#sessions.delete(key);
			if (s.idle) clearTimeout(s.idle);
			s.unwatch();
			const message = `grant ${g.key} changed (scope, subjects or connection); reconnect to use the new terms`;
			s.recorder.emit({ type: "notice", message });
			for (const end of s.streams) end(message);
			s.streams.clear();
			void s.recorder.close({ reason: "policy" });
		}
	}

	/** `error` events are informational (logs): never let a missing listener crash the gateway. */
	#reportError(e: Error): void {
		if (this.listenerCount("error") > 0) this.emit("error", e);
	}

	async listen(): Promise<AddressInfo> {
		await new Promise<void>((resolve, reject) => {
			this.#server.once("error", reject);
			this.#server.listen(this.#opts.port ?? 0, this.#opts.host ?? "127.0.0.1", () => {
				this.#server.off("error", reject);
				resolve();
			});
		});
		this.#opts.store.off("change", this.#onChange);
		this.#opts.store.on("change", this.#onChange);
		return this.address;
	}

	get address(): AddressInfo {
		return this.#server.address() as AddressInfo;
	}

	/** `https://host:port` of this listener. */
	get url(): string {
		const a = this.address;
		const host = a.family === "IPv6" ? `[${a.address}]` : a.address;
		return `https://${host}:${a.port}`;
	}

	/**
	 * Start draining for shutdown: from now on every new request (plain or upgrade, on a new or a
	 * kept-alive connection) is answered 503 with a `Status` (reason ServiceUnavailable), `Retry-After`
	 * and `Connection: close`, before authentication. Idle kept-alive connections are closed now, and
	 * responses still in flight carry `Connection: close`, so clients reconnect (through the load
	 * balancer, to another replica). Open watches, logs -f and upgraded streams go on until `close()`.
	 */
	drain(): void {
		this.#draining = true;
		this.#server.closeIdleConnections();
	}

	get isDraining(): boolean {
		return this.#draining;
	}

	/** Requests in flight, watches and upgraded streams included: what a shutdown waits for. */
	get activeRequests(): number {
		return this.#active;
	}

	#drainingError(): KubeGatewayError {
		return new KubeGatewayError(
			"shutting-down",
			"the Drawbridge gateway is shutting down and takes no new requests; retry (another replica will answer)",
		);
	}

	/** Plain request while draining: 503 Status, nothing read, nothing authenticated. */
	#refuseDraining(req: http.IncomingMessage, res: http.ServerResponse): void {
		this.#opts.onRefused?.("shutting-down");
		const err = this.#drainingError();
		const body = JSON.stringify(this.#withRetry(err.toStatus()));
		if (this.listenerCount("request") > 0) {
			this.emit("request", { verb: req.method ?? "", path: req.url ?? "", status: err.httpStatus, decision: "block" });
		}
		res.writeHead(err.httpStatus, {
			"content-type": "application/json",
			"content-length": Buffer.byteLength(body),
			"retry-after": String(this.#retryAfterSec),
			connection: "close",
		});
		res.end(body);
	}

	get #retryAfterSec(): number {
		return this.#opts.drainRetryAfterSec ?? 1;
	}

	/** `details.retryAfterSeconds`, as the apiserver sets it next to the header. */
	#withRetry(status: Record<string, unknown>): Record<string, unknown> {
		return { ...status, details: { ...(status["details"] as object), retryAfterSeconds: this.#retryAfterSec } };
	}

	async close(): Promise<void> {
		const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()));
		// Open JSON watches get a final ERROR event saying why (kubectl prints it) before their sockets go.
		const told: Promise<void>[] = [];
		for (const s of this.#sessions.values()) {
			for (const end of s.streams) {
				const r = end("the Drawbridge gateway is shutting down; reconnect (another replica will answer)", "shutting-down");
				if (r) told.push(r);
			}
			s.streams.clear();
		}
		if (told.length > 0) {
			await Promise.race([Promise.allSettled(told), new Promise((r) => setTimeout(r, 1000).unref())]);
		}
		for (const s of this.#sockets) s.destroy();
		this.#server.closeAllConnections();
		await closed;
		this.#opts.store.off("change", this.#onChange);
		for (const { agent } of this.#agents.values()) agent.destroy();
		this.#agents.clear();
		await Promise.all(
			[...this.#sessions.entries()].map(async ([key, s]) => {
				if (s.idle) clearTimeout(s.idle);
				s.unwatch();
				this.#sessions.delete(key);
				await s.recorder.close({ reason: "shutdown" });
			}),
		);
	}

	// -------------------------------------------------------------------------------------------
	// Resolution: token → identity → connection → grant → scope. Throws KubeGatewayError.

	async #resolve(req: http.IncomingMessage, upgrade = false): Promise<Resolved> {
		const url = req.url ?? "/";
		let connName: string | undefined;
		let upstreamPath = url;
		if (url.startsWith(PATH_PREFIX)) {
			const rest = url.slice(PATH_PREFIX.length);
			const slash = rest.search(/[/?]/);
			connName = decodeURIComponent(slash < 0 ? rest : rest.slice(0, slash));
			upstreamPath = slash < 0 ? "/" : rest.slice(slash);
			if (!upstreamPath.startsWith("/")) upstreamPath = `/${upstreamPath}`;
		}
		const auth = req.headers.authorization ?? "";
		const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
		if (!m) throw new KubeGatewayError("unauthenticated", "a bearer token is required (use the kubeconfig from `drawbridge kubeconfig`)");
		const token = m[1]!;
		const bundle = this.#opts.store.current;
		const now = this.#opts.store.now();
		const identity = await this.#verify(bundle, token, now);
		// The user name is impersonated as is. From an OIDC provider it is whatever the usernameClaim
		// holds (`email`, `preferred_username`: often user-chosen), so a `system:` name would make the
		// gateway impersonate a Kubernetes component or another service account (the apiserver's own
		// OIDC authenticator has --oidc-username-prefix for the same reason). Service accounts come only
		// from Kubernetes-issued tokens (and operator-minted ones whose subject the grant names).
		// TokenVerifier refuses such OIDC tokens for every data path (401); this stays as a second line.
		if (identity.issuerKind === "oidc" && identity.username.startsWith("system:")) {
			throw new KubeGatewayError(
				"no-grant",
				`user name ${JSON.stringify(identity.username.slice(0, 100))} from issuer ${identity.issuer} is in the reserved system: namespace and is never impersonated`,
			);
		}
		// Whatever the issuer: the apiserver trims the header, so a padded name is another user there.
		const user = impersonatedUser(identity);
		if (user !== user.trim() || /[\u0000-\u001f\u007f]/.test(user)) {
			throw new KubeGatewayError(
				"no-grant",
				`user name ${JSON.stringify(user.slice(0, 100))} has surrounding whitespace or control characters and is never impersonated`,
			);
		}
		let connection: BundleConnection | undefined;
		if (connName !== undefined) {
			connection = bundle.connection(connName);
			if (connection?.type !== "kubernetes")
				throw new KubeGatewayError("unknown-connection", `no Kubernetes connection named "${connName}"`);
		} else {
			const candidates = bundle.bundle.connections.filter(
				(c) => c.type === "kubernetes" && findGrants(identity, c.name, bundle.grantsFor(c.name), now).active.length > 0,
			);
			if (candidates.length !== 1) {
				throw new KubeGatewayError(
					"unknown-connection",
					candidates.length === 0
						? `no Kubernetes grant for ${identity.username}; use ${PATH_PREFIX}<connection>/ in the server URL`
						: `several Kubernetes connections granted (${candidates.map((c) => c.name).join(", ")}): use ${PATH_PREFIX}<connection>/ in the server URL`,
				);
			}
			connection = candidates[0]!;
		}
		const lookup = findGrants(identity, connection.name, bundle.grantsFor(connection.name), now);
		if (lookup.active.length === 0) throw new KubeGatewayError("no-grant", noGrantMessage(identity, connection.name, lookup));
		const unsafe = unsafePathReason(upstreamPath);
		if (unsafe) throw new KubeGatewayError("bad-request", unsafe);
		const kreq = parseKubeRequest(req.method ?? "GET", upstreamPath, { upgrade });
		if (mayCreate(kreq, req.headers["content-type"])) kreq.mayCreate = true;
		const rules = bundle.policiesFor(connection.name).guardrailRules;
		let d: ReturnType<typeof decideKubeRequest>;
		try {
			d = decideKubeRequest(kreq, lookup.active, rules, this.#evaluate);
		} catch (e) {
			// Fail closed: a policy that cannot be evaluated blocks.
			throw new KubeGatewayError("blocked", `policy evaluation failed, request refused: ${(e as Error).message}`);
		}
		const out: Resolved = { identity, connection, grant: d.grant, bundle, kreq, upstreamPath, token, verdict: d.verdict };
		if (d.scope) out.scopeError = d.verdict.message ?? `grant ${d.grant.key} does not allow this request`;
		else if (mayHandOver(kreq)) {
			let h: ReturnType<typeof decideKubeRequest>;
			try {
				h = decideKubeRequest({ ...kreq, handsOver: true }, lookup.active, rules, this.#evaluate);
			} catch (e) {
				throw new KubeGatewayError("blocked", `policy evaluation failed, request refused: ${(e as Error).message}`);
			}
			if (!h.scope && RANK[h.verdict.action] > RANK[d.verdict.action]) out.handOver = { grant: h.grant, verdict: h.verdict };
		}
		if (!d.scope && mayReachNode(kreq)) {
			let n: ReturnType<typeof decideKubeRequest>;
			try {
				n = decideKubeRequest({ ...kreq, reachesNode: true }, lookup.active, rules, this.#evaluate);
			} catch (e) {
				throw new KubeGatewayError("blocked", `policy evaluation failed, request refused: ${(e as Error).message}`);
			}
			if (!n.scope && RANK[n.verdict.action] > RANK[d.verdict.action]) out.reachNode = { grant: n.grant, verdict: n.verdict };
		}
		const read = d.scope ? undefined : deleteAnswerRead(kreq);
		if (read) {
			let v: KubeVerdict;
			try {
				v = guardrailVerdict(read, rules);
			} catch (e) {
				throw new KubeGatewayError("blocked", `policy evaluation failed, request refused: ${(e as Error).message}`);
			}
			if (RANK[v.action] >= RANK.requireApproval) out.hideAnswer = { rule: v.rule ?? "", message: v.message ?? "" };
		}
		const minting = d.scope ? undefined : mintingWrite(kreq);
		if (minting && decideKubeRequest(minting.alias, lookup.active, [], this.#evaluate).scope) {
			const where = kreq.namespace ? ` in namespace ${kreq.namespace}` : "";
			const messages = minting.kinds.map((k) => ({
				words: k.words,
				message: `grant "${d.grant.key}" does not allow ${k.what.replace(/^(a [^:]*):/, `$1${where}:`)}`,
			}));
			out.mint = { message: messages[0]!.message, words: minting.words, kinds: messages };
		}
		return out;
	}

	/**
	 * Token → identity, cached per bundle version until the token expires: kubectl sends the same
	 * token on every request and a signature check per request is most of the gateway's added latency.
	 * Keyed by a SHA-256 of the token (the token itself is never kept as a key).
	 */
	async #verify(bundle: LoadedBundle, token: string, now: Date): Promise<Identity> {
		if (this.#tokenCacheVersion !== bundle.version) {
			this.#tokenCache.clear();
			this.#tokenCacheVersion = bundle.version;
		}
		const key = hash("sha256", token, "base64");
		const hit = this.#tokenCache.get(key);
		if (hit && hit.tokenExpiresAt.getTime() > now.getTime()) return hit;
		let identity: Identity;
		try {
			identity = await bundle.verifier.verify(token);
		} catch (e) {
			this.#tokenCache.delete(key);
			throw new KubeGatewayError("unauthenticated", (e as Error).message);
		}
		if (this.#tokenCache.size >= TOKEN_CACHE_MAX) this.#tokenCache.delete(this.#tokenCache.keys().next().value!);
		this.#tokenCache.set(key, identity);
		return identity;
	}

	// -------------------------------------------------------------------------------------------
	// Recording sessions: one per (token, connection, grant), closed when idle or when the grant ends.

	async #session(r: Resolved, req: http.IncomingMessage): Promise<OpenSession> {
		const key = `${r.token.slice(-24)}|${r.connection.name}|${r.grant.key}|${r.identity.subject}`;
		const existing = this.#sessions.get(key);
		if (existing) {
			// Its idle timer (if armed) sees inflight > 0 and stands down: no timer churn per request.
			existing.inflight++;
			return existing;
		}
		const sock = req.socket;
		// The spool stopping taking this session's events (a disk failure) ends it, with its streams: they
		// must not run unrecorded. A later request opens a new recording or is refused (503).
		let recordingFailed: Error | undefined;
		let onRecordingFailure = (e: Error) => {
			recordingFailed ??= e;
		};
		let recorder: SessionRecorder;
		try {
			recorder = await this.#opts.recorder.openSession({
				sessionId: randomUUID(),
				protocol: "kubernetes",
				connection: r.connection.name,
				connectionNamespace: r.connection.namespace,
				identity: {
					issuer: r.identity.issuer,
					subject: r.identity.subject,
					username: r.identity.username,
					groups: r.identity.groups,
					...(r.identity.serviceAccount ? { serviceAccount: r.identity.serviceAccount } : {}),
				},
				grant: r.grant.key,
				origin: r.grant.origin,
				client: { address: sock.remoteAddress ?? "", port: sock.remotePort ?? 0, application: String(req.headers["user-agent"] ?? "") },
				target: { user: impersonatedUser(r.identity), groups: impersonatedGroups(r.identity, r.grant).join(",") },
				startedAt: new Date().toISOString(),
				gateway: this.#opts.gatewayName ?? "gateway",
			}, { onFailure: (e) => onRecordingFailure(e) });
		} catch (e) {
			throw new KubeGatewayError("recording", `recording unavailable, request refused: ${(e as Error).message}`);
		}
		const again = this.#sessions.get(key);
		if (again) {
			// Lost a race with a concurrent first request: keep one session.
			void recorder.close({ reason: "client-closed" });
			again.inflight++;
			return again;
		}
		const s: OpenSession = {
			recorder,
			idle: undefined,
			lastUsedMs: 0,
			inflight: 1,
			unwatch: () => {},
			streams: new Set(),
			grantKey: r.grant.key,
			grantTerms: grantTerms(r.grant),
		};
		s.unwatch = this.#opts.store.watchGrant(r.grant.key, (why, g) => {
			if (this.#sessions.get(key) !== s) return;
			this.#sessions.delete(key);
			if (s.idle) clearTimeout(s.idle);
			const message = `grant ${g.key} ${why === "expired" ? `expired at ${g.expiresAt}` : "was revoked"}`;
			recorder.emit({ type: "notice", message });
			// Long-lived streams end with the grant (later requests are refused by grant lookup).
			for (const end of s.streams) end(message);
			s.streams.clear();
			void recorder.close({ reason: why === "expired" ? "grant-expired" : "grant-revoked" });
		});
		onRecordingFailure = (e) => {
			if (this.#sessions.get(key) === s) this.#sessions.delete(key);
			if (s.idle) clearTimeout(s.idle);
			s.unwatch();
			const message = `the session's recording failed (${e.message}); its streams are closed`;
			for (const end of s.streams) end(message);
			s.streams.clear();
			void recorder.close({ reason: "error", message }).catch(() => undefined);
		};
		this.#sessions.set(key, s);
		if (recordingFailed) onRecordingFailure(recordingFailed);
		return s;
	}

	/**
	 * A request of `s` ended. The session closes once it has had no request in flight for
	 * `sessionIdleMs`: one timer per idle period, re-armed for the remainder when requests came and
	 * went meanwhile (a keep-alive client would otherwise clear and set a timer per request).
	 */
	#release(s: OpenSession): void {
		s.inflight--;
		if (s.inflight > 0) return;
		s.lastUsedMs = performance.now();
		if (!s.idle) this.#armIdle(s, this.#opts.sessionIdleMs ?? 60_000);
	}

	#armIdle(s: OpenSession, ms: number): void {
		s.idle = setTimeout(() => {
			s.idle = undefined;
			if (s.inflight > 0) return; // busy again: the next #release re-arms
			const left = s.lastUsedMs + (this.#opts.sessionIdleMs ?? 60_000) - performance.now();
			if (left > 1) {
				this.#armIdle(s, left);
				return;
			}
			for (const [k, v] of this.#sessions) {
				if (v === s) {
					this.#sessions.delete(k);
					s.unwatch();
					void s.recorder.close({ reason: "client-closed" });
				}
			}
		}, ms);
		s.idle.unref();
	}

	// -------------------------------------------------------------------------------------------
	// Guardrails and approvals.

	/** Returns the decision to record and, when approved, the approval id. Throws KubeGatewayError when refused. */
	async #guard(
		r: Resolved,
		s: OpenSession,
		/** Required when the verdict is requireApproval: the client going away cancels the wait. */
		signal: AbortSignal | undefined,
		/** describeBody() of a body held for approval, else "". */
		body = "",
	): Promise<{ decision: Decision; rule?: string; approvalId?: string; warning?: string }> {
		const verdict = r.verdict;
		// With the query: an approver must see an exec's `command=`, a deletecollection's `labelSelector=`,
		// and an approval reused inside its window must be for exactly this URL, not any on the same path;
		// with the body's digest and summary, so it is also for exactly this body.
		const command = `${r.kreq.verb} ${r.upstreamPath}${body}`;
		if (verdict.action === "allow") return { decision: "allow" };
		if (verdict.action === "audit") return { decision: "audit", rule: verdict.rule ?? "" };
		if (verdict.action === "block") {
			throw Object.assign(
				new KubeGatewayError("blocked", `${verdict.message ?? `${command} blocked by guardrail ${verdict.rule}`} (grant ${r.grant.key})`),
				{ rule: verdict.rule, decision: "block" as Decision },
			);
		}
		// An approval wait can last as long as the rule's timeout (up to a day). The grant ending (expiry,
		// revocation, changed terms) or the gateway shutting down meanwhile ends the hold like the
		// session's open streams: the request is cancelled for approvers, and an approval that comes
		// anyway (or raced the end) does not release a request made under a grant that no longer holds.
		let ended: { message: string; code: KubeErrorCode } | undefined;
		const held = new AbortController();
		const onEnd: StreamEnd = (message, code = "no-grant") => {
			ended ??= { message, code };
			// Recorded now: the session's recording closes right after its streams are told.
			s.recorder.emit({ type: "notice", message: `${message}: ${command}, held for approval, is not forwarded` });
			held.abort();
		};
		const onClientGone = () => held.abort();
		if (signal?.aborted) held.abort();
		else signal?.addEventListener("abort", onClientGone, { once: true });
		s.streams.add(onEnd);
		try {
			return await this.#approve(r, s, held.signal, command, () => ended);
		} finally {
			s.streams.delete(onEnd);
			signal?.removeEventListener("abort", onClientGone);
		}
	}

	/** The approval part of #guard: request, wait, and the checks after the decision. */
	async #approve(
		r: Resolved,
		s: OpenSession,
		signal: AbortSignal,
		command: string,
		ended: () => { message: string; code: KubeErrorCode } | undefined,
	): Promise<{ decision: Decision; rule?: string; approvalId?: string; warning?: string }> {
		const verdict = r.verdict;
		const a = verdict.approval ?? {};
		let record: Awaited<ReturnType<ApprovalService["request"]>>;
		try {
			record = await this.#opts.approvals.request({
				sessionId: s.recorder.sessionId,
				protocol: "kubernetes",
				connection: r.connection.name,
				grant: r.grant.key,
				requester: requesterOf(r.identity, r.grant),
				command,
				rule: verdict.rule ?? "",
				approvers: a.approvers ?? r.grant.approvers.subjects,
				minApprovals: a.minApprovals ?? r.grant.approvers.minApprovals ?? 1,
				timeoutSeconds: a.timeoutSeconds ?? 600,
				...(a.reuseWindowSeconds !== undefined ? { reuseWindowSeconds: a.reuseWindowSeconds } : {}),
			});
		} catch (e) {
			throw new KubeGatewayError("approval-unavailable", `approval required by ${verdict.rule} but could not be requested: ${(e as Error).message}`);
		}
		s.recorder.emit({ type: "approval", approvalId: record.id, phase: record.phase, rule: verdict.rule ?? "", command });
		if (record.phase === "Pending") {
			try {
				record = await this.#opts.approvals.waitForDecision(record.id, signal);
			} catch (e) {
				throw Object.assign(
					new KubeGatewayError("approval-unavailable", `approval ${record.id} could not be awaited: ${(e as Error).message}`),
					{ approvalId: record.id, rule: verdict.rule, decision: "denied" as Decision },
				);
			}
		}
		s.recorder.emit({
			type: "approval",
			approvalId: record.id,
			phase: record.phase,
			rule: verdict.rule ?? "",
			command,
			decidedBy: record.decisions.map((d) => d.by),
		});
		const gone = ended() ?? this.#grantEndedSince(r, s);
		if (gone) {
			throw Object.assign(
				new KubeGatewayError(gone.code, `${gone.message}: ${command} was held for approval ${record.id} and is not forwarded`),
				{ approvalId: record.id, rule: verdict.rule, decision: "block" as Decision },
			);
		}
		const blocked = record.phase === "Approved" ? this.#blockedSince(r) : undefined;
		if (blocked) {
			throw Object.assign(
				new KubeGatewayError("blocked", `${blocked.message ?? `blocked by guardrail ${blocked.rule}`}: a rule merged while ${command} waited; approval ${record.id} does not override it`),
				{ approvalId: record.id, rule: blocked.rule, decision: "block" as Decision },
			);
		}
		if (record.phase !== "Approved") {
			throw Object.assign(
				new KubeGatewayError(
					"approval-refused",
					`${command} needs approval (${verdict.rule}); approval ${record.id} is ${record.phase}. ${record.approveHint}`,
				),
				{ approvalId: record.id, rule: verdict.rule, decision: (record.phase === "Expired" ? "expired" : "denied") as Decision },
			);
		}
		const by = record.decisions.filter((d) => d.decision === "approve").map((d) => d.by);
		return {
			decision: "approved",
			rule: verdict.rule ?? "",
			approvalId: record.id,
			warning: `approval ${record.id} granted by ${by.join(", ")} (rule ${verdict.rule})`,
		};
	}

	/**
	 * The verdict of the current bundle's rules when they now block `r` (a GuardrailPolicy merged while
	 * it waited for approval): a block is never approved away. Undefined when nothing changed or it
	 * still does not block; a rule set that cannot be evaluated blocks.
	 */
	#blockedSince(r: Resolved): KubeVerdict | undefined {
		const current = this.#opts.store.current;
		if (current === r.bundle) return undefined;
		const g = current.grantsByKey.get(r.grant.key);
		if (!g) return undefined; // #grantEndedSince
		try {
			const d = decideKubeRequest(r.kreq, [g], current.policiesFor(r.connection.name).guardrailRules, this.#evaluate);
			return d.verdict.action === "block" ? d.verdict : undefined;
		} catch (e) {
			return { action: "block", rule: "policy-error", message: `policy evaluation failed, request refused: ${(e as Error).message}` } as KubeVerdict;
		}
	}

	/** Why the grant `r` was resolved under no longer holds as it did for session `s`, or undefined. */
	#grantEndedSince(r: Resolved, s: OpenSession): { message: string; code: KubeErrorCode } | undefined {
		const g = this.#opts.store.current.grantsByKey.get(r.grant.key);
		const why = !g
			? `grant ${r.grant.key} was revoked`
			: Date.parse(g.expiresAt) <= Date.now()
				? `grant ${g.key} expired at ${g.expiresAt}`
				: grantTerms(g) !== s.grantTerms
					? `grant ${g.key} changed (scope, subjects or connection)`
					: undefined;
		return why ? { message: why, code: "no-grant" } : undefined;
	}

	// -------------------------------------------------------------------------------------------
	// Upstream.

	/**
	 * The pooled agent for `conn` as defined in `bundle` (the bundle the request was resolved against).
	 * Undefined when that definition is no longer the current one (a request held across a bundle
	 * change, e.g. for an approval): it then gets its own connection rather than a pool nobody prunes.
	 */
	#agent(bundle: LoadedBundle, conn: BundleConnection, cred: BackendCredential | undefined): https.Agent | undefined {
		const fp = fingerprintOf(conn, cred);
		const entry = this.#agents.get(conn.key);
		if (entry?.fp === fp) return entry.agent;
		const current = this.#opts.store.current;
		if (bundle !== current) {
			const c = current.connection(conn.name);
			if (c?.key !== conn.key || fingerprintOf(c, credentialOf(current, c)) !== fp) return undefined;
		}
		entry?.agent.destroy();
		const o: https.AgentOptions = { keepAlive: true, maxSockets: 256 };
		if (conn.kubernetes?.caPem) o.ca = conn.kubernetes.caPem;
		if (cred?.type === "kubernetes" && cred.clientCertPem && cred.clientKeyPem) {
			o.cert = cred.clientCertPem;
			o.key = cred.clientKeyPem;
		}
		const agent = new https.Agent(o);
		this.#agents.set(conn.key, { fp, agent });
		return agent;
	}

	#upstreamRequest(r: Resolved, req: http.IncomingMessage, upgrade: boolean, bodyLength?: number): http.ClientRequest {
		const conn = r.connection;
		const base = upstreamBase(conn);
		const cred = credentialOf(r.bundle, conn);
		const headers = filterRequestHeaders(req.headers, upgrade);
		// A body read before an approval is sent whole (the client may have sent it chunked).
		if (bodyLength !== undefined) headers["content-length"] = String(bodyLength);
		if (cred?.type === "kubernetes" && cred.token) headers["authorization"] = `Bearer ${cred.token}`;
		headers["impersonate-user"] = headerUtf8(impersonatedUser(r.identity));
		const groups = impersonatedGroups(r.identity, r.grant);
		if (groups.length > 0) headers["impersonate-group"] = groups.map(headerUtf8);
		headers["host"] = base.host;
		// The apiserver's audit log takes sourceIPs from this header: the agent's address, not its say.
		if (req.socket.remoteAddress) headers["x-forwarded-for"] = req.socket.remoteAddress;
		const options: https.RequestOptions = {
			protocol: "https:",
			hostname: base.hostname,
			port: base.port,
			method: req.method ?? "GET",
			path: `${base.basePath}${r.upstreamPath}`,
			headers,
		};
		const agent = upgrade ? undefined : this.#agent(r.bundle, conn, cred);
		if (agent) {
			options.agent = agent;
		} else {
			// Upgraded connections get their own TLS connection, never a pooled one.
			options.agent = false;
			if (conn.kubernetes?.caPem) options.ca = conn.kubernetes.caPem;
			if (cred?.type === "kubernetes" && cred.clientCertPem && cred.clientKeyPem) {
				options.cert = cred.clientCertPem;
				options.key = cred.clientKeyPem;
			}
		}
		if (this.#opts.upstreamTimeoutMs) options.timeout = this.#opts.upstreamTimeoutMs;
		return https.request(options);
	}

	/**
	 * The Pod an exec, attach or port-forward names, read with the gateway's own credential (no
	 * impersonation: the agent may hold `pods/exec` without `get pods`, and never sees the answer): its
	 * uid, whether it runs on its node's network, and whether its spec reaches its node otherwise
	 * (bodyReachesNode: host namespaces, host paths, privileges, capabilities). Undefined when it cannot
	 * be read (no such pod, RBAC, timeout): the caller fails closed.
	 */
	#streamPod(r: Resolved): Promise<{ uid: string; hostNetwork: boolean; reachesNode: boolean } | undefined> {
		const conn = r.connection;
		const base = upstreamBase(conn);
		const cred = credentialOf(r.bundle, conn);
		const headers: http.OutgoingHttpHeaders = { host: base.host, accept: "application/json" };
		if (cred?.type === "kubernetes" && cred.token) headers["authorization"] = `Bearer ${cred.token}`;
		const ns = encodeURIComponent(r.kreq.namespace ?? "");
		const name = encodeURIComponent(r.kreq.name ?? "");
		const options: https.RequestOptions = {
			protocol: "https:",
			hostname: base.hostname,
			port: base.port,
			method: "GET",
			path: `${base.basePath}/api/v1/namespaces/${ns}/pods/${name}`,
			headers,
			timeout: 10_000,
		};
		const agent = this.#agent(r.bundle, conn, cred);
		if (agent) options.agent = agent;
		else {
			options.agent = false;
			if (conn.kubernetes?.caPem) options.ca = conn.kubernetes.caPem;
			if (cred?.type === "kubernetes" && cred.clientCertPem && cred.clientKeyPem) {
				options.cert = cred.clientCertPem;
				options.key = cred.clientKeyPem;
			}
		}
		return new Promise((resolve) => {
			const req = https.request(options, (res) => {
				const chunks: Buffer[] = [];
				let size = 0;
				res.on("data", (c: Buffer) => {
					size += c.length;
					if (size <= MAX_HELD_BODY) chunks.push(c);
				});
				res.on("end", () => {
					if (res.statusCode !== 200 || size > MAX_HELD_BODY) return resolve(undefined);
					try {
						const bytes = Buffer.concat(chunks);
						const pod = JSON.parse(bytes.toString("utf8")) as { metadata?: { uid?: unknown }; spec?: { hostNetwork?: unknown } };
						const uid = pod.metadata?.uid;
						const hostNetwork = pod.spec?.hostNetwork !== false && pod.spec?.hostNetwork !== undefined;
						resolve(typeof uid === "string" && uid !== "" ? { uid, hostNetwork, reachesNode: hostNetwork || bodyReachesNode(bytes, "application/json", undefined) } : undefined);
					} catch {
						resolve(undefined);
					}
				});
				res.on("error", () => resolve(undefined));
			});
			req.on("timeout", () => req.destroy(new Error("timeout")));
			req.on("error", () => resolve(undefined));
			req.end();
		});
	}

	/**
	 * Whether a stream into `pod` reaches its node: a port-forward when the Pod is on its node's
	 * network, an exec or attach when its spec reaches the node in any way (hostNetwork included).
	 */
	static #streamReaches(r: Resolved, pod: { hostNetwork: boolean; reachesNode: boolean }): boolean {
		return podStream(r.kreq) === "portforward" ? pod.hostNetwork : pod.reachesNode;
	}

	/**
	 * An exec, attach or port-forward, or a write of `ephemeralcontainers`, under a rule that a node-wide
	 * exec would meet (`reachNode`): looks the Pod up, and takes that stricter decision when the stream would reach the node
	 * (#streamReaches) or the Pod cannot be read. Returns the uid of the Pod it let through, for the
	 * check after the apiserver's upgrade (#handleUpgrade).
	 */
	async #streamReach(r: Resolved): Promise<string | undefined> {
		const rn = r.reachNode;
		// A debug container added to such a Pod shares its namespaces and runs its command at once, no
		// attach needed: the write is decided the same way (a plain request, so nothing to pin: README).
		const k = r.kreq;
		const debug = k.resource === "pods" && (k.apiGroup ?? "") === "" && k.subresource === "ephemeralcontainers" && k.name !== undefined;
		if (!rn || !(podStream(k) || debug)) return undefined;
		const pod = await this.#streamPod(r);
		if (pod && !KubeListener.#streamReaches(r, pod)) return pod.uid;
		r.grant = rn.grant;
		r.verdict = rn.verdict;
		r.kreq = { ...r.kreq, reachesNode: true };
		return undefined;
	}

	// -------------------------------------------------------------------------------------------
	// Plain requests.

	/** The `request` event (built only when someone listens) and the recording's `kube.request` event. */
	#recordPlain(
		req: http.IncomingMessage,
		started: number,
		resolved: Resolved | undefined,
		session: OpenSession | undefined,
		decision: Decision,
		status: number,
		extra: { rule?: string; approvalId?: string; body?: unknown } = {},
	): void {
		if (this.listenerCount("request") > 0) {
			this.emit("request", {
				verb: resolved?.kreq.verb ?? req.method ?? "",
				path: req.url ?? "",
				status,
				decision,
				...(resolved ? { grant: resolved.grant.key, connection: resolved.connection.name } : {}),
			});
		}
		if (!session || !resolved) return;
		const k = resolved.kreq;
		session.recorder.emit({
			type: "kube.request",
			verb: k.verb,
			resource: k.resource,
			...(k.subresource ? { subresource: k.subresource } : {}),
			...(k.namespace ? { namespace: k.namespace } : {}),
			...(k.name ? { name: k.name } : {}),
			path: resolved.upstreamPath,
			decision,
			...(extra.rule ? { rule: extra.rule } : {}),
			...(extra.approvalId ? { approvalId: extra.approvalId } : {}),
			status,
			durationMs: Math.round((performance.now() - started) * 100) / 100,
			...(extra.body !== undefined ? { body: extra.body } : {}),
		});
	}

	async #handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
		if (this.#draining) {
			this.#refuseDraining(req, res);
			return;
		}
		this.#active++;
		res.once("close", () => this.#active--);
		const started = performance.now();
		let resolved: Resolved | undefined;
		let session: OpenSession | undefined;
		// Only a request that waits for an approval needs an AbortSignal: abort() builds a DOMException
		// with a stack trace, too dear to pay on every keep-alive request's close.
		let abort: AbortController | undefined;
		let clientGone = false;
		res.on("close", () => {
			clientGone = true;
			abort?.abort();
		});
		try {
			resolved = await this.#resolve(req);
			session = await this.#session(resolved, req);
			if (resolved.scopeError)
				throw Object.assign(new KubeGatewayError("out-of-scope", resolved.scopeError), { rule: resolved.verdict.rule });
			let held: HeldBody | undefined;
			// The approval covers the body too: read it now, show it to approvers, bind the approval (and its
			// reuse) to its digest, and forward exactly these bytes. A write that may hand the object to a
			// deleting controller is read first as well, to see whether it does.
			const ho = resolved.handOver;
			const rn = resolved.reachNode;
			if ((resolved.verdict.action === "requireApproval" || ho || rn || resolved.mint) && !hasNoBody(req)) {
				const bytes = await readBody(req, MAX_HELD_BODY);
				if (!bytes) {
					throw Object.assign(
						new KubeGatewayError(
							"too-large",
							resolved.verdict.action === "requireApproval"
								? `a request held for approval may carry at most ${MAX_HELD_BODY} bytes (the apiserver's default limit)`
								: ho
									? `a write that could make a controller delete objects (ownerReferences, ttlSecondsAfterFinished, replicas 0, …) under rule ${ho.verdict.rule} is read before forwarding, at most ${MAX_HELD_BODY} bytes (the apiserver's default limit)`
									: rn
										? `a pod or pod template that could reach its node (host namespaces, a host path, privileges) under rule ${rn.verdict.rule} is read before forwarding, at most ${MAX_HELD_BODY} bytes (the apiserver's default limit)`
										: `a write that could mint a credential is read before forwarding, at most ${MAX_HELD_BODY} bytes (the apiserver's default limit)`,
						),
						{ rule: resolved.verdict.rule ?? ho?.verdict.rule ?? rn?.verdict.rule },
					);
				}
				held = { bytes, describe: "" };
			}
			if (resolved.mint && held && bodyMentions(held.bytes, req.headers["content-type"], req.headers["content-encoding"], resolved.mint.words)) {
				// Name the credential the body mentions (the first one when the body could not be read).
				const type = req.headers["content-type"];
				const enc = req.headers["content-encoding"];
				const kind = resolved.mint.kinds.find((k) => bodyMentions(held.bytes, type, enc, k.words));
				throw Object.assign(new KubeGatewayError("out-of-scope", kind?.message ?? resolved.mint.message), { rule: `grant:${resolved.grant.key}` });
			}
			if (ho && held && bodyHandsOver(held.bytes, req.headers["content-type"], req.headers["content-encoding"], resolved.kreq.resource)) {
				resolved.grant = ho.grant;
				resolved.verdict = ho.verdict;
				resolved.kreq = { ...resolved.kreq, handsOver: true };
			}
			// An exec, attach or port-forward without an upgrade streams nothing, but is decided like one.
			await this.#streamReach(resolved);
			if (rn && held && RANK[rn.verdict.action] > RANK[resolved.verdict.action] && bodyReachesNode(held.bytes, req.headers["content-type"], req.headers["content-encoding"], resolved.kreq.resource)) {
				resolved.grant = rn.grant;
				resolved.verdict = rn.verdict;
				resolved.kreq = { ...resolved.kreq, reachesNode: true };
			}
			if (resolved.verdict.action === "requireApproval") {
				abort = new AbortController();
				if (clientGone) abort.abort();
				if (held && held.bytes.length > 0) held.describe = describeBody(held.bytes, req, resolved.kreq, resolved.bundle.bundle.maskingKey);
			}
			const g = await this.#guard(resolved, session, abort?.signal, held?.describe ?? "");
			await this.#forward(resolved, req, res, g, session, started, held);
		} catch (e) {
			const err =
				e instanceof KubeGatewayError ? e : new KubeGatewayError("upstream", `gateway error: ${(e as Error).message ?? String(e)}`);
			const decision: Decision = (err as { decision?: Decision }).decision ?? (err.code === "upstream" ? "allow" : "block");
			const extra: { rule?: string; approvalId?: string } = {};
			const rule = (err as { rule?: string }).rule;
			const approvalId = (err as { approvalId?: string }).approvalId;
			if (rule) extra.rule = rule;
			if (approvalId) extra.approvalId = approvalId;
			this.#recordPlain(req, started, resolved, session, decision, err.httpStatus, extra);
			if (!res.headersSent) {
				const body = JSON.stringify(err.toStatus());
				res.writeHead(err.httpStatus, {
					"content-type": "application/json",
					"content-length": Buffer.byteLength(body),
					// The rest of an oversized body is never read: this connection cannot carry another request.
					...(err.code === "too-large" ? { connection: "close" } : {}),
				});
				res.end(body);
			} else {
				res.destroy();
			}
			if (err.code === "upstream") this.#reportError(err);
		} finally {
			if (session) this.#release(session);
		}
	}

	#forward(
		r: Resolved,
		req: http.IncomingMessage,
		res: http.ServerResponse,
		g: { decision: Decision; rule?: string; approvalId?: string; warning?: string },
		session: OpenSession,
		started: number,
		held?: HeldBody,
	): Promise<void> {
		return new Promise<void>((resolve, reject) => {
			const up = this.#upstreamRequest(r, req, false, held?.bytes.length);
			const mutation = r.kreq.resourceRequest && isMutation(r.kreq.verb);
			const chunks: Buffer[] = [];
			let size = 0;
			if (held) {
				size = held.bytes.length;
				chunks.push(held.bytes);
			} else if (mutation) {
				req.on("data", (c: Buffer) => {
					size += c.length;
					if (size <= MAX_RECORDED_BODY + 1) chunks.push(c);
				});
			}
			let finished = false;
			let ures: http.IncomingMessage | undefined;
			let endStream: ((message: string) => void) | undefined;
			const done = () => {
				if (finished) return;
				finished = true;
				if (endStream) session.streams.delete(endStream);
				const x: { rule?: string; approvalId?: string; body?: unknown } = {};
				if (g.rule) x.rule = g.rule;
				if (g.approvalId) x.approvalId = g.approvalId;
				if (mutation) {
					const body = recordableBody(Buffer.concat(chunks), req.headers["content-type"], r.kreq.resource);
					if (body !== undefined) x.body = size > MAX_RECORDED_BODY ? { truncated: true, bytes: size } : body;
				}
				this.#recordPlain(req, started, r, session, g.decision, ures?.statusCode ?? 0, x);
				resolve();
			};
			res.on("close", () => {
				if (ures) {
					ures.destroy();
					done();
				} else {
					// The client left before the apiserver answered.
					up.destroy();
				}
			});
			up.on("response", (u) => {
				ures = u;
				const code = u.statusCode ?? 502;
				if (r.hideAnswer && code >= 200 && code < 300) {
					this.#withholdAnswer(r.hideAnswer, u, res, g.warning, done);
					return;
				}
				const headers: http.OutgoingHttpHeaders = {};
				for (const k in u.headers) {
					const v = u.headers[k];
					if (v !== undefined && !DROP_RESPONSE_HEADERS.has(k)) headers[k] = v;
				}
				if (g.warning) {
					const w = `299 - ${JSON.stringify(`drawbridge: ${g.warning}`)}`;
					const prev = headers["warning"];
					(headers as Record<string, string | string[]>)["warning"] =
						prev === undefined ? w : ([] as string[]).concat(prev as string | string[], w);
				}
				// Draining: the client's next request should open a new connection (another replica).
				if (this.#draining) headers["connection"] = "close";
				res.writeHead(u.statusCode ?? 502, headers);
				// Watches and logs -f: headers go out at once (then each chunk as it comes); plain responses
				// send headers with the first body chunk (one write fewer).
				if (r.kreq.verb === "watch" || /[?&]follow=(true|1)/.test(r.upstreamPath)) res.flushHeaders();
				u.pipe(res);
				// When the grant ends mid-stream: a JSON watch gets a final ERROR event with a Status naming
				// the grant (kubectl prints it), if the stream sits at an event boundary; anything else is cut.
				// (kubectl's Table watches come back as plain application/json: go by the verb.)
				const jsonWatch = u.statusCode === 200 && r.kreq.verb === "watch" && /json/.test(String(u.headers["content-type"] ?? ""));
				let atBoundary = true;
				if (jsonWatch) u.on("data", (c: Buffer) => (atBoundary = c.length === 0 ? atBoundary : c[c.length - 1] === 0x0a));
				let ending = false;
				endStream = (message: string, code: KubeErrorCode = "no-grant") => {
					ending = true;
					u.unpipe(res);
					u.destroy();
					// Recorded now, not when the socket's close comes: the caller closes the recording next,
					// and an event emitted after that is dropped (the cut watch used to vanish from it).
					if (jsonWatch && atBoundary && !res.writableEnded) {
						const status = new KubeGatewayError(code, message).toStatus();
						const told = new Promise<void>((resolve) => res.end(`${JSON.stringify({ type: "ERROR", object: status })}\n`, resolve));
						done();
						return told;
					}
					res.destroy();
					done();
				};
				session.streams.add(endStream);
				u.on("end", done);
				// The upstream connection went away mid-response (apiserver gone, or its agent destroyed because
				// the Connection changed or left the bundle): cut the client too rather than leave it hanging.
				u.on("close", () => {
					if (!ending && !u.complete) res.destroy();
				});
			});
			if (this.#opts.upstreamTimeoutMs) up.on("timeout", () => up.destroy(new Error("upstream timeout")));
			up.on("error", (e) => {
				if (finished) return;
				finished = true;
				reject(new KubeGatewayError("upstream", `kube-apiserver of ${r.connection.name}: ${e.message}`));
			});
			// A GET (most of kubectl's traffic) has no body: send the upstream request now rather than
			// after the incoming stream's end event a few ticks later.
			if (held) up.end(held.bytes);
			else if (hasNoBody(req)) up.end();
			else req.pipe(up);
		});
	}

	/**
	 * The apiserver's answer to a delete whose answer a rule keeps from the agent (Resolved.hideAnswer):
	 * relayed when it is a JSON `Status` (the object was removed at once), otherwise (the object, in any
	 * encoding) replaced by a Success Status saying why. The delete itself has happened (or was a dry run).
	 */
	#withholdAnswer(
		hide: { rule: string; message: string },
		u: http.IncomingMessage,
		res: http.ServerResponse,
		warning: string | undefined,
		done: () => void,
	): void {
		const chunks: Buffer[] = [];
		let size = 0;
		u.on("data", (c: Buffer) => {
			size += c.length;
			if (size <= MAX_HELD_BODY) chunks.push(c);
		});
		u.on("end", () => {
			let body = Buffer.concat(chunks);
			let isStatus = false;
			if (size <= MAX_HELD_BODY && /json/i.test(String(u.headers["content-type"] ?? ""))) {
				try {
					const o = JSON.parse(body.toString("utf8")) as { kind?: unknown; apiVersion?: unknown };
					isStatus = o?.kind === "Status" && o?.apiVersion === "v1";
				} catch {
					isStatus = false;
				}
			}
			if (!isStatus) {
				const message = `drawbridge: the delete was done (or dry-run) as asked; its answer, the object itself, is withheld: ${hide.message}`;
				body = Buffer.from(
					JSON.stringify({ kind: "Status", apiVersion: "v1", metadata: {}, status: "Success", message, details: { kind: "drawbridge", causes: [{ reason: "withheld", message: hide.rule }] }, code: u.statusCode ?? 200 }),
				);
			}
			const headers: Record<string, string | number | string[]> = { "content-type": "application/json", "content-length": body.length };
			for (const k of ["audit-id", "cache-control", "x-kubernetes-pf-flowschema-uid", "x-kubernetes-pf-prioritylevel-uid"]) {
				const v = u.headers[k];
				if (typeof v === "string") headers[k] = v;
			}
			const w = [u.headers["warning"], warning ? `299 - ${JSON.stringify(`drawbridge: ${warning}`)}` : undefined].flat().filter((x): x is string => typeof x === "string");
			if (w.length > 0) headers["warning"] = w;
			if (this.#draining) headers["connection"] = "close";
			res.writeHead(u.statusCode ?? 200, headers);
			res.end(body);
			done();
		});
		u.on("error", () => res.destroy());
	}

	// -------------------------------------------------------------------------------------------
	// Upgraded connections (exec, attach, port-forward; SPDY/3.1 and WebSocket).

	/** Terminal events from a WebSocket exec/attach stream, like the SSH path's. */
	#execObserver(recorder: SessionRecorder, framing: ExecStreamFraming): { obs: ExecStreamObserver; exitCode: () => number | undefined } {
		const inDec = new StringDecoder("utf8");
		const outDec = new StringDecoder("utf8");
		let exitCode: number | undefined;
		const obs = new ExecStreamObserver({
			input: (b) => recorder.emit({ type: "terminal", stream: "i", data: inDec.write(b) }),
			output: (b) => recorder.emit({ type: "terminal", stream: "o", data: outDec.write(b) }),
			resize: (cols, rows) => recorder.emit({ type: "terminal", stream: "r", data: `${cols}x${rows}` }),
			exit: (code) => {
				exitCode = code;
			},
		}, framing);
		return { obs, exitCode: () => exitCode };
	}

	async #handleUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): Promise<void> {
		if (this.#draining) {
			this.#opts.onRefused?.("shutting-down");
			socket.on("error", () => {});
			writeRawStatus(socket, this.#drainingError(), { "retry-after": String(this.#retryAfterSec) });
			return;
		}
		this.#active++;
		socket.once("close", () => this.#active--);
		const started = performance.now();
		let resolved: Resolved | undefined;
		let session: OpenSession | undefined;
		const abort = new AbortController();
		socket.on("close", () => abort.abort());
		socket.on("error", () => {});
		const record = (decision: Decision, status: number, extra: { rule?: string; approvalId?: string } = {}) => {
			// exec/attach: the command and container are what an auditor wants from the request.
			const q = resolved ? new URL(resolved.upstreamPath, "http://x").searchParams : undefined;
			const command = q?.getAll("command") ?? [];
			const body = command.length > 0 ? { command, container: q?.get("container") ?? undefined } : undefined;
			this.#recordPlain(req, started, resolved, session, decision, status, { ...extra, ...(body ? { body } : {}) });
		};
		try {
			resolved = await this.#resolve(req, true);
			session = await this.#session(resolved, req);
			// Nothing of the client's stream is relayed before the apiserver's 101, so a body announced
			// here would never arrive: the apiserver waited for it until its own timeout, holding a
			// connection, and the body checks (hand-over, token Secrets, approvals) never saw it.
			if (!hasNoBody(req)) {
				throw new KubeGatewayError(
					"bad-request",
					"an upgrade request (exec, attach, port-forward, proxy, watch) carries no body; send writes without Connection: Upgrade",
				);
			}
			if (resolved.scopeError)
				throw Object.assign(new KubeGatewayError("out-of-scope", resolved.scopeError), { rule: resolved.verdict.rule });
			// The answer to an upgrade request the apiserver does not upgrade is relayed as is: a delete whose
			// answer must be withheld (#withholdAnswer) goes the plain way.
			if (resolved.hideAnswer) {
				throw new KubeGatewayError("bad-request", "a delete is not an upgrade request; send it without Connection: Upgrade");
			}
			// A port-forward to a hostNetwork Pod reaches the node's own ports, an exec or attach into a Pod
			// that reaches its node reaches the node (#streamReach). The kubelet finds the Pod by name when
			// the apiserver upgrades, so the Pod let through is pinned by uid and looked up again after the
			// upgrade, before anything is relayed: the same uid then means the name held that Pod throughout
			// (a uid is never reused), and a Pod's host namespaces, volumes and security contexts cannot
			// change (ephemeral containers are added, not exec'd into, by name: a new one is another exec).
			const pinned = await this.#streamReach(resolved);
			const g = await this.#guard(resolved, session, abort.signal);
			const up = this.#upstreamRequest(resolved, req, true);
			up.on("upgrade", (ures, usocket, uhead) => {
				if (pinned === undefined) {
					relay(ures, usocket, uhead);
					return;
				}
				usocket.pause();
				void this.#streamPod(resolved!).then((pod) => {
					if (pod?.uid === pinned && !KubeListener.#streamReaches(resolved!, pod) && !usocket.destroyed && !socket.destroyed) {
						relay(ures, usocket, uhead);
						return;
					}
					usocket.destroy();
					const rule = resolved!.reachNode?.verdict.rule;
					const err = Object.assign(
						new KubeGatewayError(
							"blocked",
							`pod ${resolved!.kreq.namespace}/${resolved!.kreq.name} was replaced (or could not be read again) between the gateway's look-up and the ${resolved!.kreq.subresource}; a stream into a pod that reaches its node is decided like pods/exec in any namespace${rule ? ` (rule ${rule})` : ""}: try again`,
						),
						{ rule },
					);
					writeRawStatus(socket, err);
					record("block", err.httpStatus, rule ? { rule } : {});
					if (session) this.#release(session);
				});
			});
			const relay = (ures: http.IncomingMessage, usocket: Duplex, uhead: Buffer): void => {
				let headerText = `HTTP/1.1 ${ures.statusCode ?? 101} ${ures.statusMessage ?? "Switching Protocols"}\r\n`;
				for (let i = 0; i < ures.rawHeaders.length; i += 2) headerText += `${ures.rawHeaders[i]}: ${ures.rawHeaders[i + 1]}\r\n`;
				socket.write(`${headerText}\r\n`);
				const k = resolved!.kreq;
				const protocol = ures.headers["sec-websocket-protocol"];
				const websocket = String(ures.headers.upgrade ?? "").toLowerCase() === "websocket";
				const framing = websocket ? execStreamFraming(protocol) : undefined;
				const observer =
					session && (k.subresource === "exec" || k.subresource === "attach") && framing ? this.#execObserver(session.recorder, framing) : undefined;
				if (observer) {
					socket.on("data", (c: Buffer) => observer.obs.client(c));
					usocket.on("data", (c: Buffer) => observer.obs.server(c));
					if (head.length) observer.obs.client(head);
					if (uhead.length) observer.obs.server(uhead);
				}
				// WebSocket: where the relayed server frames stand, so a cut can say why in the protocol's own
				// words (SPDY streams are just cut).
				const boundary = String(ures.headers.upgrade ?? "").toLowerCase() === "websocket" ? new WsBoundary() : undefined;
				if (boundary) {
					if (uhead.length) boundary.push(uhead);
					usocket.on("data", (c: Buffer) => boundary.push(c));
				}
				if (uhead.length) socket.write(uhead);
				if (head.length) usocket.write(head);
				usocket.pipe(socket);
				socket.pipe(usocket);
				const x: { rule?: string; approvalId?: string } = {};
				if (g.rule) x.rule = g.rule;
				if (g.approvalId) x.approvalId = g.approvalId;
				let ended = false;
				let closing = false;
				/**
				 * The grant ended or changed, or the gateway shuts down: the upstream goes at once. A WebSocket
				 * client between two frames gets the reason first — on exec/attach (v4/v5 channels) a Failure
				 * Status on the error channel, which kubectl prints, then a Close frame (1008 policy violation,
				 * 1001 going away at shutdown) carrying the message; anything else is cut.
				 */
				const cut: StreamEnd = (message, code = "no-grant") => {
					usocket.unpipe(socket);
					socket.unpipe(usocket);
					usocket.destroy();
					if (!message || !boundary?.atBoundary || socket.destroyed || socket.writableEnded) {
						socket.destroy();
						end(); // recorded before the caller closes the recording (see endStream)
						return;
					}
					closing = true;
					end();
					const shutdown = code === "shutting-down";
					const status = wsChannelStatusFrame(protocol, message, shutdown ? 503 : 403, shutdown ? "ServiceUnavailable" : "Forbidden");
					const bye = wsCloseFrame(shutdown ? 1001 : 1008, message);
					// A client that never answers the Close is not waited for beyond a second.
					setTimeout(() => socket.destroy(), 1000).unref();
					return new Promise<void>((resolve) => {
						socket.end(status ? Buffer.concat([status, bye]) : bye, () => resolve());
						socket.once("close", () => resolve());
					});
				};
				session?.streams.add(cut);
				const end = () => {
					if (ended) return;
					ended = true;
					session?.streams.delete(cut);
					usocket.destroy();
					if (!closing) socket.destroy();
					record(g.decision, ures.statusCode ?? 101, x);
					if (session && observer) {
						const q = new URL(resolved!.upstreamPath, "http://x").searchParams;
						const command = q.getAll("command").join(" ") || `<${k.subresource} ${k.namespace ?? ""}/${k.name ?? ""}>`;
						session.recorder.emit({
							type: "exec",
							command,
							decision: g.decision,
							...x,
							...(observer.exitCode() !== undefined ? { exitCode: observer.exitCode()! } : {}),
						});
					}
					if (session) this.#release(session);
				};
				usocket.on("close", end);
				socket.on("close", end);
				usocket.on("error", end);
			};
			up.on("response", (ures) => {
				// The apiserver refused the upgrade (RBAC, no such pod, no node): relay its answer.
				let text = `HTTP/1.1 ${ures.statusCode} ${ures.statusMessage}\r\n`;
				for (let i = 0; i < ures.rawHeaders.length; i += 2) {
					const name = ures.rawHeaders[i]!.toLowerCase();
					// The body is buffered and framed again below: the apiserver's own length would be a second one.
					if (name === "connection" || name === "transfer-encoding" || name === "content-length") continue;
					text += `${ures.rawHeaders[i]}: ${ures.rawHeaders[i + 1]}\r\n`;
				}
				const chunks: Buffer[] = [];
				ures.on("data", (c: Buffer) => chunks.push(c));
				ures.on("end", () => {
					const body = Buffer.concat(chunks);
					socket.end(Buffer.concat([Buffer.from(`${text}content-length: ${body.length}\r\nconnection: close\r\n\r\n`), body]));
					record(g.decision, ures.statusCode ?? 0);
					if (session) this.#release(session);
				});
			});
			up.on("error", (e) => {
				const err = new KubeGatewayError("upstream", `kube-apiserver of ${resolved?.connection.name}: ${e.message}`);
				writeRawStatus(socket, err);
				record(g.decision, err.httpStatus);
				if (session) this.#release(session);
			});
			up.end();
		} catch (e) {
			const err = e instanceof KubeGatewayError ? e : new KubeGatewayError("upstream", (e as Error).message);
			const x: { rule?: string; approvalId?: string } = {};
			const rule = (err as { rule?: string }).rule;
			const approvalId = (err as { approvalId?: string }).approvalId;
			if (rule) x.rule = rule;
			if (approvalId) x.approvalId = approvalId;
			record((err as { decision?: Decision }).decision ?? "block", err.httpStatus, x);
			writeRawStatus(socket, err);
			if (session) this.#release(session);
		}
	}
}

function writeRawStatus(socket: Duplex, err: KubeGatewayError, extraHeaders: Record<string, string> = {}): void {
	const status = err.toStatus();
	const retry = extraHeaders["retry-after"];
	const body = JSON.stringify(retry ? { ...status, details: { ...(status["details"] as object), retryAfterSeconds: Number(retry) } } : status);
	const reason = http.STATUS_CODES[err.httpStatus] ?? "Error";
	let extra = "";
	for (const [k, v] of Object.entries(extraHeaders)) extra += `${k}: ${v}\r\n`;
	socket.end(
		`HTTP/1.1 ${err.httpStatus} ${reason}\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\n${extra}connection: close\r\n\r\n${body}`,
	);
}

export async function startKubeListener(opts: KubeListenerOptions): Promise<KubeListener> {
	const l = new KubeListener(opts);
	await l.listen();
	return l;
}
