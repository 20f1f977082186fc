// A restarted gateway (or a new replica) took whatever bundle the Secret held: a stale Secret (restored
// from a backup, re-applied by a GitOps tool, written by a stale writer) brought back a grant that had
// been revoked since. Now every replica keeps the newest bundle it accepted in a ConfigMap (the
// high-water mark) and refuses an older one after a restart, not ready, with a log line and a metric;
// the operator numbers its next bundle above the mark, which is the recovery. Real kube-apiserver, the
// gateway as its ServiceAccount with exactly deploy/base/gateway.yaml's RBAC, the operator's bundle
// writer as its ServiceAccount with deploy/base/operator-rbac.yaml's.
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import pino from "pino";
import { parseAllDocuments } from "yaml";
import { BUNDLE_API_VERSION, type BundleGrant, type ConfigBundle } from "../../gateway/config/bundle.ts";
import { sealBundle } from "../../gateway/config/canonical.ts";
import { generateSigningKey } from "../../operator/credentials/jwt.ts";
import { BundleWriter } from "../../operator/config/writer.ts";
import { KubeClient } from "../../operator/kube/client.ts";
import { OperatorMetrics } from "../../operator/metrics.ts";
import { parseOptions } from "../../operator/options.ts";
import { freePort, type KubeHandle, makeTempDir, printLogsOnFailure, startKube } from "../env/index.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const NS = "drawbridge-system";
const SECRET = "drawbridge-gateway-bundle";
const MARK = "drawbridge-gateway-bundle-highwater";
const MASKING_KEY = Buffer.alloc(32, 3).toString("base64");
let kube: KubeHandle;
let dir: string;
let log = "";
const children: ChildProcess[] = [];

before(async () => {
	kube = await startKube();
	dir = makeTempDir("gateway-rollback");
});
after(async () => {
	for (const c of children) await stop(c);
	await kube?.stop();
});
printLogsOnFailure(() => [["kube", kube], ["gateway", { logs: () => log }]]);

function rbacOnly(file: string): string {
	const kinds = new Set(["ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"]);
	const items = parseAllDocuments(readFileSync(join(ROOT, file), "utf8"))
		.map((d) => d.toJS() as { kind?: string } | null)
		.filter((o): o is { kind: string } => !!o && kinds.has(o.kind ?? ""));
	return JSON.stringify({ apiVersion: "v1", kind: "List", items });
}

async function kubeconfigFor(sa: string): Promise<string> {
	const token = await kube.serviceAccountToken(NS, sa, { expirationSeconds: 7200 });
	const path = join(dir, `${sa}.kubeconfig`);
	writeFileSync(
		path,
		JSON.stringify({
			apiVersion: "v1", kind: "Config",
			clusters: [{ name: "test", cluster: { server: kube.url, "certificate-authority": kube.caFile } }],
			users: [{ name: sa, user: { token } }],
			contexts: [{ name: "test", context: { cluster: "test", user: sa } }],
			"current-context": "test",
		}),
		{ mode: 0o600 },
	);
	return path;
}

function grant(name: string): BundleGrant {
	return {
		key: `team/${name}`, name, namespace: "team", connection: "orders",
		subjects: [{ kind: "User", name: "alice" }],
		notBefore: new Date(Date.now() - 60_000).toISOString(), expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
		approvers: { subjects: [], minApprovals: 1 }, origin: { commit: "abc" },
	};
}

function bundle(version: number, grants: BundleGrant[]): ConfigBundle {
	return sealBundle({
		apiVersion: BUNDLE_API_VERSION, version, generatedAt: new Date().toISOString(), issuers: [],
		connections: [{ key: "team/orders", name: "orders", namespace: "team", type: "postgres", labels: {}, host: "127.0.0.1", port: 5432 }],
		grants, maskingPolicies: [], guardrailPolicies: [], credentials: {}, maskingKey: MASKING_KEY,
	});
}

/** Write the bundle Secret as a restore or a stale writer would: version annotation and all. */
async function putSecret(b: ConfigBundle): Promise<void> {
	const path = `/api/v1/namespaces/${NS}/secrets/${SECRET}`;
	const existing = await kube.request("GET", path);
	const body = {
		apiVersion: "v1", kind: "Secret",
		metadata: { name: SECRET, namespace: NS, annotations: { "access.drawbridge.dev/bundle-version": String(b.version) } },
		data: { "bundle.json": Buffer.from(JSON.stringify(b)).toString("base64") },
	};
	const r = existing.status === 404 ? await kube.request("POST", `/api/v1/namespaces/${NS}/secrets`, body) : await kube.request("PUT", path, body);
	assert.ok(r.status === 200 || r.status === 201, `write Secret: ${r.status}`);
}

async function markVersion(): Promise<number | undefined> {
	const r = await kube.request("GET", `/api/v1/namespaces/${NS}/configmaps/${MARK}`);
	if (r.status === 404) return undefined;
	return (JSON.parse((r.body as { data: Record<string, string> }).data["highwater.json"]!) as { version: number }).version;
}

async function until<T>(what: string, fn: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
	const deadline = Date.now() + ms;
	for (;;) {
		const v = await fn().catch(() => undefined);
		if (v !== undefined) return v;
		assert.ok(Date.now() < deadline, `timed out waiting for ${what}\n${log}`);
		await new Promise((r) => setTimeout(r, 200));
	}
}

async function readyz(port: number): Promise<{ status: number; body: { problems?: string[]; bundleVersion?: number } } | undefined> {
	try {
		const r = await fetch(`http://127.0.0.1:${port}/readyz`);
		return { status: r.status, body: (await r.json()) as never };
	} catch {
		return undefined;
	}
}

/** A gateway with a spool of its own: a new pod, nothing kept from an earlier one. */
async function startGateway(kubeconfig: string, name: string, waitForAdmin = true): Promise<{ child: ChildProcess; admin: number }> {
	const admin = await freePort();
	const child = spawn(
		process.execPath,
		[join(ROOT, "bin", "drawbridge.mjs"), "gateway", "--bundle-secret", `${NS}/${SECRET}`, "--recordings-dir", join(dir, `${name}-rec`), "--spool-dir", join(dir, `${name}-spool`), "--approvals", `local:${join(dir, `${name}-approvals`)}`, "--admin-listen", `127.0.0.1:${admin}`],
		{ cwd: ROOT, env: { ...process.env, KUBECONFIG: kubeconfig }, stdio: ["ignore", "pipe", "pipe"] },
	);
	children.push(child);
	child.stdout!.on("data", (d: Buffer) => (log += d));
	child.stderr!.on("data", (d: Buffer) => (log += d));
	if (waitForAdmin) await until("admin server", async () => ((await readyz(admin)) ? true : undefined), 60_000);
	return { child, admin };
}

async function stop(child: ChildProcess): Promise<void> {
	if (child.exitCode !== null) return;
	const exited = new Promise((r) => child.once("exit", r));
	child.kill("SIGKILL");
	await exited;
}

test("a restarted gateway refuses a bundle older than the newest any replica accepted; the operator's next bundle recovers", { timeout: 240_000 }, async () => {
	await kube.createNamespace(NS);
	for (const file of ["deploy/base/gateway.yaml", "deploy/base/operator-rbac.yaml"]) {
		const r = await kube.kubectl(["apply", "-f", "-"], { input: rbacOnly(file) });
		assert.equal(r.code, 0, r.stderr);
	}
	const gatewayKubeconfig = await kubeconfigFor("drawbridge-gateway");

	// v5 grants alice; v6 is the revocation (the grant is gone).
	const granted = bundle(5, [grant("alice-orders")]);
	await putSecret(granted);
	let gw = await startGateway(gatewayKubeconfig, "a");
	await until("v5 in force", async () => ((await readyz(gw.admin))?.body.bundleVersion === 5 ? true : undefined));
	assert.equal(await until("mark 5", async () => ((await markVersion()) === 5 ? 5 : undefined)), 5);
	await putSecret(bundle(6, []));
	await until("v6 in force", async () => ((await readyz(gw.admin))?.body.bundleVersion === 6 ? true : undefined));
	await until("mark 6", async () => ((await markVersion()) === 6 ? 6 : undefined));
	await stop(gw.child);

	// The Secret rolled back to v5 (alice's revoked grant in it); a new pod starts.
	await putSecret(granted);
	log = "";
	gw = await startGateway(gatewayKubeconfig, "b");
	await until("refusal logged", async () => (/config bundle refused: rollback/.test(log) ? true : undefined));
	const status = await readyz(gw.admin);
	assert.equal(status?.status, 503, "not ready on a rolled-back bundle");
	assert.ok(status?.body.problems?.some((p) => /no config bundle/.test(p)), JSON.stringify(status?.body));
	assert.match(log, /config bundle version 5 \(generated [^)]+\) refused: older than version 6 .*high-water mark configmap:drawbridge-system\/drawbridge-gateway-bundle-highwater/);
	const metrics = await (await fetch(`http://127.0.0.1:${gw.admin}/metrics`)).text();
	assert.match(metrics, /drawbridge_gateway_bundles_refused_total\{reason="rollback"\} [1-9]/);
	assert.match(metrics, /drawbridge_gateway_bundle_highwater_version 6/);
	assert.equal(await markVersion(), 6, "a refused bundle never lowers the mark");

	// Recovery without anyone touching the mark: the operator's bundle writer (as its ServiceAccount)
	// sees the Secret below the gateways' mark and writes the current content above it.
	const operatorKubeconfig = await kubeconfigFor("drawbridge-operator");
	const opts = parseOptions(["--kubeconfig", operatorKubeconfig, "--namespace", NS, "--issuer", "https://op.test"], {});
	assert.notEqual(opts, "help");
	const ring = { keys: [generateSigningKey(new Date())] };
	let maskingKey = MASKING_KEY;
	const writer = new BundleWriter(
		await KubeClient.create(operatorKubeconfig),
		opts as Exclude<typeof opts, "help">,
		{
			connections: () => [], grants: () => [], maskingPolicies: () => [], guardrailPolicies: () => [],
			keyRing: () => ring, maskingKey: () => maskingKey, sshCas: () => undefined, kubeIssuer: () => undefined,
		},
		pino({ level: "silent" }),
		new OperatorMetrics(),
	);
	await writer.sync();
	assert.equal(writer.current()?.version, 7, "numbered above the mark (6), not above the stale Secret (5)");
	await until("ready on v7", async () => {
		const s = await readyz(gw.admin);
		return s?.status === 200 && s.body.bundleVersion === 7 ? true : undefined;
	});
	await until("mark 7", async () => ((await markVersion()) === 7 ? 7 : undefined));
	await stop(gw.child);

	// A mark the operator cannot read never stops bundle writes (revocations must keep flowing): it
	// numbers from the Secret alone, and a gateway reading the damaged mark refuses to start instead.
	const put = await kube.request("PUT", `/api/v1/namespaces/${NS}/configmaps/${MARK}`, {
		apiVersion: "v1", kind: "ConfigMap", metadata: { name: MARK, namespace: NS }, data: { "highwater.json": "{damaged" },
	});
	assert.equal(put.status, 200);
	maskingKey = Buffer.alloc(32, 4).toString("base64");
	await writer.sync();
	assert.equal(writer.current()?.version, 8);
	log = "";
	const broken = await startGateway(gatewayKubeconfig, "c", false);
	await until("the damaged mark named", async () => (/configmap:drawbridge-system\/drawbridge-gateway-bundle-highwater: bundle high-water mark is not JSON/.test(log) ? true : undefined));
	await until("the gateway stopped", async () => (broken.child.exitCode !== null ? true : undefined));
	assert.notEqual(broken.child.exitCode, 0);
});
