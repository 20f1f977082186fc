// git over HTTP for tests: `git http-backend` (CGI) behind a node http server on loopback, bare
// repositories in a temp dir, anonymous fetch, push only with HTTP basic auth carrying the token.
// Helpers commit and "merge pull requests" through the git CLI over that same HTTP endpoint.
import { spawn } from "node:child_process";
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname, join } from "node:path";
import { LogBuffer, makeTempDir, removeTempDir, runOk, trackTempDir } from "./process.ts";

export interface GitServerOptions {
	/** Bare repositories to create, each with an initial commit on `main`. Default ["grants"]. */
	repos?: string[];
	/** Basic-auth password that allows pushing (any user name). Default random. */
	token?: string;
	/** Require the token for fetch/clone too. Default false (anonymous read). */
	authRead?: boolean;
}

export interface CommitOptions {
	/** Files to write (path → content) or delete (path → null). */
	files: Record<string, string | null>;
	message: string;
	/** Branch to commit on (created from main if missing). Default "main". */
	branch?: string;
	author?: { name: string; email: string };
	/** Author and committer date, e.g. "2026-03-01T10:00:00Z". */
	date?: string;
}

export interface MergePullRequestOptions {
	/** Pull request number, used in the merge message. */
	number: number;
	/** Source branch name, e.g. "add-deployer-grant". */
	branch: string;
	/** Files changed by the PR (as for commit). */
	files: Record<string, string | null>;
	/** Title: the PR's commit message and the merge commit's body. */
	title?: string;
	/** Owner shown in "from <org>/<branch>". Default "example". */
	org?: string;
	author?: { name: string; email: string };
	/** Merger identity (committer of the merge). */
	merger?: { name: string; email: string };
	date?: string;
}

export interface PushEvent {
	repo: string;
	user: string;
}

export interface GitServerHandle {
	/** Base URL, e.g. http://127.0.0.1:PORT — repositories live at `${url}/<name>.git`. */
	url: string;
	port: number;
	token: string;
	/** Basic-auth user name used by the helpers ("drawbridge-test"; any name works). */
	user: string;
	dir: string;
	repoUrl(repo?: string): string;
	/** URL with the credentials embedded (for the git CLI). */
	authedRepoUrl(repo?: string): string;
	/** Path of the bare repository on disk. */
	bareDir(repo?: string): string;
	createRepo(repo: string): Promise<void>;
	/** Commits the files on a branch and pushes it over HTTP; returns the new commit SHA. */
	commit(repo: string, opts: CommitOptions): Promise<string>;
	/**
	 * Simulates merging a GitHub pull request: commits `files` on `branch` (from main), then merges it
	 * into main with `--no-ff` and the message "Merge pull request #N from org/branch\n\ntitle", pushes
	 * both. Returns the merge commit SHA and the PR head SHA.
	 */
	mergePullRequest(repo: string, opts: MergePullRequestOptions): Promise<{ sha: string; headSha: string }>;
	/** Current SHA of a branch (default main) in the bare repository. */
	head(repo?: string, branch?: string): Promise<string>;
	/** Called after every successful push (git-receive-pack request). Returns an unsubscribe function. */
	onPush(listener: (e: PushEvent) => void): () => void;
	stop(): Promise<void>;
	logs(): string;
}

const GIT_ENV_BASE = {
	GIT_CONFIG_NOSYSTEM: "1",
	GIT_TERMINAL_PROMPT: "0",
	GIT_AUTHOR_NAME: "Drawbridge Test",
	GIT_AUTHOR_EMAIL: "test@drawbridge.invalid",
	GIT_COMMITTER_NAME: "Drawbridge Test",
	GIT_COMMITTER_EMAIL: "test@drawbridge.invalid",
};

export async function startGitServer(options: GitServerOptions = {}): Promise<GitServerHandle> {
	const dir = makeTempDir("git");
	trackTempDir(dir);
	const root = join(dir, "repos");
	const work = join(dir, "work");
	const home = join(dir, "home");
	mkdirSync(root);
	mkdirSync(work);
	mkdirSync(home);
	const token = options.token ?? `gt-${crypto.randomUUID()}`;
	const user = "drawbridge-test";
	const logs = new LogBuffer();
	const listeners = new Set<(e: PushEvent) => void>();
	const gitEnv = { ...process.env, ...GIT_ENV_BASE, HOME: home, XDG_CONFIG_HOME: home };
	const git = (args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) =>
		runOk("git", args, { cwd, env: { ...gitEnv, ...env } }).then((r) => r.stdout.trim());

	const authUser = (req: IncomingMessage): string | undefined => {
		const h = req.headers.authorization;
		if (!h?.startsWith("Basic ")) return undefined;
		const decoded = Buffer.from(h.slice(6), "base64").toString("utf8");
		const i = decoded.indexOf(":");
		if (i < 0) return undefined;
		return decoded.slice(i + 1) === token ? decoded.slice(0, i) || "git" : undefined;
	};

	const handler = (req: IncomingMessage, res: ServerResponse) => {
		const url = new URL(req.url ?? "/", "http://127.0.0.1");
		const isPush = url.pathname.endsWith("/git-receive-pack") || url.searchParams.get("service") === "git-receive-pack";
		const who = authUser(req);
		logs.push(`${new Date().toISOString()} ${req.method} ${url.pathname}${url.search} user=${who ?? "-"}\n`);
		if ((isPush || options.authRead) && !who) {
			res.writeHead(401, { "WWW-Authenticate": 'Basic realm="drawbridge-test-git"', "Content-Type": "text/plain" });
			res.end("authentication required\n");
			return;
		}
		const repoMatch = /^\/([^/]+?)(?:\.git)?\//.exec(url.pathname);
		const env: NodeJS.ProcessEnv = {
			...gitEnv,
			GIT_PROJECT_ROOT: root,
			GIT_HTTP_EXPORT_ALL: "1",
			REQUEST_METHOD: req.method ?? "GET",
			PATH_INFO: decodeURIComponent(url.pathname),
			QUERY_STRING: url.search.slice(1),
			CONTENT_TYPE: req.headers["content-type"] ?? "",
			REMOTE_ADDR: req.socket.remoteAddress ?? "127.0.0.1",
		};
		if (req.headers["content-length"]) env.CONTENT_LENGTH = req.headers["content-length"];
		if (req.headers["content-encoding"]) env.HTTP_CONTENT_ENCODING = req.headers["content-encoding"];
		if (req.headers["git-protocol"]) env.GIT_PROTOCOL = String(req.headers["git-protocol"]);
		if (who) env.REMOTE_USER = who;
		const cgi = spawn("git", ["http-backend"], { env, stdio: ["pipe", "pipe", "pipe"] });
		req.pipe(cgi.stdin);
		cgi.stdin.on("error", () => {});
		cgi.stderr.on("data", (b: Buffer) => logs.push(`[http-backend] ${b.toString("utf8")}`));
		let head = Buffer.alloc(0);
		let headersDone = false;
		cgi.stdout.on("data", (chunk: Buffer) => {
			if (headersDone) {
				res.write(chunk);
				return;
			}
			head = Buffer.concat([head, chunk]);
			let end = head.indexOf("\r\n\r\n");
			let sepLen = 4;
			if (end < 0) {
				end = head.indexOf("\n\n");
				sepLen = 2;
			}
			if (end < 0) return;
			headersDone = true;
			let status = 200;
			const headers: Record<string, string> = {};
			for (const line of head.subarray(0, end).toString("latin1").split(/\r?\n/)) {
				const i = line.indexOf(":");
				if (i < 0) continue;
				const k = line.slice(0, i).trim();
				const v = line.slice(i + 1).trim();
				if (k.toLowerCase() === "status") status = Number.parseInt(v, 10);
				else headers[k] = v;
			}
			res.writeHead(status, headers);
			res.write(head.subarray(end + sepLen));
		});
		cgi.on("close", (code) => {
			if (!headersDone) {
				res.writeHead(500, { "Content-Type": "text/plain" });
				res.end(`http-backend failed (${code})\n`);
				return;
			}
			res.end();
			if (code === 0 && isPush && req.method === "POST" && repoMatch?.[1]) {
				for (const l of listeners) l({ repo: repoMatch[1], user: who ?? "" });
			}
		});
	};

	const server: Server = createServer(handler);
	await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
	const port = (server.address() as AddressInfo).port;
	const url = `http://127.0.0.1:${port}`;
	const repoUrl = (repo = "grants") => `${url}/${repo}.git`;
	const authedRepoUrl = (repo = "grants") =>
		`http://${encodeURIComponent(user)}:${encodeURIComponent(token)}@127.0.0.1:${port}/${repo}.git`;
	const bareDir = (repo = "grants") => join(root, `${repo}.git`);

	// One reusable work tree per repository, always reset to the server's state before a change.
	const worktree = async (repo: string, branch: string): Promise<string> => {
		const wt = join(work, repo);
		if (!(await git(["rev-parse", "--is-inside-work-tree"], wt).catch(() => ""))) {
			rmSync(wt, { recursive: true, force: true });
			await git(["clone", "-q", authedRepoUrl(repo), wt], work);
		}
		await git(["fetch", "-q", "--prune", "origin"], wt);
		const remoteBranches = await git(["branch", "-r", "--format=%(refname:short)"], wt);
		const base = remoteBranches.split("\n").includes(`origin/${branch}`) ? `origin/${branch}` : "origin/main";
		await git(["checkout", "-q", "-B", branch, base], wt);
		await git(["clean", "-qfdx"], wt);
		return wt;
	};
	const identityEnv = (author?: { name: string; email: string }, committer?: { name: string; email: string }, date?: string) => {
		const e: NodeJS.ProcessEnv = {};
		if (author) {
			e.GIT_AUTHOR_NAME = author.name;
			e.GIT_AUTHOR_EMAIL = author.email;
		}
		const c = committer ?? author;
		if (c) {
			e.GIT_COMMITTER_NAME = c.name;
			e.GIT_COMMITTER_EMAIL = c.email;
		}
		if (date) {
			e.GIT_AUTHOR_DATE = date;
			e.GIT_COMMITTER_DATE = date;
		}
		return e;
	};
	const applyFiles = async (wt: string, files: Record<string, string | null>) => {
		for (const [path, content] of Object.entries(files)) {
			const full = join(wt, path);
			if (content === null) {
				await git(["rm", "-q", "--ignore-unmatch", "--", path], wt);
			} else {
				mkdirSync(dirname(full), { recursive: true });
				writeFileSync(full, content);
				await git(["add", "--", path], wt);
			}
		}
	};

	// Serialise helper operations: they share work trees.
	let chain: Promise<unknown> = Promise.resolve();
	const serial = <T>(fn: () => Promise<T>): Promise<T> => {
		const p = chain.then(fn, fn);
		chain = p.catch(() => {});
		return p;
	};

	const createRepo = async (repo: string) => {
		const bare = bareDir(repo);
		await git(["init", "-q", "--bare", "-b", "main", bare], root);
		await git(["config", "http.receivepack", "true"], bare);
		const seed = join(work, `${repo}-seed`);
		await git(["init", "-q", "-b", "main", seed], work);
		writeFileSync(join(seed, "README.md"), `# ${repo}\n\nTest repository served by test/env/git.ts.\n`);
		await git(["add", "README.md"], seed);
		await git(["commit", "-q", "-m", "Initial commit"], seed);
		await git(["push", "-q", authedRepoUrl(repo), "main"], seed);
		rmSync(seed, { recursive: true, force: true });
	};

	try {
		for (const r of options.repos ?? ["grants"]) await createRepo(r);
	} catch (err) {
		server.close();
		removeTempDir(dir);
		throw err;
	}

	const handle: GitServerHandle = {
		url,
		port,
		token,
		user,
		dir,
		repoUrl,
		authedRepoUrl,
		bareDir,
		createRepo: (repo) => serial(() => createRepo(repo)),
		commit: (repo, o) =>
			serial(async () => {
				const branch = o.branch ?? "main";
				const wt = await worktree(repo, branch);
				await applyFiles(wt, o.files);
				await git(["commit", "-q", "--allow-empty", "-m", o.message], wt, identityEnv(o.author, undefined, o.date));
				await git(["push", "-q", "origin", `HEAD:refs/heads/${branch}`], wt);
				return git(["rev-parse", "HEAD"], wt);
			}),
		mergePullRequest: (repo, o) =>
			serial(async () => {
				const title = o.title ?? `Change ${o.branch}`;
				let wt = await worktree(repo, o.branch);
				await applyFiles(wt, o.files);
				await git(["commit", "-q", "--allow-empty", "-m", title], wt, identityEnv(o.author, undefined, o.date));
				await git(["push", "-q", "-f", "origin", `HEAD:refs/heads/${o.branch}`], wt);
				const headSha = await git(["rev-parse", "HEAD"], wt);
				wt = await worktree(repo, "main");
				const message = `Merge pull request #${o.number} from ${o.org ?? "example"}/${o.branch}\n\n${title}`;
				await git(
					["merge", "-q", "--no-ff", "-m", message, headSha],
					wt,
					identityEnv(o.merger ?? { name: "GitHub", email: "noreply@github.com" }, undefined, o.date),
				);
				await git(["push", "-q", "origin", "HEAD:refs/heads/main"], wt);
				return { sha: await git(["rev-parse", "HEAD"], wt), headSha };
			}),
		head: (repo = "grants", branch = "main") => git(["rev-parse", `refs/heads/${branch}`], bareDir(repo)),
		onPush(listener) {
			listeners.add(listener);
			return () => listeners.delete(listener);
		},
		async stop() {
			server.closeAllConnections();
			await new Promise<void>((resolve) => server.close(() => resolve()));
			removeTempDir(dir);
		},
		logs: () => logs.text(),
	};
	return handle;
}
