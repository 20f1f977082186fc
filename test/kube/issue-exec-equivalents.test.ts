/**
 * Red-team regressions: ways to run code in a container, or to mint a credential that outlives the
 * grant, that stepped around a guardrail on `pods/exec` or came with a wildcard grant. Sent through
 * the real gateway to a real kube-apiserver whose RBAC gives the agents cluster-admin, so whatever
 * the gateway lets through takes effect (gateway/kube/README.md, "Running code and minting
 * credentials").
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { type KubeListener, startKubeListener } from "../../gateway/kube/listener.ts";
import { issueCert, type KubeHandle, startKube } from "../env/index.ts";
import { approvalService, makeBundle, MemoryRecorder, storeWith, type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";
import { httpsText, kubeConnection, kubeCredentials, userGrant } from "./fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
const recorder = new MemoryRecorder();


interface Reply {
	status: number;
	text: string;
	drawbridge: boolean;
}

async function send(user: string, method: string, path: string, opts: { body?: string; headers?: Record<string, string> } = {}): Promise<Reply> {
	const token = await issuer.token(user, { groups: ["agents"] });
	return httpsText(
		{
			hostname: "127.0.0.1",
			port: gw.address.port,
			method,
			path: `/k8s/cluster-prod${path}`,
			ca: kube.caPem,
			headers: { authorization: `Bearer ${token}`, ...opts.headers },
		},
		opts.body,
	);
}

const WS = {
	connection: "Upgrade",
	upgrade: "websocket",
	"sec-websocket-version": "13",
	"sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
	"sec-websocket-protocol": "v5.channel.k8s.io",
};

const DEBUG_CONTAINER = JSON.stringify({
	spec: { ephemeralContainers: [{ name: "debugger", image: "example.invalid/busybox:1", command: ["sh"], stdin: true, tty: true }] },
});

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	await kube.createNamespace("payments");
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	const pod = await kube.request("POST", "/api/v1/namespaces/payments/pods", {
		apiVersion: "v1",
		kind: "Pod",
		metadata: { name: "api" },
		spec: { containers: [{ name: "api", image: "example.invalid/api:1" }] },
	});
	assert.equal(pod.status, 201);
	const sa = await kube.request("POST", "/api/v1/namespaces/payments/serviceaccounts", { apiVersion: "v1", kind: "ServiceAccount", metadata: { name: "deployer" } });
	assert.equal(sa.status, 201);
	const cert = await issueCert(kube.ca, { cn: "drawbridge-gateway", ips: ["127.0.0.1"], dns: ["localhost"], name: "gateway-kube-exec-equivalents" });
	const connection = kubeConnection(kube);
	const store = storeWith(
		makeBundle(issuer, {
			connections: [connection],
			grants: [
				userGrant("dev", { namespaces: ["payments"], verbs: ["*"], resources: ["*"] }),
				userGrant("podsall", { namespaces: ["payments"], verbs: ["*"], resources: ["pods", "pods/*", "serviceaccounts/*"] }),
				userGrant("admin", { namespaces: ["*"], verbs: ["*"], resources: ["*"] }),
				userGrant("minter", { namespaces: ["payments"], verbs: ["create"], resources: ["serviceaccounts/token"] }),
			],
			guardrailPolicies: [
				{
					key: "ops/kube-prod",
					selector: { matchLabels: { env: "prod" } },
					rules: [{ name: "no-exec", action: "block", kubernetes: { verbs: ["create"], resources: ["pods/exec"] } }],
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

describe("exec equivalents under a guardrail that blocks pods/exec", () => {
	test("control: exec itself is blocked, reading pods is not", async () => {
		const r = await send("dev", "POST", "/api/v1/namespaces/payments/pods/api/exec?command=id&stdout=1", { headers: WS });
		assert.equal(r.status, 403, r.text);
		assert.match(r.text, /no-exec/);
		assert.equal((await send("dev", "GET", "/api/v1/namespaces/payments/pods")).status, 200);
		assert.equal((await send("dev", "GET", "/api/v1/namespaces/payments/pods/api/ephemeralcontainers")).status, 200);
	});

	test("adding an ephemeral (debug) container is refused like exec; the pod is unchanged", async () => {
		for (const [user, method, type] of [
			["dev", "PATCH", "application/strategic-merge-patch+json"],
			["podsall", "PATCH", "application/merge-patch+json"],
		] as const) {
			const r = await send(user, method, "/api/v1/namespaces/payments/pods/api/ephemeralcontainers", {
				body: DEBUG_CONTAINER,
				headers: { "content-type": type },
			});
			assert.equal(r.status, 403, `${user}: ${r.text}`);
			assert.ok(r.drawbridge, r.text);
			assert.match(r.text, /no-exec/);
		}
		const put = await send("dev", "PUT", "/api/v1/namespaces/payments/pods/api/ephemeralcontainers", {
			body: JSON.stringify({ apiVersion: "v1", kind: "Pod", metadata: { name: "api", namespace: "payments" } }),
			headers: { "content-type": "application/json" },
		});
		assert.equal(put.status, 403, put.text);
		const pod = await kube.request<{ spec: { ephemeralContainers?: unknown[] } }>("GET", "/api/v1/namespaces/payments/pods/api");
		assert.equal(pod.body.spec.ephemeralContainers, undefined);
	});

	test("attach (kubectl debug -it, kubectl attach) is refused like exec", async () => {
		for (const method of ["GET", "POST"]) {
			const r = await send("dev", method, "/api/v1/namespaces/payments/pods/api/attach?stdin=1&stdout=1&tty=1", { headers: WS });
			assert.equal(r.status, 403, `${method}: ${r.text}`);
			assert.ok(r.drawbridge, r.text);
			assert.match(r.text, /no-exec/);
		}
	});

	test("nodes/proxy (the kubelet's /run, /exec, /attach, /portForward) is refused like exec", async () => {
		for (const [method, path, headers] of [
			["POST", "/api/v1/nodes/n1/proxy/run/payments/api/api?cmd=id", {}],
			["GET", "/api/v1/nodes/n1/proxy/exec/payments/api/api?command=id&output=1", WS],
			["POST", "/api/v1/nodes/n1/proxy/attach/payments/api/api?output=1", {}],
			["GET", "/api/v1/nodes/n1/proxy/portForward/payments/api?port=80", WS],
			["GET", "/api/v1/nodes/n1/proxy/pods", {}],
		] as const) {
			const r = await send("admin", method, path, { headers });
			assert.equal(r.status, 403, `${method} ${path}: ${r.text}`);
			assert.ok(r.drawbridge, r.text);
			assert.match(r.text, /no-exec/);
		}
	});
});

describe("credentials that outlive the grant need the grant to name them", () => {
	const TOKEN_REQUEST = JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "TokenRequest", spec: { expirationSeconds: 86400 } });

	test("serviceaccounts/token (TokenRequest) is not covered by '*' or 'serviceaccounts/*'", async () => {
		for (const user of ["dev", "podsall", "admin"]) {
			const r = await send(user, "POST", "/api/v1/namespaces/payments/serviceaccounts/deployer/token", {
				body: TOKEN_REQUEST,
				headers: { "content-type": "application/json" },
			});
			assert.equal(r.status, 403, `${user}: ${r.text}`);
			assert.ok(r.drawbridge, r.text);
			assert.doesNotMatch(r.text, /"token":"ey/);
			assert.match(r.text, /serviceaccounts\/token/);
		}
		// A grant that names it explicitly may (RBAC still decides).
		const ok = await send("minter", "POST", "/api/v1/namespaces/payments/serviceaccounts/deployer/token", {
			body: TOKEN_REQUEST,
			headers: { "content-type": "application/json" },
		});
		assert.equal(ok.status, 201, ok.text);
	});

	test("approving a CertificateSigningRequest is not covered by '*'", async () => {
		const r = await send("admin", "PUT", "/apis/certificates.k8s.io/v1/certificatesigningrequests/agent-csr/approval", {
			body: "{}",
			headers: { "content-type": "application/json" },
		});
		assert.equal(r.status, 403, r.text);
		assert.ok(r.drawbridge, r.text);
		assert.match(r.text, /certificatesigningrequests\/approval/);
	});
});
