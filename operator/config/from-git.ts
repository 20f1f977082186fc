/**
 * Standalone use (`drawbridge dev`): a local git repository → resources exactly as the operator would
 * apply them (git-owned annotations carrying the approving commit), ready for `compileBundle`. No
 * Kubernetes involved.
 *
 *   const { resources, problems } = await resourcesFromRepository({ gitdir: "./grants/.git", path: "grants", namespace: "default" });
 *   const bundle = compileBundle({ ...resources, issuers, connectionCredentials, grantCredentials: {}, maskingKey, now: new Date() }, { version, generatedAt: new Date() });
 */

import * as fs from "node:fs";
import git from "isomorphic-git";
import type { AccessGrant, Connection, GuardrailPolicy, MaskingPolicy } from "../../crds/index.ts";
import { type FileProblem, loadSnapshot } from "../gitsync/load.ts";
import { readSnapshot } from "../gitsync/repo.ts";
import { desiredObject } from "../reconcile/desired/gitobject.ts";

export interface RepositoryResources {
	commit: string;
	resources: {
		connections: Connection[];
		grants: AccessGrant[];
		maskingPolicies: MaskingPolicy[];
		guardrailPolicies: GuardrailPolicy[];
	};
	problems: FileProblem[];
}

export async function resourcesFromRepository(opts: {
	/** The `.git` directory (or a bare repository). */
	gitdir: string;
	/** Branch or commit (default HEAD). */
	ref?: string;
	/** Directory of manifests in the repository (default "."). */
	path?: string;
	/** Namespace for manifests without one (default "default"). */
	namespace?: string;
	/** Recorded as the origin repository (default the gitdir path). */
	repository?: string;
}): Promise<RepositoryResources> {
	const commit = await git.resolveRef({ fs, gitdir: opts.gitdir, ref: opts.ref ?? "HEAD" });
	const snap = await readSnapshot(opts.gitdir, commit, { path: opts.path ?? ".", repository: opts.repository ?? opts.gitdir, branch: opts.ref ?? "HEAD" });
	const loaded = loadSnapshot(snap, opts.namespace ?? "default", { namespaces: "any" }); // one local repository, no tenants
	const out: RepositoryResources["resources"] = { connections: [], grants: [], maskingPolicies: [], guardrailPolicies: [] };
	for (const r of loaded.resources) {
		const obj = desiredObject(r, { namespace: opts.namespace ?? "default", name: "standalone" });
		const withTime = { ...obj, metadata: { ...obj.metadata, creationTimestamp: r.origin.committedAt } };
		if (r.kind === "Connection") out.connections.push(withTime as unknown as Connection);
		else if (r.kind === "AccessGrant") out.grants.push(withTime as unknown as AccessGrant);
		else if (r.kind === "MaskingPolicy") out.maskingPolicies.push(withTime as unknown as MaskingPolicy);
		else out.guardrailPolicies.push(withTime as unknown as GuardrailPolicy);
	}
	return { commit, resources: out, problems: loaded.problems };
}
