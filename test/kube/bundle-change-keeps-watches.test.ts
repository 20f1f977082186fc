/**
 * Regression: the upstream agent was keyed by the bundle version and destroyed at the first request
 * after any bundle change, so an unrelated config update (a grant for someone else) cut every open
 * watch through the gateway. An agent now belongs to its Connection's upstream definition (server,
 * CA, credential): unrelated changes keep it; a changed or removed Connection ends what ran on it;
 * revoked or changed grants still end their sessions' watches.
 * Real kube-apiserver (test/env), raw JSON watches through the gateway.
 */
import assert from "node:assert/strict";
import https from "node:https";
import { after, before, test } from "node:test";
import type { BundleConnection, BundleGrant, ConfigBundle } from "../../gateway/config/bundle.ts";
import { BundleStore } from "../../gateway/config/store.ts";
import { type KubeListener, startKubeListener } from "../../gateway/kube/listener.ts";
import { issueCert, type KubeHandle, startKube } from "../env/index.ts";
import { approvalService, MemoryRecorder, makeBundle, type TokenIssuer, tokenIssuer, waitUntil } from "../ssh/fixtures.ts";

const NS = "watched";
// Fixed, so a grant rebuilt for a later bundle has the same terms.
const NOT_BEFORE = new Date(Date.now() - 60_000).toISOString();
const EXPIRES_AT = new Date(Date.now() + 3_600_000).toISOString();
let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
let store: BundleStore;
const recorder = new MemoryRecorder();

function connection(name: string, credentialRef: string): BundleConnection {
	return {
		key: `ops/${name}`,
		name,
		namespace: "ops",
		type: "kubernetes",
		labels: {},
		host: "127.0.0.1",
		port: kube.port,
		credentialRef,
		kubernetes: { server: kube.url, caPem: kube.caPem },
	};
}

function grant(name: string, user: string, conn: string): BundleGrant {
	return {
		key: `ops/${name}`,
		name,
		namespace: "ops",
		connection: conn,
		subjects: [{ kind: "User", name: user }],
		notBefore: NOT_BEFORE,
		expiresAt: EXPIRES_AT,
		kubernetes: { namespaces: [NS], verbs: ["get", "list", "watch"], resources: ["configmaps"] },
		approvers: { subjects: [{ kind: "User", name: "sam" }], minApprovals: 1 },
		origin: {},
	};
}

let credentials: ConfigBundle["credentials"];

function push(parts: { connections: BundleConnection[]; grants: BundleGrant[] }): void {
	const version = store.loaded ? store.current.version + 1 : 1;
	assert.ok(store.update(makeBundle(issuer, { ...parts, credentials }, version)));
}

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	await kube.createNamespace(NS);
	const rbac = `
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: cm-reader, namespace: ${NS} }
rules: [{ apiGroups: [""], resources: [configmaps], verbs: [get, list, watch] }]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: cm-reader, namespace: ${NS} }
subjects:
- { kind: User, name: kim, apiGroup: rbac.authorization.k8s.io }
- { kind: User, name: lee, apiGroup: rbac.authorization.k8s.io }
roleRef: { kind: Role, name: cm-reader, apiGroup: rbac.authorization.k8s.io }
`;
	const applied = await kube.kubectl(["apply", "-f", "-"], { input: rbac });
	assert.equal(applied.code, 0, applied.stderr);
	credentials = {
		"kube-cert": { type: "kubernetes", clientCertPem: kube.adminCertPem, clientKeyPem: kube.adminKeyPem },
		"kube-token": { type: "kubernetes", token: kube.adminToken },
	};
	const cert = await issueCert(kube.ca, { cn: "gateway-bundle-change", ips: ["127.0.0.1"], name: "gateway-bundle-change" });
	store = new BundleStore();
	push({ connections: [connection("cluster", "kube-cert"), connection("cluster-b", "kube-cert")], grants: [grant("kim", "kim", "cluster"), grant("kim-b", "kim", "cluster-b")] });
	gw = await startKubeListener({ store, recorder, approvals: approvalService(), tls: { certPem: cert.certPem, keyPem: cert.keyPem } });
});

after(async () => {
	await gw?.close();
	await kube?.stop();
});

interface Watch {
	/** Newline-delimited watch events received so far. */
	events(): { type: string; object: { kind?: string; message?: string; metadata?: { name?: string } } }[];
	ended: boolean;
	done: Promise<void>;
	close(): void;
}

/** A raw JSON watch of configmaps in NS through the gateway, on its own client connection. */
async function watch(conn: string, user: string): Promise<Watch> {
	const token = await issuer.token(user);
	const list = await kube.request<{ metadata: { resourceVersion: string } }>("GET", `/api/v1/namespaces/${NS}/configmaps`);
	let raw = "";
	const w: Watch = {
		events: () =>
			raw
				.split("\n")
				.filter((l) => l.trim() !== "")
				.map((l) => JSON.parse(l)),
		ended: false,
		done: Promise.resolve(),
		close: () => {},
	};
	let started!: () => void;
	const headers = new Promise<void>((resolve) => (started = resolve));
	w.done = new Promise<void>((resolve) => {
		const end = () => {
			w.ended = true;
			resolve();
		};
		const req = https.get(
			`${gw.url}/k8s/${conn}/api/v1/namespaces/${NS}/configmaps?watch=1&resourceVersion=${list.body.metadata.resourceVersion}`,
			{ ca: kube.caPem, agent: false, headers: { authorization: `Bearer ${token}` } },
			(res) => {
				assert.equal(res.statusCode, 200);
				started();
				res.setEncoding("utf8");
				res.on("data", (c: string) => (raw += c));
				res.on("end", end);
				res.on("close", end);
				res.on("error", end);
			},
		);
		req.on("error", end);
		w.close = () => req.destroy();
	});
	await headers;
	return w;
}

let seq = 0;
/** Creates a configmap (as admin, directly on the apiserver) and waits for `w` to see it. */
async function createAndSee(w: Watch, label: string): Promise<void> {
	const name = `cm-${label}-${++seq}`;
	const r = await kube.request("POST", `/api/v1/namespaces/${NS}/configmaps`, { apiVersion: "v1", kind: "ConfigMap", metadata: { name } });
	assert.equal(r.status, 201, r.text);
	await waitUntil(`watch sees ${name}`, () => w.ended || w.events().some((e) => e.type === "ADDED" && e.object.metadata?.name === name), 15_000);
	assert.equal(w.ended, false, `the watch ended before it saw ${name}: ${JSON.stringify(w.events().at(-1))}`);
}

/** Another identity's plain request on `conn` (the old code rebuilt the agent on the first one after a change). */
async function otherRequest(conn: string, user: string): Promise<number> {
	const token = await issuer.token(user);
	return new Promise((resolve, reject) => {
		https
			.get(`${gw.url}/k8s/${conn}/api/v1/namespaces/${NS}/configmaps`, { ca: kube.caPem, headers: { authorization: `Bearer ${token}` } }, (res) => {
				res.resume();
				res.on("end", () => resolve(res.statusCode ?? 0));
			})
			.on("error", reject);
	});
}

test("an unrelated bundle change keeps open watches; a changed upstream or a revoked grant ends them", async () => {
	const cluster = connection("cluster", "kube-cert");
	const clusterB = connection("cluster-b", "kube-cert");
	const kim = grant("kim", "kim", "cluster");
	const kimB = grant("kim-b", "kim", "cluster-b");
	const w = await watch("cluster", "kim");
	const wb = await watch("cluster-b", "kim");
	try {
		await createAndSee(w, "before");

		// 1. A new grant for someone else (as a git push would bring): the watch stays and keeps streaming,
		//    also after another request on the same connection.
		push({ connections: [cluster, clusterB], grants: [kim, kimB, grant("lee", "lee", "cluster")] });
		assert.equal(await otherRequest("cluster", "lee"), 200);
		await new Promise((r) => setTimeout(r, 200));
		assert.equal(w.ended, false, `an unrelated grant must not end the watch: ${JSON.stringify(w.events().at(-1))}`);
		await createAndSee(w, "after-unrelated");
		await createAndSee(wb, "after-unrelated-b");

		// 2. The connection's upstream credential changes (client certificate → bearer token): what ran on
		//    the old upstream definition ends at once; cluster-b, unchanged, keeps its watch.
		const clusterToken = connection("cluster", "kube-token");
		push({ connections: [clusterToken, clusterB], grants: [kim, kimB, grant("lee", "lee", "cluster")] });
		await waitUntil("watch on the changed connection ended", () => w.ended, 10_000);
		assert.equal(wb.ended, false, "another connection's watch must not end");
		await createAndSee(wb, "after-other-connection-changed");

		// 3. A watch on the new definition; then kim's grant is revoked: it ends with an ERROR Status naming it.
		const w2 = await watch("cluster", "kim");
		await createAndSee(w2, "new-upstream");
		push({ connections: [clusterToken, clusterB], grants: [kimB, grant("lee", "lee", "cluster")] });
		await waitUntil("watch ended by the revocation", () => w2.ended, 10_000);
		const last = w2.events().at(-1);
		assert.equal(last?.type, "ERROR");
		assert.match(last?.object.message ?? "", /grant ops\/kim was revoked/);
		assert.equal(recorder.sessions.filter((s) => s.meta.grant === "ops/kim").at(-1)?.end?.reason, "grant-revoked");

		// 4. cluster-b leaves the bundle (its grant left behind): its pooled connection, and the watch on
		//    it, must not outlive it.
		assert.equal(wb.ended, false);
		push({ connections: [clusterToken], grants: [kimB, grant("lee", "lee", "cluster")] });
		await waitUntil("watch on the removed connection ended", () => wb.ended, 10_000);
	} finally {
		w.close();
		wb.close();
	}
});

test("a grant whose terms change ends its session's watch; the new terms apply to the next request", async () => {
	const cluster = connection("cluster", "kube-cert");
	const kim = grant("kim", "kim", "cluster");
	push({ connections: [cluster], grants: [kim] });
	const w = await watch("cluster", "kim");
	try {
		await createAndSee(w, "terms");
		// Extending the grant is not a change of terms.
		const extended = { ...kim, expiresAt: new Date(Date.now() + 7_200_000).toISOString() };
		push({ connections: [cluster], grants: [extended] });
		await createAndSee(w, "extended");
		// Narrowed to pods only: the configmaps watch ran under the old terms.
		push({ connections: [cluster], grants: [{ ...extended, kubernetes: { ...kim.kubernetes!, resources: ["pods"] } }] });
		await waitUntil("watch ended by the grant change", () => w.ended, 10_000);
		assert.match(w.events().at(-1)?.object.message ?? "", /grant ops\/kim changed/);
		assert.equal(await otherRequest("cluster", "kim"), 403);
	} finally {
		w.close();
	}
});
