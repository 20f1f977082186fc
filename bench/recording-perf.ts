/**
 * Where the gateway's CPU goes per transaction, recording OFF vs ON, by symbol: Linux `perf record`
 * (software cpu-clock event, so it works in VMs without hardware counters) samples the gateway child
 * (`recording-pg-child.ts`, run with `--perf-basic-prof` so JIT frames have names) while pgbench -S
 * runs, once per mode, order alternating per round. Prints samples per transaction as µs of CPU per
 * transaction, in total and for the symbols that grew or shrank the most. V8's own profiler samples
 * wall-clock time (a preempted thread's stack is still sampled), which inflates what happens to be on
 * the stack when the scheduler steps in; perf's cpu-clock counts only time on a CPU. Not a timed test.
 *
 * Usage: ./node_modules/.bin/node --import tsx bench/recording-perf.ts [--seconds 8] [--rounds 2] [--top 25] [--base off|serialize] [--flat] [--per-round]
 *                                                                       [--process per-run|shared]
 *
 * `--process shared`: one gateway process for every round, the recorder switched per run (as
 * recording-pgbench.ts does by default; `--base off` only), the spool drained before each sample, so
 * both sides share one JIT state and heap. Default `per-run`: a gateway process per sample.
 *
 * `--per-round` also prints each round's µs per transaction by mode, and for the ON round that cost the
 * most and the one that cost the least, the symbols that differ most between the two: a run-to-run
 * outlier (a deoptimised function, a GC mode) shows there rather than in the averages.
 *
 * `--flat` also prints, for recording on, where all of the CPU goes: µs per transaction by binary
 * (kernel, node, libcrypto, JIT code) and the most expensive symbols.
 *
 * Needs `perf` (Debian: linux-perf) and permission to attach to a child process (root, or
 * kernel.perf_event_paranoid <= 1).
 */
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run, startPostgres } from "../test/env/index.ts";
import { makeTempDir, type ManagedProcess, waitFor } from "../test/env/process.ts";
import { benchArgs } from "./args.ts";
import { perfSymbols } from "./perf-report.ts";
import { gatewayChildConfig, PGBENCH, prepareBenchData, startRecordingChild } from "./pg-world.ts";

const { values: flags, fail } = benchArgs(import.meta.url, {
	options: {
		seconds: { type: "string", default: "8" },
		rounds: { type: "string", default: "2" },
		top: { type: "string", default: "25" },
		flat: { type: "boolean", default: false },
		"per-round": { type: "boolean", default: false },
		base: { type: "string", default: "off" },
		process: { type: "string", default: "per-run" },
	},
});
const SECONDS = Number(flags.seconds);
const HZ = 1999;
const BASE = flags.base;
if (BASE !== "off" && BASE !== "serialize") fail(`--base: off or serialize, not ${BASE}`);
const SHARED = flags.process === "shared";
if (!SHARED && flags.process !== "per-run") fail(`--process: per-run or shared, not ${flags.process}`);
if (SHARED && BASE !== "off") fail("--process shared compares with --base off only");
if ((await run("perf", ["--version"])).code !== 0) throw new Error("perf is not installed (Debian: apt-get install linux-perf)");

const pg = await startPostgres({ settings: { max_connections: 60 } });
const work = makeTempDir("rec-perf");
/** The gateway process every sample shares (`--process shared`). */
let shared: ManagedProcess | undefined;
try {
	await prepareBenchData(pg, 0);
	const { cfg, token } = await gatewayChildConfig(pg, work, "b1");
	const cfgFile = join(work, "cfg.json");
	writeFileSync(cfgFile, JSON.stringify(cfg));
	/** Each sample on its own (`--per-round`). */
	const rounds: { mode: string; round: number; samples: Map<string, number>; tx: number }[] = [];
	const totals: Record<string, { samples: Map<string, number>; tx: number; tps: number[] }> = {
		[BASE]: { samples: new Map(), tx: 0, tps: [] },
		on: { samples: new Map(), tx: 0, tps: [] },
	};
	// --perf-basic-prof: perf names the JIT frames.
	const startChild = (mode: string) => startRecordingChild(cfg, cfgFile, mode, ["--liftoff-only", "--perf-basic-prof"]);
	const state = () => JSON.parse(readFileSync(cfg.stateFile, "utf8")) as { port: number; backlog: number; pending: number };
	const envFor = (port: number) => ({ ...process.env, PGHOST: "localhost", PGPORT: String(port), PGDATABASE: cfg.connection, PGUSER: "bench", PGPASSWORD: token, PGSSLMODE: "verify-full", PGSSLROOTCERT: pg.caFile });
	/** Sample the gateway's node process (the watchdog's child) during one measured pgbench run. */
	const sample = async (gw: ManagedProcess, mode: string, round: number) => {
		const env = envFor(state().port);
		const nodePid = (await run("pgrep", ["-P", String(gw.pid)])).stdout.trim().split("\n")[0];
		if (!nodePid) throw new Error("gateway child's node process not found");
		const data = join(work, `${mode}-${round}.perf`);
		const perf = spawn("perf", ["record", "-q", "-e", "cpu-clock", "-F", String(HZ), "-p", nodePid, "-o", data, "--", "sleep", String(SECONDS)], { stdio: "ignore" });
		const perfDone = new Promise((r) => perf.on("exit", r));
		const out = await run(PGBENCH, ["-n", "-S", "-c", "8", "-j", "2", "-T", String(SECONDS)], { env });
		await perfDone;
		const tx = Number(/number of transactions actually processed: (\d+)/.exec(out.stdout)?.[1] ?? Number.NaN);
		const tps = Number(/tps = ([\d.]+)/.exec(out.stdout)?.[1] ?? Number.NaN);
		if (out.code !== 0 || !(tx > 0)) throw new Error(`pgbench (${mode}) failed: ${out.stderr}`);
		const t = totals[mode]!;
		const symbols = await perfSymbols(data);
		for (const [k, v] of symbols) t.samples.set(k, (t.samples.get(k) ?? 0) + v);
		if (flags["per-round"]) rounds.push({ mode, round, samples: new Map(symbols), tx });
		t.tx += tx;
		t.tps.push(tps);
		console.error(`round ${round + 1}: ${mode} ${tps.toFixed(0)} tps`);
	};
	const once = async (mode: string, round: number) => {
		if (shared) {
			writeFileSync(`${cfg.stateFile}.mode`, mode);
			await new Promise((r) => setTimeout(r, 250));
			await waitFor("recording spool drained", async () => state().backlog === 0 && state().pending === 0, { timeoutMs: 120_000 });
			await sample(shared, mode, round);
			return;
		}
		const gw = await startChild(mode);
		try {
			// Warm up (JIT tiers, caches), then sample.
			await run(PGBENCH, ["-n", "-S", "-c", "8", "-j", "2", "-T", "2"], { env: envFor(state().port) });
			await sample(gw, mode, round);
		} finally {
			await gw.stop();
		}
	};
	if (SHARED) {
		writeFileSync(`${cfg.stateFile}.mode`, "on");
		shared = await startChild("switch");
		for (const mode of ["on", "off"]) {
			writeFileSync(`${cfg.stateFile}.mode`, mode);
			await run(PGBENCH, ["-n", "-S", "-c", "8", "-j", "2", "-T", "2"], { env: envFor(state().port) });
		}
	}
	for (let r = 0; r < Number(flags.rounds); r++) {
		for (const mode of r % 2 === 0 ? [BASE, "on"] : ["on", BASE]) await once(mode, r);
	}
	/** µs of CPU per transaction that `samples` stand for. */
	const usPerTx = (samples: number, tx: number) => (samples * (1e6 / HZ)) / tx;
	const base = totals[BASE]!;
	const on = totals.on!;
	const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
	const rows = [...new Set([...base.samples.keys(), ...on.samples.keys()])].map((sym) => {
		const a = usPerTx(base.samples.get(sym) ?? 0, base.tx);
		const b = usPerTx(on.samples.get(sym) ?? 0, on.tx);
		return { sym, a, b, d: b - a };
	});
	rows.sort((x, y) => y.d - x.d);
	const top = Number(flags.top);
	const fmt = (x: number) => x.toFixed(2);
	console.log(`\ngateway CPU per transaction from perf cpu-clock samples (${HZ} Hz), pgbench -S 8 clients, ${SECONDS} s x ${flags.rounds} rounds`);
	console.log(`\n| | recording ${BASE} | recording on | on - ${BASE} |\n|---|---|---|---|`);
	console.log(`| all symbols, µs/tx | ${fmt(usPerTx(sum(base.samples), base.tx))} | ${fmt(usPerTx(sum(on.samples), on.tx))} | ${fmt(usPerTx(sum(on.samples), on.tx) - usPerTx(sum(base.samples), base.tx))} |`);
	console.log(`| TPS per round | ${base.tps.map((x) => x.toFixed(0)).join(", ")} | ${on.tps.map((x) => x.toFixed(0)).join(", ")} | |`);
	console.log(`\nlargest increases (µs/tx):\n\n| symbol | ${BASE} | on | difference |\n|---|---|---|---|`);
	for (const r of rows.slice(0, top)) console.log(`| \`${r.sym.replace("\t", ": ").slice(0, 100)}\` | ${fmt(r.a)} | ${fmt(r.b)} | ${fmt(r.d)} |`);
	if (flags.flat) {
		const byDso = new Map<string, number>();
		for (const [k, v] of on.samples) {
			const dso = k.slice(0, k.indexOf("\t"));
			byDso.set(dso, (byDso.get(dso) ?? 0) + v);
		}
		console.log(`\nrecording on, by binary (µs/tx):\n\n| binary | µs/tx |\n|---|---|`);
		for (const [d, v] of [...byDso].sort((a, b) => b[1] - a[1]).slice(0, 12)) console.log(`| ${d} | ${fmt(usPerTx(v, on.tx))} |`);
		console.log(`\nrecording on, most expensive symbols (µs/tx):\n\n| symbol | µs/tx |\n|---|---|`);
		for (const [k, v] of [...on.samples].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`| \`${k.replace("\t", ": ").slice(0, 110)}\` | ${fmt(usPerTx(v, on.tx))} |`);
	}
	if (flags["per-round"]) {
		const total = (r: (typeof rounds)[number]) => usPerTx(sum(r.samples), r.tx);
		console.log(`\nper round, µs/tx:\n\n| round | ${BASE} | on |\n|---|---|---|`);
		for (let r = 0; r < Number(flags.rounds); r++) {
			const of = (mode: string) => rounds.find((x) => x.round === r && x.mode === mode);
			console.log(`| ${r + 1} | ${fmt(total(of(BASE)!))} | ${fmt(total(of("on")!))} |`);
		}
		const ons = rounds.filter((x) => x.mode === "on").sort((a, b) => total(a) - total(b));
		const [low, high] = [ons[0]!, ons.at(-1)!];
		const diff = [...new Set([...low.samples.keys(), ...high.samples.keys()])]
			.map((sym) => ({ sym, a: usPerTx(low.samples.get(sym) ?? 0, low.tx), b: usPerTx(high.samples.get(sym) ?? 0, high.tx) }))
			.sort((x, y) => y.b - y.a - (x.b - x.a));
		console.log(`\nON round ${high.round + 1} (${fmt(total(high))} µs/tx) vs ON round ${low.round + 1} (${fmt(total(low))}): largest increases\n\n| symbol | low | high | difference |\n|---|---|---|---|`);
		for (const r of diff.slice(0, top)) console.log(`| \`${r.sym.replace("\t", ": ").slice(0, 100)}\` | ${fmt(r.a)} | ${fmt(r.b)} | ${fmt(r.b - r.a)} |`);
	}
	console.log(`\nlargest decreases (noise shows here as much as above):\n\n| symbol | ${BASE} | on | difference |\n|---|---|---|---|`);
	for (const r of rows.slice(-Math.min(10, top)).reverse()) console.log(`| \`${r.sym.replace("\t", ": ").slice(0, 100)}\` | ${fmt(r.a)} | ${fmt(r.b)} | ${fmt(r.d)} |`);
} finally {
	await shared?.stop();
	await pg.stop();
}
