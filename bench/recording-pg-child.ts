/**
 * The gateway's PostgreSQL listener in its own process for bench/recording-pgbench.ts, with recording
 * ON (DiskRecorder → spool → directory store) or OFF (a discarding Recorder that exists only as this
 * benchmark's baseline: the gateway itself never runs without recording). Same bundle either way.
 *
 * Usage: ./node_modules/.bin/node --import tsx bench/recording-pg-child.ts CONFIG.json on|off|serialize|switch
 *
 * CONFIG.json: bench/bundle.ts ChildConfig (bench/pg-world.ts gatewayChildConfig). Writes {port,
 * maxRssKb, cpuMicros, threads, backlog, pending} to cfg.stateFile every 100 ms; prints nothing.
 * `threads` holds CPU µs per thread kind, the main thread's context switches, and V8's garbage
 * collections (counts of scavenges and mark-compacts, pauses in µs).
 *
 * `switch`: both recorders in one process; each new session goes to the one named in the file
 * `<stateFile>.mode` ("on" or "off", read when the session opens), so ON and OFF runs share one
 * process, one JIT state and one heap, and the parent can alternate them run by run.
 */
import { readdirSync, readFileSync, renameSync, writeFileSync } from "node:fs";
import { rename, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { constants, PerformanceObserver } from "node:perf_hooks";
import { BundleStore } from "../gateway/config/store.ts";
import { startPostgresListener } from "../gateway/postgres/listener.ts";
import type { Recorder, SessionRecorder } from "../gateway/recording/events.ts";
import { generateRecordingKey } from "../gateway/recording/keys.ts";
import { DiskRecorder } from "../gateway/recording/recorder.ts";
import { DirStore, parseEndpoint, S3Store } from "../gateway/recording/store.ts";
import { benchArgs } from "./args.ts";
import { benchBundle, type ChildConfig } from "./bundle.ts";
import { statCpuMicros } from "./proc.ts";

const { positionals, fail } = benchArgs(import.meta.url, { options: {}, positionals: ["CONFIG.json", "MODE"] });
const mode = positionals[1];
if (mode !== "on" && mode !== "off" && mode !== "serialize" && mode !== "switch") fail(`MODE: on, off, serialize or switch, not ${mode}`);
const cfg = JSON.parse(readFileSync(positionals[0]!, "utf8")) as ChildConfig;
const bundle = benchBundle(cfg, {
	mask: [{ name: "email", columns: ["customers.email"], strategy: { type: "redact" } }],
	guardrails: [{ name: "no-drop", action: "block", sql: { statementKinds: ["DROP", "TRUNCATE"] } }],
});
const store = new BundleStore();
store.update(bundle);

/** Benchmark baseline only: accepts sessions and discards their events. */
class DiscardingRecorder implements Recorder {
	async openSession(meta: { sessionId: string }): Promise<SessionRecorder> {
		return { sessionId: meta.sessionId, emit() {}, async close() {} };
	}
}

/**
 * Benchmark baseline only: serialises every event (as the recorder must) and discards the text. ON vs
 * this separates the recorder's spool work from building and serialising events.
 */
let serialized = 0;
class SerializingRecorder implements Recorder {
	async openSession(meta: { sessionId: string }): Promise<SessionRecorder> {
		return {
			sessionId: meta.sessionId,
			emit(e) {
				serialized += JSON.stringify(e).length;
			},
			async close() {},
		};
	}
}

/** `switch` mode: sessions go to the recorder the parent names in `<stateFile>.mode` at their start. */
class SwitchingRecorder implements Recorder {
	readonly on: Recorder;
	readonly off = new DiscardingRecorder();
	constructor(on: Recorder) {
		this.on = on;
	}
	openSession(meta: Parameters<Recorder["openSession"]>[0], options?: Parameters<Recorder["openSession"]>[1]): Promise<SessionRecorder> {
		const which = readFileSync(`${cfg.stateFile}.mode`, "utf8").trim();
		return which === "on" ? this.on.openSession(meta, options) : this.off.openSession(meta);
	}
}

let disk: DiskRecorder | undefined;
let recorder: Recorder;
if (mode === "on" || mode === "switch") {
	const { key } = await generateRecordingKey();
	const recDir = process.env.DRAWBRIDGE_BENCH_RECORDING_DIR ?? cfg.workDir;
	// The store: a directory (default; DRAWBRIDGE_BENCH_STORE_DIR moves it, e.g. to tmpfs) or, with
	// DRAWBRIDGE_BENCH_S3_ENDPOINT, a bucket on a real MinIO as deployed.
	const s3 = process.env.DRAWBRIDGE_BENCH_S3_ENDPOINT;
	const recordings = s3
		? new S3Store({ ...parseEndpoint(s3), accessKey: process.env.DRAWBRIDGE_BENCH_S3_ACCESS_KEY ?? "", secretKey: process.env.DRAWBRIDGE_BENCH_S3_SECRET_KEY ?? "", bucket: "bench-recordings" })
		: new DirStore(process.env.DRAWBRIDGE_BENCH_STORE_DIR ?? join(recDir, "recordings"));
	disk = new DiskRecorder({ spoolDir: join(recDir, `spool-${process.pid}`), store: recordings, key });
	await disk.start();
	recorder = mode === "switch" ? new SwitchingRecorder(disk) : disk;
} else recorder = mode === "serialize" ? new SerializingRecorder() : new DiscardingRecorder();
const listener = startPostgresListener({ store, recorder, tls: cfg.tls });
const { port } = await listener.listen(0);
/**
 * V8's garbage collections so far, from perf_hooks: how many young-generation (scavenge) and
 * full (mark-compact) collections ran, ×10^6 so that per-transaction rates show in the report, and
 * their pauses on the main thread in µs.
 */
const gc = { minor: 0, major: 0, pauseMicros: 0 };
new PerformanceObserver((list) => {
	for (const e of list.getEntries()) {
		const kind = ((e as unknown as { detail?: { kind?: number } }).detail)?.kind;
		if (kind === constants.NODE_PERFORMANCE_GC_MINOR) gc.minor++;
		else if (kind === constants.NODE_PERFORMANCE_GC_MAJOR) gc.major++;
		gc.pauseMicros += e.duration * 1000;
	}
}).observe({ entryTypes: ["gc"] });
/** CPU µs per thread kind (main, libuv threadpool, V8 workers: GC, compilers) from /proc/self/task, and GC counts and pauses. */
const threadCpu = (): Record<string, number> => {
	const out: Record<string, number> = { "gc-minor-x1e6": gc.minor * 1e6, "gc-major-x1e6": gc.major * 1e6, "gc-pause": gc.pauseMicros };
	for (const t of readdirSync("/proc/self/task")) {
		try {
			const cpu = statCpuMicros(`/proc/self/task/${t}/stat`);
			const comm = t === String(process.pid) ? "main" : cpu.comm.replace(/\s+/g, "-");
			out[comm] = (out[comm] ?? 0) + cpu.user + cpu.sys;
			if (comm === "main") {
				out["main-sys"] = cpu.sys;
				out["main-minflt-x1000"] = cpu.minflt * 1000;
				// Context switches ×1000 so that per-transaction rates show in the report.
				const st = readFileSync(`/proc/self/task/${t}/status`, "utf8");
				out["main-cs-invol-x1000"] = Number(/nonvoluntary_ctxt_switches:\s*(\d+)/.exec(st)?.[1] ?? 0) * 1000;
				out["main-cs-vol-x1000"] = Number(/\nvoluntary_ctxt_switches:\s*(\d+)/.exec(st)?.[1] ?? 0) * 1000;
			}
		} catch {
			// the thread ended between readdir and read
		}
	}
	return out;
};
const state = () => {
	const cpu = process.cpuUsage();
	return JSON.stringify({
		port,
		maxRssKb: process.resourceUsage().maxRSS,
		cpuMicros: cpu.user + cpu.system,
		threads: threadCpu(),
		serialized,
		backlog: disk?.backlogBytes() ?? 0,
		pending: disk?.pendingSessions().length ?? 0,
	});
};
// Atomic replace: the parent reads this file while we run.
writeFileSync(`${cfg.stateFile}.tmp`, state());
renameSync(`${cfg.stateFile}.tmp`, cfg.stateFile);
// Then asynchronously, one write at a time: a blocking write would stall the event loop measured.
let writing = false;
setInterval(() => {
	if (writing) return;
	writing = true;
	writeFile(`${cfg.stateFile}.tmp`, state())
		.then(() => rename(`${cfg.stateFile}.tmp`, cfg.stateFile))
		.catch(() => undefined)
		.finally(() => {
			writing = false;
		});
}, 100).unref();
const stop = async () => {
	await listener.close();
	await disk?.drain(30_000).catch(() => {});
	await disk?.stop();
	process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
