/**
 * CPU time per transaction of the proxy itself: the gateway vs PgBouncer under the same pgbench -S
 * load. On a shared two-core machine TPS moves with everyone else's load; the CPU a proxy spends per
 * transaction moves far less, so this is the number to track while optimising the hot path. Both
 * proxies run TLS on both sides and SCRAM to the server; the gateway runs guardrails, masking and
 * recording (bench/pg-gateway-child.ts under --liftoff-only, as shipped).
 *
 * Usage: ./node_modules/.bin/node --import tsx bench/pg-cpu.ts [--seconds 5] [--runs 3] [--clients 8] [--modes simple,prepared,large]
 *                                                               [--rows 300000]        (large: one SELECT of that many rows, 2 masked columns)
 *                                                               [--script select|tpcb] (tpcb: pgbench's default script, seven statements per transaction)
 *                                                               [--cpu-prof-dir DIR]   (profile the gateway child)
 *                                                               [--baseline REF]       (also a gateway from git REF, same run)
 *                                                               [--gateway-node-flags "--max-semi-space-size=16"]  (this checkout's gateway only)
 *
 * Prints, per mode: median TPS of each target and median CPU µs per transaction of each proxy
 * (utime + stime of the proxy process from /proc, over the pgbench run), and their ratio. Mode
 * `large` streams a SELECT with two masked columns (bench/large-select.ts): rows/s, and the
 * proxy's CPU per 1000 rows.
 */
import { copyFileSync, readdirSync, readFileSync, readlinkSync, symlinkSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";
import { run, startPostgres } from "../test/env/index.ts";
import { makeTempDir, ManagedProcess, waitFor } from "../test/env/process.ts";
import { benchArgs } from "./args.ts";
import { streamRows } from "./large-select.ts";
import { BIG_SELECT, gatewayChildConfig, PGBENCH, prepareBenchData } from "./pg-world.ts";
import { startPgBouncer } from "./pgbouncer.ts";
import { machineJiffies, statCpuMicros } from "./proc.ts";

const { values: flags, fail } = benchArgs(import.meta.url, {
	dashValues: ["gateway-node-flags"],
	options: {
		seconds: { type: "string", default: "5" },
		runs: { type: "string", default: "3" },
		clients: { type: "string", default: "8" },
		modes: { type: "string", default: "simple,prepared,large" },
		rows: { type: "string", default: "300000" },
		script: { type: "string", default: "select" },
		"cpu-prof-dir": { type: "string" },
		baseline: { type: "string" },
		"gateway-node-flags": { type: "string", default: "" },
	},
});
if (flags.script !== "select" && flags.script !== "tpcb") fail(`--script: select or tpcb, not ${flags.script}`);
const log = (m: string) => console.error(`[pg-cpu] ${m}`);
const median = (xs: number[]) => {
	const s = [...xs].sort((a, b) => a - b);
	return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

/** The real server under a ManagedProcess: the watchdog's descendant whose executable name matches. */
function findPid(root: number, comm: RegExp): number {
	const stack = [root];
	while (stack.length > 0) {
		const pid = stack.pop()!;
		if (pid !== root && comm.test(basename(readlinkSync(`/proc/${pid}/exe`)))) return pid;
		for (const t of readdirSync(`/proc/${pid}/task`)) {
			const kids = readFileSync(`/proc/${pid}/task/${t}/children`, "utf8").trim();
			if (kids) stack.push(...kids.split(" ").map(Number));
		}
	}
	throw new Error(`no process matching ${comm} under ${root}`);
}

/** utime and stime of a process in microseconds (all its threads). */
const cpuMicros = (pid: number) => statCpuMicros(`/proc/${pid}/stat`);

const pg = await startPostgres({ settings: { max_connections: 200 } });
const work = makeTempDir("bench-pg-cpu");
const stops: (() => Promise<void>)[] = [];
try {
	const ROWS = Number(flags.rows);
	await prepareBenchData(pg, flags.modes.split(",").includes("large") ? ROWS : 0);

	const { port: bport, proc: bouncer } = await startPgBouncer(pg);
	stops.push(() => bouncer.stop());

	const { cfg, token } = await gatewayChildConfig(pg, work, "c1");

	// One gateway child per source tree: this checkout, and with --baseline REF a git worktree of REF
	// (node_modules shared) so before/after are measured in the same interleaved run.
	const trees: { name: string; dir: string }[] = [{ name: "gateway", dir: join(import.meta.dirname, "..") }];
	if (flags.baseline) {
		const dir = join(work, "baseline");
		const add = await run("git", ["-C", join(import.meta.dirname, ".."), "worktree", "add", "--detach", dir, flags.baseline], {});
		if (add.code !== 0) throw new Error(`git worktree add ${flags.baseline}: ${add.stderr}`);
		stops.push(async () => void (await run("git", ["-C", join(import.meta.dirname, ".."), "worktree", "remove", "--force", dir], {})));
		symlinkSync(join(import.meta.dirname, "..", "node_modules"), join(dir, "node_modules"));
		// REF's gateway code under this checkout's bench child, so only the gateway differs.
		for (const f of ["pg-gateway-child.ts", "bundle.ts", "args.ts"]) copyFileSync(join(import.meta.dirname, f), join(dir, "bench", f));
		trees.push({ name: `gateway@${flags.baseline}`, dir });
	}
	const gateways: Record<string, { port: number; pid: number; stateFile: string }> = {};
	for (const tree of trees) {
		const stateFile = join(work, `${tree.name.replace(/\W/g, "_")}-state.json`);
		const cfgFile = join(work, `${tree.name.replace(/\W/g, "_")}.json`);
		const workDir = join(work, tree.name.replace(/\W/g, "_"));
		writeFileSync(cfgFile, JSON.stringify({ ...cfg, stateFile, workDir }));
		const prof = flags["cpu-prof-dir"] && tree.name === "gateway" ? ["--cpu-prof", "--cpu-prof-dir", flags["cpu-prof-dir"]] : [];
		const gw = new ManagedProcess({
			name: tree.name,
			command: process.execPath,
			args: [...prof, ...(tree.name === "gateway" ? flags["gateway-node-flags"].split(" ").filter(Boolean) : []), "--liftoff-only", "--import", "tsx", join(tree.dir, "bench", "pg-gateway-child.ts"), cfgFile],
		});
		stops.push(() => gw.stop(30_000));
		const port = () => {
			try {
				return JSON.parse(readFileSync(stateFile, "utf8")).port as number;
			} catch {
				return 0; // partial write
			}
		};
		await waitFor("gateway child", async () => port() > 0, { timeoutMs: 60_000, proc: gw });
		await new Promise((r) => setTimeout(r, 300));
		gateways[tree.name] = { port: port(), pid: findPid(gw.pid!, /^node$/), stateFile };
	}

	// The floor: a Node.js relay that only terminates and re-opens TLS (bench/pg-relay-child.ts).
	const relayState = join(work, "relay-state.json");
	writeFileSync(join(work, "relay.json"), JSON.stringify({ stateFile: relayState, tls: cfg.tls, upstream: { host: pg.host, port: pg.port, caPem: pg.caPem, serverName: "localhost" } }));
	const relay = new ManagedProcess({ name: "node-tls-relay", command: process.execPath, args: ["--import", "tsx", join(import.meta.dirname, "pg-relay-child.ts"), join(work, "relay.json")] });
	stops.push(() => relay.stop());
	const relayPort = () => {
		try {
			return JSON.parse(readFileSync(relayState, "utf8")).port as number;
		} catch {
			return 0;
		}
	};
	await waitFor("relay child", async () => relayPort() > 0, { timeoutMs: 60_000, proc: relay });

	type Target = { port: number; db: string; user: string; password: string; sslmode: string; pid: number | undefined; env?: Record<string, string> };
	const targets: Record<string, Target> = {
		direct: { port: pg.port, db: pg.database, user: pg.superuser, password: pg.password, sslmode: "verify-full", pid: undefined },
		pgbouncer: { port: bport, db: "bench-db", user: pg.superuser, password: pg.password, sslmode: "require", pid: findPid(bouncer.pid!, /^pgbouncer$/) },
	};
	targets["node-tls-relay"] = { port: relayPort(), db: pg.database, user: pg.superuser, password: pg.password, sslmode: "verify-full", pid: findPid(relay.pid!, /^node$/), env: { PGCHANNELBINDING: "disable" } }; // the relay ends the client's TLS: no SCRAM-PLUS
	for (const [name, g] of Object.entries(gateways)) targets[name] = { port: g.port, db: "bench-db", user: "bench", password: token, sslmode: "verify-full", pid: g.pid };
	const pgbench = async (t: Target, mode: string): Promise<{ tps: number; busy: number; cpuPerTx?: number; sysPerTx?: number }> => {
		const cpu0 = t.pid ? cpuMicros(t.pid) : { user: 0, sys: 0 };
		const m0 = machineJiffies();
		const busy = () => {
			const m1 = machineJiffies();
			return (m1.busy - m0.busy) / Math.max(1, m1.total - m0.total);
		};
		if (mode === "large") {
			// "tps" is rows/s here and CPU is per 1000 rows.
			const target = { host: "127.0.0.1", port: t.port, database: t.db, user: t.user, password: t.password, sslmode: "verify-full" as const, caPem: pg.caPem, serverName: "localhost" };
			const rate = await streamRows(target, BIG_SELECT, ROWS);
			const cpu1 = t.pid ? cpuMicros(t.pid) : { user: 0, sys: 0 };
			const per = (x: number) => (x * 1000) / ROWS;
			return { tps: rate, busy: busy(), ...(t.pid ? { cpuPerTx: per(cpu1.user + cpu1.sys - cpu0.user - cpu0.sys), sysPerTx: per(cpu1.sys - cpu0.sys) } : {}) };
		}
		const c = flags.clients;
		const out = await run(PGBENCH, ["-n", ...(flags.script === "select" ? ["-S"] : []), "-T", flags.seconds, "-M", mode, "-c", c, "-j", String(Math.min(Number(c), 2))], {
			env: { ...process.env, PGHOST: "localhost", PGPORT: String(t.port), PGDATABASE: t.db, PGUSER: t.user, PGPASSWORD: t.password, PGSSLMODE: t.sslmode, PGSSLROOTCERT: pg.caFile, ...t.env },
		});
		const cpu1 = t.pid ? cpuMicros(t.pid) : { user: 0, sys: 0 };
		const sys = cpu1.sys - cpu0.sys;
		const cpu = cpu1.user + cpu1.sys - cpu0.user - cpu0.sys;
		const tps = /tps = ([\d.]+) \(without initial connection time\)/.exec(out.stdout);
		const tx = /number of transactions actually processed: (\d+)/.exec(out.stdout);
		if (out.code !== 0 || !tps || !tx) throw new Error(`pgbench failed: ${out.stderr}\n${out.stdout}`);
		return { tps: Number(tps[1]), busy: busy(), ...(t.pid ? { cpuPerTx: cpu / Number(tx[1]), sysPerTx: sys / Number(tx[1]) } : {}) };
	};
	const rows: string[] = [];
	for (const mode of flags.modes.split(",")) {
		const res: Record<string, { tps: number[]; cpu: number[]; sys: number[]; busy: number[] }> = Object.fromEntries(Object.keys(targets).map((k) => [k, { tps: [], cpu: [], sys: [], busy: [] }]));
		for (const g of Object.keys(gateways)) await pgbench(targets[g]!, mode); // warm-up: parse caches, JIT
		for (let r = 0; r < Number(flags.runs); r++) {
			for (const [name, t] of Object.entries(targets)) {
				const x = await pgbench(t, mode);
				res[name]!.tps.push(x.tps);
				res[name]!.busy.push(x.busy);
				if (x.cpuPerTx !== undefined) res[name]!.cpu.push(x.cpuPerTx);
				if (x.sysPerTx !== undefined) res[name]!.sys.push(x.sysPerTx);
			}
			log(`${mode} run ${r + 1}: ${Object.entries(res).map(([k, v]) => `${k} ${v.tps.at(-1)!.toFixed(0)} tps${v.cpu.length ? ` ${v.cpu.at(-1)!.toFixed(0)} µs/tx (sys ${v.sys.at(-1)!.toFixed(0)})` : ""}`).join(", ")}`);
		}
		const m = (k: string, f: "tps" | "cpu" | "sys" | "busy") => median(res[k]![f]);
		for (const name of Object.keys(targets)) {
			const cpu = res[name]!.cpu.length > 0 ? `${m(name, "cpu").toFixed(0)} (sys ${m(name, "sys").toFixed(0)})` : "";
			const vsBouncer = name === "direct" ? "" : `${(m(name, "tps") / m("pgbouncer", "tps")).toFixed(2)}x`;
			const cpuVsBouncer = cpu && name !== "pgbouncer" ? `${(m(name, "cpu") / m("pgbouncer", "cpu")).toFixed(2)}x` : "";
			const vsBaseline = flags.baseline && name === "gateway" ? ` (${(m("gateway", "cpu") / m(`gateway@${flags.baseline}`, "cpu")).toFixed(2)}x of baseline CPU, ${(m("gateway", "tps") / m(`gateway@${flags.baseline}`, "tps")).toFixed(2)}x its TPS)` : "";
			rows.push(`| ${mode} | ${name} | ${m(name, "tps").toFixed(0)} | ${(m(name, "tps") / m("direct", "tps")).toFixed(2)}x | ${vsBouncer} | ${cpu} | ${cpuVsBouncer}${vsBaseline} | ${(m(name, "busy") * 100).toFixed(0)} % |`);
		}
	}
	console.log(`\npgbench ${flags.script === "select" ? "-S" : "(tpcb-like)"}, ${flags.clients} clients, ${flags.seconds} s x ${flags.runs} runs, interleaved (medians)\n`);
	console.log("| mode | target | tps (large: rows/s) | / direct | / pgbouncer | proxy µs CPU per tx (large: per 1000 rows) | CPU / pgbouncer's | machine busy |");
	console.log("|---|---|---|---|---|---|---|---|");
	for (const r of rows) console.log(r);
	await new Promise((r) => setTimeout(r, 400)); // one more state-file write
	const rss = Object.entries(gateways).map(([name, g]) => `${name} ${(JSON.parse(readFileSync(g.stateFile, "utf8")).maxRssKb / 1024).toFixed(0)} MiB`);
	console.log(`\npeak RSS over the whole run: ${rss.join(", ")}`);
} finally {
	for (const s of stops.reverse()) await s().catch(() => undefined);
	await pg.stop();
}
