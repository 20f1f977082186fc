/**
 * Test fixture for the PostgreSQL data path: a real PostgreSQL (test/env), a config bundle built
 * directly (inline JWKS issuer), tokens minted with jose, an in-memory Recorder (a test double of
 * our own interface), and the gateway listener on port 0 with a TLS certificate from the test CA.
 */
import assert from "node:assert/strict";
import { mkdirSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import pg from "pg";
import {
	BUNDLE_API_VERSION,
	type BundleGrant,
	type ConfigBundle,
	type GuardrailRule,
	type Identity,
	type MaskRule,
	type PostgresAccess,
} from "../../gateway/config/bundle.ts";
import { sealBundle } from "../../gateway/config/canonical.ts";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import { BundleStore } from "../../gateway/config/store.ts";
import { LocalApprovalStore } from "../../gateway/approvals/local-store.ts";
import { StoreApprovalService } from "../../gateway/approvals/service.ts";
import type { ApprovalService } from "../../gateway/approvals/types.ts";
import { type PostgresListener, startPostgresListener } from "../../gateway/postgres/listener.ts";
import type { RecordingEvent, Recorder, SessionEnd, SessionMeta, SessionRecorder } from "../../gateway/recording/events.ts";
import { issueCert, type PostgresHandle, printLogsOnFailure, startPostgres } from "../env/index.ts";

export const ISSUER = "https://issuer.drawbridge.test";
export const AUDIENCE = "drawbridge-gateway";
export const CONNECTION = "shop-prod";

/** Test double of our own Recorder interface: collects events in memory. */
export class MemoryRecorder implements Recorder {
	readonly sessions: { meta: SessionMeta; events: RecordingEvent[]; end?: SessionEnd }[] = [];
	async openSession(meta: SessionMeta): Promise<SessionRecorder> {
		const entry: { meta: SessionMeta; events: RecordingEvent[]; end?: SessionEnd } = { meta, events: [] };
		this.sessions.push(entry);
		return {
			sessionId: meta.sessionId,
			emit: (e) => {
				entry.events.push(e);
			},
			close: async (end) => {
				entry.end = end;
			},
		};
	}
	statements(): Extract<RecordingEvent, { type: "statement" }>[] {
		return this.sessions.flatMap((s) => s.events.filter((e): e is Extract<RecordingEvent, { type: "statement" }> => e.type === "statement"));
	}
}

/** The approver of the approval tests: sam, in group dba, signed in through OIDC. */
export const APPROVER_SAM: Identity = {
	issuer: "https://issuer.drawbridge.test",
	issuerKind: "oidc",
	subject: "sam",
	username: "sam",
	groups: ["dba"],
	tokenExpiresAt: new Date(Date.now() + 3_600_000),
	claims: {},
};

/** For assert.rejects: SQLSTATE 42501 with DETAIL naming exactly this Drawbridge rule. */
export const refusedByRule = (rule: string) => (e: { code?: string; detail?: string; message: string }) => {
	assert.equal(e.code, "42501", e.message);
	assert.equal(e.detail, `Drawbridge rule: ${rule}`, e.message);
	return true;
};

/** For assert.rejects: SQLSTATE 42501 with message or DETAIL matching `rule`. */
export const refusedMatching = (rule: RegExp) => (e: { code?: string; detail?: string; message: string }) => {
	assert.equal(e.code, "42501", e.message);
	assert.match(`${e.message} ${e.detail ?? ""}`, rule);
	return true;
};

/** None of `secrets` (raw values of a masked column) appears anywhere in `value`'s JSON. */
export function assertNoneOf(secrets: readonly string[], value: unknown): void {
	const text = JSON.stringify(value);
	for (const s of secrets) assert.ok(!text.includes(s), `raw value ${s} in ${text}`);
}

/**
 * fixtureWithClients under the corpus masking rules, and the seeded customers' raw phones read
 * directly (filled once the fixture is up): a column masked with no content detector, so only the
 * masking plan keeps it back.
 */
export function maskedPhonesFixture() {
	const phones: string[] = [];
	const c = fixtureWithClients({ maskRules: CORPUS_MASK_RULES }, async (fx) => {
		phones.push(...(await fx.pg.query("SELECT phone FROM customers ORDER BY id")).rows.map((r) => r.phone as string));
	});
	return { c, phones };
}

/**
 * One test per statement for the read-only client: `rows` rows come back ("all": one per customer;
 * "some": at least one) and none holds a raw phone, in the simple and the extended protocol alike.
 */
export function noRawPhones(f: ReturnType<typeof maskedPhonesFixture>, cases: readonly string[], rows: number | "all" | "some"): void {
	for (const sql of cases) {
		test(`read-only: ${sql}`, async () => {
			const r = await f.c.ro.query(sql);
			if (rows === "some") assert.ok(r.rows.length >= 1);
			else assert.equal(r.rows.length, rows === "all" ? f.phones.length : rows);
			assertNoneOf(f.phones, r.rows);
			const e = await f.c.ro.query({ text: sql, values: [] });
			assertNoneOf(f.phones, e.rows);
		});
	}
}

/** The approvals component's real service over an in-process store, polled quickly, no sweeper. */
export function localApprovals(): StoreApprovalService {
	return new StoreApprovalService({ store: new LocalApprovalStore(), sweepIntervalMs: 0, waitPollIntervalMs: 200 });
}

export interface GrantSpec {
	name: string;
	user: string;
	access: PostgresAccess;
	expiresInMs?: number;
	notBeforeMs?: number;
	/** A per-grant (dynamic) role the gateway uses upstream instead of the Connection's credential. */
	credential?: { username: string; password: string };
}

export interface FixtureOptions {
	grants?: GrantSpec[];
	maskRules?: MaskRule[];
	guardrails?: GuardrailRule[];
	approvals?: ApprovalService;
	allowInsecure?: boolean;
	/** Use an existing server instead of starting one. */
	pg?: PostgresHandle;
	idleTimeoutMs?: number;
	/** sslmode from the gateway to PostgreSQL (default verify-full). */
	upstreamSslmode?: "disable" | "verify-full";
	/** The gateway's catalogCacheTtlMs (default: the listener's, 60 s). */
	catalogCacheTtlMs?: number;
	/** A recorder for the gateway instead of the fixture's MemoryRecorder (whose `recorder` then stays empty). */
	recorder?: Recorder;
}

export interface Fixture {
	pg: PostgresHandle;
	store: BundleStore;
	gateway: PostgresListener;
	port: number;
	recorder: MemoryRecorder;
	caPem: string;
	caFile: string;
	bundle: ConfigBundle;
	token(user: string, opts?: { expiresInSec?: number; audience?: string; issuer?: string; alg?: "none" }): Promise<string>;
	/** node-postgres config through the gateway (TLS verify-full against the gateway's CA). */
	clientConfig(user: string, token: string, extra?: Partial<pg.ClientConfig>): pg.ClientConfig;
	connect(user: string, extra?: Partial<pg.ClientConfig>): Promise<pg.Client>;
	/** libpq connection string through the gateway. */
	dsn(token: string, opts?: { sslmode?: string; database?: string }): string;
	makeBundle(version: number, grants: GrantSpec[], policies?: { guardrails?: GuardrailRule[]; maskRules?: MaskRule[] }): ConfigBundle;
	stop(): Promise<void>;
}

export const DEFAULT_GRANTS: GrantSpec[] = [
	{ name: "alice-rw", user: "alice", access: "read-write" },
	{ name: "bob-ro", user: "bob", access: "read-only" },
	{ name: "root-admin", user: "root", access: "admin" },
];

/** A fixture and a client of each default grant: bob read-only, alice read-write, root admin. */
export interface GrantClients {
	fx: Fixture;
	ro: pg.Client;
	rw: pg.Client;
	admin: pg.Client;
}

/**
 * For a describe block: the fixture started before its tests (`seed` runs on the server first, as its
 * superuser), a client per access level connected through the gateway, all ended after the block,
 * and PostgreSQL's log printed if a test failed. The fields are set once the `before` hook ran.
 */
export function fixtureWithClients(opts: FixtureOptions = {}, seed?: (fx: Fixture) => Promise<void>): GrantClients {
	const c = {} as GrantClients;
	before(async () => {
		c.fx = await startFixture(opts);
		await seed?.(c.fx);
		c.ro = await c.fx.connect("bob");
		c.rw = await c.fx.connect("alice");
		c.admin = await c.fx.connect("root");
	});
	after(async () => {
		// A test may have crashed or restarted the server under them: ending a dead client is no failure.
		await Promise.all([c.ro, c.rw, c.admin].map((x) => x?.end().catch(() => undefined)));
		await c.fx?.stop();
	});
	printLogsOnFailure(() => [["postgres", c.fx?.pg]]);
	return c;
}

export async function startFixture(opts: FixtureOptions = {}): Promise<Fixture> {
	const pgh = opts.pg ?? (await startPostgres());
	const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
	const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "EdDSA", use: "sig" };
	const tlsDir = join(pgh.ca.dir, "gateway");
	mkdirSync(tlsDir, { recursive: true });
	const cert = await issueCert(pgh.ca, { cn: "localhost", name: "gateway-pg" });
	const maskingKey = Buffer.alloc(32, 9).toString("base64");
	const makeBundle = (version: number, grants: GrantSpec[], policies: { guardrails?: GuardrailRule[]; maskRules?: MaskRule[] } = {}): ConfigBundle => {
		const maskRules = policies.maskRules ?? opts.maskRules;
		const guardrails = policies.guardrails ?? opts.guardrails;
		const now = Date.now();
		const bundleGrants: BundleGrant[] = grants.map((g) => ({
			key: `team/${g.name}`,
			name: g.name,
			namespace: "team",
			connection: CONNECTION,
			subjects: [{ kind: "User", name: g.user }],
			notBefore: new Date(now - 60_000 + (g.notBeforeMs ?? 0)).toISOString(),
			expiresAt: new Date(now + (g.expiresInMs ?? 3_600_000)).toISOString(),
			postgres: { access: g.access, ...(g.credential ? { credentialRef: `grant-${g.name}` } : {}) },
			approvers: { subjects: [{ kind: "Group", name: "dba" }], minApprovals: 1 },
			origin: { repository: "grants", commit: "abc123", pullRequest: 42 },
		}));
		return sealBundle({
			apiVersion: BUNDLE_API_VERSION,
			version,
			generatedAt: new Date().toISOString(),
			issuers: [{ name: "test", kind: "oidc", issuer: ISSUER, audiences: [AUDIENCE], jwks: { keys: [jwk] }, algorithms: ["EdDSA"] }],
			connections: [
				{
					key: `team/${CONNECTION}`,
					name: CONNECTION,
					namespace: "team",
					type: "postgres",
					labels: { env: "prod" },
					host: pgh.host,
					port: pgh.port,
					credentialRef: "shop-admin",
					postgres: { database: pgh.database, credentialMode: "static", sslmode: opts.upstreamSslmode ?? "verify-full", caPem: pgh.caPem, serverName: "localhost" },
				},
			],
			grants: bundleGrants,
			maskingPolicies: maskRules ? [{ key: "team/mask", selector: { matchLabels: { env: "prod" } }, rules: maskRules }] : [],
			guardrailPolicies: guardrails ? [{ key: "team/guard", selector: { matchLabels: { env: "prod" } }, rules: guardrails }] : [],
			credentials: {
				"shop-admin": { type: "password", username: pgh.superuser, password: pgh.password },
				...Object.fromEntries(
					grants.filter((g) => g.credential).map((g) => [`grant-${g.name}`, { type: "password" as const, ...g.credential! }]),
				),
			},
			maskingKey,
		});
	};
	const bundle = makeBundle(1, opts.grants ?? DEFAULT_GRANTS);
	const store = new BundleStore();
	store.update(bundle);
	const recorder = new MemoryRecorder();
	const gateway = startPostgresListener({
		store,
		tls: { certPem: cert.certPem, keyPem: cert.keyPem },
		recorder: opts.recorder ?? recorder,
		...(opts.approvals ? { approvals: opts.approvals } : {}),
		...(opts.allowInsecure ? { allowInsecure: true } : {}),
		...(opts.idleTimeoutMs ? { idleTimeoutMs: opts.idleTimeoutMs } : {}),
		...(opts.catalogCacheTtlMs ? { catalogCacheTtlMs: opts.catalogCacheTtlMs } : {}),
		approvalTimeoutSec: 30,
	});
	const { port } = await gateway.listen(0);
	const token: Fixture["token"] = async (user, o = {}) => {
		const jwt = new SignJWT({ email: `${user}@example.com` })
			.setProtectedHeader({ alg: "EdDSA", kid: "k1" })
			.setIssuer(o.issuer ?? ISSUER)
			.setAudience(o.audience ?? AUDIENCE)
			.setSubject(user)
			.setIssuedAt()
			.setExpirationTime(Math.floor(Date.now() / 1000) + (o.expiresInSec ?? 600));
		return jwt.sign(privateKey);
	};
	const clientConfig: Fixture["clientConfig"] = (user, tok, extra = {}) => ({
		host: "127.0.0.1",
		port,
		database: CONNECTION,
		user,
		password: tok,
		ssl: { ca: pgh.caPem, servername: "localhost" },
		...extra,
	});
	return {
		pg: pgh,
		store,
		gateway,
		port,
		recorder,
		caPem: pgh.caPem,
		caFile: pgh.caFile,
		bundle,
		token,
		clientConfig,
		async connect(user, extra = {}) {
			const c = new pg.Client(clientConfig(user, await token(user), extra));
			await c.connect();
			return c;
		},
		dsn: (tok, o = {}) =>
			`host=localhost port=${port} dbname=${o.database ?? CONNECTION} user=agent password=${tok} sslmode=${o.sslmode ?? "verify-full"} sslrootcert=${pgh.caFile}`,
		makeBundle,
		async stop() {
			await gateway.close();
			if (!opts.pg) await pgh.stop();
		},
	};
}
