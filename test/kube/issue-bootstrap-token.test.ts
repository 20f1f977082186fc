/**
 * Bootstrap token Secrets are a credential (red-team round 7, through the real gateway to a real
 * kube-apiserver started with `--enable-bootstrap-token-auth`, as every kubeadm cluster runs it).
 *
 * A Secret of type `bootstrap.kubernetes.io/token` named `bootstrap-token-<id>` in kube-system makes
 * the apiserver itself accept `<id>.<secret>` from its data as a bearer token: user
 * `system:bootstrap:<id>`, groups `system:bootstrappers` plus the `system:bootstrappers:*` groups its
 * `auth-extra-groups` lists (in kubeadm clusters `system:bootstrappers:kubeadm:default-node-token` may
 * create node client CSRs that are approved by themselves). The agent chooses the secret, it never
 * expires unless the Secret says so, and it is used without the gateway: no grant, no guardrail, no
 * recording. Under a grant that may write kube-system's Secrets (any cluster-wide `*` grant) the gateway
 * forwarded it; it is TokenRequest by another name, and is now refused like service-account token
 * Secrets unless an active grant names `serviceaccounts/token` there.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { KubeListener } from "../../gateway/kube/listener.ts";
import { parseKubeRequest } from "../../gateway/kube/request.ts";
import { mintingWrite } from "../../gateway/policy/kube.ts";
import { type KubeHandle, startKube } from "../env/index.ts";
import { type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";
import { httpsText, kubeGateway, userGrant } from "./fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;

const SECRETS = "/api/v1/namespaces/kube-system/secrets";

function bootstrapSecret(id: string, secret: string): Record<string, unknown> {
	return {
		apiVersion: "v1",
		kind: "Secret",
		metadata: { name: `bootstrap-token-${id}`, namespace: "kube-system" },
		type: "bootstrap.kubernetes.io/token",
		stringData: { "token-id": id, "token-secret": secret, "usage-bootstrap-authentication": "true", "auth-extra-groups": "system:bootstrappers:agents" },
	};
}

async function send(user: string, method: string, path: string, body: string, contentType = "application/json"): Promise<{ status: number; text: string }> {
	const token = await issuer.token(user, { groups: ["agents"] });
	return httpsText(
		{
			hostname: "127.0.0.1",
			port: gw.address.port,
			method,
			path: `/k8s/cluster-prod${path}`,
			ca: kube.caPem,
			headers: { authorization: `Bearer ${token}`, "content-type": contentType },
		},
		body,
	);
}

/** Who the apiserver says the bearer token is (a SelfSubjectReview sent straight to it, no gateway). */
async function whoAmI(token: string): Promise<{ status: number; text: string }> {
	return kube.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" }, { token });
}

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube({ apiserverArgs: ["--enable-bootstrap-token-auth=true"] })]);
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	gw = await kubeGateway(
		issuer,
		kube,
		{
			grants: [
				userGrant("admin", { namespaces: ["*"], verbs: ["*"], resources: ["*"] }),
				// Names the TokenRequest subresource in kube-system: may mint credentials there on purpose.
				userGrant("minter", { namespaces: ["kube-system"], verbs: ["*"], resources: ["secrets", "serviceaccounts/token"] }),
			],
		},
		"gateway-kube-bootstrap",
	);
});

after(async () => {
	await gw?.close();
	await kube?.stop();
});

test("the apiserver accepts a bootstrap token Secret's token as a credential by itself (the premise)", async () => {
	const created = await kube.request("POST", SECRETS, bootstrapSecret("d1rect", "0123456789abcdef"));
	assert.equal(created.status, 201, created.text);
	// The authenticator reads kube-system's Secrets through an informer: give it a moment.
	let r = await whoAmI("d1rect.0123456789abcdef");
	for (let i = 0; i < 50 && r.status !== 201; i++) {
		await new Promise((res) => setTimeout(res, 200));
		r = await whoAmI("d1rect.0123456789abcdef");
	}
	assert.equal(r.status, 201, r.text);
	assert.match(r.text, /"username":"system:bootstrap:d1rect"/);
	assert.match(r.text, /system:bootstrappers:agents/);
});

test("a bootstrap token Secret is refused under a grant that does not name serviceaccounts/token, in every write form", async () => {
	// On the old code: 201 under the cluster-wide grant, and `evil01.0123456789abcdef` then worked
	// against the apiserver directly, without the gateway, for as long as the Secret exists.
	const post = await send("admin", "POST", SECRETS, JSON.stringify(bootstrapSecret("evil01", "0123456789abcdef")));
	assert.equal(post.status, 403, post.text);
	assert.match(post.text, /"kind":"drawbridge"/);
	assert.match(post.text, /does not allow a Secret of type bootstrap.kubernetes.io\/token in namespace kube-system.*serviceaccounts\/token/);
	// Server-side apply creates a missing object; JSON escapes are decoded by the apiserver.
	const apply = await send(
		"admin",
		"PATCH",
		`${SECRETS}/bootstrap-token-evil02?fieldManager=agent`,
		JSON.stringify(bootstrapSecret("evil02", "0123456789abcdef")).replace("bootstrap.kubernetes.io", "bootstrap\\u002ekubernetes.io"),
		"application/apply-patch+yaml",
	);
	assert.equal(apply.status, 403, apply.text);
	for (const id of ["evil01", "evil02"]) {
		assert.equal((await kube.request("GET", `${SECRETS}/bootstrap-token-${id}`)).status, 404);
		assert.equal((await whoAmI(`${id}.0123456789abcdef`)).status, 401);
	}
	// Other Secrets in kube-system are written as before, and a grant that names the alias may mint.
	const opaque = await send("admin", "POST", SECRETS, JSON.stringify({ apiVersion: "v1", kind: "Secret", metadata: { name: "plain" }, stringData: { a: "b" } }));
	assert.equal(opaque.status, 201, opaque.text);
	const minted = await send("minter", "POST", SECRETS, JSON.stringify(bootstrapSecret("m1nted", "0123456789abcdef")));
	assert.equal(minted.status, 201, minted.text);
});

test("mintingWrite: the bootstrap token type is looked for in kube-system only; service-account tokens everywhere", () => {
	const words = (path: string) => mintingWrite(parseKubeRequest("POST", path))?.words ?? [];
	assert.ok(words(SECRETS).includes("bootstrap.kubernetes.io/token"));
	assert.ok(words(SECRETS).includes("service-account-token"));
	assert.ok(!words("/api/v1/namespaces/prod/secrets").includes("bootstrap.kubernetes.io/token"));
	assert.ok(words("/api/v1/namespaces/prod/secrets").includes("service-account-token"));
});
