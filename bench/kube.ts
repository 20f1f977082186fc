/**
 * Kubernetes data-path benchmark: latency of `GET /api/v1/namespaces/bench/pods` (what `kubectl get
 * pods` sends), directly to the kube-apiserver and through the Drawbridge gateway (token verification,
 * grant scope, guardrails, impersonation, recording). A ratio, never a timed test. Prints a table.
 *
 * Usage: ./node_modules/.bin/node --import tsx bench/kube.ts [--requests 300] [--rounds 10] [--kubectl 15]
 *
 * Starts etcd + kube-apiserver (test/env) and the gateway's Kubernetes listener in this process;
 * prints one table row per path and measurement (runs, median and p95 ms, added ms, ratio to direct,
 * CPU µs per request). `--requests`: keep-alive GETs per path; `--rounds`: blocks they are split into;
 * `--kubectl`: whole `kubectl get pods` runs per path.
 *
 * Two measurements:
 * 1. keep-alive HTTPS requests from one client (what client-go does inside a controller or agent):
 *    median / p95 per request, and the added median (target: under 2 ms). The requests are split
 *    into `--rounds` blocks, direct and gateway alternating (order flipped every round), so a
 *    neighbour's load burst hits both paths alike; "added (rounds)" is the median of the per-round
 *    differences of medians. A third path, a bare node:https proxy (no token, no policy, no
 *    recording: pipe to the apiserver over a keep-alive agent), is the floor any Node.js proxy pays
 *    for the extra TLS hop. CPU µs/req is this process's CPU time per request of each path: client
 *    and gateway share the process, so gateway minus direct is what the gateway itself burns;
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
import { benchArgs } from "./args.ts";

const KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
const { values: flags } = benchArgs(import.meta.url, {
	options: {
		requests: { type: "string", default: "300" },
		rounds: { type: "string", default: "10" },
		kubectl: { type: "string", default: "15" },
	},
});
const REQUESTS = Number(flags.requests);
const ROUNDS = Math.max(1, Math.min(REQUESTS, Number(flags.rounds)));
const KUBECTL_RUNS = Number(flags.kubectl);

const pct = (xs: number[], p: number) => {
	const s = [...xs].sort((a, b) => a - b);
	return s[Math.min(s.length - 1, Math.floor(s.length * p))] ?? Number.NaN;
};

/** One keep-alive client; returns a function timing one GET (ms). */
function keepAliveGetter(url: string, ca: string, headers: Record<string, string>): { one: () => Promise<number>; close: () => void } {
	const agent = new https.Agent({ keepAlive: true, maxSockets: 1, ca });
	const one = () =>
		new Promise<number>((resolve, reject) => {
			const t0 = performance.now();
			const req = https.get(url, { agent, headers: { accept: "application/json", ...headers } }, (res) => {
				res.resume();
				res.on("end", () => (res.statusCode === 200 ? resolve(performance.now() - t0) : reject(new Error(`HTTP ${res.statusCode}`))));
			});
			req.on("error", reject);
		});
	return { one, close: () => agent.destroy() };
}

interface PathResult {
	times: number[];
	/** Median of each round. */
	rounds: number[];
	/** Process CPU time per request, µs. */
	cpuUs: number;
}

/** `n` requests per path in `rounds` interleaved blocks (order flipped every round), after a warm-up. */
async function interleavedGets(paths: Record<string, () => Promise<number>>, n: number, rounds: number): Promise<Record<string, PathResult>> {
	const names = Object.keys(paths);
	const out: Record<string, PathResult> = {};
	for (const name of names) {
		out[name] = { times: [], rounds: [], cpuUs: 0 };
		for (let i = 0; i < 20; i++) await paths[name]!(); // warm-up: TLS session, token cache, JIT
	}
	for (let r = 0; r < rounds; r++) {
		const per = Math.floor(n / rounds) + (r < n % rounds ? 1 : 0);
		for (const name of r % 2 ? [...names].reverse() : names) {
			const xs: number[] = [];
			const cpu0 = process.cpuUsage();
			for (let i = 0; i < per; i++) xs.push(await paths[name]!());
			const cpu = process.cpuUsage(cpu0);
			out[name]!.cpuUs += cpu.user + cpu.system;
			out[name]!.times.push(...xs);
			out[name]!.rounds.push(pct(xs, 0.5));
		}
	}
	for (const name of names) out[name]!.cpuUs /= n;
	return out;
}

/**
 * The floor: a bare node:https reverse proxy to the apiserver over a keep-alive agent (same client
 * certificate and impersonation as the gateway), no token, no policy, no recording.
 */
async function startBareProxy(kube: { url: string; caPem: string; adminCertPem: string; adminKeyPem: string }, tls: { certPem: string; keyPem: string }) {
	const upstream = new URL(kube.url);
	const agent = new https.Agent({ keepAlive: true, maxSockets: 256, ca: kube.caPem, cert: kube.adminCertPem, key: kube.adminKeyPem });
	const server = https.createServer({ cert: tls.certPem, key: tls.keyPem }, (req, res) => {
		const headers = { ...req.headers, host: upstream.host, "impersonate-user": "bench" };
		delete headers.authorization;
		delete headers.connection;
		const up = https.request({ hostname: upstream.hostname, port: upstream.port, method: req.method, path: req.url, headers, agent }, (ures) => {
			const h = { ...ures.headers };
			delete h.connection;
			delete h["transfer-encoding"];
			res.writeHead(ures.statusCode ?? 502, h);
			ures.pipe(res);
		});
		up.on("error", () => res.destroy());
		req.pipe(up);
	});
	await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
	const port = (server.address() as { port: number }).port;
	return {
		url: `https://127.0.0.1:${port}`,
		close: () => {
			server.closeAllConnections();
			server.close();
			agent.destroy();
		},
	};
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
		const path = "/api/v1/namespaces/bench/pods";
		const directUrl = `${kube.url}${path}`;
		const gwUrl = `${gw.url}/k8s/cluster${path}`;
		const bare = await startBareProxy(kube, cert);
		const clients = {
			// Direct: the same user, impersonated by the admin token (so RBAC work is equal on both paths).
			direct: keepAliveGetter(directUrl, kube.caPem, { authorization: `Bearer ${kube.adminToken}`, "impersonate-user": "bench" }),
			gateway: keepAliveGetter(gwUrl, kube.caPem, { authorization: `Bearer ${token}` }),
			bare: keepAliveGetter(`${bare.url}${path}`, kube.caPem, {}),
		};
		const res = await interleavedGets({ direct: clients.direct.one, gateway: clients.gateway.one, bare: clients.bare.one }, REQUESTS, ROUNDS);
		for (const c of Object.values(clients)) c.close();
		bare.close();
		const direct = res.direct!.times;
		const added = (name: string) => pct(res[name]!.rounds.map((m, i) => m - res.direct!.rounds[i]!), 0.5);

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

		const keepAliveRow = (name: string, label: string) => {
			const t = res[name]!.times;
			return [
				"GET pods (keep-alive)",
				label,
				String(REQUESTS),
				pct(t, 0.5).toFixed(2),
				pct(t, 0.95).toFixed(2),
				name === "direct" ? "" : (pct(t, 0.5) - pct(direct, 0.5)).toFixed(2),
				(pct(t, 0.5) / pct(direct, 0.5)).toFixed(2),
				name === "direct" ? "" : added(name).toFixed(2),
				res[name]!.cpuUs.toFixed(0),
			];
		};
		const rows = [
			["measurement", "path", "n", "median ms", "p95 ms", "added median ms", "ratio", "added (rounds) ms", "CPU µs/req"],
			keepAliveRow("direct", "direct"),
			keepAliveRow("gateway", "gateway"),
			keepAliveRow("bare", "bare node proxy"),
			["kubectl get pods", "direct", String(KUBECTL_RUNS), pct(kd, 0.5).toFixed(1), pct(kd, 0.95).toFixed(1), "", "1.00", "", ""],
			[
				"kubectl get pods",
				"gateway",
				String(KUBECTL_RUNS),
				pct(kg, 0.5).toFixed(1),
				pct(kg, 0.95).toFixed(1),
				(pct(kg, 0.5) - pct(kd, 0.5)).toFixed(1),
				(pct(kg, 0.5) / pct(kd, 0.5)).toFixed(2),
				"",
				"",
			],
		];
		const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
		console.log(`\nKubernetes API latency (target: under 2 ms added median); keep-alive GETs in ${ROUNDS} interleaved rounds`);
		for (const r of rows) console.log(r.map((v, c) => v.padEnd(widths[c]!)).join("  "));
		console.log(`recorded kube.request events: ${recorder.events("kube.request").length}`);
	} finally {
		await kube.stop();
		rmSync(dir, { recursive: true, force: true });
	}
}

await main();
