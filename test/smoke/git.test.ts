import assert from "node:assert/strict";
import * as fs from "node:fs";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import git from "isomorphic-git";
import http from "isomorphic-git/http/node";
import { type GitServerHandle, printLogsOnFailure, run, startGitServer } from "../env/index.ts";

let srv: GitServerHandle;
const dirs: string[] = [];
before(async () => {
	srv = await startGitServer();
});
after(async () => {
	await srv?.stop();
	for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
printLogsOnFailure(() => [["git", srv]]);

const tmp = () => {
	const d = mkdtempSync(join(tmpdir(), "drawbridge-smoke-git-"));
	dirs.push(d);
	return d;
};

test("a merged pull request is visible to an isomorphic-git clone over http", async () => {
	const pushes: string[] = [];
	const off = srv.onPush((e) => pushes.push(e.repo));
	const { sha, headSha } = await srv.mergePullRequest("grants", {
		number: 42,
		branch: "add-deployer",
		title: "Grant ci/deployer read-only on orders-prod",
		files: { "grants/ci/deployer.yaml": "kind: AccessGrant\n" },
	});
	off();
	assert.match(sha, /^[0-9a-f]{40}$/);
	assert.equal(await srv.head("grants"), sha);
	assert.ok(pushes.length >= 2);

	const dir = tmp();
	await git.clone({ fs, http, dir, url: srv.repoUrl("grants"), singleBranch: true, ref: "main" });
	const [top] = await git.log({ fs, dir, depth: 1 });
	assert.equal(top?.oid, sha);
	assert.match(top?.commit.message ?? "", /^Merge pull request #42 from example\/add-deployer\n\nGrant ci\/deployer/);
	assert.deepEqual(top?.commit.parent.length, 2);
	assert.equal(top?.commit.parent[1], headSha);
	assert.equal(readFileSync(join(dir, "grants/ci/deployer.yaml"), "utf8"), "kind: AccessGrant\n");
});

test("push without the token is refused, with it accepted", async () => {
	const dir = tmp();
	await git.clone({ fs, http, dir, url: srv.repoUrl("grants") });
	fs.writeFileSync(join(dir, "x.txt"), "x\n");
	await git.add({ fs, dir, filepath: "x.txt" });
	await git.commit({ fs, dir, message: "x", author: { name: "t", email: "t@example.com" } });
	await assert.rejects(git.push({ fs, http, dir, remote: "origin", ref: "main" }), /401|HttpError/);
	await assert.rejects(
		git.push({ fs, http, dir, remote: "origin", ref: "main", onAuth: () => ({ username: "x", password: "wrong" }) }),
	);
	const r = await git.push({ fs, http, dir, remote: "origin", ref: "main", onAuth: () => ({ username: "x", password: srv.token }) });
	assert.equal(r.ok, true);
	assert.equal(await srv.head("grants"), await git.resolveRef({ fs, dir, ref: "HEAD" }));
});

test("the git CLI clones too, and commit() on a branch returns its SHA", async () => {
	const sha = await srv.commit("grants", { branch: "feature", files: { "a.txt": "a\n" }, message: "add a" });
	const dir = tmp();
	const r = await run("git", ["clone", "-q", "-b", "feature", srv.repoUrl("grants"), dir], { env: { ...process.env, GIT_TERMINAL_PROMPT: "0" } });
	assert.equal(r.code, 0, r.stderr);
	const head = await run("git", ["rev-parse", "HEAD"], { cwd: dir });
	assert.equal(head.stdout.trim(), sha);
});
