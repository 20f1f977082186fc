/**
 * Red-team regression (GitOps, round 11): a tag stood in for the protected branch. The operator asked
 * isomorphic-git for the GitSource's branch by its short name (`main`), and a short name resolves as
 * git resolves it: `refs/tags/main` before `refs/heads/main`. Branch protection (reviews, required
 * checks) covers the branch, not tags, so anyone who may push at all pushed a tag named `main` at an
 * unreviewed commit granting themselves access, and the operator synced it (a fast-forward of what it
 * had synced: no NotFastForward either). The branch is fetched by its full name now, and a GitSource's
 * branch must be a name git accepts as a branch (no `..`, which would climb out of `refs/heads/` in
 * the ref files the fetch writes). A real git-over-HTTP server (git http-backend).
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { isBranchName } from "../../crds/schema/gitsource.ts";
import { fetchBranch, GitFetchError, readSnapshot } from "../../operator/gitsync/repo.ts";
import { type GitServerHandle, printLogsOnFailure, startGitServer } from "../env/index.ts";
import { runOk } from "../env/process.ts";

let git: GitServerHandle;
let cache: string;
const GRANT = (name: string, who: string) =>
	`apiVersion: access.drawbridge.dev/v1alpha1\nkind: AccessGrant\nmetadata:\n  name: ${name}\nspec:\n  connection: orders-prod\n  subjects: [{kind: User, name: ${who}}]\n  postgres: {access: read-write}\n  duration: 8h\n`;

before(async () => {
	git = await startGitServer();
	cache = await mkdtemp(join(tmpdir(), "drawbridge-tag-"));
});
after(async () => {
	await git?.stop();
	if (cache) await rm(cache, { recursive: true, force: true });
});
printLogsOnFailure(() => [["git", git]]);

test("issue gitsource-tag-shadows-branch: a tag named like the branch is not synced in its place", async () => {
	const reviewed = await git.mergePullRequest("grants", { number: 1, branch: "add-alice", files: { "grants/alice.yaml": GRANT("alice", "alice") } });
	// An unreviewed commit on top of main (a fast-forward), pushed as a tag named `main`.
	const unreviewed = await git.commit("grants", { branch: "wip", files: { "grants/mallory.yaml": GRANT("mallory", "mallory") }, message: "grant myself" });
	const work = join(cache, "work");
	await runOk("git", ["clone", "-q", git.authedRepoUrl("grants"), work]);
	await runOk("git", ["-C", work, "fetch", "-q", "origin", "wip"]);
	await runOk("git", ["-C", work, "push", "-q", "origin", `${unreviewed}:refs/tags/main`]);
	assert.equal(await git.head("grants", "main"), reviewed.sha);

	const gitdir = join(cache, "gitdir");
	const head = await fetchBranch(gitdir, { url: git.repoUrl("grants"), branch: "main", timeoutMs: 30_000 });
	assert.equal(head, reviewed.sha, "the tag named main was synced instead of the branch");
	const snap = await readSnapshot(gitdir, head, { path: "grants", repository: git.repoUrl("grants"), branch: "main" });
	assert.deepEqual(snap.files.map((f) => f.path), ["grants/alice.yaml"]);
	// The same branch by its full name.
	assert.equal(await fetchBranch(join(cache, "gitdir-full"), { url: git.repoUrl("grants"), branch: "refs/heads/main", timeoutMs: 30_000 }), reviewed.sha);
});

test("issue gitsource-tag-shadows-branch: a branch name git would not accept is refused before any request", async () => {
	for (const branch of ["../../../../tmp/escape", "main/../../x", "a//b", ".hidden", "x.lock", "-x", "a@{1}", "HEAD", "x/", "refs/heads/../../x"]) {
		const err = await fetchBranch(join(cache, "bad"), { url: git.repoUrl("grants"), branch, timeoutMs: 5_000 }).then(
			() => assert.fail(`${branch} was fetched`),
			(e: unknown) => e,
		);
		assert.ok(err instanceof GitFetchError && err.code === "FETCH_REFUSED", `${branch}: ${String(err)}`);
	}
	for (const ok of ["main", "release/2026.11", "team-a/grants", "v1.x", "feature_x"]) assert.ok(isBranchName(ok), ok);
});
