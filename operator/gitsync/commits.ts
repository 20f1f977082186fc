/**
 * Commit metadata: who approved a change and in which pull request. Pure.
 */

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

/**
 * Characters a reader does not see as themselves: controls (C0, DEL, C1), format characters (bidi
 * controls, zero-width characters, the soft hyphen, tag characters, the Arabic letter mark), line and
 * paragraph separators, and every other default-ignorable code point (variation selectors, Hangul
 * fillers, the combining grapheme joiner, Mongolian vowel separator), which renderers draw as nothing.
 * Only C0/C1, a few bidi and zero-width characters were listed before: `alice` + U+00AD, or
 * `accounts` + tag characters, read as `alice` and `accounts` in review.
 */
export const INVISIBLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]/u;
const INVISIBLE_ALL = new RegExp(INVISIBLE.source, "gu");

/**
 * Text from the repository (paths, YAML keys, commit authors) made safe for status, Events, annotations
 * and logs: every `INVISIBLE` character (ANSI escapes, newlines, bidi controls, zero-width characters...)
 * is shown as `\u{…}`.
 */
export function printable(text: string): string {
	return text.replace(INVISIBLE_ALL, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}

/** How a resource is told apart across commits: kind, namespace as written ("" when absent), name. */
export function resourceKey(object: Record<string, unknown>): string | undefined {
	const meta = object.metadata as { name?: unknown; namespace?: unknown } | undefined;
	if (typeof object.kind !== "string" || typeof meta?.name !== "string") return undefined;
	const ns = typeof meta.namespace === "string" ? meta.namespace : "";
	return `${object.kind}/${ns}/${meta.name}`;
}
