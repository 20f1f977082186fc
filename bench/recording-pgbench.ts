/**
 * Recording overhead on pgbench TPS: the same gateway, recording ON vs OFF, same run, alternating
 * ON/OFF so drift hits both equally. Prints TPS and the gateway's CPU time per transaction, on/off
 * ratios (target: overhead under 5 %). Not a timed test.
 *
 * Usage: ./node_modules/.bin/node --import tsx bench/recording-pgbench.ts [--seconds 5] [--runs 3] [--mode simple|extended|prepared] [--script select|tpcb]
 *                                                                          [--node-flags "--liftoff-only"]  (the gateway child's; default as shipped)
 *                                                                          [--base off|on|serialize]  (what ON is compared with; default off)
 *                                                                          [--calibrate]  (= --base on: the noise floor of the ratio)
 *                                                                          [--process shared|per-run] [--store dir|shm|minio]
 *                                                                          [--connect]  (pgbench -C: a new session per transaction)
 *
 * Starts PostgreSQL (and MinIO with `--store minio`) from test/env and the gateway child
 * (bench/recording-pg-child.ts); prints a line per run on stderr, then the per-run TPS ratios with
 * their median, mean and standard error, and a table of TPS and gateway CPU µs per transaction,
 * recording off (or the `--base`) vs on, with their ratios.
 *
 * `--connect` runs pgbench -C: every transaction is a session of its own (TLS, token, upstream
 * SCRAM, and with recording ON a spool folder opened, sealed, signed and uploaded), so it measures
 * recording's cost per session rather than per statement: the agent that connects for each task.
 *
 * `--base serialize` compares with a recorder that only JSON-serialises each event: ON vs that is the
 * spool's own cost, that vs OFF the cost of building and serialising events.
 *
 * `--process shared` (default): one gateway process serves every run; the recorder is switched per
 * run (new sessions go to the disk recorder or to a discarding one), so ON and OFF share one
 * process, one JIT state and one heap, and no run pays for another's leftovers: before each run the
 * recorder's spool is drained (the sessions of an ON run are sealed and uploaded after pgbench ends;
 * that CPU counts in the ON run's CPU per transaction). `--process per-run` starts a gateway
 * process per run (the method of sessions 1-5), which adds process-to-process variation.
 *
 * `--store`: where the recorder uploads. `dir` (default): a directory on the same disk as the spool,
 * so the gateway's ON runs also pay a local store's durable writes (two files, four fsyncs per
 * object). `minio`: a real MinIO started here, as deployed (its server CPU shares the two cores).
 * `shm`: a directory on tmpfs, standing for a store elsewhere that costs the gateway nothing but the
 * hand-over. The spool is on the disk in every case (DRAWBRIDGE_BENCH_RECORDING_DIR moves it).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run, startMinio, startPostgres } from "../test/env/index.ts";
import { makeTempDir, type ManagedProcess, waitFor } from "../test/env/process.ts";
import { benchArgs } from "./args.ts";
import { gatewayChildConfig, PGBENCH, prepareBenchData, startRecordingChild } from "./pg-world.ts";

const { values: flags, fail } = benchArgs(import.meta.url, {
	options: {
		seconds: { type: "string", default: "5" },
		runs: { type: "string", default: "3" },
		mode: { type: "string", default: "simple" },
		script: { type: "string", default: "select" },
		"node-flags": { type: "string", default: "--liftoff-only" },
		base: { type: "string", default: "off" },
		calibrate: { type: "boolean", default: false },
		process: { type: "string", default: "shared" },
		store: { type: "string", default: "dir" },
		connect: { type: "boolean", default: false },
	},
	dashValues: ["node-flags"],
});
const SECONDS = Number(flags.seconds);
const RUNS = Number(flags.runs);
const MODE = flags.mode;
if (MODE !== "simple" && MODE !== "extended" && MODE !== "prepared") fail(`--mode (pgbench -M): simple, extended or prepared, not ${MODE}`);
/**
 * `select` (default): pgbench -S, one primary-key SELECT per transaction: the gateway's worst case,
 * since the server does least per statement and the gateway most. `tpcb`: pgbench's default script
 * (BEGIN, three UPDATEs, a SELECT, an INSERT, END: seven statements and a commit per transaction).
 */
const SCRIPT = flags.script;
if (SCRIPT !== "select" && SCRIPT !== "tpcb") fail(`--script: select or tpcb, not ${SCRIPT}`);
/** Node flags for the gateway child; default as shipped (bin/drawbridge.mjs, the image). */
const NODE_FLAGS = flags["node-flags"].split(" ").filter(Boolean);
const PROCESS = flags.process;
const STORE = flags.store;
if (STORE !== "dir" && STORE !== "shm" && STORE !== "minio") fail(`--store: dir, shm or minio, not ${STORE}`);
if (PROCESS !== "shared" && PROCESS !== "per-run") fail(`--process: shared or per-run, not ${PROCESS}`);
// --calibrate runs recording ON on both sides: the spread of that ratio is this machine's noise floor.
const BASE = flags.calibrate ? "on" : flags.base;
if (BASE !== "off" && BASE !== "on" && BASE !== "serialize") fail(`--base: off, on or serialize, not ${BASE}`);
if (BASE === "serialize" && PROCESS === "shared") fail("--base serialize needs --process per-run");
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? Number.NaN;

const pg = await startPostgres({ settings: { max_connections: 60 } });
const minio = STORE === "minio" ? await startMinio() : undefined;
if (minio) {
	process.env.DRAWBRIDGE_BENCH_S3_ENDPOINT = minio.endpoint;
	process.env.DRAWBRIDGE_BENCH_S3_ACCESS_KEY = minio.accessKey;
	process.env.DRAWBRIDGE_BENCH_S3_SECRET_KEY = minio.secretKey;
}
const shm = STORE === "shm" ? mkdtempSync("/dev/shm/drawbridge-bench-store-") : undefined;
if (shm) process.env.DRAWBRIDGE_BENCH_STORE_DIR = shm;
const work = makeTempDir("rec-pgbench");
/** The gateway process every run shares (`--process shared`). */
let shared: ManagedProcess | undefined;
try {
	await prepareBenchData(pg, 0);
	const { cfg, token } = await gatewayChildConfig(pg, work, "b1");
	const cfgFile = join(work, "cfg.json");
	writeFileSync(cfgFile, JSON.stringify(cfg));

	const state = () =>
		JSON.parse(readFileSync(cfg.stateFile, "utf8")) as { port: number; cpuMicros: number; threads: Record<string, number>; backlog: number; pending: number };
	const pgbench = (port: number) =>
		run(PGBENCH, ["-n", ...(SCRIPT === "select" ? ["-S"] : []), ...(flags.connect ? ["-C"] : []), "-c", "8", "-j", "2", "-T", String(SECONDS), "-M", MODE], {
			env: { ...process.env, PGHOST: "localhost", PGPORT: String(port), PGDATABASE: cfg.connection, PGUSER: "bench", PGPASSWORD: token, PGSSLMODE: "verify-full", PGSSLROOTCERT: pg.caFile },
		});
	const startChild = (mode: string) => startRecordingChild(cfg, cfgFile, mode, NODE_FLAGS);
	/** Until the child's recorder has sealed and uploaded everything (state is rewritten every 100 ms). */
	const drained = async () => {
		await new Promise((r) => setTimeout(r, 250));
		try {
			await waitFor("recording spool drained", async () => {
				const st = state();
				return st.backlog === 0 && st.pending === 0;
			}, { timeoutMs: 120_000 });
		} catch (e) {
			// What was left, for whoever chases a recorder that does not drain.
			const st = state();
			throw new Error(`${(e as Error).message.split("\n")[0]}: ${st.backlog} bytes of backlog, ${st.pending} session(s) pending`, { cause: e });
		}
		await new Promise((r) => setTimeout(r, 150));
	};
	/**
	 * One pgbench run against the child now serving: TPS, and the child's CPU per transaction from
	 * before the run until `settle` has returned (what the run left behind counts in it).
	 */
	const measure = async (recording: string, settle: () => Promise<void>): Promise<{ tps: number; cpuPerTx: number; threads: Record<string, number> }> => {
		const s0 = state();
		const out = await pgbench(s0.port);
		const m = /tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing|including reconnection times)\)/.exec(out.stdout);
		const tx = /number of transactions actually processed: (\d+)/.exec(out.stdout);
		if (out.code !== 0 || !m || !tx) throw new Error(`pgbench (recording ${recording}) failed: ${out.stderr}\n${out.stdout}`);
		await settle();
		const s1 = state();
		const threads: Record<string, number> = {};
		for (const [k, v] of Object.entries(s1.threads)) threads[k] = (v - (s0.threads[k] ?? 0)) / Number(tx[1]);
		return { tps: Number(m[1]), cpuPerTx: (s1.cpuMicros - s0.cpuMicros) / Number(tx[1]), threads };
	};
	/** One run: in the shared gateway process (the recorder named by `recording` takes the new sessions) or in a process of its own. */
	const once = async (recording: "on" | "off" | "serialize") => {
		if (shared) {
			if (recording === "serialize") throw new TypeError("--base serialize needs --process per-run");
			writeFileSync(`${cfg.stateFile}.mode`, recording);
			await drained();
			// The run's sessions are sealed and uploaded after pgbench ends: their CPU belongs to this run.
			return measure(recording, drained);
		}
		const gw = await startChild(recording);
		try {
			return await measure(recording, () => new Promise((r) => setTimeout(r, 250)));
		} finally {
			await gw.stop();
		}
	};
	type Run = Awaited<ReturnType<typeof once>>;
	const on: Run[] = [];
	const off: Run[] = [];
	const perThread = (r: Run) =>
		Object.entries(r.threads)
			.filter(([, v]) => v >= 0.5)
			.map(([k, v]) => `${k} ${v.toFixed(0)}`)
			.join(", ");
	// The order flips every run, so whatever the first of a pair leaves behind (PostgreSQL's
	// checkpoints, page cache, a neighbour's burst) does not always land on the same side.
	const baseMode = BASE as "off" | "on" | "serialize";
	if (PROCESS === "shared") {
		shared = await startChild("switch");
		// Warm-up: both paths JIT-compiled before anything is measured.
		for (const mode of ["on", "off"]) {
			writeFileSync(`${cfg.stateFile}.mode`, mode);
			await pgbench(state().port);
		}
	}
	for (let r = 0; r < RUNS; r++) {
		if (r % 2 === 0) {
			off.push(await once(baseMode));
			on.push(await once("on"));
		} else {
			on.push(await once("on"));
			off.push(await once(baseMode));
		}
		console.error(`run ${r + 1}: ${baseMode} ${off[r]!.tps.toFixed(0)} tps ${off[r]!.cpuPerTx.toFixed(0)} µs/tx, on ${on[r]!.tps.toFixed(0)} tps ${on[r]!.cpuPerTx.toFixed(0)} µs/tx`);
		console.error(`       threads µs/tx: ${baseMode} [${perThread(off[r]!)}], on [${perThread(on[r]!)}]`);
	}
	const tpsRatio = median(on.map((x) => x.tps)) / median(off.map((x) => x.tps));
	const cpuRatio = median(on.map((x) => x.cpuPerTx)) / median(off.map((x) => x.cpuPerTx));
	const ratios = on.map((x, i) => x.tps / off[i]!.tps);
	const mean = ratios.reduce((a, b) => a + b, 0) / ratios.length;
	// Standard error of the mean: how far the mean of this many runs may sit from the machine's true ratio.
	const se = Math.sqrt(ratios.reduce((a, b) => a + (b - mean) ** 2, 0) / (ratios.length - 1) / ratios.length);
	console.log(
		`\nper-run TPS ratios: ${ratios.map((x) => x.toFixed(3)).join(" ")}; median ${median(ratios).toFixed(3)}, mean ${mean.toFixed(3)} ± ${se.toFixed(3)} (standard error)${baseMode === "on" ? " (calibration: ON vs ON)" : ""}`,
	);
	console.log(`\n| pgbench ${SCRIPT === "select" ? "-S" : "(tpcb-like)"}${flags.connect ? " -C" : ""} -M ${MODE}, 8 clients, ${SECONDS}s x ${RUNS} | recording ${baseMode} | recording on | on / ${baseMode} |\n| --- | --- | --- | --- |`);
	console.log(`| TPS (median) | ${median(off.map((x) => x.tps)).toFixed(0)} | ${median(on.map((x) => x.tps)).toFixed(0)} | ${tpsRatio.toFixed(3)} (target > 0.95) |`);
	console.log(
		`| gateway CPU µs per transaction (median) | ${median(off.map((x) => x.cpuPerTx)).toFixed(0)} | ${median(on.map((x) => x.cpuPerTx)).toFixed(0)} | ${cpuRatio.toFixed(3)} |`,
	);
	console.log("CPU per transaction is the steadier measure on a shared machine; TPS moves with everyone else's load.");
	console.log(`gateway process: ${PROCESS === "shared" ? "one for every run, recorder switched per run" : "one per run"}; store: ${STORE}`);
} finally {
	await shared?.stop();
	await minio?.stop();
	if (shm) rmSync(shm, { recursive: true, force: true });
	await pg.stop();
}
