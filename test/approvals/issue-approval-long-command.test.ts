/**
 * Red-team regression (approvals): with ApprovalRequests in Kubernetes, a command longer than the CRD's
 * 16384 characters was stored cut (`…` after 16383 characters). Approvers — web page, CLI, Slack,
 * `kubectl get ar` — all read the stored request, so they decided on a prefix, while the data path ran
 * the whole command: `DELETE FROM ledger WHERE id = 1` + a 16 KB SQL comment + `; DELETE FROM ledger` showed
 * a one-row delete and emptied the table once approved. A command that cannot be shown whole is now
 * refused before anyone is asked (both stores, so they behave the same). Real PostgreSQL through the
 * gateway, ApprovalRequests on a real kube-apiserver.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { KubeConfig } from "@kubernetes/client-node";
import type pg from "pg";
import { MAX_COMMAND_CHARS } from "../../gateway/approvals/decision.ts";
import { ApprovalError } from "../../gateway/approvals/errors.ts";
import { KubeApprovalStore } from "../../gateway/approvals/kube-store.ts";
import { LocalApprovalStore } from "../../gateway/approvals/local-store.ts";
import { StoreApprovalService } from "../../gateway/approvals/service.ts";
import { type KubeHandle, startKube } from "../env/index.ts";
import { APPROVER_SAM, type Fixture, startFixture } from "../postgres/fixture.ts";
import { input } from "./fixtures.ts";

const NS = "drawbridge";
let kube: KubeHandle;
let fx: Fixture;
let approvals: StoreApprovalService;

before(async () => {
	kube = await startKube();
	const apply = await kube.kubectl(["apply", "-f", new URL("../../crds/access.drawbridge.dev_approvalrequests.yaml", import.meta.url).pathname]);
	assert.equal(apply.code, 0, apply.stderr);
	const est = await kube.kubectl(["wait", "--for=condition=Established", "--timeout=60s", "crd/approvalrequests.access.drawbridge.dev"]);
	assert.equal(est.code, 0, est.stderr);
	await kube.createNamespace(NS);
	const kc = new KubeConfig();
	kc.loadFromOptions({
		clusters: [{ name: "test", server: kube.url, caData: Buffer.from(kube.caPem).toString("base64") }],
		users: [{ name: "gateway", token: kube.adminToken }],
		contexts: [{ name: "test", cluster: "test", user: "gateway", namespace: NS }],
		currentContext: "test",
	});
	approvals = new StoreApprovalService({ store: new KubeApprovalStore({ kubeConfig: kc, namespace: NS }), sweepIntervalMs: 0, waitPollIntervalMs: 200 });
	fx = await startFixture({
		approvals,
		guardrails: [
			{
				name: "approve-ledger-deletes",
				action: "requireApproval",
				sql: { statementKinds: ["DELETE"], tables: ["ledger"] },
				approval: { approvers: [{ kind: "Group", name: "dba" }], minApprovals: 1, timeoutSeconds: 30 },
			},
		],
	});
	await fx.pg.query("create table if not exists ledger (id int primary key)");
	await fx.pg.query("delete from ledger");
	await fx.pg.query("insert into ledger select g from generate_series(1, 5) g");
});
after(async () => {
	await fx?.stop();
	await approvals?.close();
	await kube?.stop();
});

test("a statement longer than approvers can be shown is refused, not approved on its first 16 KB", async () => {
	const sql = `DELETE FROM ledger WHERE id = 1 /* ${"x".repeat(MAX_COMMAND_CHARS)} */; DELETE FROM ledger`;
	const c = await fx.connect("alice");
	const shown: string[] = [];
	let done = false;
	try {
		const q = c.query(sql);
		q.then(
			() => (done = true),
			() => (done = true),
		);
		// An approver approves whatever appears: what they were shown is checked below.
		const end = Date.now() + 20_000;
		while (!done && Date.now() < end) {
			for (const r of await approvals.list({ phase: "Pending" })) {
				shown.push(r.command);
				await approvals.decide(r.id, APPROVER_SAM, "approve").catch(() => undefined);
			}
			await new Promise((r) => setTimeout(r, 100));
		}
		await assert.rejects(q, (e: pg.DatabaseError) => e.code === "42501" && /at most 16384/.test(e.message));
		for (const s of shown) assert.equal(s, sql, "approvers were shown the whole command");
		assert.deepEqual(shown, [], "nobody was asked");
		const left = await fx.pg.query("select count(*)::int as n from ledger");
		assert.equal((left.rows[0] as { n: number }).n, 5, "nothing was deleted");
	} finally {
		await c.end();
	}
});

test("both stores refuse the command before creating anything", async () => {
	const long = input({ command: `DELETE FROM tickets WHERE id = 1 -- ${"x".repeat(MAX_COMMAND_CHARS)}\n; DELETE FROM tickets` });
	const local = new StoreApprovalService({ store: new LocalApprovalStore(), sweepIntervalMs: 0 });
	try {
		for (const service of [approvals, local]) {
			const before = (await service.list()).length;
			await assert.rejects(service.request(long), (e: unknown) => e instanceof ApprovalError && e.code === "bad-request");
			assert.equal((await service.list()).length, before);
			// exactly the limit is still accepted, whole
			const fits = await service.request(input({ command: "x".repeat(MAX_COMMAND_CHARS), sessionId: "fits" }));
			assert.equal((await service.get(fits.id))?.command.length, MAX_COMMAND_CHARS);
		}
	} finally {
		await local.close();
	}
});
