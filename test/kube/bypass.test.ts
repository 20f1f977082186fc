/**
 * Red-team regressions for the Kubernetes data path, through the real gateway to a real
 * kube-apiserver. RBAC here gives every agent cluster-admin, so whatever the gateway lets through
 * takes effect: each request below reached the apiserver before its fix (see
 * test/kube/bypass-classify.test.ts for the classification side and gateway/kube/README.md,
 * "Request forms that bypassed scope or guardrails").
 */
import assert from "node:assert/strict";
import https from "node:https";
import { after, before, describe, test } from "node:test";
import { type KubeListener, startKubeListener } from "../../gateway/kube/listener.ts";
import { issueCert, type KubeHandle, startKube } from "../env/index.ts";
import { approvalService, makeBundle, MemoryRecorder, storeWith, type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";
import { httpsText, kubeConnection, kubeCredentials, userGrant } from "./fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
const recorder = new MemoryRecorder();


async function send(
	user: string,
	method: string,
	path: string,
	opts: { body?: string; headers?: Record<string, string> } = {},
): Promise<{ status: number; text: string; drawbridge: boolean }> {
	const token = await issuer.token(user, { groups: ["agents"] });
	return httpsText(
		{
			hostname: "127.0.0.1",
			port: gw.address.port,
			method,
			// Options, not a URL: nothing normalises the path on the way.
			path: `/k8s/cluster-prod${path}`,
			ca: kube.caPem,
			headers: { authorization: `Bearer ${token}`, ...(opts.body ? { "content-type": "application/merge-patch+json" } : {}), ...opts.headers },
		},
		opts.body,
	);
}

/** A GET with a token for `sub` in `groups` (no `agents` group: RBAC is whatever that name has). */
async function sendAs(sub: string, groups: string[], path: string): Promise<{ status: number; text: string; drawbridge: boolean }> {
	const token = await issuer.token(sub, { groups });
	return new Promise((resolve, reject) => {
		https
			.get({ hostname: "127.0.0.1", port: gw.address.port, path: `/k8s/cluster-prod${path}`, ca: kube.caPem, headers: { authorization: `Bearer ${token}` } }, (res) => {
				let text = "";
				res.on("data", (c: Buffer) => (text += c.toString()));
				res.on("end", () => resolve({ status: res.statusCode ?? 0, text, drawbridge: /"kind":"drawbridge"/.test(text) }));
			})
			.on("error", reject);
	});
}

const WS = {
	connection: "Upgrade",
	upgrade: "websocket",
	"sec-websocket-version": "13",
	"sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
	"sec-websocket-protocol": "v5.channel.k8s.io",
};

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	for (const ns of ["payments", "prod"]) await kube.createNamespace(ns);
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	const secret = await kube.kubectl(["-n", "prod", "create", "secret", "generic", "prod-db", "--from-literal=password=prod-canary-7f3a"]);
	assert.equal(secret.code, 0, secret.stderr);
	const pod = await kube.request("POST", "/api/v1/namespaces/payments/pods", {
		apiVersion: "v1",
		kind: "Pod",
		metadata: { name: "api" },
		spec: { containers: [{ name: "api", image: "example.invalid/api:1" }] },
	});
	assert.equal(pod.status, 201);
	const cert = await issueCert(kube.ca, { cn: "drawbridge-gateway", ips: ["127.0.0.1"], dns: ["localhost"], name: "gateway-kube-bypass" });
	const connection = kubeConnection(kube);
	const store = storeWith(
		makeBundle(issuer, {
			connections: [connection],
			grants: [
				userGrant("rw", { namespaces: ["payments"], verbs: ["*"], resources: ["*"] }),
				userGrant("ro", { namespaces: ["payments"], verbs: ["get", "list", "watch"], resources: ["*"] }),
				userGrant("lister", { namespaces: ["payments"], verbs: ["get", "list"], resources: ["pods"] }),
				userGrant("admin", { namespaces: ["*"], verbs: ["*"], resources: ["*"] }),
				{
					...userGrant("contractors", { namespaces: ["payments"], verbs: ["get", "list"], resources: ["configmaps"] }),
					subjects: [{ kind: "Group", name: "contractors" }],
				},
			],
			guardrailPolicies: [
				{
					key: "ops/kube-prod",
					selector: { matchLabels: { env: "prod" } },
					rules: [
						{ name: "no-proxy", action: "block", kubernetes: { resources: ["pods/proxy", "services/proxy", "nodes/proxy"] } },
						{ name: "no-prod-secrets", action: "block", kubernetes: { verbs: ["get", "list", "watch"], resources: ["secrets"], namespaces: ["prod"] } },
					],
				},
			],
			credentials: kubeCredentials(kube),
		}),
	);
	gw = await startKubeListener({ store, recorder, approvals: approvalService(), tls: { certPem: cert.certPem, keyPem: cert.keyPem }, sessionIdleMs: 500 });
});

after(async () => {
	await gw?.close();
	await kube?.stop();
});

describe("request forms that reached the apiserver past the grant or a guardrail", () => {
	test("control: the namespaced grants work inside payments", async () => {
		const r = await send("rw", "GET", "/api/v1/namespaces/payments/pods");
		assert.equal(r.status, 200, r.text);
		assert.equal((await send("ro", "GET", "/api/v1/namespaces/payments")).status, 200);
		assert.equal((await send("ro", "GET", "/version")).status, 200);
		assert.equal((await send("ro", "GET", "/apis/apps/v1")).status, 200);
	});

	test("PATCH /api/v1/namespaces/payments by a payments-only grant: refused, the Namespace is unchanged", async () => {
		const r = await send("rw", "PATCH", "/api/v1/namespaces/payments", {
			body: JSON.stringify({ metadata: { labels: { "pod-security.kubernetes.io/enforce": "privileged" } } }),
		});
		assert.equal(r.status, 403, r.text);
		assert.ok(r.drawbridge, r.text);
		const ns = await kube.request<{ metadata: { labels?: Record<string, string> } }>("GET", "/api/v1/namespaces/payments");
		assert.equal(ns.body.metadata.labels?.["pod-security.kubernetes.io/enforce"], undefined);
		const del = await send("rw", "DELETE", "/api/v1/namespaces/payments");
		assert.equal(del.status, 403, del.text);
		assert.equal((await kube.request("GET", "/api/v1/namespaces/payments")).status, 200);
	});

	test("a path after pods/NAME/proxy (or services, nodes) no longer steps around a rule on the proxy subresource", async () => {
		for (const p of [
			"/api/v1/namespaces/payments/pods/api/proxy/metrics",
			"/api/v1/namespaces/payments/services/web/proxy/admin",
			"/api/v1/nodes/n1/proxy/exec/payments/api/api",
		]) {
			const r = await send("admin", "GET", p);
			assert.equal(r.status, 403, `${p}: ${r.text}`);
			assert.match(r.text, /no-proxy/);
		}
	});

	test("a read-only grant cannot exec through the WebSocket GET form", async () => {
		const r = await send("ro", "GET", "/api/v1/namespaces/payments/pods/api/exec?command=id&stdout=1", { headers: WS });
		assert.equal(r.status, 403, r.text);
		assert.ok(r.drawbridge, r.text);
		assert.match(r.text, /verb create/);
		// Before the fix the apiserver answered (pod without a node: 400 "does not have a host assigned").
		const attach = await send("ro", "GET", "/api/v1/namespaces/payments/pods/api/attach?stdout=1", { headers: WS });
		assert.equal(attach.status, 403, attach.text);
	});

	test("?watch=on is a watch for the grant too", async () => {
		const r = await send("lister", "GET", "/api/v1/namespaces/payments/pods?watch=on&timeoutSeconds=1");
		assert.equal(r.status, 403, r.text);
		assert.match(r.text, /verb watch/);
		assert.equal((await send("lister", "GET", "/api/v1/namespaces/payments/pods?watch=false")).status, 200);
	});

	test("listing Secrets across all namespaces does not step around a rule on prod's Secrets", async () => {
		for (const p of ["/api/v1/secrets", "/api/v1/secrets?watch=1&timeoutSeconds=1"]) {
			const r = await send("admin", "GET", p);
			assert.equal(r.status, 403, r.text);
			assert.doesNotMatch(r.text, /prod-db|cHJvZC1jYW5hcnk/);
			assert.match(r.text, /no-prod-secrets/);
		}
		assert.equal((await send("admin", "GET", "/api/v1/namespaces/payments/secrets")).status, 200);
	});

	test("an OIDC user name in the system: namespace is never impersonated (it would be a Kubernetes component's RBAC)", async () => {
		const control = await sendAs("alice", ["contractors", "agents"], "/api/v1/namespaces/payments/configmaps");
		assert.equal(control.status, 200, control.text);
		for (const sub of ["system:kube-controller-manager", "system:serviceaccount:kube-system:replicaset-controller", "system:admin"]) {
			const r = await sendAs(sub, ["contractors", "agents"], "/api/v1/namespaces/payments/configmaps");
			// refused by the token verifier itself (test/hostile/issue-oidc-system-names.test.ts): 401
			assert.equal(r.status, 401, `${sub}: ${r.text}`);
			assert.ok(r.drawbridge, r.text);
			assert.match(r.text, /reserved system: namespace/);
		}
	});

	test("server internals (/metrics, /debug) are not discovery", async () => {
		for (const p of ["/metrics", "/debug/pprof/"]) {
			const r = await send("ro", "GET", p);
			assert.equal(r.status, 403, r.text);
			assert.ok(r.drawbridge);
		}
		assert.equal((await send("admin", "GET", "/metrics")).status, 200);
	});
});
