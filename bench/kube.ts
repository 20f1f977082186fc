/**
 * Kubernetes data-path benchmark: latency of `GET /api/v1/namespaces/bench/pods` (what `kubectl get
 * pods` sends), directly to the kube-apiserver and through the Drawbridge gateway (token verification,
 * grant scope, guardrails, impersonation, recording). A ratio, never a timed test. Prints a table.
 *
 *   ./node_modules/.bin/node --import tsx bench/kube.ts [--requests 300] [--kubectl 15]
 *
 * Two measurements:
 * 1. keep-alive HTTPS requests from one client (what client-go does inside a controller or agent):
 *    median / p95 per request, and the added median (target: under 2 ms);
 * 2. whole `kubectl get pods` invocations (process start, discovery cache warm, TLS handshake).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { generateKubeconfig } from "../gateway/kube/kubeconfig.ts";
import { startKubeListener } from "../gateway/kube/listener.ts";
import { issueCert, run, startKube } from "../test/env/index.ts";
import { approvalService, makeBundle, MemoryRecorder, storeWith, tokenIssuer } from "../test/ssh/fixtures.ts";

const KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
const arg = (name: string, def: number) => {
	const i = process.argv.indexOf(`--${name}`);
	return i > 0 ? Number(process.argv[i + 1]) : def;
};
const REQUESTS = arg("requests", 300);
const KUBECTL_RUNS = arg("kubectl", 15);

const pct = (xs: number[], p: number) => {
	const s = [...xs].sort((a, b) => a - b);
	return s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? Number.NaN;
};

async function timedGets(url: string, ca: string, token: string, n: number): Promise<number[]> {
	const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca });
	const one = () =>
		new Promise<number>((resolve, reject) => {
			const t0 = performance.now();
			const req = https.get(url, { agent, headers: { authorization: `Bearer ${token}`, accept: "application/json" } }, (res) => {
				res.resume();
				res.on("end", () => (res.statusCode === 200 ? resolve(performance.now() - t0) : reject(new Error(`HTTP ${res.statusCode}`))));
			});
			req.on("error", reject);
		});
	for (let i = 0; i < 20; i++) await one(); // warm-up: TLS session, token cache, JIT
	const out: number[] = [];
	for (let i = 0; i < n; i++) out.push(await one());
	agent.destroy();
	return out;
}

/** kubectl runs as a child process; never spawnSync: the gateway shares this event loop. */
async function timedKubectl(kubeconfig: string, home: string, n: number): Promise<number[]> {
	const one = async () => {
		const t0 = performance.now();
		const r = await run(KUBECTL, [`--kubeconfig=${kubeconfig}`, "get", "pods", "-n", "bench"], { env: { ...process.env, HOME: home } });
		if (r.code !== 0) throw new Error(`kubectl: ${r.stderr}`);
		return performance.now() - t0;
	};
	for (let i = 0; i < 2; i++) await one();
	const out: number[] = [];
	for (let i = 0; i < n; i++) out.push(await one());
	return out;
}

async function main(): Promise<void> {
	const dir = mkdtempSync(join(tmpdir(), "drawbridge-kube-bench-"));
	const kube = await startKube();
	try {
		await kube.createNamespace("bench");
		// Not the built-in `view` ClusterRole: it is aggregated by the controller-manager, which does not run here.
		for (const args of [
			["create", "role", "bench-read", "--verb=get,list,watch", "--resource=pods", "-n", "bench"],
			["create", "rolebinding", "bench-read", "--role=bench-read", "--user=bench", "-n", "bench"],
		]) {
			const r = await kube.kubectl(args);
			if (r.code !== 0) throw new Error(r.stderr);
		}
		const issuer = await tokenIssuer();
		const recorder = new MemoryRecorder();
		const cert = await issueCert(kube.ca, { cn: "gateway-bench", ips: ["127.0.0.1"], name: "gateway-bench" });
		const store = storeWith(
			makeBundle(issuer, {
				connections: [
					{
						key: "bench/cluster",
						name: "cluster",
						namespace: "bench",
						type: "kubernetes",
						labels: {},
						host: "127.0.0.1",
						port: kube.port,
						credentialRef: "kube",
						kubernetes: { server: kube.url, caPem: kube.caPem },
					},
				],
				grants: [
					{
						key: "bench/kube",
						name: "kube",
						namespace: "bench",
						connection: "cluster",
						subjects: [{ kind: "User", name: "bench" }],
						notBefore: new Date(Date.now() - 60_000).toISOString(),
						expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
						kubernetes: { namespaces: ["bench"], verbs: ["get", "list", "watch"], resources: ["*"] },
						approvers: { subjects: [], minApprovals: 1 },
						origin: {},
					},
				],
				guardrailPolicies: [
					{ key: "bench/g", selector: {}, rules: [{ name: "no-ns-delete", action: "block", kubernetes: { verbs: ["delete"], resources: ["namespaces"] } }] },
				],
				credentials: { kube: { type: "kubernetes", clientCertPem: kube.adminCertPem, clientKeyPem: kube.adminKeyPem } },
			}),
		);
		const gw = await startKubeListener({ store, recorder, approvals: approvalService(), tls: { certPem: cert.certPem, keyPem: cert.keyPem } });
		const token = await issuer.token("bench", { ttlSec: 3600 });
		// Direct: the same user, impersonated by the admin token (so RBAC work is equal on both paths).
		const path = "/api/v1/namespaces/bench/pods";
		const directUrl = `${kube.url}${path}`;
		const gwUrl = `${gw.url}/k8s/cluster${path}`;
		const direct = await timedGetsImpersonating(directUrl, kube.caPem, kube.adminToken, REQUESTS);
		const via = await timedGets(gwUrl, kube.caPem, token, REQUESTS);

		const directKc = join(dir, "direct.kubeconfig");
		const tokenFile = join(dir, "token");
		writeFileSync(tokenFile, token);
		writeFileSync(
			directKc,
			generateKubeconfig({ gatewayUrl: kube.url, connection: "x", caPem: kube.caPem, token: kube.adminToken }).replace("/k8s/x", ""),
		);
		const gwKc = join(dir, "gw.kubeconfig");
		writeFileSync(gwKc, generateKubeconfig({ gatewayUrl: gw.url, connection: "cluster", caPem: kube.caPem, tokenFile }));
		const kd = await timedKubectl(directKc, dir, KUBECTL_RUNS);
		const kg = await timedKubectl(gwKc, dir, KUBECTL_RUNS);
		await gw.close();

		const rows = [
			["measurement", "path", "n", "median ms", "p95 ms", "added median ms", "ratio"],
			["GET pods (keep-alive)", "direct", String(REQUESTS), pct(direct, 0.5).toFixed(2), pct(direct, 0.95).toFixed(2), "", "1.00"],
			[
				"GET pods (keep-alive)",
				"gateway",
				String(REQUESTS),
				pct(via, 0.5).toFixed(2),
				pct(via, 0.95).toFixed(2),
				(pct(via, 0.5) - pct(direct, 0.5)).toFixed(2),
				(pct(via, 0.5) / pct(direct, 0.5)).toFixed(2),
			],
			["kubectl get pods", "direct", String(KUBECTL_RUNS), pct(kd, 0.5).toFixed(1), pct(kd, 0.95).toFixed(1), "", "1.00"],
			[
				"kubectl get pods",
				"gateway",
				String(KUBECTL_RUNS),
				pct(kg, 0.5).toFixed(1),
				pct(kg, 0.95).toFixed(1),
				(pct(kg, 0.5) - pct(kd, 0.5)).toFixed(1),
				(pct(kg, 0.5) / pct(kd, 0.5)).toFixed(2),
			],
		];
		const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
		console.log("\nKubernetes API latency (target: under 2 ms added median)");
		for (const r of rows) console.log(r.map((v, c) => v.padEnd(widths[c]!)).join("  "));
		console.log(`recorded kube.request events: ${recorder.events("kube.request").length}`);
	} finally {
		await kube.stop();
		rmSync(dir, { recursive: true, force: true });
	}
}

/** Direct baseline as the same impersonated user, so both paths pay the same RBAC evaluation. */
async function timedGetsImpersonating(url: string, ca: string, adminToken: string, n: number): Promise<number[]> {
	const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca });
	const one = () =>
		new Promise<number>((resolve, reject) => {
			const t0 = performance.now();
			const req = https.get(
				url,
				{ agent, headers: { authorization: `Bearer ${adminToken}`, accept: "application/json", "impersonate-user": "bench" } },
				(res) => {
					res.resume();
					res.on("end", () => (res.statusCode === 200 ? resolve(performance.now() - t0) : reject(new Error(`HTTP ${res.statusCode}`))));
				},
			);
			req.on("error", reject);
		});
	for (let i = 0; i < 20; i++) await one();
	const out: number[] = [];
	for (let i = 0; i < n; i++) out.push(await one());
	agent.destroy();
	return out;
}

await main();
