/**
 * gitsync pure parts (PR numbers, URLs, webhook signatures: tables) and approving-commit attribution on
 * a real repository built with the git CLI (merge commits, squash commits, reverts, edits).
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { cp, mkdtemp, mkdir, rm, writeFile, unlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import { compileBundle } from "../../operator/config/compile.ts";
import { resourcesFromRepository } from "../../operator/config/from-git.ts";
import { approvalUrl, parsePullRequestNumber, repositoryWebBase } from "../../operator/gitsync/commits.ts";
import { readSnapshot } from "../../operator/gitsync/repo.ts";
import { WebhookError, signGitea, signGithub, verifyWebhook } from "../../operator/gitsync/webhook.ts";

const run = promisify(execFile);

test("parsePullRequestNumber (table)", () => {
	const cases: [string, number | undefined][] = [
		["Merge pull request #42 from org/feature\n\nAdd grant", 42],
		["Add deployer grant (#17)", 17],
		["Add deployer grant (#17)\n\n* commit a\n* commit b", 17],
		["Merge pull request 'Add grant' (#9) from priya/grant into main", 9],
		["Merge branch 'x' into 'main'\n\nAdd grant\n\nSee merge request infra/grants!133", 133],
		["Fix typo in #12 reference", undefined],
		["Direct push", undefined],
		["Merge pull request #0 from x", undefined],
		["", undefined],
	];
	for (const [msg, want] of cases) assert.equal(parsePullRequestNumber(msg), want, JSON.stringify(msg));
});

test("repository URLs: credentials stripped, PR vs commit links (table)", () => {
	assert.equal(repositoryWebBase("https://user:tok@github.com/org/grants.git"), "https://github.com/org/grants");
	assert.equal(approvalUrl("https://github.com/org/grants.git", "abc", 42), "https://github.com/org/grants/pull/42");
	assert.equal(approvalUrl("https://gitea.example/org/grants.git", "abc", 42), "https://gitea.example/org/grants/pulls/42");
	assert.equal(approvalUrl("https://gitea.example/org/grants", "abc"), "https://gitea.example/org/grants/commit/abc");
	assert.equal(approvalUrl("git@github.com:org/grants.git", "abc"), undefined);
});

test("verifyWebhook: GitHub and Gitea signatures, refusals (table)", () => {
	const secret = "s3cret";
	const body = Buffer.from(JSON.stringify({ ref: "refs/heads/main", after: "a".repeat(40) }));
	const other = Buffer.from(JSON.stringify({ ref: "refs/heads/dev" }));
	const ok = verifyWebhook({ "x-hub-signature-256": signGithub(secret, body), "x-github-event": "push" }, body, secret, "main");
	assert.deepEqual(ok, { provider: "github", event: "push", ref: "refs/heads/main", after: "a".repeat(40), triggersSync: true });
	assert.equal(verifyWebhook({ "X-Gitea-Signature": signGitea(secret, body), "X-Gitea-Event": "push" }, body, secret, "main").triggersSync, true);
	// A GitSource may name its branch in full (`refs/heads/main`), as the fetch accepts it.
	assert.equal(verifyWebhook({ "X-Gitea-Signature": signGitea(secret, body), "X-Gitea-Event": "push" }, body, secret, "refs/heads/main").triggersSync, true);
	assert.equal(verifyWebhook({ "x-gitea-signature": signGitea(secret, other), "x-gitea-event": "push" }, other, secret, "main").triggersSync, false);
	assert.equal(verifyWebhook({ "x-hub-signature-256": signGithub(secret, "{}"), "x-github-event": "ping" }, Buffer.from("{}"), secret, "main").triggersSync, false);
	const refused: [Record<string, string>, Uint8Array, string, string][] = [
		[{}, body, secret, "MISSING_SIGNATURE"],
		[{ "x-hub-signature-256": signGithub("wrong", body) }, body, secret, "BAD_SIGNATURE"],
		[{ "x-hub-signature-256": signGithub(secret, body).slice(7) }, body, secret, "BAD_SIGNATURE"],
		[{ "x-hub-signature-256": "sha256=zz" }, body, secret, "BAD_SIGNATURE"],
		[{ "x-gitea-signature": signGitea(secret, body) }, Buffer.concat([body, Buffer.from(" ")]), secret, "BAD_SIGNATURE"],
		[{ "x-hub-signature-256": signGithub(secret, "not json"), "x-github-event": "push" }, Buffer.from("not json"), secret, "BAD_BODY"],
		[{ "x-hub-signature-256": signGithub("", body) }, body, "", "NO_SECRET"],
	];
	for (const [h, b, s, code] of refused) {
		assert.throws(() => verifyWebhook(h, b, s, "main"), (e: unknown) => e instanceof WebhookError && e.code === code, code);
	}
});

test("readSnapshot attributes each file to the merge/squash commit that introduced its current content", async (t) => {
	const dir = await mkdtemp(join(tmpdir(), "dbgit-"));
	t.after(() => rm(dir, { recursive: true, force: true }));
	const work = join(dir, "work");
	await mkdir(join(work, "grants", "team"), { recursive: true });
	const g = (...args: string[]) => run("git", ["-C", work, ...args], { env: { ...process.env, GIT_AUTHOR_NAME: "Priya", GIT_AUTHOR_EMAIL: "priya@example.com", GIT_COMMITTER_NAME: "GitHub", GIT_COMMITTER_EMAIL: "noreply@github.com" } });
	await run("git", ["init", "-q", "-b", "main", work]);
	await writeFile(join(work, "README.md"), "grants\n");
	await writeFile(join(work, "grants", "a.yaml"), "a: 1\n");
	await g("add", ".");
	await g("commit", "-qm", "initial");
	// PR #5: merge commit adding b.yaml
	await g("checkout", "-qb", "feature");
	await writeFile(join(work, "grants", "team", "b.yaml"), "b: 1\n");
	await g("add", ".");
	await g("commit", "-qm", "add b");
	await g("checkout", "-q", "main");
	await g("merge", "-q", "--no-ff", "feature", "-m", "Merge pull request #5 from org/feature");
	// Squash PR #6 edits a.yaml; an unrelated commit touches only README.
	await writeFile(join(work, "grants", "a.yaml"), "a: 2\n");
	await g("commit", "-qam", "Widen a (#6)");
	await writeFile(join(work, "README.md"), "grants!\n");
	await g("commit", "-qam", "docs");
	// c.yaml added then reverted to its earlier content: the revert is what approved the current text.
	await writeFile(join(work, "grants", "c.yaml"), "c: 1\n");
	await g("add", ".");
	await g("commit", "-qm", "Add c (#7)");
	await writeFile(join(work, "grants", "c.yaml"), "c: 2\n");
	await g("commit", "-qam", "Change c (#8)");
	await writeFile(join(work, "grants", "c.yaml"), "c: 1\n");
	await g("commit", "-qam", "Revert c (#9)");
	await writeFile(join(work, "grants", "notes.txt"), "ignored\n");
	await g("add", ".");
	await g("commit", "-qm", "non-yaml");
	await unlink(join(work, "grants", "notes.txt"));
	await g("commit", "-qam", "rm notes");
	const head = (await g("rev-parse", "HEAD")).stdout.trim();

	const snap = await readSnapshot(join(work, ".git"), head, { path: "grants", repository: "https://tok@github.com/org/grants.git", branch: "main" });
	assert.equal(snap.repository, "https://github.com/org/grants.git", "user info (tokens) never recorded");
	const by = Object.fromEntries(snap.files.map((f) => [f.path, f]));
	assert.deepEqual(Object.keys(by), ["grants/a.yaml", "grants/c.yaml", "grants/team/b.yaml"]);
	assert.equal(by["grants/team/b.yaml"]!.approvedBy.pullRequest, 5);
	assert.equal(by["grants/team/b.yaml"]!.approvedBy.url, "https://github.com/org/grants/pull/5");
	assert.equal(by["grants/a.yaml"]!.approvedBy.pullRequest, 6);
	assert.equal(by["grants/a.yaml"]!.approvedBy.author, "Priya <priya@example.com>");
	assert.equal(by["grants/a.yaml"]!.approvedBy.committer, "GitHub <noreply@github.com>");
	assert.equal(by["grants/c.yaml"]!.approvedBy.pullRequest, 9);
	assert.equal(Buffer.from(by["grants/c.yaml"]!.content).toString(), "c: 1\n");
	const root = await readSnapshot(join(work, ".git"), head, { path: ".", repository: "https://github.com/org/grants", branch: "main" });
	assert.equal(root.files.length, 3);
	const missing = await readSnapshot(join(work, ".git"), head, { path: "nope", repository: "x", branch: "main" });
	assert.equal(missing.files.length, 0);
});

test("resourcesFromRepository + compileBundle on the examples/ repository (standalone mode path): no problems, origins from git", async (t) => {
	const dir = await mkdtemp(join(tmpdir(), "dbex-"));
	t.after(() => rm(dir, { recursive: true, force: true }));
	await cp(new URL("../../examples", import.meta.url).pathname, dir, { recursive: true });
	const env = { ...process.env, GIT_AUTHOR_NAME: "Priya", GIT_AUTHOR_EMAIL: "p@example.com", GIT_COMMITTER_NAME: "GitHub", GIT_COMMITTER_EMAIL: "noreply@github.com", GIT_COMMITTER_DATE: "2026-03-01T10:00:00Z", GIT_AUTHOR_DATE: "2026-03-01T10:00:00Z" };
	await run("git", ["init", "-q", "-b", "main", dir]);
	await run("git", ["-C", dir, "add", "."], { env });
	await run("git", ["-C", dir, "commit", "-qm", "Import examples (#3)"], { env });
	await writeFile(join(dir, "grants", "broken.yaml"), "kind: [\n");
	await run("git", ["-C", dir, "add", "."], { env });
	await run("git", ["-C", dir, "commit", "-qm", "broken (#4)"], { env });
	const { resources, problems, commit } = await resourcesFromRepository({ gitdir: join(dir, ".git"), namespace: "default" });
	assert.match(commit, /^[0-9a-f]{40}$/);
	assert.deepEqual(problems.map((p) => p.path), ["grants/broken.yaml"], JSON.stringify(problems));
	assert.ok(resources.connections.length >= 4 && resources.grants.length >= 4, "examples loaded");
	const g = resources.grants[0]!;
	assert.equal(g.metadata.annotations?.["access.drawbridge.dev/pull-request"], "3");
	const bundle = compileBundle(
		{ ...resources, issuers: [], connectionCredentials: {}, grantCredentials: {}, maskingKey: Buffer.alloc(32).toString("base64"), now: new Date("2026-03-01T10:30:00Z") },
		{ version: 1, generatedAt: new Date("2026-03-01T10:30:00Z") },
	);
	assert.ok(bundle.grants.length > 0);
	assert.ok(bundle.grants.every((x) => x.origin.commit && x.origin.pullRequest === 3));
	assert.ok(bundle.maskingPolicies.length > 0 && bundle.guardrailPolicies.length > 0);
});
