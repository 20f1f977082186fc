import { spawn } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run, startPostgres } from "../test/env/index.ts";
import { makeTempDir, ManagedProcess, waitFor } from "../test/env/process.ts";
import { gatewayChildConfig, PGBENCH, prepareBenchData } from "./pg-world.ts";
const EVENTS = "syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_read,syscalls:sys_enter_pwrite64,syscalls:sys_enter_fsync,syscalls:sys_enter_openat,sched:sched_switch,sched:sched_wakeup,raw_syscalls:sys_enter";
const pg = await startPostgres({ settings: { max_connections: 60 } });
const work = makeTempDir("rec-sys");
try {
	await prepareBenchData(pg, 0);
	const { cfg, token } = await gatewayChildConfig(pg, work, "b1");
	const cfgFile = join(work, "cfg.json");
	writeFileSync(cfgFile, JSON.stringify(cfg));
	for (const mode of ["off", "on", "on", "off"]) {
		rmSync(cfg.stateFile, { force: true });
		const gw = new ManagedProcess({ name: `gw-${mode}`, command: process.execPath, args: ["--liftoff-only", "--import", "tsx", join(import.meta.dirname, "recording-pg-child.ts"), cfgFile, mode] });
		try {
			await waitFor("gw", async () => { try { readFileSync(cfg.stateFile); return true; } catch { return false; } }, { timeoutMs: 60_000, proc: gw });
			const { port } = JSON.parse(readFileSync(cfg.stateFile, "utf8")) as { port: number };
			const env = { ...process.env, PGHOST: "localhost", PGPORT: String(port), PGDATABASE: cfg.connection, PGUSER: "bench", PGPASSWORD: token, PGSSLMODE: "verify-full", PGSSLROOTCERT: pg.caFile };
			await run(PGBENCH, ["-n", "-S", "-c", "8", "-j", "2", "-T", "2"], { env });
			const nodePid = (await run("pgrep", ["-P", String(gw.pid)])).stdout.trim().split("\n")[0]!;
			const out = join(work, `${mode}.stat`);
			const perf = spawn("perf", ["stat", "--per-thread", "-x", ",", "-o", out, "-e", EVENTS, "-p", nodePid, "--", "sleep", "6"], { stdio: "ignore" });
			const done = new Promise((r) => perf.on("exit", r));
			const res = await run(PGBENCH, ["-n", "-S", "-c", "8", "-j", "2", "-T", "6"], { env });
			await done;
			const tx = Number(/number of transactions actually processed: (\d+)/.exec(res.stdout)?.[1]);
			const agg = new Map<string, number>();
			for (const line of readFileSync(out, "utf8").split("\n")) {
				const f = line.split(",");
				if (f.length < 4 || !f[3]) continue;
				const thread = f[0]!.replace(/-\d+$/, "");
				const key = `${thread} ${f[3]}`;
				agg.set(key, (agg.get(key) ?? 0) + Number(f[1]));
			}
			console.log(`\n== ${mode}: ${tx} tx`);
			for (const [k, v] of [...agg].sort()) if (v / tx >= 0.005) console.log(`${k.padEnd(60)} ${(v / tx).toFixed(3)} /tx`);
		} finally { await gw.stop(); }
	}
} finally { await pg.stop(); }
