/**
 * Turns a repository snapshot into validated Drawbridge resources plus per-file problems. Pure (no
 * Kubernetes, no network): `drawbridge dev` reuses it on a local repository.
 *
 * A broken file (YAML error, schema error, unsupported kind, duplicate name) is reported with its path,
 * line and column and skipped; every valid resource of every other file (and the valid documents of a
 * multi-document file) still loads. A resource defined twice is skipped in both files: neither copy
 * is trusted over the other.
 */

import { type DrawbridgeResource, formatPath, loadManifests, type PathSegment, validateResource } from "../../crds/index.ts";
import { type ApprovingCommit, INVISIBLE, printable, resourceKey } from "./commits.ts";

export { printable };
import type { Snapshot } from "./repo.ts";

/** Kinds a grants repository may declare. GitSources are skipped silently; ApprovalRequests are reported. */
export const GIT_KINDS = Object.freeze(["Connection", "AccessGrant", "MaskingPolicy", "GuardrailPolicy"] as const);
export type GitKind = (typeof GIT_KINDS)[number];

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

const MAX_FILE_BYTES = 1 << 20;
/** Problems kept per file (the rest are counted in one last line): a file of 100 000 empty documents is one problem, not 100 000. */
export const MAX_PROBLEMS_PER_FILE = 16;

/** Metadata prefix the operator writes itself (provenance annotations, ownership label): a manifest may not set it. */
const RESERVED_PREFIX = "access.drawbridge.dev/";

export interface LoadOptions {
	/**
	 * Namespaces resources may be placed in with `metadata.namespace` (besides `defaultNamespace`,
	 * which is always allowed). `"any"` for no limit (the operator's own namespace, standalone mode).
	 * Default: only `defaultNamespace`.
	 */
	namespaces?: "any" | readonly string[];
}

/** Invisible in review: every `INVISIBLE` character but tab and newline (ordinary in a justification). */
const HIDDEN = new RegExp(`(?![\\t\\n])${INVISIBLE.source}`, "u");

/** The first string (value or key) in `v` carrying characters a reviewer cannot see. */
function findHiddenText(v: unknown, path: PathSegment[] = []): { path: PathSegment[]; found: string } | undefined {
	if (typeof v === "string") {
		const m = HIDDEN.exec(v);
		return m ? { path, found: printable(m[0]) } : undefined;
	}
	if (Array.isArray(v)) {
		for (const [i, x] of v.entries()) {
			const r = findHiddenText(x, [...path, i]);
			if (r) return r;
		}
		return undefined;
	}
	if (v && typeof v === "object") {
		for (const [k, x] of Object.entries(v)) {
			const km = HIDDEN.exec(k);
			if (km) return { path: [...path, k], found: printable(km[0]) };
			const r = findHiddenText(x, [...path, k]);
			if (r) return r;
		}
	}
	return undefined;
}

/** Validates every manifest in the snapshot. `defaultNamespace` is used where metadata.namespace is absent. */
export function loadSnapshot(snap: Snapshot, defaultNamespace: string, opts: LoadOptions = {}): LoadedSnapshot {
	const allProblems: FileProblem[] = [];
	const byKey = new Map<string, LoadedResource[]>();
	const allowed = opts.namespaces ?? [];
	for (const file of snap.files) {
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
		if (printable(file.path) !== file.path) {
			// The path lands in annotations, status and Events: a name carrying ANSI escapes or newlines is refused.
			problems.push({ path: file.path, message: "file name contains control or invisible characters; skipped" });
			return;
		}
		if (file.content.length > MAX_FILE_BYTES) {
			problems.push({ path: file.path, message: `file larger than ${MAX_FILE_BYTES} bytes` });
			return;
		}
		let text: string;
		try {
			text = new TextDecoder("utf-8", { fatal: true }).decode(file.content);
		} catch {
			problems.push({ path: file.path, message: "file is not valid UTF-8" });
			return;
		}
		const { manifests, errors } = loadManifests(text, file.path);
		for (const e of errors) problems.push({ path: file.path, line: e.line, column: e.col, message: `${e.code}: ${e.message}` });
		for (const m of manifests) {
			const kind = m.object.kind;
			// A repository may keep the GitSource that follows it (applied once by hand): not synced, not an error.
			if (kind === "GitSource" && m.object.apiVersion === "access.drawbridge.dev/v1alpha1") continue;
			if (typeof kind === "string" && !(GIT_KINDS as readonly string[]).includes(kind) && typeof m.object.apiVersion === "string" && m.object.apiVersion.startsWith("access.drawbridge.dev/")) {
				problems.push({ path: file.path, line: m.line, column: m.col, message: `kind ${kind} cannot be synced from git` });
				continue;
			}
			const rawKey = resourceKey(m.object);
			const res = validateResource(m.object);
			if (res.errors.length > 0 || !res.value) {
				for (const e of res.errors) {
					const p = m.positionOf(e.path);
					problems.push({ path: file.path, line: p.line, column: p.col, message: `${e.field || "(root)"}: ${e.message}` });
				}
				continue;
			}
			const obj = structuredClone(res.value) as unknown as DrawbridgeResource;
			delete (obj as { status?: unknown }).status;
			const reserved = [
				...Object.keys(obj.metadata.annotations ?? {}).map((k) => ["annotations", k] as const),
				...Object.keys(obj.metadata.labels ?? {}).map((k) => ["labels", k] as const),
			].filter(([, k]) => k.toLowerCase().startsWith(RESERVED_PREFIX));
			if (reserved.length > 0) {
				// Provenance (commit, pull request, approval link) and ownership are the operator's to write:
				// a manifest naming PR #42 or another approval URL would forge the audit trail.
				const p = m.positionOf(["metadata", reserved[0]![0], reserved[0]![1]], "key");
				problems.push({ path: file.path, line: p.line, column: p.col, message: `metadata.${reserved[0]![0]}: ${JSON.stringify(reserved[0]![1])} is reserved for the operator (prefix ${RESERVED_PREFIX}); the resource is skipped` });
				continue;
			}
			const hidden = findHiddenText(obj);
			if (hidden) {
				// A reviewer reads `alice` where the grant says `alice\u{200b}`, or text reordered by a bidi override.
				const p = m.positionOf(hidden.path);
				problems.push({ path: file.path, line: p.line, column: p.col, message: `${formatPath(hidden.path)}: contains control or invisible characters (${hidden.found}) a reviewer cannot see; the resource is skipped` });
				continue;
			}
			const namespace = obj.metadata.namespace ?? defaultNamespace;
			if (namespace !== defaultNamespace && allowed !== "any" && !allowed.includes(namespace)) {
				const p = m.positionOf(["metadata", "namespace"]);
				problems.push({
					path: file.path,
					line: p.line,
					column: p.col,
					message: `metadata.namespace: ${JSON.stringify(namespace)} is outside this GitSource's namespace ${JSON.stringify(defaultNamespace)}; only a GitSource in the operator's namespace may place resources in other namespaces. The resource is skipped`,
				});
				continue;
			}
			obj.metadata = { ...obj.metadata, namespace };
			const key = `${obj.metadata.namespace}/${obj.metadata.name}`;
			const loaded: LoadedResource = {
				kind: obj.kind as GitKind,
				key,
				object: obj,
				path: file.path,
				line: m.line,
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
