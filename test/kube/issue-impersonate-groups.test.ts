/**
 * Groups a grant (or a token) made the gateway impersonate (red-team round 10, lead 5). Real gateway,
 * real kube-apiserver with RBAC: `kubeadm:cluster-admins` is bound to cluster-admin as kubeadm (1.29+)
 * binds it, `app-readers` may read Secrets in app. The agents have no RBAC of their own.
 *
 * Only `system:masters` was kept out of a grant's `impersonateGroups` (and only `system:*` out of a
 * token's groups): a grant naming `kubeadm:cluster-admins` (system:masters by another name), or
 * `system:nodes`, `system:bootstrappers:…`, `system:serviceaccounts:kube-system`, was impersonated
 * with them, and so was a token whose identity provider put the agent in a group called
 * `kubeadm:cluster-admins`. The grant's resources then ran with the cluster's RBAC, not the agent's:
 * `get secrets` in app answered. Now no `system:` group (system:authenticated aside) and no group
 * installers bind to cluster-admin is impersonated, from either source; other groups still are.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { BundleGrant, Identity } from "../../gateway/config/bundle.ts";
import { impersonatedGroups, type KubeListener } from "../../gateway/kube/listener.ts";
import { type KubeHandle, startKube } from "../env/index.ts";
import { type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";
import { httpsText, kubeGateway, userGrant } from "./fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;

const SECRETS = "/api/v1/namespaces/app/secrets";

async function list(user: string, groups: string[] = []) {
	const token = await issuer.token(user, { groups });
	return httpsText({
		hostname: "127.0.0.1",
		port: gw.address.port,
		method: "GET",
		path: `/k8s/cluster-prod${SECRETS}`,
		ca: kube.caPem,
		headers: { authorization: `Bearer ${token}` },
	});
}

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	await kube.createNamespace("app");
	await kube.kubectl(["-n", "app", "create", "secret", "generic", "db", "--from-literal=password=hunter2-app"]);
	for (const args of [
		["create", "clusterrolebinding", "kubeadm:cluster-admins", "--clusterrole=cluster-admin", "--group=kubeadm:cluster-admins"],
		["-n", "app", "create", "role", "secret-reader", "--verb=get,list", "--resource=secrets"],
		["-n", "app", "create", "rolebinding", "app-readers", "--role=secret-reader", "--group=app-readers"],
	]) {
		const r = await kube.kubectl(args);
		assert.equal(r.code, 0, r.stderr);
	}
	const scope = { namespaces: ["app"], verbs: ["get", "list"], resources: ["secrets"] };
	gw = await kubeGateway(
		issuer,
		kube,
		{
			grants: [
				userGrant("lee", { ...scope, impersonateGroups: ["kubeadm:cluster-admins"] }),
				userGrant("ann", { ...scope, impersonateGroups: ["app-readers"] }),
				userGrant("bob", scope),
			],
		},
		"gateway-kube-impersonate-groups",
	);
});

after(async () => {
	await gw?.close();
	await kube?.stop();
});

test("control: a group the grant names, bound to a narrow Role, is impersonated", async () => {
	const r = await list("ann");
	assert.equal(r.status, 200, r.text);
	assert.match(r.text, /"name":"db"/);
});

test("a grant's impersonateGroups never adds a group bound to cluster-admin by another name", async () => {
	const r = await list("lee");
	// On the old code: 200 and the Secret, with cluster-admin's RBAC.
	assert.equal(r.status, 403, r.text);
	assert.doesNotMatch(r.text, /hunter2|"name":"db"/);
	assert.match(r.text, /User \\"lee\\" cannot list resource \\"secrets\\"/);
});

test("nor does a token's group claim of that name", async () => {
	const r = await list("bob", ["kubeadm:cluster-admins"]);
	assert.equal(r.status, 403, r.text);
	assert.match(r.text, /User \\"bob\\" cannot list resource \\"secrets\\"/);
});

test("impersonatedGroups: no system: group from a grant or a token but system:authenticated", () => {
	const identity: Identity = {
		issuer: "https://issuer.drawbridge.test",
		issuerKind: "oidc",
		subject: "lee",
		username: "lee",
		groups: ["team-a", "system:nodes", "kubeadm:cluster-admins", "system:authenticated"],
		tokenExpiresAt: new Date(Date.now() + 60_000),
		claims: {},
	};
	const grant = userGrant("lee", {
		namespaces: ["app"],
		verbs: ["get"],
		resources: ["pods"],
		impersonateGroups: [
			"app-readers",
			"system:masters",
			"system:nodes",
			"system:bootstrappers:kubeadm:default-node-token",
			"system:serviceaccounts",
			"system:serviceaccounts:kube-system",
			"system:monitoring",
			"kubeadm:cluster-admins",
			" system:masters",
		],
	}) as BundleGrant;
	assert.deepEqual(impersonatedGroups(identity, grant).sort(), ["app-readers", "system:authenticated", "team-a"]);
});
