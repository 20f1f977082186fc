/**
 * The Kubernetes data path end to end: kubectl 1.33 with a generated kubeconfig → gateway → real
 * kube-apiserver (test/env startKube), impersonating the agent so RBAC still applies.
 *
 * No kubelet exists here (envtest-style control plane: no nodes), so `kubectl logs -f` and
 * `kubectl exec` cannot stream from a container: the streaming relay is exercised with `kubectl get -w`
 * (a watch: long-lived chunked response), and the upgrade path with `kubectl exec`, whose SPDY/WebSocket
 * upgrade the apiserver answers with an error we must relay intact.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { BundleConnection, BundleGrant } from "../../gateway/config/bundle.ts";
import { generateKubeconfig } from "../../gateway/kube/kubeconfig.ts";
import { type KubeListener, startKubeListener } from "../../gateway/kube/listener.ts";
import { issueCert, type KubeHandle, run, startKube } from "../env/index.ts";
import { approvalService, approver, makeBundle, MemoryRecorder, storeWith, type TokenIssuer, tokenIssuer, waitUntil } from "../ssh/fixtures.ts";

const KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
let dir: string;
const recorder = new MemoryRecorder();
const approvals = approvalService();

const grant: BundleGrant = {
	key: "ops/payments-oncall",
	name: "payments-oncall",
	namespace: "ops",
	connection: "cluster-prod",
	subjects: [{ kind: "User", name: "lee" }],
	notBefore: new Date(Date.now() - 60_000).toISOString(),
	expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
	kubernetes: {
		namespaces: ["payments"],
		verbs: ["get", "list", "watch", "create", "update", "patch", "delete"],
		resources: ["pods", "pods/log", "pods/exec", "configmaps", "secrets", "namespaces"],
	},
	approvers: { subjects: [{ kind: "User", name: "sam" }], minApprovals: 1 },
	origin: { repository: "grants", commit: "def456", pullRequest: 9 },
};

async function kubectl(kubeconfig: string, args: string[], input?: string) {
	return run(KUBECTL, [`--kubeconfig=${kubeconfig}`, ...args], {
		env: { ...process.env, HOME: dir },
		timeoutMs: 60_000,
		...(input !== undefined ? { input } : {}),
	});
}

async function kubeconfigFor(sub: string, groups: string[] = []): Promise<string> {
	const file = join(dir, `kubeconfig-${sub}-${groups.join("_")}`);
	writeFileSync(
		file,
		generateKubeconfig({
			gatewayUrl: gw.url,
			connection: "cluster-prod",
			caPem: kube.caPem,
			token: await issuer.token(sub, { groups }),
			namespace: "payments",
		}),
	);
	return file;
}

let lee: string;
let saKubeconfig: string;
let store: ReturnType<typeof storeWith>;

before(async () => {
	dir = mkdtempSync(join(tmpdir(), "drawbridge-kube-test-"));
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	await kube.createNamespace("payments");
	await kube.createNamespace("billing");
	// RBAC for the impersonated user: pods and configmaps in payments, NOT secrets (RBAC narrows too).
	const rbac = `
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: oncall, namespace: payments }
rules:
- apiGroups: [""]
  resources: [pods, pods/log, pods/exec, configmaps]
  verbs: [get, list, watch, create, update, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: oncall-lee, namespace: payments }
subjects:
- { kind: User, name: lee, apiGroup: rbac.authorization.k8s.io }
- { kind: User, name: kim, apiGroup: rbac.authorization.k8s.io }
roleRef: { kind: Role, name: oncall, apiGroup: rbac.authorization.k8s.io }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: { name: ns-reader }
rules:
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: { name: ns-reader-lee }
subjects:
- { kind: User, name: lee, apiGroup: rbac.authorization.k8s.io }
- { kind: User, name: ops-admin, apiGroup: rbac.authorization.k8s.io }
roleRef: { kind: ClusterRole, name: ns-reader, apiGroup: rbac.authorization.k8s.io }
`;
	const applied = await kube.kubectl(["apply", "-f", "-"], { input: rbac });
	assert.equal(applied.code, 0, applied.stderr);
	const cert = await issueCert(kube.ca, { cn: "drawbridge-gateway", ips: ["127.0.0.1"], dns: ["localhost"], name: "gateway-kube" });
	const connection: BundleConnection = {
		key: "ops/cluster-prod",
		name: "cluster-prod",
		namespace: "ops",
		type: "kubernetes",
		labels: { env: "prod" },
		host: "127.0.0.1",
		port: kube.port,
		credentialRef: "kube-gw",
		kubernetes: { server: kube.url, caPem: kube.caPem },
	};
	const base = makeBundle(issuer, {});
	store = storeWith(
		makeBundle(issuer, {
			issuers: [
				...base.issuers,
				{
					name: "cluster-sa",
					kind: "kubernetes",
					issuer: kube.serviceAccountIssuer,
					audiences: ["drawbridge"],
					jwksUri: kube.jwksUri,
					caPem: kube.caPem,
					algorithms: ["RS256"],
				},
			],
			connections: [connection],
			grants: [
				grant,
				{
					...grant,
					key: "ci/deployer-payments",
					name: "deployer-payments",
					namespace: "ci",
					subjects: [{ kind: "ServiceAccount", namespace: "ci", name: "deployer" }],
					kubernetes: { namespaces: ["payments"], verbs: ["get", "list"], resources: ["configmaps"] },
				},
				{
					// Cluster-wide: the only kind of grant that reaches the Namespace object at all.
					...grant,
					key: "ops/cluster-admin",
					name: "cluster-admin",
					subjects: [{ kind: "User", name: "ops-admin" }],
					kubernetes: { namespaces: ["*"], verbs: ["*"], resources: ["*"] },
				},
			],
			guardrailPolicies: [
				{
					key: "ops/kube-prod",
					selector: { matchLabels: { env: "prod" } },
					rules: [
						{ name: "no-namespace-delete", action: "block", message: "namespaces are deleted through git", kubernetes: { verbs: ["delete"], resources: ["namespaces"] } },
						{ name: "approve-configmap-delete", action: "requireApproval", kubernetes: { verbs: ["delete"], resources: ["configmaps"] } },
						{ name: "no-exec", action: "block", kubernetes: { resources: ["pods/exec"], namespaces: ["kube-system"] } },
					],
				},
			],
			credentials: { "kube-gw": { type: "kubernetes", clientCertPem: kube.adminCertPem, clientKeyPem: kube.adminKeyPem } },
		}),
	);
	gw = await startKubeListener({ store, recorder, approvals, tls: { certPem: cert.certPem, keyPem: cert.keyPem }, sessionIdleMs: 500 });
	lee = await kubeconfigFor("lee", ["oncall"]);
	// Journey 1: a CI job's own projected service-account token, no other credential.
	const saToken = await kube.serviceAccountToken("ci", "deployer", { audiences: ["drawbridge"], expirationSeconds: 3600 });
	const sa = await kube.kubectl(["create", "rolebinding", "deployer-read", "--role=oncall", "--serviceaccount=ci:deployer", "-n", "payments"]);
	assert.equal(sa.code, 0, sa.stderr);
	saKubeconfig = join(dir, "kubeconfig-sa");
	writeFileSync(saKubeconfig, generateKubeconfig({ gatewayUrl: gw.url, connection: "cluster-prod", caPem: kube.caPem, token: saToken, namespace: "payments" }));
});

after(async () => {
	await gw?.close();
	await kube?.stop();
	if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("kubectl through the gateway", () => {
	test("get, apply and delete in the granted namespace, as the impersonated user; every request recorded", async () => {
		const empty = await kubectl(lee, ["get", "pods"]);
		assert.equal(empty.code, 0, empty.stderr);
		assert.match(empty.stderr + empty.stdout, /No resources found in payments namespace/);
		const cm = "apiVersion: v1\nkind: ConfigMap\nmetadata: { name: app-config, namespace: payments }\ndata: { mode: safe }\n";
		const applied = await kubectl(lee, ["apply", "-f", "-"], cm);
		assert.equal(applied.code, 0, applied.stderr);
		assert.match(applied.stdout, /configmap\/app-config created/);
		// The object exists for the admin too, and was created by the impersonated user (managedFields manager).
		const got = await kube.request<{ metadata: { name: string } }>("GET", "/api/v1/namespaces/payments/configmaps/app-config");
		assert.equal(got.status, 200);
		const list = await kubectl(lee, ["get", "configmaps", "-o", "name"]);
		assert.match(list.stdout, /configmap\/app-config/);
		const reqs = recorder.events("kube.request");
		const create = reqs.find((r) => r.verb === "create" && r.resource === "configmaps");
		assert.ok(create, JSON.stringify(reqs.map((r) => `${r.verb} ${r.resource}`)));
		assert.equal(create.status, 201);
		assert.equal(create.namespace, "payments");
		assert.equal(create.decision, "allow");
		assert.ok(typeof create.durationMs === "number");
		assert.deepEqual((create.body as { data: unknown }).data, { mode: "safe" });
		const s = recorder.sessions.find((x) => x.events.includes(create as never))!;
		assert.equal(s.meta.target["user"], "lee");
		assert.equal(s.meta.grant, "ops/payments-oncall");
	});

	test("a denied namespace gets a Kubernetes Forbidden Status naming the grant", async () => {
		const r = await kubectl(lee, ["get", "pods", "-n", "billing"]);
		assert.equal(r.code, 1);
		assert.match(r.stderr, /Forbidden/);
		assert.match(r.stderr, /ops\/payments-oncall/);
		assert.match(r.stderr, /billing/);
		const raw = await fetchStatus("/k8s/cluster-prod/api/v1/namespaces/billing/pods");
		assert.equal(raw.status, 403);
		assert.equal(raw.body.kind, "Status");
		assert.equal(raw.body.reason, "Forbidden");
		assert.equal(raw.body.code, 403);
	});

	test("kubectl delete namespace is blocked by the grant's scope (namespaced grant) or the guardrail (cluster-wide grant)", async () => {
		// The Namespace object is cluster-scoped: a grant on payments' contents never reaches it.
		const scoped = await kubectl(lee, ["delete", "namespace", "payments"]);
		assert.equal(scoped.code, 1);
		assert.match(scoped.stderr, /ops\/payments-oncall/);
		assert.match(scoped.stderr, /cluster-scoped/);
		const admin = await kubeconfigFor("ops-admin");
		const r = await kubectl(admin, ["delete", "namespace", "payments"]);
		assert.equal(r.code, 1);
		assert.match(r.stderr, /no-namespace-delete/);
		assert.match(r.stderr, /namespaces are deleted through git/);
		const ns = await kube.request("GET", "/api/v1/namespaces/payments");
		assert.equal(ns.status, 200);
		const rec = recorder.events("kube.request").find((e) => e.verb === "delete" && e.resource === "namespaces" && e.rule === "no-namespace-delete");
		assert.equal(rec?.decision, "block");
		assert.equal(rec?.rule, "no-namespace-delete");
	});

	test("an approval-gated delete waits for the approver, then runs", async () => {
		await kube.request("POST", "/api/v1/namespaces/payments/configmaps", {
			apiVersion: "v1",
			kind: "ConfigMap",
			metadata: { name: "old-config" },
		});
		const child = spawn(KUBECTL, [`--kubeconfig=${lee}`, "delete", "configmap", "old-config"], { env: { ...process.env, HOME: dir } });
		let out = "";
		child.stdout.on("data", (b: Buffer) => (out += b.toString()));
		child.stderr.on("data", (b: Buffer) => (out += b.toString()));
		const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
		let pendingId = "";
		await waitUntil("a pending approval", () => {
			void approvals.list({ phase: "Pending" }).then((l) => {
				const hit = l.find((a) => a.rule === "approve-configmap-delete");
				if (hit) pendingId = hit.id;
			});
			return pendingId !== "";
		});
		const pending = (await approvals.get(pendingId))!;
		assert.match(pending.command, /delete .*configmaps\/old-config/);
		assert.equal(pending.grant, "ops/payments-oncall");
		await approvals.decide(pendingId, approver("sam"), "approve");
		assert.equal(await exited, 0, out);
		assert.match(out, /configmap "old-config" deleted/);
		assert.match(out, new RegExp(`approval ${pendingId} granted by user:sam`));
		const gone = await kube.request("GET", "/api/v1/namespaces/payments/configmaps/old-config");
		assert.equal(gone.status, 404);
		const rec = recorder.events("kube.request").find((e) => e.verb === "delete" && e.name === "old-config");
		assert.equal(rec?.decision, "approved");
		assert.equal(rec?.approvalId, pendingId);
	});

	test("RBAC still applies (the grant never widens) and agent-supplied impersonation or system groups are ignored", async () => {
		// The grant lists secrets, RBAC does not: the apiserver refuses lee.
		const r = await kubectl(lee, ["get", "secrets"]);
		assert.equal(r.code, 1);
		assert.match(r.stderr, /User "lee" cannot list resource "secrets"/);
		// --as / --as-group become Impersonate-* headers: the gateway drops them.
		const as = await kubectl(lee, ["get", "secrets", "--as=drawbridge-admin", "--as-group=system:masters"]);
		assert.equal(as.code, 1);
		assert.match(as.stderr, /User "lee" cannot list resource "secrets"/);
		// A token claiming system:masters is not impersonated with that group.
		const masters = await kubeconfigFor("lee", ["system:masters"]);
		const m = await kubectl(masters, ["get", "secrets"]);
		assert.equal(m.code, 1);
		assert.match(m.stderr, /User "lee" cannot list resource "secrets"/);
	});

	test("Secret bodies are recorded with data masked (including kubectl's last-applied annotation)", async () => {
		const secret =
			"apiVersion: v1\nkind: Secret\nmetadata: { name: db-pass, namespace: payments }\nstringData: { password: hunter2-very-secret }\n";
		// RBAC refuses the create, but the request (and its body) still reached the recorder masked.
		const r = await kubectl(lee, ["create", "--save-config", "-f", "-"], secret);
		assert.match(r.stderr, /cannot create resource "secrets"/);
		const recs = recorder.events("kube.request").filter((e) => e.resource === "secrets" && e.body !== undefined);
		assert.ok(recs.length > 0);
		const text = JSON.stringify(recs);
		assert.doesNotMatch(text, /hunter2/);
		assert.match(text, /<masked>/);
	});

	test("watch streams through the gateway (kubectl get -w)", async () => {
		const child = spawn(KUBECTL, [`--kubeconfig=${lee}`, "get", "configmaps", "-w", "-o", "name"], { env: { ...process.env, HOME: dir } });
		let out = "";
		child.stdout.on("data", (b: Buffer) => (out += b.toString()));
		child.stderr.on("data", (b: Buffer) => (out += b.toString()));
		try {
			await waitUntil("initial list", () => out.includes("configmap/app-config"), 20_000);
			await kube.request("POST", "/api/v1/namespaces/payments/configmaps", {
				apiVersion: "v1",
				kind: "ConfigMap",
				metadata: { name: "watched-later" },
			});
			await waitUntil("watch event for the new object", () => out.includes("configmap/watched-later"), 20_000);
		} finally {
			child.kill();
		}
		const w = recorder.events("kube.request").find((e) => e.verb === "watch" && e.resource === "configmaps");
		await waitUntil("watch recorded after close", () => recorder.events("kube.request").some((e) => e.verb === "watch"), 5000).catch(() => {});
		assert.ok(w ?? recorder.events("kube.request").some((e) => e.verb === "watch"));
	});

	test("grant end stops a running watch with a Status naming the expiry", async () => {
		const b = store.current.bundle;
		const expiresAt = new Date(Date.now() + 8000).toISOString();
		const short = { ...grant, key: "ops/kim-short", name: "kim-short", subjects: [{ kind: "User" as const, name: "kim" }], expiresAt };
		assert.ok(store.update(makeBundle(issuer, { ...b, grants: [...b.grants, short] }, b.version + 1)));
		await kube.request("POST", "/api/v1/namespaces/payments/configmaps", { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "kim-cm" } });
		const kim = await kubeconfigFor("kim");
		// A raw JSON watch alongside kubectl: its last event must be an ERROR Status naming the expiry.
		const https = await import("node:https");
		const kimToken = await issuer.token("kim");
		let raw = "";
		const rawDone = new Promise<void>((resolve) => {
			https
				.get(
					{ hostname: "127.0.0.1", port: gw.address.port, path: "/k8s/cluster-prod/api/v1/namespaces/payments/configmaps?watch=1", ca: kube.caPem, headers: { authorization: `Bearer ${kimToken}` } },
					(res) => {
						res.on("data", (c: Buffer) => (raw += c.toString()));
						res.on("end", resolve);
						res.on("error", () => resolve());
					},
				)
				.on("error", () => resolve());
		});
		const child = spawn(KUBECTL, [`--kubeconfig=${kim}`, "get", "configmaps", "-w", "-o", "name"], { env: { ...process.env, HOME: dir } });
		let out = "";
		child.stdout.on("data", (d: Buffer) => (out += d.toString()));
		child.stderr.on("data", (d: Buffer) => (out += d.toString()));
		const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
		try {
			await waitUntil("watch started", () => out.includes("configmap/kim-cm"), 15_000);
			await waitUntil("kubectl ended by the grant's expiry", () => child.exitCode !== null, 20_000);
		} finally {
			child.kill();
		}
		// The watch was ended by the gateway at expiry (kubectl treats a closed watch as done), and the
		// next request is refused naming the expiry.
		await exited;
		assert.ok(Date.now() >= Date.parse(expiresAt));
		await rawDone;
		const last = JSON.parse(raw.trim().split("\n").at(-1)!) as { type: string; object: { kind: string; code: number; message: string } };
		assert.equal(last.type, "ERROR");
		assert.equal(last.object.kind, "Status");
		assert.match(last.object.message, /grant ops\/kim-short expired at/);
		const after = await kubectl(kim, ["get", "configmaps"]);
		assert.equal(after.code, 1);
		assert.match(after.stderr, /grant ops\/kim-short expired at/);
		const s = recorder.sessions.find((x) => x.meta.grant === "ops/kim-short");
		assert.equal(s?.end?.reason, "grant-expired");
	});

	test("exec and logs are relayed to the apiserver, which refuses them without a node", async () => {
		await kube.request("POST", "/api/v1/namespaces/payments/pods", {
			apiVersion: "v1",
			kind: "Pod",
			metadata: { name: "api" },
			spec: { containers: [{ name: "api", image: "example.invalid/api:1" }] },
		});
		const ex = await kubectl(lee, ["exec", "api", "--", "true"]);
		assert.notEqual(ex.code, 0, JSON.stringify(ex));
		// The apiserver's own answer, relayed through the upgrade path.
		assert.match(ex.stderr, /does not have a host assigned|not found|unable to upgrade/i);
		// Whatever the apiserver answers for logs of a pod without a node, the gateway answers the same.
		const logs = await kubectl(lee, ["logs", "api"]);
		const direct = await kube.kubectl(["logs", "api", "-n", "payments"], { env: { ...process.env, HOME: dir } });
		assert.equal(logs.code, direct.code);
		assert.equal(logs.stdout, direct.stdout);
		assert.equal(logs.stderr, direct.stderr);
		const exDirect = await kube.kubectl(["exec", "api", "-n", "payments", "--", "true"], { env: { ...process.env, HOME: dir } });
		assert.equal(ex.code, exDirect.code);
		assert.equal(ex.stderr, exDirect.stderr);
		const recs = recorder.events("kube.request");
		const exec = recs.find((e) => e.subresource === "exec") as { body?: { command?: string[] } } | undefined;
		assert.ok(exec, "exec recorded");
		// What an auditor needs from an exec: the command, from the request's query.
		assert.deepEqual(exec.body?.command, ["true"]);
		assert.ok(recs.some((e) => e.subresource === "log"));
	});

	test("a Kubernetes service-account token is impersonated as that service account, within its grant", async () => {
		const ok = await kubectl(saKubeconfig, ["get", "configmaps", "-o", "name"]);
		assert.equal(ok.code, 0, ok.stderr);
		assert.match(ok.stdout, /configmap\/app-config/);
		// RBAC (the oncall Role) would let it list pods; its grant does not.
		const pods = await kubectl(saKubeconfig, ["get", "pods"]);
		assert.equal(pods.code, 1);
		assert.match(pods.stderr, /ci\/deployer-payments/);
		const s = recorder.sessions.find((x) => x.meta.grant === "ci/deployer-payments");
		assert.equal(s?.meta.target["user"], "system:serviceaccount:ci:deployer");
		assert.deepEqual(s?.meta.identity.serviceAccount, { namespace: "ci", name: "deployer" });
	});

	test("`drawbridge kubeconfig` writes a kubeconfig (tokenFile) that kubectl uses through the gateway", async () => {
		const { main } = await import("../../gateway/kube/cli.ts");
		const tokenFile = join(dir, "lee.token");
		writeFileSync(tokenFile, await issuer.token("lee", { groups: ["oncall"] }));
		const caFile = join(dir, "gateway-ca.pem");
		writeFileSync(caFile, kube.caPem);
		const out = join(dir, "cli.kubeconfig");
		const code = await main(["--server", gw.url, "--connection", "cluster-prod", "--ca", caFile, "--token-file", tokenFile, "--namespace", "payments", "--out", out]);
		assert.equal(code, 0);
		const r = await kubectl(out, ["get", "configmaps", "-o", "name"]);
		assert.equal(r.code, 0, r.stderr);
		assert.match(r.stdout, /configmap\//);
		assert.equal(await main(["--server", gw.url]), 2);
	});

	test("no token, a bad token and an identity without a grant are refused", async () => {
		const none = await fetchStatus("/k8s/cluster-prod/api/v1/namespaces/payments/pods", undefined);
		assert.equal(none.status, 401);
		const bad = await fetchStatus("/k8s/cluster-prod/api/v1/namespaces/payments/pods", "not-a-token");
		assert.equal(bad.status, 401);
		const mallory = await kubeconfigFor("mallory");
		// With a cold discovery cache kubectl hits the 403 on discovery first, and client-go's discovery
		// client prints "unknown" instead of the Status message; the Status itself names the reason.
		const r = await kubectl(mallory, ["get", "pods"]);
		assert.equal(r.code, 1);
		assert.match(r.stderr, /Forbidden/);
		const raw = await fetchStatus("/k8s/cluster-prod/api/v1/namespaces/payments/pods", await issuer.token("mallory"));
		assert.equal(raw.status, 403);
		assert.match(String(raw.body.message), /access denied for user:mallory .*no grant matches/);
		const unknown = await fetchStatus("/k8s/nope/api/v1/pods", await issuer.token("lee"));
		assert.equal(unknown.status, 404);
		// A dot-segment path that the apiserver might resolve to another namespace is refused outright.
		const dots = await fetchStatus("/k8s/cluster-prod/api/v1/namespaces/payments/pods/../../billing/pods");
		assert.equal(dots.status, 400);
		assert.equal(dots.body.reason, "BadRequest");
	});
});

/** Raw HTTPS request to the gateway (node:https, verifying the gateway's certificate against the test CA). */
async function fetchStatus(path: string, ...tokenArg: [string | undefined] | []): Promise<{ status: number; body: Record<string, unknown> }> {
	const https = await import("node:https");
	const t = tokenArg.length > 0 ? tokenArg[0] : await issuer.token("lee");
	return new Promise((resolve, reject) => {
		// Options, not a URL string: WHATWG URL parsing would resolve dot segments before sending.
		const req = https.request(
			{ hostname: "127.0.0.1", port: gw.address.port, path, ca: kube.caPem, headers: t ? { authorization: `Bearer ${t}` } : {} },
			(res) => {
				let text = "";
				res.on("data", (c: Buffer) => (text += c.toString()));
				res.on("end", () => resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) as Record<string, unknown> }));
			},
		);
		req.on("error", reject);
		req.end();
	});
}
