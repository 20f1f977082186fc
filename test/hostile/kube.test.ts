/**
 * Hostile input on the Kubernetes data path, against a REAL kube-apiserver (test/env startKube):
 * - the JWT attack corpus as bearer tokens: every one refused with a Kubernetes Status (401, or 403
 *   for a valid token without a grant), the message never echoes the token, no crash;
 * - crafted request paths (dot segments, encoded slashes, NUL, malformed escapes, case, double
 *   slashes, watch prefixes, cluster-wide lists, encoded connection names, very long names) and
 *   agent-supplied impersonation headers: the agent's RBAC would allow reading configmaps in every
 *   namespace, its grant only `payments`; no response ever carries the `billing` marker;
 * - the kube-apiserver unreachable (connections reset, then refused) and back: clean 5xx Status
 *   during the outage, recovery after it, with no crash and no stale pooled connection failing.
 */
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import https from "node:https";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { BUNDLE_API_VERSION, type BundleConnection, type BundleGrant } from "../../gateway/config/bundle.ts";
import { sealBundle } from "../../gateway/config/canonical.ts";
import { BundleStore } from "../../gateway/config/store.ts";
import { type KubeListener, startKubeListener } from "../../gateway/kube/listener.ts";
import { StoreApprovalService } from "../../gateway/approvals/service.ts";
import { LocalApprovalStore } from "../../gateway/approvals/local-store.ts";
import { issueCert, type KubeHandle, printLogsOnFailure, startKube } from "../env/index.ts";
import { MemoryRecorder, waitFor } from "../faults/fixture.ts";
import { JWT_ATTACKS, type JkuTrap, type Minter, type SigningKey, startJkuTrap, tokenEchoed } from "./jwt-attacks.ts";

const OIDC = "https://oidc.kube.drawbridge.test";
const OPERATOR = "https://operator.kube.drawbridge.test";
const AUD = "drawbridge-gateway";
const MARKER = `BILLING-SECRET-${randomBytes(6).toString("hex")}`;

let kube: KubeHandle;
let gw: KubeListener;
let trap: JkuTrap;
let minter: Minter;
let proxy: ApiProxy;
let oidcKey: SigningKey;

/** A TCP relay between the gateway and the apiserver that can cut and refuse connections. */
interface ApiProxy {
	port: number;
	cut(): void;
	restore(): void;
	close(): Promise<void>;
}

async function startProxy(target: number): Promise<ApiProxy> {
	let down = false;
	const live = new Set<Socket>();
	const server: Server = createServer((c) => {
		if (down) {
			c.destroy();
			return;
		}
		const u = createConnection({ host: "127.0.0.1", port: target });
		live.add(c).add(u);
		c.on("close", () => live.delete(c));
		u.on("close", () => live.delete(u));
		c.on("error", () => u.destroy());
		u.on("error", () => c.destroy());
		c.pipe(u);
		u.pipe(c);
	});
	await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
	return {
		port: (server.address() as { port: number }).port,
		cut() {
			down = true;
			for (const s of live) s.resetAndDestroy();
		},
		restore() {
			down = false;
		},
		close: () =>
			new Promise<void>((r) => {
				for (const s of live) s.destroy();
				server.close(() => r());
			}),
	};
}

interface Reply {
	status: number;
	body: string;
}

function request(path: string, token: string | undefined, headers: Record<string, string> = {}, method = "GET"): Promise<Reply> {
	const url = new URL(gw.url);
	return new Promise((resolve, reject) => {
		const req = https.request(
			{
				host: url.hostname,
				port: url.port,
				path,
				method,
				ca: kube.caPem,
				headers: { ...(token !== undefined ? { authorization: `Bearer ${token}` } : {}), accept: "application/json", ...headers },
				agent: false,
			},
			(res) => {
				const chunks: Buffer[] = [];
				res.on("data", (c: Buffer) => chunks.push(c));
				res.on("end", () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString("utf8") }));
				res.on("error", reject);
			},
		);
		req.on("error", reject);
		req.setTimeout(60_000, () => req.destroy(new Error("request timed out")));
		req.end();
	});
}

before(async () => {
	[kube, trap] = await Promise.all([startKube(), startJkuTrap()]);
	await kube.createNamespace("payments");
	await kube.createNamespace("billing");
	// RBAC lets lee read configmaps everywhere: only the grant narrows to `payments`.
	const rbac = `
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: cm-reader }
rules: [{ apiGroups: [""], resources: [configmaps], verbs: [get, list, watch] }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: cm-reader-lee }
subjects: [{ kind: User, name: lee, apiGroup: rbac.authorization.k8s.io }]
roleRef: { kind: ClusterRole, name: cm-reader, apiGroup: rbac.authorization.k8s.io }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: secret-cm, namespace: billing }
data: { value: ${MARKER} }
---
apiVersion: v1
kind: ConfigMap
metadata: { name: app, namespace: payments }
data: { value: fine }
`;
	const applied = await kube.kubectl(["apply", "-f", "-"], { input: rbac });
	assert.equal(applied.code, 0, applied.stderr);
	proxy = await startProxy(kube.port);

	const oidc = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
	const op = await generateKeyPair("ES256", { extractable: true });
	oidcKey = oidc.privateKey;
	const oidcJwk = { ...(await exportJWK(oidc.publicKey)), kid: "k1", alg: "EdDSA", use: "sig" };
	const opJwk = { ...(await exportJWK(op.publicKey)), kid: "op1", alg: "ES256", use: "sig" };
	const conn = (name: string): BundleConnection => ({
		key: `ops/${name}`,
		name,
		namespace: "ops",
		type: "kubernetes",
		labels: { env: "prod" },
		host: "127.0.0.1",
		port: proxy.port,
		credentialRef: "kube-admin",
		kubernetes: { server: `https://127.0.0.1:${proxy.port}`, caPem: kube.caPem },
	});
	const now = Date.now();
	const grant = (name: string, connection: string, user: string): BundleGrant => ({
		key: `ops/${name}`,
		name,
		namespace: "ops",
		connection,
		subjects: [{ kind: "User", name: user }],
		notBefore: new Date(now - 60_000).toISOString(),
		expiresAt: new Date(now + 3_600_000).toISOString(),
		kubernetes: { namespaces: ["payments"], verbs: ["get", "list", "watch"], resources: ["configmaps"] },
		approvers: { subjects: [], minApprovals: 1 },
		origin: { commit: "hostile" },
	});
	const store = new BundleStore();
	store.update(
		sealBundle({
			apiVersion: BUNDLE_API_VERSION,
			version: 1,
			generatedAt: new Date().toISOString(),
			issuers: [
				{ name: "oidc", kind: "oidc", issuer: OIDC, audiences: [AUD], jwks: { keys: [oidcJwk] }, algorithms: ["EdDSA"] },
				{ name: "operator", kind: "drawbridge", issuer: OPERATOR, audiences: [AUD], jwks: { keys: [opJwk] }, algorithms: ["ES256"] },
			],
			connections: [conn("cluster-prod"), conn("cluster-dev")],
			grants: [grant("lee-payments", "cluster-prod", "lee"), grant("dev-team", "cluster-dev", "devs")],
			maskingPolicies: [],
			guardrailPolicies: [],
			credentials: { "kube-admin": { type: "kubernetes", clientCertPem: kube.adminCertPem, clientKeyPem: kube.adminKeyPem } },
			maskingKey: randomBytes(32).toString("base64"),
		}),
	);
	const cert = await issueCert(kube.ca, { cn: "localhost", ips: ["127.0.0.1"], dns: ["localhost"], name: "gateway-kube-hostile" });
	gw = await startKubeListener({
		store,
		recorder: new MemoryRecorder(),
		approvals: new StoreApprovalService({ store: new LocalApprovalStore(), sweepIntervalMs: 0, waitPollIntervalMs: 200 }),
		tls: { certPem: cert.certPem, keyPem: cert.keyPem },
		sessionIdleMs: 500,
	});
	minter = {
		token: async (sub, o = {}) => {
			const operator = o.issuer === "operator";
			const t = Math.floor(Date.now() / 1000);
			const jwt = new SignJWT({ ...o.claims })
				.setProtectedHeader({ alg: o.alg ?? (operator ? "ES256" : "EdDSA"), kid: operator ? "op1" : "k1", ...o.header })
				.setIssuer(o.iss ?? (operator ? OPERATOR : OIDC))
				.setAudience(o.aud ?? AUD)
				.setSubject(sub)
				.setIssuedAt(t + (o.iatSec ?? 0))
				.setExpirationTime(t + (o.expSec ?? 600));
			if (o.nbfSec !== undefined) jwt.setNotBefore(t + o.nbfSec);
			return jwt.sign(o.key ?? (operator ? op.privateKey : oidc.privateKey));
		},
		oidcIssuer: OIDC,
		oidcPublicJwk: oidcJwk,
		grantedUser: "lee",
		otherConnectionGrant: "ops/dev-team",
		thisConnectionGrant: "ops/lee-payments",
	};
});

after(async () => {
	await gw?.close();
	await proxy?.close();
	await trap?.close();
	await kube?.stop();
});
printLogsOnFailure(() => [["kube", kube]]);

const OK_PATH = "/k8s/cluster-prod/api/v1/namespaces/payments/configmaps";

async function lee(): Promise<string> {
	return minter.token("lee");
}

describe("JWT attack corpus through the Kubernetes listener", () => {
	test("control: lee lists configmaps in payments", async () => {
		const r = await request(OK_PATH, await lee());
		assert.equal(r.status, 200, r.body);
		assert.match(r.body, /"app"/);
	});

	for (const a of JWT_ATTACKS) {
		test(`${a.id}: ${a.note} → refused`, async () => {
			const token = await a.make(minter, trap);
			const r = await request(OK_PATH, token).catch((e: NodeJS.ErrnoException) => {
				// Node's HTTP server answers 431 to a 200 KiB header and closes while the client still writes.
				if (a.expect.includes("oversized") && (e.code === "ECONNRESET" || e.code === "EPIPE")) return { status: 431, body: "" };
				throw e;
			});
			if (r.status === 431) {
				// Node's HTTP server refuses headers over 16 KiB before any parsing of ours.
				assert.ok(a.expect.includes("oversized"), `${a.id}: 431`);
				return;
			}
			const expected = a.expect === "no-grant" ? 403 : 401;
			assert.equal(r.status, expected, r.body);
			const status = JSON.parse(r.body) as { kind: string; code: number; reason: string; message: string };
			assert.equal(status.kind, "Status");
			assert.equal(status.code, expected);
			assert.ok(!tokenEchoed(r.body, token), "the Status echoes the token");
			assert.ok(!r.body.includes(MARKER));
		});
	}

	test("no bearer token, or a Basic credential, is 401", async () => {
		for (const h of [undefined, "Basic YWRtaW46YWRtaW4="]) {
			const r = await request(OK_PATH, undefined, h ? { authorization: h } : {});
			assert.equal(r.status, 401, r.body);
		}
	});

	test("the attacker's jku/x5u endpoint was never fetched", () => {
		assert.equal(trap.hits, 0);
	});
});

describe("crafted paths and headers never reach another namespace", () => {
	const paths = [
		"/k8s/cluster-prod/api/v1/namespaces/billing/configmaps",
		"/k8s/cluster-prod/api/v1/namespaces/billing/configmaps/secret-cm",
		"/k8s/cluster-prod/api/v1/namespaces/payments/../billing/configmaps",
		"/k8s/cluster-prod/api/v1/namespaces/payments/configmaps/../../billing/configmaps/secret-cm",
		"/k8s/cluster-prod/api/v1/namespaces/payments/configmaps/..%2F..%2Fbilling%2Fconfigmaps%2Fsecret-cm",
		"/k8s/cluster-prod/api/v1/namespaces/payments%2F..%2Fbilling/configmaps",
		"/k8s/cluster-prod/api/v1/namespaces/payments/configmaps/%2e%2e/%2e%2e/billing/configmaps",
		"/k8s/cluster-prod/api/v1/namespaces/./billing/configmaps",
		"/k8s/cluster-prod//api/v1/namespaces/billing/configmaps",
		"/k8s/cluster-prod/api/v1/configmaps",
		"/k8s/cluster-prod/api/v1/configmaps?fieldSelector=metadata.namespace%3Dbilling",
		"/k8s/cluster-prod/api/v1/namespaces/billing/configmaps?namespace=payments",
		"/k8s/cluster-prod/apis/../api/v1/namespaces/billing/configmaps",
		"/k8s/cluster-prod/api/v1/namespaces/BILLING/configmaps",
		"/k8s/cluster-prod/api/v1/namespaces/payments%00/configmaps",
		"/k8s/cluster-prod/api/v1/namespaces/payments%00billing/configmaps",
		"/k8s/cluster-prod/api/v1/watch/namespaces/billing/configmaps",
		"/k8s/cluster-prod/api/v1/namespaces/billing/configmaps?watch=1&timeoutSeconds=1",
		"/k8s/cluster-prod/api/v1/namespaces/payments/configmaps/%ZZ",
		"/k8s/cluster-prod/api/v1/namespaces/p%C3%A4yments/configmaps",
		`/k8s/cluster-prod/api/v1/namespaces/${"a".repeat(4000)}/configmaps`,
		"/k8s/%63luster-prod/api/v1/namespaces/billing/configmaps",
		"/k8s/..%2Fcluster-prod/api/v1/namespaces/billing/configmaps",
		"/k8s/cluster-prod%2F..%2Fcluster-dev/api/v1/namespaces/billing/configmaps",
		"/k8s/%ZZ/api/v1/namespaces/billing/configmaps",
		"/api/v1/namespaces/billing/configmaps",
		"/k8s/cluster-prod/api/v1/namespaces/billing/configmaps/secret-cm/../../../payments/configmaps",
		"/k8s/cluster-prod/api/v1/namespaces/payments/configmaps/app/../../../../billing/configmaps/secret-cm",
		"/k8s/cluster-prod/api/v1/proxy/namespaces/billing/configmaps",
		"/k8s/cluster-prod/api/v1/namespaces/billing/configmaps;/secret-cm",
		"/k8s/cluster-prod/api/v1/namespaces/billing\\configmaps",
	];
	for (const p of paths) {
		test(`GET ${p.length > 100 ? `${p.slice(0, 100)}…` : p}`, async () => {
			const r = await request(p, await lee());
			assert.ok(!r.body.includes(MARKER), `billing data leaked: ${r.status} ${r.body.slice(0, 300)}`);
			assert.ok(r.status >= 300 || !/"namespace":"billing"/.test(r.body), `${r.status} ${r.body.slice(0, 300)}`);
			assert.ok(r.status !== 500 || /"kind":"Status"/.test(r.body), `unhandled 500: ${r.body.slice(0, 300)}`);
		});
	}

	test("agent-supplied Impersonate-* and Authorization-smuggling headers are ignored", async () => {
		const r = await request("/k8s/cluster-prod/api/v1/namespaces/billing/configmaps/secret-cm", await lee(), {
			"impersonate-user": "system:admin",
			"impersonate-group": "system:masters",
			"x-remote-user": "system:admin",
			"x-forwarded-for": "10.0.0.1",
		});
		assert.equal(r.status, 403, r.body);
		assert.ok(!r.body.includes(MARKER));
		// In the granted namespace the headers do not widen anything either (and do not break the request).
		const ok = await request(OK_PATH, await lee(), { "impersonate-user": "system:admin" });
		assert.equal(ok.status, 200, ok.body);
	});

	test("the gateway still serves after all of it", async () => {
		const r = await request(OK_PATH, await lee());
		assert.equal(r.status, 200, r.body);
	});
});

describe("kube-apiserver unreachable, then back", () => {
	test("requests during the outage get a 5xx Status quickly; the path recovers without a stale connection failing", async () => {
		const token = await lee();
		assert.equal((await request(OK_PATH, token)).status, 200);
		// A watch open through the gateway when the apiserver goes away.
		const watchEnded = new Promise<string>((resolve) => {
			const url = new URL(gw.url);
			const req = https.request(
				{ host: url.hostname, port: url.port, path: `${OK_PATH}?watch=1`, ca: kube.caPem, headers: { authorization: `Bearer ${token}` }, agent: false },
				(res) => {
					res.on("data", () => undefined);
					res.on("end", () => resolve(`end ${res.statusCode}`));
					res.on("error", (e) => resolve(`error ${e.message}`));
					res.on("close", () => resolve(`close ${res.statusCode}`));
				},
			);
			req.on("error", (e) => resolve(`request error ${e.message}`));
			req.end();
		});
		await new Promise((r) => setTimeout(r, 300));
		proxy.cut();
		const ended = await watchEnded;
		assert.ok(ended.length > 0);
		const during = await request(OK_PATH, token);
		assert.ok(during.status >= 500 && during.status <= 504, `${during.status} ${during.body}`);
		assert.equal((JSON.parse(during.body) as { kind: string }).kind, "Status");
		proxy.restore();
		// The very first request after the outage must work: no dead pooled socket reused.
		const first = await request(OK_PATH, token);
		assert.equal(first.status, 200, first.body);
		await waitFor("kube path healthy", async () => (await request(OK_PATH, token)).status === 200);
		void oidcKey;
	});
});
