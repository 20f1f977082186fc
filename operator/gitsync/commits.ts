/**
 * Commit metadata: who approved a change and in which pull request. Pure.
 */
import { printable } from "../../crds/text.ts";

// One predicate with `drawbridge validate` and what approvers see (crds/text.ts).
export { INVISIBLE, printable } from "../../crds/text.ts";

/** The approving change of one file, as recorded in resource annotations and grant status. */
export interface ApprovingCommit {
	sha: string;
	/** `Name <email>`. */
	author: string;
	committer: string;
	/** RFC 3339 (committer time: when the merge happened). */
	committedAt: string;
	/** First line of the message. */
	subject: string;
	pullRequest?: number;
	/** Link to the pull request when known, else to the commit. */
	url?: string;
	/**
	 * The history walk stopped (`maxHistory`, or a parent object missing) before the commit that
	 * introduced the file's content: this is the oldest commit walked, not the approval, and its time is
	 * later than the approval's. A window counted from it would start again after the grant ended.
	 */
	undated?: true;
}

/**
 * The pull-request number a merge or squash commit names, from the first line of its message:
 * GitHub merge `Merge pull request #42 from org/branch`, GitHub/Gitea squash `Title (#42)`, Gitea merge
 * `Merge pull request 'Title' (#42) from branch into main`, GitLab trailer `See merge request grp/prj!42`.
 */
export function parsePullRequestNumber(message: string): number | undefined {
	const first = message.split("\n", 1)[0] ?? "";
	const patterns = [/^Merge pull request #(\d+)\b/, /\(#(\d+)\)\s*(?:from .*)?$/, /\(#(\d+)\)/];
	for (const p of patterns) {
		const m = p.exec(first);
		if (m) return toPr(m[1]!);
	}
	const gitlab = /^See merge request [\w./-]+!(\d+)\s*$/m.exec(message);
	return gitlab ? toPr(gitlab[1]!) : undefined;
}

function toPr(digits: string): number | undefined {
	const n = Number(digits);
	return Number.isSafeInteger(n) && n > 0 ? n : undefined;
}

/** Web base of a repository clone URL (`https://github.com/org/repo.git` → `https://github.com/org/repo`), credentials stripped. */
export function repositoryWebBase(url: string): string | undefined {
	let u: URL;
	try {
		u = new URL(url);
	} catch {
		return undefined;
	}
	if (u.protocol !== "https:" && u.protocol !== "http:") return undefined;
	u.username = "";
	u.password = "";
	u.search = "";
	u.hash = "";
	return u.toString().replace(/\/+$/, "").replace(/\.git$/, "");
}

/** Link for auditors: the pull request when the number is known, else the commit. GitHub uses `/pull/N`, Gitea/Forgejo `/pulls/N`. */
export function approvalUrl(repoUrl: string, sha: string, pullRequest?: number): string | undefined {
	const base = repositoryWebBase(repoUrl);
	if (!base) return undefined;
	const github = new URL(base).hostname === "github.com";
	if (pullRequest !== undefined) return `${base}/${github ? "pull" : "pulls"}/${pullRequest}`;
	return `${base}/commit/${sha}`;
}

/** Formats an isomorphic-git person (printable: it lands in annotations, status and recordings). */
export function formatPerson(p: { name: string; email: string }): string {
	return printable(`${p.name} <${p.email}>`);
}

/** How a resource is told apart across commits: kind, namespace as written ("" when absent), name. */
export function resourceKey(object: Record<string, unknown>): string | undefined {
	const meta = object.metadata as { name?: unknown; namespace?: unknown } | undefined;
	if (typeof object.kind !== "string" || typeof meta?.name !== "string") return undefined;
	const ns = typeof meta.namespace === "string" ? meta.namespace : "";
	return `${object.kind}/${ns}/${meta.name}`;
}
