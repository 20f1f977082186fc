/**
 * Turns a repository snapshot into validated Drawbridge resources plus per-file problems. Pure (no
 * Kubernetes, no network): `drawbridge dev` reuses it on a local repository.
 *
 * A broken file (YAML error, schema error, unsupported kind, duplicate name) is reported with its path,
 * line and column and skipped; every valid resource of every other file (and the valid documents of a
 * multi-document file) still loads. A resource defined twice is skipped in both files: neither copy
 * is trusted over the other.
 */

import { type DrawbridgeResource, loadManifests, validateResource } from "../../crds/index.ts";
import type { ApprovingCommit } from "./commits.ts";
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

/** Validates every manifest in the snapshot. `defaultNamespace` is used where metadata.namespace is absent. */
export function loadSnapshot(snap: Snapshot, defaultNamespace: string): LoadedSnapshot {
	const problems: FileProblem[] = [];
	const byKey = new Map<string, LoadedResource[]>();
	for (const file of snap.files) {
		if (file.content.length > MAX_FILE_BYTES) {
			problems.push({ path: file.path, message: `file larger than ${MAX_FILE_BYTES} bytes` });
			continue;
		}
		let text: string;
		try {
			text = new TextDecoder("utf-8", { fatal: true }).decode(file.content);
		} catch {
			problems.push({ path: file.path, message: "file is not valid UTF-8" });
			continue;
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
			obj.metadata = { ...obj.metadata, namespace: obj.metadata.namespace ?? defaultNamespace };
			const key = `${obj.metadata.namespace}/${obj.metadata.name}`;
			const loaded: LoadedResource = {
				kind: obj.kind as GitKind,
				key,
				object: obj,
				path: file.path,
				line: m.line,
				origin: file.approvedBy,
				repository: snap.repository,
			};
			const id = `${obj.kind}:${key}`;
			byKey.set(id, [...(byKey.get(id) ?? []), loaded]);
		}
	}
	const resources: LoadedResource[] = [];
	for (const [id, list] of byKey) {
		if (list.length === 1) resources.push(list[0]!);
		else {
			const where = list.map((l) => `${l.path}:${l.line}`).join(", ");
			for (const l of list) problems.push({ path: l.path, line: l.line, message: `${id} is defined more than once (${where}); skipped everywhere` });
		}
	}
	resources.sort((a, b) => (a.kind + a.key < b.kind + b.key ? -1 : 1));
	problems.sort((a, b) => (a.path === b.path ? (a.line ?? 0) - (b.line ?? 0) : a.path < b.path ? -1 : 1));
	return { commit: snap.commit, resources, problems };
}
