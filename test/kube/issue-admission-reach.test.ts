/**
 * Admission configuration written through the gateway (red-team round 10). Real gateway, real
 * kube-apiserver (RBAC allows the agent everything), a cluster-wide grant and one rule: nobody reads
 * prod's Secrets.
 *
 * On the old code the agent created a ValidatingWebhookConfiguration for Secrets with a URL of its
 * own (a `create` of a resource no rule names): from then on the apiserver sent the webhook every
 * Secret written in prod, data included, whoever wrote it, here the cluster's admin. Mutating webhooks
 * and admission policies (rewrite others' objects), APIServices (take over a whole API group's
 * requests) and deleting a webhook (lift what it enforced) are the same class. Such writes are matched
 * by every rule now, whatever its verbs, resources and namespaces; reading them is not.
 */
import assert from "node:assert/strict";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import type { KubeListener } from "../../gateway/kube/listener.ts";
import { issueCert, type KubeHandle, startKube } from "../env/index.ts";
import { type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";
import { httpsText, kubeGateway, userGrant } from "./fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
let hook: https.Server;
/** AdmissionReview bodies the agent's webhook received. */
const received: string[] = [];

async function send(method: string, path: string, body?: string, contentType = "application/json") {
	const token = await issuer.token("ops", { groups: ["agents"] });
	return httpsText(
		{
			hostname: "127.0.0.1",
			port: gw.address.port,
			method,
			path: `/k8s/cluster-prod${path}`,
			ca: kube.caPem,
			headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": contentType } : {}) },
		},
		body,
	);
}

function webhookConfig(port: number, name: string) {
	return {
		apiVersion: "admissionregistration.k8s.io/v1",
		kind: "ValidatingWebhookConfiguration",
		metadata: { name },
		webhooks: [
			{
				name: "secrets.agent.example.com",
				admissionReviewVersions: ["v1"],
				sideEffects: "None",
				failurePolicy: "Ignore",
				timeoutSeconds: 5,
				clientConfig: { url: `https://127.0.0.1:${port}/review`, caBundle: Buffer.from(kube.caPem).toString("base64") },
				rules: [{ apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE", "UPDATE"], resources: ["secrets"], scope: "Namespaced" }],
			},
		],
	};
}

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	await kube.createNamespace("prod");
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	const cert = await issueCert(kube.ca, { cn: "agent-webhook", ips: ["127.0.0.1"], dns: ["localhost"], name: "agent-webhook" });
	hook = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
		let body = "";
		req.on("data", (c: Buffer) => (body += c.toString()));
		req.on("end", () => {
			received.push(body);
			let uid = "";
			try {
				uid = (JSON.parse(body) as { request?: { uid?: string } }).request?.uid ?? "";
			} catch {
				// not a review
			}
			res.writeHead(200, { "content-type": "application/json" });
			res.end(JSON.stringify({ apiVersion: "admission.k8s.io/v1", kind: "AdmissionReview", response: { uid, allowed: true } }));
		});
	});
	await new Promise<void>((resolve) => hook.listen(0, "127.0.0.1", resolve));
	gw = await kubeGateway(
		issuer,
		kube,
		{
			// Named, not only `*`: a wildcard never covers them (test/kube/issue-admission-grant.test.ts), and
			// this file is about the rule.
			grants: [userGrant("ops", { namespaces: ["*"], verbs: ["*"], resources: ["*", "validatingwebhookconfigurations", "apiservices"] })],
			guardrailPolicies: [
				{
					key: "ops/kube-prod",
					selector: { matchLabels: { env: "prod" } },
					rules: [{ name: "prod-secrets", action: "block", kubernetes: { verbs: ["get"], resources: ["secrets"], namespaces: ["prod"] } }],
				},
			],
		},
		"gateway-kube-admission",
	);
});

after(async () => {
	await gw?.close();
	await kube?.stop();
	await new Promise<void>((resolve) => (hook ? hook.close(() => resolve()) : resolve()));
});

test("control: the rule refuses reading prod's Secrets", async () => {
	const r = await send("GET", "/api/v1/namespaces/prod/secrets");
	assert.equal(r.status, 403, r.text);
	assert.match(r.text, /prod-secrets/);
});

test("a webhook configuration that would be sent every Secret written in prod is refused under that rule", async () => {
	const port = (hook.address() as AddressInfo).port;
	const r = await send("POST", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", JSON.stringify(webhookConfig(port, "agent-secrets")));
	assert.equal(r.status, 403, `created: ${r.text}`);
	assert.ok(r.drawbridge, r.text);
	assert.match(r.text, /prod-secrets/);
	assert.match(r.text, /act on every later request/);
	// The admin writes a Secret in prod: had the webhook been created, it would have received it (on the
	// old code it did, data included; the webhook is registered within a second or so, so retry).
	for (let i = 0; i < 3; i++) {
		const s = await kube.request("POST", "/api/v1/namespaces/prod/secrets", { apiVersion: "v1", kind: "Secret", metadata: { name: `db-${i}` }, stringData: { password: "hunter2-prod" } });
		assert.equal(s.status, 201, JSON.stringify(s.body));
		await new Promise((resolve) => setTimeout(resolve, 1000));
	}
	assert.equal(
		received.filter((b) => b.includes("aHVudGVyMi1wcm9k") || b.includes("hunter2-prod")).length,
		0,
		"the agent's webhook received prod's Secret",
	);
	const listed = await kube.request<{ items: unknown[] }>("GET", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations");
	assert.equal(listed.body.items.length, 0);
});

test("APIServices and admission policies are the same class; reading admission configuration is not", async () => {
	const api = { apiVersion: "apiregistration.k8s.io/v1", kind: "APIService", metadata: { name: "v1.agent.example.com" }, spec: { group: "agent.example.com", version: "v1", groupPriorityMinimum: 1000, versionPriority: 15, service: { namespace: "default", name: "agent" }, insecureSkipTLSVerify: true } };
	const r = await send("POST", "/apis/apiregistration.k8s.io/v1/apiservices", JSON.stringify(api));
	assert.equal(r.status, 403, r.text);
	assert.match(r.text, /prod-secrets/);
	const patch = await send("PATCH", "/apis/apiregistration.k8s.io/v1/apiservices/v1.apps", JSON.stringify({ spec: { service: { namespace: "default", name: "agent" } } }), "application/merge-patch+json");
	assert.equal(patch.status, 403, patch.text);
	const read = await send("GET", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations");
	assert.equal(read.status, 200, read.text);
});
