/**
 * Where the gateway's CPU goes beyond what Node.js itself costs: Linux `perf record` (cpu-clock) samples
 * the gateway child (bench/pg-gateway-child.ts: guardrails, masking, recording on) and the bare TLS
 * relay (bench/pg-relay-child.ts: the floor for any Node.js proxy) while pgbench -S runs against each,
 * rounds alternating. Prints µs of CPU per transaction by category (kernel, OpenSSL, Node's C++, V8
 * runtime and builtins, GC, JIT code of Node's own JS and of ours, malloc) and the symbols that cost
 * the gateway the most over the relay. Not a timed test.
 *
 * Usage: ./node_modules/.bin/node --import tsx bench/pg-perf.ts [--mode simple|prepared|large] [--script select|tpcb] [--seconds 6] [--rounds 2] [--top 40] [--rows 1000000]
 *
 * `--script tpcb` runs pgbench's default TPC-B-like script (BEGIN, three UPDATEs, a SELECT, an
 * INSERT, END) instead of -S: seven statements and a commit per transaction.
 *
 * `--mode large` streams the large-result SELECT (bench/pg-world.ts: two masked columns) instead of
 * pgbench, and reports µs per 1000 rows.
 *
 * Needs `perf` (Debian: linux-perf) and permission to attach to a child process.
 */
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run, startPostgres } from "../test/env/index.ts";
import { makeTempDir, ManagedProcess, waitFor } from "../test/env/process.ts";
import { benchArgs } from "./args.ts";
import { streamRows } from "./large-select.ts";
import { category, perfSymbols } from "./perf-report.ts";
import { BIG_SELECT, gatewayChildConfig, PGBENCH, prepareBenchData } from "./pg-world.ts";

const { values: flags, fail } = benchArgs(import.meta.url, {
	options: {
		mode: { type: "string", default: "simple" },
		script: { type: "string", default: "select" },
		seconds: { type: "string", default: "6" },
		rounds: { type: "string", default: "2" },
		top: { type: "string", default: "40" },
		rows: { type: "string", default: "1000000" },
	},
});
const HZ = 1999;
if (flags.script !== "select" && flags.script !== "tpcb") fail(`--script: select or tpcb, not ${flags.script}`);
const SECONDS = Number(flags.seconds);
if ((await run("perf", ["--version"])).code !== 0) throw new Error("perf is not installed (Debian: apt-get install linux-perf)");

const pg = await startPostgres({ settings: { max_connections: 60 } });
const work = makeTempDir("pg-perf");
const procs: ManagedProcess[] = [];
try {
	const LARGE = flags.mode === "large";
	const ROWS = Number(flags.rows);
	await prepareBenchData(pg, LARGE ? ROWS : 0);
	const { cfg, token } = await gatewayChildConfig(pg, work, "p1");
	const statePort = (file: string) => {
		try {
			return JSON.parse(readFileSync(file, "utf8")).port as number;
		} catch {
			return 0;
		}
	};
	const start = async (name: string, script: string, config: object, stateFile: string) => {
		const cfgFile = join(work, `${name}.json`);
		writeFileSync(cfgFile, JSON.stringify(config));
		const p = new ManagedProcess({ name, command: process.execPath, args: ["--liftoff-only", "--perf-basic-prof", "--import", "tsx", join(import.meta.dirname, script), cfgFile] });
		procs.push(p);
		await waitFor(name, async () => statePort(stateFile) > 0, { timeoutMs: 60_000, proc: p });
		const pid = Number((await run("pgrep", ["-P", String(p.pid)])).stdout.trim().split("\n")[0]);
		if (!pid) throw new Error(`${name}: node process not found`);
		return { port: statePort(stateFile), pid };
	};
	const gwState = join(work, "gw-state.json");
	const relayState = join(work, "relay-state.json");
	const targets = {
		gateway: { ...(await start("gateway", "pg-gateway-child.ts", { ...cfg, stateFile: gwState }, gwState)), db: "bench-db", user: "bench", password: token, env: {} },
		relay: {
			...(await start("relay", "pg-relay-child.ts", { stateFile: relayState, tls: cfg.tls, upstream: { host: pg.host, port: pg.port, caPem: pg.caPem, serverName: "localhost" } }, relayState)),
			db: pg.database,
			user: pg.superuser,
			password: pg.password,
			env: { PGCHANNELBINDING: "disable" },
		},
	};
	const totals: Record<string, { samples: Map<string, number>; tx: number; tps: number[] }> = { gateway: { samples: new Map(), tx: 0, tps: [] }, relay: { samples: new Map(), tx: 0, tps: [] } };
	const once = async (name: keyof typeof targets, round: number) => {
		const t = targets[name];
		const env = { ...process.env, PGHOST: "localhost", PGPORT: String(t.port), PGDATABASE: t.db, PGUSER: t.user, PGPASSWORD: t.password, PGSSLMODE: "verify-full", PGSSLROOTCERT: pg.caFile, ...t.env };
		const data = join(work, `${name}-${round}.perf`);
		let tx: number;
		let tps: number;
		if (LARGE) {
			// "tx" are thousands of rows here.
			const target = { host: "127.0.0.1", port: t.port, database: t.db, user: t.user, password: t.password, sslmode: "verify-full" as const, caPem: pg.caPem, serverName: "localhost" };
			await streamRows(target, BIG_SELECT, ROWS); // warm-up
			const perf = spawn("perf", ["record", "-q", "-e", "cpu-clock", "-F", String(HZ), "-p", String(t.pid), "-o", data], { stdio: "ignore" });
			const perfDone = new Promise((r) => perf.on("exit", r));
			await new Promise((r) => setTimeout(r, 500)); // perf attached
			tps = await streamRows(target, BIG_SELECT, ROWS);
			perf.kill("SIGINT");
			await perfDone;
			tx = ROWS / 1000;
		} else {
			const args = ["-n", ...(flags.script === "select" ? ["-S"] : []), "-M", flags.mode, "-c", "8", "-j", "2"];
			await run(PGBENCH, [...args, "-T", "2"], { env }); // warm-up: JIT tiers, caches
			const perf = spawn("perf", ["record", "-q", "-e", "cpu-clock", "-F", String(HZ), "-p", String(t.pid), "-o", data, "--", "sleep", String(SECONDS)], { stdio: "ignore" });
			const perfDone = new Promise((r) => perf.on("exit", r));
			const out = await run(PGBENCH, [...args, "-T", String(SECONDS)], { env });
			await perfDone;
			tx = Number(/number of transactions actually processed: (\d+)/.exec(out.stdout)?.[1] ?? Number.NaN);
			tps = Number(/tps = ([\d.]+)/.exec(out.stdout)?.[1] ?? Number.NaN);
			if (out.code !== 0 || !(tx > 0)) throw new Error(`pgbench (${name}) failed: ${out.stderr}`);
		}
		const sum = totals[name]!;
		for (const [k, v] of await perfSymbols(data)) sum.samples.set(k, (sum.samples.get(k) ?? 0) + v);
		sum.tx += tx;
		sum.tps.push(tps);
		console.error(`round ${round + 1}: ${name} ${tps.toFixed(0)} tps`);
	};
	for (let r = 0; r < Number(flags.rounds); r++) for (const n of r % 2 === 0 ? (["relay", "gateway"] as const) : (["gateway", "relay"] as const)) await once(n, r);

	const us = (samples: number, tx: number) => (samples * (1e6 / HZ)) / tx;
	const g = totals.gateway!;
	const rl = totals.relay!;
	const byCat = (m: Map<string, number>) => {
		const c = new Map<string, number>();
		for (const [k, v] of m) {
			const [dso, sym] = k.split("\t") as [string, string];
			const cat = category(dso, sym);
			c.set(cat, (c.get(cat) ?? 0) + v);
		}
		return c;
	};
	const gc = byCat(g.samples);
	const rc = byCat(rl.samples);
	const f = (x: number) => x.toFixed(2);
	const sum = (m: Map<string, number>) => [...m.values()].reduce((a, b) => a + b, 0);
	console.log(
		LARGE
			? `\nCPU per 1000 rows from perf cpu-clock samples (${HZ} Hz), SELECT of ${ROWS} rows with two masked columns, ${flags.rounds} rounds (µs/tx below: per 1000 rows; TPS: rows/s)`
			: `\nCPU per transaction from perf cpu-clock samples (${HZ} Hz), pgbench ${flags.script === "select" ? "-S" : "(tpcb-like)"} -M ${flags.mode}, 8 clients, ${SECONDS} s x ${flags.rounds} rounds`,
	);
	console.log(`\n| category | relay µs/tx | gateway µs/tx | gateway - relay |\n|---|---|---|---|`);
	for (const cat of [...new Set([...gc.keys(), ...rc.keys()])].sort((a, b) => (gc.get(b) ?? 0) - (gc.get(a) ?? 0))) {
		const a = us(rc.get(cat) ?? 0, rl.tx);
		const b = us(gc.get(cat) ?? 0, g.tx);
		console.log(`| ${cat} | ${f(a)} | ${f(b)} | ${f(b - a)} |`);
	}
	console.log(`| **all** | ${f(us(sum(rl.samples), rl.tx))} | ${f(us(sum(g.samples), g.tx))} | ${f(us(sum(g.samples), g.tx) - us(sum(rl.samples), rl.tx))} |`);
	console.log(`| TPS per round | ${rl.tps.map((x) => x.toFixed(0)).join(", ")} | ${g.tps.map((x) => x.toFixed(0)).join(", ")} | |`);
	const rows = [...new Set([...g.samples.keys(), ...rl.samples.keys()])].map((k) => ({ k, a: us(rl.samples.get(k) ?? 0, rl.tx), b: us(g.samples.get(k) ?? 0, g.tx) }));
	rows.sort((x, y) => y.b - y.a - (x.b - x.a));
	console.log(`\nsymbols costing the gateway the most over the relay (µs/tx):\n\n| symbol | relay | gateway | difference |\n|---|---|---|---|`);
	for (const r of rows.slice(0, Number(flags.top))) console.log(`| \`${r.k.replace("\t", ": ").slice(0, 110)}\` | ${f(r.a)} | ${f(r.b)} | ${f(r.b - r.a)} |`);
} finally {
	for (const p of procs) await p.stop();
	await pg.stop();
}
