import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createLocalJWKSet, decodeJwt, jwtVerify } from "jose";
import { type KubeHandle, printLogsOnFailure, startKube } from "../env/index.ts";

let kube: KubeHandle;
before(async () => {
	kube = await startKube();
});
after(async () => {
	await kube?.stop();
});
printLogsOnFailure(() => [["kube", kube]]);

test("kubectl apply then get a ConfigMap", async () => {
	const manifest = [
		"apiVersion: v1",
		"kind: ConfigMap",
		"metadata:",
		"  name: smoke",
		"  namespace: default",
		"data:",
		"  greeting: hello-kube",
		"",
	].join("\n");
	const applied = await kube.kubectl(["apply", "-f", "-"], { input: manifest });
	assert.equal(applied.code, 0, applied.stderr);
	assert.match(applied.stdout, /configmap\/smoke created/);
	const got = await kube.kubectl(["get", "configmap", "smoke", "-o", "jsonpath={.data.greeting}"]);
	assert.equal(got.code, 0, got.stderr);
	assert.equal(got.stdout, "hello-kube");
	const version = await kube.kubectl(["version", "-o", "json"]);
	assert.equal(JSON.parse(version.stdout).serverVersion.gitVersion, "v1.33.13");
});

test("a TokenRequest token verifies against the served JWKS", async () => {
	const token = await kube.serviceAccountToken("ci", "deployer", { audiences: ["drawbridge"], expirationSeconds: 600 });
	// Anonymous discovery, as a relying party would do it (trusting the test CA for TLS).
	const disc = await kube.request<{ issuer: string; jwks_uri: string }>("GET", "/.well-known/openid-configuration", undefined, { token: "" });
	assert.equal(disc.status, 200, disc.text);
	assert.equal(disc.body.issuer, kube.serviceAccountIssuer);
	const jwks = await kube.request<{ keys: object[] }>("GET", "/openid/v1/jwks", undefined, {
		token: "",
		accept: "application/jwk-set+json",
	});
	assert.equal(jwks.status, 200, jwks.text);
	const { payload } = await jwtVerify(token, createLocalJWKSet(jwks.body as never), {
		issuer: kube.serviceAccountIssuer,
		audience: "drawbridge",
	});
	assert.equal(payload.sub, "system:serviceaccount:ci:deployer");
	assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 600);
	// The token is also accepted by the API server itself (TokenReview).
	const review = await kube.request<{ status: { authenticated?: boolean; user?: { username?: string } } }>(
		"POST",
		"/apis/authentication.k8s.io/v1/tokenreviews",
		{ apiVersion: "authentication.k8s.io/v1", kind: "TokenReview", spec: { token, audiences: ["drawbridge"] } },
	);
	assert.equal(review.body.status.authenticated, true, review.text);
	assert.equal(review.body.status.user?.username, "system:serviceaccount:ci:deployer");
	assert.equal(decodeJwt(token).iss, kube.serviceAccountIssuer);
	// Not valid for another audience.
	await assert.rejects(jwtVerify(token, createLocalJWKSet(jwks.body as never), { audience: "someone-else" }));
});

test("RBAC is enforced: a service account without bindings cannot list pods", async () => {
	const token = await kube.serviceAccountToken("ci", "nobody");
	const r = await kube.request("GET", "/api/v1/namespaces/default/pods", undefined, { token });
	assert.equal(r.status, 403);
});
