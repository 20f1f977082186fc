/**
 * The hostile-repository findings of issue-gitops-hostile-repo.test.ts through a real operator, git
 * server and kube-apiserver: one merge carrying a grant for another namespace, a grant forging its
 * pull request, a grant lasting until 2999, two files of 2 000 broken documents each and a file name with ANSI
 * escapes. The valid grant next to them still becomes Active; each broken resource is named in
 * status.errors; the far-future grant is Invalid with a precise condition; Warning Events stay bounded.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { printLogsOnFailure } from "../env/index.ts";
import type { Operator } from "../../operator/operator.ts";
import { MAX_EVENTS_PER_SYNC } from "../../operator/reconcile/gitsource.ts";
import { type Env, NS, connectionYaml, getGrant, gitSourceYaml, grantYaml, kubectlOk, pushWebhook, pushWebhookWhenKnown, startEnv, startOperator, stopEnv, waitFor } from "./helpers.ts";

let env: Env;
let op: Operator;

before(async () => {
	env = await startEnv();
	await env.kube.createNamespace("payments");
	op = await startOperator(env, "op-hostile");
	await waitFor("leadership", async () => op.isLeader(), 15_000);
});
after(async () => {
	await op?.stop();
	await stopEnv(env);
});
printLogsOnFailure(() => [["kube", env?.kube], ["git", env?.git]]);

test("a hostile merge: the valid grant is Active, every hostile resource is refused precisely, Events stay bounded", async () => {
	const inPayments = grantYaml("steal-payments").replace("  name: steal-payments\n", "  name: steal-payments\n  namespace: payments\n");
	const forged = grantYaml("forged-pr").replace("  name: forged-pr\n", "  name: forged-pr\n  annotations:\n    access.drawbridge.dev/pull-request: \"4242\"\n");
	await env.git.mergePullRequest("grants", {
		number: 7,
		branch: "hostile",
		files: {
			"grants/orders.yaml": connectionYaml(env),
			"grants/alice.yaml": grantYaml("alice-orders"),
			"grants/payments.yaml": inPayments,
			"grants/forged.yaml": forged,
			"grants/forever.yaml": grantYaml("forever", { expiresAt: "2999-01-01T00:00:00Z" }),
			"grants/many.yaml": "---\n{}\n".repeat(2000),
			"grants/many-more.yaml": "---\n{}\n".repeat(2000),
			"grants/\u001b[31mred.yaml": grantYaml("ansi"),
		},
	});
	await kubectlOk(env.kube, ["apply", "-f", "-"], gitSourceYaml(env));
	assert.equal(await pushWebhookWhenKnown(op.port, "grants"), 202);

	await waitFor("alice Active", async () => (await getGrant(env, "alice-orders"))?.status?.phase === "Active", 30_000);
	const forever = await waitFor("forever Invalid", async () => {
		const g = await getGrant(env, "forever");
		return g?.status?.phase === "Invalid" ? g : undefined;
	});
	const ready = forever.status!.conditions!.find((c) => c.type === "Ready") as { reason: string; message?: string } | undefined;
	assert.equal(ready?.reason, "InvalidSpec");
	assert.match(ready?.message ?? "", /cannot last longer than 90 days/);

	const gs = await waitFor("status.errors", async () => {
		const r = await env.kube.request<{ status?: { errors?: { path: string; line?: number; message: string }[] } }>("GET", `/apis/access.drawbridge.dev/v1alpha1/namespaces/${NS}/gitsources/grants`);
		return (r.body.status?.errors?.length ?? 0) > 0 ? r.body : undefined;
	});
	const errors = gs.status!.errors!;
	const at = (path: string) => errors.filter((e) => e.path === path);
	assert.match(at("grants/payments.yaml")[0]!.message, /outside this GitSource's namespace "team"/);
	assert.match(at("grants/forged.yaml")[0]!.message, /reserved for the operator/);
	assert.equal(at("grants/many.yaml").length, 17);
	assert.match(at("grants/\\u{1b}[31mred.yaml")[0]!.message, /control or invisible characters/);
	for (const e of errors) assert.doesNotMatch(e.path + e.message, /\u001b/);

	const r = await env.kube.request<{ items: unknown[] }>("GET", "/apis/access.drawbridge.dev/v1alpha1/namespaces/payments/accessgrants");
	assert.equal(r.body.items.length, 0, "nothing written into another team's namespace");
	assert.equal(await getGrant(env, "forged-pr"), undefined);
	assert.equal(await getGrant(env, "ansi"), undefined);

	await op.idle();
	const messages = (await kubectlOk(env.kube, ["get", "events", "-n", NS, "--field-selector", "involvedObject.name=grants,reason=InvalidFile", "-o", "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}"])).trim().split("\n");
	assert.ok(messages.length <= MAX_EVENTS_PER_SYNC + 1, `${messages.length} InvalidFile Events`);
	assert.ok(messages.some((m) => /more new problem\(s\)/.test(m)));
	for (const m of messages) assert.doesNotMatch(m, /\u001b/);

	// A second sync of the same commit adds no InvalidFile Events (every reported problem is in status).
	assert.equal(await pushWebhook(op.port), 202);
	await new Promise((res) => setTimeout(res, 1500));
	await op.idle();
	const again = (await kubectlOk(env.kube, ["get", "events", "-n", NS, "--field-selector", "involvedObject.name=grants,reason=InvalidFile", "-o", "jsonpath={range .items[*]}{.message}{\"\\n\"}{end}"])).trim().split("\n");
	assert.equal(again.length, messages.length);
});
