/**
 * Gateway shutdown with many live sessions, at process level (`drawbridge gateway`, gateway/main.ts):
 * 20 sessions open — idle, inside an open transaction, and busy in a long query — then SIGTERM with
 * a short grace period. Readiness drops at once and an agent that still connects during the grace
 * period is refused with FATAL 57P03 (cannot_connect_now) while the busy sessions run on; the sessions still
 * open when the grace period ends get FATAL 57P01 (not a bare disconnect); their upstream backends
 * are gone (the open transaction rolled back); the process exits 0; every session's recording is
 * finalised with a signed manifest and an end reason. (A single session finishing inside the grace
 * period is covered by test/gateway/process.test.ts.)
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import pg from "pg";
import { BUNDLE_API_VERSION } from "../../gateway/config/bundle.ts";
import { sealBundle } from "../../gateway/config/canonical.ts";
import { freePort, issueCert, makeTempDir, type PostgresHandle, printLogsOnFailure, startPostgres } from "../env/index.ts";
import { waitFor } from "./fixture.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const ISSUER = "https://issuer.drain.test";
const GRACE_MS = 3_000;
let pgh: PostgresHandle;
let dir: string;
let token: string;
let log = "";

before(async () => {
	pgh = await startPostgres();
	await pgh.query("CREATE TABLE drain_marks (id int)");
	dir = makeTempDir("faults-drain");
	const cert = await issueCert(pgh.ca, { cn: "localhost", name: "gateway-drain" });
	writeFileSync(join(dir, "tls.crt"), cert.certPem);
	writeFileSync(join(dir, "tls.key"), cert.keyPem);
	const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
	const jwk = { ...(await exportJWK(publicKey)), kid: "d1", alg: "EdDSA" };
	token = await new SignJWT({}).setProtectedHeader({ alg: "EdDSA", kid: "d1" }).setIssuer(ISSUER).setAudience("drawbridge").setSubject("alice").setIssuedAt().setExpirationTime("30m").sign(privateKey);
	const now = Date.now();
	const bundle = sealBundle({
		apiVersion: BUNDLE_API_VERSION,
		version: 1,
		generatedAt: new Date().toISOString(),
		issuers: [{ name: "t", kind: "oidc", issuer: ISSUER, audiences: ["drawbridge"], jwks: { keys: [jwk] }, algorithms: ["EdDSA"] }],
		connections: [
			{
				key: "team/shop",
				name: "shop",
				namespace: "team",
				type: "postgres",
				labels: { env: "prod" },
				host: pgh.host,
				port: pgh.port,
				credentialRef: "admin",
				postgres: { database: pgh.database, credentialMode: "static", sslmode: "verify-full", caPem: pgh.caPem, serverName: "localhost" },
			},
		],
		grants: [
			{
				key: "team/alice",
				name: "alice",
				namespace: "team",
				connection: "shop",
				subjects: [{ kind: "User", name: "alice" }],
				notBefore: new Date(now - 60_000).toISOString(),
				expiresAt: new Date(now + 3_600_000).toISOString(),
				postgres: { access: "read-write" },
				approvers: { subjects: [], minApprovals: 1 },
				origin: { commit: "drain" },
			},
		],
		maskingPolicies: [],
		guardrailPolicies: [],
		credentials: { admin: { type: "password", username: pgh.superuser, password: pgh.password } },
		maskingKey: Buffer.alloc(32, 4).toString("base64"),
	});
	writeFileSync(join(dir, "bundle.json"), JSON.stringify(bundle));
});
after(async () => {
	await pgh?.stop();
});
printLogsOnFailure(() => [["postgres", pgh], ["gateway", { logs: () => log }]]);

async function startGateway(): Promise<{ child: ChildProcess; pgPort: number; adminPort: number }> {
	const [pgPort, adminPort] = [await freePort(), await freePort()];
	const child = spawn(
		process.execPath,
		[join(ROOT, "bin", "drawbridge.mjs"), "gateway", "--bundle-file", join(dir, "bundle.json"), "--postgres-listen", `127.0.0.1:${pgPort}`, "--recordings-dir", join(dir, "recordings")],
		{
			cwd: ROOT,
			stdio: ["ignore", "pipe", "pipe"],
			env: {
				...process.env,
				DRAWBRIDGE_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
				DRAWBRIDGE_TLS_CERT_FILE: join(dir, "tls.crt"),
				DRAWBRIDGE_TLS_KEY_FILE: join(dir, "tls.key"),
				DRAWBRIDGE_SPOOL_DIR: join(dir, "spool"),
				DRAWBRIDGE_APPROVALS: `local:${join(dir, "approvals")}`,
				DRAWBRIDGE_SHUTDOWN_GRACE_MS: String(GRACE_MS),
			},
		},
	);
	child.stdout?.on("data", (d: Buffer) => (log += d));
	child.stderr?.on("data", (d: Buffer) => (log += d));
	await waitFor(
		"gateway ready",
		async () => {
			if (child.exitCode !== null) throw new Error(`gateway exited ${child.exitCode}:\n${log}`);
			const r = await fetch(`http://127.0.0.1:${adminPort}/readyz`).catch(() => undefined);
			return r?.ok === true;
		},
		90_000,
		200,
	);
	return { child, pgPort, adminPort };
}

test("SIGTERM with 20 live sessions: readiness drops, stragglers get FATAL 57P01 at the end of the grace period, upstream cleaned, recordings finalised", { timeout: 300_000 }, async () => {
	const { child, pgPort, adminPort } = await startGateway();
	const cfg = { host: "127.0.0.1", port: pgPort, database: "shop", user: "agent", password: token, ssl: { ca: pgh.caPem, servername: "localhost" } };
	const clients: { c: pg.Client; errors: (Error & { code?: string })[] }[] = [];
	for (let i = 0; i < 20; i++) {
		const c = new pg.Client(cfg);
		const errors: (Error & { code?: string })[] = [];
		c.on("error", (e) => errors.push(e));
		await c.connect();
		await c.query("SELECT 1");
		clients.push({ c, errors });
	}
	// Five sessions inside an open transaction that wrote a row, five busy in a long query.
	for (const { c } of clients.slice(0, 5)) await c.query("BEGIN; INSERT INTO drain_marks VALUES (1)");
	const busy = clients.slice(5, 10).map(({ c }) =>
		c.query("SELECT pg_sleep(120)").then(
			() => ({ code: "completed" }),
			(e: Error & { code?: string }) => ({ code: e.code ?? e.message }),
		),
	);
	await waitFor("busy queries running", async () => {
		const r = await pgh.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(120)' AND state = 'active'");
		return r.rows[0]!.n === 5;
	});

	const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
	child.kill("SIGTERM");
	await waitFor("readiness drops", async () => (await fetch(`http://127.0.0.1:${adminPort}/readyz`).catch(() => undefined))?.status === 503, 30_000, 100);
	// Endpoint removal lags SIGTERM in Kubernetes: an agent that still reaches this replica during the
	// grace period is refused with 57P03 (its driver retries, another replica answers), never let in
	// only to be cut at the end of the grace period.
	const late = new pg.Client(cfg);
	late.on("error", () => undefined);
	await assert.rejects(late.connect(), (e: Error & { code?: string }) => {
		assert.equal(e.code, "57P03", e.message);
		assert.match(e.message, /shutting down/);
		return true;
	});
	const stillBusy = await pgh.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(120)' AND state = 'active'");
	assert.equal(stillBusy.rows[0]!.n, 5, "the busy sessions run on while new connections are refused");

	// Stragglers: told why, with the shutdown SQLSTATE.
	const busyResults = await Promise.all(busy);
	assert.deepEqual(busyResults.map((r) => r.code), Array(5).fill("57P01"), log);
	await waitFor("idle sessions told", () => clients.slice(10).every(({ errors }) => errors.length > 0), 60_000);
	for (const { errors } of [...clients.slice(0, 5), ...clients.slice(10)]) {
		await waitFor("error delivered", () => errors.length > 0, 60_000);
		assert.equal(errors[0]!.code, "57P01", errors.map((e) => `${e.code} ${e.message}`).join("; "));
	}
	assert.equal(await exited, 0, log);

	// Upstream: no backend of the gateway left; the open transactions were rolled back.
	await waitFor("upstream sessions gone", async () => {
		const r = await pgh.query("SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'drawbridge%'");
		return r.rows[0]!.n === 0;
	});
	const marks = await pgh.query("SELECT count(*)::int AS n FROM drain_marks");
	assert.equal(marks.rows[0]!.n, 0);

	// Recordings: every session has a signed manifest and an end reason.
	const sessions: { end?: { reason?: string } }[] = [];
	const walk = (d: string) => {
		for (const e of readdirSync(d, { withFileTypes: true })) {
			if (e.isDirectory()) walk(join(d, e.name));
			else if (e.name === "manifest.jws") sessions.push(JSON.parse(readFileSync(join(d, "session.json"), "utf8")));
		}
	};
	walk(join(dir, "recordings"));
	assert.equal(sessions.length, 20, `finalised sessions: ${sessions.length}`);
	assert.ok(sessions.every((s) => typeof s.end?.reason === "string"), JSON.stringify(sessions.map((s) => s.end)));
	for (const { c } of clients) await c.end().catch(() => undefined);
});
