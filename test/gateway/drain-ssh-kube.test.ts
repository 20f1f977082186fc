/**
 * `drawbridge gateway` as a process with its SSH and Kubernetes listeners (gateway/main.ts wiring):
 * `--ssh-max-connections` reaches the SSH listener (real `ssh` is told the limit was reached), and
 * SIGTERM drains SSH and Kubernetes as it does PostgreSQL: readiness drops, a new `ssh` is told the
 * gateway is shutting down while a live ssh session still runs commands, a new Kubernetes request gets
 * the 503 Status while an open watch keeps streaming until the grace period ends; every refusal is
 * counted in drawbridge_gateway_connections_refused_total; the process exits 0.
 * Real sshd and kube-apiserver (test/env). Listener-level detail: test/ssh/limits.test.ts,
 * test/kube/drain.test.ts.
 */
import assert from "node:assert/strict";
import { type ChildProcess, type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import https from "node:https";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { freePort, issueCert, type KubeHandle, makeTempDir, printLogsOnFailure, run, type SshdHandle, startKube, startSshd } from "../env/index.ts";
import { leeCertId, makeBundle, type TokenIssuer, tokenIssuer, waitUntil } from "../ssh/fixtures.ts";
import { type KeyPair, KeyDir } from "../ssh/keys.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const NS = "drain-process";
const GRACE_MS = 8_000;
const keys = new KeyDir();
let sshd: SshdHandle;
let kube: KubeHandle;
let issuer: TokenIssuer;
let dir: string;
let agent: KeyPair;
let certFile: string;
let hostKey: KeyPair;
let log = "";
/** Processes a failed test must not leave behind. */
const children: ChildProcess[] = [];

before(async () => {
	[issuer, sshd, kube] = await Promise.all([tokenIssuer(), startSshd(), startKube()]);
	dir = makeTempDir("gateway-drain-ssh-kube");
	await kube.createNamespace(NS);
	const rbac = `
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: cm-reader, namespace: ${NS} }
rules: [{ apiGroups: [""], resources: [configmaps], verbs: [get, list, watch] }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: cm-reader, namespace: ${NS} }
subjects: [{ kind: User, name: lee, apiGroup: rbac.authorization.k8s.io }]
roleRef: { kind: Role, name: cm-reader, apiGroup: rbac.authorization.k8s.io }
`;
	const applied = await kube.kubectl(["apply", "-f", "-"], { input: rbac });
	assert.equal(applied.code, 0, applied.stderr);
	const cert = await issueCert(kube.ca, { cn: "localhost", ips: ["127.0.0.1"], name: "gateway-drain-process" });
	writeFileSync(join(dir, "tls.crt"), cert.certPem);
	writeFileSync(join(dir, "tls.key"), cert.keyPem);
	const ca = keys.keygen("ed25519");
	agent = keys.keygen("ed25519");
	hostKey = keys.keygen("ed25519");
	writeFileSync(join(dir, "ssh_host_key"), hostKey.privateKey, { mode: 0o600 });
	certFile = join(keys.dir, "agent-cert.pub");
	writeFileSync(certFile, `${keys.sign(ca, agent, { id: leeCertId("ops/lee-ssh"), principals: [sshd.user], validity: "-5m:+1h" })}\n`);
	const window = { notBefore: new Date(Date.now() - 60_000).toISOString(), expiresAt: new Date(Date.now() + 3_600_000).toISOString() };
	const bundle = makeBundle(issuer, {
		connections: [
			{ key: "ops/box", name: "box", namespace: "ops", type: "ssh", labels: {}, host: sshd.host, port: sshd.port, credentialRef: "ssh-gw", ssh: { hostKeys: [sshd.hostPublicKey], auth: "key" } },
			{ key: "ops/cluster", name: "cluster", namespace: "ops", type: "kubernetes", labels: {}, host: "127.0.0.1", port: kube.port, credentialRef: "kube-cert", kubernetes: { server: kube.url, caPem: kube.caPem } },
		],
		grants: [
			{
				key: "ops/lee-ssh", name: "lee-ssh", namespace: "ops", connection: "box", subjects: [{ kind: "User", name: "lee" }], ...window,
				ssh: { logins: [sshd.user], allowShell: true, allowSftp: false, allowPortForwarding: false, allowAgentForwarding: false },
				approvers: { subjects: [], minApprovals: 1 }, origin: {},
			},
			{
				key: "ops/lee-kube", name: "lee-kube", namespace: "ops", connection: "cluster", subjects: [{ kind: "User", name: "lee" }], ...window,
				kubernetes: { namespaces: [NS], verbs: ["get", "list", "watch"], resources: ["configmaps"] },
				approvers: { subjects: [], minApprovals: 1 }, origin: {},
			},
		],
		ssh: { userCaKeys: [ca.publicKey] },
		credentials: {
			"ssh-gw": { type: "sshKey", username: sshd.user, privateKeyPem: readFileSync(sshd.clientKeyFile, "utf8") },
			"kube-cert": { type: "kubernetes", clientCertPem: kube.adminCertPem, clientKeyPem: kube.adminKeyPem },
		},
	});
	writeFileSync(join(dir, "bundle.json"), JSON.stringify(bundle));
});

after(async () => {
	for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
	await Promise.all([sshd?.stop(), kube?.stop()]);
	keys.cleanup();
});
printLogsOnFailure(() => [["sshd", sshd], ["kube", kube], ["gateway", { logs: () => log }]]);

/**
 * The gateway on ports free a moment ago: another test may take one before the gateway listens
 * (seen in CI as EADDRINUSE), so such a start is retried on fresh ports, twice at most.
 */
async function startGateway(): Promise<{ child: ChildProcess; sshPort: number; kubePort: number; adminPort: number }> {
	for (let attempt = 1; ; attempt++) {
		const before = log.length;
		try {
			return await startGatewayOnce();
		} catch (e) {
			if (attempt >= 3 || !log.slice(before).includes("EADDRINUSE")) throw e;
		}
	}
}

async function startGatewayOnce(): Promise<{ child: ChildProcess; sshPort: number; kubePort: number; adminPort: number }> {
	const [sshPort, kubePort, adminPort] = [await freePort(), await freePort(), await freePort()];
	const child = spawn(
		process.execPath,
		[
			join(ROOT, "bin", "drawbridge.mjs"), "gateway",
			"--bundle-file", join(dir, "bundle.json"),
			"--ssh-listen", `127.0.0.1:${sshPort}`,
			"--ssh-max-connections", "1",
			"--kube-listen", `127.0.0.1:${kubePort}`,
			"--recordings-dir", join(dir, "recordings"),
		],
		{
			cwd: ROOT,
			stdio: ["ignore", "pipe", "pipe"],
			env: {
				...process.env,
				DRAWBRIDGE_ADMIN_LISTEN: `127.0.0.1:${adminPort}`,
				DRAWBRIDGE_TLS_CERT_FILE: join(dir, "tls.crt"),
				DRAWBRIDGE_TLS_KEY_FILE: join(dir, "tls.key"),
				DRAWBRIDGE_SSH_HOST_KEY_FILE: join(dir, "ssh_host_key"),
				DRAWBRIDGE_SPOOL_DIR: join(dir, "spool"),
				DRAWBRIDGE_APPROVALS: `local:${join(dir, "approvals")}`,
				DRAWBRIDGE_SHUTDOWN_GRACE_MS: String(GRACE_MS),
			},
		},
	);
	children.push(child);
	child.stdout?.on("data", (d: Buffer) => (log += d));
	child.stderr?.on("data", (d: Buffer) => (log += d));
	const deadline = Date.now() + 90_000;
	for (;;) {
		if (child.exitCode !== null) throw new Error(`gateway exited ${child.exitCode}:\n${log}`);
		const r = await fetch(`http://127.0.0.1:${adminPort}/readyz`).catch(() => undefined);
		if (r?.ok) break;
		if (Date.now() > deadline) throw new Error(`gateway not ready:\n${log}`);
		await new Promise((res) => setTimeout(res, 200));
	}
	return { child, sshPort, kubePort, adminPort };
}

function sshArgs(port: number): string[] {
	const knownHosts = join(keys.dir, "known_hosts");
	writeFileSync(knownHosts, `[127.0.0.1]:${port} ${hostKey.publicKey}\n`);
	return [
		"-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${knownHosts}`,
		"-o", "IdentitiesOnly=yes", "-o", "LogLevel=INFO", "-i", agent.path, "-o", `CertificateFile=${certFile}`,
		"-p", String(port), "-l", `${sshd.user}@box`, "127.0.0.1",
	];
}

async function refusedCount(adminPort: number, protocol: string, reason: string): Promise<number> {
	const text = await (await fetch(`http://127.0.0.1:${adminPort}/metrics`)).text();
	const m = new RegExp(`^drawbridge_gateway_connections_refused_total\\{protocol="${protocol}",reason="${reason}"\\} (\\d+)`, "m").exec(text);
	return m ? Number(m[1]) : 0;
}

test("--ssh-max-connections and SIGTERM drain the SSH and Kubernetes listeners of the gateway process", { timeout: 240_000 }, async () => {
	const { child, sshPort, kubePort, adminPort } = await startGateway();
	const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
	const kubeUrl = `https://127.0.0.1:${kubePort}/k8s/cluster/api/v1/namespaces/${NS}/configmaps`;
	const token = await issuer.token("lee");

	// A live ssh session: a remote loop answering each line.
	const live: ChildProcessWithoutNullStreams = spawn("ssh", [...sshArgs(sshPort), 'while read l; do echo "got:$l"; done']);
	children.push(live);
	let liveOut = "";
	live.stdout.setEncoding("utf8").on("data", (d: string) => (liveOut += d));
	live.stderr.on("data", () => {});
	const liveExit = new Promise<number | null>((resolve) => live.on("exit", (code) => resolve(code)));
	const roundTrip = async (word: string) => {
		live.stdin.write(`${word}\n`);
		await waitUntil(`live ssh answers ${word}`, () => liveOut.includes(`got:${word}\n`), 30_000);
	};
	await roundTrip("first");

	// The flag reached the listener: a second ssh is over the cap of 1.
	const capped = await run("ssh", [...sshArgs(sshPort), "true"], { timeoutMs: 30_000 });
	assert.equal(capped.code, 255, capped.stderr);
	assert.match(capped.stderr, /:12: drawbridge: the gateway's connection limit was reached \(at most 1 concurrent SSH connections\)/);
	assert.equal(await refusedCount(adminPort, "ssh", "max-connections"), 1);

	// An open JSON watch through the Kubernetes listener.
	let watchRaw = "";
	let watchStarted!: () => void;
	const started = new Promise<void>((resolve) => (watchStarted = resolve));
	const watchDone = new Promise<void>((resolve) => {
		https
			.get(`${kubeUrl}?watch=1`, { ca: kube.caPem, agent: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
				assert.equal(res.statusCode, 200);
				watchStarted();
				res.setEncoding("utf8");
				res.on("data", (c: string) => (watchRaw += c));
				res.on("end", () => resolve());
				res.on("error", () => resolve());
			})
			.on("error", () => resolve());
	});
	await started;
	const watchEvents = () => watchRaw.split("\n").filter((l) => l.trim() !== "").map((l) => JSON.parse(l) as { type: string; object: { metadata?: { name?: string }; message?: string; code?: number } });
	const createAndSee = async (name: string) => {
		const r = await kube.request("POST", `/api/v1/namespaces/${NS}/configmaps`, { apiVersion: "v1", kind: "ConfigMap", metadata: { name } });
		assert.equal(r.status, 201, r.text);
		await waitUntil(`watch sees ${name}`, () => watchEvents().some((e) => e.object.metadata?.name === name), 15_000);
	};
	await createAndSee("before-sigterm");

	const sigterm = Date.now();
	child.kill("SIGTERM");
	await waitUntil("readiness drops", () => log.includes("shutting down: draining live sessions"), 10_000);
	assert.equal((await fetch(`http://127.0.0.1:${adminPort}/readyz`)).status, 503);

	// SSH: a new client is told why; the live session still runs commands.
	const late = await run("ssh", [...sshArgs(sshPort), "true"], { timeoutMs: 30_000 });
	assert.equal(late.code, 255, late.stderr);
	assert.match(late.stderr, /:11: drawbridge: the gateway is shutting down/);
	await roundTrip("during-drain");

	// Kubernetes: a new request gets the 503 Status; the open watch keeps streaming.
	const answer = await new Promise<{ status: number; retryAfter?: string; body: { reason?: string; code?: number; message?: string } }>((resolve, reject) => {
		https
			.get(kubeUrl, { ca: kube.caPem, agent: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
				let text = "";
				res.setEncoding("utf8");
				res.on("data", (c: string) => (text += c));
				res.on("end", () => resolve({ status: res.statusCode ?? 0, retryAfter: res.headers["retry-after"], body: JSON.parse(text) }));
			})
			.on("error", reject);
	});
	assert.equal(answer.status, 503);
	assert.equal(answer.retryAfter, "1");
	assert.equal(answer.body.reason, "ServiceUnavailable");
	assert.match(answer.body.message ?? "", /shutting down/);
	await createAndSee("during-drain");

	assert.equal(await refusedCount(adminPort, "ssh", "shutting-down"), 1);
	assert.equal(await refusedCount(adminPort, "kubernetes", "shutting-down"), 1);

	// Grace period over: the watch ends with the shutdown Status, the live ssh session ends, exit 0.
	await watchDone;
	assert.ok(Date.now() - sigterm >= GRACE_MS - 500, `the watch ran until the grace end (${Date.now() - sigterm} ms)`);
	const last = watchEvents().at(-1);
	assert.equal(last?.type, "ERROR");
	assert.equal(last?.object.code, 503);
	assert.match(last?.object.message ?? "", /shutting down/);
	assert.notEqual(await liveExit, null);
	assert.equal(await exited, 0, log);
});
