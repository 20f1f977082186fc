/**
 * The recorder's own CPU per event, without a data path around it: 8 sessions of a DiskRecorder with a
 * directory store take pgbench-like statement events (400 per tick), then close, drain and upload.
 * Reports the process's CPU (all threads: gzip and file I/O run in libuv's pool) and the main thread's
 * alone, per event, medians of interleaved child runs. CPU time, not wall time: the neighbours' load
 * moves it far less. Not a timed test.
 *
 * Usage: ./node_modules/.bin/node --import tsx bench/recorder-cpu.ts [--events 300000] [--runs 5] [--baseline REF] [--chunk-bytes N]
 *
 * Prints a table: process and main-thread CPU µs per event (medians) per tree, and with --baseline
 * the now/baseline ratios. `--child DIR` is internal: one measured run of the recorder in tree DIR
 * (the parent starts itself so), printing its figures as JSON.
 *
 * --baseline REF measures the recorder of git REF as well (a worktree, this checkout's node_modules),
 * in the same interleaved runs, and prints now/baseline ratios.
 *
 * --chunk-bytes N seals chunks at N bytes of text instead of the recorder's default (1 MiB): with
 * small chunks each session seals and uploads thousands, as a session open for hours does, so what
 * the recorder pays per chunk (and any cost that grows with the session's chunk count) dominates.
 */
import { execFileSync, spawnSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { benchArgs } from "./args.ts";
import { statCpuMicros } from "./proc.ts";

const { values: flags } = benchArgs(import.meta.url, {
	options: {
		events: { type: "string", default: "300000" },
		runs: { type: "string", default: "5" },
		baseline: { type: "string" },
		"chunk-bytes": { type: "string" },
		child: { type: "string" },
	},
});
const EVENTS = Number(flags.events);
/** The recorder's chunkMaxBytes (its default when not given): small chunks make per-chunk costs dominate. */
const CHUNK_BYTES = flags["chunk-bytes"] === undefined ? undefined : Number(flags["chunk-bytes"]);
if (CHUNK_BYTES !== undefined && !(CHUNK_BYTES >= 1024)) throw new TypeError(`--chunk-bytes: at least 1024, not ${flags["chunk-bytes"]}`);

/** utime + stime of one thread, µs. */
const threadCpu = (tid: number) => {
	const cpu = statCpuMicros(`/proc/self/task/${tid}/stat`);
	return cpu.user + cpu.sys;
};

/** CPU µs per thread kind other than the main thread (the spool worker, libuv's pool, V8's GC and compiler workers). */
const otherThreads = (): Record<string, number> => {
	const out: Record<string, number> = {};
	for (const t of readdirSync("/proc/self/task")) {
		if (t === String(process.pid)) continue;
		try {
			const cpu = statCpuMicros(`/proc/self/task/${t}/stat`);
			const kind = cpu.comm.replace(/\s+/g, "-");
			out[kind] = (out[kind] ?? 0) + cpu.user + cpu.sys;
		} catch {
			// the thread ended between readdir and read
		}
	}
	return out;
};

async function child(root: string): Promise<void> {
	const { DiskRecorder } = (await import(join(root, "gateway/recording/recorder.ts"))) as typeof import("../gateway/recording/recorder.ts");
	const { DirStore } = (await import(join(root, "gateway/recording/store.ts"))) as typeof import("../gateway/recording/store.ts");
	const { generateRecordingKey } = (await import(join(root, "gateway/recording/keys.ts"))) as typeof import("../gateway/recording/keys.ts");
	const { meta } = (await import(join(root, "test/recording/fixtures.ts"))) as typeof import("../test/recording/fixtures.ts");
	const dir = mkdtempSync(join(tmpdir(), "recorder-cpu-"));
	try {
		const store = new DirStore(join(dir, "store"));
		await store.init();
		const { key } = await generateRecordingKey();
		const rec = new DiskRecorder({ spoolDir: join(dir, "spool"), store, key, ...(CHUNK_BYTES ? { chunkMaxBytes: CHUNK_BYTES } : {}) });
		await rec.start();
		const sessions = await Promise.all(Array.from({ length: 8 }, (_, i) => rec.openSession(meta({ sessionId: `bench-${i}-${process.pid}` }))));
		const cpu0 = process.cpuUsage();
		const main0 = threadCpu(process.pid);
		const others0 = otherThreads();
		let i = 0;
		await new Promise<void>((resolve) => {
			const tick = () => {
				for (let k = 0; k < 400 && i < EVENTS; k++, i++) {
					sessions[i & 7]!.emit({
						type: "statement",
						sql: `SELECT abalance FROM pgbench_accounts WHERE aid = ${(i * 7919) % 100_000};`,
						statementKinds: ["select"],
						decision: "allow",
						durationMs: 0.41,
						rows: 1,
						commandTag: "SELECT 1",
					});
				}
				if (i < EVENTS) setTimeout(tick, 1);
				else resolve();
			};
			tick();
		});
		for (const s of sessions) await s.close({ reason: "client-closed" });
		await rec.drain(120_000);
		const cpu = process.cpuUsage(cpu0);
		const main = threadCpu(process.pid) - main0;
		const threads: Record<string, number> = {};
		for (const [k, v] of Object.entries(otherThreads())) threads[k] = (v - (others0[k] ?? 0)) / EVENTS;
		await rec.stop();
		console.log(JSON.stringify({ process: (cpu.user + cpu.system) / EVENTS, main: main / EVENTS, threads }));
	} finally {
		rmSync(dir, { recursive: true, force: true });
	}
}

if (flags.child) {
	await child(flags.child);
} else {
	const here = join(import.meta.dirname, "..");
	const trees = [{ name: "now", dir: here }];
	let cleanup = () => {};
	if (flags.baseline) {
		const dir = mkdtempSync(join(tmpdir(), "recorder-cpu-base-"));
		execFileSync("git", ["-C", here, "worktree", "add", "--detach", dir, flags.baseline], { stdio: "ignore" });
		symlinkSync(join(here, "node_modules"), join(dir, "node_modules"));
		trees.push({ name: flags.baseline, dir });
		cleanup = () => execFileSync("git", ["-C", here, "worktree", "remove", "--force", dir], { stdio: "ignore" });
	}
	try {
		const results: Record<string, { process: number; main: number }[]> = {};
		const runs = Number(flags.runs);
		for (let r = 0; r < runs; r++) {
			// Alternate the order so that neither tree always runs first.
			for (const t of r % 2 ? [...trees].reverse() : trees) {
				const out = spawnSync(process.execPath, ["--liftoff-only", "--import", "tsx", import.meta.filename, "--child", t.dir, "--events", String(EVENTS), ...(CHUNK_BYTES ? ["--chunk-bytes", String(CHUNK_BYTES)] : [])], { encoding: "utf8" });
				if (out.status !== 0) throw new Error(`child (${t.name}) failed: ${out.stderr}`);
				const m = JSON.parse(out.stdout.trim().split("\n").pop()!) as { process: number; main: number; threads: Record<string, number> };
				(results[t.name] ??= []).push(m);
				const others = Object.entries(m.threads)
					.filter(([, v]) => v >= 0.01)
					.map(([k, v]) => `${k} ${v.toFixed(2)}`)
					.join(", ");
				console.error(`run ${r + 1} ${t.name}: process ${m.process.toFixed(2)} µs/event, main thread ${m.main.toFixed(2)} µs/event (others: ${others})`);
			}
		}
		const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
		console.log(`\n| recorder, ${EVENTS} statement events, 8 sessions, ${runs} runs (medians) | process CPU µs/event | main thread µs/event |\n| --- | --- | --- |`);
		for (const t of trees) {
			const rs = results[t.name]!;
			console.log(`| ${t.name} | ${median(rs.map((x) => x.process)).toFixed(2)} | ${median(rs.map((x) => x.main)).toFixed(2)} |`);
		}
		if (flags.baseline) {
			const a = results["now"]!;
			const b = results[flags.baseline]!;
			console.log(`| now / ${flags.baseline} | ${(median(a.map((x) => x.process)) / median(b.map((x) => x.process))).toFixed(2)}x | ${(median(a.map((x) => x.main)) / median(b.map((x) => x.main))).toFixed(2)}x |`);
		}
	} finally {
		cleanup();
	}
}
