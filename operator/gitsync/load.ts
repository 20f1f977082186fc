/**
 * Turns a repository snapshot into validated Drawbridge resources plus per-file problems. Pure (no
 * Kubernetes, no network): `drawbridge dev` reuses it on a local repository.
 *
 * A broken file (YAML error, schema error, unsupported kind, duplicate name) is reported with its path,
 * line and column and skipped; every valid resource of every other file (and the valid documents of a
 * multi-document file) still loads. A resource defined twice is skipped in both files: neither copy
 * is trusted over the other.
 */

import type { DrawbridgeResource } from "../../crds/index.ts";
import { checkManifestFile, problemText, SYNCED_KINDS, type SyncedKind } from "../../crds/gitops.ts";
import { type ApprovingCommit, printable, resourceKey } from "./commits.ts";

export { printable };
import type { Snapshot } from "./repo.ts";

/** Kinds a grants repository may declare (crds/gitops.ts). GitSources are skipped silently; other Drawbridge kinds are reported. */
export const GIT_KINDS = SYNCED_KINDS;
export type GitKind = SyncedKind;

export interface LoadedResource {
	kind: GitKind;
	/** `namespace/name`. */
	key: string;
	/** Validated object with defaults; namespace filled in. No status. */
	object: DrawbridgeResource;
	path: string;
	line: number;
	origin: ApprovingCommit;
	repository: string;
}

export interface FileProblem {
	path: string;
	line?: number;
	column?: number;
	message: string;
}

export interface LoadedSnapshot {
	commit: string;
	resources: LoadedResource[];
	problems: FileProblem[];
}

/** Problems kept per file (the rest are counted in one last line): a file of 100 000 empty documents is one problem, not 100 000. */
export const MAX_PROBLEMS_PER_FILE = 16;

export interface LoadOptions {
	/**
	 * Namespaces resources may be placed in with `metadata.namespace` (besides `defaultNamespace`,
	 * which is always allowed). `"any"` for no limit (the operator's own namespace, standalone mode).
	 * Default: only `defaultNamespace`.
	 */
	namespaces?: "any" | readonly string[];
}

/** Validates every manifest in the snapshot. `defaultNamespace` is used where metadata.namespace is absent. */
export function loadSnapshot(snap: Snapshot, defaultNamespace: string, opts: LoadOptions = {}): LoadedSnapshot {
	const steps = loading(snap, defaultNamespace, opts);
	for (;;) {
		const r = steps.next();
		if (r.done) return r.value;
	}
}

/**
 * `loadSnapshot` letting the event loop run between files. Parsing is synchronous, about a second or
 * more per megabyte of YAML, and a repository holds up to `--git-max-read-size` of it: in one go that
 * stopped every timer of the operator for minutes (grant expiry, the leader lease's renewal, other
 * GitSources' syncs). The operator uses this one.
 */
export async function loadSnapshotYielding(snap: Snapshot, defaultNamespace: string, opts: LoadOptions = {}): Promise<LoadedSnapshot> {
	const steps = loading(snap, defaultNamespace, opts);
	for (;;) {
		const r = steps.next();
		if (r.done) return r.value;
		await new Promise<void>((resolve) => setImmediate(resolve));
	}
}

/** The load, one file per step. */
function* loading(snap: Snapshot, defaultNamespace: string, opts: LoadOptions): Generator<void, LoadedSnapshot> {
	const allProblems: FileProblem[] = [];
	const byKey = new Map<string, LoadedResource[]>();
	const allowed = opts.namespaces ?? [];
	for (const file of snap.files) {
		yield;
		// Per file: at most MAX_PROBLEMS_PER_FILE problems, paths and messages printable.
		const fileProblems: FileProblem[] = [];
		const problems = {
			push: (p: FileProblem) => {
				fileProblems.push({ ...p, path: printable(p.path), message: printable(p.message) });
			},
		};
		try {
			loadFile(file, problems);
		} finally {
			allProblems.push(...fileProblems.slice(0, MAX_PROBLEMS_PER_FILE));
			if (fileProblems.length > MAX_PROBLEMS_PER_FILE) {
				allProblems.push({ path: printable(file.path), message: `${fileProblems.length - MAX_PROBLEMS_PER_FILE} more problem(s) in this file not listed` });
			}
		}
	}
	function loadFile(file: Snapshot["files"][number], problems: { push(p: FileProblem): void }): void {
		// The checks `drawbridge validate` runs too (crds/gitops.ts): what it passes is not skipped here.
		const checked = checkManifestFile(file.path, file.content, { defaultNamespace, namespaces: allowed });
		for (const d of checked.diagnostics) {
			if (d.severity !== "error" && d.code !== "SKIPPED") continue;
			problems.push({ path: file.path, line: d.line, column: d.col, message: problemText(d) });
		}
		for (const r of checked.resources) {
			const obj = r.object as DrawbridgeResource;
			obj.metadata = { ...obj.metadata, namespace: r.namespace ?? defaultNamespace };
			const key = `${obj.metadata.namespace}/${obj.metadata.name}`;
			const rawKey = resourceKey(r.manifest.object);
			const loaded: LoadedResource = {
				kind: r.kind,
				key,
				object: obj,
				path: file.path,
				line: r.manifest.line,
				// The commit that last changed this resource, not its file (moves, layout, neighbours' edits).
				origin: (rawKey !== undefined ? file.resourceApprovals?.get(rawKey) : undefined) ?? file.approvedBy,
				repository: snap.repository,
			};
			const id = `${obj.kind}:${key}`;
			byKey.set(id, [...(byKey.get(id) ?? []), loaded]);
		}
	}
	const problems = allProblems;
	const resources: LoadedResource[] = [];
	for (const [id, list] of byKey) {
		if (list.length === 1) resources.push(list[0]!);
		else {
			const where = list.map((l) => `${l.path}:${l.line}`).join(", ");
			for (const l of list) problems.push({ path: printable(l.path), line: l.line, message: printable(`${id} is defined more than once (${where}); skipped everywhere`) });
		}
	}
	resources.sort((a, b) => (a.kind + a.key < b.kind + b.key ? -1 : 1));
	problems.sort((a, b) => (a.path === b.path ? (a.line ?? 0) - (b.line ?? 0) : a.path < b.path ? -1 : 1));
	return { commit: snap.commit, resources, problems };
}
