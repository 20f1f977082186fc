import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
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
