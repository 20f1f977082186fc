/**
 * Red-team regression (GitOps, round 10): an expired grant came back when its file was touched.
 *
 * A window without `notBefore` starts at the commit that approved the grant, and that commit was the
 * newest one that changed the grant's FILE. So a merged pull request that only moved files into a new
 * folder (`git mv`, "renamed without changes" in the review), added a comment, re-indented a file, or
 * edited another grant sharing the file, approved every grant it touched again: each `duration` grant
 * started over, and ones that had expired days ago were Active again (a token minted, a role created)
 * without anyone having asked for them. The approving commit is now the newest one that changed the
 * RESOURCE's content (parsed: comments, layout and key order are not content), wherever in the tree it
 * was declared. A real repository built with the git CLI, read as the operator and `drawbridge dev` do.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdir, mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import type { AccessGrant, Connection } from "../../crds/index.ts";
import { resourcesFromRepository } from "../../operator/config/from-git.ts";
import { decideGrant } from "../../operator/reconcile/desired/accessgrant.ts";
import { ANNOTATIONS } from "../../operator/reconcile/labels.ts";

const run = promisify(execFile);
const HOUR = 3_600_000;

const connection: Connection = {
	apiVersion: "access.drawbridge.dev/v1alpha1",
	kind: "Connection",
	metadata: { name: "orders", namespace: "team" },
	spec: { type: "postgres", host: "db.internal", port: 5432, postgres: { database: "orders" }, credentialSecretRef: { name: "db-admin" } },
};

const grant = (name: string, ticket = "OPS-1") => `apiVersion: access.drawbridge.dev/v1alpha1
kind: AccessGrant
metadata:
  name: ${name}
spec:
  connection: orders
  subjects:
    - kind: User
      name: ${name}@example.com
  postgres:
    access: read-write
  duration: 8h
  ticket: ${ticket}
`;

/** The same grant as another writer lays it out: flow style, other key order, quotes, a comment. */
const reformatted = (name: string) => `# ${name}'s on-call access, see OPS-1
kind: AccessGrant
apiVersion: "access.drawbridge.dev/v1alpha1"
metadata: {name: ${name}}
spec:
  ticket: OPS-1
  duration: "8h"
  postgres: {access: read-write}
  subjects: [{kind: User, name: "${name}@example.com"}]
  connection: orders
`;

test("issue grant-revived-by-file-change: moving, reformatting or sharing a file does not approve a grant again", async (t) => {
	const dir = await mkdtemp(join(tmpdir(), "dbmove-"));
	t.after(() => rm(dir, { recursive: true, force: true }));
	const now = new Date();
	const at = (d: Date) => ({ ...process.env, GIT_AUTHOR_NAME: "Priya", GIT_AUTHOR_EMAIL: "p@example.com", GIT_COMMITTER_NAME: "GitHub", GIT_COMMITTER_EMAIL: "noreply@github.com", GIT_AUTHOR_DATE: d.toISOString(), GIT_COMMITTER_DATE: d.toISOString() });
	const g = (d: Date, ...args: string[]) => run("git", ["-C", dir, ...args], { env: at(d) });
	await run("git", ["init", "-q", "-b", "main", dir]);
	await mkdir(join(dir, "grants", "people"), { recursive: true });

	// Three days ago: four 8-hour grants, merged and long expired.
	const merged = new Date(now.getTime() - 72 * HOUR);
	await writeFile(join(dir, "grants", "alice.yaml"), grant("alice"));
	await writeFile(join(dir, "grants", "dave.yaml"), grant("dave"));
	await writeFile(join(dir, "grants", "oncall.yaml"), `${grant("bob")}---\n${grant("carol")}`);
	await g(merged, "add", ".");
	await g(merged, "commit", "-qm", "On-call access (#1)");

	// An hour ago, one reviewed "tidy up" pull request: alice's file moved, dave's reformatted with a
	// comment, and carol's ticket corrected in the file she shares with bob.
	const tidy = new Date(now.getTime() - HOUR);
	await g(tidy, "mv", "grants/alice.yaml", "grants/people/alice.yaml");
	await writeFile(join(dir, "grants", "dave.yaml"), reformatted("dave"));
	await writeFile(join(dir, "grants", "oncall.yaml"), `${grant("bob")}---\n${grant("carol", "OPS-2")}`);
	await g(tidy, "add", "-A", ".");
	await g(tidy, "commit", "-qm", "Tidy up grants (#2)");

	const { resources, problems } = await resourcesFromRepository({ gitdir: join(dir, ".git"), path: "grants", namespace: "team" });
	assert.deepEqual(problems, []);
	const byName = new Map(resources.grants.map((r) => [r.metadata.name, r as AccessGrant]));
	const phase = (name: string) => decideGrant(byName.get(name)!, connection, now);

	// Before: all three were Active again for 7 more hours, approved by "Tidy up grants (#2)".
	for (const name of ["alice", "dave", "bob"]) {
		const d = phase(name);
		assert.equal(d.phase, "Expired", `${name}: ${d.phase} (${d.message})`);
		assert.equal(byName.get(name)!.metadata.annotations?.[ANNOTATIONS.pullRequest], "1", `${name} was approved by #1`);
	}
	// A change to the grant itself is an approval: carol's new ticket was reviewed and merged.
	assert.equal(phase("carol").phase, "Active");
	assert.equal(byName.get("carol")!.metadata.annotations?.[ANNOTATIONS.pullRequest], "2");
	assert.equal(byName.get("alice")!.metadata.annotations?.[ANNOTATIONS.path], "grants/people/alice.yaml", "the path is where it is now");
});
