/**
 * Shared fixture for the fault and hostile-input suites: a real PostgreSQL (test/env), the REAL
 * PostgreSQL listener on port 0, and a bundle built directly with two issuers whose private keys the
 * tests hold, so they can mint any token they like — valid ones, and every kind of forged one.
 *
 * - issuer "oidc": OIDC-kind, EdDSA key `kid: k1`, audience `drawbridge-gateway`.
 * - issuer "operator": Drawbridge-kind (tokens carry a `grant` claim), ES256 key `kid: op1`.
 *
 * The recorder defaults to an in-memory one (our own interface); pass `recorder` for a DiskRecorder.
 */
import { exportJWK, generateKeyPair, type JWK, SignJWT } from "jose";
import pg from "pg";

type SigningKey = Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];
import {
	BUNDLE_API_VERSION,
	type BundleConnection,
	type BundleGrant,
	type ConfigBundle,
	type GuardrailRule,
	type MaskRule,
	type PostgresAccess,
	type SubjectMatcher,
} from "../../gateway/config/bundle.ts";
import { sealBundle } from "../../gateway/config/canonical.ts";
import { BundleStore } from "../../gateway/config/store.ts";
import { type PostgresListener, type PostgresListenerOptions, startPostgresListener } from "../../gateway/postgres/listener.ts";
import type { Recorder, } from "../../gateway/recording/events.ts";
import { issueCert, type PostgresHandle, startPostgres } from "../env/index.ts";
import { MemoryRecorder } from "../postgres/fixture.ts";

export const OIDC_ISSUER = "https://oidc.drawbridge.test";
export const OPERATOR_ISSUER = "https://operator.drawbridge.test";
export const AUDIENCE = "drawbridge-gateway";
export const CONNECTION = "shop-prod";
/** A second PostgreSQL Connection (same server) for cross-connection token tests. */
export const OTHER_CONNECTION = "shop-reporting";

// The in-memory Recorder (a test double of our own interface) is the PostgreSQL suite's.
export { MemoryRecorder };

export interface GrantSpec {
	name: string;
	user: string;
	access: PostgresAccess;
	connection?: string;
	namespace?: string;
	expiresInMs?: number;
	/** Subjects of the grant (default: one User subject named `user`). */
	subjects?: SubjectMatcher[];
}

export interface TokenOptions {
	issuer?: "oidc" | "operator";
	/** Override `iss` (wrong issuer). */
	iss?: string;
	aud?: string | string[];
	/** Seconds from now; negative = already expired. */
	expSec?: number;
	/** Seconds from now for `nbf`. */
	nbfSec?: number;
	/** Seconds from now for `iat`. */
	iatSec?: number;
	claims?: Record<string, unknown>;
	/** Extra/overriding protected header fields (kid, jku, x5u...). */
	header?: Record<string, unknown>;
	/** Sign with this key instead of the issuer's (an attacker's key). */
	key?: SigningKey;
	alg?: string;
}

export interface GatewayFixture {
	pg: PostgresHandle;
	store: BundleStore;
	gateway: PostgresListener;
	port: number;
	recorder: Recorder;
	caPem: string;
	/** Public JWK of the OIDC issuer (for key-confusion attacks). */
	oidcPublicJwk: JWK;
	token(sub: string, o?: TokenOptions): Promise<string>;
	clientConfig(user: string, password: string, extra?: Partial<pg.ClientConfig>): pg.ClientConfig;
	connect(user: string, extra?: Partial<pg.ClientConfig>): Promise<pg.Client>;
	/** Rebuild and load the bundle (new version) with other grants/policies. */
	reload(parts: { grants?: GrantSpec[]; maskRules?: MaskRule[]; maskExempt?: SubjectMatcher[]; guardrails?: GuardrailRule[] }): void;
	stop(): Promise<void>;
}

export interface GatewayFixtureOptions {
	pg?: PostgresHandle;
	grants?: GrantSpec[];
	maskRules?: MaskRule[];
	/** Subjects the masking policy exempts (`exempt`). */
	maskExempt?: SubjectMatcher[];
	guardrails?: GuardrailRule[];
	recorder?: Recorder;
	listener?: Partial<PostgresListenerOptions>;
}

export const DEFAULT_GRANTS: GrantSpec[] = [
	{ name: "alice-rw", user: "alice", access: "read-write" },
	{ name: "bob-ro", user: "bob", access: "read-only" },
	{ name: "carol-reporting", user: "carol", access: "read-only", connection: OTHER_CONNECTION },
];

export async function startGatewayFixture(opts: GatewayFixtureOptions = {}): Promise<GatewayFixture> {
	const pgh = opts.pg ?? (await startPostgres());
	const oidcKeys = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
	const opKeys = await generateKeyPair("ES256", { extractable: true });
	const oidcPublicJwk = { ...(await exportJWK(oidcKeys.publicKey)), kid: "k1", alg: "EdDSA", use: "sig" };
	const opJwk = { ...(await exportJWK(opKeys.publicKey)), kid: "op1", alg: "ES256", use: "sig" };
	const cert = await issueCert(pgh.ca, { cn: "localhost", name: `gateway-faults-${Math.random().toString(36).slice(2, 8)}` });
	let version = 0;
	let parts = { grants: opts.grants ?? DEFAULT_GRANTS, maskRules: opts.maskRules, maskExempt: opts.maskExempt, guardrails: opts.guardrails };
	const makeBundle = (): ConfigBundle => {
		const now = Date.now();
		const connection = (name: string): BundleConnection => ({
			key: `team/${name}`,
			name,
			namespace: "team",
			type: "postgres",
			labels: { env: "prod" },
			host: pgh.host,
			port: pgh.port,
			credentialRef: "shop-admin",
			postgres: { database: pgh.database, credentialMode: "static", sslmode: "verify-full", caPem: pgh.caPem, serverName: "localhost" },
		});
		const grants: BundleGrant[] = parts.grants.map((g) => ({
			key: `${g.namespace ?? "team"}/${g.name}`,
			name: g.name,
			namespace: g.namespace ?? "team",
			connection: g.connection ?? CONNECTION,
			subjects: g.subjects ?? [{ kind: "User", name: g.user }],
			notBefore: new Date(now - 60_000).toISOString(),
			expiresAt: new Date(now + (g.expiresInMs ?? 3_600_000)).toISOString(),
			postgres: { access: g.access },
			approvers: { subjects: [{ kind: "Group", name: "dba" }], minApprovals: 1 },
			origin: { repository: "grants", commit: "feedface", pullRequest: 10 },
		}));
		return sealBundle({
			apiVersion: BUNDLE_API_VERSION,
			version: ++version,
			generatedAt: new Date().toISOString(),
			issuers: [
				{ name: "oidc", kind: "oidc", issuer: OIDC_ISSUER, audiences: [AUDIENCE], jwks: { keys: [oidcPublicJwk] }, algorithms: ["EdDSA"] },
				{ name: "operator", kind: "drawbridge", issuer: OPERATOR_ISSUER, audiences: [AUDIENCE], jwks: { keys: [opJwk] }, algorithms: ["ES256"] },
			],
			connections: [connection(CONNECTION), connection(OTHER_CONNECTION)],
			grants,
			maskingPolicies: parts.maskRules
				? [{ key: "team/mask", selector: { matchLabels: { env: "prod" } }, rules: parts.maskRules, ...(parts.maskExempt ? { exempt: parts.maskExempt } : {}) }]
				: [],
			guardrailPolicies: parts.guardrails ? [{ key: "team/guard", selector: { matchLabels: { env: "prod" } }, rules: parts.guardrails }] : [],
			credentials: { "shop-admin": { type: "password", username: pgh.superuser, password: pgh.password } },
			maskingKey: Buffer.alloc(32, 5).toString("base64"),
		});
	};
	const store = new BundleStore();
	store.update(makeBundle());
	const recorder = opts.recorder ?? new MemoryRecorder();
	const gateway = startPostgresListener({
		store,
		tls: { certPem: cert.certPem, keyPem: cert.keyPem },
		recorder,
		approvalTimeoutSec: 5,
		...opts.listener,
	});
	const { port } = await gateway.listen(0);
	const token = async (sub: string, o: TokenOptions = {}): Promise<string> => {
		const operator = o.issuer === "operator";
		const alg = o.alg ?? (operator ? "ES256" : "EdDSA");
		const now = Math.floor(Date.now() / 1000);
		const claims: Record<string, unknown> = { email: `${sub}@example.com`, ...o.claims };
		const jwt = new SignJWT(claims)
			.setProtectedHeader({ alg, kid: operator ? "op1" : "k1", ...o.header })
			.setIssuer(o.iss ?? (operator ? OPERATOR_ISSUER : OIDC_ISSUER))
			.setAudience(o.aud ?? AUDIENCE)
			.setSubject(sub)
			.setIssuedAt(now + (o.iatSec ?? 0))
			.setExpirationTime(now + (o.expSec ?? 600));
		if (o.nbfSec !== undefined) jwt.setNotBefore(now + o.nbfSec);
		return jwt.sign(o.key ?? (operator ? opKeys.privateKey : oidcKeys.privateKey));
	};
	const clientConfig: GatewayFixture["clientConfig"] = (user, password, extra = {}) => ({
		host: "127.0.0.1",
		port,
		database: CONNECTION,
		user,
		password,
		ssl: { ca: pgh.caPem, servername: "localhost" },
		connectionTimeoutMillis: 60_000,
		...extra,
	});
	return {
		pg: pgh,
		store,
		gateway,
		port,
		recorder,
		caPem: pgh.caPem,
		oidcPublicJwk,
		token,
		clientConfig,
		async connect(user, extra = {}) {
			const c = new pg.Client(clientConfig(user, await token(user), extra));
			c.on("error", () => undefined);
			await c.connect();
			return c;
		},
		reload(p) {
			parts = { ...parts, ...p };
			store.update(makeBundle());
		},
		async stop() {
			await gateway.close();
			if (!opts.pg) await pgh.stop();
		},
	};
}

/** Poll until `fn()` is true (no fixed sleeps). */
export async function waitFor(what: string, fn: () => boolean | Promise<boolean>, timeoutMs = 60_000, stepMs = 50): Promise<void> {
	const end = Date.now() + timeoutMs;
	for (;;) {
		if (await fn()) return;
		if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
		await new Promise((r) => setTimeout(r, stepMs));
	}
}

/** Error fields of a pg error (node-postgres puts SQLSTATE in `code`). */
export function pgError(e: unknown): { code?: string; message: string; severity?: string } {
	const x = e as { code?: string; message?: string; severity?: string };
	return { ...(x.code ? { code: x.code } : {}), message: x.message ?? String(e), ...(x.severity ? { severity: x.severity } : {}) };
}
