// Shared plumbing for the real-server harness: temp dirs, free ports, child processes tied to the
// test process by a watchdog, captured logs, and small "run a command" helpers.
import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, chownSync, createWriteStream, type WriteStream } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { userInfo } from "node:os";
import { execFileSync } from "node:child_process";

const here = dirname(fileURLToPath(import.meta.url));
export const WATCHDOG = join(here, "watchdog.sh");

let watchdogText: string | undefined;
const watchdogScript = () => (watchdogText ??= readFileSync(WATCHDOG, "utf8"));

/** The root of the repository (two levels above test/env). */
export const REPO_ROOT = join(here, "..", "..");

export const isRoot = process.getuid?.() === 0;

/** A system user the servers that refuse to run as root (PostgreSQL) run as. */
export interface RunAs {
	user: string;
	uid: number;
	gid: number;
	home: string;
}

export function lookupUser(name: string): RunAs {
	const line = execFileSync("getent", ["passwd", name], { encoding: "utf8" }).trim();
	const parts = line.split(":");
	return { user: name, uid: Number(parts[2]), gid: Number(parts[3]), home: parts[5] ?? "/" };
}

export function currentUser(): RunAs {
	const u = userInfo();
	return { user: u.username, uid: u.uid, gid: u.gid, home: u.homedir };
}

/** Creates a fresh temp dir `drawbridge-<name>-XXXXXX`, optionally owned by `owner`. */
export function makeTempDir(name: string, owner?: RunAs): string {
	const dir = mkdtempSync(join(tmpdir(), `drawbridge-${name}-`));
	if (owner && isRoot) chownSync(dir, owner.uid, owner.gid);
	return dir;
}

/** A free TCP port on 127.0.0.1 (asks the kernel for port 0, then releases it). */
export async function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const srv = createServer();
		srv.unref();
		srv.on("error", reject);
		srv.listen(0, "127.0.0.1", () => {
			const addr = srv.address();
			if (addr === null || typeof addr === "string") return reject(new Error("no port"));
			srv.close(() => resolve(addr.port));
		});
	});
}

/** Keeps the last `limit` bytes of a process' combined stdout/stderr (and the full log on disk). */
export class LogBuffer {
	private chunks: string[] = [];
	private size = 0;
	constructor(private readonly limit = 256 * 1024) {}
	push(s: string): void {
		this.chunks.push(s);
		this.size += s.length;
		while (this.size > this.limit && this.chunks.length > 1) this.size -= this.chunks.shift()!.length;
	}
	text(): string {
		return this.chunks.join("");
	}
}

export interface ManagedOptions {
	/** Short name used in log prefixes, e.g. "postgres". */
	name: string;
	command: string;
	args: string[];
	cwd?: string;
	env?: NodeJS.ProcessEnv;
	/** Run as this user (only honoured when we are root). */
	runAs?: RunAs;
	/** Signal for a graceful stop (default SIGTERM). */
	stopSignal?: NodeJS.Signals;
	/** Directory the watchdog deletes if the test process dies without calling stop(). */
	cleanupDir?: string;
	/** Append the log to this file as well as keeping it in memory. */
	logFile?: string;
}

/**
 * A long-running server process, started under watchdog.sh in its own process group. If the test
 * process dies (even by SIGKILL) the watchdog notices the closed pipe and kills the whole group. The
 * watchdog's command line does not carry the checkout's path (see watchdog.sh), and the server dies
 * with its watchdog.
 */
export class ManagedProcess {
	readonly logs = new LogBuffer();
	private child: ChildProcess;
	private exited: Promise<number | null>;
	private exitCode: number | null | undefined = undefined;
	private file: WriteStream | undefined;

	constructor(readonly opts: ManagedOptions) {
		const env: NodeJS.ProcessEnv = {
			...(opts.env ?? process.env),
			WATCHDOG_STOP_SIGNAL: (opts.stopSignal ?? "SIGTERM").replace(/^SIG/, ""),
		};
		if (opts.cleanupDir) env.WATCHDOG_CLEANUP = opts.cleanupDir;
		const asUser = opts.runAs && isRoot && opts.runAs.uid !== 0 ? opts.runAs : undefined;
		if (asUser) {
			env.HOME = asUser.home;
			env.USER = asUser.user;
			env.LOGNAME = asUser.user;
		}
		if (opts.logFile) this.file = createWriteStream(opts.logFile, { flags: "a" });
		// The watchdog's text goes in through the environment, so that its command line does not name
		// this checkout: `pkill -f <checkout>` on a test run must leave it alive to stop the server.
		env.DRAWBRIDGE_WATCHDOG_SCRIPT = watchdogScript();
		this.child = spawn("bash", ["-c", 'eval "$DRAWBRIDGE_WATCHDOG_SCRIPT"', "drawbridge-watchdog", "--", opts.command, ...opts.args], {
			cwd: opts.cwd,
			env,
			detached: true,
			stdio: ["pipe", "pipe", "pipe"],
			...(asUser ? { uid: asUser.uid, gid: asUser.gid } : {}),
		});
		// The test process must be able to exit while servers run; the watchdog pipe stays open
		// until then, which is exactly what ties the server's life to ours.
		this.child.unref();
		for (const s of [this.child.stdin, this.child.stdout, this.child.stderr]) {
			(s as unknown as { unref?: () => void } | null)?.unref?.();
		}
		const onData = (b: Buffer) => {
			const s = b.toString("utf8");
			this.logs.push(s);
			this.file?.write(s);
		};
		this.child.stdout!.on("data", onData);
		this.child.stderr!.on("data", onData);
		this.child.stdin!.on("error", () => {});
		this.exited = new Promise((resolve) => {
			this.child.on("exit", (code, signal) => {
				this.exitCode = code ?? (signal ? 128 : null);
				this.file?.end();
				resolve(this.exitCode);
			});
			this.child.on("error", (err) => {
				this.logs.push(`[harness] spawn failed: ${err.message}\n`);
				this.exitCode = -1;
				resolve(-1);
			});
		});
		live.add(this);
	}

	get pid(): number | undefined {
		return this.child.pid;
	}

	/** True while the process runs. */
	get running(): boolean {
		return this.exitCode === undefined;
	}

	/** Resolves with the exit code once the process ended. */
	waitExit(): Promise<number | null> {
		return this.exited;
	}

	/** Graceful stop; after `timeoutMs` the whole process group is killed. */
	async stop(timeoutMs = 10_000): Promise<void> {
		if (!this.running) {
			live.delete(this);
			return;
		}
		try {
			process.kill(this.child.pid!, "SIGTERM");
		} catch {}
		const timer = setTimeout(() => this.killGroup("SIGKILL"), timeoutMs);
		await this.exited;
		clearTimeout(timer);
		this.killGroup("SIGKILL");
		live.delete(this);
	}

	killGroup(signal: NodeJS.Signals): void {
		try {
			if (this.child.pid) process.kill(-this.child.pid, signal);
		} catch {}
	}
}

const live = new Set<ManagedProcess>();
const tempDirs = new Set<string>();

/** Remember a temp dir to delete at process exit (if the handle's stop() did not already). */
export function trackTempDir(dir: string): void {
	tempDirs.add(dir);
}

export function removeTempDir(dir: string): void {
	rmSync(dir, { recursive: true, force: true });
	tempDirs.delete(dir);
}

// Normal exit, uncaught exceptions and Ctrl-C: kill what is still running, synchronously.
process.on("exit", () => {
	for (const p of live) p.killGroup("SIGKILL");
	for (const d of tempDirs) {
		try {
			rmSync(d, { recursive: true, force: true });
		} catch {}
	}
});

export interface RunResult {
	code: number;
	stdout: string;
	stderr: string;
}

export interface RunOptions {
	cwd?: string;
	env?: NodeJS.ProcessEnv;
	input?: string | Buffer;
	runAs?: RunAs;
	timeoutMs?: number;
}

/** Runs a command to completion and returns its exit code and output (never throws on exit code). */
export function run(command: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
	return new Promise((resolve, reject) => {
		const asUser = opts.runAs && isRoot && opts.runAs.uid !== 0 ? opts.runAs : undefined;
		const child = spawn(command, args, {
			cwd: opts.cwd,
			env: opts.env ?? process.env,
			stdio: ["pipe", "pipe", "pipe"],
			...(asUser ? { uid: asUser.uid, gid: asUser.gid } : {}),
		});
		const out: Buffer[] = [];
		const err: Buffer[] = [];
		child.stdout.on("data", (b: Buffer) => out.push(b));
		child.stderr.on("data", (b: Buffer) => err.push(b));
		child.stdin.on("error", () => {});
		let timer: NodeJS.Timeout | undefined;
		if (opts.timeoutMs) timer = setTimeout(() => child.kill("SIGKILL"), opts.timeoutMs);
		child.on("error", reject);
		child.on("close", (code, signal) => {
			if (timer) clearTimeout(timer);
			resolve({
				code: code ?? (signal ? 128 : 1),
				stdout: Buffer.concat(out).toString("utf8"),
				stderr: Buffer.concat(err).toString("utf8"),
			});
		});
		if (opts.input !== undefined) child.stdin.end(opts.input);
		else child.stdin.end();
	});
}

/** Like run() but throws with the command's output when it exits non-zero. */
export async function runOk(command: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
	const r = await run(command, args, opts);
	if (r.code !== 0) {
		throw new Error(`${command} ${args.join(" ")} exited ${r.code}\n${r.stderr}${r.stdout}`);
	}
	return r;
}

/** Polls `check` until it returns true; fails with the server's log tail when `proc` dies or time runs out. */
export async function waitFor(
	what: string,
	check: () => Promise<boolean>,
	opts: { timeoutMs?: number; intervalMs?: number; proc?: ManagedProcess } = {},
): Promise<void> {
	const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
	const interval = opts.intervalMs ?? 100;
	for (;;) {
		if (opts.proc && !opts.proc.running) {
			throw new Error(`${what}: process exited (${await opts.proc.waitExit()})\n${tail(opts.proc.logs.text())}`);
		}
		try {
			if (await check()) return;
		} catch {}
		if (Date.now() > deadline) {
			throw new Error(`${what}: not ready after ${opts.timeoutMs ?? 30_000}ms\n${tail(opts.proc?.logs.text() ?? "")}`);
		}
		await new Promise((r) => setTimeout(r, interval));
	}
}

export function tail(s: string, lines = 60): string {
	const all = s.split("\n");
	return all.slice(Math.max(0, all.length - lines)).join("\n");
}

/** Paths printed by `scripts/test-deps --print` (KUBE_APISERVER, ETCD, MINIO). */
export function depPaths(): Record<"KUBE_APISERVER" | "ETCD" | "MINIO", string> {
	const out = execFileSync("bash", [join(REPO_ROOT, "scripts", "test-deps"), "--print"], { encoding: "utf8" });
	const m: Record<string, string> = {};
	for (const line of out.split("\n")) {
		const i = line.indexOf("=");
		if (i > 0) m[line.slice(0, i)] = line.slice(i + 1);
	}
	return m as Record<"KUBE_APISERVER" | "ETCD" | "MINIO", string>;
}
