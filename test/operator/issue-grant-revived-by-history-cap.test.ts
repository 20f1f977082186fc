/**
 * Red team (revocation): an ended grant must not come back because the repository grew. The operator
 * walks at most 1000 commits to find the commit that approved each file; a file older than that was
 * attributed to the oldest commit walked, and a `duration` grant's window was counted from that commit's
 * (later) time. A 30-day grant merged 40 days ago, followed by 1000 commits to other files over the
 * last 20 days, was Active again (token minted, role created) for ten more days.
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import type { Connection } from "../../crds/index.ts";
import { resourcesFromRepository } from "../../operator/config/from-git.ts";
import { decideGrant } from "../../operator/reconcile/desired/accessgrant.ts";

const run = promisify(execFile);
const DAY = 86_400_000;

const connection: Connection = {
	apiVersion: "access.drawbridge.dev/v1alpha1",
	kind: "Connection",
	metadata: { name: "orders", namespace: "team" },
	spec: { type: "postgres", host: "db.internal", port: 5432, postgres: { database: "orders", credentialMode: "dynamic" }, credentialSecretRef: { name: "db-admin" } },
};

function grantFile(name: string, timing: string): string {
	return `apiVersion: access.drawbridge.dev/v1alpha1
kind: AccessGrant
metadata:
  name: ${name}
spec:
  connection: orders
  subjects:
    - kind: User
      name: alice
  postgres:
    access: read-write
  ${timing}
  ticket: OPS-1
`;
}

/**
 * A repository built with git fast-import: one commit adding the grants at `grantAt`, then `after`
 * commits touching notes.yaml only, spread from `firstAt` to `lastAt`.
 */
async function buildRepo(dir: string, grantAt: Date, after: number, firstAt: Date, lastAt: Date, files: Record<string, string>): Promise<string> {
	await run("git", ["init", "-q", "--bare", "-b", "main", dir]);
	const lines: string[] = [];
	const blob = (s: string) => `data ${Buffer.byteLength(s)}\n${s}\n`;
	const stamp = (d: Date) => `GitHub <noreply@github.com> ${Math.floor(d.getTime() / 1000)} +0000`;
	lines.push("commit refs/heads/main", "mark :1", `committer ${stamp(grantAt)}`, blob("Grant alice (#1)").trimEnd());
	for (const [path, content] of Object.entries(files)) lines.push(`M 100644 inline ${path}`, blob(content).trimEnd());
	lines.push("");
	const step = (lastAt.getTime() - firstAt.getTime()) / Math.max(1, after - 1);
	for (let i = 1; i <= after; i++) {
		const at = new Date(firstAt.getTime() + step * (i - 1));
		lines.push("commit refs/heads/main", `mark :${i + 1}`, `committer ${stamp(at)}`, blob(`Other change (#${i + 1})`).trimEnd(), `from :${i}`);
		lines.push("M 100644 inline grants/notes.yaml", blob(`# change ${i}\n`).trimEnd(), "");
	}
	await new Promise<void>((resolve, reject) => {
		const p = spawn("git", ["--git-dir", dir, "fast-import", "--quiet"], { stdio: ["pipe", "ignore", "inherit"] });
		p.on("error", reject);
		p.on("exit", (code) => (code === 0 ? resolve() : reject(new Error(`fast-import exited ${code}`))));
		p.stdin.end(`${lines.join("\n")}\n`);
	});
	return dir;
}

test("an ended duration grant whose approving commit is beyond the history walked is not active again", async (t) => {
	const dir = await mkdtemp(join(tmpdir(), "dbhist-"));
	t.after(() => rm(dir, { recursive: true, force: true }));
	const now = new Date();
	const gitdir = await buildRepo(join(dir, "repo.git"), new Date(now.getTime() - 40 * DAY), 1005, new Date(now.getTime() - 20 * DAY), new Date(now.getTime() - DAY), {
		"grants/alice.yaml": grantFile("alice", "duration: 720h"),
		"grants/windowed.yaml": grantFile("windowed", `notBefore: "${new Date(now.getTime() - DAY).toISOString().replace(/\.\d{3}Z$/, "Z")}"\n  expiresAt: "${new Date(now.getTime() + DAY).toISOString().replace(/\.\d{3}Z$/, "Z")}"`),
	});
	const { resources } = await resourcesFromRepository({ gitdir, ref: "main", path: "grants", namespace: "team" });
	const alice = resources.grants.find((g) => g.metadata.name === "alice");
	assert.ok(alice);
	const d = decideGrant(alice, connection, now);
	assert.notEqual(d.phase, "Active", `a 30-day grant merged 40 days ago must not be Active (${d.message})`);
	assert.equal(d.phase, "Invalid");
	assert.match(d.message, /older than the history the operator reads/);
	assert.equal(d.pgRole, undefined);
	assert.equal(d.token, undefined);
	// A grant dated in its own file does not depend on the approving commit's time: unchanged.
	const windowed = resources.grants.find((g) => g.metadata.name === "windowed");
	assert.equal(decideGrant(windowed!, connection, now).phase, "Active");
});

test("within the history walked the approving commit's time counts as before (expired stays expired, fresh stays active)", async (t) => {
	const dir = await mkdtemp(join(tmpdir(), "dbhist-"));
	t.after(() => rm(dir, { recursive: true, force: true }));
	const now = new Date();
	const old = await buildRepo(join(dir, "old.git"), new Date(now.getTime() - 40 * DAY), 20, new Date(now.getTime() - 20 * DAY), new Date(now.getTime() - DAY), { "grants/alice.yaml": grantFile("alice", "duration: 720h") });
	const a = (await resourcesFromRepository({ gitdir: old, ref: "main", path: "grants", namespace: "team" })).resources.grants[0]!;
	assert.equal(decideGrant(a, connection, now).phase, "Expired");
	const fresh = await buildRepo(join(dir, "fresh.git"), new Date(now.getTime() - DAY), 20, new Date(now.getTime() - DAY / 2), new Date(now.getTime() - 60_000), { "grants/alice.yaml": grantFile("alice", "duration: 720h") });
	const f = (await resourcesFromRepository({ gitdir: fresh, ref: "main", path: "grants", namespace: "team" })).resources.grants[0]!;
	assert.equal(decideGrant(f, connection, now).phase, "Active");
});
