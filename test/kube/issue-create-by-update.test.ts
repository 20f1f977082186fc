/**
 * Creates by another name (red-team round 8, through the real gateway to a real kube-apiserver whose
 * RBAC gives the agents cluster-admin).
 *
 * An update (`PUT`) creates its object when it does not exist for the kinds whose strategy allows it
 * (RoleBindings, Roles, ClusterRoles, ClusterRoleBindings, Leases, Endpoints, Events, …), and a
 * server-side apply (`PATCH` with `application/apply-patch+yaml`, `kubectl apply --server-side`)
 * creates any missing object. The apiserver then asks RBAC for `create` (a user with only update and
 * patch gets "cannot create"). The gateway classified them as update and patch only, so:
 * - a grant with `patch`/`update` but no `create` created ConfigMaps and RoleBindings;
 * - a rule blocking `create rolebindings` in prod was passed by a `PUT` of a new RoleBinding (binding
 *   any Role to anyone) and by a server-side apply of one.
 * Now an update or server-side apply of an object needs `create` in the grant as well, and rules on
 * `create` match it. JSON, merge and strategic-merge patches (kubectl apply, edit, patch) never
 * create and are unchanged.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { KubeListener } from "../../gateway/kube/listener.ts";
import { mayCreate, parseKubeRequest } from "../../gateway/kube/request.ts";
import { type KubeHandle, startKube } from "../env/index.ts";
import { type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";
import { httpsText, kubeGateway, userGrant } from "./fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;

async function send(user: string, method: string, path: string, body?: string, contentType = "application/json"): Promise<{ status: number; text: string; drawbridge: boolean }> {
	const token = await issuer.token(user, { groups: ["agents"] });
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

async function exists(kind: string, name: string): Promise<boolean> {
	return (await kube.kubectl(["-n", "prod", "get", kind, name])).code === 0;
}

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	await kube.createNamespace("prod");
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	assert.equal((await kube.kubectl(["-n", "prod", "create", "configmap", "flags", "--from-literal=mode=blue"])).code, 0);
	gw = await kubeGateway(
		issuer,
		kube,
		{
			grants: [
				// May change prod's objects, never create them.
				userGrant("editor", { namespaces: ["prod"], verbs: ["get", "list", "patch", "update"], resources: ["configmaps", "rolebindings"] }),
				userGrant("admin", { namespaces: ["*"], verbs: ["*"], resources: ["*"] }),
			],
			guardrailPolicies: [
				{
					key: "ops/kube-prod",
					selector: { matchLabels: { env: "prod" } },
					rules: [{ name: "no-new-bindings", action: "block", kubernetes: { verbs: ["create"], resources: ["rolebindings"], namespaces: ["prod"] } }],
				},
			],
		},
		"gateway-kube-create-by-update",
	);
});

after(async () => {
	await gw?.close();
	await kube?.stop();
});

const bindingJson = (name: string) =>
	JSON.stringify({
		apiVersion: "rbac.authorization.k8s.io/v1",
		kind: "RoleBinding",
		metadata: { name, namespace: "prod" },
		roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "admin" },
		subjects: [{ kind: "User", name: "mallory", apiGroup: "rbac.authorization.k8s.io" }],
	});
const RB = "/apis/rbac.authorization.k8s.io/v1/namespaces/prod/rolebindings";
const applyYaml = (name: string) => `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ${name}\n  namespace: prod\ndata:\n  mode: red\n`;

test("a grant without create: an update or a server-side apply no longer creates objects", async () => {
	// On the old code: 201 Created, both.
	const ssa = await send("editor", "PATCH", "/api/v1/namespaces/prod/configmaps/made-by-apply?fieldManager=agent", applyYaml("made-by-apply"), "application/apply-patch+yaml");
	assert.equal(ssa.status, 403, ssa.text);
	assert.ok(ssa.drawbridge, ssa.text);
	assert.match(ssa.text, /verb create is not granted, and a server-side apply creates the object/);
	assert.equal(await exists("configmap", "made-by-apply"), false);
	const put = await send("editor", "PUT", `${RB}/made-by-put`, bindingJson("made-by-put"));
	assert.equal(put.status, 403, put.text);
	assert.match(put.text, /an update creates the object/);
	assert.equal(await exists("rolebinding", "made-by-put"), false);
	// Patches that never create still work on existing objects.
	const merge = await send("editor", "PATCH", "/api/v1/namespaces/prod/configmaps/flags", JSON.stringify({ data: { mode: "green" } }), "application/merge-patch+json");
	assert.equal(merge.status, 200, merge.text);
	const strategic = await send("editor", "PATCH", "/api/v1/namespaces/prod/configmaps/flags", JSON.stringify({ data: { mode: "teal" } }), "application/strategic-merge-patch+json");
	assert.equal(strategic.status, 200, strategic.text);
});

test("a rule blocking create rolebindings: a PUT or a server-side apply of a new RoleBinding is blocked", async () => {
	const direct = await send("admin", "POST", RB, bindingJson("made-by-post"));
	assert.equal(direct.status, 403, direct.text);
	assert.match(direct.text, /no-new-bindings/);
	// On the old code: 201, a RoleBinding giving mallory admin in prod.
	const put = await send("admin", "PUT", `${RB}/made-by-put`, bindingJson("made-by-put"));
	assert.equal(put.status, 403, put.text);
	assert.match(put.text, /no-new-bindings/);
	assert.match(put.text, /creates the object when it is missing, like create/);
	const ssa = await send("admin", "PATCH", `${RB}/made-by-apply?fieldManager=agent`, bindingJson("made-by-apply"), "application/apply-patch+yaml");
	assert.equal(ssa.status, 403, ssa.text);
	assert.equal(await exists("rolebinding", "made-by-put"), false);
	assert.equal(await exists("rolebinding", "made-by-apply"), false);
	// Writes that cannot create pass that rule: a merge patch of a binding (404 here: there is none).
	const merge = await send("admin", "PATCH", `${RB}/none`, "{}", "application/merge-patch+json");
	assert.equal(merge.status, 404, merge.text);
	assert.equal(merge.drawbridge, false);
});

test("mayCreate: which writes may create their object", () => {
	const k = (method: string, path: string) => parseKubeRequest(method, path);
	assert.equal(mayCreate(k("PUT", "/api/v1/namespaces/prod/configmaps/x"), "application/json"), true);
	for (const t of ["application/apply-patch+yaml", "Application/Apply-Patch+YAML", "application/apply-patch+json", "application/apply-patch+cbor", "application/apply-patch+yaml; charset=utf-8"]) {
		assert.equal(mayCreate(k("PATCH", "/api/v1/namespaces/prod/configmaps/x"), t), true, t);
	}
	for (const t of ["application/merge-patch+json", "application/json-patch+json", "application/strategic-merge-patch+json", undefined]) {
		assert.equal(mayCreate(k("PATCH", "/api/v1/namespaces/prod/configmaps/x"), t), false, String(t));
	}
	assert.equal(mayCreate(k("PUT", "/apis/apps/v1/namespaces/prod/deployments/x/scale"), "application/json"), false);
	assert.equal(mayCreate(k("PATCH", "/apis/apps/v1/namespaces/prod/deployments/x/status"), "application/apply-patch+yaml"), false);
	assert.equal(mayCreate(k("POST", "/api/v1/namespaces/prod/configmaps"), "application/json"), false);
});
