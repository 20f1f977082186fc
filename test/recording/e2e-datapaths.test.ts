/**
 * Real recordings end to end: real PostgreSQL and OpenSSH sessions through the gateway's data paths,
 * recorded by the real DiskRecorder into a REAL MinIO, then listed, shown and verified with the
 * auditor tools. Also: a full spool (failClosed) refuses the PostgreSQL client with a clear error.
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import pg from "pg";
import { type CliIo, main as cli } from "../../cli/recordings.ts";
import { BUNDLE_API_VERSION, type BundleConnection } from "../../gateway/config/bundle.ts";
import { sealBundle } from "../../gateway/config/canonical.ts";
import { BundleStore } from "../../gateway/config/store.ts";
import { type PostgresListener, startPostgresListener } from "../../gateway/postgres/listener.ts";
import { listSessions, loadSession, loadStoreKeys } from "../../gateway/recording/catalog.ts";
import type { Recorder, SessionMeta, SessionRecorder } from "../../gateway/recording/events.ts";
import type { DiskRecorder } from "../../gateway/recording/recorder.ts";
import { parseEndpoint, S3Store } from "../../gateway/recording/store.ts";
import { verifySession } from "../../gateway/recording/verify.ts";
import { type SshListener, startSshListener } from "../../gateway/ssh/listener.ts";
import { issueCert, type MinioHandle, type PostgresHandle, printLogsOnFailure, run, type SshdHandle, startMinio, startPostgres, startSshd } from "../env/index.ts";
import { approvalService, leeCertId, makeBundle, storeWith, tokenIssuer } from "../ssh/fixtures.ts";
import { KeyDir } from "../ssh/keys.ts";
import { makeRecorder, meta, tempDir } from "./fixtures.ts";

let minio: MinioHandle;
let pgh: PostgresHandle;
let sshd: SshdHandle;
let store: S3Store;
let rec: DiskRecorder;
const keys = new KeyDir();

before(async () => {
	[minio, pgh, sshd] = await Promise.all([startMinio(), startPostgres(), startSshd()]);
	store = new S3Store({ ...parseEndpoint(minio.endpoint), accessKey: minio.accessKey, secretKey: minio.secretKey, bucket: "e2e-recordings", objectLock: { mode: "GOVERNANCE", days: 1 } });
	({ rec } = await makeRecorder(store, await tempDir("e2e-spool")));
});
after(async () => {
	await rec?.stop();
	await Promise.all([minio?.destroy(), pgh?.stop(), sshd?.stop()]);
	keys.cleanup();
});
printLogsOnFailure(() => [
	["minio", minio],
	["postgres", pgh],
	["sshd", sshd],
]);

const cliIo = (): CliIo & { text: () => string } => {
	const out: string[] = [];
	return {
		env: { AWS_ACCESS_KEY_ID: minio.accessKey, AWS_SECRET_ACCESS_KEY: minio.secretKey },
		stdout: (s) => void out.push(s),
		stderr: () => {},
		stderrIsTty: false,
		sleep: async () => {},
		text: () => out.join(""),
	};
};

async function pgGateway(recorder: Recorder) {
	const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
	const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "EdDSA", use: "sig" };
	const cert = await issueCert(pgh.ca, { cn: "localhost", name: "gateway-rec" });
	const now = Date.now();
	const bundleStore = new BundleStore();
	bundleStore.update(
		sealBundle({
			apiVersion: BUNDLE_API_VERSION,
			version: 1,
			generatedAt: new Date().toISOString(),
			issuers: [{ name: "test", kind: "oidc", issuer: "https://issuer.test", audiences: ["drawbridge"], jwks: { keys: [jwk] }, algorithms: ["EdDSA"] }],
			connections: [
				{
					key: "data/orders-prod",
					name: "orders-prod",
					namespace: "data",
					type: "postgres",
					labels: { env: "prod" },
					host: pgh.host,
					port: pgh.port,
					credentialRef: "pg",
					postgres: { database: pgh.database, credentialMode: "static", sslmode: "verify-full", caPem: pgh.caPem, serverName: "localhost" },
				},
			],
			grants: [
				{
					key: "ci/deployer-orders-ro",
					name: "deployer-orders-ro",
					namespace: "ci",
					connection: "orders-prod",
					subjects: [{ kind: "User", name: "ci-deployer" }],
					notBefore: new Date(now - 60_000).toISOString(),
					expiresAt: new Date(now + 3_600_000).toISOString(),
					postgres: { access: "read-only" },
					approvers: { subjects: [], minApprovals: 1 },
					origin: { repository: "grants", commit: "feedface00000000000000000000000000000000", pullRequest: 142, url: "https://git.test/grants/pull/142" },
				},
			],
			maskingPolicies: [{ key: "data/pii", selector: { matchLabels: { env: "prod" } }, rules: [{ name: "email", columns: ["customers.email"], strategy: { type: "redact" } }] }],
			guardrailPolicies: [{ key: "data/guard", selector: { matchLabels: { env: "prod" } }, rules: [{ name: "no-drop", action: "block", sql: { statementKinds: ["DROP", "TRUNCATE"] } }] }],
			credentials: { pg: { type: "password", username: pgh.superuser, password: pgh.password } },
			maskingKey: Buffer.alloc(32, 5).toString("base64"),
		}),
	);
	const gateway: PostgresListener = startPostgresListener({ store: bundleStore, tls: { certPem: cert.certPem, keyPem: cert.keyPem }, recorder });
	const { port } = await gateway.listen(0);
	const token = await new SignJWT({}).setProtectedHeader({ alg: "EdDSA", kid: "k1" }).setIssuer("https://issuer.test").setAudience("drawbridge").setSubject("ci-deployer").setIssuedAt().setExpirationTime("10m").sign(privateKey);
	const client = () => new pg.Client({ host: "127.0.0.1", port, database: "orders-prod", user: "ci-deployer", password: token, ssl: { ca: pgh.caPem, servername: "localhost" } });
	return { gateway, client };
}

test("a real PostgreSQL session through the gateway: masked statements, blocked DROP, read-only refusal, verified in MinIO", async () => {
	const { gateway, client } = await pgGateway(rec);
	try {
		const c = client();
		await c.connect();
		const rows = await c.query("SELECT id, email FROM customers ORDER BY id LIMIT 3");
		assert.equal(rows.rows.length, 3);
		assert.ok(rows.rows.every((r) => !String(r.email).includes("@example.com")), "email masked for the client");
		await assert.rejects(c.query("DROP TABLE orders"));
		await assert.rejects(c.query("UPDATE customers SET name = 'x' WHERE id = 1"), (e: { code?: string }) => e.code === "42501");
		await c.query("SELECT count(*) FROM orders WHERE status = $1", ["paid"]);
		await c.end();
		// The session closes asynchronously after the client leaves.
		const deadline = Date.now() + 20_000;
		let sessions: Awaited<ReturnType<typeof listSessions>> = [];
		while (Date.now() < deadline) {
			await rec.drain(20_000);
			sessions = await listSessions(store, { connection: "orders-prod", identity: "ci-deployer" });
			if (sessions.length > 0) break;
			await new Promise((r) => setTimeout(r, 200));
		}
		assert.equal(sessions.length, 1);
		const s = sessions[0]!;
		assert.equal(s.grant, "ci/deployer-orders-ro");
		assert.equal(s.hasBlocked, true);
		assert.equal(s.pullRequest, "142");
		const v = await verifySession(store, s.prefix, (await loadStoreKeys(store)).set);
		assert.deepEqual(v.problems, []);
		const loaded = await loadSession(store, s.prefix);
		const statements = loaded.events.filter((e) => e.type === "statement");
		const drop = statements.find((e) => e.type === "statement" && /DROP TABLE orders/.test(e.sql));
		assert.ok(drop && drop.type === "statement" && drop.decision === "block", JSON.stringify(statements, null, 1));
		const update = statements.find((e) => e.type === "statement" && /UPDATE customers/.test(e.sql));
		assert.ok(update && update.type === "statement" && update.decision !== "allow" || (update?.type === "statement" && update.error?.code === "42501"), JSON.stringify(update));
		const sel = statements.find((e) => e.type === "statement" && /SELECT id, email FROM customers/.test(e.sql));
		assert.ok(sel && sel.type === "statement" && sel.decision === "allow");
		assert.equal(loaded.document?.identity.username, "ci-deployer");
		assert.equal(loaded.document?.origin.pullRequest, 142);
		assert.equal(loaded.document?.target.database, pgh.database);
		// No unmasked customer e-mail anywhere in the stored recording.
		assert.doesNotMatch(JSON.stringify(loaded.events), /@example\.com/);
		// The auditor CLI sees it too.
		const io = cliIo();
		assert.equal(await cli(["show", s.sessionId, "--endpoint", minio.endpoint, "--bucket", "e2e-recordings"], io), 0);
		assert.match(io.text(), /Grant {7}ci\/deployer-orders-ro {2}approved by commit feedface0+ {2}PR #142/);
		assert.match(io.text(), /SQL {4}BLOCK {4}DROP TABLE orders/);
		assert.match(io.text(), /Integrity {3}verified/);
	} finally {
		await gateway.close();
	}
});

test("spool full (failClosed): the PostgreSQL client is refused with a clear error naming the spool", async () => {
	const full = await makeRecorder(new S3Store({ ...parseEndpoint("http://127.0.0.1:1"), accessKey: "x", secretKey: "y", bucket: "unreachable" }), await tempDir("e2e-full"), { maxSpoolBytes: 1 });
	// A backlog the unreachable store cannot take: the spool is over its (tiny) budget.
	const earlier = await full.rec.openSession(meta());
	earlier.emit({ type: "notice", message: "waiting for the store" });
	await earlier.close({ reason: "client-closed" });
	assert.ok(full.rec.backlogBytes() > 1);
	const { gateway, client } = await pgGateway(full.rec);
	try {
		const c = client();
		c.on("error", () => {});
		await assert.rejects(c.connect(), (e: Error & { code?: string }) => {
			assert.match(e.message, /session recording is unavailable, connection refused: recording spool is full/);
			assert.equal(e.code, "53000", "insufficient_resources");
			return true;
		});
	} finally {
		await gateway.close();
		await full.rec.stop();
	}
});

/** A recorder whose openSession waits until the test lets it go on (to the real recorder) or fail. */
class HeldRecorder implements Recorder {
	opened = 0;
	#release!: (outcome: "open" | Error) => void;
	readonly #outcome = new Promise<"open" | Error>((r) => {
		this.#release = r;
	});
	constructor(private readonly inner: Recorder) {}
	release(outcome: "open" | Error): void {
		this.#release(outcome);
	}
	async openSession(m: SessionMeta): Promise<SessionRecorder> {
		this.opened++;
		const outcome = await this.#outcome;
		if (outcome instanceof Error) throw outcome;
		return this.inner.openSession(m);
	}
}

test("the upstream connection is made while the recording opens; the client gets nothing before both are ready, and a recording that fails to open closes it", async () => {
	const admin = new pg.Client({ host: pgh.host, port: pgh.port, user: pgh.superuser, password: pgh.password, database: pgh.database, ssl: { ca: pgh.caPem, servername: "localhost" } });
	await admin.connect();
	const backends = async () =>
		Number((await admin.query("SELECT count(*) AS n FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND application_name <> 'drawbridge-catalog'")).rows[0].n);
	const waitFor = async (what: string, ok: () => Promise<boolean>) => {
		const deadline = Date.now() + 10_000;
		while (!(await ok())) {
			if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
			await new Promise((r) => setTimeout(r, 25));
		}
	};
	try {
		const before = await backends();
		for (const outcome of ["open", new Error("spool disk failed")] as const) {
			const held = new HeldRecorder(rec);
			const { gateway, client } = await pgGateway(held);
			try {
				const c = client();
				c.on("error", () => {});
				let settled = false;
				const connecting = c.connect().then(
					() => {
						settled = true;
					},
					(e: Error & { code?: string }) => {
						settled = true;
						throw e;
					},
				);
				connecting.catch(() => {});
				// The gateway's upstream session is up while the recording is still opening…
				await waitFor("the upstream backend", async () => held.opened === 1 && (await backends()) === before + 1);
				await new Promise((r) => setTimeout(r, 100));
				assert.equal(settled, false, "the client is not let in before the recording is open");
				held.release(outcome);
				if (outcome === "open") {
					await connecting;
					assert.equal((await c.query("SELECT 41 + 1 AS n")).rows[0].n, 42);
					await c.end();
				} else {
					await assert.rejects(connecting, (e: Error & { code?: string }) => {
						assert.match(e.message, /session recording is unavailable, connection refused: spool disk failed/);
						assert.equal(e.code, "53000");
						return true;
					});
				}
				// …and is gone once the client is (refused: at once, before any statement reached it).
				await waitFor("the upstream backend to close", async () => (await backends()) === before);
			} finally {
				await gateway.close();
			}
		}
	} finally {
		await admin.end();
	}
});

test("a real OpenSSH interactive session through the gateway: terminal.cast plays, commands and decisions recorded, verified", async () => {
	const issuer = await tokenIssuer();
	const ca = keys.keygen("ed25519");
	const agent = keys.keygen("ed25519");
	const connection: BundleConnection = {
		key: "ops/db-primary",
		name: "db-primary",
		namespace: "ops",
		type: "ssh",
		labels: { env: "prod" },
		host: sshd.host,
		port: sshd.port,
		credentialRef: "ssh-gw",
		ssh: { hostKeys: [sshd.hostPublicKey], auth: "key" },
	};
	const bundleStore = storeWith(
		makeBundle(issuer, {
			connections: [connection],
			grants: [
				{
					key: "ops/break-glass",
					name: "break-glass",
					namespace: "ops",
					connection: "db-primary",
					subjects: [{ kind: "User", name: "lee" }],
					notBefore: new Date(Date.now() - 60_000).toISOString(),
					expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
					ssh: { logins: [sshd.user], allowShell: true, allowSftp: false, allowPortForwarding: false, allowAgentForwarding: false },
					approvers: { subjects: [], minApprovals: 1 },
					origin: { repository: "grants", commit: "abc123", pullRequest: 7 },
				},
			],
			guardrailPolicies: [
				{ key: "ops/ssh", selector: { matchLabels: { env: "prod" } }, rules: [{ name: "no-rm-rf", action: "block", message: "recursive deletes are not allowed", ssh: { commands: ["rm -rf *"] } }] },
			],
			credentials: { "ssh-gw": { type: "sshKey", username: sshd.user, privateKeyPem: readFileSync(sshd.clientKeyFile, "utf8") } },
		}),
	);
	const gw: SshListener = await startSshListener({ store: bundleStore, recorder: rec, approvals: approvalService(), hostKeyPem: keys.keygen("ed25519").privateKey, trustedUserCAKeys: [ca.publicKey] });
	try {
		const knownHosts = join(keys.dir, "known_hosts_rec");
		writeFileSync(knownHosts, `[127.0.0.1]:${gw.address.port} ${gw.hostPublicKey}\n`);
		const certFile = join(keys.dir, "rec-cert.pub");
		writeFileSync(certFile, `${keys.sign(ca, agent, { id: leeCertId("ops/break-glass"), principals: [sshd.user], validity: "-5m:+1h" })}\n`);
		const args = ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${knownHosts}`, "-o", "IdentitiesOnly=yes", "-i", agent.path, "-o", `CertificateFile=${certFile}`, "-p", String(gw.address.port), "-l", `${sshd.user}@db-primary`, "127.0.0.1", "-tt"];
		const r = await run("ssh", args, { input: "echo recorded-$((6*7))\nrm -rf /tmp/drawbridge-rec-nothing\nexit\n", timeoutMs: 30_000 });
		assert.match(r.stdout, /recorded-42/);
		const deadline = Date.now() + 20_000;
		let sessions: Awaited<ReturnType<typeof listSessions>> = [];
		while (Date.now() < deadline) {
			await rec.drain(20_000);
			sessions = await listSessions(store, { protocol: "ssh" });
			if (sessions.length > 0) break;
			await new Promise((res) => setTimeout(res, 200));
		}
		assert.equal(sessions.length, 1);
		const s = sessions[0]!;
		assert.equal(s.identity, "lee");
		assert.equal(s.hasBlocked, true);
		assert.deepEqual((await verifySession(store, s.prefix, (await loadStoreKeys(store)).set)).problems, []);
		const loaded = await loadSession(store, s.prefix);
		const cast = (loaded.cast ?? "").trim().split("\n");
		const header = JSON.parse(cast[0]!) as { version: number; width: number; height: number };
		assert.equal(header.version, 2);
		const frames = cast.slice(1).map((l) => JSON.parse(l) as [number, string, string]);
		assert.match(frames.filter((f) => f[1] === "o").map((f) => f[2]).join(""), /recorded-42/);
		for (let i = 1; i < frames.length; i++) assert.ok(frames[i]![0] >= frames[i - 1]![0], "monotonic cast times");
		const blocked = loaded.events.find((e) => e.type === "exec" && /rm -rf/.test(e.command));
		assert.ok(blocked && blocked.type === "exec" && blocked.decision === "block");
		// `replay` writes the recorded output to the terminal.
		const io = cliIo();
		assert.equal(await cli(["replay", s.sessionId, "--endpoint", minio.endpoint, "--bucket", "e2e-recordings", "--speed", "100"], io), 0);
		assert.match(io.text(), /recorded-42/);
	} finally {
		await gw.close();
	}
});
