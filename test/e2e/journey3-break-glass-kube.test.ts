/**
 * Journey 3 (SCENARIOS.md), its Kubernetes half, through the whole chain: Lee's 30-minute
 * break-glass grant (examples/grants/oncall/break-glass.yaml, both grants in one file) is merged as a
 * pull request; the operator puts it, the payments-cluster Connection and the prod guardrails in the
 * bundle; the gateway process (its Kubernetes listener) lets `kubectl` with Lee's OIDC token read the
 * payments namespace, impersonating Lee with the gateway's own ServiceAccount (deploy/base's
 * impersonator ClusterRole) so the cluster's RBAC still applies; `kubectl delete namespace payments`
 * is refused with a 403 (namespaces are not in the grant: deny by default, before the guardrail);
 * other namespaces and resources outside the grant are refused, even where the cluster's RBAC
 * would allow them; the requests are recorded and link to the pull request.
 *
 * The SSH half runs against a real sshd in test/ssh/; here the db-primary Connection and SSH grant are
 * only synced (they need no Secret: `ssh.auth: certificate`).
 */
import assert from "node:assert/strict";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { KUBECTL, printLogsOnFailure, run, type RunResult } from "../env/index.ts";
import { drawbridge, GRANTS_NS, logsOf, ROOT, type Stack, startStack, SYSTEM_NS, waitFor } from "./stack.ts";

const PR = 2291;
let stack: Stack;
let leeKubeconfig = "";

const example = (path: string) => readFileSync(join(ROOT, "examples", path), "utf8");

before(async () => {
	stack = await startStack({ oidc: true });
	const k = stack.kubectl;
	// The payments cluster (the harness apiserver plays it): a namespace with a pod, RBAC for on-call.
	await stack.kube.createNamespace("payments");
	await k(
		["apply", "-f", "-"],
		JSON.stringify({
			apiVersion: "v1",
			kind: "List",
			items: [
				{ apiVersion: "v1", kind: "Pod", metadata: { name: "api-7d9f", namespace: "payments", labels: { app: "api" } }, spec: { containers: [{ name: "api", image: "payments/api:1.4" }] } },
				{ apiVersion: "v1", kind: "Secret", metadata: { name: "stripe-key", namespace: "payments" }, stringData: { key: "sk_live_e2e" } },
				{
					apiVersion: "rbac.authorization.k8s.io/v1",
					kind: "Role",
					metadata: { name: "oncall", namespace: "payments" },
					rules: [{ apiGroups: ["", "apps"], resources: ["pods", "pods/log", "deployments", "events", "secrets"], verbs: ["get", "list", "watch", "delete"] }],
				},
				{
					apiVersion: "rbac.authorization.k8s.io/v1",
					kind: "RoleBinding",
					metadata: { name: "oncall", namespace: "payments" },
					roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "oncall" },
					subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "oncall" }],
				},
			],
		}),
	);
	// The gateway's credential for this cluster: its own ServiceAccount token (may impersonate, nothing else).
	const gatewayToken = await stack.kube.serviceAccountToken(SYSTEM_NS, "drawbridge-gateway", { expirationSeconds: 7200 });
	await k(
		["apply", "-f", "-"],
		JSON.stringify({
			apiVersion: "v1",
			kind: "List",
			items: [
				{ apiVersion: "v1", kind: "Secret", metadata: { name: "payments-cluster-gateway", namespace: GRANTS_NS }, stringData: { token: gatewayToken } },
				{ apiVersion: "v1", kind: "Secret", metadata: { name: "payments-cluster-ca", namespace: GRANTS_NS }, stringData: { "ca.crt": stack.kube.caPem } },
			],
		}),
	);
	const port = new URL(stack.kube.url).port;
	await stack.git.commit("grants", {
		message: "payments cluster, db-primary and production guardrails",
		files: {
			"connections/payments-cluster.yaml": example("connections/payments-cluster.yaml").replace("host: api.payments.prod.internal", "host: 127.0.0.1").replace("port: 6443", `port: ${port}`),
			"connections/db-primary.yaml": example("connections/db-primary.yaml"),
			"policies/guardrails-prod.yaml": example("policies/guardrails-prod.yaml"),
		},
	});
	await stack.git.mergePullRequest("grants", {
		number: PR,
		branch: "inc-2291-break-glass",
		org: "platform",
		title: "Break-glass for INC-2291 (on-call, 30 minutes)",
		author: { name: "Lee", email: "lee@example.com" },
		files: { "grants/oncall/break-glass.yaml": example("grants/oncall/break-glass.yaml") },
	});
	await stack.applyGitSource();
	await waitFor("both break-glass grants Active", async () => {
		const out = await stack.kubectl(["get", "accessgrants", "-n", GRANTS_NS, "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.phase} {end}"]);
		return out.includes("oncall-break-glass-kube=Active") && out.includes("oncall-break-glass-ssh=Active");
	});
	await stack.startGateway();

	// What `drawbridge` hands Lee: a kubeconfig for the gateway whose token is Lee's OIDC ID token.
	const token = await stack.oidc!.idToken("lee");
	leeKubeconfig = join(stack.dir, "drawbridge.kubeconfig");
	writeFileSync(
		leeKubeconfig,
		JSON.stringify({
			apiVersion: "v1",
			kind: "Config",
			clusters: [{ name: "drawbridge", cluster: { server: `https://127.0.0.1:${stack.gatewayPorts.kube}`, "certificate-authority": stack.gatewayCaFile } }],
			users: [{ name: "lee", user: { token } }],
			contexts: [{ name: "payments", context: { cluster: "drawbridge", user: "lee", namespace: "payments" } }],
			"current-context": "payments",
		}),
		{ mode: 0o600 },
	);
});
after(async () => {
	await stack?.stop();
});
printLogsOnFailure(() => [...logsOf(stack), ["oidc", stack?.oidc]]);

const asLee = (args: string[]): Promise<RunResult> =>
	run(KUBECTL, ["--kubeconfig", leeKubeconfig, "--request-timeout=30s", ...args], { env: { PATH: process.env.PATH ?? "", HOME: stack.dir } });

test("journey 3 (kubernetes): Lee's kubectl through the gateway reads payments; namespace delete and ungranted requests are refused", { timeout: 240_000 }, async () => {
	const pods = await waitFor("kubectl through the gateway", async () => {
		const r = await asLee(["-n", "payments", "get", "pods", "-o", "name"]);
		if (r.code !== 0) throw new Error(r.stderr);
		return r.stdout.trim();
	}, 60_000, 500);
	assert.equal(pods, "pod/api-7d9f");
	const events = await asLee(["-n", "payments", "get", "events"]);
	assert.equal(events.code, 0, events.stderr);

	const del = await asLee(["delete", "namespace", "payments", "--wait=false"]);
	assert.notEqual(del.code, 0);
	assert.match(del.stderr, /Forbidden|forbidden/);
	assert.match(del.stderr, /no-namespace-delete|not granted|grant/, del.stderr);
	assert.equal((await stack.kube.request("GET", "/api/v1/namespaces/payments")).status, 200, "namespace still there");

	const other = await asLee(["-n", "default", "get", "pods"]);
	assert.notEqual(other.code, 0, "namespace outside the grant");
	assert.match(other.stderr, /Forbidden|forbidden/, other.stderr);
	const secrets = await asLee(["-n", "payments", "get", "secrets"]);
	assert.notEqual(secrets.code, 0, "secrets are not in the grant's resources (the cluster's RBAC would allow them)");
	assert.match(secrets.stderr, /Forbidden|forbidden/, secrets.stderr);
});

test("journey 4 on these requests: recorded, linked to PR #2291, the refused delete visible, verified", { timeout: 240_000 }, async () => {
	assert.ok(leeKubeconfig);
	const env = { DRAWBRIDGE_RECORDINGS_DIR: join(stack.dir, "recordings") };
	const listed = await waitFor("kube sessions recorded", async () => {
		const r = await drawbridge(["recordings", "list", "--connection", "payments-cluster", "--blocked", "--json"], env);
		return r.code === 0 ? r.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as { sessionId: string; pullRequest?: unknown; protocol?: string }) : undefined;
	}, 150_000, 1_000); // the gateway closes a per-identity Kubernetes session after 60 s without requests
	assert.ok(listed.length >= 1);
	for (const s of listed) {
		assert.equal(String(s.pullRequest), String(PR));
		assert.equal(s.protocol, "kubernetes");
	}
	const shows = await Promise.all(listed.map((s) => drawbridge(["recordings", "show", s.sessionId], env)));
	const all = shows.map((s) => s.stdout).join("\n");
	// Deny by default: namespaces are not among the grant's resources, so the grant refuses the delete
	// before the prod guardrail (no-namespace-delete) would.
	assert.match(all, /KUBE\s+BLOCK\s+delete ns=payments namespaces\/payments rule=grant:platform\/oncall-break-glass-kube\s+→ 403/, all);
	assert.match(all, /KUBE\s+ALLOW\s+list ns=payments pods\s+→ 200/);
	assert.match(all, new RegExp(`PR #${PR}`));
	const verify = await drawbridge(["recordings", "verify", "--all", "--connection", "payments-cluster"], env);
	assert.equal(verify.code, 0, `${verify.stdout}\n${verify.stderr}`);
});
