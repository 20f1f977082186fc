import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { startPostgres } from "../env/index.ts";
import { REPO_ROOT } from "../env/process.ts";

/** Processes whose command line mentions `needle`. */
function processesMentioning(needle: string): string[] {
	const found: string[] = [];
	for (const pid of readdirSync("/proc")) {
		if (!/^\d+$/.test(pid)) continue;
		try {
			const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8").replace(/\0/g, " ");
			if (cmd.includes(needle)) found.push(`${pid}: ${cmd}`);
		} catch {}
	}
	return found;
}

const listening = (port: number) =>
	new Promise<boolean>((resolve) => {
		const s = connect(port, "127.0.0.1");
		s.on("connect", () => {
			s.destroy();
			resolve(true);
		});
		s.on("error", () => resolve(false));
	});

test("servers of a test process killed with SIGKILL are stopped and their temp dirs removed", async () => {
	const child = spawn(process.execPath, ["--import", "tsx", join(REPO_ROOT, "test/smoke/fixtures/crash-child.ts")], {
		cwd: REPO_ROOT,
		stdio: ["ignore", "pipe", "pipe"],
	});
	let out = "";
	let err = "";
	child.stdout.on("data", (b: Buffer) => (out += b.toString()));
	child.stderr.on("data", (b: Buffer) => (err += b.toString()));
	const [, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) =>
		child.on("exit", (c, s) => resolve([c, s])),
	);
	assert.equal(signal, "SIGKILL", `child did not die as planned:\n${out}\n${err}`);
	const { dirs, ports } = JSON.parse(out.trim().split("\n").pop()!) as { dirs: string[]; ports: number[] };
	assert.equal(dirs.length, 3);

	const deadline = Date.now() + 15_000;
	for (;;) {
		const left = dirs.flatMap(processesMentioning);
		const dirsLeft = dirs.filter((d) => existsSync(d));
		const open = (await Promise.all(ports.map(listening))).some(Boolean);
		if (left.length === 0 && dirsLeft.length === 0 && !open) break;
		if (Date.now() > deadline) {
			assert.fail(`left behind after 15s:\nprocesses:\n${left.join("\n")}\ndirs: ${dirsLeft.join(", ")}\nports open: ${open}`);
		}
		await new Promise((r) => setTimeout(r, 200));
	}
});

interface Proc {
	pid: number;
	ppid: number;
	/** Session id: what a watchdog starts shares the watchdog's (it runs under setsid). */
	sid: number;
	/** Start time (clock ticks since boot): with the pid, names one process even if the pid is reused. */
	start: number;
	cmdline: string;
}

function processTable(): Proc[] {
	const all: Proc[] = [];
	for (const entry of readdirSync("/proc")) {
		if (!/^\d+$/.test(entry)) continue;
		try {
			const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
			const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
			const cmdline = readFileSync(`/proc/${entry}/cmdline`, "utf8").replace(/\0/g, " ").trim();
			all.push({ pid: Number(entry), ppid: Number(f[1]), sid: Number(f[3]), start: Number(f[19]), cmdline });
		} catch {} // gone meanwhile
	}
	return all;
}

test("servers of a test run killed by its path (pkill -9 -f <checkout>) are stopped and their temp dirs removed", async () => {
	const child = spawn(process.execPath, ["--import", "tsx", join(REPO_ROOT, "test/smoke/fixtures/idle-child.ts")], {
		cwd: REPO_ROOT,
		stdio: ["ignore", "pipe", "pipe"],
	});
	const exited = new Promise<void>((resolve) => child.on("exit", () => resolve()));
	let out = "";
	let err = "";
	child.stderr.on("data", (b: Buffer) => (err += b.toString()));
	const line = await new Promise<string>((resolve, reject) => {
		child.stdout.on("data", (b: Buffer) => {
			out += b.toString();
			if (out.includes("\n")) resolve(out.split("\n")[0]!);
		});
		child.on("exit", () => reject(new Error(`child exited before reporting:\n${out}\n${err}`)));
	});
	const { dir, port } = JSON.parse(line) as { dir: string; port: number };
	assert.ok(await listening(port));
	const table = processTable();
	const descendants = (root: number) => {
		const tree = new Set([root]);
		for (let grew = true; grew; ) {
			grew = false;
			for (const p of table) {
				if (!tree.has(p.pid) && tree.has(p.ppid)) {
					tree.add(p.pid);
					grew = true;
				}
			}
		}
		return tree;
	};
	const postmaster = table.find((p) => p.cmdline.includes(dir));
	assert.ok(postmaster, "the postmaster runs");
	// The server: the postmaster and its children (each PostgreSQL child runs in a session of its own),
	// and everything in the watchdog's session.
	const serverTree = descendants(postmaster.pid);
	const server = new Set(table.filter((p) => serverTree.has(p.pid)).map((p) => `${p.pid}:${p.start}`));
	const serverLeft = () => processTable().filter((p) => server.has(`${p.pid}:${p.start}`) || p.sid === postmaster.sid);

	// What `pkill -9 -f <checkout path>` does to this run: SIGKILL to every process whose command line
	// mentions the checkout. Only this child's own process tree is searched: nothing else is touched.
	const tree = descendants(child.pid!);
	const matched = table.filter((p) => tree.has(p.pid) && p.cmdline.includes(REPO_ROOT));
	assert.ok(matched.some((p) => p.pid === child.pid), "the test process itself matches the path");
	for (const p of matched) {
		try {
			process.kill(p.pid, "SIGKILL");
		} catch {}
	}
	await exited;

	const deadline = Date.now() + 15_000;
	for (;;) {
		const left = serverLeft();
		const open = await listening(port);
		if (left.length === 0 && !open && !existsSync(dir)) break;
		if (Date.now() > deadline) {
			// Leave nothing behind even when failing: these are the processes this test started.
			for (const p of left) {
				try {
					process.kill(p.pid, "SIGKILL");
				} catch {}
			}
			assert.fail(
				`left behind after 15s (killed as pkill -f would: ${matched.map((p) => `${p.pid}: ${p.cmdline}`).join("; ")}):\nprocesses:\n${left.map((p) => `${p.pid} (ppid ${p.ppid}): ${p.cmdline}`).join("\n")}\ndir exists: ${existsSync(dir)}\nport open: ${open}`,
			);
		}
		await new Promise((r) => setTimeout(r, 200));
	}
});

test("a server never outlives its watchdog: SIGKILL to the watchdog alone stops the server", async (t) => {
	const pg = await startPostgres({ seed: false });
	t.after(() => pg.stop());
	const table = processTable();
	const postmaster = table.find((p) => p.cmdline.includes(pg.dir));
	assert.ok(postmaster, "the postmaster runs");
	// The watchdog leads the server's session; its guard subshell has the same command line.
	const watchdog = table.filter((p) => p.sid === postmaster.sid && p.cmdline.includes("drawbridge-watchdog"));
	assert.ok(watchdog.some((p) => p.pid === postmaster.sid), `the watchdog leads the session: ${watchdog.map((p) => p.cmdline).join("; ")}`);
	const server = new Set(table.filter((p) => p.pid === postmaster.pid || p.ppid === postmaster.pid).map((p) => `${p.pid}:${p.start}`));
	for (const p of watchdog) process.kill(p.pid, "SIGKILL");

	const deadline = Date.now() + 15_000;
	for (;;) {
		const left = processTable().filter((p) => server.has(`${p.pid}:${p.start}`));
		const open = await listening(pg.port);
		if (left.length === 0 && !open) break;
		if (Date.now() > deadline) {
			for (const p of left) {
				try {
					process.kill(p.pid, "SIGKILL");
				} catch {}
			}
			assert.fail(`left behind after 15s:\n${left.map((p) => `${p.pid} (ppid ${p.ppid}): ${p.cmdline}`).join("\n")}\nport open: ${open}`);
		}
		await new Promise((r) => setTimeout(r, 200));
	}
});
