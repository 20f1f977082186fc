import { spawn } from "node:child_process";
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { run, startPostgres } from "../test/env/index.ts";
import { makeTempDir, ManagedProcess, waitFor } from "../test/env/process.ts";
import { gatewayChildConfig, PGBENCH, prepareBenchData } from "./pg-world.ts";
const pg = await startPostgres({ settings: { max_connections: 60 } });
const work = makeTempDir("rec-perfg");
let gw: ManagedProcess | undefined;
try {
	await prepareBenchData(pg, 0);
	const { cfg, token } = await gatewayChildConfig(pg, work, "b1");
	const cfgFile = join(work, "cfg.json");
	writeFileSync(cfgFile, JSON.stringify(cfg));
	rmSync(cfg.stateFile, { force: true });
	writeFileSync(`${cfg.stateFile}.mode`, "on");
	gw = new ManagedProcess({ name: "gw", command: process.execPath, args: ["--liftoff-only", "--perf-basic-prof", "--import", "tsx", join(import.meta.dirname, "recording-pg-child.ts"), cfgFile, "switch"] });
	await waitFor("gw", async () => { try { readFileSync(cfg.stateFile); return true; } catch { return false; } }, { timeoutMs: 60_000, proc: gw });
	const st = () => JSON.parse(readFileSync(cfg.stateFile, "utf8"));
	const env = { ...process.env, PGHOST: "localhost", PGPORT: String(st().port), PGDATABASE: cfg.connection, PGUSER: "bench", PGPASSWORD: token, PGSSLMODE: "verify-full", PGSSLROOTCERT: pg.caFile };
	const nodePid = (await run("pgrep", ["-P", String(gw.pid)])).stdout.trim().split("\n")[0]!;
	await run(PGBENCH, ["-n", "-S", "-c", "8", "-j", "2", "-T", "3"], { env });
	const perf = spawn("perf", ["record", "-g", "-q", "-e", "cpu-clock", "-F", "1999", "-p", nodePid, "-o", "/tmp/perfg.data", "--", "sleep", "8"], { stdio: "ignore" });
	const done = new Promise((r) => perf.on("exit", r));
	await run(PGBENCH, ["-n", "-S", "-c", "8", "-j", "2", "-T", "8"], { env });
	await done;
} finally { await gw?.stop(); await pg.stop(); }
