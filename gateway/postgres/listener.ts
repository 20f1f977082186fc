/**
 * The PostgreSQL listener: TLS for clients, the startup handshake as an explicit state machine,
 * token-as-password authentication, grant lookup, the upstream connection with the gateway's own
 * secret, then a relayed `Session`. See README.md for the sequence diagram.
 */
import { randomBytes, randomInt, randomUUID } from "node:crypto";
import { createServer, type AddressInfo, type Server, type Socket } from "node:net";
import { Duplex } from "node:stream";
import { hostname } from "node:os";
import { createSecureContext, type SecureContext, TLSSocket } from "node:tls";
import type { ApprovalService } from "../approvals/types.ts";
import type { BundleConnection, BundleGrant, Identity, PostgresAccess } from "../config/bundle.ts";
import type { BundleStore, LoadedBundle } from "../config/store.ts";
import { IdentityError } from "../identity/errors.ts";
import { describeIdentity, exemptionApplies, findGrants, noGrantMessage } from "../identity/grants.ts";
import { looksLikeToken } from "../identity/verify.ts";
import type { Recorder, SessionRecorder } from "../recording/events.ts";
import { CatalogSource, SessionCatalog } from "./catalog.ts";
import { ClientParser, DEFAULT_MAX_CLIENT_MESSAGE_BYTES, decodePasswordPayload } from "./client-parser.ts";
import { isPgGatewayError, PgGatewayError } from "./errors.ts";
import { PARSER_SETTING_NAMES, unsafeParserSetting } from "./parser-settings.ts";
import { defaultSqlPolicy, type SqlPolicyApi } from "./policy-adapter.ts";
import type { ClientMessage } from "./protocol.ts";
import { serverMessages } from "./serializer.ts";
import { DEFAULT_MAX_SERVER_MESSAGE_BYTES } from "./server-parser.ts";
import { errorFieldsOf, type LivePolicy, Session, type SessionLogger } from "./session.ts";
import { cancelUpstream, connectUpstream, readSearchPath, type UpstreamConnection, type UpstreamTarget } from "./upstream.ts";

export interface PostgresListenerOptions {
	/** The gateway's current config bundle (connections, grants, policies, credentials). */
	store: BundleStore;
	/** Server certificate for clients (PEM). Without it only `allowInsecure` connections work. */
	tls?: { certPem: string | Buffer; keyPem: string | Buffer };
	/** Accept a token over a connection without TLS (local development only). Default false. */
	allowInsecure?: boolean;
	recorder: Recorder;
	approvals?: ApprovalService;
	/** Policy binding (default: gateway/policy). */
	policy?: SqlPolicyApi;
	/** Name of this replica in recordings (default: host name). */
	gatewayName?: string;
	/** Largest client message, bytes (default 64 MiB). */
	maxClientMessageBytes?: number;
	/** Largest upstream message, bytes (default 256 MiB). */
	maxServerMessageBytes?: number;
	/** TCP accept → authenticated session, ms (default 30 000). */
	startupTimeoutMs?: number;
	/** Upstream connect + authentication, ms (default 10 000). */
	upstreamConnectTimeoutMs?: number;
	/** End a session after this long without traffic either way, ms (default 0: never). Held approvals do not count as idle. */
	idleTimeoutMs?: number;
	/** Approval wait when a rule sets no timeout, seconds (default 600). */
	approvalTimeoutSec?: number;
	/** Catalog cache entry lifetime, ms (default 60 000). */
	catalogCacheTtlMs?: number;
	/**
	 * Concurrent client connections at most, handshakes and sessions alike (default 1000). A connection
	 * over the cap is refused at its StartupMessage with FATAL 53300, before any authentication work;
	 * beyond twice the cap new TCP connections are closed at accept without an answer.
	 */
	maxConnections?: number;
	/** Called once per refused connection (for metrics); never given anything about the client. */
	onRefused?: (reason: RefusalReason) => void;
	log?: SessionLogger;
}

/** Why a connection was refused before authentication. */
export type RefusalReason = "max-connections" | "shutting-down";

export const DEFAULT_MAX_CONNECTIONS = 1000;

/** The catalog connection's lock_timeout and statement_timeout (see CatalogSource). */
const CATALOG_LOCK_TIMEOUT_MS = 2000;
const CATALOG_STATEMENT_TIMEOUT_MS = 10_000;

const noopLog: SessionLogger = { info: () => undefined, warn: () => undefined };

type Phase = "startup" | "tls" | "password" | "authenticating" | "relay" | "closed";

/** Parameters a client may pass to the upstream in its StartupMessage; everything else is dropped. */
const FORWARDED_PARAMETERS = new Set([
	"application_name",
	"client_encoding",
	"DateStyle",
	"TimeZone",
	"IntervalStyle",
	"extra_float_digits",
	"search_path",
]);

export class PostgresListener {
	private readonly server: Server;
	private readonly o: PostgresListenerOptions;
	private readonly secureContext: SecureContext | undefined;
	private readonly sessions = new Set<Session>();
	private readonly cancelKeys = new Map<string, Session>();
	private readonly sockets = new Set<Socket>();
	private readonly catalogs = new Map<string, CatalogSource>();
	private policy: SqlPolicyApi | undefined;
	private closing = false;
	private draining = false;
	/** Open connections counted against `maxConnections` (not those already marked for refusal). */
	private admitted = 0;
	readonly maxConnections: number;

	constructor(options: PostgresListenerOptions) {
		const max = options.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
		if (!Number.isSafeInteger(max) || max < 1) throw new TypeError(`maxConnections: expected a positive integer, got ${max}`);
		this.maxConnections = max;
		this.o = Object.freeze({ ...options });
		this.secureContext = options.tls ? createSecureContext({ cert: options.tls.certPem, key: options.tls.keyPem }) : undefined;
		this.server = createServer({ noDelay: true }, (s) => this.accept(s));
		// Backstop: refused connections still negotiate TLS to read their error, so they are bounded too.
		this.server.maxConnections = 2 * max;
		this.server.on("drop", () => this.o.onRefused?.("max-connections"));
		this.policy = options.policy;
	}

	/** Listen on `port` (0 = any free port). Resolves with the bound address. */
	async listen(port: number, host = "127.0.0.1"): Promise<AddressInfo> {
		this.policy ??= await defaultSqlPolicy();
		await new Promise<void>((resolve, reject) => {
			this.server.once("error", reject);
			this.server.listen(port, host, () => {
				this.server.off("error", reject);
				resolve();
			});
		});
		return this.server.address() as AddressInfo;
	}

	get address(): AddressInfo {
		return this.server.address() as AddressInfo;
	}

	get sessionCount(): number {
		return this.sessions.size;
	}

	/** Open client connections counted against `maxConnections` (handshakes and sessions). */
	get connectionCount(): number {
		return this.admitted;
	}

	/**
	 * Start draining for shutdown: from now on a new connection is refused at its StartupMessage with
	 * FATAL 57P03 (CancelRequests are still honoured); live sessions go on until `close()`.
	 */
	drain(): void {
		this.draining = true;
	}

	get isDraining(): boolean {
		return this.draining;
	}

	/** Stop accepting, end every session with FATAL 57P01, close catalog connections. */
	async close(): Promise<void> {
		this.closing = true;
		const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
		const cancels: Promise<void>[] = [];
		for (const s of [...this.sessions]) {
			cancels.push(this.cancelRunning(s));
			s.terminate("shutdown", "the Drawbridge gateway is shutting down", { reason: "shutdown" });
		}
		// Before the process exits: a backend busy in a statement never reads the Terminate.
		await Promise.allSettled(cancels);
		for (const s of this.sockets) s.destroy();
		for (const c of this.catalogs.values()) c.close();
		this.catalogs.clear();
		await closed;
	}

	private accept(raw: Socket): void {
		if (this.closing) {
			raw.destroy();
			return;
		}
		this.sockets.add(raw);
		raw.on("close", () => this.sockets.delete(raw));
		raw.on("error", () => raw.destroy());
		// Over the cap the connection is still read up to its StartupMessage (TLS included) so that the
		// client, psql or a driver, can read why: an answer before TLS would be lost to sslmode=require.
		const overCap = this.admitted >= this.maxConnections;
		if (!overCap) {
			this.admitted++;
			raw.once("close", () => this.admitted--);
		}
		const h = new Handshake(this, raw, overCap);
		h.start();
	}

	/** The error a new connection gets at its StartupMessage instead of authentication, if any. */
	refusal(overCap: boolean): { reason: RefusalReason; error: PgGatewayError } | undefined {
		if (this.draining) {
			return {
				reason: "shutting-down",
				error: new PgGatewayError("draining", "the Drawbridge gateway is shutting down: not accepting new connections", {
					hint: "Reconnect: another gateway replica will take the connection.",
				}),
			};
		}
		if (overCap) {
			return {
				reason: "max-connections",
				error: new PgGatewayError(
					"too_many_connections",
					`sorry, too many clients already: this Drawbridge gateway accepts at most ${this.maxConnections} concurrent PostgreSQL connections (maxConnections)`,
					{ hint: "Try again later, or close idle connections." },
				),
			};
		}
		return undefined;
	}

	// --- used by Handshake ---------------------------------------------------------------------

	get options(): PostgresListenerOptions {
		return this.o;
	}

	get tlsContext(): SecureContext | undefined {
		return this.secureContext;
	}

	get sqlPolicy(): SqlPolicyApi {
		if (!this.policy) throw new TypeError("listen() first");
		return this.policy;
	}

	cancel(processId: number, secretKey: Buffer): void {
		const s = this.cancelKeys.get(cancelKey(processId, secretKey));
		if (!s) return;
		const target = this.targets.get(s);
		if (target) void cancelUpstream(target, s.upstreamProcessId, s.upstreamSecretKey);
	}

	/**
	 * A session the gateway ends (shutdown, grant end) may have a statement running upstream, which
	 * would go on after the Terminate: cancel it with the upstream's own cancel key.
	 */
	cancelRunning(s: Session): Promise<void> {
		const target = this.targets.get(s);
		if (!target || !s.busy) return Promise.resolve();
		return cancelUpstream(target, s.upstreamProcessId, s.upstreamSecretKey);
	}

	private readonly targets = new WeakMap<Session, UpstreamTarget>();

	register(session: Session, processId: number, secretKey: Buffer, target: UpstreamTarget): () => void {
		const k = cancelKey(processId, secretKey);
		this.sessions.add(session);
		this.cancelKeys.set(k, session);
		this.targets.set(session, target);
		return () => {
			this.sessions.delete(session);
			this.cancelKeys.delete(k);
		};
	}

	catalogFor(bundle: LoadedBundle, connection: BundleConnection, target: UpstreamTarget): CatalogSource {
		const key = `${connection.name}\u0000${bundle.version}`;
		let c = this.catalogs.get(key);
		if (!c) {
			for (const [k, old] of this.catalogs) {
				if (k.startsWith(`${connection.name}\u0000`)) {
					old.close();
					this.catalogs.delete(k);
				}
			}
			// One catalog connection serves every session of the Connection: a lock a session holds
			// (LOCK TABLE v IN ACCESS EXCLUSIVE MODE; pg_get_viewdef waits for it) or a DBA's long
			// ALTER must not stall every look-up behind it. A look-up that times out fails, and the
			// statement waiting for it is refused (rule `catalog`), never passed unexpanded.
			c = new CatalogSource(
				{
					...target,
					parameters: {
						application_name: "drawbridge-catalog",
						options: `-c lock_timeout=${CATALOG_LOCK_TIMEOUT_MS} -c statement_timeout=${CATALOG_STATEMENT_TIMEOUT_MS}`,
					},
				},
				this.o.catalogCacheTtlMs,
			);
			this.catalogs.set(key, c);
		}
		return c;
	}

	newCancelKey(): { processId: number; secretKey: Buffer } {
		for (;;) {
			const processId = randomInt(1, 2 ** 31 - 1);
			const secretKey = randomBytes(4);
			if (!this.cancelKeys.has(cancelKey(processId, secretKey))) return { processId, secretKey };
		}
	}
}

function cancelKey(processId: number, secretKey: Buffer): string {
	return `${processId}:${secretKey.toString("hex")}`;
}

/** One connection before it becomes a Session: SSL/GSS negotiation, startup, token, grant. */
class Handshake {
	private socket: Socket | TLSSocket;
	private tls = false;
	private parser: ClientParser;
	private phase: Phase = "startup";
	private startupParams: Record<string, string> = {};
	private readonly timer: NodeJS.Timeout;
	private readonly onData = (c: Buffer) => this.data(c);

	constructor(
		private readonly l: PostgresListener,
		private readonly raw: Socket,
		/** Accepted over `maxConnections`: refused at the StartupMessage. */
		private readonly overCap = false,
	) {
		this.socket = raw;
		this.parser = this.newParser();
		this.timer = setTimeout(
			() => this.fatal(new PgGatewayError("protocol_violation", "startup timed out")),
			l.options.startupTimeoutMs ?? 30_000,
		);
		this.timer.unref();
	}

	private newParser(): ClientParser {
		return new ClientParser({ maxMessageBytes: Math.min(this.l.options.maxClientMessageBytes ?? DEFAULT_MAX_CLIENT_MESSAGE_BYTES, 1 << 20) });
	}

	start(): void {
		this.raw.once("data", (first: Buffer) => {
			// Direct TLS (libpq sslnegotiation=direct): a TLS ClientHello instead of SSLRequest.
			if (first[0] === 0x16 && this.l.tlsContext) {
				this.upgrade(replayStream(this.raw, first));
				return;
			}
			this.raw.on("data", this.onData);
			this.data(first);
		});
	}

	private upgrade(transport: Duplex = this.raw): void {
		this.raw.off("data", this.onData);
		const tls = new TLSSocket(transport as Socket, {
			isServer: true,
			secureContext: this.l.tlsContext!,
			ALPNProtocols: ["postgresql"],
		});
		tls.on("error", () => this.close());
		this.socket = tls;
		this.tls = true;
		this.parser = this.newParser();
		this.phase = "startup";
		tls.on("data", this.onData);
		if (transport === this.raw) this.raw.resume();
	}

	private data(chunk: Buffer): void {
		if (this.phase === "closed" || this.phase === "authenticating" || this.phase === "relay") {
			if (this.phase === "authenticating") this.parser.push(chunk);
			return;
		}
		this.parser.push(chunk);
		try {
			for (;;) {
				// phase can change inside handle()
				if ((this.phase as Phase) !== "startup" && (this.phase as Phase) !== "password") return;
				const m = this.parser.next();
				if (!m) return;
				this.handle(m);
			}
		} catch (e) {
			this.fatal(e);
		}
	}

	private handle(m: ClientMessage): void {
		switch (m.type) {
			case "sslRequest":
				if (this.phase !== "startup" || this.tls) {
					throw new PgGatewayError("protocol_violation", "SSLRequest repeated: TLS is already negotiated");
				}
				if (!this.l.tlsContext) {
					this.socket.write("N");
					return;
				}
				if (this.parser.bufferedBytes > 0) {
					// bytes sent before the handshake must never be read as if they came over TLS
					throw new PgGatewayError("protocol_violation", "unencrypted data received after SSLRequest");
				}
				this.raw.write("S");
				this.phase = "tls";
				this.upgrade();
				return;
			case "gssEncRequest":
				if (this.tls) throw new PgGatewayError("protocol_violation", "GSSENCRequest after TLS negotiation");
				this.socket.write("N");
				return;
			case "cancelRequest":
				this.l.cancel(m.processId, m.secretKey);
				this.close();
				return;
			case "startup": {
				// Refused before any authentication work (as PostgreSQL does, after SSL negotiation).
				const refusal = this.l.refusal(this.overCap);
				if (refusal) {
					this.l.options.onRefused?.(refusal.reason);
					throw refusal.error;
				}
				if (m.parameters.replication && m.parameters.replication !== "false" && m.parameters.replication !== "off") {
					throw new PgGatewayError("protocol_violation", "replication connections are not supported by the Drawbridge gateway");
				}
				this.startupParams = m.parameters;
				if (!this.tls && !this.l.options.allowInsecure) {
					throw new PgGatewayError(
						"tls_required",
						"the Drawbridge gateway accepts tokens only over TLS: connect with sslmode=require (or verify-full)",
					);
				}
				this.phase = "password";
				// We speak 3.0: tell a 3.2 client (or one asking for _pq_ options) so, as PostgreSQL does.
				const unrecognized = Object.keys(m.parameters).filter((k) => k.startsWith("_pq_."));
				if ((m.protocolVersion & 0xffff) > 0 || unrecognized.length > 0) {
					this.socket.write(serverMessages.negotiateProtocolVersion(0, unrecognized));
				}
				this.socket.write(serverMessages.authenticationCleartextPassword());
				return;
			}
			case "password": {
				if (this.phase !== "password") throw new PgGatewayError("protocol_violation", "password message before startup");
				const token = decodePasswordPayload(m.payload);
				this.phase = "authenticating";
				this.authenticate(token).catch((e) => this.fatal(e));
				return;
			}
			default:
				throw new PgGatewayError("protocol_violation", `unexpected ${m.type} message before authentication`);
		}
	}

	private async authenticate(token: string): Promise<void> {
		const o = this.l.options;
		const store = o.store;
		const bundle = store.current;
		const database = this.startupParams.database ?? this.startupParams.user ?? "";
		let identity: Identity;
		try {
			identity = await bundle.verifier.verify(token);
		} catch (e) {
			if (e instanceof IdentityError) {
				throw new PgGatewayError("invalid_token", `token rejected: ${e.message}`, { detail: `reason: ${e.code}` });
			}
			throw e;
		}
		const connection = bundle.connection(database);
		if (connection?.type !== "postgres") {
			if (looksLikeToken(database, token)) {
				// libpq's database name defaults to the user name: a token pasted as the user lands here.
				throw new PgGatewayError(
					"unknown_connection",
					"the database name (or the user name it defaults to) is a token: the token goes in the password, the Connection name in the database name",
				);
			}
			throw new PgGatewayError(
				"unknown_connection",
				`no PostgreSQL connection named "${database}" on this gateway (the database name selects the Connection)`,
			);
		}
		const lookup = findGrants(identity, connection.name, bundle.grantsFor(connection.name), store.now());
		const grant = lookup.active[0];
		if (!grant) throw new PgGatewayError("no_grant", noGrantMessage(identity, connection.name, lookup));
		if (identity.tokenExpiresAt.getTime() <= store.now().getTime()) {
			throw new PgGatewayError("invalid_token", `token expired at ${identity.tokenExpiresAt.toISOString()}`);
		}
		const access: PostgresAccess = grant.postgres?.access ?? "read-only";
		const target = upstreamTarget(bundle, connection, grant, access, this.startupParams, o.upstreamConnectTimeoutMs, o.maxServerMessageBytes);

		// Policies follow the bundle: recomputed once per bundle version, read at every statement.
		const masks = (policies: ReturnType<LoadedBundle["policiesFor"]>): boolean =>
			policies.maskRules.length > 0 && !exemptionApplies(identity, grant, policies.maskExempt);
		let liveVersion = -1;
		let livePolicy: LivePolicy | undefined;
		const live = (): LivePolicy => {
			const b = store.current;
			if (b.version !== liveVersion || !livePolicy) {
				const policies = b.policiesFor(connection.name);
				livePolicy = { policies, maskingActive: masks(policies), maskingKey: b.maskingKey };
				liveVersion = b.version;
			}
			return livePolicy;
		};
		const sessionId = randomUUID();
		// The spool stopping taking this session's events (a disk failure) ends the session: it must not
		// run unrecorded. Until the session exists, the failure waits for it.
		let recordingFailed: Error | undefined;
		let onRecordingFailure = (e: Error) => {
			recordingFailed ??= e;
		};
		// The recording is opened while the upstream connection is made: openSession resolves once the
		// session's spool folder is durable (a few fsyncs, milliseconds on a busy disk), and waiting for
		// that before dialling the server added it to every connection's set-up. Nothing reaches the
		// server from the client, nor the client from the server, before both have succeeded.
		const opening: Promise<{ ok: SessionRecorder } | { error: unknown }> = o.recorder
			.openSession({
				sessionId,
				protocol: "postgres",
				connection: connection.name,
				connectionNamespace: connection.namespace,
				identity: {
					issuer: identity.issuer,
					subject: identity.subject,
					username: identity.username,
					groups: identity.groups,
					...(identity.serviceAccount ? { serviceAccount: identity.serviceAccount } : {}),
				},
				grant: grant.key,
				origin: grant.origin,
				client: {
					address: this.raw.remoteAddress ?? "",
					...(this.raw.remotePort ? { port: this.raw.remotePort } : {}),
					...(this.startupParams.application_name ? { application: this.startupParams.application_name } : {}),
				},
				target: {
					database: target.database,
					upstreamUser: target.user,
					access,
					...(this.startupParams.user && !looksLikeToken(this.startupParams.user, token) ? { clientUser: this.startupParams.user } : {}),
				},
				startedAt: new Date().toISOString(),
				gateway: o.gatewayName ?? hostname(),
			}, { onFailure: (e) => onRecordingFailure(e) })
			.then(
				(ok) => ({ ok }),
				(error: unknown) => ({ error }),
			);
		/** The recording, or the connection is refused (before anything else: no recording, no session). */
		const recording = async (): Promise<SessionRecorder> => {
			const opened = await opening;
			if ("error" in opened) {
				throw new PgGatewayError("recording_unavailable", `session recording is unavailable, connection refused: ${(opened.error as Error).message}`);
			}
			return opened.ok;
		};
		let upstream: UpstreamConnection;
		try {
			upstream = await connectUpstream(target);
		} catch (e) {
			const recorder = await recording();
			await recorder.close({ reason: "error", message: (e as Error).message }).catch(() => undefined);
			throw e;
		}
		let recorder: SessionRecorder;
		try {
			recorder = await recording();
		} catch (e) {
			upstream.socket.destroy();
			throw e;
		}
		// A server that reads SQL differently from the gateway (its defaults, or the client's startup
		// client_encoding) would run statements the guardrails read as string contents.
		for (const name of PARSER_SETTING_NAMES) {
			const why = unsafeParserSetting(name, upstream.parameters.get(name));
			if (!why) continue;
			upstream.socket.destroy();
			await recorder.close({ reason: "error", message: why }).catch(() => undefined);
			throw new PgGatewayError("unsafe_parser_setting", `connection refused: ${why}`);
		}
		// Unqualified names resolve with the session's own search_path (role and database settings,
		// "$user" as its role), not the catalog connection's: read once, also when the client sent its
		// own. Taken verbatim, a client's `"$user", public` was read by the catalog connection as ITS
		// role's schema: under a grant's dynamic role, a schema named after the Connection's role
		// holding a clean `customers` made `SELECT phone || '' FROM customers` (public.customers to the
		// session) come out raw.
		let searchPath: string;
		try {
			searchPath = await readSearchPath(upstream);
		} catch (e) {
			upstream.socket.destroy();
			await recorder.close({ reason: "error", message: (e as Error).message }).catch(() => undefined);
			throw e;
		}
		if (this.phase === "closed" || this.socket.destroyed) {
			upstream.socket.destroy();
			await recorder.close({ reason: "client-closed" }).catch(() => undefined);
			return;
		}
		clearTimeout(this.timer);
		this.phase = "relay";
		this.socket.off("data", this.onData);
		this.socket.pause();

		this.parser.maxMessageBytes = o.maxClientMessageBytes ?? DEFAULT_MAX_CLIENT_MESSAGE_BYTES;
		const catalog = new SessionCatalog(this.l.catalogFor(bundle, connection, target));
		if (searchPath) catalog.searchPath = searchPath;
		const keys = this.l.newCancelKey();
		let unregister = () => {};
		let unwatch = () => {};
		const log = o.log ?? noopLog;
		const session = new Session({
			id: sessionId,
			client: this.socket,
			clientParser: this.parser,
			upstream,
			identity,
			grant,
			connection,
			access,
			live,
			catalog,
			policy: this.l.sqlPolicy,
			recorder,
			approvals: o.approvals,
			approvalTimeoutSec: o.approvalTimeoutSec ?? 600,
			maxServerMessageBytes: o.maxServerMessageBytes ?? DEFAULT_MAX_SERVER_MESSAGE_BYTES,
			idleTimeoutMs: o.idleTimeoutMs ?? 0,
			log,
			onClosed: () => {
				unregister();
				unwatch();
			},
		});
		unregister = this.l.register(session, keys.processId, keys.secretKey, target);
		onRecordingFailure = (e) => {
			const message = `terminating connection: the session's recording failed (${e.message}); a session is not run unrecorded`;
			void this.l.cancelRunning(session);
			session.terminate("recording_unavailable", message, { reason: "error", message });
		};
		if (recordingFailed) onRecordingFailure(recordingFailed);
		unwatch = store.watchGrant(grant.key, (reason, g) => {
			const message =
				reason === "expired"
					? `terminating connection: grant ${g.key} expired at ${g.expiresAt}`
					: `terminating connection: grant ${g.key} was revoked (removed from the configuration)`;
			void this.l.cancelRunning(session);
			session.terminate("grant_ended", message, { reason: reason === "expired" ? "grant-expired" : "grant-revoked", message });
		});
		// A changed grant (access level, credential, subjects) ends the session: it ran under the old terms.
		// So does a window moved to start later (git gave the grant a future notBefore: Pending again);
		// a start moved but still past changes nothing and keeps the session.
		const terms = (g: BundleGrant) => JSON.stringify([g.postgres, g.subjects, g.connection]);
		const original = terms(grant);
		const onChange = (next: LoadedBundle) => {
			// New masks apply to open sessions at once, but what a session did while none applied stays
			// in force where masking cannot see it (a temporary view shadowing a table, `SET search_path`,
			// both refused only while masking applies): `CREATE TEMP VIEW orders AS SELECT id, phone AS
			// status FROM customers`, made before the policy was merged, then showed `SELECT status || ''
			// FROM orders` raw under it. Such a session ends when masking starts to apply.
			if (session.namesUnseenByMasking && masks(next.policiesFor(connection.name))) {
				const message = `terminating connection: masking now applies to connection ${connection.name}; reconnect to work under it`;
				void this.l.cancelRunning(session);
				session.terminate("grant_ended", message, { reason: "policy", message });
				return;
			}
			const g = next.grantsByKey.get(grant.key);
			if (!g) return; // revocation: watchGrant's
			const postponed = Date.parse(g.notBefore) > store.now().getTime();
			if (!postponed && terms(g) === original) return;
			const message = postponed
				? `terminating connection: grant ${grant.key} is not valid before ${g.notBefore} (its window was moved); reconnect then`
				: `terminating connection: grant ${grant.key} changed (access, credential or subjects); reconnect to use the new terms`;
			void this.l.cancelRunning(session);
			session.terminate("grant_ended", message, { reason: "policy", message });
		};
		store.on("change", onChange);
		const unwatchGrant = unwatch;
		unwatch = () => {
			unwatchGrant();
			store.off("change", onChange);
		};
		// The token itself expiring does not end a session: the grant does (documented in README).
		const hello: Buffer[] = [serverMessages.authenticationOk()];
		for (const [k, v] of upstream.parameters) hello.push(serverMessages.parameterStatus(k, v));
		hello.push(serverMessages.backendKeyData(keys.processId, keys.secretKey));
		hello.push(serverMessages.readyForQuery(upstream.status));
		this.socket.write(Buffer.concat(hello));
		log.info(
			{ session: sessionId, identity: describeIdentity(identity), grant: grant.key, connection: connection.name, access },
			"postgres session started",
		);
		session.start();
	}

	private fatal(e: unknown): void {
		if (this.phase === "closed") return;
		const err = isPgGatewayError(e)
			? e
			: new PgGatewayError("upstream_unavailable", `gateway error: ${(e as Error)?.message ?? String(e)}`);
		(this.l.options.log ?? noopLog).warn({ code: err.code, err: err.message }, "postgres connection refused");
		if (!this.socket.destroyed) this.socket.end(serverMessages.error(errorFieldsOf(err)));
		this.close();
	}

	private close(): void {
		if (this.phase === "closed") return;
		this.phase = "closed";
		clearTimeout(this.timer);
		this.socket.end();
		setTimeout(() => this.socket.destroy(), 1000).unref();
	}
}

/**
 * A stream that yields `first` and then everything `raw` receives: the TLS layer must see the
 * ClientHello bytes we already read to detect direct TLS (a native handle would not).
 */
function replayStream(raw: Socket, first: Buffer): Duplex {
	const d = new Duplex({
		read() {
			raw.resume();
		},
		write(chunk: Buffer, _enc, cb) {
			raw.write(chunk, cb);
		},
		final(cb) {
			raw.end();
			cb();
		},
		destroy(err, cb) {
			raw.destroy(err ?? undefined);
			cb(err);
		},
	});
	d.push(first);
	raw.on("data", (c: Buffer) => {
		if (!d.push(c)) raw.pause();
	});
	raw.on("end", () => d.push(null));
	raw.on("close", () => d.destroy());
	return d;
}

function upstreamTarget(
	bundle: LoadedBundle,
	connection: BundleConnection,
	grant: BundleGrant,
	access: PostgresAccess,
	params: Record<string, string>,
	connectTimeoutMs: number | undefined,
	maxMessageBytes: number | undefined,
): UpstreamTarget {
	const pgc = connection.postgres;
	const credentialId = grant.postgres?.credentialRef ?? connection.credentialRef;
	const credential = credentialId ? bundle.bundle.credentials[credentialId] : undefined;
	if (credential?.type !== "password") {
		throw new PgGatewayError("upstream_unavailable", `connection ${connection.name} has no PostgreSQL password credential in the bundle`);
	}
	const parameters: Record<string, string> = {};
	for (const [k, v] of Object.entries(params)) if (FORWARDED_PARAMETERS.has(k)) parameters[k] = v;
	parameters.application_name = `drawbridge${params.application_name ? `:${params.application_name}` : ""}`.slice(0, 63);
	// The gateway reads SQL as UTF-8 with standard_conforming_strings on: the session starts so even
	// where the server's, database's or role's default says otherwise (the client's own
	// client_encoding, when it sends one, is checked against the server's report instead).
	if (parameters.client_encoding === undefined) parameters.client_encoding = "UTF8";
	const options = ["-c standard_conforming_strings=on"];
	if (access === "read-only") options.push("-c default_transaction_read_only=on");
	parameters.options = options.join(" ");
	return {
		host: connection.host,
		port: connection.port,
		database: pgc?.database ?? connection.name,
		user: credential.username,
		password: credential.password,
		sslmode: pgc?.sslmode ?? "verify-full",
		...(pgc?.caPem ? { caPem: pgc.caPem } : {}),
		...(pgc?.serverName ? { serverName: pgc.serverName } : {}),
		parameters,
		...(connectTimeoutMs !== undefined ? { connectTimeoutMs } : {}),
		...(maxMessageBytes !== undefined ? { maxMessageBytes } : {}),
	};
}

/** Create a listener; call `listen(port)` and later `close()`. */
export function startPostgresListener(options: PostgresListenerOptions): PostgresListener {
	return new PostgresListener(options);
}
