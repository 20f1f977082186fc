/**
 * What a GitSource sync should make exist, and what it should prune. Pure, table-tested.
 */

import type { LoadedResource } from "../../gitsync/load.ts";
import type { KubeBody } from "../../kube/client.ts";
import { ANNOTATIONS, LABELS, labelValue } from "../labels.ts";

/** The object to server-side apply: the manifest, our git-owned label and the approving commit as annotations. */
export function desiredObject(r: LoadedResource, source: { namespace: string; name: string }): KubeBody {
	const o = r.object;
	const annotations: Record<string, string> = {
		...(o.metadata.annotations ?? {}),
		[ANNOTATIONS.repository]: r.repository,
		[ANNOTATIONS.path]: r.path,
		[ANNOTATIONS.commit]: r.origin.sha,
		[ANNOTATIONS.author]: r.origin.author,
		[ANNOTATIONS.committer]: r.origin.committer,
		[ANNOTATIONS.committedAt]: r.origin.committedAt,
	};
	if (r.origin.undated) annotations[ANNOTATIONS.undated] = "true";
	if (r.origin.pullRequest !== undefined) annotations[ANNOTATIONS.pullRequest] = String(r.origin.pullRequest);
	if (r.origin.url) annotations[ANNOTATIONS.url] = r.origin.url;
	return {
		apiVersion: o.apiVersion,
		kind: o.kind,
		metadata: {
			name: o.metadata.name,
			namespace: o.metadata.namespace!,
			labels: { ...(o.metadata.labels ?? {}), [LABELS.gitSource]: labelValue(source.namespace, source.name) },
			annotations,
		},
		spec: structuredClone(o.spec) as unknown,
	};
}

export interface ExistingObject {
	kind: string;
	key: string;
	uid?: string;
	/** The `path` annotation: the file the object came from. */
	path?: string;
}

/**
 * Objects carrying our git-owned label that git no longer declares. Objects whose file currently has
 * problems are kept (a broken file never takes down what it declared before), as is everything when
 * the snapshot could not be read at all (the caller does not prune then).
 */
export function pruneSet(existing: readonly ExistingObject[], desired: ReadonlySet<string>, brokenPaths: ReadonlySet<string>): ExistingObject[] {
	return existing.filter((e) => !desired.has(`${e.kind}:${e.key}`) && !(e.path !== undefined && brokenPaths.has(e.path)));
}
