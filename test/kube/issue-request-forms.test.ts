/**
 * Red-team round on the Kubernetes request classifier and implicit deletes, through the real gateway
 * to a real kube-apiserver whose RBAC gives the agents cluster-admin (whatever the gateway lets
 * through takes effect). Each finding is compared with the apiserver answering the same request
 * directly:
 * 1. `GET …/secrets/NAME?watch=1` is a plain get to the apiserver (it returns the Secret: `?watch`
 *    makes only a name-less GET a watch) but was a watch to the gateway, so a rule blocking `get
 *    secrets` and a grant without `get` were stepped around;
 * 1b. a rule blocking `get secrets` did not match their `list` or `watch`, which return the same
 *    Secrets whole (a watch as ADDED events);
 * 2. a StatefulSet's `persistentVolumeClaimRetentionPolicy: Delete` hands its PersistentVolumeClaims
 *    to the StatefulSet controller, which deletes them on scale-down or when the StatefulSet goes:
 *    a rule against deleting claims in prod was stepped around by a patch;
 * 3. creating a Secret of type `kubernetes.io/service-account-token` under a grant that may write
 *    Secrets: the tokens controller fills it with a token of the service account it names (any in
 *    the namespace), which never expires and works without the gateway: TokenRequest by another
 *    name, which no wildcard grants;
 * 3b. a CertificateSigningRequest for the kubelet client signer under a wildcard grant: the
 *    controller manager approves it by itself when the requester's RBAC allows
 *    certificatesigningrequests/nodeclient (cluster-admin does), and the certificate outlives the grant;
 * 4. a write sent with `Connection: Upgrade` hung until the apiserver gave up (its body is never
 *    relayed before a 101, so it was never checked either), and a non-101 answer that carried a
 *    Content-Length reached the client with two;
 * and what was tried and holds (kept as regressions): path spellings, duplicate query keys,
 * impersonation headers and the WebSocket bearer subprotocol, HTTP/2.
 */
import assert from "node:assert/strict";
import tls from "node:tls";
import { after, before, describe, test } from "node:test";
import { bodyHandsOver, bodyMintsToken } from "../../gateway/kube/handover.ts";
import { type KubeListener, startKubeListener } from "../../gateway/kube/listener.ts";
import { parseKubeRequest } from "../../gateway/kube/request.ts";
import { deleteEquivalents, mayHandOver, mintingWrite } from "../../gateway/policy/kube.ts";
import { issueCert, type KubeHandle, run, startKube } from "../env/index.ts";
import { approvalService, makeBundle, MemoryRecorder, storeWith, type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";
import { httpsText, kubeConnection, kubeCredentials, userGrant } from "./fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
const recorder = new MemoryRecorder();
const SECRET_VALUE = "cHJvZC1jYW5hcnktOWIx"; // base64 of the prod Secret's value

interface Answer {
	status: number;
	text: string;
	drawbridge: boolean;
}

/** One request as `user` through the gateway, or with the admin token straight to the apiserver. */
async function send(
	user: string,
	method: string,
	path: string,
	opts: { body?: string; headers?: Record<string, string>; direct?: boolean; timeoutMs?: number; groups?: string[] } = {},
): Promise<Answer> {
	const token = opts.direct ? kube.adminToken : await issuer.token(user, { groups: opts.groups ?? ["agents"] });
	return httpsText(
		{
			hostname: "127.0.0.1",
			port: opts.direct ? kube.port : gw.address.port,
			method,
			// Options, not a URL: nothing normalises the path on the way.
			path: opts.direct ? path : `/k8s/cluster-prod${path}`,
			ca: kube.caPem,
			headers: {
				authorization: `Bearer ${token}`,
				...(opts.body ? { "content-type": "application/merge-patch+json" } : {}),
				...opts.headers,
			},
		},
		opts.body,
		opts.timeoutMs ?? 20_000,
	);
}

const STATEFULSET = {
	apiVersion: "apps/v1",
	kind: "StatefulSet",
	metadata: { name: "db" },
	spec: {
		serviceName: "db",
		replicas: 1,
		selector: { matchLabels: { app: "db" } },
		template: { metadata: { labels: { app: "db" } }, spec: { containers: [{ name: "db", image: "example.invalid/db:1" }] } },
		volumeClaimTemplates: [{ metadata: { name: "data" }, spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } } }],
	},
};

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	for (const ns of ["payments", "prod"]) await kube.createNamespace(ns);
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	const secret = await kube.kubectl(["-n", "prod", "create", "secret", "generic", "prod-db", "--from-literal=password=prod-canary-9b1"]);
	assert.equal(secret.code, 0, secret.stderr);
	for (const ns of ["prod", "payments"]) {
		const sts = await kube.request("POST", `/apis/apps/v1/namespaces/${ns}/statefulsets`, STATEFULSET);
		assert.equal(sts.status, 201, sts.text);
	}
	const cert = await issueCert(kube.ca, { cn: "drawbridge-gateway", ips: ["127.0.0.1"], dns: ["localhost"], name: "gateway-kube-forms" });
	const store = storeWith(
		makeBundle(issuer, {
			connections: [kubeConnection(kube)],
			grants: [
				userGrant("admin", { namespaces: ["*"], verbs: ["*"], resources: ["*"] }),
				// May list and watch prod's objects, never get one by name.
				userGrant("watcher", { namespaces: ["prod"], verbs: ["list", "watch"], resources: ["configmaps", "secrets"] }),
				// No RBAC at all in the cluster (not in the agents group).
				userGrant("nobody", { namespaces: ["prod"], verbs: ["list", "watch"], resources: ["configmaps"] }),
				// May ask for kubelet client certificates on purpose.
				userGrant("node-admin", { namespaces: ["*"], verbs: ["*"], resources: ["certificatesigningrequests", "certificatesigningrequests/nodeclient"] }),
				// Names the TokenRequest subresource: may mint service-account credentials on purpose.
				userGrant("minter", { namespaces: ["prod"], verbs: ["*"], resources: ["secrets", "serviceaccounts/token"] }),
			],
			guardrailPolicies: [
				{
					key: "ops/kube-prod",
					selector: { matchLabels: { env: "prod" } },
					rules: [
						{ name: "no-secret-reads", action: "block", kubernetes: { verbs: ["get"], resources: ["secrets"], namespaces: ["prod"] } },
						{ name: "keep-prod-data", action: "block", kubernetes: { verbs: ["delete"], resources: ["persistentvolumeclaims"], namespaces: ["prod"] } },
					],
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

describe("found and fixed", () => {
	test("GET secrets/NAME?watch=1 is a get (the apiserver returns the Secret): the get rule and the grant's verbs apply", async () => {
		const path = "/api/v1/namespaces/prod/secrets/prod-db";
		for (const q of ["?watch=1", "?watch=true&timeoutSeconds=1", "?watch"]) {
			// The apiserver's answer: the object itself, not a watch stream.
			const direct = await send("admin", "GET", `${path}${q}`, { direct: true });
			assert.equal(direct.status, 200, direct.text);
			assert.match(direct.text, /^\{"kind":"Secret"/);
			// On the old code both were 200 with the Secret (a watch to the gateway: no rule on get).
			const blocked = await send("admin", "GET", `${path}${q}`);
			assert.equal(blocked.status, 403, `${q}: ${blocked.text}`);
			assert.match(blocked.text, /get secrets prod-db in namespace prod: blocked by guardrail rule \\"no-secret-reads\\"/);
			const scoped = await send("watcher", "GET", `${path}${q}`);
			assert.equal(scoped.status, 403, `${q}: ${scoped.text}`);
			assert.match(scoped.text, /grant \\"ops\/watcher\\" does not allow get secrets prod-db/);
			for (const r of [blocked, scoped]) assert.doesNotMatch(r.text, new RegExp(SECRET_VALUE));
		}
		// The watch forms stay watches (and the watcher may watch): /watch/ prefix, fieldSelector.
		const w = await send("watcher", "GET", "/api/v1/namespaces/prod/configmaps?watch=1&timeoutSeconds=1");
		assert.equal(w.status, 200, w.text);
		const byName = await send("watcher", "GET", "/api/v1/watch/namespaces/prod/configmaps/kube-root-ca.crt?timeoutSeconds=1");
		assert.equal(byName.status, 200, byName.text);
	});

	test("a rule on get secrets matches their list and watch: both return the Secrets whole", async () => {
		for (const q of ["", "?watch=1&timeoutSeconds=1", "?watch=1&timeoutSeconds=1&fieldSelector=metadata.name%3Dprod-db", "?labelSelector=x!%3Dy"]) {
			const path = `/api/v1/namespaces/prod/secrets${q}`;
			// The apiserver's answer: the Secret's value, in a SecretList or an ADDED event.
			const direct = await send("admin", "GET", path, { direct: true });
			assert.match(direct.text, new RegExp(SECRET_VALUE), path);
			// On the old code: the same answer through the gateway (the rule names get only).
			for (const user of ["admin", "watcher"]) {
				const r = await send(user, "GET", path);
				assert.equal(r.status, 403, `${user} ${path}: ${r.text}`);
				assert.match(r.text, /\((a list|a watch) returns (every object|the objects) it matches like (get|list)\): blocked by guardrail rule \\"no-secret-reads\\"/);
				assert.doesNotMatch(r.text, new RegExp(SECRET_VALUE));
			}
		}
		// Reads of other resources, and of Secrets elsewhere, are untouched.
		assert.equal((await send("watcher", "GET", "/api/v1/namespaces/prod/configmaps")).status, 200);
		assert.equal((await send("admin", "GET", "/api/v1/namespaces/payments/secrets")).status, 200);
	});

	test("persistentVolumeClaimRetentionPolicy Delete on a StatefulSet is matched as deleting its claims", async () => {
		const body = JSON.stringify({ spec: { persistentVolumeClaimRetentionPolicy: { whenDeleted: "Retain", whenScaled: "Delete" } } });
		// On the old code: 200, the policy set; scaling to 0 then makes the StatefulSet controller delete
		// data-db-0 (and, with a reclaim policy Delete, its volume). The test control plane runs no
		// controllers, so what is shown is the apiserver taking the field.
		const r = await send("admin", "PATCH", "/apis/apps/v1/namespaces/prod/statefulsets/db", { body });
		assert.equal(r.status, 403, r.text);
		assert.ok(r.drawbridge, r.text);
		assert.match(r.text, /persistentVolumeClaimRetentionPolicy.*delete persistentvolumeclaims.*keep-prod-data/);
		const sts = await kube.request<{ spec: { persistentVolumeClaimRetentionPolicy?: Record<string, string> } }>(
			"GET",
			"/apis/apps/v1/namespaces/prod/statefulsets/db",
		);
		assert.notEqual(sts.body.spec.persistentVolumeClaimRetentionPolicy?.["whenScaled"], "Delete");
		// A full update (kubectl replace) and a YAML apply patch say the same.
		const put = await send("admin", "PUT", "/apis/apps/v1/namespaces/prod/statefulsets/db", {
			body: JSON.stringify({ ...STATEFULSET, spec: { ...STATEFULSET.spec, persistentVolumeClaimRetentionPolicy: { whenDeleted: "Delete" } } }),
			headers: { "content-type": "application/json" },
		});
		assert.equal(put.status, 403, put.text);
		const apply = await send("admin", "PATCH", "/apis/apps/v1/namespaces/prod/statefulsets/db?fieldManager=agent&force=true", {
			body: "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db}\nspec:\n  persistentVolumeClaimRetentionPolicy: &p\n    whenDeleted: Delete\n",
			headers: { "content-type": "application/apply-patch+yaml" },
		});
		assert.equal(apply.status, 403, apply.text);
		// Creating one with the policy: its claims (and any left by an earlier StatefulSet of that name) go the same way.
		const create = (name: string, whenDeleted: string) =>
			send("admin", "POST", "/apis/apps/v1/namespaces/prod/statefulsets", {
				body: JSON.stringify({ ...STATEFULSET, metadata: { name }, spec: { ...STATEFULSET.spec, persistentVolumeClaimRetentionPolicy: { whenDeleted } } }),
				headers: { "content-type": "application/json" },
			});
		const created = await create("db2", "Delete");
		assert.equal(created.status, 403, created.text);
		const retained = await create("db3", "Retain");
		assert.equal(retained.status, 201, retained.text);
		// Outside prod nothing protects claims: the same patch goes through, and so does Retain in prod.
		const payments = await send("admin", "PATCH", "/apis/apps/v1/namespaces/payments/statefulsets/db", { body });
		assert.equal(payments.status, 200, payments.text);
		const replicas = await send("admin", "PATCH", "/apis/apps/v1/namespaces/prod/statefulsets/db", { body: JSON.stringify({ spec: { replicas: 2 } }) });
		assert.equal(replicas.status, 200, replicas.text);
	});
});

describe("found and fixed: service-account token Secrets", () => {
	const tokenSecret = (name: string) =>
		JSON.stringify({
			apiVersion: "v1",
			kind: "Secret",
			metadata: { name, annotations: { "kubernetes.io/service-account.name": "default" } },
			type: "kubernetes.io/service-account-token",
		});
	const json = { "content-type": "application/json" };

	test("a token Secret is refused under a grant that does not name serviceaccounts/token, in every write form", async () => {
		// On the old code: 201 (the apiserver takes it; in a cluster the tokens controller then adds a
		// token of the default service account; the test control plane runs no controllers).
		const post = await send("admin", "POST", "/api/v1/namespaces/prod/secrets", { body: tokenSecret("sa-token"), headers: json });
		assert.equal(post.status, 403, post.text);
		assert.ok(post.drawbridge, post.text);
		assert.match(post.text, /does not allow a Secret of type kubernetes.io\/service-account-token in namespace prod.*serviceaccounts\/token/);
		const escaped = tokenSecret("sa-token").replace("service-account-token", "service\\u002daccount-token").replace("service-account.name", "service\\u002daccount.name");
		assert.doesNotMatch(escaped, /service-account/); // JSON escapes only: the apiserver decodes them
		const esc = await send("admin", "POST", "/api/v1/namespaces/prod/secrets", { body: escaped, headers: json });
		assert.equal(esc.status, 403, esc.text);
		// Server-side apply creates a missing object.
		const apply = await send("admin", "PATCH", "/api/v1/namespaces/prod/secrets/sa-token?fieldManager=agent", {
			body: 'apiVersion: v1\nkind: Secret\nmetadata:\n  name: sa-token\n  annotations: {"kubernetes.io/service-\\x61ccount.name": default}\ntype: "kubernetes.io/service-\\x61ccount-token"\n',
			headers: { "content-type": "application/apply-patch+yaml" },
		});
		assert.equal(apply.status, 403, apply.text);
		assert.equal((await kube.request("GET", "/api/v1/namespaces/prod/secrets/sa-token")).status, 404);
	});

	test("ordinary Secrets are written as before; a grant naming serviceaccounts/token may create token Secrets", async () => {
		const opaque = await send("admin", "POST", "/api/v1/namespaces/prod/secrets", {
			body: JSON.stringify({ apiVersion: "v1", kind: "Secret", metadata: { name: "app-config" }, stringData: { url: "postgres://db" } }),
			headers: json,
		});
		assert.equal(opaque.status, 201, opaque.text);
		// A patch answers with the whole Secret, so prod's no-secret-reads rule refuses it
		// (test/kube/issue-write-responses.test.ts); where no rule hides Secrets it is written as before.
		const patch = await send("admin", "PATCH", "/api/v1/namespaces/prod/secrets/app-config", { body: JSON.stringify({ stringData: { url: "postgres://db2" } }) });
		assert.equal(patch.status, 403, patch.text);
		const other = await send("admin", "POST", "/api/v1/namespaces/payments/secrets", {
			body: JSON.stringify({ apiVersion: "v1", kind: "Secret", metadata: { name: "app-config" }, stringData: { url: "postgres://db" } }),
			headers: json,
		});
		assert.equal(other.status, 201, other.text);
		const patched = await send("admin", "PATCH", "/api/v1/namespaces/payments/secrets/app-config", { body: JSON.stringify({ stringData: { url: "postgres://db2" } }) });
		assert.equal(patched.status, 200, patched.text);
		const minted = await send("minter", "POST", "/api/v1/namespaces/prod/secrets", { body: tokenSecret("minted"), headers: json });
		assert.equal(minted.status, 201, minted.text);
	});
});

describe("found and fixed: kubelet client certificate requests", () => {
	/** A PEM certificate request for `subject`, from openssl. */
	async function csrPem(subject: string): Promise<string> {
		const r = await run("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "/dev/null", "-subj", subject]);
		assert.equal(r.code, 0, r.stderr);
		return r.stdout;
	}
	const csr = async (name: string, signerName: string, subject: string) =>
		JSON.stringify({
			apiVersion: "certificates.k8s.io/v1",
			kind: "CertificateSigningRequest",
			metadata: { name },
			spec: { request: Buffer.from(await csrPem(subject)).toString("base64"), signerName, usages: ["digital signature", "client auth"] },
		});
	const json = { "content-type": "application/json" };

	test("a kubelet client CSR needs a grant that names certificatesigningrequests/nodeclient", async () => {
		// On the old code: 201 under the wildcard grant. In a cluster the controller manager then approves
		// it by itself (the requester, the impersonated agent, has nodeclient in RBAC as cluster-admin)
		// and signs a system:node client certificate that outlives the grant; the test control plane runs
		// no controllers.
		const body = await csr("node-evil", "kubernetes.io/kube-apiserver-client-kubelet", "/O=system:nodes/CN=system:node:evil");
		const r = await send("admin", "POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", { body, headers: json });
		assert.equal(r.status, 403, r.text);
		assert.ok(r.drawbridge, r.text);
		assert.match(r.text, /does not allow a CertificateSigningRequest for signer kubernetes.io\/kube-apiserver-client-kubelet.*certificatesigningrequests\/nodeclient/);
		assert.equal((await kube.request("GET", "/apis/certificates.k8s.io/v1/certificatesigningrequests/node-evil")).status, 404);
		const named = await send("node-admin", "POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", { body, headers: json });
		assert.equal(named.status, 201, named.text);
		// A CSR someone must approve (the approval is named-only already) is created as before.
		const client = await csr("client-cert", "kubernetes.io/kube-apiserver-client", "/CN=admin");
		const c = await send("admin", "POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests", { body: client, headers: json });
		assert.equal(c.status, 201, c.text);
	});
});

describe("found and fixed: upgrade requests", () => {
	const WS = {
		connection: "Upgrade",
		upgrade: "websocket",
		"sec-websocket-version": "13",
		"sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
	};

	test("a write sent as an upgrade request is refused at once (it hung until the apiserver gave up, its body never checked)", async () => {
		// On the old code: no answer (the gateway forwarded Content-Length without the body, which it
		// relays only after a 101; the apiserver waited for it). The body's ownerReferences went unread.
		const body = JSON.stringify({ metadata: { ownerReferences: [{ apiVersion: "v1", kind: "ConfigMap", name: "gone", uid: "0" }] } });
		for (const upgrade of [WS, { connection: "Upgrade", upgrade: "SPDY/3.1" }]) {
			const started = Date.now();
			const r = await send("admin", "PATCH", "/apis/apps/v1/namespaces/payments/statefulsets/db", { body, headers: upgrade, timeoutMs: 10_000 });
			assert.equal(r.status, 400, r.text);
			assert.ok(r.drawbridge, r.text);
			assert.match(r.text, /upgrade request .* carries no body/);
			assert.ok(Date.now() - started < 5_000);
		}
	});

	test("an upgrade the apiserver does not take is relayed as one parseable response (it had two Content-Length headers)", async () => {
		// The apiserver answers a list with Upgrade headers as a plain list (200, Content-Length).
		const direct = await send("admin", "GET", "/api/v1/namespaces/payments/configmaps", { direct: true, headers: WS });
		assert.equal(direct.status, 200, direct.text);
		// On the old code: "Parse Error: Duplicate Content-Length" in the client.
		const r = await send("admin", "GET", "/api/v1/namespaces/payments/configmaps", { headers: WS });
		assert.equal(r.status, 200, r.text);
		assert.match(r.text, /"kind":"ConfigMapList"/);
	});
});

describe("tried and holding", () => {
	test("path spellings: the gateway refuses or classifies them as the apiserver does", async () => {
		const base = "/api/v1/namespaces/prod/secrets";
		for (const [p, status] of [
			[`${base}//prod-db`, 400], // empty segment
			[`${base}%2Fprod-db`, 400], // the apiserver decodes it to secrets/prod-db
			[`/api/v1/namespaces/prod/./secrets/prod-db`, 400],
			[`${base}/prod-db/`, 403], // the same object on both sides: the get rule
			[`${base}/prod-db?x#frag`, 400],
		] as const) {
			const r = await send("admin", "GET", p);
			assert.equal(r.status, status, `${p}: ${r.text}`);
			assert.ok(r.drawbridge, `${p}: ${r.text}`);
			assert.doesNotMatch(r.text, new RegExp(SECRET_VALUE));
		}
		// Other letter cases do not reach the object (404 from the apiserver, or refused first).
		for (const p of ["/API/v1/namespaces/prod/secrets/prod-db", "/api/v1/namespaces/prod/Secrets/prod-db"]) {
			const r = await send("admin", "GET", p);
			assert.ok(r.status === 404 || r.status === 403, `${p}: ${r.status} ${r.text}`);
			assert.doesNotMatch(r.text, new RegExp(SECRET_VALUE));
		}
	});

	test("duplicate query keys: the first watch value decides on both sides", async () => {
		for (const [q, kind] of [
			["watch=0&watch=1", "list"],
			["watch=1&watch=0", "watch"],
		] as const) {
			const direct = await send("admin", "GET", `/api/v1/namespaces/payments/configmaps?${q}&timeoutSeconds=1`, { direct: true });
			assert.equal(/"kind":"ConfigMapList"/.test(direct.text) ? "list" : "watch", kind, q);
			const r = await send("watcher", "GET", `/api/v1/namespaces/prod/configmaps?${q}&timeoutSeconds=1`);
			assert.equal(r.status, 200, r.text);
			assert.equal(/"kind":"ConfigMapList"/.test(r.text) ? "list" : "watch", kind, q);
		}
	});

	test("impersonation: Impersonate-* in any case (user, group, uid, extra) and a bearer token in the WebSocket subprotocol change nothing", async () => {
		const r = await send("admin", "POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", {
			body: JSON.stringify({ apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" }),
			headers: {
				"content-type": "application/json",
				"IMPERSONATE-USER": "system:admin",
				"impersonate-group": "system:masters",
				"Impersonate-Uid": "u-1",
				"Impersonate-Extra-Scopes": "all",
			},
		});
		assert.equal(r.status, 201, r.text);
		const who = (JSON.parse(r.text) as { status: { userInfo: { username: string; groups?: string[]; uid?: string; extra?: unknown } } }).status.userInfo;
		assert.equal(who.username, "admin");
		assert.deepEqual(who.groups?.sort(), ["agents", "system:authenticated"]);
		assert.equal(who.uid, undefined);
		assert.equal(who.extra, undefined);
		// The apiserver accepts `base64url.bearer.authorization.k8s.io.<token>` for browsers' WebSockets;
		// through the gateway its own credential authenticates first and the agent is impersonated.
		const adminToken = Buffer.from(kube.adminToken).toString("base64url");
		const ws = await send("nobody", "GET", "/api/v1/namespaces/prod/configmaps?watch=1&timeoutSeconds=1", {
			groups: [],
			headers: {
				connection: "Upgrade",
				upgrade: "websocket",
				"sec-websocket-version": "13",
				"sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
				"sec-websocket-protocol": `base64url.bearer.authorization.k8s.io.${adminToken}, base64.binary.k8s.io`,
			},
		});
		assert.equal(ws.status, 403, ws.text);
		assert.match(ws.text, /User \\"nobody\\" cannot watch resource \\"configmaps\\"/);
	});

	test("HTTP/2 is not offered: ALPN settles on http/1.1, so one request is one classified request", async () => {
		const s = tls.connect({ host: "127.0.0.1", port: gw.address.port, ALPNProtocols: ["h2", "http/1.1"], ca: kube.caPem, servername: "localhost" });
		await new Promise<void>((resolve, reject) => {
			s.once("secureConnect", resolve);
			s.once("error", reject);
		});
		assert.equal(s.alpnProtocol, "http/1.1");
		s.destroy();
	});
});

test("bodyHandsOver on a StatefulSet: a retention policy that says Delete, in any spelling; Retain throughout is not", () => {
	const j = "application/json";
	const yes: [string, string][] = [
		['{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenScaled":"Delete"}}}', "application/merge-patch+json"],
		['{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"\\u0044elete"}}}', "application/merge-patch+json"],
		['{"spec":{"persistentVolumeClaim\\u0052etentionPolicy":{"whenScaled":"Delete"}}}', "application/strategic-merge-patch+json"],
		// Duplicate keys: JSON.parse keeps the last, Go decodes both into one struct.
		['{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenScaled":"Delete"},"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Retain"}}}', j],
		['[{"op":"replace","path":"/spec/persistentVolumeClaimRetentionPolicy/whenScaled","value":"Delete"}]', "application/json-patch+json"],
		// The value comes from the object itself (an annotation set earlier).
		['[{"op":"copy","from":"/metadata/annotations/x","path":"/spec/persistentVolumeClaimRetentionPolicy/whenScaled"}]', "application/json-patch+json"],
		['spec:\n  persistentVolumeClaimRetentionPolicy:\n    whenScaled: "\\x44elete"\n', "application/apply-patch+yaml"],
		['spec:\n  "persistentVolumeClaim\\x52etentionPolicy": {whenDeleted: Delete}\n', "application/apply-patch+yaml"],
		['a: &d Delete\nspec:\n  persistentVolumeClaimRetentionPolicy: {whenScaled: *d}\n', "application/apply-patch+yaml"],
	];
	for (const [body, type] of yes) assert.equal(bodyHandsOver(Buffer.from(body), type, undefined, "statefulsets"), true, body);
	const no: [string, string][] = [
		['{"spec":{"persistentVolumeClaimRetentionPolicy":{"whenDeleted":"Retain","whenScaled":"Retain"},"replicas":3}}', j],
		// Scaling down to a count that is not zero (replicas 0 is a hand-over since round 10: issue-deletes-by-count).
		['{"spec":{"replicas":1}}', "application/merge-patch+json"],
		['[{"op":"remove","path":"/spec/persistentVolumeClaimRetentionPolicy"}]', "application/json-patch+json"],
	];
	for (const [body, type] of no) assert.equal(bodyHandsOver(Buffer.from(body), type, undefined, "statefulsets"), false, body);
	// Other resources are unchanged: the word alone means nothing on a Deployment.
	assert.equal(bodyHandsOver(Buffer.from(yes[0]![0]), "application/merge-patch+json", undefined, "deployments"), false);
	// The implied request: deleting the claims in the StatefulSet's namespace (creating one counts too).
	for (const [method, url] of [
		["PATCH", "/apis/apps/v1/namespaces/prod/statefulsets/db"],
		["PUT", "/apis/apps/v1/namespaces/prod/statefulsets/db"],
		["POST", "/apis/apps/v1/namespaces/prod/statefulsets"],
	] as const) {
		const req = parseKubeRequest(method, url);
		assert.equal(mayHandOver(req), true, url);
		const claims = deleteEquivalents({ ...req, handsOver: true }).find((i) => i.req.resource === "persistentvolumeclaims");
		assert.deepEqual([claims?.req.verb, claims?.req.namespace, claims?.req.name], ["delete", "prod", undefined], url);
	}
	assert.equal(mayHandOver(parseKubeRequest("POST", "/apis/apps/v1/namespaces/prod/deployments")), false);
	assert.equal(mayHandOver(parseKubeRequest("PATCH", "/apis/apps/v1/namespaces/prod/statefulsets/db/scale")), true); // a named write, as before
	assert.equal(deleteEquivalents({ ...parseKubeRequest("PATCH", "/apis/apps/v1/namespaces/prod/statefulsets/db/scale"), handsOver: true }).some((i) => i.req.resource === "persistentvolumeclaims"), false);
});

test("bodyMintsToken: the token type or the service-account annotation in any spelling; unreadable bodies count", () => {
	const yes: [string, string | undefined][] = [
		['{"type":"kubernetes.io/service-account-token"}', "application/json"],
		['{"type":"kubernetes.io/service\\u002Daccount-token"}', "application/json"],
		['{"metadata":{"annotations":{"kubernetes.io/service-account.name":"ci"}}}', "application/merge-patch+json"],
		['{"metadata":{"annotations":{"kubernetes.io/service-account.uid":"1"}}}', "application/strategic-merge-patch+json"],
		['type: "kubernetes.io/Service-\\x61ccount-Token"\n', "application/apply-patch+yaml"],
		['[{"op":"add","path":"/metadata/annotations/kubernetes.io~1service-account.name","value":"ci"}]', "application/json-patch+json"],
		["\u0000protobuf", "application/vnd.kubernetes.protobuf"],
		['{"type":"x"}', undefined],
		["{", "application/json"],
	];
	for (const [b, t] of yes) assert.equal(bodyMintsToken(Buffer.from(b), t, undefined), true, b);
	assert.equal(bodyMintsToken(Buffer.from('{"type":"x"}'), "application/json", "gzip"), true);
	for (const b of ['{"type":"Opaque","stringData":{"a":"b"}}', '{"data":{"k":"c2VydmljZS1hY2NvdW50LXRva2Vu"}}', ""]) {
		assert.equal(bodyMintsToken(Buffer.from(b), "application/json", undefined), false, b);
	}
	for (const [m, u, want] of [
		["POST", "/api/v1/namespaces/prod/secrets", true],
		["PATCH", "/api/v1/namespaces/prod/secrets/x", true],
		["PUT", "/api/v1/namespaces/prod/secrets/x", true],
		["DELETE", "/api/v1/namespaces/prod/secrets/x", false],
		["POST", "/apis/example.com/v1/namespaces/prod/secrets", false],
		["POST", "/api/v1/namespaces/prod/configmaps", false],
	] as const) {
		assert.equal(mintingWrite(parseKubeRequest(m, u))?.words.includes("service-account-token") === true, want, `${m} ${u}`);
	}
});
