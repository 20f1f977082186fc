// `drawbridge gateway` as a process, the way a Deployment runs it: flags and env, a bundle file it
// watches, real PostgreSQL behind it, recordings in a directory, /readyz and /metrics, and SIGTERM
// draining live sessions within the grace period with every recording finalised.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import pg from "pg";
import { BUNDLE_API_VERSION, type ConfigBundle } from "../../gateway/config/bundle.ts";
import { sealBundle } from "../../gateway/config/canonical.ts";
import { freePort, issueCert, makeTempDir, type PostgresHandle, printLogsOnFailure, startPostgres } from "../env/index.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const ISSUER = "https://issuer.process.test";
let pgh: PostgresHandle;
let dir: string;
let sign: (user: string) => Promise<string>;
let bundle: (version: number, expiresInMs: number) => ConfigBundle;
let gatewayLog = "";

before(async () => {
	pgh = await startPostgres();
	dir = makeTempDir("gateway-process");
	const cert = await issueCert(pgh.ca, { cn: "localhost", name: "gateway-process" });
	writeFileSync(join(dir, "tls.crt"), cert.certPem);
	writeFileSync(join(dir, "tls.key"), cert.keyPem);
	const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
	const jwk = { ...(await exportJWK(publicKey)), kid: "p1", alg: "EdDSA" };
	sign = (user) =>
		new SignJWT({}).setProtectedHeader({ alg: "EdDSA", kid: "p1" }).setIssuer(ISSUER).setAudience("drawbridge").setSubject(user).setIssuedAt().setExpirationTime("10m").sign(privateKey);
	bundle = (version, expiresInMs) =>
		sealBundle({
			apiVersion: BUNDLE_API_VERSION,
			version,
			generatedAt: new Date().toISOString(),
			issuers: [{ name: "t", kind: "oidc", issuer: ISSUER, audiences: ["drawbridge"], jwks: { keys: [jwk] }, algorithms: ["EdDSA"] }],
			connections: [
				{
					key: "team/shop", name: "shop", namespace: "team", type: "postgres", labels: { env: "prod" }, host: pgh.host, port: pgh.port, credentialRef: "admin",
					postgres: { database: pgh.database, credentialMode: "static", sslmode: "verify-full", caPem: pgh.caPem, serverName: "localhost" },
				},
			],
			grants: [
				{
					key: "team/alice", name: "alice", namespace: "team", connection: "shop", subjects: [{ kind: "User", name: "alice" }],
					notBefore: new Date(Date.now() - 60_000).toISOString(), expiresAt: new Date(Date.now() + expiresInMs).toISOString(),
					postgres: { access: "read-only" }, approvers: { subjects: [], minApprovals: 1 }, origin: { commit: "c0ffee", pullRequest: 7 },
				},
			],
			maskingPolicies: [{ key: "team/m", selector: { matchLabels: { env: "prod" } }, rules: [{ name: "email", columns: ["customers.email"], strategy: { type: "redact" } }] }],
			guardrailPolicies: [],
			credentials: { admin: { type: "password", username: pgh.superuser, password: pgh.password } },
			maskingKey: Buffer.alloc(32, 3).toString("base64"),
		});
	writeFileSync(join(dir, "bundle.json"), JSON.stringify(bundle(1, 3_600_000)));
});

after(async () => {
	await pgh?.stop();
});
printLogsOnFailure(() => [["postgres", pgh], ["gateway", { logs: () => gatewayLog }]]);

async function startGatewayProcess(extraEnv: Record<string, string>): Promise<{ child: ChildProcess; pgPort: number; adminPort: number }> {
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
				...extraEnv,
			},
		},
	);
	child.stdout?.on("data", (d: Buffer) => (gatewayLog += d));
	child.stderr?.on("data", (d: Buffer) => (gatewayLog += d));
	const deadline = Date.now() + 60_000;
	for (;;) {
		if (child.exitCode !== null) throw new Error(`gateway exited ${child.exitCode}:\n${gatewayLog}`);
		try {
			const r = await fetch(`http://127.0.0.1:${adminPort}/readyz`);
			if (r.ok) break;
		} catch {}
		if (Date.now() > deadline) throw new Error(`gateway not ready:\n${gatewayLog}`);
		await new Promise((r) => setTimeout(r, 200));
	}
	return { child, pgPort, adminPort };
}

function client(port: number, token: string): pg.Client {
	const c = new pg.Client({ host: "127.0.0.1", port, database: "shop", user: "agent", password: token, ssl: { ca: pgh.caPem, servername: "localhost" } });
	c.on("error", () => {});
	return c;
}

test("the gateway process serves, counts and logs JSON; a new bundle file is picked up live", { timeout: 120_000 }, async () => {
	const { child, pgPort, adminPort } = await startGatewayProcess({ DRAWBRIDGE_POSTGRES_MAX_CONNECTIONS: "1" });
	try {
		const c = client(pgPort, await sign("alice"));
		await c.connect();
		const r = await c.query("SELECT email FROM customers ORDER BY id LIMIT 1");
		assert.doesNotMatch(String(r.rows[0].email), /@/, "email masked");
		await assert.rejects(c.query("DELETE FROM orders WHERE id = 1"), (e: { code?: string }) => e.code === "42501");
		// DRAWBRIDGE_POSTGRES_MAX_CONNECTIONS=1: a second client is refused with the limit in the message.
		await assert.rejects(client(pgPort, await sign("alice")).connect(), (e: { code?: string; message: string }) => {
			assert.equal(e.code, "53300", e.message);
			assert.match(e.message, /at most 1 concurrent PostgreSQL connections/);
			return true;
		});
		await c.end();
		const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
		assert.match(metrics, /drawbridge_gateway_connections_refused_total\{protocol="postgres",reason="max-connections"\} 1/);
		assert.match(metrics, /drawbridge_gateway_sessions_total\{protocol="postgres",connection="shop"\} 1/);
		assert.match(metrics, /drawbridge_gateway_decisions_total\{protocol="postgres",kind="statement",decision="block"\} 1/);
		assert.match(metrics, /drawbridge_gateway_bundle_version 1/);
		assert.match(metrics, /drawbridge_recording_backlog_bytes/);
		// Structured JSON logs.
		const line = gatewayLog.split("\n").find((l) => l.includes("gateway ready"));
		assert.ok(line, gatewayLog);
		assert.equal(JSON.parse(line).component, "gateway");
		// The launcher re-execs `drawbridge gateway` under --liftoff-only, same PID (docs/performance.md).
		assert.equal(JSON.parse(line).wasmTier, "liftoff");
		// A newer bundle on disk is applied without a restart.
		writeFileSync(join(dir, "bundle.json"), JSON.stringify(bundle(2, 3_600_000)));
		const deadline = Date.now() + 15_000;
		for (;;) {
			const ready = (await (await fetch(`http://127.0.0.1:${adminPort}/readyz`)).json()) as { bundleVersion?: number };
			if (ready.bundleVersion === 2) break;
			assert.ok(Date.now() < deadline, "bundle version 2 not loaded");
			await new Promise((r) => setTimeout(r, 200));
		}
	} finally {
		child.kill("SIGKILL");
	}
});

test("SIGTERM drains: readiness drops, a live session may finish within the grace period, recordings are finalised", { timeout: 120_000 }, async () => {
	gatewayLog = "";
	const { child, pgPort, adminPort } = await startGatewayProcess({ DRAWBRIDGE_SHUTDOWN_GRACE_MS: "20000" });
	const c = client(pgPort, await sign("alice"));
	await c.connect();
	await c.query("SELECT 1");
	const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
	child.kill("SIGTERM");
	// Not ready any more, but the live session still works during the grace period.
	const deadline = Date.now() + 10_000;
	for (;;) {
		const r = await fetch(`http://127.0.0.1:${adminPort}/readyz`).catch(() => undefined);
		if (r && r.status === 503) break;
		assert.ok(Date.now() < deadline, "readiness did not drop");
		await new Promise((r) => setTimeout(r, 100));
	}
	// A new connection is refused (FATAL 57P03) and counted, while the live session still runs queries.
	const running = c.query("SELECT pg_sleep(0.5), count(*)::int AS n FROM orders");
	await assert.rejects(client(pgPort, await sign("alice")).connect(), (e: { code?: string; message: string }) => {
		assert.equal(e.code, "57P03", e.message);
		assert.match(e.message, /shutting down/);
		return true;
	});
	assert.ok((await running).rows[0].n > 0);
	const metrics = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
	assert.match(metrics, /drawbridge_gateway_connections_refused_total\{protocol="postgres",reason="shutting-down"\} 1/);
	const r = await c.query("SELECT count(*)::int AS n FROM orders");
	assert.ok(r.rows[0].n > 0);
	const started = Date.now();
	await c.end();
	assert.equal(await exited, 0, gatewayLog);
	assert.ok(Date.now() - started < 15_000, "the gateway exited soon after the last session ended");
	// Every session of this gateway run has a signed manifest in the recordings directory.
	const manifests: string[] = [];
	const walk = (d: string) => {
		for (const e of readdirSync(d, { withFileTypes: true })) {
			if (e.isDirectory()) walk(join(d, e.name));
			else if (e.name === "manifest.jws") manifests.push(join(d, e.name));
		}
	};
	walk(join(dir, "recordings"));
	assert.ok(manifests.length >= 2, `manifests: ${manifests.join(", ")}`);
	const sessions = manifests.map((m) => JSON.parse(readFileSync(join(m, "..", "session.json"), "utf8")) as { end?: { reason?: string } });
	assert.ok(sessions.every((s) => s.end?.reason !== undefined), JSON.stringify(sessions));
	assert.ok(existsSync(join(dir, "spool")));
});
