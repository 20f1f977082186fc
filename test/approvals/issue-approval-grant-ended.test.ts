/**
 * Red-team regression (approvals): a Kubernetes request held for approval outlived its grant. The hold
 * can last the rule's whole timeout (up to a day); when the grant was revoked (perhaps because of that
 * very request) or expired meanwhile, the request stayed Pending for approvers, and an approval given
 * afterwards forwarded it to the apiserver under the ended grant's impersonation. PostgreSQL and SSH
 * sessions already end with their grant (and a held command with them); a Kubernetes request is not a
 * session. Now the grant ending cancels the hold, and an approval that comes anyway (or races the
 * end) does not release the request; nor does it release one a rule merged meanwhile blocks. Real
 * gateway, real kube-apiserver, the approvals service the gateway uses.
 */
import assert from "node:assert/strict";
import https from "node:https";
import { after, before, test } from "node:test";
import type { BundleGrant, ConfigBundle } from "../../gateway/config/bundle.ts";
import type { BundleStore } from "../../gateway/config/store.ts";
import type { ApprovalRequestRecord } from "../../gateway/approvals/types.ts";
import { type KubeListener, startKubeListener } from "../../gateway/kube/listener.ts";
import { issueCert, type KubeHandle, startKube } from "../env/index.ts";
import { kubeConnection, userGrant } from "../kube/fixtures.ts";
import { approvalService, approver, makeBundle, MemoryRecorder, storeWith, type TokenIssuer, tokenIssuer, waitUntil } from "../ssh/fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
let store: BundleStore;
let parts: (grants: BundleGrant[], blockDeletes?: boolean) => Partial<ConfigBundle>;
const recorder = new MemoryRecorder();
const approvals = approvalService();
const sam = approver("sam");

const grantFor = (name: string, expiresInMs = 3_600_000): BundleGrant => ({
	...userGrant(name, { namespaces: ["payments"], verbs: ["*"], resources: ["*"] }),
	expiresAt: new Date(Date.now() + expiresInMs).toISOString(),
});

function push(grants: BundleGrant[], blockDeletes = false): void {
	assert.ok(store.update(makeBundle(issuer, parts(grants, blockDeletes), store.current.version + 1)));
}

interface Reply {
	status: number;
	text: string;
}

async function del(user: string, name: string): Promise<Reply> {
	const token = await issuer.token(user, { groups: ["agents"] });
	return new Promise((resolve, reject) => {
		const req = https.request(
			{
				hostname: "127.0.0.1",
				port: gw.address.port,
				method: "DELETE",
				path: `/k8s/cluster-prod/api/v1/namespaces/payments/configmaps/${name}`,
				ca: kube.caPem,
				headers: { authorization: `Bearer ${token}` },
			},
			(res) => {
				let text = "";
				res.on("data", (c: Buffer) => (text += c.toString()));
				res.on("end", () => resolve({ status: res.statusCode ?? 0, text }));
			},
		);
		req.on("error", reject);
		req.end();
	});
}

async function pendingFor(name: string): Promise<ApprovalRequestRecord> {
	let hit: ApprovalRequestRecord | undefined;
	await waitUntil(`a pending approval for configmaps/${name}`, () => {
		void approvals.list({ phase: "Pending" }).then((l) => {
			hit ??= l.find((a) => a.command.includes(`/configmaps/${name}`));
		});
		return hit !== undefined;
	});
	return hit!;
}

async function configMapExists(name: string): Promise<boolean> {
	const r = await kube.request("GET", `/api/v1/namespaces/payments/configmaps/${name}`);
	return r.status === 200;
}

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	await kube.createNamespace("payments");
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	for (const name of ["ledger-a", "ledger-b", "ledger-c"]) {
		const r = await kube.request("POST", "/api/v1/namespaces/payments/configmaps", { apiVersion: "v1", kind: "ConfigMap", metadata: { name }, data: { k: "v" } });
		assert.equal(r.status, 201);
	}
	const cert = await issueCert(kube.ca, { cn: "drawbridge-gateway", ips: ["127.0.0.1"], dns: ["localhost"], name: "gateway-kube-approval-grant-end" });
	const connection = kubeConnection(kube);
	parts = (grants, blockDeletes = false) => ({
		connections: [connection],
		grants,
		guardrailPolicies: [
			{
				key: "ops/kube-prod",
				selector: { matchLabels: { env: "prod" } },
				rules: [
					...(blockDeletes ? [{ name: "no-deletes", action: "block" as const, kubernetes: { verbs: ["delete"], resources: ["configmaps"] } }] : []),
					{
						name: "approve-delete",
						action: "requireApproval",
						kubernetes: { verbs: ["delete"], resources: ["configmaps"] },
						approval: { approvers: [{ kind: "User", name: "sam" }], minApprovals: 1, timeoutSeconds: 120 },
					},
				],
			},
		],
		credentials: { "kube-gw": { type: "kubernetes", clientCertPem: kube.adminCertPem, clientKeyPem: kube.adminKeyPem } },
	});
	store = storeWith(makeBundle(issuer, parts([grantFor("rita"), grantFor("eve", 6_000)])));
	gw = await startKubeListener({ store, recorder, approvals, tls: { certPem: cert.certPem, keyPem: cert.keyPem }, sessionIdleMs: 500 });
});

after(async () => {
	await gw?.close();
	await approvals.close();
	await kube?.stop();
});

test("a request held when its grant is revoked is not released by a later approval", async () => {
	const reply = del("rita", "ledger-a");
	const held = await pendingFor("ledger-a");
	// The grant is revoked while the DELETE waits (eve's grant stays, as does every other bundle part).
	push([grantFor("eve", 3_600_000)]);
	// Give the cancel a moment to land (before the fix the request just stayed Pending), then the
	// approver, not knowing, approves. Refused (cancelled) or recorded: either way the DELETE must not
	// reach the apiserver.
	const end = Date.now() + 3_000;
	while (Date.now() < end && (await approvals.get(held.id))?.phase === "Pending") await new Promise((r) => setTimeout(r, 50));
	await approvals.decide(held.id, sam, "approve").catch(() => undefined);
	const r = await reply;
	assert.equal(r.status, 403, r.text);
	assert.match(r.text, /grant ops\/rita was revoked/);
	assert.ok(await configMapExists("ledger-a"), "the held DELETE did not run");
	assert.equal((await approvals.get(held.id))?.phase, "Cancelled", "approvers no longer see it pending");
});

test("a request held past its grant's expiry is not released by a later approval", async () => {
	// eve's grant (re-pushed above with an hour) is replaced by one that ends in 3 s.
	push([grantFor("eve", 3_000)]);
	const reply = del("eve", "ledger-b");
	const held = await pendingFor("ledger-b");
	await waitUntil("eve's grant to expire", () => Date.now() > Date.parse(store.current.grantsByKey.get("ops/eve")!.expiresAt) + 200);
	await approvals.decide(held.id, sam, "approve").catch(() => undefined);
	const r = await reply;
	assert.equal(r.status, 403, r.text);
	assert.match(r.text, /grant ops\/eve expired/);
	assert.ok(await configMapExists("ledger-b"), "the held DELETE did not run");
});

test("a block rule merged while a request waits wins over a later approval", async () => {
	push([grantFor("rita", 3_600_000)]);
	const reply = del("rita", "ledger-c");
	const held = await pendingFor("ledger-c");
	// The grant stays; a policy blocking the DELETE is merged; the approver approves under the old rules.
	const g = store.current.grantsByKey.get("ops/rita")!;
	assert.ok(store.update(makeBundle(issuer, { ...parts([], true), grants: [g] }, store.current.version + 1)));
	await approvals.decide(held.id, sam, "approve");
	const r = await reply;
	assert.equal(r.status, 403, r.text);
	assert.match(r.text, /no-deletes|blocked/);
	assert.ok(await configMapExists("ledger-c"), "the held DELETE did not run");
});
