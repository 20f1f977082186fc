/**
 * Two operator processes at once, the leader killed with SIGKILL in the middle of a sync and restarted:
 * the standby takes over through the Lease and the end state is the same as with one operator — every
 * grant Active, exactly one PostgreSQL role and one token / role Secret per grant, nothing duplicated.
 */
import assert from "node:assert/strict";
import type { ChildProcess } from "node:child_process";
import { after, before, test } from "node:test";
import type pg from "pg";
import { freePort, printLogsOnFailure } from "../env/index.ts";
import { type Env, NS, OP_NS, connectionYaml, getGrant, gitSourceYaml, grantYaml, kubectlOk, pushWebhookWhenKnown, roleCount, spawnOperator, startEnv, stopEnv, waitFor } from "./helpers.ts";

let env: Env;
let admin: pg.Client;
const procs: ChildProcess[] = [];
const outputs: (() => string)[] = [];

before(async () => {
	env = await startEnv();
	admin = await env.pg.connect();
});
after(async () => {
	for (const p of procs) if (p.exitCode === null) p.kill("SIGKILL");
	await admin?.end();
	await stopEnv(env);
});
printLogsOnFailure(() => [["kube", env?.kube], ["git", env?.git], ["operators", { logs: () => outputs.map((o) => o()).join("\n-----\n") }]]);

interface Lease {
	spec: { holderIdentity?: string };
}

async function holder(): Promise<string | undefined> {
	const r = await env.kube.request<Lease>("GET", `/apis/coordination.k8s.io/v1/namespaces/${OP_NS}/leases/drawbridge-operator`);
	return r.status === 200 ? r.body.spec.holderIdentity : undefined;
}

test("two replicas, leader SIGKILLed mid-sync and restarted: same end state, no duplicate roles or Secrets", async () => {
	const ports = { a: await freePort(), b: await freePort() };
	const a = await spawnOperator(env, "op-a", ports.a);
	procs.push(a.proc);
	outputs.push(a.output);
	const b = await spawnOperator(env, "op-b", ports.b);
	procs.push(b.proc);
	outputs.push(b.output);
	const first = await waitFor("a leader", holder, 15_000);
	assert.ok(first === "op-a" || first === "op-b");

	const files: Record<string, string> = { "grants/connection.yaml": connectionYaml(env) };
	const N = 12;
	for (let i = 0; i < N; i++) files[`grants/g${i}.yaml`] = grantYaml(`g${i}`, { subject: `user${i}` });
	await env.git.mergePullRequest("grants", { number: 7, branch: "many", title: "Twelve grants", files });
	await kubectlOk(env.kube, ["apply", "-f", "-"], gitSourceYaml(env));
	// Webhook to the standby: it records the request on the GitSource and the leader syncs.
	const standbyPort = first === "op-a" ? ports.b : ports.a;
	assert.equal(await pushWebhookWhenKnown(standbyPort, "grants"), 202);
	// Kill the leader as soon as the first grants show up (it is mid-sync / mid-reconcile).
	await waitFor("sync under way", async () => (await getGrant(env, "g0")) !== undefined, 20_000, 20);
	const leaderProc = first === "op-a" ? a.proc : b.proc;
	leaderProc.kill("SIGKILL");
	const second = await waitFor("failover", async () => {
		const h = await holder();
		return h && h !== first ? h : undefined;
	}, 20_000, 200);
	assert.notEqual(second, first);
	// Restart the killed replica: it becomes the standby.
	const restarted = await spawnOperator(env, first, first === "op-a" ? ports.a : ports.b);
	procs.push(restarted.proc);
	outputs.push(restarted.output);

	const grants = await waitFor("all grants Active with a role", async () => {
		const gs = await Promise.all(Array.from({ length: N }, (_, i) => getGrant(env, `g${i}`)));
		return gs.every((g) => g?.status?.phase === "Active" && g.status.credential?.username) ? gs : undefined;
	}, 60_000, 250);
	const roles = new Set(grants.map((g) => g!.status!.credential!.username!));
	assert.equal(roles.size, N, "one distinct role per grant");
	assert.deepEqual(await roleCount(admin), [...roles].sort(), "exactly these roles in PostgreSQL, nothing extra");
	const tokenSecrets = await kubectlOk(env.kube, ["get", "secrets", "-n", NS, "-l", "access.drawbridge.dev/credential=token", "-o", "name"]);
	assert.equal(tokenSecrets.trim().split("\n").length, N);
	const roleSecrets = await kubectlOk(env.kube, ["get", "secrets", "-n", OP_NS, "-l", "access.drawbridge.dev/credential=postgres-role", "-o", "name"]);
	assert.equal(roleSecrets.trim().split("\n").length, N);
	for (const g of grants) assert.equal(g!.metadata.finalizers?.filter((f) => f === "access.drawbridge.dev/credentials").length, 1);

	// Every role password in its Secret works (no Secret/role mismatch after the crash).
	for (const g of grants.slice(0, 3)) {
		const s = await env.kube.request<{ data: Record<string, string> }>("GET", `/api/v1/namespaces/${OP_NS}/secrets/${g!.status!.credential!.secretName}`);
		assert.equal(s.status, 200, `${g!.status!.credential!.secretName}: ${s.status} ${JSON.stringify(s.body).slice(0, 300)}`);
		const password = Buffer.from(s.body.data.password!, "base64").toString();
		const c = await env.pg.connect({ user: g!.status!.credential!.username!, password });
		await c.end();
	}

	// Graceful shutdown: SIGTERM makes the leader release the Lease, so the standby takes over before
	// the lease (8 s, renewed every 1 s) could have expired, and the process exits 0. The bound is what
	// the operator guarantees (docs/operations.md): release within --shutdown-grace (2 s) + 1 s even with
	// work stuck in flight, takeover at the standby's next round (1 s). This used to fail now and then
	// at 8-9 s: a renewal in flight during stop() re-took or kept the released Lease
	// (issue-sigterm-lease-held.test.ts).
	const leaderNow = await holder();
	const leaderProc2 = leaderNow === second ? (second === "op-a" ? a.proc : b.proc) : restarted.proc;
	const leaderOut2 = leaderNow === second ? (second === "op-a" ? a.output : b.output) : restarted.output;
	const t0 = Date.now();
	const exited = new Promise<number | null>((r) => leaderProc2.once("exit", (code) => r(code)));
	leaderProc2.kill("SIGTERM");
	const takeover = await waitFor("takeover after release", async () => {
		const h = await holder();
		return h && h !== leaderNow ? Date.now() : undefined;
	}, 15_000, 100);
	assert.ok(takeover - t0 < 7_000, `standby took over ${takeover - t0} ms after SIGTERM`);
	assert.equal(await exited, 0);
	assert.match(leaderOut2(), /"released":true/);
});
