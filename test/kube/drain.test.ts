/**
 * The Kubernetes listener while draining (SIGTERM), against a real kube-apiserver (test/env) with
 * kubectl 1.33: a new request — kubectl's, or a raw one — is answered 503 with a `Status`
 * (ServiceUnavailable, "shutting down"), `Retry-After` and `Connection: close`, before any
 * authentication; kept-alive idle connections are closed, and a request in flight when the drain
 * starts (held for an approval) is answered with `Connection: close`; watches opened before the drain (kubectl
 * get -w, and a raw JSON watch) keep streaming until the grace period ends (`close()`), where the JSON
 * watch gets a final ERROR event saying why (kubectl treats a closed watch as done and prints nothing).
 * (Process-level wiring: test/gateway/drain-ssh-kube.test.ts.)
 */
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { BundleConnection, BundleGrant } from "../../gateway/config/bundle.ts";
import { generateKubeconfig } from "../../gateway/kube/kubeconfig.ts";
import { type KubeListener, type KubeRefusalReason, startKubeListener } from "../../gateway/kube/listener.ts";
import { issueCert, type KubeHandle, run, startKube } from "../env/index.ts";
import { approvalService, approver, MemoryRecorder, makeBundle, storeWith, type TokenIssuer, tokenIssuer, waitUntil } from "../ssh/fixtures.ts";

const KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";
const NS = "draining";
let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
let dir: string;
let kubeconfig: string;
const refused: KubeRefusalReason[] = [];
const approvals = approvalService();

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	dir = mkdtempSync(join(tmpdir(), "drawbridge-kube-drain-"));
	await kube.createNamespace(NS);
	const rbac = `
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: cm-reader, namespace: ${NS} }
rules: [{ apiGroups: [""], resources: [configmaps, pods], verbs: [get, list, watch] }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: cm-reader, namespace: ${NS} }
subjects: [{ kind: User, name: kim, apiGroup: rbac.authorization.k8s.io }]
roleRef: { kind: Role, name: cm-reader, apiGroup: rbac.authorization.k8s.io }
`;
	const applied = await kube.kubectl(["apply", "-f", "-"], { input: rbac });
	assert.equal(applied.code, 0, applied.stderr);
	const connection: BundleConnection = {
		key: "ops/cluster",
		name: "cluster",
		namespace: "ops",
		type: "kubernetes",
		labels: { env: "prod" },
		host: "127.0.0.1",
		port: kube.port,
		credentialRef: "kube-cert",
		kubernetes: { server: kube.url, caPem: kube.caPem },
	};
	const grant: BundleGrant = {
		key: "ops/kim",
		name: "kim",
		namespace: "ops",
		connection: "cluster",
		subjects: [{ kind: "User", name: "kim" }],
		notBefore: new Date(Date.now() - 60_000).toISOString(),
		expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
		kubernetes: { namespaces: [NS], verbs: ["get", "list", "watch"], resources: ["configmaps", "pods"] },
		approvers: { subjects: [{ kind: "User", name: "sam" }], minApprovals: 1 },
		origin: {},
	};
	const store = storeWith(
		makeBundle(issuer, {
			connections: [connection],
			grants: [grant],
			// Listing pods waits for an approval: a request that is still in flight when the drain starts.
			guardrailPolicies: [
				{
					key: "ops/hold",
					selector: { matchLabels: { env: "prod" } },
					rules: [{ name: "approve-pod-list", action: "requireApproval", kubernetes: { verbs: ["list"], resources: ["pods"] } }],
				},
			],
			credentials: { "kube-cert": { type: "kubernetes", clientCertPem: kube.adminCertPem, clientKeyPem: kube.adminKeyPem } },
		}),
	);
	const cert = await issueCert(kube.ca, { cn: "gateway-drain", ips: ["127.0.0.1"], name: "gateway-drain" });
	gw = await startKubeListener({
		store,
		recorder: new MemoryRecorder(),
		approvals,
		tls: { certPem: cert.certPem, keyPem: cert.keyPem },
		onRefused: (reason) => refused.push(reason),
	});
	kubeconfig = join(dir, "kubeconfig");
	writeFileSync(kubeconfig, generateKubeconfig({ gatewayUrl: gw.url, connection: "cluster", caPem: kube.caPem, token: await issuer.token("kim"), namespace: NS }));
});

after(async () => {
	await gw?.close();
	await kube?.stop();
	if (dir) rmSync(dir, { recursive: true, force: true });
});

const kubectlEnv = () => ({ ...process.env, HOME: dir });

/** A raw GET through the gateway on `agent`: status, headers, parsed body. */
function get(path: string, agent: https.Agent | false): Promise<{ status: number; headers: Record<string, unknown>; body: Record<string, unknown> }> {
	return issuer.token("kim").then(
		(token) =>
			new Promise((resolve, reject) => {
				https
					.get(`${gw.url}/k8s/cluster${path}`, { ca: kube.caPem, agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
						let text = "";
						res.setEncoding("utf8");
						res.on("data", (c: string) => (text += c));
						res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: JSON.parse(text) }));
					})
					.on("error", reject);
			}),
	);
}

/** A raw JSON watch of configmaps in NS: newline-delimited events as they come. */
async function rawWatch(): Promise<{ events: () => { type: string; object: Record<string, unknown> }[]; done: Promise<void> }> {
	const token = await issuer.token("kim");
	let raw = "";
	let started!: () => void;
	const headers = new Promise<void>((resolve) => (started = resolve));
	const done = new Promise<void>((resolve) => {
		https
			.get(`${gw.url}/k8s/cluster/api/v1/namespaces/${NS}/configmaps?watch=1`, { ca: kube.caPem, agent: false, headers: { authorization: `Bearer ${token}` } }, (res) => {
				assert.equal(res.statusCode, 200);
				started();
				res.setEncoding("utf8");
				res.on("data", (c: string) => (raw += c));
				res.on("end", () => resolve());
				res.on("error", () => resolve());
			})
			.on("error", () => resolve());
	});
	await headers;
	return {
		events: () =>
			raw
				.split("\n")
				.filter((l) => l.trim() !== "")
				.map((l) => JSON.parse(l)),
		done,
	};
}

const named = (name: string) => (e: { type: string; object: Record<string, unknown> }) =>
	(e.object["metadata"] as { name?: string } | undefined)?.name === name;

let seq = 0;
async function createConfigMap(label: string): Promise<string> {
	const name = `cm-${label}-${++seq}`;
	const r = await kube.request("POST", `/api/v1/namespaces/${NS}/configmaps`, { apiVersion: "v1", kind: "ConfigMap", metadata: { name } });
	assert.equal(r.status, 201, r.text);
	return name;
}

test("draining: kubectl gets the 503 'shutting down' Status while an open kubectl watch keeps streaming until the grace period ends", { timeout: 180_000 }, async () => {
	// Before the drain: everything works, and a kept-alive connection sits idle in the pool.
	const ok = await run(KUBECTL, [`--kubeconfig=${kubeconfig}`, "get", "configmaps", "-o", "name"], { env: kubectlEnv(), timeoutMs: 60_000 });
	assert.equal(ok.code, 0, ok.stderr);
	const keepAlive = new https.Agent({ keepAlive: true, maxSockets: 1 });
	assert.equal((await get(`/api/v1/namespaces/${NS}/configmaps`, keepAlive)).status, 200);
	const pooled = Object.values(keepAlive.freeSockets).flat()[0];
	assert.ok(pooled, "a kept-alive idle connection");
	let pooledClosed = false;
	pooled.once("close", () => (pooledClosed = true));

	let watchOut = "";
	let watchErr = "";
	const watch: ChildProcessWithoutNullStreams = spawn(KUBECTL, [`--kubeconfig=${kubeconfig}`, "get", "configmaps", "-w", "-o", "name"], { env: kubectlEnv() });
	watch.stdout.setEncoding("utf8").on("data", (d: string) => (watchOut += d));
	watch.stderr.setEncoding("utf8").on("data", (d: string) => (watchErr += d));
	const watchExit = new Promise<number | null>((resolve) => watch.on("exit", (code) => resolve(code)));
	const rw = await rawWatch();
	const first = await createConfigMap("before");
	await waitUntil("watches stream", () => watchOut.includes(`configmap/${first}`) && rw.events().some(named(first)), 30_000);
	// kubectl lists before it watches: under load the object above can arrive in its list while its
	// watch is still being opened, so wait for the watch rather than expect it already open.
	await waitUntil("both watches in flight", () => gw.activeRequests === 2, 30_000);

	// A request in flight across the drain, on a kept-alive connection: held for an approval.
	const heldAgent = new https.Agent({ keepAlive: true });
	const held = get(`/api/v1/namespaces/${NS}/pods`, heldAgent);
	let pendingId = "";
	await waitUntil("a pending approval", () => {
		void approvals.list({ phase: "Pending" }).then((l) => {
			pendingId = l[0]?.id ?? "";
		});
		return pendingId !== "";
	});

	gw.drain();
	await approvals.decide(pendingId, approver("sam"), "approve");
	const heldAnswer = await held;
	assert.equal(heldAnswer.status, 200, JSON.stringify(heldAnswer.body));
	assert.equal(heldAnswer.headers["connection"], "close", "in flight across the drain: the connection is not kept");
	heldAgent.destroy();
	await waitUntil("the idle kept-alive connection is closed", () => pooledClosed, 5_000);

	// A raw request: the whole refusal.
	const raw = await get(`/api/v1/namespaces/${NS}/configmaps`, false);
	assert.equal(raw.status, 503);
	assert.equal(raw.headers["retry-after"], "1");
	assert.equal(raw.headers["connection"], "close");
	assert.equal(raw.body["kind"], "Status");
	assert.equal(raw.body["apiVersion"], "v1");
	assert.equal(raw.body["status"], "Failure");
	assert.equal(raw.body["reason"], "ServiceUnavailable");
	assert.equal(raw.body["code"], 503);
	assert.match(String(raw.body["message"]), /^drawbridge: the Drawbridge gateway is shutting down/);
	assert.equal((raw.body["details"] as { retryAfterSeconds?: number }).retryAfterSeconds, 1);
	assert.deepEqual(refused, ["shutting-down"]);

	// kubectl: client-go honours Retry-After (it retries, on new connections), then prints the Status.
	const t0 = Date.now();
	const late = await run(KUBECTL, [`--kubeconfig=${kubeconfig}`, "get", "pods"], { env: kubectlEnv(), timeoutMs: 90_000 });
	assert.notEqual(late.code, 0);
	assert.match(late.stderr, /Error from server \(ServiceUnavailable\): drawbridge: the Drawbridge gateway is shutting down/);
	assert.ok(refused.length > 2, `kubectl retried after Retry-After: ${refused.length} refusals in ${Date.now() - t0} ms`);
	assert.ok(refused.every((r) => r === "shutting-down"));

	// The watch opened before the drain still streams.
	const during = await createConfigMap("during-drain");
	await waitUntil("watches stream during the drain", () => watchOut.includes(`configmap/${during}`) && rw.events().some(named(during)), 30_000);
	assert.equal(watch.exitCode, null, watchErr);
	assert.equal(gw.activeRequests, 2, "refused requests are not in flight; the watches are");

	// Grace period over: close() ends the watches; the JSON one with an ERROR Status saying why.
	await gw.close();
	await rw.done;
	const last = rw.events().at(-1)!;
	assert.equal(last.type, "ERROR");
	assert.equal(last.object["kind"], "Status");
	assert.equal(last.object["code"], 503);
	assert.equal(last.object["reason"], "ServiceUnavailable");
	assert.match(String(last.object["message"]), /shutting down/);
	assert.notEqual(await watchExit, null, "kubectl's watch ended at the grace end");
	keepAlive.destroy();
});
