/**
 * The grants repository, read with isomorphic-git over HTTP(S) into a bare git dir (no work tree).
 *
 * `fetchBranch` brings the branch head locally (token auth as HTTP basic: the token is the password,
 * `x-access-token` the default user name, which GitHub, Gitea and GitLab all accept).
 * `readSnapshot` lists the YAML files under a path at a commit and, for each, the approving commit:
 * the newest commit on the branch's first-parent chain whose tree changed that file, and for each
 * resource in it the newest one that changed the resource's parsed content (wherever it was declared:
 * what `duration` windows count from). On a branch protected by pull requests that is the merge (or
 * squash) commit, i.e. the approval itself.
 * No Kubernetes in here: `drawbridge dev` reuses it against a local repository.
 *
 * A git server is untrusted input too: every fetch has one deadline for all its HTTP requests
 * (`timeoutMs`) and a cap on the bytes it downloads (`maxBytes`, counted while the pack streams in,
 * before isomorphic-git buffers and indexes it); `fastForward` tells whether a new head descends from
 * the commit synced last, so a server serving an older (even signed) commit cannot roll access back.
 */

import { type LookupAddress, type LookupOptions, lookup as dnsLookup } from "node:dns";
import * as fs from "node:fs";
import * as http from "node:http";
import * as https from "node:https";
import { BlockList, isIP } from "node:net";
import git from "isomorphic-git";
import type { GitHttpRequest, GitHttpResponse, HttpClient } from "isomorphic-git";
import { isManifestPath } from "../../crds/gitops.ts";
import { isBranchName } from "../../crds/schema/gitsource.ts";
import { loadManifests } from "../../crds/index.ts";
import { canonicalJson } from "../../gateway/config/canonical.ts";
import { type ApprovingCommit, approvalUrl, formatPerson, parsePullRequestNumber, printable, resourceKey } from "./commits.ts";

export interface GitRemote {
	url: string;
	branch: string;
	/** Token for HTTP basic auth (password). */
	token?: string;
	/** Basic-auth user name sent with the token (default `x-access-token`). */
	username?: string;
	/** Fetch depth (default: full history; a shallow clone attributes older files to its oldest commit). */
	depth?: number;
	/** Deadline for the whole fetch, every HTTP request included (default: none). */
	timeoutMs?: number;
	/** Most response bytes one fetch may download, pack included (default: no cap). */
	maxBytes?: number;
	/** Ends the fetch early (operator shutdown): its requests are aborted and the fetch rejects with the reason. */
	signal?: AbortSignal;
	/** Connect to link-local and cloud metadata addresses too (default: refused, `FETCH_REFUSED`). */
	allowLinkLocal?: boolean;
}

export type GitFetchErrorCode = "FETCH_TIMEOUT" | "FETCH_TOO_LARGE" | "FETCH_REFUSED" | "FETCH_FAILED";

/** A fetch the operator gave up on: the server stalled or sent too much, or it would have gone where it may not (a redirect, a link-local address). */
export class GitFetchError extends Error {
	readonly code: GitFetchErrorCode;
	constructor(code: GitFetchErrorCode, message: string) {
		super(message);
		this.name = "GitFetchError";
		this.code = code;
	}
}

async function collectBody(body: GitHttpRequest["body"]): Promise<Uint8Array | undefined> {
	if (!body) return undefined;
	const parts: Uint8Array[] = [];
	for await (const chunk of body as AsyncIterable<Uint8Array>) parts.push(chunk);
	return Buffer.concat(parts);
}

/**
 * Addresses a GitSource may not fetch from unless the operator runs with `--git-allow-link-local`:
 * link-local networks, where cloud metadata services answer with the node's credentials (AWS, GCP,
 * Azure, OpenStack at 169.254.169.254, AWS over IPv6 at fd00:ec2::254, Alibaba at 100.100.100.200),
 * their IPv4-mapped and NAT64 forms. Whoever may create a GitSource (a tenant, in their namespace)
 * names the URL; the operator's fetch is not theirs to aim at the node. Loopback (tests, `drawbridge
 * dev`, a sidecar) and private networks (an in-cluster git server) stay allowed.
 */
const REFUSED = new BlockList();
REFUSED.addSubnet("169.254.0.0", 16, "ipv4");
REFUSED.addAddress("100.100.100.200", "ipv4");
REFUSED.addSubnet("fe80::", 10, "ipv6");
REFUSED.addAddress("fd00:ec2::254", "ipv6");
REFUSED.addSubnet("64:ff9b::a9fe:0", 112, "ipv6");
/** Names of metadata services, refused before any lookup (a resolver may answer them from a hosts file). */
const METADATA_NAMES = new Set(["metadata.google.internal", "metadata.goog", "metadata"]);

/** Why the operator refuses to connect to `address` (an IP literal), or undefined. */
export function refusedAddress(address: string): string | undefined {
	const family = isIP(address);
	if (family === 0) return undefined;
	return REFUSED.check(address, family === 4 ? "ipv4" : "ipv6") ? `${address} is a link-local or cloud metadata address` : undefined;
}

/** Why the operator refuses the host of `url` before resolving it, or undefined. */
function refusedHost(hostname: string): string | undefined {
	const host = hostname.replace(/^\[(.*)\]$/, "$1").replace(/\.$/, "").toLowerCase();
	if (METADATA_NAMES.has(host)) return `${host} is a cloud metadata service`;
	return refusedAddress(host);
}

function refusal(why: string): GitFetchError {
	return new GitFetchError("FETCH_REFUSED", `${why}; the operator does not fetch from link-local or metadata addresses (--git-allow-link-local allows them)`);
}

/**
 * `dns.lookup` for the fetch's sockets that refuses a name resolving to any refused address: the check
 * is on the address the socket then connects to, so a name that resolves differently on a second lookup
 * (DNS rebinding) gains nothing.
 */
function guardedLookup(): NonNullable<http.RequestOptions["lookup"]> {
	return ((hostname: string, options: LookupOptions, callback: (err: Error | null, address: string | LookupAddress[], family?: number) => void) => {
		dnsLookup(hostname, { ...options, all: true }, (err, addresses) => {
			if (err) return callback(err, "");
			const bad = addresses.map((a) => refusedAddress(a.address)).find((x) => x !== undefined);
			if (bad) return callback(refusal(`${hostname} resolves to ${bad.replace(/ is .*/, "")}, a link-local or cloud metadata address`), "");
			if (options.all) return callback(null, addresses);
			const first = addresses[0];
			if (!first) return callback(Object.assign(new Error(`${hostname}: no address`), { code: "ENOTFOUND" }), "");
			callback(null, first.address, first.family);
		});
	}) as unknown as NonNullable<http.RequestOptions["lookup"]>;
}

/**
 * An isomorphic-git HTTP client on node's http/https, bounded by `signal` (aborting it tears down the
 * socket, so a stalled server leaks nothing) and by a byte budget shared by every request of one fetch.
 * Redirects are never followed (a 3xx is a failure: the URL in the GitSource is where the repository
 * is), and unless `allowLinkLocal`, no socket goes to a link-local or cloud metadata address, whether
 * the URL names it or a name resolves to it.
 */
function boundedHttp(signal: AbortSignal, budget: { left: number; max: number }, allowLinkLocal: boolean): HttpClient {
	return {
		async request(req: GitHttpRequest): Promise<GitHttpResponse> {
			const url = new URL(req.url);
			if (url.protocol !== "http:" && url.protocol !== "https:") throw new GitFetchError("FETCH_FAILED", "the repository URL cannot be fetched over HTTP(S)");
			const refusedByName = allowLinkLocal ? undefined : refusedHost(url.hostname);
			if (refusedByName) throw refusal(refusedByName);
			const body = await collectBody(req.body);
			const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
				const r = (url.protocol === "https:" ? https : http).request(url, {
					method: req.method ?? "GET",
					headers: { ...(req.headers ?? {}), ...(body ? { "content-length": String(body.byteLength) } : {}) },
					signal,
					agent: false,
					...(allowLinkLocal ? {} : { lookup: guardedLookup() }),
				});
				r.once("response", resolve);
				r.once("error", reject);
				r.end(body);
			});
			if (res.statusCode !== undefined && res.statusCode >= 300 && res.statusCode < 400) {
				res.destroy();
				// Where it points is not shown: the answer is the server's, and the URL may carry what it asks for.
				throw new GitFetchError("FETCH_REFUSED", `the git server answered HTTP ${res.statusCode} (a redirect); redirects are not followed: set spec.url to where the repository is`);
			}
			const declared = Number(res.headers["content-length"] ?? "0");
			if (declared > budget.left) {
				res.destroy();
				throw new GitFetchError("FETCH_TOO_LARGE", `the server announced ${declared} bytes, more than the ${budget.max}-byte fetch limit`);
			}
			async function* counted(): AsyncGenerator<Uint8Array> {
				for await (const chunk of res as AsyncIterable<Buffer>) {
					budget.left -= chunk.byteLength;
					if (budget.left < 0) {
						res.destroy();
						throw new GitFetchError("FETCH_TOO_LARGE", `the server sent more than the ${budget.max}-byte fetch limit`);
					}
					yield new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
				}
			}
			const headers: Record<string, string> = {};
			for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(", ") : v;
			return {
				url: req.url,
				method: req.method ?? "GET",
				statusCode: res.statusCode ?? 0,
				statusMessage: res.statusMessage ?? "",
				headers,
				body: counted(),
			};
		},
	};
}

export interface SnapshotFile {
	/** Path inside the repository. */
	path: string;
	content: Uint8Array;
	blobOid: string;
	/** The newest commit on the first-parent chain that changed this file. */
	approvedBy: ApprovingCommit;
	/**
	 * Per resource declared in the file (`resourceKey`): the newest commit on the first-parent chain that
	 * changed that resource's content, wherever in the tree it was declared then (comments, layout and
	 * key order are not content). A resource moved to another file, reformatted, or sharing its file with
	 * an edited one keeps the approval it had. Absent for documents that do not parse.
	 */
	resourceApprovals?: ReadonlyMap<string, ApprovingCommit>;
}

/**
 * Resources declared in a blob (`resourceKey` → canonical JSON), by blob oid, shared by every sync of
 * this process: a blob never changes, and parsing is what the approving-commit walk costs. Bounded; the
 * oldest entries go first.
 */
const PARSED_BLOBS = new Map<string, Map<string, string>>();
const PARSED_BLOBS_MAX = 20_000;
/** ... and by the characters they hold (canonical JSON), so a few thousand large blobs cannot fill memory. */
const PARSED_BLOBS_MAX_CHARS = 64 * 1024 * 1024;
const PARSED_SIZES = new Map<string, number>();
let parsedBytes = 0;

/** Content of a resource declared more than once in one tree: never equal to anything. */
const AMBIGUOUS = "\u0000ambiguous";
/** Larger blobs are not parsed for attribution (the loader refuses them anyway). */
const MAX_ATTRIBUTED_BLOB_BYTES = 1 << 20;

export interface Snapshot {
	repository: string;
	branch: string;
	commit: string;
	files: SnapshotFile[];
}

/** `refs/heads/<branch>` (a branch given by its full name is kept as it is). */
export function branchRef(branch: string): string {
	return branch.startsWith("refs/heads/") ? branch : `refs/heads/${branch}`;
}

/** Initialises (once) a bare repository at `gitdir` and fetches the branch head. Returns its SHA. */
export async function fetchBranch(gitdir: string, remote: GitRemote): Promise<string> {
	if (!isBranchName(remote.branch.replace(/^refs\/heads\//, ""))) {
		// Checked here too: a GitSource stored before the schema said so is not validated again.
		throw new GitFetchError("FETCH_REFUSED", `${JSON.stringify(printable(remote.branch))} is not a branch name git accepts (no "..", "//", "@{", leading "." or "/", trailing "/", "." or ".lock", controls)`);
	}
	if (!fs.existsSync(`${gitdir}/HEAD`)) {
		fs.mkdirSync(gitdir, { recursive: true });
		await git.init({ fs, gitdir, bare: true, defaultBranch: remote.branch });
	}
	// The remote is (re)written every time: a GitSource's URL may change. No credentials in it.
	await git.addRemote({ fs, gitdir, remote: "origin", url: remote.url, force: true });
	const ac = new AbortController();
	const budget = { left: remote.maxBytes ?? Number.POSITIVE_INFINITY, max: remote.maxBytes ?? Number.POSITIVE_INFINITY };
	let timer: NodeJS.Timeout | undefined;
	let onAbort: (() => void) | undefined;
	// The race settles on time even if isomorphic-git were to miss the abort; the abort ends the sockets.
	const deadline = new Promise<never>((_, reject) => {
		const stop = (err: Error) => {
			ac.abort(err);
			reject(err);
		};
		if (remote.signal) {
			onAbort = () => stop(remote.signal!.reason instanceof Error ? remote.signal!.reason : new Error("fetch aborted"));
			if (remote.signal.aborted) onAbort();
			else remote.signal.addEventListener("abort", onAbort, { once: true });
		}
		if (remote.timeoutMs === undefined) return;
		timer = setTimeout(() => stop(new GitFetchError("FETCH_TIMEOUT", `no complete answer from the git server within ${remote.timeoutMs} ms`)), remote.timeoutMs);
	});
	const fetching = git.fetch({
		fs,
		http: boundedHttp(ac.signal, budget, remote.allowLinkLocal === true),
		gitdir,
		remote: "origin",
		ref: remote.branch,
		// The branch by its full name: isomorphic-git resolves a short name as git does, `refs/tags/<name>`
		// before `refs/heads/<name>`, so a tag named `main` (which branch protection does not cover)
		// stood in for the protected branch.
		remoteRef: branchRef(remote.branch),
		singleBranch: true,
		tags: false,
		...(remote.depth ? { depth: remote.depth } : {}),
		...(remote.token ? { onAuth: () => ({ username: remote.username ?? "x-access-token", password: remote.token! }) } : {}),
		onAuthFailure: () => ({ cancel: true }),
	});
	fetching.catch(() => {}); // settled by the race below when the deadline wins
	let res: Awaited<typeof fetching>;
	try {
		res = await Promise.race([fetching, deadline]);
	} catch (e) {
		// An aborted request surfaces as the abort reason or a generic AbortError: report the deadline.
		if (ac.signal.aborted && ac.signal.reason instanceof Error) throw ac.signal.reason;
		if (e instanceof GitFetchError) throw e;
		throw new GitFetchError("FETCH_FAILED", fetchFailure(e));
	} finally {
		clearTimeout(timer);
		if (onAbort) remote.signal?.removeEventListener("abort", onAbort);
	}
	if (!res.fetchHead) throw new Error(`branch ${remote.branch} not found at ${redactUrl(remote.url)}`);
	return res.fetchHead;
}

/**
 * Why a fetch failed, in words that carry nothing the server sent. isomorphic-git puts the first 256
 * characters of an answer that is not git's into its message ("... but received: <body>"), and that
 * message went to the GitSource's status, its Events and the log: whoever may create a GitSource (a
 * tenant, in their namespace) read what any URL the operator can reach answers (a cluster-internal
 * service, a cloud metadata endpoint: `http://169.254.169.254/...?x=` makes the git path a query).
 * Only the error's kind, an HTTP status or a socket error code are kept.
 */
function fetchFailure(e: unknown): string {
	const err = e as { code?: unknown; name?: unknown; data?: { statusCode?: unknown }; cause?: { code?: unknown } };
	const code = typeof err?.code === "string" ? err.code : typeof err?.name === "string" ? err.name : "Error";
	switch (code) {
		case "HttpError":
			return `the git server answered HTTP ${Number(err.data?.statusCode) || "error"}`;
		case "SmartHttpError":
		case "ParseError":
		case "EmptyServerResponseError":
		case "RemoteCapabilityError":
			return "the server did not answer as a git smart-HTTP server (its answer is not shown)";
		case "UserCanceledError":
			return "the git server refused the credentials (HTTP 401)";
		case "UrlParseError":
		case "UnknownTransportError":
			return "the repository URL cannot be fetched over HTTP(S)";
		case "NotFoundError":
			return "the branch or an object it needs was not found on the git server";
		default: {
			// Node's fetch: "fetch failed", the socket error in `cause` (ECONNREFUSED, ENOTFOUND, ...).
			const cause = typeof err?.cause?.code === "string" ? ` (${err.cause.code})` : "";
			return `the git server could not be reached or read: ${code}${cause}`;
		}
	}
}

export function redactUrl(url: string): string {
	try {
		const u = new URL(url);
		u.username = "";
		u.password = "";
		return u.toString();
	} catch {
		return url;
	}
}

/** YAML files, except under hidden directories or hidden files; the rule `drawbridge validate` walks by (crds/gitops.ts). */
const isManifest = isManifestPath;

/**
 * Files (path → blob oid) below `prefix` in a tree, memoised per tree oid so unchanged subtrees cost
 * nothing across commits.
 */
class TreeIndex {
	private memo = new Map<string, Map<string, string>>();
	private cache = {};
	constructor(private gitdir: string) {}

	async subtreeOid(commitTree: string, prefix: string): Promise<string | undefined> {
		let oid = commitTree;
		for (const part of prefix.split("/").filter(Boolean)) {
			const { tree } = await git.readTree({ fs, gitdir: this.gitdir, oid, cache: this.cache });
			const e = tree.find((x) => x.path === part && x.type === "tree");
			if (!e) return undefined;
			oid = e.oid;
		}
		return oid;
	}

	async files(treeOid: string | undefined, base: string): Promise<Map<string, string>> {
		if (!treeOid) return new Map();
		const hit = this.memo.get(`${treeOid}:${base}`);
		if (hit) return hit;
		const out = new Map<string, string>();
		const { tree } = await git.readTree({ fs, gitdir: this.gitdir, oid: treeOid, cache: this.cache });
		for (const e of tree) {
			const p = base ? `${base}/${e.path}` : e.path;
			if (e.type === "tree") for (const [k, v] of await this.files(e.oid, p)) out.set(k, v);
			else if (e.type === "blob" && isManifest(p)) out.set(p, e.oid);
		}
		this.memo.set(`${treeOid}:${base}`, out);
		return out;
	}
}

export interface SnapshotOptions {
	/** Directory inside the repository holding the manifests ("" or "." for the root). */
	path: string;
	/** Repository URL recorded in origins (user info is stripped: tokens are never recorded). */
	repository: string;
	branch: string;
	/** Stop walking history after this many commits (default 1000): older changes are attributed to the last commit walked. */
	maxHistory?: number;
	/**
	 * Most bytes of file content one snapshot may read, each blob counted once: the manifests at the
	 * head and those the approving-commit walk parses in older commits (default: no cap). A pack is
	 * compressed, so the fetch cap does not bound this: 1 MiB of repeated lines is a few hundred bytes
	 * in a pack, and a few thousand such files held in memory ended the operator. Over it, the snapshot
	 * fails with `FETCH_TOO_LARGE`.
	 */
	maxReadBytes?: number;
}

/** The manifests at `commit` with their approving commits. */
export async function readSnapshot(gitdir: string, commit: string, opts: SnapshotOptions): Promise<Snapshot> {
	const prefix = opts.path.replace(/^\.?\/*/, "").replace(/\/+$/, "");
	const idx = new TreeIndex(gitdir);
	const metaCache = new Map<string, ApprovingCommit>();
	const repository = redactUrl(opts.repository);
	const metaOf = async (oid: string): Promise<{ meta: ApprovingCommit; parent?: string; tree: string }> => {
		const { commit: c } = await git.readCommit({ fs, gitdir, oid });
		let meta = metaCache.get(oid);
		if (!meta) {
			const pr = parsePullRequestNumber(c.message);
			const url = approvalUrl(opts.repository, oid, pr);
			meta = {
				sha: oid,
				author: formatPerson(c.author),
				committer: formatPerson(c.committer),
				committedAt: new Date(c.committer.timestamp * 1000).toISOString(),
				subject: printable(c.message.split("\n", 1)[0] ?? ""),
				...(pr !== undefined ? { pullRequest: pr } : {}),
				...(url ? { url } : {}),
			};
			metaCache.set(oid, meta);
		}
		return { meta, tree: c.tree, ...(c.parent[0] ? { parent: c.parent[0] } : {}) };
	};

	// Every blob read counts against the read budget once.
	const counted = new Set<string>();
	let readLeft = opts.maxReadBytes ?? Number.POSITIVE_INFINITY;
	const readBlob = async (oid: string): Promise<Uint8Array> => {
		const { blob } = await git.readBlob({ fs, gitdir, oid });
		if (!counted.has(oid)) {
			counted.add(oid);
			readLeft -= blob.length;
			if (readLeft < 0) {
				throw new GitFetchError("FETCH_TOO_LARGE", `the files under ${JSON.stringify(prefix || ".")} (at this commit and in the history read for approvals) are more than the ${opts.maxReadBytes}-byte read limit`);
			}
		}
		return blob;
	};

	// Resources by content, per blob and per tree: parsed once each, however many commits share them.
	const parseBlob = async (oid: string): Promise<Map<string, string>> => {
		const hit = PARSED_BLOBS.get(oid);
		if (hit) return hit;
		const out = new Map<string, string>();
		const blob = await readBlob(oid);
		if (blob.length <= MAX_ATTRIBUTED_BLOB_BYTES) {
			let text: string | undefined;
			try {
				text = new TextDecoder("utf-8", { fatal: true }).decode(blob);
			} catch {
				text = undefined;
			}
			for (const m of text === undefined ? [] : loadManifests(text, "").manifests) {
				const key = resourceKey(m.object);
				if (key !== undefined) out.set(key, out.has(key) ? AMBIGUOUS : canonicalJson(m.object));
			}
		}
		let size = 0;
		for (const [k, v] of out) size += k.length + v.length;
		PARSED_BLOBS.set(oid, out);
		PARSED_SIZES.set(oid, size);
		parsedBytes += size;
		while (PARSED_BLOBS.size > PARSED_BLOBS_MAX || parsedBytes > PARSED_BLOBS_MAX_CHARS) {
			const oldest = PARSED_BLOBS.keys().next().value!;
			PARSED_BLOBS.delete(oldest);
			parsedBytes -= PARSED_SIZES.get(oldest) ?? 0;
			PARSED_SIZES.delete(oldest);
		}
		return out;
	};
	const treeResources = new WeakMap<Map<string, string>, Map<string, string>>();
	const resourcesOf = async (files: Map<string, string>): Promise<Map<string, string>> => {
		const hit = treeResources.get(files);
		if (hit) return hit;
		const out = new Map<string, string>();
		for (const oid of files.values()) {
			for (const [key, content] of await parseBlob(oid)) out.set(key, out.has(key) ? AMBIGUOUS : content);
		}
		treeResources.set(files, out);
		return out;
	};

	const head = await metaOf(commit);
	const current = await idx.files(await idx.subtreeOid(head.tree, prefix), prefix);
	const approved = new Map<string, ApprovingCommit>();
	const currentResources = await resourcesOf(current);
	const resourceApproved = new Map<string, ApprovingCommit>();
	let cur = head;
	let curFiles = current;
	let curResources = currentResources;
	const max = opts.maxHistory ?? 1000;
	for (let walked = 0; approved.size < current.size || resourceApproved.size < currentResources.size; walked++) {
		let parentFiles = new Map<string, string>();
		let parent: typeof cur | undefined;
		let cut = cur.parent !== undefined && walked >= max;
		if (cur.parent && walked < max) {
			try {
				parent = await metaOf(cur.parent);
				parentFiles = await idx.files(await idx.subtreeOid(parent.tree, prefix), prefix);
			} catch {
				parent = undefined; // shallow clone boundary: the parent object is not here
				cut = true;
			}
		}
		for (const [path, oid] of current) {
			if (approved.has(path)) continue;
			// Unresolved paths still have their current blob in `cur`: did `cur` introduce it?
			// A cut walk (no parent read) cannot tell: the file may be older, and its approval with it.
			if (cut) approved.set(path, { ...cur.meta, undated: true });
			else if (curFiles.get(path) === oid && parentFiles.get(path) !== oid) approved.set(path, cur.meta);
			else if (!parent) approved.set(path, cur.meta); // the root commit introduced what is left
		}
		// The same by resource content: a commit that only moved, reformatted or re-commented a resource
		// (or edited its neighbour in the same file) did not approve it again. Per file, such a commit
		// restarted a `duration` window, and brought back every expired grant it touched.
		const parentResources = parent ? await resourcesOf(parentFiles) : new Map<string, string>();
		for (const [key, content] of currentResources) {
			if (resourceApproved.has(key)) continue;
			if (cut) resourceApproved.set(key, { ...cur.meta, undated: true });
			else if (content !== AMBIGUOUS && curResources.get(key) === content && parentResources.get(key) !== content) resourceApproved.set(key, cur.meta);
			else if (!parent || content === AMBIGUOUS) resourceApproved.set(key, cur.meta);
		}
		if (!parent) break;
		cur = parent;
		curFiles = parentFiles;
		curResources = parentResources;
	}

	const files: SnapshotFile[] = [];
	for (const [path, blobOid] of [...current].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
		const blob = await readBlob(blobOid);
		const resourceApprovals = new Map<string, ApprovingCommit>();
		for (const key of (await parseBlob(blobOid)).keys()) {
			const by = resourceApproved.get(key);
			if (by) resourceApprovals.set(key, by);
		}
		files.push({ path, content: blob, blobOid, approvedBy: approved.get(path)!, resourceApprovals });
	}
	return { repository, branch: opts.branch, commit, files };
}

/**
 * Whether `head` descends from (or is) `previous`, the commit synced last. False when `previous` is not
 * in its history: a force push, a rollback to an older commit, or another repository's history.
 */
export async function fastForward(gitdir: string, previous: string, head: string): Promise<boolean> {
	if (previous === head) return true;
	try {
		return await git.isDescendent({ fs, gitdir, oid: head, ancestor: previous, depth: -1 });
	} catch (e) {
		// A shallow boundary or a missing object: descent cannot be shown, so it is not a fast-forward.
		if ((e as { code?: string }).code === "NotFoundError" || (e as { code?: string }).code === "MaxDepthError") return false;
		throw e;
	}
}

/**
 * The commits a sync from `previous` to `head` puts on the branch, newest first: `head` and its first
 * parents down to `previous` (excluded), or to the first commit `previous` already contains (the
 * history the last sync took, reached again through a merge). Only `head` without `previous` (a first
 * sync). Second parents (a merged pull request's own commits) are not listed: the merge commit on the
 * first-parent chain is what brought them. Undefined when there are more than `max`.
 */
export async function branchCommitsSince(gitdir: string, previous: string | undefined, head: string, max = 1000): Promise<string[] | undefined> {
	if (previous === undefined) return [head];
	const chain: string[] = [];
	let cur: string | undefined = head;
	// Usually `previous` is on the chain (it was the branch's head): no ancestry test needed.
	while (cur !== undefined && cur !== previous && chain.length <= max) {
		chain.push(cur);
		cur = (await git.readCommit({ fs, gitdir, oid: cur })).commit.parent[0];
	}
	if (cur === previous) return chain;
	// Reached through a merge's second parent (or too far): stop at the first commit `previous` contains.
	const out: string[] = [];
	for (const c of chain) {
		if (await git.isDescendent({ fs, gitdir, oid: previous, ancestor: c, depth: -1 })) return out;
		if (out.length >= max) return undefined;
		out.push(c);
	}
	return cur === undefined ? out : undefined;
}

/** The signature and signed payload of a commit (`gpgsig` header and the commit text without it). */
export async function commitSignature(gitdir: string, oid: string): Promise<{ signature?: string; payload: string }> {
	const { commit, payload } = await git.readCommit({ fs, gitdir, oid });
	return commit.gpgsig ? { signature: commit.gpgsig, payload } : { payload };
}
