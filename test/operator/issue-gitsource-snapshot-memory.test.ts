/**
 * Red-team regression (GitOps, round 11): a repository of many large files ended the operator. The
 * fetch cap counts the pack's bytes, and a pack is compressed: a 1 MB manifest of repeated comment
 * lines is a few kilobytes in it, so a few thousand such files passed `--git-max-fetch-size` and
 * `readSnapshot` held every one of them in memory (and parsed each for approving-commit attribution,
 * keeping the parsed form in a process-wide cache bounded by count only): two thousand such files are
 * two gigabytes held at once, past what the operator's pod may use, so whoever may create a GitSource
 * could stop the operator for every tenant, grant expiry included.
 * A sync now reads at most `--git-max-read-size` bytes of files (each blob counted once, the history
 * walked for approvals included) and fails with `FetchTooLarge` past it, keeping the last synced state.
 * A real git-over-HTTP server (git http-backend).
 */
import assert from "node:assert/strict";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { fetchBranch, GitFetchError, readSnapshot } from "../../operator/gitsync/repo.ts";
import { parseOptions } from "../../operator/options.ts";
import { type GitServerHandle, printLogsOnFailure, startGitServer } from "../env/index.ts";

let git: GitServerHandle;
let cache: string;
const MB = 1_000_000;

before(async () => {
	git = await startGitServer();
	cache = await mkdtemp(join(tmpdir(), "drawbridge-snapmem-"));
});
after(async () => {
	await git?.stop();
	if (cache) await rm(cache, { recursive: true, force: true });
});
printLogsOnFailure(() => [["git", git]]);

/** A manifest padded to about 1 MB with comment lines: large on disk, tiny in a pack. */
function padded(i: number): string {
	const grant = `apiVersion: access.drawbridge.dev/v1alpha1\nkind: AccessGrant\nmetadata:\n  name: g${i}\nspec:\n  connection: orders-prod\n  subjects: [{kind: User, name: u${i}}]\n  postgres: {access: read-only}\n  duration: 1h\n`;
	return grant + `# padding ${i}\n`.repeat(Math.floor((MB - grant.length) / `# padding ${i}\n`.length));
}

test("issue gitsource-snapshot-memory: files past the read limit fail the sync, however small the pack", async () => {
	const files: Record<string, string> = {};
	for (let i = 0; i < 24; i++) files[`grants/g${i}.yaml`] = padded(i);
	const head = await git.commit("grants", { files, message: "24 MB of manifests" });
	const gitdir = join(cache, "gitdir");
	// The whole pack is under a 1 MiB fetch cap: the fetch cap does not bound what is read out of it.
	assert.equal(await fetchBranch(gitdir, { url: git.repoUrl("grants"), branch: "main", maxBytes: 1024 * 1024, timeoutMs: 60_000 }), head);
	const err = await readSnapshot(gitdir, head, { path: "grants", repository: git.repoUrl("grants"), branch: "main", maxReadBytes: 8 * MB }).then(
		(s) => assert.fail(`read ${s.files.reduce((n, f) => n + f.content.length, 0)} bytes of files`),
		(e: unknown) => e,
	);
	assert.ok(err instanceof GitFetchError && err.code === "FETCH_TOO_LARGE", String(err));
	assert.match(err.message, /more than the 8000000-byte read limit/);
	// Under the limit the same repository reads as before.
	const snap = await readSnapshot(gitdir, head, { path: "grants", repository: git.repoUrl("grants"), branch: "main", maxReadBytes: 32 * MB });
	assert.equal(snap.files.length, 24);
	// The operator's default.
	const opts = parseOptions([], {});
	assert.ok(opts !== "help" && opts.gitMaxReadBytes === 64 * 1024 * 1024);
});
