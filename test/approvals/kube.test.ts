/**
 * ApprovalRequests on a REAL kube-apiserver (test/env startKube) with the api engineer's CRD, two
 * gateway "replicas" (two StoreApprovalService + KubeApprovalStore instances, each with its own client
 * and watch) authenticated as the gateway's service account with exactly the RBAC docs/approvals.md
 * lists. Approvers: real OIDC ID tokens (startOidc) and real service-account tokens (TokenRequest),
 * verified by the identity module.
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { KubeConfig } from "@kubernetes/client-node";
import Fastify, { type FastifyInstance } from "fastify";
import { main } from "../../cli/approvals.ts";
import { ApprovalError } from "../../gateway/approvals/errors.ts";
import { KubeApprovalStore } from "../../gateway/approvals/kube-store.ts";
import { registerApprovalRoutes, verifierAuthenticator } from "../../gateway/approvals/routes.ts";
import { StoreApprovalService } from "../../gateway/approvals/service.ts";
import type { ApprovalRequestRecord } from "../../gateway/approvals/types.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import { type KubeHandle, type OidcHandle, printLogsOnFailure, startKube, startOidc } from "../env/index.ts";
import { human, input } from "./fixtures.ts";

const NS = "drawbridge";
let kube: KubeHandle;
let oidc: OidcHandle;
let verifier: TokenVerifier;
let replicaA: StoreApprovalService;
let replicaB: StoreApprovalService;
let adminB: FastifyInstance;
let gatewayToken: string;
let baseB: string;
const watchErrors: string[] = [];

async function kubectlOk(args: string[], stdin?: string): Promise<string> {
	const r = await kube.kubectl(args, stdin === undefined ? {} : { input: stdin });
	assert.equal(r.code, 0, `kubectl ${args.join(" ")}: ${r.stderr}`);
	return r.stdout;
}

function kubeConfigFor(token: string): KubeConfig {
	const kc = new KubeConfig();
	kc.loadFromOptions({
		clusters: [{ name: "test", server: kube.url, caData: Buffer.from(kube.caPem).toString("base64") }],
		users: [{ name: "gateway", token }],
		contexts: [{ name: "test", cluster: "test", user: "gateway", namespace: NS }],
		currentContext: "test",
	});
	return kc;
}

before(async () => {
	[kube, oidc] = await Promise.all([startKube(), startOidc()]);
	await kubectlOk(["apply", "-f", new URL("../../crds/access.drawbridge.dev_approvalrequests.yaml", import.meta.url).pathname]);
	await kubectlOk(["wait", "--for=condition=Established", "--timeout=60s", "crd/approvalrequests.access.drawbridge.dev"]);
	await kube.createServiceAccount(NS, "gateway");
	// The RBAC docs/approvals.md asks for, and nothing more.
	await kubectlOk(
		["apply", "-f", "-"],
		JSON.stringify({
			apiVersion: "v1",
			kind: "List",
			items: [
				{
					apiVersion: "rbac.authorization.k8s.io/v1",
					kind: "Role",
					metadata: { name: "drawbridge-gateway-approvals", namespace: NS },
					rules: [
						{ apiGroups: ["access.drawbridge.dev"], resources: ["approvalrequests"], verbs: ["get", "list", "watch", "create", "delete"] },
						{ apiGroups: ["access.drawbridge.dev"], resources: ["approvalrequests/status"], verbs: ["get", "update"] },
					],
				},
				{
					apiVersion: "rbac.authorization.k8s.io/v1",
					kind: "RoleBinding",
					metadata: { name: "drawbridge-gateway-approvals", namespace: NS },
					roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "drawbridge-gateway-approvals" },
					subjects: [{ kind: "ServiceAccount", name: "gateway", namespace: NS }],
				},
			],
		}),
	);
	gatewayToken = await kube.serviceAccountToken(NS, "gateway", { expirationSeconds: 3600 });
	const replica = () =>
		new StoreApprovalService({
			store: new KubeApprovalStore({ kubeConfig: kubeConfigFor(gatewayToken), namespace: NS, onError: (m) => watchErrors.push(m) }),
			waitPollIntervalMs: 60_000, // prove the watch delivers decisions, not the safety-net poll
			sweepIntervalMs: 0,
			// these tests re-send one command after denying it; the retry limit has its own test
			requestLimits: { deniedRetrySeconds: 0 },
		});
	replicaA = replica();
	replicaB = replica();
	verifier = new TokenVerifier([
		{ name: "oidc", kind: "oidc", issuer: oidc.issuer, audiences: ["drawbridge"], jwksUri: oidc.jwksUri, algorithms: ["RS256"], usernameClaim: "email" },
		{ name: "cluster", kind: "kubernetes", issuer: kube.serviceAccountIssuer, audiences: ["drawbridge"], jwksUri: kube.jwksUri, caPem: kube.caPem, algorithms: ["RS256"] },
	]);
	adminB = Fastify();
	await registerApprovalRoutes(adminB, { service: replicaB, authenticate: verifierAuthenticator(verifier), pages: false });
	await adminB.listen({ port: 0, host: "127.0.0.1" });
	baseB = `http://127.0.0.1:${(adminB.server.address() as AddressInfo).port}`;
});

after(async () => {
	await adminB?.close();
	await replicaA?.close();
	await replicaB?.close();
	await oidc?.stop();
	await kube?.stop();
});
printLogsOnFailure(() => [
	["kube", kube],
	["oidc", oidc],
]);

async function cli(args: string[], token: string) {
	let stdout = "";
	let stderr = "";
	const code = await main([...args, "--server", baseB], { env: { DRAWBRIDGE_TOKEN: token, HOME: "/nonexistent" }, stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) });
	return { code, stdout, stderr };
}

function code(e: unknown): string {
	return e instanceof ApprovalError ? e.code : `unexpected ${String(e)}`;
}

test("replica A holds, replica B (via `drawbridge approvals approve` + OIDC) decides, A's watch resolves", async () => {
	const held = await replicaA.request(input());
	assert.equal((await replicaB.get(held.id))?.phase, "Pending", "B reads what A created");
	const table = await kubectlOk(["get", "approvalrequests", "-n", NS]);
	assert.match(table, /NAME\s+REQUESTER\s+CONNECTION\s+COMMAND\s+PHASE\s+RULE\s+EXPIRES\s+DECIDED\s+AGE/);
	assert.match(table, new RegExp(`${held.id}\\s+system:serviceaccount:support:bot\\s+tickets-prod\\s+DELETE FROM tickets.*Pending`));

	let resolvedAt = 0;
	const waiting = replicaA.waitForDecision(held.id, new AbortController().signal).then((r) => {
		resolvedAt = Date.now();
		return r;
	});
	const samToken = await oidc.idToken("sam");
	const listed = await cli(["list"], samToken);
	assert.match(listed.stdout, new RegExp(`${held.id}\\s+Pending`));
	const approved = await cli(["approve", held.id, "-m", "yearly cleanup"], samToken);
	assert.equal(approved.code, 0, approved.stderr);
	const approvedAt = Date.now();
	const result = await waiting;
	assert.ok(resolvedAt - approvedAt < 5000, `resolved ${resolvedAt - approvedAt} ms after the decision: by the watch, not the 60 s poll`);
	assert.equal(result.phase, "Approved");
	assert.deepEqual(result.decisions.map((d) => [d.decision, d.by, d.comment]), [["approve", "user:sam@example.com", "yearly cleanup"]]);

	const obj = JSON.parse(await kubectlOk(["get", "approvalrequest", held.id, "-n", NS, "-o", "json"])) as {
		status: { phase: string; decisions: { by: string }[]; decidedAt: string; conditions: { type: string; reason: string }[] };
	};
	assert.equal(obj.status.phase, "Approved");
	assert.equal(obj.status.decisions[0]?.by, "user:sam@example.com");
	assert.equal(obj.status.conditions[0]?.reason, "Approved");
});

test("two approvers at once on two replicas: no decision is lost (resourceVersion conflicts retried)", async () => {
	const sam = human("sam@example.com", ["support-leads"]);
	const kim = human("kim@example.com", ["support-leads"]);
	const lee = human("lee@example.com", ["support-leads"]);
	for (let i = 0; i < 3; i++) {
		const held = await replicaA.request(input({ minApprovals: 3, approvers: [{ kind: "Group", name: "support-leads" }, { kind: "User", name: "x" }, { kind: "User", name: "y" }] }));
		await Promise.all([replicaA.decide(held.id, sam, "approve"), replicaB.decide(held.id, kim, "approve"), replicaB.decide(held.id, lee, "approve")]);
		const final = (await replicaA.get(held.id)) as ApprovalRequestRecord;
		assert.equal(final.phase, "Approved", `round ${i}`);
		assert.deepEqual(final.decisions.map((d) => d.by).sort(), ["user:kim@example.com", "user:lee@example.com", "user:sam@example.com"]);
	}
});

test("approve and deny racing on two replicas: exactly one wins, the other gets 409", async () => {
	const sam = human("sam@example.com", ["support-leads"]);
	const kim = human("kim@example.com", ["support-leads"]);
	const held = await replicaA.request(input());
	const results = await Promise.allSettled([replicaA.decide(held.id, sam, "approve"), replicaB.decide(held.id, kim, "deny")]);
	const won = results.filter((r) => r.status === "fulfilled") as PromiseFulfilledResult<ApprovalRequestRecord>[];
	const lost = results.filter((r) => r.status === "rejected") as PromiseRejectedResult[];
	assert.equal(won.length, 1);
	assert.equal(code(lost[0]?.reason), "already-decided");
	const final = await replicaB.get(held.id);
	assert.equal(final?.phase, won[0]?.value.phase);
	assert.equal(final?.decisions.length, 1);
});

test("service-account approver (TokenRequest token) approves; the requesting SA cannot approve itself", async () => {
	const held = await replicaA.request(
		input({ approvers: [{ kind: "ServiceAccount", namespace: "ops", name: "approver-bot" }, { kind: "ServiceAccount", namespace: "support", name: "bot" }] }),
	);
	const botToken = await kube.serviceAccountToken("support", "bot", { audiences: ["drawbridge"] });
	const self = await cli(["approve", held.id], botToken);
	assert.equal(self.code, 1);
	assert.match(self.stderr, /HTTP 403, self-approval/);
	const approverToken = await kube.serviceAccountToken("ops", "approver-bot", { audiences: ["drawbridge"] });
	const ok = await cli(["approve", held.id], approverToken);
	assert.equal(ok.code, 0, ok.stderr);
	assert.equal((await replicaA.get(held.id))?.decisions[0]?.by, "serviceaccount:ops/approver-bot");
});

test("expiry and client disconnect are recorded in the resource; late decisions are refused", async () => {
	const sam = human("sam@example.com", ["support-leads"]);
	const short = await replicaA.request(input({ timeoutSeconds: 2 }));
	const expired = await replicaA.waitForDecision(short.id, new AbortController().signal);
	assert.equal(expired.phase, "Expired");
	await assert.rejects(replicaB.decide(short.id, sam, "approve"), (e: unknown) => code(e) === "expired");
	const late = await cli(["approve", short.id], await oidc.idToken("sam"));
	assert.match(late.stderr, /HTTP 410, expired/);

	const held = await replicaA.request(input());
	const ac = new AbortController();
	const waiting = replicaA.waitForDecision(held.id, ac.signal);
	ac.abort();
	assert.equal((await waiting).phase, "Cancelled");
	assert.match(await kubectlOk(["get", "ar", held.id, "-n", NS]), /Cancelled/);
	await assert.rejects(replicaB.decide(held.id, sam, "approve"), (e: unknown) => code(e) === "already-decided");
});

test("reuse window works across replicas", async () => {
	const sam = human("sam@example.com", ["support-leads"]);
	const first = await replicaA.request(input({ reuseWindowSeconds: 600, command: "DELETE FROM tickets WHERE id = 7" }));
	await replicaB.decide(first.id, sam, "approve");
	const again = await replicaB.request(input({ reuseWindowSeconds: 600, command: "DELETE FROM tickets WHERE id = 7" }));
	assert.equal(again.reusedFrom, first.id);
	assert.equal(again.phase, "Approved");
});

test("issue approval-shared-credential: requester.sharedBy survives the apiserver (structural CRD); no subject of the grant decides on another replica", async () => {
	const sharedBy = [
		{ kind: "User" as const, name: "lee@example.com" },
		{ kind: "Group" as const, name: "oncall" },
	];
	const held = await replicaA.request(
		input({
			requester: { issuer: "https://operator.drawbridge.test", subject: "lee@example.com", username: "lee@example.com", groups: ["oncall"], sharedBy },
			command: "DELETE FROM tickets WHERE id = 9",
		}),
	);
	const seen = await replicaB.get(held.id);
	assert.deepEqual(seen?.requester.sharedBy, sharedBy, "the apiserver kept requester.sharedBy");
	// kim is in the grant's group, so she may hold its token: she cannot decide, whichever replica she asks.
	await assert.rejects(replicaB.decide(held.id, human("kim@example.com", ["support-leads", "oncall"]), "approve"), (e) => code(e) === "self-approval");
	const decided = await replicaB.decide(held.id, human("sam@example.com", ["support-leads"]), "approve");
	assert.equal(decided.phase, "Approved");
});

test("retention sweep deletes decided ApprovalRequests (gateway RBAC includes delete) and expires overdue ones", async (t) => {
	const sam = human("sam@example.com", ["support-leads"]);
	const decided = await replicaA.request(input());
	await replicaB.decide(decided.id, sam, "deny");
	const overdue = await replicaA.request(input({ timeoutSeconds: 1 }));
	await new Promise((r) => setTimeout(r, 1100));
	const errors: string[] = [];
	const janitor = new StoreApprovalService({
		store: new KubeApprovalStore({ kubeConfig: kubeConfigFor(gatewayToken), namespace: NS }),
		sweepIntervalMs: 0,
		retainDecidedMs: 1,
		onError: (m) => errors.push(m),
	});
	t.after(() => janitor.close());
	const first = await janitor.sweep();
	assert.ok(first.expired >= 1, JSON.stringify(first));
	assert.deepEqual(errors, []);
	assert.equal((await replicaA.get(overdue.id))?.phase, "Expired");
	assert.equal(await replicaA.get(decided.id), undefined, "deleted");
	const r = await kube.kubectl(["get", "ar", decided.id, "-n", NS]);
	assert.match(r.stderr, /NotFound/);
});
