/**
 * Red team (revocation): a `duration` grant counted from its approving commit's committer time, which
 * whoever makes the commit writes. A fast-forward merge keeps the contributor's commit, so a grant
 * committed with GIT_COMMITTER_DATE a month ahead was Pending for a month and then Active for its
 * duration: access long after the reviewers expected it to end. Now a window starts no later than
 * when the operator first saw the commit (status.origin.firstSeenAt, kept across syncs and operator
 * restarts); an earlier committer time is taken as written (it only shortens the window).
 * Real git over HTTP, real kube-apiserver, real PostgreSQL.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Operator } from "../../operator/operator.ts";
import { printLogsOnFailure } from "../env/index.ts";
import {
	type Env,
	connectionYaml,
	getGrant,
	gitSourceYaml,
	grantYaml,
	kubectlOk,
	pushWebhook,
	pushWebhookWhenKnown,
	startEnv,
	startOperator,
	stopEnv,
	waitFor,
} from "./helpers.ts";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

interface Status {
	phase?: string;
	notBefore?: string;
	expiresAt?: string;
	origin?: { commit?: string; committedAt?: string; firstSeenAt?: string };
	credential?: { expiresAt?: string };
}

/** Git's own date format (`<unix seconds> <offset>`), as GIT_COMMITTER_DATE takes it. */
function gitDate(d: Date): string {
	return `${Math.floor(d.getTime() / 1000)} +0000`;
}

let env: Env;
let op: Operator;

before(async () => {
	env = await startEnv();
	op = await startOperator(env, "op-future-date");
	await waitFor("leadership", async () => op.isLeader(), 15_000);
});
after(async () => {
	await op?.stop();
	await stopEnv(env);
});
printLogsOnFailure(() => [["kube", env?.kube], ["postgres", env?.pg], ["git", env?.git]]);

async function status(name: string): Promise<Status | undefined> {
	return (await getGrant(env, name))?.status as Status | undefined;
}

test("a grant committed with a committer date in the future starts when the operator first saw it, and stays so", { timeout: 240_000 }, async () => {
	await env.git.mergePullRequest("grants", { number: 1, branch: "conn", title: "Add orders", files: { "grants/orders.yaml": connectionYaml(env) } });
	// Fast-forwarded contributor commits: the branch now carries their committer dates as written.
	const future = new Date(Date.now() + 30 * DAY);
	const past = new Date(Date.now() - 3 * HOUR);
	await env.git.commit("grants", { files: { "grants/bob.yaml": grantYaml("bob", { duration: "2h", subject: "bob" }) }, message: "Grant bob (#2)", date: gitDate(past) });
	const commit = await env.git.commit("grants", { files: { "grants/alice.yaml": grantYaml("alice", { duration: "2h" }) }, message: "Grant alice (#3)", date: gitDate(future) });
	const pushedAt = Date.now();
	await kubectlOk(env.kube, ["apply", "-f", "-"], gitSourceYaml(env));
	assert.equal(await pushWebhookWhenKnown(op.port, "grants"), 202);

	const alice = await waitFor("alice decided", async () => ((await status("alice"))?.phase ? status("alice") : undefined), 60_000);
	assert.ok(alice);
	assert.equal(alice.phase, "Active", `a commit dated ${future.toISOString()} must not postpone (and so extend) the grant: ${JSON.stringify(alice)}`);
	assert.equal(alice.origin?.commit, commit);
	assert.equal(Date.parse(alice.origin!.committedAt!), Math.floor(future.getTime() / 1000) * 1000, "the committer time stays visible as written");
	const seen = Date.parse(alice.origin!.firstSeenAt!);
	assert.ok(seen >= pushedAt - 1000 && seen <= Date.now(), `firstSeenAt ${alice.origin!.firstSeenAt} is when the operator saw the push`);
	assert.equal(alice.notBefore, alice.origin!.firstSeenAt);
	assert.equal(Date.parse(alice.expiresAt!) - seen, 2 * HOUR);
	await waitFor("alice's credential bounded by the same end", async () => {
		const s = await status("alice");
		return s?.credential?.expiresAt && Date.parse(s.credential.expiresAt) <= Date.parse(alice.expiresAt!) ? true : undefined;
	});

	// A committer time in the past is taken as written: bob's two hours ended an hour ago.
	const bob = await waitFor("bob decided", async () => ((await status("bob"))?.phase ? status("bob") : undefined));
	assert.equal(bob?.phase, "Expired", JSON.stringify(bob));
	assert.equal(Date.parse(bob!.notBefore!), Math.floor(past.getTime() / 1000) * 1000);

	// Later syncs and a restarted operator keep the first-seen time (it is in status, not in memory).
	await op.stop();
	op = await startOperator(env, "op-future-date-2");
	await waitFor("leadership again", async () => op.isLeader(), 30_000);
	await env.git.commit("grants", { files: { "grants/notes.yaml": "# unrelated\n" }, message: "notes" });
	assert.equal(await pushWebhookWhenKnown(op.port, "grants"), 202);
	await waitFor("the new head synced", async () => {
		const r = await env.kube.request<{ status?: { lastSyncedCommit?: string } }>("GET", "/apis/access.drawbridge.dev/v1alpha1/namespaces/team/gitsources/grants");
		const head = r.body.status?.lastSyncedCommit;
		return head && head !== commit ? true : undefined;
	}, 30_000);
	assert.equal(await pushWebhook(op.port), 202);
	await new Promise((r) => setTimeout(r, 1500));
	const again = await status("alice");
	assert.equal(again?.phase, "Active");
	assert.equal(again?.origin?.firstSeenAt, alice.origin!.firstSeenAt);
	assert.equal(again?.expiresAt, alice.expiresAt);
});
