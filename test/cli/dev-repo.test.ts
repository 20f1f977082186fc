// Dev mode reads the committed grants of the checkout it runs in, whatever kind of checkout that is:
// a clone (`.git` directory), a `git worktree` checkout (`.git` file; HEAD in its own git dir, branches
// and objects in the shared one) or a submodule (`.git` file naming a whole git dir). It once failed
// in every worktree ("Could not find refs/heads/<branch>"), which broke the quickstart test there.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, test } from "node:test";
import { readHead } from "../../cli/dev.ts";
import { readSnapshot } from "../../operator/gitsync/repo.ts";
import { makeTempDir, removeTempDir } from "../env/process.ts";

const tmp = makeTempDir("dev-repo");
after(() => removeTempDir(tmp));

function git(dir: string, ...args: string[]): string {
	return execFileSync("git", ["-C", dir, "-c", "user.name=Priya", "-c", "user.email=priya@example.com", "-c", "protocol.file.allow=always", ...args], { encoding: "utf8" }).trim();
}

/** A commit on the current branch of `dir` adding `grants/<name>.yaml`. */
function commitFile(dir: string, name: string): string {
	mkdirSync(join(dir, "grants"), { recursive: true });
	writeFileSync(join(dir, "grants", `${name}.yaml`), `# ${name}\n`);
	git(dir, "add", "-A");
	git(dir, "commit", "-q", "-m", `add ${name}`);
	return git(dir, "rev-parse", "HEAD");
}

/** The paths dev mode would load at that checkout's HEAD (proves the objects are found too). */
async function filesAtHead(dir: string): Promise<string[]> {
	const head = await readHead(join(dir, "grants"));
	const snap = await readSnapshot(head.gitdir, head.commit, { path: head.path, repository: "file://test", branch: head.branch });
	return snap.files.map((f) => f.path).sort();
}

const main = join(tmp, "main");
mkdirSync(main);
git(main, "init", "-q", "-b", "main");
const mainCommit = commitFile(main, "on-main");

test("a clone: HEAD's branch and commit", async () => {
	const head = await readHead(join(main, "grants"));
	assert.deepEqual({ commit: head.commit, branch: head.branch, path: head.path, root: head.root }, { commit: mainCommit, branch: "main", path: "grants", root: main });
	assert.deepEqual(await filesAtHead(main), ["grants/on-main.yaml"]);
});

test("a git worktree on its own branch: that branch's commit, not the main checkout's, with loose and packed refs", async () => {
	const wt = join(tmp, "wt");
	git(main, "worktree", "add", "-q", "-b", "feature", wt);
	const wtCommit = commitFile(wt, "on-feature");
	assert.notEqual(wtCommit, mainCommit);
	const head = await readHead(join(wt, "grants"));
	assert.deepEqual({ commit: head.commit, branch: head.branch, root: head.root }, { commit: wtCommit, branch: "feature", root: wt });
	assert.deepEqual(await filesAtHead(wt), ["grants/on-feature.yaml", "grants/on-main.yaml"]);
	// The main checkout still reads its own branch.
	assert.equal((await readHead(main)).commit, mainCommit);
	// Branches moved into packed-refs (git gc does this) are found as well.
	git(main, "pack-refs", "--all", "--prune");
	assert.equal((await readHead(join(wt, "grants"))).commit, wtCommit);
});

test("a detached git worktree: the commit it sits on, branch HEAD", async () => {
	const wt = join(tmp, "detached");
	git(main, "worktree", "add", "-q", "--detach", wt, mainCommit);
	const head = await readHead(wt);
	assert.deepEqual({ commit: head.commit, branch: head.branch }, { commit: mainCommit, branch: "HEAD" });
	assert.deepEqual(await filesAtHead(wt), ["grants/on-main.yaml"]);
});

test("a submodule (.git file naming a whole git dir): its own commit", async () => {
	const sub = join(tmp, "sub-origin");
	mkdirSync(sub);
	git(sub, "init", "-q", "-b", "main");
	const subCommit = commitFile(sub, "in-submodule");
	git(main, "submodule", "add", "-q", sub, "vendor/grants");
	const head = await readHead(join(main, "vendor", "grants", "grants"));
	assert.deepEqual({ commit: head.commit, branch: head.branch, root: head.root }, { commit: subCommit, branch: "main", root: join(main, "vendor", "grants") });
	assert.deepEqual(await filesAtHead(join(main, "vendor", "grants")), ["grants/in-submodule.yaml"]);
});
