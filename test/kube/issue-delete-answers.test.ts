/**
 * Reads by another name, deletes (red-team round 8, through the real gateway to a real kube-apiserver
 * whose RBAC gives the agents cluster-admin).
 *
 * A named `delete` answers with a Status when the object goes at once, but with the whole object when
 * it does not: a Pod (graceful deletion), or any object with finalizers, also with `?dryRun=All`
 * (which deletes nothing). Under a rule blocking `get secrets` in prod, `DELETE
 * …/secrets/db?dryRun=All` of a Secret with a finalizer returned its data; under one on `get pods`,
 * any Pod delete returned the Pod with its env values. The delete is still decided as a delete (the
 * rule on get does not stop it), but its answer is now withheld when a rule blocks or holds reading
 * the object: a Status saying so replaces it (a Status the apiserver sent is relayed).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import type { KubeListener } from "../../gateway/kube/listener.ts";
import { type KubeHandle, startKube } from "../env/index.ts";
import { type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";
import { httpsText, kubeGateway, userGrant } from "./fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
const SECRET_VALUE = Buffer.from("secret-canary-31f").toString("base64");
const POD_VALUE = "pod-canary-8d2";
const RULES: GuardrailRule[] = [
	{ name: "no-secret-reads", action: "block", kubernetes: { verbs: ["get"], resources: ["secrets", "pods"], namespaces: ["prod"] } },
];

async function send(method: string, path: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string; drawbridge: boolean }> {
	const token = await issuer.token("admin", { groups: ["agents"] });
	return httpsText(
		{ hostname: "127.0.0.1", port: gw.address.port, method, path: `/k8s/cluster-prod${path}`, ca: kube.caPem, headers: { authorization: `Bearer ${token}`, ...headers } },
		undefined,
		60_000,
	);
}

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	for (const ns of ["prod", "dev"]) await kube.createNamespace(ns);
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	for (const ns of ["prod", "dev"]) {
		const s = await kube.request("POST", `/api/v1/namespaces/${ns}/secrets`, {
			apiVersion: "v1",
			kind: "Secret",
			metadata: { name: "db", finalizers: ["example.com/keep"] },
			data: { password: SECRET_VALUE },
		});
		assert.equal(s.status, 201, s.text);
		const plain = await kube.request("POST", `/api/v1/namespaces/${ns}/secrets`, { apiVersion: "v1", kind: "Secret", metadata: { name: "plain" }, data: { password: SECRET_VALUE } });
		assert.equal(plain.status, 201, plain.text);
		const p = await kube.request("POST", `/api/v1/namespaces/${ns}/pods`, {
			apiVersion: "v1",
			kind: "Pod",
			metadata: { name: "api" },
			spec: { containers: [{ name: "api", image: "example.invalid/api:1", env: [{ name: "DB_PASSWORD", value: POD_VALUE }] }] },
		});
		assert.equal(p.status, 201, p.text);
	}
	gw = await kubeGateway(
		issuer,
		kube,
		{
			grants: [userGrant("admin", { namespaces: ["*"], verbs: ["*"], resources: ["*"] })],
			guardrailPolicies: [{ key: "ops/kube-prod", selector: { matchLabels: { env: "prod" } }, rules: RULES }],
		},
		"gateway-kube-delete-answers",
	);
});

after(async () => {
	await gw?.close();
	await kube?.stop();
});

test("a delete's answer carrying the object is withheld under a rule on get; the delete itself is decided as before", async () => {
	assert.equal((await send("GET", "/api/v1/namespaces/prod/secrets/db")).status, 403);
	// On the old code: 200 with the Secret's data, and the Pod with DB_PASSWORD.
	for (const [path, canary, headers] of [
		["/api/v1/namespaces/prod/secrets/db?dryRun=All", SECRET_VALUE, {}],
		["/api/v1/namespaces/prod/secrets/db?dryRun=All", SECRET_VALUE, { accept: "application/vnd.kubernetes.protobuf" }],
		["/api/v1/namespaces/prod/pods/api?dryRun=All", POD_VALUE, {}],
	] as [string, string, Record<string, string>][]) {
		const r = await send("DELETE", path, headers);
		assert.equal(r.status, 200, r.text);
		assert.ok(!r.text.includes(canary), `${path}: ${r.text.slice(0, 300)}`);
		assert.ok(r.drawbridge, r.text);
		assert.match(r.text, /"status":"Success".*answer, the object itself, is withheld.*no-secret-reads/);
	}
	// Nothing was deleted (dry run), and the apiserver's own Status is relayed as is.
	assert.equal((await kube.kubectl(["-n", "prod", "get", "secret", "db"])).code, 0);
	const plain = await send("DELETE", "/api/v1/namespaces/prod/secrets/plain?dryRun=All");
	assert.equal(plain.status, 200, plain.text);
	assert.equal(plain.drawbridge, false, plain.text);
	assert.match(plain.text, /"kind":"Status"/);
	// As an upgrade request it is refused (such answers would be relayed unread).
	const up = await send("DELETE", "/api/v1/namespaces/prod/pods/api?dryRun=All", { connection: "Upgrade", upgrade: "websocket" });
	assert.equal(up.status, 400, up.text);
	// Where no rule hides the object, the answer is the apiserver's.
	const dev = await send("DELETE", "/api/v1/namespaces/dev/secrets/db?dryRun=All");
	assert.equal(dev.status, 200);
	assert.ok(dev.text.includes(SECRET_VALUE));
});
