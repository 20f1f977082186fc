/**
 * Red-team regression (GitOps, round 10): with `trustedKeys`, only the head commit's signature was
 * checked. A direct push that skipped review (an unsigned commit adding a grant) was refused while it
 * was the head, and applied as soon as the next reviewed, signed merge landed on top of it (or when
 * both reached the server between two syncs): the merge bot signs its merge, not the commit below it.
 * Every commit the branch gains on its first-parent chain since the last synced commit must now be
 * signed by a trusted key (the commits of a merged branch come in through the signed merge). Real
 * operator, git server (real `git` and `gpg`) and kube-apiserver.
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { Operator } from "../../operator/operator.ts";
import { makeTempDir, printLogsOnFailure, runOk } from "../env/index.ts";
import { type Env, NS, getGrant, gitSourceYaml, grantYaml, kubectlOk, pushWebhook, pushWebhookWhenKnown, startEnv, startOperator, stopEnv, waitFor } from "./helpers.ts";

let env: Env;
let op: Operator;

before(async () => {
	env = await startEnv();
	op = await startOperator(env, "op-unsigned-below");
	await waitFor("leadership", async () => op.isLeader(), 15_000);
});
after(async () => {
	await op?.stop();
	await stopEnv(env);
});
printLogsOnFailure(() => [["kube", env?.kube], ["git", env?.git]]);

interface GsStatus {
	lastSyncedCommit?: string;
	lastAttemptedCommit?: string;
	conditions?: { type: string; status: string; reason: string; message: string }[];
}

async function gitSource(name: string): Promise<GsStatus> {
	const r = await env.kube.request<{ status?: GsStatus }>("GET", `/apis/access.drawbridge.dev/v1alpha1/namespaces/${NS}/gitsources/${name}`);
	return r.body.status ?? {};
}

test("issue unsigned-commit-under-signed-head: a direct push below a signed merge grants nothing", async (t) => {
	const dir = makeTempDir("pgp-below");
	const home = join(dir, "gnupg");
	mkdirSync(home, { mode: 0o700 });
	const genv = { ...process.env, GNUPGHOME: home, GIT_AUTHOR_NAME: "Merge Bot", GIT_AUTHOR_EMAIL: "merge@example.com", GIT_COMMITTER_NAME: "Merge Bot", GIT_COMMITTER_EMAIL: "merge@example.com" };
	await runOk("gpg", ["--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", "Merge Bot <merge@example.com>", "ed25519", "sign", "never"], { env: genv });
	const armored = (await runOk("gpg", ["--armor", "--export", "merge@example.com"], { env: genv })).stdout;
	await env.git.createRepo("below");
	const work = join(dir, "work");
	await runOk("git", ["clone", "-q", env.git.authedRepoUrl("below"), work], { env: genv });
	const g = async (...args: string[]) => (await runOk("git", ["-C", work, "-c", "gpg.program=gpg", ...args], { env: genv })).stdout.trim();
	mkdirSync(join(work, "grants"), { recursive: true });
	writeFileSync(join(work, "grants", "keep.yaml"), grantYaml("below-keep", { subject: "carol" }));
	await g("add", ".");
	await g("commit", "-q", "-Smerge@example.com", "-m", "Merge pull request #90 from org/keep");
	await g("push", "-q", "origin", "main");
	const reviewed = await g("rev-parse", "HEAD");

	const keys = `  trustedKeys:\n    - name: merge-bot\n      publicKey: |\n${armored.trim().split("\n").map((l) => `        ${l}`).join("\n")}\n`;
	await kubectlOk(env.kube, ["apply", "-f", "-"], gitSourceYaml(env, "below").replace("/grants.git", "/below.git") + keys);
	t.after(() => kubectlOk(env.kube, ["delete", "gitsource", "below", "-n", NS]).then(() => undefined));
	assert.equal(await pushWebhookWhenKnown(op.port, "below"), 202);
	await waitFor("below-keep applied", async () => (await getGrant(env, "below-keep")) !== undefined, 30_000);
	await waitFor("synced", async () => (await gitSource("below")).lastSyncedCommit === reviewed, 30_000);

	// A direct push, unsigned (nobody reviewed it), then a reviewed merge signed by the bot on top.
	writeFileSync(join(work, "grants", "sneaky.yaml"), grantYaml("below-sneaky", { subject: "mallory" }));
	await g("add", ".");
	await g("-c", "commit.gpgsign=false", "commit", "-q", "-m", "tweak");
	const unsigned = await g("rev-parse", "HEAD");
	writeFileSync(join(work, "grants", "next.yaml"), grantYaml("below-next", { subject: "erin" }));
	await g("add", ".");
	await g("commit", "-q", "-Smerge@example.com", "-m", "Merge pull request #91 from org/next");
	await g("push", "-q", "origin", "main");
	const head = await g("rev-parse", "HEAD");
	assert.equal(await pushWebhook(op.port, "below"), 202);

	// Before: the signed head was all that was checked, and below-sneaky (and below-next) were applied.
	const s = await waitFor("UntrustedCommit", async () => {
		const st = await gitSource("below");
		return st.lastAttemptedCommit === head && st.conditions?.find((c) => c.type === "Ready" && c.reason === "UntrustedCommit") ? st : undefined;
	}, 30_000);
	const cond = s.conditions!.find((c) => c.type === "Ready")!;
	assert.equal(cond.status, "False");
	assert.ok(cond.message.includes(unsigned.slice(0, 12)) && /not signed/.test(cond.message), cond.message);
	assert.equal(s.lastSyncedCommit, reviewed, "the last good commit stays in force");
	await op.idle();
	assert.equal(await getGrant(env, "below-sneaky"), undefined, "the unreviewed grant was not applied");
	assert.equal(await getGrant(env, "below-next"), undefined, "nothing of the refused range was applied");
	assert.ok(await getGrant(env, "below-keep"), "nothing was pruned");

	// Recovery: the branch rewritten without the direct push. The operator never synced past it, so the
	// new head descends from the last synced commit: no allowForcePush needed.
	await g("reset", "-q", "--hard", reviewed);
	writeFileSync(join(work, "grants", "next.yaml"), grantYaml("below-next", { subject: "erin" }));
	await g("add", ".");
	await g("commit", "-q", "-Smerge@example.com", "-m", "Merge pull request #91 from org/next");
	await g("push", "-q", "--force", "origin", "main");
	assert.equal(await pushWebhook(op.port, "below"), 202);
	await waitFor("below-next applied", async () => (await getGrant(env, "below-next")) !== undefined, 30_000);
	assert.equal(await getGrant(env, "below-sneaky"), undefined);
});
