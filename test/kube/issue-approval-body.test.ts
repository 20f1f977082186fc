/**
 * Red-team regressions: an approval covered the URL but not the request body. Through the real
 * gateway to a real kube-apiserver (RBAC: cluster-admin for the agents), with the approvals service
 * the gateway uses:
 * - inside a reuse window, an approved `patch` let the same agent send a different body;
 * - `DELETE …?dryRun=All` with a DeleteOptions body: the approver saw a dry run, the apiserver reads
 *   delete options from the body when there is one (the query is ignored) and deleted for real;
 * - approvers never saw the body at all (a patch's content, a create's object).
 * gateway/kube/README.md, "Approvals and request bodies".
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { ApprovalRequestRecord } from "../../gateway/approvals/types.ts";
import { type KubeListener, startKubeListener } from "../../gateway/kube/listener.ts";
import { issueCert, type KubeHandle, startKube } from "../env/index.ts";
import { approvalService, approver, makeBundle, MemoryRecorder, storeWith, type TokenIssuer, tokenIssuer, waitUntil } from "../ssh/fixtures.ts";
import { httpsText, kubeConnection, kubeCredentials, userGrant } from "./fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
const recorder = new MemoryRecorder();
const approvals = approvalService();


interface Reply {
	status: number;
	text: string;
	drawbridge: boolean;
}

async function send(method: string, path: string, body?: string, contentType = "application/merge-patch+json"): Promise<Reply> {
	const token = await issuer.token("agent", { groups: ["agents"] });
	return httpsText(
		{
			hostname: "127.0.0.1",
			port: gw.address.port,
			method,
			path: `/k8s/cluster-prod${path}`,
			ca: kube.caPem,
			// Node sends a DELETE body unframed unless told its length.
			headers: {
				authorization: `Bearer ${token}`,
				...(body !== undefined ? { "content-type": contentType, "content-length": String(Buffer.byteLength(body)) } : {}),
			},
		},
		body,
	);
}

/** The next Pending approval for `rule` not in `seen`. */
async function nextPending(rule: string, seen: Set<string>): Promise<ApprovalRequestRecord> {
	let hit: ApprovalRequestRecord | undefined;
	await waitUntil(`a pending approval for ${rule}`, () => {
		void approvals.list({ phase: "Pending" }).then((l) => {
			hit ??= l.find((a) => a.rule === rule && !seen.has(a.id));
		});
		return hit !== undefined;
	});
	seen.add(hit!.id);
	return hit!;
}

const configMap = async (name: string, data: Record<string, string>) => {
	const r = await kube.request("POST", "/api/v1/namespaces/payments/configmaps", { apiVersion: "v1", kind: "ConfigMap", metadata: { name }, data });
	assert.equal(r.status, 201);
};

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	await kube.createNamespace("payments");
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	const cert = await issueCert(kube.ca, { cn: "drawbridge-gateway", ips: ["127.0.0.1"], dns: ["localhost"], name: "gateway-kube-approval-body" });
	const connection = kubeConnection(kube);
	const approval = { approvers: [{ kind: "User" as const, name: "sam" }], minApprovals: 1, timeoutSeconds: 60, reuseWindowSeconds: 300 };
	const store = storeWith(
		makeBundle(issuer, {
			connections: [connection],
			grants: [{ ...userGrant("agent", { namespaces: ["payments"], verbs: ["*"], resources: ["*"] }) }],
			guardrailPolicies: [
				{
					key: "ops/kube-prod",
					selector: { matchLabels: { env: "prod" } },
					rules: [
						{ name: "approve-patch", action: "requireApproval", kubernetes: { verbs: ["patch", "update", "create"], resources: ["configmaps", "secrets"] }, approval },
						{ name: "approve-delete", action: "requireApproval", kubernetes: { verbs: ["delete"], resources: ["configmaps"] }, approval },
					],
				},
			],
			credentials: kubeCredentials(kube),
		}),
	);
	gw = await startKubeListener({ store, recorder, approvals, tls: { certPem: cert.certPem, keyPem: cert.keyPem }, sessionIdleMs: 500 });
});

after(async () => {
	await gw?.close();
	await kube?.stop();
});

describe("an approval is bound to the request body", () => {
	const seen = new Set<string>();

	test("a patch approved inside a reuse window does not carry a different body", async () => {
		await configMap("feature-flags", { mode: "safe" });
		const url = "/api/v1/namespaces/payments/configmaps/feature-flags";
		const first = send("PATCH", url, JSON.stringify({ data: { mode: "canary" } }));
		const a = await nextPending("approve-patch", seen);
		// The approver sees what the patch does.
		assert.match(a.command, /"mode":"canary"/);
		assert.match(a.command, /application\/merge-patch\+json/);
		await approvals.decide(a.id, approver("sam"), "approve");
		assert.equal((await first).status, 200);
		// The same body again inside the window: reused, no new request.
		const again = await send("PATCH", url, JSON.stringify({ data: { mode: "canary" } }));
		assert.equal(again.status, 200, again.text);
		// A different body on the same URL: a new approval, which the approver denies.
		const evil = send("PATCH", url, JSON.stringify({ data: { mode: "everything-off" } }));
		const b = await nextPending("approve-patch", seen);
		assert.match(b.command, /everything-off/);
		await approvals.decide(b.id, approver("sam"), "deny");
		const r = await evil;
		assert.equal(r.status, 403, r.text);
		assert.ok(r.drawbridge, r.text);
		const cm = await kube.request<{ data: Record<string, string> }>("GET", `${url}`);
		assert.equal(cm.body.data["mode"], "canary");
	});

	test("DELETE ?dryRun=All with a DeleteOptions body: the approver sees the body and that the query is ignored", async () => {
		await configMap("payments-routing", { k: "v" });
		const url = "/api/v1/namespaces/payments/configmaps/payments-routing?dryRun=All";
		const held = send("DELETE", url, JSON.stringify({ kind: "DeleteOptions", apiVersion: "v1" }), "application/json");
		const a = await nextPending("approve-delete", seen);
		assert.match(a.command, /DeleteOptions/);
		assert.match(a.command, /ignores? .*query/);
		await approvals.decide(a.id, approver("sam"), "deny");
		assert.equal((await held).status, 403);
		assert.equal((await kube.request("GET", "/api/v1/namespaces/payments/configmaps/payments-routing")).status, 200);
	});

	test("a body over 3 MiB held for approval is refused (413) before anyone is asked", async () => {
		const before = (await approvals.list()).length;
		const big = JSON.stringify({ data: { blob: "x".repeat(3 * 1024 * 1024) } });
		const r = await send("PATCH", "/api/v1/namespaces/payments/configmaps/feature-flags", big);
		assert.equal(r.status, 413, r.text.slice(0, 300));
		assert.ok(r.drawbridge);
		assert.equal((await approvals.list()).length, before);
	});

	test("a Secret's values are masked in the command approvers see", async () => {
		const held = send(
			"POST",
			"/api/v1/namespaces/payments/secrets",
			JSON.stringify({ apiVersion: "v1", kind: "Secret", metadata: { name: "db" }, stringData: { password: "hunter2-canary" } }),
			"application/json",
		);
		const a = await nextPending("approve-patch", seen);
		assert.doesNotMatch(a.command, /hunter2-canary/);
		assert.match(a.command, /<masked>/);
		await approvals.decide(a.id, approver("sam"), "approve");
		assert.equal((await held).status, 201);
		const s = await kube.request<{ data: Record<string, string> }>("GET", "/api/v1/namespaces/payments/secrets/db");
		assert.equal(Buffer.from(s.body.data["password"]!, "base64").toString(), "hunter2-canary");
	});
});
