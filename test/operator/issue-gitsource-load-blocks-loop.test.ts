/**
 * Red-team regression (GitOps, round 11): loading a GitSource's manifests held the operator's event
 * loop for the whole repository. YAML parsing is synchronous, about a second or more per megabyte, and
 * a tenant's repository may hold up to `--git-max-read-size` (64 MiB) of manifests: every timer of the
 * operator (grant expiry and revocation, the leader lease's renewal, other GitSources) waited minutes
 * behind one sync, and a lost lease handed the same stall to the standby. The operator's load lets the
 * event loop run between files now. No timings are asserted: a timer already due when the load starts
 * must run before the load of several files is over (it ran only after it).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { loadSnapshot, loadSnapshotYielding } from "../../operator/gitsync/load.ts";
import type { Snapshot } from "../../operator/gitsync/repo.ts";

const approvedBy = { sha: "0".repeat(40), author: "a <a@x>", committer: "a <a@x>", committedAt: "2026-11-01T00:00:00Z", subject: "s" };

function manyGrants(file: number): string {
	let s = "";
	for (let i = 0; i < 400; i++) {
		s += `---\napiVersion: access.drawbridge.dev/v1alpha1\nkind: AccessGrant\nmetadata: {name: g${file}-${i}}\nspec: {connection: c, subjects: [{kind: User, name: u${i}}], postgres: {access: read-only}, duration: 1h}\n`;
	}
	return s;
}

test("issue gitsource-load-blocks-loop: timers run between files while the operator loads a repository", async () => {
	const snap: Snapshot = {
		repository: "https://git.example/grants.git",
		branch: "main",
		commit: "0".repeat(40),
		files: Array.from({ length: 6 }, (_, f) => ({ path: `grants/f${f}.yaml`, content: Buffer.from(manyGrants(f)), blobOid: String(f), approvedBy })),
	};
	let fired = false;
	const due = new Promise<void>((resolve) => setTimeout(() => resolve(), 0));
	void due.then(() => {
		fired = true;
	});
	// Make sure the timer is due before the load starts: the first file alone takes longer than 1 ms.
	const started = Date.now();
	while (Date.now() - started < 2) {
		// busy
	}
	const loaded = await loadSnapshotYielding(snap, "team");
	assert.ok(fired, "no timer ran while six files were loaded");
	// The same result as the synchronous load (drawbridge dev, tests).
	assert.deepEqual(loaded, loadSnapshot(snap, "team"));
	assert.equal(loaded.resources.length, 2400);
});
