// Every runnable bench script answers --help with its usage and refuses an unknown option, both
// without starting anything: bench/recording-pgbench.ts once took `--help` for a word nobody reads
// and started a whole benchmark (PostgreSQL, a gateway child, minutes of pgbench).
import assert from "node:assert/strict";
import { existsSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { run } from "../env/index.ts";
import { REPO_ROOT } from "../env/process.ts";

const BENCH = join(REPO_ROOT, "bench");
/** Imported by the others, never run: they have no command line. */
const MODULES = new Set(["args.ts", "bundle.ts", "large-select.ts", "perf-report.ts", "pg-world.ts", "pgbouncer.ts", "proc.ts", "ssh-relay.ts"]);
const runnable = readdirSync(BENCH)
	.filter((f) => f.endsWith(".ts") && !MODULES.has(f))
	.sort();

/**
 * Runs bench/<script> with `args` and a TMPDIR of its own; `started` lists what appeared there: every
 * test/env server and bench work dir is made in TMPDIR, so an empty list means nothing was started.
 * Bounded: a script that starts a benchmark instead is killed after 60 s (its servers go with it).
 */
async function bench(script: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string; started: string[] }> {
	const tmp = mkdtempSync(join(tmpdir(), "drawbridge-bench-help-"));
	// tsx keeps its compile cache in TMPDIR (tsx-<uid>): shared with the usual one, and not ours to count.
	const tsxCache = `tsx-${process.getuid?.() ?? 0}`;
	if (existsSync(join(tmpdir(), tsxCache))) symlinkSync(join(tmpdir(), tsxCache), join(tmp, tsxCache));
	try {
		const r = await run(process.execPath, ["--import", "tsx", join(BENCH, script), ...args], { cwd: REPO_ROOT, env: { ...process.env, TMPDIR: tmp }, timeoutMs: 60_000 });
		return { ...r, started: readdirSync(tmp).filter((f) => f !== tsxCache) };
	} finally {
		rmSync(tmp, { recursive: true, force: true });
	}
}

test("the runnable bench scripts are the ones expected (a new one is tested below automatically)", () => {
	assert.deepEqual(runnable, [
		"kube.ts",
		"operator.ts",
		"pg-cpu.ts",
		"pg-gateway-child.ts",
		"pg-perf.ts",
		"pg-relay-child.ts",
		"recorder-cpu.ts",
		"recording-perf.ts",
		"recording-pg-child.ts",
		"recording-pgbench.ts",
		"recording.ts",
		"run.ts",
		"ssh.ts",
	]);
});

for (const script of runnable) {
	test(`bench/${script} --help prints its usage and exits 0; --no-such-flag exits 2 naming it; nothing started`, { timeout: 150_000 }, async () => {
		const r = await bench(script, ["--help"]);
		assert.equal(r.code, 0, `exit ${r.code}\n${r.stderr}`);
		assert.match(r.stdout, /^Usage: .*bench\//m, `no Usage line:\n${r.stdout}`);
		assert.match(r.stdout, /^\s+-h, --help\s/m, "the option list ends the usage");
		assert.deepEqual(r.started, [], "--help started something");
		const bad = await bench(script, ["--no-such-flag"]);
		assert.equal(bad.code, 2, `exit ${bad.code}\n${bad.stderr}`);
		assert.match(bad.stderr, new RegExp(`^bench/${script}: Unknown option '--no-such-flag'`, "m"));
		assert.deepEqual(bad.started, [], "an unknown option started something");
	});
}

test("the options bench/run.ts passes to the child benches still parse (with --help after them: exit 0)", { timeout: 300_000 }, async () => {
	// As in bench/run.ts otherBenches() (quick and --full values alike), and the gateway children's argv.
	const calls: [string, string[]][] = [
		["recording-pgbench.ts", ["--seconds", "4", "--runs", "3"]],
		["ssh.ts", ["--mib", "1024", "--runs", "5"]],
		["kube.ts", ["--requests", "300", "--kubectl", "15"]],
		["operator.ts", ["--runs", "2", "--grants", "0"]],
		["ssh.ts", ["--paths", "gateway", "--cipher", "aes128-gcm@openssh.com", "--upstream-cipher", "aes128-gcm@openssh.com"]],
		["pg-gateway-child.ts", ["/nonexistent/cfg.json"]],
		["recording-pg-child.ts", ["/nonexistent/cfg.json", "switch"]],
		// A value starting with "-" as its own word, as documented.
		["recording-pgbench.ts", ["--node-flags", "--liftoff-only --max-semi-space-size=16", "--calibrate"]],
		["pg-cpu.ts", ["--gateway-node-flags", "--max-semi-space-size=16"]],
	];
	for (const [script, args] of calls) {
		const r = await bench(script, [...args, script === "kube.ts" ? "-h" : "--help"]);
		assert.equal(r.code, 0, `bench/${script} ${args.join(" ")}: exit ${r.code}\n${r.stderr}`);
		assert.deepEqual(r.started, []);
	}
});

test("a value a bench refuses, a missing or a stray argument: exit 2 before anything starts", { timeout: 300_000 }, async () => {
	const calls: [string, string[], RegExp][] = [
		["recording-pgbench.ts", ["--store", "nowhere"], /--store: dir, shm or minio, not nowhere/],
		["recording-pgbench.ts", ["--base", "serialize"], /--base serialize needs --process per-run/],
		["recording-pgbench.ts", ["--seconds"], /--seconds <value>' argument missing/],
		["run.ts", ["--skip", "postgres"], /--skip \/ --only: .*not postgres/],
		["ssh.ts", ["--paths", "gateway,tunnel"], /--paths: .*not tunnel/],
		["kube.ts", ["300"], /unexpected argument '300'/],
		["pg-relay-child.ts", [], /expected CONFIG\.json, got nothing/],
		["recording-pg-child.ts", ["/nonexistent/cfg.json", "sometimes"], /MODE: on, off, serialize or switch, not sometimes/],
	];
	for (const [script, args, message] of calls) {
		const r = await bench(script, args);
		assert.equal(r.code, 2, `bench/${script} ${args.join(" ")}: exit ${r.code}\n${r.stderr}`);
		assert.match(r.stderr, message);
		assert.deepEqual(r.started, []);
	}
});
