/**
 * Reads by another name, subresources (red-team round 8, through the real gateway to a real
 * kube-apiserver whose RBAC gives the agents cluster-admin).
 *
 * A rule "no reading Pods in prod" (`verbs: [get]`, `resources: [pods]`) matched get, list, watch and
 * patch of `pods`, but not of its subresources, and some subresources answer with the whole Pod, its
 * env values included: `GET pods/NAME/status`, `GET pods/NAME/ephemeralcontainers`, and a patch (or
 * update) of either (`PATCH …/ephemeralcontainers` with `{}` changes nothing and returns the Pod).
 * Likewise `status` of any resource, a Pod's `resize`, a CSR's `approval`, a Namespace's `finalize`.
 * Now reading or writing such a subresource is matched as a `get` of the object too.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { KubeListener } from "../../gateway/kube/listener.ts";
import { parseKubeRequest } from "../../gateway/kube/request.ts";
import { evaluateKubeRequest } from "../../gateway/policy/kube.ts";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { type KubeHandle, startKube } from "../env/index.ts";
import { type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";
import { httpsText, kubeGateway, userGrant } from "./fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
const CANARY = "pod-env-canary-5e1";
const RULES: GuardrailRule[] = [{ name: "no-pod-reads", action: "block", kubernetes: { verbs: ["get"], resources: ["pods"], namespaces: ["prod"] } }];

async function send(method: string, path: string, body?: string, contentType = "application/strategic-merge-patch+json"): Promise<{ status: number; text: string; drawbridge: boolean }> {
	const token = await issuer.token("admin", { groups: ["agents"] });
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
		60_000,
	);
}

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	await kube.createNamespace("prod");
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	const pod = await kube.request("POST", "/api/v1/namespaces/prod/pods", {
		apiVersion: "v1",
		kind: "Pod",
		metadata: { name: "api" },
		spec: { containers: [{ name: "api", image: "example.invalid/api:1", env: [{ name: "DB_PASSWORD", value: CANARY }] }] },
	});
	assert.equal(pod.status, 201, pod.text);
	gw = await kubeGateway(
		issuer,
		kube,
		{
			grants: [userGrant("admin", { namespaces: ["*"], verbs: ["*"], resources: ["*"] })],
			guardrailPolicies: [{ key: "ops/kube-prod", selector: { matchLabels: { env: "prod" } }, rules: RULES }],
		},
		"gateway-kube-subresource-reads",
	);
});

after(async () => {
	await gw?.close();
	await kube?.stop();
});

const POD = "/api/v1/namespaces/prod/pods/api";

test("subresources answering with the whole Pod are matched by a rule on get pods", async () => {
	const plain = await send("GET", POD);
	assert.equal(plain.status, 403, plain.text);
	// On the old code each answered 200 with the Pod, DB_PASSWORD's value included.
	for (const [method, path, body] of [
		["GET", `${POD}/status`],
		["GET", `${POD}/ephemeralcontainers`],
		["PATCH", `${POD}/ephemeralcontainers`, "{}"],
		["PATCH", `${POD}/status?dryRun=All`, "{}"],
	] as [string, string, string?][]) {
		const r = await send(method, path, body);
		assert.equal(r.status, 403, `${method} ${path}: ${r.text.slice(0, 300)}`);
		assert.ok(r.drawbridge, r.text);
		assert.match(r.text, /no-pod-reads/);
		assert.doesNotMatch(r.text, new RegExp(CANARY));
	}
	// A subresource that answers something else is not matched: the log (the apiserver's own 400 here:
	// the Pod has no node).
	const log = await send("GET", `${POD}/log`);
	assert.equal(log.drawbridge, false, log.text);
});

test("answersWithParent: which subresources read the object", () => {
	const grant = { namespaces: ["*"], verbs: ["*"], resources: ["*"] };
	const block = (method: string, path: string, rules: GuardrailRule[] = RULES) => evaluateKubeRequest(parseKubeRequest(method, path), grant, rules).action;
	for (const [m, p] of [
		["GET", `${POD}/status`],
		["PUT", `${POD}/status`],
		["PUT", `${POD}/ephemeralcontainers`],
		["PATCH", `${POD}/resize`],
	]) {
		assert.equal(block(m!, p!), "block", `${m} ${p}`);
	}
	for (const [m, p] of [
		["GET", `${POD}/log`],
		["GET", "/api/v1/namespaces/dev/pods/api/status"],
		["POST", `${POD}/eviction`],
		["POST", `${POD}/binding`],
	]) {
		assert.equal(block(m!, p!), "allow", `${m} ${p}`);
	}
	const csr: GuardrailRule[] = [{ name: "no-csr-reads", action: "block", kubernetes: { verbs: ["get"], resources: ["certificatesigningrequests"] } }];
	assert.equal(block("PUT", "/apis/certificates.k8s.io/v1/certificatesigningrequests/x/approval", csr), "block");
	const deploy: GuardrailRule[] = [{ name: "no-deploy-reads", action: "block", kubernetes: { verbs: ["get"], resources: ["deployments"] } }];
	assert.equal(block("GET", "/apis/apps/v1/namespaces/prod/deployments/x/status", deploy), "block");
	assert.equal(block("GET", "/apis/apps/v1/namespaces/prod/deployments/x/scale", deploy), "allow");
});
