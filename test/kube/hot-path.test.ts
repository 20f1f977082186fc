/**
 * What the Kubernetes data path's per-request shortcuts must never skip (gateway/kube/listener.ts):
 * - the token → identity cache is keyed by the whole token and never outlives the token's `exp`;
 * - the AbortSignal an approval wait gets is created only for requests that need approval, and a
 *   client leaving while its request is held still cancels the ApprovalRequest.
 * Real kube-apiserver (test/env), a clock shared by the bundle store and the token verifier.
 */
import assert from "node:assert/strict";
import https from "node:https";
import { after, before, test } from "node:test";
import { generateKeyPair, SignJWT } from "jose";
import { BundleStore } from "../../gateway/config/store.ts";
import { type KubeListener, startKubeListener } from "../../gateway/kube/listener.ts";
import { issueCert, type KubeHandle, startKube } from "../env/index.ts";
import { approvalService, MemoryRecorder, makeBundle, tokenIssuer, waitUntil } from "../ssh/fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let token: (sub: string, ttlSec: number) => Promise<string>;
let skewMs = 0;
const clock = () => new Date(Date.now() + skewMs);
const approvals = approvalService();

before(async () => {
	kube = await startKube();
	const issuer = await tokenIssuer();
	token = (sub, ttlSec) => issuer.token(sub, { ttlSec });
	const cert = await issueCert(kube.ca, { cn: "gateway-hot-path", ips: ["127.0.0.1"], name: "gateway-hot-path" });
	const store = new BundleStore({ now: clock, verifier: { now: clock } });
	store.update(
		makeBundle(issuer, {
			connections: [
				{
					key: "ops/cluster",
					name: "cluster",
					namespace: "ops",
					type: "kubernetes",
					labels: {},
					host: "127.0.0.1",
					port: kube.port,
					credentialRef: "kube",
					kubernetes: { server: kube.url, caPem: kube.caPem },
				},
			],
			grants: [
				{
					key: "ops/kim",
					name: "kim",
					namespace: "ops",
					connection: "cluster",
					subjects: [{ kind: "User", name: "kim" }],
					notBefore: new Date(Date.now() - 60_000).toISOString(),
					expiresAt: new Date(Date.now() + 86_400_000).toISOString(),
					kubernetes: { namespaces: ["*"], verbs: ["get", "list", "delete"], resources: ["*"] },
					approvers: { subjects: [{ kind: "User", name: "sam" }], minApprovals: 1 },
					origin: {},
				},
			],
			guardrailPolicies: [
				{
					key: "ops/g",
					selector: {},
					rules: [{ name: "approve-cm-delete", action: "requireApproval", kubernetes: { verbs: ["delete"], resources: ["configmaps"] } }],
				},
			],
			credentials: { kube: { type: "kubernetes", clientCertPem: kube.adminCertPem, clientKeyPem: kube.adminKeyPem } },
		}),
	);
	gw = await startKubeListener({ store, recorder: new MemoryRecorder(), approvals, tls: { certPem: cert.certPem, keyPem: cert.keyPem } });
});

after(async () => {
	await gw?.close();
	await kube?.stop();
});

function call(method: string, path: string, bearer: string): Promise<{ status: number; body: string }> {
	return new Promise((resolve, reject) => {
		const req = https.request(`${gw.url}/k8s/cluster${path}`, { method, ca: kube.caPem, headers: { authorization: `Bearer ${bearer}` } }, (res) => {
			let body = "";
			res.setEncoding("utf8");
			res.on("data", (c: string) => (body += c));
			res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
		});
		req.on("error", reject);
		req.end();
	});
}

test("a cached identity is keyed by the whole token and never outlives the token's exp", async () => {
	const t = await token("kim", 120);
	// First request verifies and caches; the second is served from the cache.
	assert.equal((await call("GET", "/version", t)).status, 200);
	assert.equal((await call("GET", "/version", t)).status, 200);

	// Same header and payload, signature by another key: a cache keyed by anything less than the whole
	// token (subject, payload, a suffix) would let it through.
	const { privateKey } = await generateKeyPair("ES256");
	const [header, payload] = t.split(".");
	const forged = await new SignJWT(JSON.parse(Buffer.from(payload!, "base64url").toString()))
		.setProtectedHeader(JSON.parse(Buffer.from(header!, "base64url").toString()))
		.sign(privateKey);
	const twin = `${header}.${payload}.${forged.split(".")[2]}`;
	assert.notEqual(twin, t);
	const refused = await call("GET", "/version", twin);
	assert.equal(refused.status, 401, refused.body);
	assert.equal((await call("GET", "/version", t)).status, 200, "the genuine token is still served");

	// Past exp (and the issuer's 30 s clock tolerance) the cached entry must not answer.
	skewMs = 120_000 + 31_000;
	try {
		const late = await call("GET", "/version", t);
		assert.equal(late.status, 401, late.body);
		assert.match(late.body, /expired|exp/i);
	} finally {
		skewMs = 0;
	}
});

test("a client leaving while its request waits for approval cancels the ApprovalRequest", async () => {
	const t = await token("kim", 600);
	const req = https.request(`${gw.url}/k8s/cluster/api/v1/namespaces/default/configmaps/x`, {
		method: "DELETE",
		ca: kube.caPem,
		headers: { authorization: `Bearer ${t}` },
	});
	req.on("error", () => {});
	req.end();
	await waitUntil("an ApprovalRequest pending", () => pendingCount() > 0);
	const [held] = await approvals.list({ phase: "Pending" });
	assert.ok(held);
	req.destroy();
	await waitUntil("the ApprovalRequest cancelled", () => phaseOf(held.id) === "Cancelled");
});

let snapshot: { id: string; phase: string }[] = [];
const poll = setInterval(() => {
	void approvals.list().then((l) => {
		snapshot = l.map((r) => ({ id: r.id, phase: r.phase }));
	});
}, 50);
poll.unref();
const pendingCount = () => snapshot.filter((r) => r.phase === "Pending").length;
const phaseOf = (id: string) => snapshot.find((r) => r.id === id)?.phase;
