/**
 * The SSH data path: an ssh2 server with the gateway's pinned host key. Agents authenticate with an
 * OpenSSH user certificate from the operator's CA (verified in cert.ts) or with a token as password /
 * keyboard-interactive. The gateway then opens its own SSH connection to the target (gateway-held
 * key; the target's host key must be one the Connection pins: no trust on first use) and relays
 * channels: shell with pty, exec, the sftp subsystem; port and agent forwarding only when the grant
 * allows them. Exec commands and (best effort) shell lines pass the grant's allow-list and the
 * GuardrailPolicies; sessions are recorded; the session ends when the grant does.
 *
 * Target selection: the SSH user name is `login@connection` (e.g. `ssh -l root@db-primary -p 2222
 * gateway`, or `ssh root@db-primary@gateway`); a bare `login` picks the connection from the
 * certificate's/token's grant, or the only SSH connection the identity has a grant on.
 *
 * Sequence diagram: gateway/ssh/README.md.
 */
import { randomUUID } from "node:crypto";
import { EventEmitter } from "node:events";
import { createRequire } from "node:module";
import { type AddressInfo, createServer, type Server as NetServer, type Socket } from "node:net";
import { StringDecoder } from "node:string_decoder";
import ssh2 from "ssh2";
import type {
	AuthContext,
	ClientChannel,
	Connection,
	PseudoTtyInfo,
	PseudoTtyOptions,
	ServerChannel,
	Session,
} from "ssh2";
import { requesterOf } from "../approvals/decision.ts";
import type { ApprovalService } from "../approvals/types.ts";
import type { BundleConnection, BundleGrant, Identity } from "../config/bundle.ts";
import type { BundleStore, LoadedBundle } from "../config/store.ts";
import { findGrants, noGrantMessage } from "../identity/grants.ts";
import type { Decision, Recorder, SessionRecorder } from "../recording/events.ts";
import { rejectChannelOpen, sendAuthBanner, sendDisconnect } from "./banner.ts";
import {
	authorizedKeyLine,
	fingerprint,
	isCertificateAlgorithm,
	parseAuthorizedKey,
	parseCertificate,
	type SshPublicKey,
	verifySshSignature,
	verifyUserCertificate,
	type VerifiedCertificate,
} from "./cert.ts";
import { SshGatewayError } from "./errors.ts";
import { ChannelOpenFailure, DisconnectReason, refusalBytes } from "./refuse.ts";
import { printable } from "../policy/glob.ts";
import { CHARSET_VARIABLES, evaluateSshAccess, evaluateSshCommand, isSafeCharsetLocale, parseShellCommand } from "../policy/ssh.ts";
import { LineTracker, TerminalModes } from "./guard.ts";
import { poolOutgoingPackets } from "./packet-pool.ts";
import { SftpGuard, SftpObserver } from "./sftp.ts";
import { mintSessionCertificate, presentCertificate, type SessionCertificate } from "./upstream-cert.ts";

const { Server, Client, utils } = ssh2;

/**
 * Values of the environment variables the gateway relays (LANG, LC_*, TERM, and the terminal type of a
 * pty-req, which sshd sets as TERM): locale and terminal names (`en_US.UTF-8`, `de_DE@euro`,
 * `xterm-256color`). Nothing a shell could evaluate: bash re-reads a variable's value as an arithmetic
 * expression (`${a[VAR]}`, `${!VAR}` naming `a[$(cmd)]`) or a prompt string (`${VAR@P}`), so a value
 * with `$`, backquotes, brackets or parentheses runs a command that an allowed `echo *` never shows.
 */
export function isPlainEnvValue(v: string): boolean {
	return /^[A-Za-z0-9._+@-]{0,64}$/.test(v);
}

/**
 * Whether a LANG / LC_ALL / LC_CTYPE value travels (gateway/policy/ssh.ts `isSafeCharsetLocale`; a
 * typed or sent assignment of them is checked there too, `readingChange`).
 */
export { isSafeCharsetLocale };

/** Tokenizer errors that mean the command goes on in the next line (bash shows its PS2 prompt). */
const GOES_ON = new Set(["unterminated single quote", "unterminated double quote", "unterminated $( )", "unterminated backtick", "unterminated $'...' string"]);

/** Whether a shell runs `command` only with the lines that follow it: an open quote or substitution, or a trailing backslash. */
export function commandGoesOn(command: string): boolean {
	if (/(?:^|[^\\])(?:\\\\)*\\$/.test(command)) return true;
	const error = parseShellCommand(command).error;
	return error !== undefined && GOES_ON.has(error);
}

export interface SshListenerOptions {
	store: BundleStore;
	recorder: Recorder;
	approvals: ApprovalService;
	/** Gateway host private key (OpenSSH or PEM). Its public half is what agents pin. */
	hostKeyPem: string;
	/**
	 * CA public keys (authorized_keys lines) whose user certificates are accepted, in addition to the
	 * bundle's `ssh.userCaKeys` (read per bundle version, so CA rotation needs no restart). None at all =
	 * certificates off.
	 */
	trustedUserCAKeys?: readonly string[];
	host?: string;
	/** 0 picks a free port (default). */
	port?: number;
	gatewayName?: string;
	/** Command evaluator; default gateway/policy's `evaluateSshCommand` (tests may wrap it). */
	evaluate?: typeof evaluateSshCommand;
	/** Upstream connect + auth timeout, ms (default 10000). */
	upstreamTimeoutMs?: number;
	/**
	 * Cipher preference for the gateway → target leg (default `DEFAULT_UPSTREAM_CIPHERS`: AES-GCM first
	 * when ssh2's native binding is loaded, AES-CTR first when not; see README "Throughput").
	 */
	upstreamCiphers?: string[];
	/** Allowed clock skew for certificate validity, seconds (default 0). */
	certClockToleranceSec?: number;
	/** TCP accept → authenticated, ms; a client silent or stalling longer is cut (default 30000). */
	authTimeoutMs?: number;
	/**
	 * Concurrent client connections at most, handshakes and sessions alike (default 1000). A connection
	 * over the cap gets the identification line and SSH_MSG_DISCONNECT (TOO_MANY_CONNECTIONS, with a
	 * description OpenSSH prints) before any key exchange; beyond twice the cap new TCP connections are
	 * closed at accept without an answer.
	 */
	maxConnections?: number;
	/**
	 * Session channels open at once on one connection, at most (default 10, OpenSSH's `MaxSessions`).
	 * One more gets SSH_MSG_CHANNEL_OPEN_FAILURE (resource shortage) with a description; the open
	 * ones are untouched. Port-forwarding channels are not counted.
	 */
	maxSessions?: number;
	/**
	 * Failed authentication requests per connection, at most (default 6, OpenSSH's `MaxAuthTries`; a
	 * first `none` request is free, as in OpenSSH). The next request after that many failures is
	 * answered with SSH_MSG_DISCONNECT (NO_MORE_AUTH_METHODS_AVAILABLE) instead of being checked.
	 */
	maxAuthTries?: number;
	/**
	 * Approval requests one connection may have pending at once (default 3). A command that would
	 * raise one more is refused (stderr + exit 1) without asking anyone.
	 */
	maxPendingApprovals?: number;
	/** Called once per refused connection (for metrics); never given anything about the client. */
	onRefused?: (reason: SshRefusalReason) => void;
	/** Called once per channel or command refused by a per-connection limit (for metrics). */
	onLimited?: (reason: SshLimitReason) => void;
}

/** Why a connection was refused (before key exchange, or during authentication). */
export type SshRefusalReason = "max-connections" | "shutting-down" | "max-auth-tries";

/** Why a channel or command of an authenticated connection was refused by a per-connection limit. */
export type SshLimitReason = "max-sessions" | "max-pending-approvals";

export const DEFAULT_MAX_CONNECTIONS = 1000;
export const DEFAULT_MAX_SESSIONS = 10;
export const DEFAULT_MAX_AUTH_TRIES = 6;
export const DEFAULT_MAX_PENDING_APPROVALS = 3;

/** A positive integer option, or its default. */
function limit(name: string, value: number | undefined, fallback: number): number {
	const v = value ?? fallback;
	if (!Number.isSafeInteger(v) || v < 1) throw new TypeError(`${name}: expected a positive integer, got ${v}`);
	return v;
}

/** How long a refused connection is kept half-closed so the client reads the DISCONNECT before any RST. */
const REFUSAL_LINGER_MS = 2_000;

export interface SshListenerEvents {
	/** Authentication outcome, for logs and tests (never contains the token). */
	auth: [info: { ok: boolean; user: string; method: string; reason?: string; grant?: string }];
	error: [err: Error];
}

interface AuthResult {
	identity: Identity;
	connection: BundleConnection;
	grant: BundleGrant;
	login: string;
	cert?: VerifiedCertificate;
	method: "certificate" | "password" | "keyboard-interactive";
}

/** Per-client state after authentication. */
interface SessionState {
	id: string;
	auth: AuthResult;
	bundle: LoadedBundle;
	recorder: SessionRecorder;
	upstream: Promise<InstanceType<typeof Client>>;
	channels: Set<ServerChannel>;
	/** Shell channels (and exec channels with a pty) started without line checks (no `ssh.commands` rule applied then). */
	uncheckedShells: Set<ServerChannel>;
	/** Approval requests of this connection not decided yet (bounded by `maxPendingApprovals`). */
	pendingApprovals: number;
	/**
	 * Exec commands running on the target, each with the function that records it (once): at its exit,
	 * or when the session ends first, without an exit status.
	 */
	running: Set<() => void>;
	ended: boolean;
	endReason?: string;
	/** Stops watching the grant and the bundle (called when the session ends). */
	unwatch: () => void;
}

/**
 * Whether ssh2's native crypto binding loaded (built by scripts/build-ssh2-binding.mjs at install).
 * Without it ssh2 encrypts with a new `node:crypto` context per packet and a JS poly1305.
 */
export const sshCryptoBinding: boolean = (
	createRequire(import.meta.url)("ssh2/lib/protocol/crypto.js") as { bindingAvailable: boolean }
).bindingAvailable;

/**
 * Gateway → target cipher preference (README "Throughput"). With the binding AES-GCM is the cheapest
 * by far (one OpenSSL context, AES-NI: ~5 µs per 32 KiB packet, chacha20-poly1305 ~11 µs,
 * AES-CTR + HMAC-SHA2 ~25 µs); without it ssh2 builds a new AES-GCM context per packet and CTR, which
 * keeps one, is cheaper.
 */
export const DEFAULT_UPSTREAM_CIPHERS: readonly string[] = sshCryptoBinding
	? ["aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com", "aes128-ctr", "aes256-ctr"]
	: ["aes128-ctr", "aes256-ctr", "aes128-gcm@openssh.com", "aes256-gcm@openssh.com", "chacha20-poly1305@openssh.com"];

type Decided =
	| { decision: Decision; rule?: string; approvalId?: string }
	| { refused: string; decision: Decision; rule?: string; approvalId?: string };

/** What a session was admitted under: a change ends it (the Connection's definition included). */
function sessionTerms(bundle: LoadedBundle, auth: { grant: BundleGrant; connection: BundleConnection }): string {
	const g = bundle.grantsByKey.get(auth.grant.key);
	const c = bundle.connection(auth.connection.name);
	return JSON.stringify([
		g ? [g.ssh, g.subjects, g.connection, g.notBefore, g.approvers] : null,
		c ? [c.type, c.host, c.port, c.ssh, c.credentialRef, c.credentialRef ? bundle.bundle.credentials[c.credentialRef] : null] : null,
	]);
}

/** Whether a guardrail rule with `ssh.commands` applies to the connection (shell lines are then checked). */
function lineRulesApply(bundle: LoadedBundle, connection: string): boolean {
	return bundle.policiesFor(connection).guardrailRules.some((r) => (r.ssh?.commands?.length ?? 0) > 0);
}

/** Records the exec commands still running (the session is ending): before the notice saying why. */
function recordRunning(state: SessionState): void {
	for (const record of [...state.running]) record();
}

function closeWithMessage(ch: ServerChannel, message: string): void {
	try {
		ch.stderr.write(`\r\n${message}\r\n`);
		ch.exit(255);
		ch.end();
		ch.close();
	} catch {
		// channel already gone
	}
}

function splitUser(user: string): { login: string; connection?: string } {
	const at = user.lastIndexOf("@");
	if (at <= 0) return { login: user };
	return { login: user.slice(0, at), connection: user.slice(at + 1) };
}

export class SshListener extends EventEmitter<SshListenerEvents> {
	readonly #opts: SshListenerOptions;
	readonly #server: InstanceType<typeof Server>;
	/** Raw sockets whose client authenticated (the handshake deadline no longer applies). */
	readonly #authenticated = new WeakSet<Socket>();
	readonly #cas: SshPublicKey[];
	readonly #evaluate: typeof evaluateSshCommand;
	readonly #clients = new Set<Connection>();
	readonly #hostPublic: { type: string; blob: Buffer };
	/** The listening socket; admitted connections are handed to ssh2 with `injectSocket`. */
	readonly #net: NetServer;
	/** Open connections counted against `maxConnections` (not refused ones). */
	#admitted = 0;
	#draining = false;
	/** Refused connections still lingering (destroyed by close()). */
	readonly #refused = new Set<Socket>();
	readonly maxConnections: number;
	readonly maxSessions: number;
	readonly maxAuthTries: number;
	readonly maxPendingApprovals: number;

	constructor(opts: SshListenerOptions) {
		super();
		this.#opts = opts;
		this.#cas = (opts.trustedUserCAKeys ?? []).map((l) => parseAuthorizedKey(l));
		this.#evaluate = opts.evaluate ?? evaluateSshCommand;
		const parsed = utils.parseKey(opts.hostKeyPem);
		if (parsed instanceof Error) throw new TypeError(`host key: ${parsed.message}`);
		const key = Array.isArray(parsed) ? parsed[0]! : parsed;
		this.#hostPublic = { type: key.type, blob: key.getPublicSSH() };
		this.#server = new Server({ hostKeys: [opts.hostKeyPem], ident: "Drawbridge" }, (client) => this.#onClient(client));
		this.#server.on("error", (e: Error) => this.#reportError(e));
		const max = limit("maxConnections", opts.maxConnections, DEFAULT_MAX_CONNECTIONS);
		this.maxConnections = max;
		this.maxSessions = limit("maxSessions", opts.maxSessions, DEFAULT_MAX_SESSIONS);
		this.maxAuthTries = limit("maxAuthTries", opts.maxAuthTries, DEFAULT_MAX_AUTH_TRIES);
		this.maxPendingApprovals = limit("maxPendingApprovals", opts.maxPendingApprovals, DEFAULT_MAX_PENDING_APPROVALS);
		// The gateway owns the listening socket so it can refuse with a reason before ssh2 starts a key
		// exchange (refuse.ts); ssh2's own server never listens and gets admitted sockets only.
		this.#net = createServer({ noDelay: true }, (sock) => this.#accept(sock));
		this.#net.on("error", (e: Error) => this.#reportError(e));
		// Backstop: refused connections are held briefly (REFUSAL_LINGER_MS), so they are bounded too.
		this.#net.maxConnections = 2 * max;
		this.#net.on("drop", () => opts.onRefused?.("max-connections"));
	}

	#accept(sock: Socket): void {
		sock.on("error", () => sock.destroy());
		if (this.#draining || this.#admitted >= this.maxConnections) {
			this.#refuseConnection(sock, this.#draining ? "shutting-down" : "max-connections");
			return;
		}
		this.#admitted++;
		sock.once("close", () => this.#admitted--);
		// ssh2 has no handshake deadline and emits a client only after its identification line, so a
		// silent or stalling TCP client would hold its socket forever: the deadline sits on the raw socket.
		const timer = setTimeout(() => {
			if (!this.#authenticated.has(sock)) sock.destroy();
		}, this.#opts.authTimeoutMs ?? 30_000);
		timer.unref();
		sock.once("close", () => clearTimeout(timer));
		this.#server.injectSocket(sock);
	}

	/**
	 * Identification line + SSH_MSG_DISCONNECT, then a half-close; whatever the client sends meanwhile
	 * (its identification, KEXINIT) is read and dropped so no RST overtakes the DISCONNECT.
	 */
	#refuseConnection(sock: Socket, reason: SshRefusalReason): void {
		this.#opts.onRefused?.(reason);
		const bytes =
			reason === "shutting-down"
				? refusalBytes(
						DisconnectReason.ByApplication,
						"drawbridge: the gateway is shutting down and accepts no new connections; reconnect (another replica will take it)",
					)
				: refusalBytes(
						DisconnectReason.TooManyConnections,
						`drawbridge: the gateway's connection limit was reached (at most ${this.maxConnections} concurrent SSH connections); try again later`,
					);
		this.#refused.add(sock);
		sock.on("data", () => {});
		sock.end(bytes);
		const timer = setTimeout(() => sock.destroy(), REFUSAL_LINGER_MS);
		timer.unref();
		sock.once("close", () => {
			clearTimeout(timer);
			this.#refused.delete(sock);
		});
	}

	/** Open client connections counted against `maxConnections` (handshakes and sessions). */
	get connectionCount(): number {
		return this.#admitted;
	}

	/** Clients ssh2 has taken over (handshaking or authenticated): what a shutdown waits for. */
	get sessionCount(): number {
		return this.#clients.size;
	}

	/**
	 * Start draining for shutdown: from now on a new connection is refused with SSH_MSG_DISCONNECT
	 * saying the gateway is shutting down; live sessions go on until `close()`.
	 */
	drain(): void {
		this.#draining = true;
	}

	get isDraining(): boolean {
		return this.#draining;
	}

	/** `type base64` of the gateway host key: publish it for `known_hosts` / `@cert-authority` pinning. */
	get hostPublicKey(): string {
		return authorizedKeyLine({ type: this.#hostPublic.type as SshPublicKey["type"], blob: this.#hostPublic.blob });
	}

	/** `SHA256:...` fingerprint of the gateway host key. */
	get hostKeyFingerprint(): string {
		return fingerprint(this.#hostPublic.blob);
	}

	/** `error` events are informational (logs): never let a missing listener crash the gateway. */
	#reportError(e: Error): void {
		if (this.listenerCount("error") > 0) this.emit("error", e);
	}

	async listen(): Promise<AddressInfo> {
		await new Promise<void>((resolve, reject) => {
			this.#net.once("error", reject);
			this.#net.listen(this.#opts.port ?? 0, this.#opts.host ?? "127.0.0.1", () => {
				this.#net.off("error", reject);
				resolve();
			});
		});
		return this.address;
	}

	get address(): AddressInfo {
		return this.#net.address() as AddressInfo;
	}

	async close(): Promise<void> {
		const closed = new Promise<void>((resolve) => this.#net.close(() => resolve()));
		for (const s of this.#refused) s.destroy();
		for (const c of this.#clients) c.end();
		await closed;
	}

	// -------------------------------------------------------------------------------------------
	// Authentication

	#onClient(client: Connection): void {
		this.#clients.add(client);
		let state: SessionState | undefined;
		/** The session of the request being accepted right now: 'ready' (emitted inside accept()) takes it. */
		let accepting: SessionState | undefined;
		let closed = false;
		let lastFailure: string | undefined;
		poolOutgoingPackets(client);
		const sock = (client as unknown as { _sock?: { remoteAddress?: string; remotePort?: number } })._sock;
		const clientAddress = sock?.remoteAddress ?? "";
		const clientPort = sock?.remotePort ?? 0;
		client.on("error", () => {});
		client.on("close", () => {
			closed = true;
			this.#clients.delete(client);
			if (state) void this.#endSession(state, { reason: "client-closed" });
		});
		// MaxAuthTries: failed requests (and ones still being checked) count; a first `none` is free.
		let authRequests = 0;
		let authFailures = 0;
		let authChecking = 0;
		let tooManyTries = false;
		client.on("authentication", (ctx: AuthContext) => {
			if (tooManyTries) return;
			authRequests++;
			const counted = !(authRequests === 1 && ctx.method === "none");
			if (counted && authFailures + authChecking >= this.maxAuthTries) {
				tooManyTries = true;
				this.#refuseAuth(client, ctx);
				return;
			}
			if (counted) authChecking++;
			let settled = !counted;
			const settle = (failed: boolean) => {
				if (settled) return;
				settled = true;
				authChecking--;
				if (failed) authFailures++;
			};
			void this.#authenticate(ctx, clientAddress)
				.then(async (result) => {
					settle(false);
					if (result === undefined) return; // PK_OK sent or prompt pending
					if (closed || state) return;
					const opened = await this.#openSession(result, client, clientAddress, clientPort);
					// The session (recording, upstream connection, grant watch) exists before USERAUTH_SUCCESS so
					// that a recording failure refuses the login. It only lives on if this request is the one
					// ssh2 accepts: the client may have gone meanwhile, or sent a new USERAUTH_REQUEST (ssh2
					// then ignores accept() of the superseded one), and nothing else would ever end it.
					if (!closed && !state) {
						accepting = opened;
						ctx.accept(); // emits 'ready' synchronously when this request is still the current one
						accepting = undefined;
					}
					if (state !== opened) {
						opened.recorder.emit({ type: "notice", message: "authentication superseded or client gone before the session started" });
						void this.#endSession(opened, { reason: "client-closed" });
						return;
					}
					this.emit("auth", { ok: true, user: ctx.username, method: result.method, grant: result.grant.key });
				})
				.catch((e: unknown) => {
					settle(true);
					const err = e instanceof SshGatewayError ? e : new SshGatewayError("upstream", (e as Error).message);
					const reason = `drawbridge: ${err.message}`;
					this.emit("auth", { ok: false, user: ctx.username, method: ctx.method, reason: err.message });
					const proto = (ctx as unknown as { _protocol?: unknown })._protocol;
					// Authenticated but not allowed: nothing else will work, say why and hang up.
					if (err.code === "no-grant" || err.code === "unknown-connection" || err.code === "upstream") {
						sendAuthBanner(proto, reason);
						ctx.reject([]);
						setImmediate(() => client.end());
						return;
					}
					if (reason !== lastFailure && err.code !== "auth-method") sendAuthBanner(proto, reason);
					lastFailure = reason;
					ctx.reject(["publickey", "password", "keyboard-interactive"]);
				});
		});
		client.on("ready", () => {
			const raw = (client as unknown as { _sock?: Socket })._sock;
			if (raw) this.#authenticated.add(raw);
			state = accepting;
			if (!state) {
				client.end();
				return;
			}
			const s = state;
			// MaxSessions: session channels open at once on this connection.
			let openSessions = 0;
			client.on("session", (accept, reject) => {
				if (openSessions >= this.maxSessions) {
					const message = `drawbridge: at most ${this.maxSessions} session channels may be open at once on one SSH connection; close one or open another connection`;
					this.#opts.onLimited?.("max-sessions");
					s.recorder.emit({ type: "notice", message: `session channel refused: ${this.maxSessions} already open` });
					rejectChannelOpen((client as unknown as { _protocol?: unknown })._protocol, reject, ChannelOpenFailure.ResourceShortage, message);
					return;
				}
				const session = accept();
				openSessions++;
				// The client closing the session (or the whole connection) must end work held for it, such
				// as an approval wait: ssh2 emits 'close' on the channel only once its input was read.
				const gone = new AbortController();
				const onClientClose = () => gone.abort();
				client.once("close", onClientClose);
				let open = true;
				const release = () => {
					if (!open) return;
					open = false;
					openSessions--;
				};
				session.once("close", () => {
					release();
					client.off("close", onClientClose);
					gone.abort();
				});
				this.#onSession(s, session, release, gone.signal);
			});
			client.on("tcpip", (accept, reject, info) =>
				this.#onDirectTcpip(s, (client as unknown as { _protocol?: unknown })._protocol, accept, reject, info),
			);
			client.on("request", (_accept, reject) => {
				// tcpip-forward (remote forwarding) is not offered.
				reject?.();
			});
		});
	}

	/**
	 * Too many failed authentication requests: SSH_MSG_DISCONNECT with a description (OpenSSH prints it),
	 * then the socket is ended; the request itself is not checked (no signature or token verification).
	 */
	#refuseAuth(client: Connection, ctx: AuthContext): void {
		this.#opts.onRefused?.("max-auth-tries");
		this.emit("auth", { ok: false, user: ctx.username, method: ctx.method, reason: "too many authentication attempts" });
		const proto = (client as unknown as { _protocol?: unknown })._protocol;
		sendDisconnect(
			proto,
			DisconnectReason.NoMoreAuthMethodsAvailable,
			`drawbridge: too many authentication attempts (at most ${this.maxAuthTries} failures per connection); check your certificate or token, and offer only it (IdentitiesOnly=yes)`,
		);
		const raw = (client as unknown as { _sock?: Socket })._sock;
		if (!raw) {
			client.end();
			return;
		}
		raw.end();
		setTimeout(() => raw.destroy(), REFUSAL_LINGER_MS).unref();
	}

	/** Resolves with the result, or undefined when the exchange continues (PK_OK / prompts). */
	async #authenticate(ctx: AuthContext, clientAddress: string): Promise<AuthResult | undefined> {
		const { login, connection: connName } = splitUser(ctx.username);
		const bundle = this.#opts.store.current;
		const now = this.#opts.store.now();
		if (ctx.method === "publickey") {
			if (!isCertificateAlgorithm(ctx.key.algo)) {
				throw new SshGatewayError(
					"cert-unsupported",
					"plain public keys are not accepted: present a Drawbridge SSH certificate or your token as the password",
				);
			}
			const trustedCAs = this.#trustedCAs(bundle);
			if (trustedCAs.length === 0) throw new SshGatewayError("cert-untrusted-ca", "this gateway accepts no SSH certificates");
			const cert = parseCertificate(ctx.key.data);
			const verified = verifyUserCertificate(cert, {
				trustedCAs,
				principal: login,
				now,
				clientAddress,
				clockToleranceSec: this.#opts.certClockToleranceSec ?? 0,
			});
			if (!ctx.signature || !ctx.blob) {
				// Query: "would you accept this key?" Yes (the certificate checks out); the signature comes next.
				(ctx as unknown as { accept(): void }).accept();
				return undefined;
			}
			if (!verifySshSignature(cert.publicKey, ctx.blob, ctx.signature)) {
				throw new SshGatewayError("auth-bad-signature", "signature does not verify with the certified key");
			}
			const identity: Identity = {
				issuer: `ssh-ca:${verified.caFingerprint}`,
				issuerKind: "drawbridge",
				subject: verified.subject,
				username: verified.subject,
				groups: [],
				tokenExpiresAt: verified.validBefore,
				claims: { keyId: cert.keyId, serial: cert.serial.toString(), principals: cert.principals },
			};
			if (verified.grant) identity.grant = verified.grant;
			if (verified.grantSubjects) identity.grantSubjects = verified.grantSubjects;
			// The operator names service-account subjects the Kubernetes way.
			const sa = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(verified.subject);
			if (sa) identity.serviceAccount = { namespace: sa[1]!, name: sa[2]! };
			return { ...this.#resolve(identity, login, connName, bundle, now), cert: verified, method: "certificate" };
		}
		if (ctx.method === "password") {
			const identity = await this.#verifyToken(bundle, ctx.password);
			return { ...this.#resolve(identity, login, connName, bundle, now), method: "password" };
		}
		if (ctx.method === "keyboard-interactive") {
			const answers = await new Promise<string[]>((resolve) => {
				ctx.prompt([{ prompt: "Drawbridge token: ", echo: false }], "Drawbridge", "Paste your access token.", (a) => resolve(a));
			});
			const identity = await this.#verifyToken(bundle, answers[0] ?? "");
			return { ...this.#resolve(identity, login, connName, bundle, now), method: "keyboard-interactive" };
		}
		// "none" (and hostbased): no banner, just the list of methods that can work.
		throw new SshGatewayError("auth-method", "authenticate with a Drawbridge SSH certificate or a token as the password");
	}

	#bundleCAs: { version: number; keys: SshPublicKey[] } | undefined;

	/** Option CAs plus the bundle's `ssh.userCaKeys` (parsed once per bundle version; bad lines skipped). */
	#trustedCAs(bundle: LoadedBundle): SshPublicKey[] {
		if (this.#bundleCAs?.version !== bundle.version) {
			const keys: SshPublicKey[] = [];
			for (const line of bundle.bundle.ssh?.userCaKeys ?? []) {
				try {
					keys.push(parseAuthorizedKey(line));
				} catch (e) {
					this.#reportError(new Error(`bundle ssh.userCaKeys: ${(e as Error).message}`));
				}
			}
			this.#bundleCAs = { version: bundle.version, keys };
		}
		return [...this.#cas, ...this.#bundleCAs.keys];
	}

	async #verifyToken(bundle: LoadedBundle, token: string): Promise<Identity> {
		try {
			return await bundle.verifier.verify(token);
		} catch (e) {
			throw new SshGatewayError("auth-token", (e as Error).message);
		}
	}

	#resolve(
		identity: Identity,
		login: string,
		connName: string | undefined,
		bundle: LoadedBundle,
		now: Date,
	): Omit<AuthResult, "method" | "cert"> {
		let connection: BundleConnection | undefined;
		if (connName !== undefined) {
			connection = bundle.connection(connName);
			if (connection?.type !== "ssh") throw new SshGatewayError("unknown-connection", `no SSH connection named "${connName}"`);
		} else if (identity.grant) {
			const g = bundle.grantsByKey.get(identity.grant);
			connection = g ? bundle.connection(g.connection) : undefined;
			if (connection?.type !== "ssh") throw new SshGatewayError("no-grant", `grant ${identity.grant} is not an active SSH grant`);
		} else {
			const candidates = bundle.bundle.connections.filter(
				(c) => c.type === "ssh" && findGrants(identity, c.name, bundle.grantsFor(c.name), now).active.length > 0,
			);
			if (candidates.length !== 1) {
				throw new SshGatewayError(
					"unknown-connection",
					candidates.length === 0
						? `no SSH grant for ${identity.username}`
						: `several SSH connections granted (${candidates.map((c) => c.name).join(", ")}): log in as ${login}@<connection>`,
				);
			}
			connection = candidates[0]!;
		}
		const lookup = findGrants(identity, connection.name, bundle.grantsFor(connection.name), now);
		if (lookup.active.length === 0) throw new SshGatewayError("no-grant", noGrantMessage(identity, connection.name, lookup));
		const grant = lookup.active.find((g) => g.ssh?.logins.includes(login));
		if (!grant) {
			const logins = [...new Set(lookup.active.flatMap((g) => g.ssh?.logins ?? []))];
			throw new SshGatewayError(
				"no-grant",
				`grant ${lookup.active[0]!.key} does not allow login "${login}" on ${connection.name} (allowed: ${logins.join(", ") || "none"})`,
			);
		}
		return { identity, connection, grant, login };
	}

	async #openSession(auth: AuthResult, client: Connection, address: string, port: number): Promise<SessionState> {
		const bundle = this.#opts.store.current;
		const sessionId = randomUUID();
		// Dialled while the recording opens (openSession waits for the spool folder's fsyncs): the
		// target's handshake no longer starts only after them. Nothing is sent to it before a channel
		// the session accepted asks, and a recording that fails to open ends it.
		const upstream = this.#connectUpstream(auth, bundle, sessionId);
		upstream.catch(() => {});
		// The spool stopping taking this session's events (a disk failure) ends the session: it must not
		// run unrecorded. Until the session is set up, the failure waits for it.
		let recordingFailed: Error | undefined;
		let onRecordingFailure = (e: Error) => {
			recordingFailed ??= e;
		};
		let recorder: SessionRecorder;
		try {
			recorder = await this.#opts.recorder.openSession({
				sessionId,
				protocol: "ssh",
				connection: auth.connection.name,
				connectionNamespace: auth.connection.namespace,
				identity: {
					issuer: auth.identity.issuer,
					subject: auth.identity.subject,
					username: auth.identity.username,
					groups: auth.identity.groups,
					...(auth.identity.serviceAccount ? { serviceAccount: auth.identity.serviceAccount } : {}),
				},
				grant: auth.grant.key,
				origin: auth.grant.origin,
				client: { address, port },
				target: {
					login: auth.login,
					host: `${auth.connection.host}:${auth.connection.port}`,
					auth: auth.method,
					...(auth.cert ? { certificateSerial: auth.cert.cert.serial.toString(), certificateKeyId: auth.cert.cert.keyId } : {}),
				},
				startedAt: new Date().toISOString(),
				gateway: this.#opts.gatewayName ?? "gateway",
			}, { onFailure: (e) => onRecordingFailure(e) });
		} catch (e) {
			upstream.then(
				(u) => u.end(),
				() => {},
			);
			throw new SshGatewayError("upstream", `recording unavailable, session refused: ${(e as Error).message}`);
		}
		const state: SessionState = {
			id: recorder.sessionId,
			auth,
			bundle,
			recorder,
			upstream,
			channels: new Set(),
			uncheckedShells: new Set(),
			running: new Set(),
			pendingApprovals: 0,
			ended: false,
			unwatch: () => {},
		};
		state.upstream.then(
			(u) =>
				u.on("close", () => {
					// The target went away (reboot, network): end the agent's connection too.
					if (state.ended) return;
					recorder.emit({ type: "notice", message: `connection to ${auth.connection.name} closed by the target` });
					void this.#endSession(state, { reason: "upstream-closed" });
					client.end();
				}),
			() => {},
		);
		const endAll = (message: string, reason: "grant-expired" | "grant-revoked" | "policy" | "error") => {
			state.endReason = message;
			recordRunning(state);
			for (const ch of state.channels) closeWithMessage(ch, message);
			recorder.emit({ type: "notice", message });
			void this.#endSession(state, { reason, message });
			setTimeout(() => client.end(), 100).unref();
		};
		onRecordingFailure = (e) => {
			if (!state.ended) endAll(`drawbridge: the session's recording failed (${e.message}); closing the session`, "error");
		};
		if (recordingFailed) onRecordingFailure(recordingFailed);
		const unwatchGrant = this.#opts.store.watchGrant(auth.grant.key, (why, g) => {
			endAll(
				why === "expired"
					? `drawbridge: grant ${g.key} expired at ${g.expiresAt}; closing the session`
					: `drawbridge: grant ${g.key} was revoked; closing the session`,
				why === "expired" ? "grant-expired" : "grant-revoked",
			);
		});
		// A connection lives as long as the agent keeps it (ControlMaster, ControlPersist): it must not
		// keep terms the bundle no longer grants. A changed grant (subjects, logins, shell/sftp/forwarding,
		// allowedCommands, approvers) or Connection (endpoint, pinned host keys, credential) ends it;
		// guardrail rules are read from the current bundle at every decision, and a shell started without
		// line checks is closed when line rules now apply to it.
		const original = sessionTerms(bundle, auth);
		const onChange = (next: LoadedBundle) => {
			if (state.ended || !next.grantsByKey.has(auth.grant.key)) return; // revocation: watchGrant's
			if (sessionTerms(next, auth) !== original) {
				endAll(
					`drawbridge: grant ${auth.grant.key} or connection ${auth.connection.name} changed; closing the session (reconnect to use the new terms)`,
					"policy",
				);
				return;
			}
			if (state.uncheckedShells.size > 0 && lineRulesApply(next, auth.connection.name)) {
				const message = `drawbridge: guardrails for ${auth.connection.name} now check shell lines; closing this shell (reconnect)`;
				recorder.emit({ type: "notice", message });
				for (const ch of state.uncheckedShells) closeWithMessage(ch, message);
				state.uncheckedShells.clear();
			}
		};
		this.#opts.store.on("change", onChange);
		state.unwatch = () => {
			unwatchGrant();
			this.#opts.store.off("change", onChange);
		};
		client.once("close", state.unwatch);
		return state;
	}

	async #endSession(
		state: SessionState,
		end: { reason: "client-closed" | "upstream-closed" | "grant-expired" | "grant-revoked" | "policy" | "error"; message?: string },
	) {
		if (state.ended) return;
		state.ended = true;
		recordRunning(state);
		state.unwatch();
		state.upstream.then((u) => u.end()).catch(() => {});
		// A recording that failed (its spool refused events) rejects here; the recorder logged and counted
		// it, and callers do not wait: a rejection left unhandled would end the gateway process.
		await state.recorder.close(end.message ? { reason: end.reason, message: end.message } : { reason: end.reason }).catch(() => undefined);
	}

	#connectUpstream(auth: AuthResult, bundle: LoadedBundle, sessionId: string): Promise<InstanceType<typeof Client>> {
		const conn = auth.connection;
		const pinned = (conn.ssh?.hostKeys ?? []).map((l) => parseAuthorizedKey(l));
		const cred = conn.credentialRef ? bundle.bundle.credentials[conn.credentialRef] : undefined;
		return new Promise((resolve, reject) => {
			if (pinned.length === 0) {
				reject(new SshGatewayError("upstream-host-key", `connection ${conn.name} pins no host key (no trust on first use)`));
				return;
			}
			let privateKey: string;
			let sessionCert: SessionCertificate | undefined;
			if (conn.ssh?.auth === "certificate") {
				// No standing key on the target: an ephemeral key certified for this session only.
				const caRef = bundle.bundle.ssh?.upstreamCaCredentialRef;
				const ca = caRef ? bundle.bundle.credentials[caRef] : undefined;
				if (ca?.type !== "sshKey") {
					reject(new SshGatewayError("upstream", `connection ${conn.name} uses certificates but the bundle has no upstream SSH CA`));
					return;
				}
				try {
					sessionCert = mintSessionCertificate({
						caPrivateKeyPem: ca.privateKeyPem,
						login: auth.login,
						keyId: `sub=${auth.identity.username};grant=${auth.grant.key};session=${sessionId}`,
						// It must not let anyone log in to the target after the grant ends (a copy of the key
						// and certificate used directly): valid until the grant's end at the latest.
						notAfter: new Date(auth.grant.expiresAt),
						now: this.#opts.store.now(),
					});
				} catch (e) {
					reject(e);
					return;
				}
				privateKey = sessionCert.privateKey;
			} else {
				if (cred?.type !== "sshKey") {
					reject(new SshGatewayError("upstream", `connection ${conn.name} has no SSH key credential`));
					return;
				}
				privateKey = cred.privateKeyPem;
			}
			const c = new Client();
			let hostKeyRefused = false;
			c.on("ready", () => resolve(c));
			c.on("error", (e: Error) =>
				reject(
					hostKeyRefused
						? new SshGatewayError("upstream-host-key", `host key of ${conn.host}:${conn.port} is not one pinned for ${conn.name}`)
						: new SshGatewayError("upstream", `upstream ${conn.name}: ${e.message}`),
				),
			);
			c.connect({
				host: conn.host,
				port: conn.port,
				username: auth.login,
				privateKey,
				readyTimeout: this.#opts.upstreamTimeoutMs ?? 10_000,
				keepaliveInterval: 30_000,
				algorithms: {
					cipher: [...(this.#opts.upstreamCiphers ?? DEFAULT_UPSTREAM_CIPHERS)] as never,
					hmac: ["hmac-sha2-256-etm@openssh.com", "hmac-sha2-512-etm@openssh.com", "hmac-sha2-256", "hmac-sha2-512"] as never,
				},
				hostVerifier: (key: Buffer) => {
					const ok = pinned.some((k) => k.blob.equals(key));
					if (!ok) hostKeyRefused = true;
					return ok;
				},
			});
			poolOutgoingPackets(c);
			if (sessionCert) {
				try {
					presentCertificate(c, sessionCert);
				} catch (e) {
					c.end();
					reject(e);
				}
			}
		});
	}

	// -------------------------------------------------------------------------------------------
	// Channels

	/**
	 * `release` frees the session's slot under `maxSessions` (called when its channel closes); `gone`
	 * aborts when the client closed the session or the connection.
	 */
	#onSession(state: SessionState, session: Session, release: () => void, gone: AbortSignal): void {
		const grant = state.auth.grant;
		const g = grant.ssh;
		let pty: PseudoTtyInfo | undefined;
		const env: Record<string, string> = {};
		let upstreamChannel: ClientChannel | undefined;
		/** The command this channel runs (`<shell>` for a shell), for the record of signals sent to it. */
		let running: string | undefined;
		// Certificate extensions restrict like sshd does: no permit-pty, no pty.
		const certExt = state.auth.cert?.cert.extensions;
		const forceCommand = state.auth.cert?.forceCommand;
		session.on("pty", (accept, reject, info) => {
			if (certExt && !certExt.has("permit-pty")) {
				state.recorder.emit({ type: "notice", message: "pty refused: certificate lacks permit-pty" });
				reject?.();
				return;
			}
			// ssh2 passes no info for terminal modes it cannot decode: refuse rather than throw.
			if (!info) {
				reject?.();
				return;
			}
			// sshd puts the terminal type into the session's TERM: a value the shell can evaluate would run
			// code past allowedCommands (`echo ${TERM@P}` with TERM `$(cmd)`): plain names only.
			if (!isPlainEnvValue(info.term ?? "")) {
				state.recorder.emit({ type: "notice", message: `pty refused: terminal type ${JSON.stringify(String(info.term).slice(0, 80))} is not a plain name` });
				reject?.();
				return;
			}
			pty = info;
			state.recorder.emit({ type: "terminal", stream: "r", data: `${info.cols}x${info.rows}` });
			accept?.();
		});
		session.on("window-change", (accept, _reject, info) => {
			if (pty) pty = { ...pty, cols: info.cols, rows: info.rows, width: info.width, height: info.height };
			state.recorder.emit({ type: "terminal", stream: "r", data: `${info.cols}x${info.rows}` });
			upstreamChannel?.setWindow(info.rows, info.cols, info.height, info.width);
			accept?.();
		});
		session.on("env", (accept, _reject, info) => {
			// Only locale variables travel (sshd's AcceptEnv default is similar), and only plain values: the
			// target's shell can evaluate a variable's value (`${!LC_X}`, `${a[LC_X]}`, `${LC_X@P}` run a
			// `$(cmd)` or `a[$(cmd)]` inside it), which would step around allowedCommands.
			if (/^(LANG|LC_[A-Z]+|TERM)$/.test(info.key)) {
				if (!isPlainEnvValue(info.val)) state.recorder.emit({ type: "notice", message: `env ${info.key} dropped: its value is not a plain name` });
				else if (CHARSET_VARIABLES.has(info.key) && !isSafeCharsetLocale(info.val)) {
					state.recorder.emit({
						type: "notice",
						message: `env ${info.key} dropped: ${info.val} is not a UTF-8 locale (in a multibyte charset such as BIG5 or GBK the target's shell can read a backslash as part of a character, and the command line differently from the gateway)`,
					});
				} else {
					env[info.key] = info.val;
					// Relayed values change what the target's commands do (a locale's charset, TERM's
					// capabilities): recorded, as the dropped ones are.
					state.recorder.emit({ type: "notice", message: `env ${info.key}=${info.val} relayed to the target` });
				}
			} else state.recorder.emit({ type: "notice", message: `env ${String(info.key).slice(0, 64)} dropped: only LANG, LC_* and TERM are relayed` });
			accept?.();
		});
		session.on("signal", (accept, reject, info) => {
			// A signal acts on the target (it stops or kills the running command, an approved one
			// included): it is recorded, it used to leave no trace.
			const name = String(info.name).slice(0, 32);
			try {
				upstreamChannel?.signal(info.name);
				state.recorder.emit({
					type: "notice",
					message: upstreamChannel ? `signal ${name} sent to ${JSON.stringify(running ?? "")}` : `signal ${name} requested with no command running (not sent)`,
				});
				accept?.();
			} catch {
				// ssh2 throws on a signal name outside RFC 4254's list: refused, the connection lives on.
				state.recorder.emit({ type: "notice", message: `signal ${JSON.stringify(name)} refused (not a signal name of RFC 4254)` });
				reject?.();
			}
		});
		session.on("auth-agent", (accept, reject) => {
			// Relaying agent channels back to the agent's machine is not implemented: refuse even when allowed.
			void accept;
			state.recorder.emit({
				type: "notice",
				message: g?.allowAgentForwarding ? "agent forwarding requested: not supported by this gateway" : "agent forwarding refused by grant",
			});
			reject?.();
		});
		session.on("x11", (_accept, reject) => reject?.());
		// A session channel takes one shell, exec or subsystem (RFC 4254 6.5): ssh2's accept() returns
		// nothing for a second one, which is then left unanswered.
		session.on("shell", (accept) => {
			const ch = accept();
			if (!ch) return;
			state.channels.add(ch);
			ch.on("close", () => state.channels.delete(ch));
			ch.once("close", release);
			if (forceCommand !== undefined) {
				// force-command replaces the shell too (sshd semantics).
				running = forceCommand;
				this.#guarded(ch, state, this.#startExec(state, ch, forceCommand, pty, env, gone, (u) => {
					upstreamChannel = u;
				}));
				return;
			}
			const access = evaluateSshAccess({ login: state.auth.login, request: "shell" }, g, grant.key);
			if (access.action !== "allow") {
				this.#refuse(ch, state, `drawbridge: ${access.message}`, "<shell>", access.rule);
				return;
			}
			running = "<shell>";
			this.#guarded(ch, state, this.#startShell(state, ch, pty, env, (u) => {
				upstreamChannel = u;
			}));
		});
		session.on("exec", (accept, _reject, info) => {
			const ch = accept();
			if (!ch) return;
			state.channels.add(ch);
			ch.on("close", () => state.channels.delete(ch));
			ch.once("close", release);
			running = state.auth.cert?.forceCommand ?? info.command;
			this.#guarded(ch, state, this.#startExec(state, ch, running, pty, env, gone, (u) => {
				upstreamChannel = u;
			}));
		});
		session.on("subsystem", (accept, reject, info) => {
			const access = evaluateSshAccess({ login: state.auth.login, request: info.name === "sftp" ? "sftp" : "subsystem" }, g, grant.key);
			// A certificate with force-command allows nothing but that command.
			if (access.action !== "allow" || forceCommand !== undefined) {
				state.recorder.emit({ type: "sftp", op: "subsystem", path: info.name, decision: "block" });
				reject?.();
				return;
			}
			const ch = accept();
			if (!ch) return;
			state.channels.add(ch);
			ch.on("close", () => state.channels.delete(ch));
			ch.once("close", release);
			this.#guarded(ch, state, this.#startSftp(state, ch));
		});
	}

	/**
	 * Channel work runs async; anything it throws (e.g. ssh2's "Not connected" when the target went away
	 * meanwhile) closes that channel with a message instead of becoming an unhandled rejection.
	 */
	#guarded(ch: ServerChannel, state: SessionState, work: Promise<void>): void {
		work.catch((e: unknown) => {
			const msg = `drawbridge: ${(e as Error).message ?? String(e)}`;
			state.recorder.emit({ type: "notice", message: msg });
			try {
				ch.stderr.write(`${msg}\r\n`);
				ch.exit(255);
				ch.end();
				ch.close();
			} catch {
				// the channel is already gone
			}
		});
	}

	#refuse(ch: ServerChannel, state: SessionState, message: string, command: string, rule?: string): void {
		state.recorder.emit({ type: "exec", command, decision: "block", ...(rule ? { rule } : {}), exitCode: 1 });
		ch.stderr.write(`${message}\r\n`);
		ch.exit(1);
		ch.end();
		ch.close();
	}

	/** A block verdict of the guardrails on a shell line (no approvals asked), or undefined. */
	#blocked(state: SessionState, line: string): Decided | undefined {
		const rules = this.#opts.store.current.policiesFor(state.auth.connection.name).guardrailRules;
		const grant = state.auth.grant.ssh ? { ...state.auth.grant.ssh, allowedCommands: undefined } : undefined;
		let v: ReturnType<typeof evaluateSshCommand>;
		try {
			v = this.#evaluate(line, grant, rules, state.auth.grant.key, { interactive: true });
		} catch (e) {
			return { refused: `drawbridge: policy evaluation failed, command refused: ${(e as Error).message}`, decision: "block", rule: "policy-error" };
		}
		if (v.action !== "block") return undefined;
		return { refused: `drawbridge: ${v.message ?? `blocked by guardrail ${v.rule ?? ""}`}`, decision: "block", rule: v.rule ?? "" };
	}

	/** Guardrails + approvals for one command. Resolves with the decision, or undefined when refused (already told the client). */
	async #decide(
		state: SessionState,
		command: string,
		tell: (line: string) => void,
		signal: AbortSignal,
		shellLine = false,
	): Promise<Decided> {
		// The current bundle's rules: a GuardrailPolicy merged after the agent connected applies to it too.
		const rules = this.#opts.store.current.policiesFor(state.auth.connection.name).guardrailRules;
		const grantKey = state.auth.grant.key;
		// Shell lines are not limited by allowedCommands (that list is for exec): only guardrails apply.
		const grantForCheck = shellLine && state.auth.grant.ssh ? { ...state.auth.grant.ssh, allowedCommands: undefined } : state.auth.grant.ssh;
		let verdict: ReturnType<typeof evaluateSshCommand>;
		try {
			verdict = this.#evaluate(command, grantForCheck, rules, grantKey, { interactive: shellLine });
		} catch (e) {
			// Fail closed: a policy that cannot be evaluated blocks.
			return { refused: `drawbridge: policy evaluation failed, command refused: ${(e as Error).message}`, decision: "block", rule: "policy-error" };
		}
		if (verdict.action === "allow") return { decision: "allow" };
		const rule = verdict.rule ?? "";
		if (verdict.action === "audit") return { decision: "audit", rule };
		if (verdict.action === "block") {
			return { refused: `drawbridge: ${verdict.message ?? `blocked by guardrail ${rule}`}`, decision: "block", rule };
		}
		if (state.pendingApprovals >= this.maxPendingApprovals) {
			// Each held command could page the approvers: one connection may not flood them.
			this.#opts.onLimited?.("max-pending-approvals");
			return {
				refused: `drawbridge: "${command}" needs approval (rule ${rule}), but ${state.pendingApprovals} approval requests of this connection are already pending (at most ${this.maxPendingApprovals}); not asking for another until one is decided`,
				decision: "block",
				rule,
			};
		}
		state.pendingApprovals++;
		let decided: Decided;
		try {
			decided = await this.#approve(state, command, rule, verdict, tell, signal);
		} finally {
			state.pendingApprovals--;
		}
		// A rule merged while the command waited that now blocks it wins over the approval (given under
		// the old rules): a block is never approved away.
		const now = this.#opts.store.current.policiesFor(state.auth.connection.name).guardrailRules;
		if (!("refused" in decided) && now !== rules) {
			let again: ReturnType<typeof evaluateSshCommand>;
			try {
				again = this.#evaluate(command, grantForCheck, now, grantKey, { interactive: shellLine });
			} catch (e) {
				return { refused: `drawbridge: policy evaluation failed, command refused: ${(e as Error).message}`, decision: "block", rule: "policy-error" };
			}
			if (again.action === "block") {
				const r = again.rule ?? "";
				return { refused: `drawbridge: ${again.message ?? `blocked by guardrail ${r}`} (merged while the command waited; approval ${decided.approvalId} does not override it)`, decision: "block", rule: r };
			}
		}
		return decided;
	}

	async #approve(
		state: SessionState,
		command: string,
		rule: string,
		verdict: ReturnType<typeof evaluateSshCommand>,
		tell: (line: string) => void,
		signal: AbortSignal,
	): Promise<Decided> {
		const a = verdict.approval ?? {};
		const grant = state.auth.grant;
		const id = state.auth.identity;
		let record = await this.#opts.approvals.request({
			sessionId: state.id,
			protocol: "ssh",
			connection: state.auth.connection.name,
			grant: grant.key,
			requester: requesterOf(id, grant),
			// The same command is another act as another login (`rm -rf /srv/data` as root or as app):
			// approvers see which, and a reuse window never carries an approval from one login to another.
			// First, so no line of a multi-line command can stand in for it.
			command: `as login ${JSON.stringify(state.auth.login)}: ${command}`,
			rule,
			approvers: a.approvers ?? grant.approvers.subjects,
			minApprovals: a.minApprovals ?? grant.approvers.minApprovals ?? 1,
			timeoutSeconds: a.timeoutSeconds ?? 600,
			...(a.reuseWindowSeconds !== undefined ? { reuseWindowSeconds: a.reuseWindowSeconds } : {}),
		});
		state.recorder.emit({ type: "approval", approvalId: record.id, phase: record.phase, rule, command });
		if (record.phase === "Pending") {
			const who = record.approvers
				.map((s) => (s.kind === "ServiceAccount" ? `serviceaccount:${s.namespace}/${s.name}` : `${s.kind.toLowerCase()}:${"name" in s ? s.name : "claims"}`))
				.join(", ");
			tell(`drawbridge: "${command}" needs approval (rule ${rule}): approval ${record.id} pending, approvers ${who}; ${record.approveHint}`);
			record = await this.#opts.approvals.waitForDecision(record.id, signal);
			state.recorder.emit({
				type: "approval",
				approvalId: record.id,
				phase: record.phase,
				rule,
				command,
				decidedBy: record.decisions.map((d) => d.by),
			});
		}
		if (record.phase !== "Approved") {
			return { refused: `drawbridge: approval ${record.id} ${record.phase.toLowerCase()}; not running "${command}"`, decision: record.phase === "Expired" ? "expired" : "denied", rule, approvalId: record.id };
		}
		tell(`drawbridge: approval ${record.id} approved by ${record.decisions.filter((d) => d.decision === "approve").map((d) => d.by).join(", ")}`);
		return { decision: "approved", rule, approvalId: record.id };
	}

	async #upstreamOrFail(state: SessionState, ch: ServerChannel): Promise<InstanceType<typeof Client> | undefined> {
		try {
			return await state.upstream;
		} catch (e) {
			const msg = `drawbridge: cannot reach ${state.auth.connection.name}: ${(e as Error).message}`;
			state.recorder.emit({ type: "notice", message: msg });
			ch.stderr.write(`${msg}\r\n`);
			ch.exit(255);
			ch.end();
			ch.close();
			return undefined;
		}
	}

	/** Relay one upstream channel ↔ client channel with backpressure, exit status and close ordering. */
	#relay(
		ch: ServerChannel,
		up: ClientChannel,
		hooks: { input?: (b: Buffer) => void; output?: (b: Buffer) => void; onExit?: (code?: number, signal?: string) => void; inputFilter?: boolean },
	): void {
		let exit: { code?: number; signal?: string; core?: boolean; desc?: string } | undefined;
		up.on("exit", (code: number | null, signal?: string, core?: boolean, desc?: string) => {
			exit = code !== null && code !== undefined ? { code } : { signal: signal ?? "KILL", core: core ?? false, desc: desc ?? "" };
		});
		if (hooks.output) {
			const out = hooks.output;
			up.on("data", (b: Buffer) => out(b));
		}
		up.pipe(ch, { end: false });
		up.stderr.pipe(ch.stderr, { end: false });
		if (!hooks.inputFilter) {
			if (hooks.input) {
				const inp = hooks.input;
				ch.on("data", (b: Buffer) => inp(b));
			}
			ch.pipe(up, { end: false });
			ch.on("end", () => up.end());
		}
		// Finish only when the target closed AND everything it sent has been read and written to the
		// client: 'close' can come while piped data still waits on the client's window.
		let closed = false;
		let upClosed = false;
		let outEnded = false;
		let errEnded = false;
		const maybeFinish = () => {
			if (closed || !upClosed || !outEnded || !errEnded) return;
			closed = true;
			let pending = 2;
			const flushed = () => {
				if (--pending > 0) return;
				if (exit?.code !== undefined) ch.exit(exit.code);
				else if (exit?.signal) ch.exit(exit.signal, exit.core ?? false, exit.desc ?? "");
				hooks.onExit?.(exit?.code, exit?.signal);
				ch.end();
				ch.close();
			};
			// Zero-length writes complete after every earlier write (stream callbacks run in order).
			ch.write(Buffer.alloc(0), flushed);
			ch.stderr.write(Buffer.alloc(0), flushed);
		};
		up.on("end", () => {
			outEnded = true;
			maybeFinish();
		});
		up.stderr.on("end", () => {
			errEnded = true;
			maybeFinish();
		});
		up.on("close", () => {
			upClosed = true;
			// A target that closes without EOF: nothing more will be read.
			setImmediate(() => {
				if (!outEnded && up.readableLength === 0) outEnded = true;
				if (!errEnded && up.stderr.readableLength === 0) errEnded = true;
				maybeFinish();
			});
		});
		ch.on("close", () => {
			if (!closed) up.close();
		});
	}

	async #startExec(
		state: SessionState,
		ch: ServerChannel,
		command: string,
		pty: PseudoTtyInfo | undefined,
		env: Record<string, string>,
		gone: AbortSignal,
		setUpstream: (u: ClientChannel) => void,
	): Promise<void> {
		if (command.includes("\0")) {
			// sshd refuses such a request by dropping the whole connection; rules would see bytes it never runs.
			this.#refuse(ch, state, "drawbridge: commands containing NUL bytes are refused", command);
			return;
		}
		const abort = new AbortController();
		ch.on("close", () => abort.abort());
		if (gone.aborted) abort.abort();
		else gone.addEventListener("abort", () => abort.abort(), { once: true });
		let d: Decided;
		try {
			d = await this.#decide(state, command, (line) => ch.stderr.write(`${line}\r\n`), abort.signal);
		} catch (e) {
			this.#refuse(ch, state, `drawbridge: approval unavailable: ${(e as Error).message}`, command);
			return;
		}
		const base = { ...(d.rule ? { rule: d.rule } : {}), ...(d.approvalId ? { approvalId: d.approvalId } : {}) };
		if ("refused" in d) {
			state.recorder.emit({ type: "exec", command, decision: d.decision, ...base, exitCode: 1 });
			ch.stderr.write(`${d.refused}\r\n`);
			ch.exit(1);
			ch.end();
			ch.close();
			return;
		}
		const client = await this.#upstreamOrFail(state, ch);
		if (!client) return;
		const opts: { pty?: PseudoTtyInfo; env?: Record<string, string> } = { env };
		if (pty) opts.pty = pty;
		client.exec(command, opts, (err, up) => {
			if (err) {
				ch.stderr.write(`drawbridge: upstream exec failed: ${err.message}\r\n`);
				ch.exit(255);
				ch.end();
				ch.close();
				return;
			}
			setUpstream(up);
			const decoder = pty ? new StringDecoder("utf8") : undefined;
			const inDecoder = new StringDecoder("utf8");
			// An exec with a pty is a terminal like a shell (`ssh -t gw bash`): when shell lines are
			// checked, its typed lines are too. Without a pty its input is data (scp -t, tar): relayed.
			const checkLines = pty !== undefined && lineRulesApply(this.#opts.store.current, state.auth.connection.name);
			if (pty && !checkLines) {
				state.uncheckedShells.add(ch);
				ch.on("close", () => state.uncheckedShells.delete(ch));
			}
			// Recorded once: at its exit, or — still running when the session ends (grant expired or revoked,
			// target or client gone) — then, without an exit status, so the timeline shows what ran until the cut.
			let recorded = false;
			const record = (code?: number, signal?: string) => {
				if (recorded) return;
				recorded = true;
				state.running.delete(interrupted);
				state.recorder.emit({
					type: "exec",
					command,
					decision: d.decision,
					...base,
					...(code !== undefined ? { exitCode: code } : {}),
					...(signal ? { signal } : {}),
				});
			};
			const interrupted = () => record();
			state.running.add(interrupted);
			const screen = new TerminalModes();
			this.#relay(ch, up, {
				...(decoder
					? {
							output: (b: Buffer) => {
								screen.feed(b);
								state.recorder.emit({ type: "terminal", stream: "o", data: decoder.write(b) });
							},
						}
					: {}),
				// Its typed input is recorded like a shell's (the line filter records it when lines are
				// checked): only the output was, and after `stty -echo` what was typed left no trace.
				...(pty && !checkLines ? { input: (b: Buffer) => state.recorder.emit({ type: "terminal", stream: "i", data: inDecoder.write(b) }) } : {}),
				inputFilter: checkLines,
				onExit: record,
			});
			if (checkLines) this.#filterShellInput(state, ch, up, new StringDecoder("utf8"), screen);
		});
	}

	async #startShell(
		state: SessionState,
		ch: ServerChannel,
		pty: PseudoTtyInfo | undefined,
		env: Record<string, string>,
		setUpstream: (u: ClientChannel) => void,
	): Promise<void> {
		const client = await this.#upstreamOrFail(state, ch);
		if (!client) return;
		const checkLines = lineRulesApply(this.#opts.store.current, state.auth.connection.name);
		if (!checkLines) {
			state.uncheckedShells.add(ch);
			ch.on("close", () => state.uncheckedShells.delete(ch));
		}
		const windowOpts: PseudoTtyOptions | false = pty
			? { term: pty.term, rows: pty.rows, cols: pty.cols, width: pty.width, height: pty.height, modes: pty.modes }
			: false;
		client.shell(windowOpts, { env }, (err, up) => {
			if (err) {
				ch.stderr.write(`drawbridge: upstream shell failed: ${err.message}\r\n`);
				ch.exit(255);
				ch.end();
				ch.close();
				return;
			}
			setUpstream(up);
			const outDec = new StringDecoder("utf8");
			const inDec = new StringDecoder("utf8");
			state.recorder.emit({ type: "exec", command: "<shell>", decision: "allow" });
			const screen = new TerminalModes();
			this.#relay(ch, up, {
				output: (b) => {
					screen.feed(b);
					state.recorder.emit({ type: "terminal", stream: "o", data: outDec.write(b) });
				},
				inputFilter: checkLines,
				...(checkLines ? {} : { input: (b: Buffer) => state.recorder.emit({ type: "terminal", stream: "i", data: inDec.write(b) }) }),
				onExit: (code, signal) =>
					state.recorder.emit({
						type: "exec",
						command: "<shell>",
						decision: "allow",
						...(code !== undefined ? { exitCode: code } : {}),
						...(signal ? { signal } : {}),
					}),
			});
			if (checkLines) this.#filterShellInput(state, ch, up, inDec, screen);
		});
	}

	/** Best-effort shell line guardrails: hold the Enter key of each line until it is allowed. */
	#filterShellInput(state: SessionState, ch: ServerChannel, up: ClientChannel, inDec: StringDecoder, screen: TerminalModes): void {
		const tracker = new LineTracker();
		const abort = new AbortController();
		ch.on("close", () => abort.abort());
		let queue = Promise.resolve();
		const tell = (line: string) => ch.write(`\r\n${line}\r\n`);
		/**
		 * Lines already relayed that the shell has not run yet, because the command goes on: an open quote,
		 * `$(`, backquote, or a trailing backslash. The next line is decided together with them, as the
		 * shell will run it (`tou\` then `ch f` is `touch f`; `echo '` then `'; touch f` runs touch).
		 */
		let pending = "";
		ch.on("data", (chunk: Buffer) => {
			state.recorder.emit({ type: "terminal", stream: "i", data: inDec.write(chunk) });
			const segments = tracker.feed(Buffer.from(chunk));
			queue = queue.then(async () => {
				for (const seg of segments) {
					if (seg.kind === "bytes") {
						up.write(seg.data);
						continue;
					}
					if (seg.kind === "cancel") {
						pending = "";
						continue;
					}
					const line = seg.line.trim();
					const refuse = (command: string, d: { refused: string; decision: Decision; rule?: string; approvalId?: string }): void => {
						state.recorder.emit({ type: "exec", command, decision: d.decision, ...(d.rule ? { rule: d.rule } : {}), ...(d.approvalId ? { approvalId: d.approvalId } : {}) });
						tell(d.refused);
						// Kill the typed line on the remote shell, then an empty Enter for a fresh prompt. ^G first:
						// after a relayed ESC, readline would read ^U as Meta-^U and the Enter would run the line.
						// ^E before ^U: ^U kills only what is left of the cursor, and the Enter ran the rest
						// (`touch f`, ^A, Enter ran touch after its refusal). Inside a bracketed paste the paste is
						// ended first: readline (bash 5.1+) inserts what comes before its end as text, the kill
						// included, and ran the refused line with the paste's final Enter.
						up.write(seg.paste ? "\x1b[201~\x07\x05\x15\r" : "\x07\x05\x15\r");
						// In a command that goes on (pending), that Enter adds an empty line to it.
						if (pending !== "") pending += "\n";
					};
					// A full-screen program (vim, less) the guard let start has the keyboard: its ESC and arrow keys
					// are its own, and the line is decided as tracked, as before (what it runs is beyond the guard,
					// README). The alternate screen alone is not enough: the agent can switch to it (TerminalModes).
					const inProgram = screen.fullScreenProgram;
					if (seg.dirty && !inProgram) {
						// Keys the tracker cannot follow touched the line: what readline runs may be another line.
						refuse(line === "" ? "<edited line>" : line, {
							refused:
								"drawbridge: this line was edited with keys the gateway cannot follow (cursor or history keys, completion, ^V, other control keys), so it cannot be checked; type it again with printable characters, Backspace, ^W or ^U only",
							decision: "block",
							rule: "shell-line-edited",
						});
						continue;
					}
					if (line === "" && pending === "") {
						up.write(seg.terminator);
						continue;
					}
					const command = pending !== "" ? `${pending}\n${seg.line}` : line;
					let d: Decided;
					try {
						// Read together with the lines before it, a line could hide in a quote that the shell
						// closes elsewhere: what blocks the line alone blocks it too.
						d = (pending !== "" && line !== "" ? this.#blocked(state, line) : undefined) ?? (await this.#decide(state, command, tell, abort.signal, true));
					} catch (e) {
						d = { refused: `drawbridge: approval unavailable: ${(e as Error).message}`, decision: "block" };
					}
					if ("refused" in d) {
						refuse(command, d);
						continue;
					}
					const base = { ...(d.rule ? { rule: d.rule } : {}), ...(d.approvalId ? { approvalId: d.approvalId } : {}) };
					state.recorder.emit({ type: "exec", command, decision: d.decision, ...base });
					up.write(seg.terminator);
					if (!inProgram) screen.relayed(command);
					pending = commandGoesOn(command) ? command : "";
				}
			});
		});
		ch.on("end", () => {
			void queue.then(() => up.end());
		});
	}

	async #startSftp(state: SessionState, ch: ServerChannel): Promise<void> {
		const client = await this.#upstreamOrFail(state, ch);
		if (!client) return;
		client.subsys("sftp", (err, up) => {
			if (err) {
				ch.stderr.write(`drawbridge: upstream sftp failed: ${err.message}\r\n`);
				ch.exit(255);
				ch.end();
				ch.close();
				return;
			}
			const observer = new SftpObserver((op) =>
				state.recorder.emit({
					type: "sftp",
					op: op.op,
					path: op.target ? `${op.path} -> ${op.target}` : op.path,
					...(op.bytes !== undefined ? { bytes: op.bytes } : {}),
					decision: "allow",
				}),
			);
			// Handles still open are reported when the channel ends, or when the session ends first (its
			// recording closes before the channel's end arrives: a write left open was missing).
			const finish = () => {
				state.running.delete(finish);
				observer.finish();
			};
			state.running.add(finish);
			this.#relay(ch, up, {
				output: (b) => observer.server(b),
				onExit: finish,
				inputFilter: true,
			});
			// Client → target goes through the guard packet by packet (README "SFTP"): what would change
			// an autorun file is replaced by a request the target refuses, and the agent is told why.
			const guard = new SftpGuard();
			let waiting = false;
			ch.on("data", (chunk: Buffer) => {
				// As pipe() would: nothing more once the target's side ended (ssh2 ends it at CHANNEL_CLOSE).
				if (!up.writable) return;
				const { packets, refusals } = guard.push(chunk);
				for (const r of refusals) {
					state.recorder.emit({ type: "sftp", op: r.op, path: r.path, decision: "block" });
					ch.stderr.write(`drawbridge: sftp: ${r.op} ${printable(r.path)} refused: ${r.why}\n`);
				}
				for (const p of packets) {
					observer.client(p);
					if (!up.write(p) && !waiting) {
						waiting = true;
						ch.pause();
						up.once("drain", () => {
							waiting = false;
							ch.resume();
						});
					}
				}
				if (guard.broken) {
					// Fail closed: a stream the gateway cannot frame is not relayed any further.
					state.recorder.emit({ type: "notice", message: "sftp: malformed or oversized packet, channel closed" });
					ch.stderr.write("drawbridge: sftp: malformed or oversized packet (over 1 MiB); channel closed\n");
					ch.exit(255);
					ch.end();
					ch.close();
				}
			});
			ch.on("end", () => up.end());
		});
	}

	#onDirectTcpip(
		state: SessionState,
		protocol: unknown,
		accept: () => ServerChannel,
		reject: () => void,
		info: { destIP: string; destPort: number; srcIP: string; srcPort: number },
	): void {
		const dest = `${info.destIP}:${info.destPort}`;
		// The destination is opened from the target (forwardOut), so it is whatever the target can reach:
		// only the grant's allowedForwards are (README "Port forwarding").
		const access = evaluateSshAccess(
			{ login: state.auth.login, request: "port-forward", destination: { host: info.destIP, port: info.destPort } },
			state.auth.grant.ssh,
			state.auth.grant.key,
		);
		const certExt = state.auth.cert?.cert.extensions;
		const refused =
			access.action !== "allow"
				? access.message ?? "port forwarding refused"
				: certExt && !certExt.has("permit-port-forwarding")
					? "the certificate does not permit port forwarding"
					: undefined;
		if (refused !== undefined) {
			state.recorder.emit({ type: "exec", command: `direct-tcpip ${dest}`, decision: "block", rule: access.rule ?? "grant:allowPortForwarding" });
			rejectChannelOpen(
				protocol,
				reject,
				ChannelOpenFailure.AdministrativelyProhibited,
				`drawbridge: ${refused}`,
			);
			return;
		}
		void state.upstream.then(
			(client) => {
				try {
					client.forwardOut(info.srcIP, info.srcPort, info.destIP, info.destPort, (err, up) => {
					if (err) {
						reject();
						return;
					}
					const ch = accept();
					state.recorder.emit({ type: "exec", command: `direct-tcpip ${dest}`, decision: "allow" });
					ch.pipe(up).pipe(ch);
				});
				} catch {
					reject();
				}
			},
			() => reject(),
		);
	}
}

export async function startSshListener(opts: SshListenerOptions): Promise<SshListener> {
	const l = new SshListener(opts);
	await l.listen();
	return l;
}
