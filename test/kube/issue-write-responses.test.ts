/**
 * Reads by another name, continued (red-team round 7, through the real gateway to a real
 * kube-apiserver whose RBAC gives the agents cluster-admin). A rule written as "no reading Secrets in
 * prod" (`verbs: [get]`) already matched `list` and `watch`. Two writes answer with the objects too:
 * - a `patch` answers with the whole object after it: `PATCH {}` (a patch that changes nothing), the
 *   same with `?dryRun=All`, or a label patch return the Secret's `data` as stored, and a JSON-patch
 *   `test` op confirms a guessed value by its status alone;
 * - a `deletecollection` answers with the list of every object it deleted, whole, and with
 *   `?dryRun=All` it deletes nothing.
 * Through the gateway each returned prod's Secret value under such a rule. Now a rule matching `get`
 * also matches `patch` and `deletecollection` of the same resource and namespace (the refusal says
 * why), as it matched list and watch. Creating a Secret (the answer is what was sent) and deleting
 * one by name (the answer is a Status) are not matched.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { KubeListener } from "../../gateway/kube/listener.ts";
import { parseKubeRequest } from "../../gateway/kube/request.ts";
import { readEquivalents } from "../../gateway/policy/kube.ts";
import { type KubeHandle, startKube } from "../env/index.ts";
import { type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";
import { httpsText, kubeGateway, userGrant } from "./fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
const VALUE = Buffer.from("prod-canary-77c").toString("base64");

async function send(user: string, method: string, path: string, body?: string, contentType = "application/merge-patch+json", direct = false): Promise<{ status: number; text: string }> {
	const token = direct ? kube.adminToken : await issuer.token(user, { groups: ["agents"] });
	return httpsText(
		{
			hostname: "127.0.0.1",
			port: direct ? kube.port : gw.address.port,
			method,
			path: direct ? path : `/k8s/cluster-prod${path}`,
			ca: kube.caPem,
			headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": contentType } : {}) },
		},
		body,
	);
}

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	for (const ns of ["payments", "prod"]) await kube.createNamespace(ns);
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	for (const ns of ["prod", "payments"]) {
		const s = await kube.request("POST", `/api/v1/namespaces/${ns}/secrets`, { apiVersion: "v1", kind: "Secret", metadata: { name: "db" }, data: { password: VALUE } });
		assert.equal(s.status, 201, s.text);
	}
	gw = await kubeGateway(
		issuer,
		kube,
		{
			grants: [
				userGrant("admin", { namespaces: ["*"], verbs: ["*"], resources: ["*"] }),
				// May change prod's Secrets, never read them (the grant has no get, list or watch).
				userGrant("rotator", { namespaces: ["prod"], verbs: ["patch", "deletecollection"], resources: ["secrets"] }),
			],
			guardrailPolicies: [
				{
					key: "ops/kube-prod",
					selector: { matchLabels: { env: "prod" } },
					rules: [{ name: "no-secret-reads", action: "block", kubernetes: { verbs: ["get"], resources: ["secrets"], namespaces: ["prod"] } }],
				},
			],
		},
		"gateway-kube-write-responses",
	);
});

after(async () => {
	await gw?.close();
	await kube?.stop();
});

const SECRET = "/api/v1/namespaces/prod/secrets/db";
const patches: [string, string, string][] = [
	["an empty merge patch", "{}", "application/merge-patch+json"],
	["a dry-run label patch", JSON.stringify({ metadata: { labels: { touched: "yes" } } }), "application/merge-patch+json"],
	["a JSON-patch test op", JSON.stringify([{ op: "test", path: "/data/password", value: VALUE }]), "application/json-patch+json"],
	["a strategic merge patch", "{}", "application/strategic-merge-patch+json"],
];

test("a patch answers with the whole Secret: matched by a rule on get", async () => {
	for (const [what, body, type] of patches) {
		const path = what.includes("dry-run") ? `${SECRET}?dryRun=All` : SECRET;
		// The apiserver's answer: the Secret with its value.
		const direct = await send("admin", "PATCH", path, body, type, true);
		assert.equal(direct.status, 200, `${what}: ${direct.text}`);
		assert.match(direct.text, new RegExp(VALUE), what);
		// On the old code: the same answer through the gateway (the rule names get only).
		for (const user of ["admin", "rotator"]) {
			const r = await send(user, "PATCH", path, body, type);
			assert.equal(r.status, 403, `${user}, ${what}: ${r.text}`);
			assert.match(r.text, /a patch returns the whole object like get\): blocked by guardrail rule \\"no-secret-reads\\"/);
			assert.doesNotMatch(r.text, new RegExp(VALUE));
		}
	}
});

test("a deletecollection answers with every object it deletes (dryRun=All: none): matched by a rule on get", async () => {
	const path = "/api/v1/namespaces/prod/secrets?dryRun=All";
	const direct = await send("admin", "DELETE", path, undefined, undefined, true);
	assert.equal(direct.status, 200, direct.text);
	assert.match(direct.text, new RegExp(VALUE));
	for (const user of ["admin", "rotator"]) {
		// On the old code: 200 with the SecretList, values included.
		const r = await send(user, "DELETE", path);
		assert.equal(r.status, 403, `${user}: ${r.text}`);
		assert.match(r.text, /a deletecollection returns every object it deletes like (list|get)\): blocked by guardrail rule \\"no-secret-reads\\"/);
		assert.doesNotMatch(r.text, new RegExp(VALUE));
	}
	assert.equal((await kube.request("GET", SECRET)).status, 200);
});

test("unchanged: creating or deleting one Secret in prod, patching Secrets elsewhere, patching other resources", async () => {
	const created = await send("admin", "POST", "/api/v1/namespaces/prod/secrets", JSON.stringify({ apiVersion: "v1", kind: "Secret", metadata: { name: "new" }, stringData: { a: "b" } }), "application/json");
	assert.equal(created.status, 201, created.text);
	const deleted = await send("admin", "DELETE", "/api/v1/namespaces/prod/secrets/new");
	assert.equal(deleted.status, 200, deleted.text);
	const elsewhere = await send("admin", "PATCH", "/api/v1/namespaces/payments/secrets/db", "{}");
	assert.equal(elsewhere.status, 200, elsewhere.text);
	const cm = await send("admin", "PATCH", "/api/v1/namespaces/prod/configmaps/kube-root-ca.crt", "{}");
	assert.notEqual(cm.status, 403, cm.text);
});

test("readEquivalents: patch and deletecollection read like get", () => {
	const verbs = (m: string, u: string) => readEquivalents(parseKubeRequest(m, u)).map((i) => `${i.req.verb} ${i.req.resource}${i.req.subresource ? `/${i.req.subresource}` : ""}`);
	assert.deepEqual(verbs("PATCH", SECRET), ["get secrets"]);
	assert.deepEqual(verbs("PATCH", "/api/v1/namespaces/prod/pods/p/status"), ["get pods"]);
	assert.deepEqual(verbs("DELETE", "/api/v1/namespaces/prod/secrets"), ["list secrets", "get secrets"]);
	assert.deepEqual(verbs("DELETE", SECRET), []);
	assert.deepEqual(verbs("POST", "/api/v1/namespaces/prod/secrets"), []);
	assert.deepEqual(verbs("PUT", SECRET), []);
});
