/**
 * Real Kubernetes requests (kubectl 1.33 → gateway → real kube-apiserver) recorded by the real
 * DiskRecorder into a REAL MinIO: the request log with decisions is stored, verified and shown.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type CliIo, main as cli } from "../../cli/recordings.ts";
import { generateKubeconfig } from "../../gateway/kube/kubeconfig.ts";
import { type KubeListener, startKubeListener } from "../../gateway/kube/listener.ts";
import { listSessions, loadSession, loadStoreKeys } from "../../gateway/recording/catalog.ts";
import type { DiskRecorder } from "../../gateway/recording/recorder.ts";
import { parseEndpoint, S3Store } from "../../gateway/recording/store.ts";
import { verifySession } from "../../gateway/recording/verify.ts";
import { issueCert, type KubeHandle, type MinioHandle, printLogsOnFailure, run, startKube, startMinio } from "../env/index.ts";
import { kubeConnection } from "../kube/fixtures.ts";
import { approvalService, makeBundle, storeWith, tokenIssuer } from "../ssh/fixtures.ts";
import { makeRecorder, tempDir } from "./fixtures.ts";

const KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
let kube: KubeHandle;
let minio: MinioHandle;
let gw: KubeListener;
let rec: DiskRecorder;
let store: S3Store;
let dir: string;

before(async () => {
	dir = mkdtempSync(join(tmpdir(), "drawbridge-rec-kube-"));
	[kube, minio] = await Promise.all([startKube(), startMinio()]);
	await kube.createNamespace("payments");
	const rbac = `
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: oncall, namespace: payments }
rules:
- apiGroups: [""]
  resources: [pods, configmaps]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: oncall-lee, namespace: payments }
subjects: [{ kind: User, name: lee, apiGroup: rbac.authorization.k8s.io }]
roleRef: { kind: Role, name: oncall, apiGroup: rbac.authorization.k8s.io }
`;
	const applied = await kube.kubectl(["apply", "-f", "-"], { input: rbac });
	assert.equal(applied.code, 0, applied.stderr);
	store = new S3Store({ ...parseEndpoint(minio.endpoint), accessKey: minio.accessKey, secretKey: minio.secretKey, bucket: "kube-recordings" });
	({ rec } = await makeRecorder(store, await tempDir("kube-spool")));
});
after(async () => {
	await gw?.close();
	await rec?.stop();
	await Promise.all([kube?.stop(), minio?.destroy()]);
	if (dir) rmSync(dir, { recursive: true, force: true });
});
printLogsOnFailure(() => [
	["kube", kube],
	["minio", minio],
]);

test("kubectl through the gateway: the request log with decisions is recorded, verified and shown", async () => {
	const issuer = await tokenIssuer();
	const cert = await issueCert(kube.ca, { cn: "drawbridge-gateway", ips: ["127.0.0.1"], dns: ["localhost"], name: "gateway-kube-rec" });
	const connection = kubeConnection(kube);
	const bundleStore = storeWith(
		makeBundle(issuer, {
			connections: [connection],
			grants: [
				{
					key: "ops/payments-oncall",
					name: "payments-oncall",
					namespace: "ops",
					connection: "cluster-prod",
					subjects: [{ kind: "User", name: "lee" }],
					notBefore: new Date(Date.now() - 60_000).toISOString(),
					expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
					// Cluster-wide: a namespaced grant may not touch the Namespace object at all (refused by scope,
					// 027b1b0), and this test is about a guardrail's block being recorded with its rule.
					kubernetes: { namespaces: ["*"], verbs: ["get", "list", "delete"], resources: ["pods", "configmaps", "namespaces"] },
					approvers: { subjects: [], minApprovals: 1 },
					origin: { repository: "grants", commit: "def456", pullRequest: 9 },
				},
			],
			guardrailPolicies: [
				{
					key: "ops/kube-prod",
					selector: { matchLabels: { env: "prod" } },
					rules: [{ name: "no-namespace-delete", action: "block", message: "namespaces are deleted through git", kubernetes: { verbs: ["delete"], resources: ["namespaces"] } }],
				},
			],
			credentials: { "kube-gw": { type: "kubernetes", clientCertPem: kube.adminCertPem, clientKeyPem: kube.adminKeyPem } },
		}),
	);
	gw = await startKubeListener({ store: bundleStore, recorder: rec, approvals: approvalService(), tls: { certPem: cert.certPem, keyPem: cert.keyPem }, sessionIdleMs: 300 });
	const kubeconfig = join(dir, "kubeconfig");
	writeFileSync(kubeconfig, generateKubeconfig({ gatewayUrl: gw.url, connection: "cluster-prod", caPem: kube.caPem, token: await issuer.token("lee", { groups: ["oncall"] }), namespace: "payments" }));
	const kubectl = (args: string[]) => run(KUBECTL, [`--kubeconfig=${kubeconfig}`, ...args], { env: { ...process.env, HOME: dir }, timeoutMs: 60_000 });
	const get = await kubectl(["get", "configmaps", "-n", "payments"]);
	assert.equal(get.code, 0, get.stderr);
	const del = await kubectl(["delete", "namespace", "payments"]);
	assert.notEqual(del.code, 0);
	assert.match(del.stderr, /namespaces are deleted through git|no-namespace-delete/);

	// Sessions end after the idle timeout; wait until both requests are in closed, uploaded sessions.
	const deadline = Date.now() + 30_000;
	let sessions: Awaited<ReturnType<typeof listSessions>> = [];
	const seen = async () => {
		const evs = (await Promise.all(sessions.map((s) => loadSession(store, s.prefix)))).flatMap((l) => l.events);
		return evs.some((e) => e.type === "kube.request" && e.verb === "list") && evs.some((e) => e.type === "kube.request" && e.verb === "delete");
	};
	while (Date.now() < deadline) {
		await rec.drain(20_000);
		sessions = await listSessions(store, { protocol: "kubernetes", identity: "lee" });
		if (await seen()) break;
		await new Promise((r) => setTimeout(r, 300));
	}
	const keys = (await loadStoreKeys(store)).set;
	const all = await Promise.all(sessions.map(async (s) => ({ s, loaded: await loadSession(store, s.prefix), v: await verifySession(store, s.prefix, keys) })));
	for (const x of all) assert.deepEqual(x.v.problems, [], `${x.s.sessionId} verifies`);
	const requests = all.flatMap((x) => x.loaded.events).filter((e) => e.type === "kube.request");
	const list = requests.find((e) => e.type === "kube.request" && e.verb === "list" && e.resource === "configmaps");
	assert.ok(list && list.type === "kube.request" && list.decision === "allow" && list.namespace === "payments" && list.status === 200, JSON.stringify(requests, null, 1));
	const blocked = requests.find((e) => e.type === "kube.request" && e.verb === "delete" && e.resource === "namespaces");
	assert.ok(blocked && blocked.type === "kube.request" && blocked.decision === "block" && blocked.rule === "no-namespace-delete", JSON.stringify(blocked));
	const withBlock = all.find((x) => x.s.hasBlocked)!;
	assert.equal(withBlock.loaded.document?.grant, "ops/payments-oncall");
	const out: string[] = [];
	const io: CliIo = { env: { AWS_ACCESS_KEY_ID: minio.accessKey, AWS_SECRET_ACCESS_KEY: minio.secretKey }, stdout: (s) => void out.push(s), stderr: () => {}, stderrIsTty: false, sleep: async () => {} };
	// Under load kubectl's calls may land in more than one gateway session (idle timeout): show them all.
	for (const x of all) assert.equal(await cli(["show", x.s.sessionId, "--endpoint", minio.endpoint, "--bucket", "kube-recordings"], io), 0);
	assert.match(out.join(""), /KUBE {3}BLOCK {4}delete ns=payments namespaces\/payments rule=no-namespace-delete {2}→ 403/);
	assert.match(out.join(""), /KUBE {3}ALLOW {4}list ns=payments configmaps {2}→ 200/);
	assert.match(out.join(""), /KUBE {3}ALLOW {4}get \/(api|apis)/, "discovery requests show their path");
});
