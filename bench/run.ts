/**
 * One command for every benchmark: `npm run bench` (quick, minutes) or `npm run bench -- --full`.
 * Every figure is a RATIO to a baseline measured in the same run (medians over repeated, interleaved
 * runs), never a timed assertion. Writes bench/results/<stamp>.json and <stamp>.svg (and latest.*).
 *
 * PostgreSQL (measured here, all hops TLS, SCRAM upstream):
 *   - pgbench -S, simple and prepared, clients 8 (quick) or 1/8/32 (--full): direct vs PgBouncer
 *     (Debian, session pooling) vs the Drawbridge gateway (its own process, guardrails + masking on
 *     other tables + recording to disk);
 *   - connection setup rate: pgbench -S -C (a new connection per transaction, so every transaction
 *     pays TLS + token verification + grant lookup + upstream SCRAM);
 *   - a large SELECT with two masked columns streamed by a client that keeps nothing: rows/s direct
 *     vs gateway, and the gateway's peak RSS.
 * Other benches, run as child processes and their ratios extracted: bench/recording-pgbench.ts
 * (recording on/off), bench/ssh.ts, bench/kube.ts; with --full also bench/operator.ts.
 *
 * Usage: npm run bench -- [options]   (or ./node_modules/.bin/node --import tsx bench/run.ts [options])
 *
 * Flags: --full, --seconds N, --runs N, --rows N, --clients 1,8,32, --skip ssh,kube,recording,operator,
 *        --only pg, --cpu-prof (profile the gateway during the PostgreSQL runs; prints the top frames),
 *        --no-tier-compare (no second gateway under V8's default WASM tier).
 * Defaults: quick mode 4 s x 3 runs, 300000 rows, 8 clients, operator skipped; --full: 10 s x 5 runs,
 * 2000000 rows, clients 1,8,32, a 1 GiB SSH stream, the operator bench.
 * Prints progress on stderr, then a table of every ratio (group, measurement, ratio, detail, target).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { cpus, totalmem } from "node:os";
import { join } from "node:path";
import { run, startPostgres } from "../test/env/index.ts";
import { makeTempDir, ManagedProcess, waitFor } from "../test/env/process.ts";
import { benchArgs } from "./args.ts";
import { streamRows } from "./large-select.ts";
import { BIG_SELECT, gatewayChildConfig, PGBENCH, prepareBenchData } from "./pg-world.ts";
import { startPgBouncer } from "./pgbouncer.ts";

const { values: flags, fail } = benchArgs(import.meta.url, {
	options: {
		full: { type: "boolean", default: false },
		seconds: { type: "string" },
		runs: { type: "string" },
		rows: { type: "string" },
		clients: { type: "string" },
		skip: { type: "string", default: "" },
		only: { type: "string" },
		"cpu-prof": { type: "boolean", default: false },
		"no-tier-compare": { type: "boolean", default: false },
	},
});
const BENCHES = ["pg", "recording", "ssh", "kube", "operator"];
for (const b of [...(flags.skip ?? "").split(",").filter(Boolean), ...(flags.only ? [flags.only] : [])]) {
	if (!BENCHES.includes(b)) fail(`--skip / --only: ${BENCHES.join(", ")}, not ${b}`);
}
const FULL = flags.full === true;
const SECONDS = Number(flags.seconds ?? (FULL ? 10 : 4));
const RUNS = Number(flags.runs ?? (FULL ? 5 : 3));
const ROWS = Number(flags.rows ?? (FULL ? 2_000_000 : 300_000));
const CLIENTS = (flags.clients ?? (FULL ? "1,8,32" : "8")).split(",").map(Number);
const SKIP = new Set((flags.skip ?? "").split(",").filter(Boolean));
if (flags.only) for (const b of BENCHES) if (b !== flags.only) SKIP.add(b);
if (!FULL && !flags.only) SKIP.add("operator");
const NODE = process.execPath;
const RESULTS = join(import.meta.dirname, "results");

const median = (xs: number[]) => {
	const s = [...xs].sort((a, b) => a - b);
	return s.length === 0 ? Number.NaN : s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const log = (m: string) => console.error(`[bench] ${m}`);

/** One row of the summary: a ratio and what it compares. */
interface Ratio {
	group: string;
	name: string;
	ratio: number;
	/** "higher" = higher is better for the gateway (throughput); "lower" for latency/overhead. */
	better: "higher" | "lower";
	detail: string;
	target?: string;
}
const ratios: Ratio[] = [];
const raw: Record<string, unknown> = {};

// ------------------------------------------------------------------------------------------------
// PostgreSQL

async function pgBenches(): Promise<void> {
	log("starting PostgreSQL...");
	const pg = await startPostgres({ settings: { max_connections: 200 } });
	const work = makeTempDir("bench-run");
	const stops: (() => Promise<void>)[] = [];
	try {
		log(`creating ${ROWS} rows for the large-result bench...`);
		await prepareBenchData(pg, ROWS);

		// PgBouncer, session pooling, TLS both sides, SCRAM.
		const { port: bport, proc: bouncer } = await startPgBouncer(pg);
		stops.push(() => bouncer.stop());

		// The gateway in its own process (bench/pg-gateway-child.ts).
		const { cfg, token } = await gatewayChildConfig(pg, work, "r1");
		const profDir = join(RESULTS, "profiles");
		const startChild = async (kind: "main" | "prof" | "turbofan"): Promise<{ proc: ManagedProcess; state: () => { port: number; maxRssKb: number } | undefined }> => {
			const profile = kind === "prof";
			const stateFile = join(work, `gateway-state-${kind}.json`);
			const cfgFile = join(work, `gateway-${kind}.json`);
			const workDir = join(work, kind);
			mkdirSync(workDir, { recursive: true });
			writeFileSync(cfgFile, JSON.stringify({ ...cfg, stateFile, workDir }));
			if (profile) mkdirSync(profDir, { recursive: true });
			const proc = new ManagedProcess({
				name: `gateway-${kind}`,
				command: NODE,
				args: [
					...(profile ? ["--cpu-prof", "--cpu-prof-dir", profDir] : []),
					// The gateway ships with V8's baseline WASM tier only (bin/drawbridge.mjs, the image):
					// docs/performance.md. "turbofan" is the default-tier comparison.
					...(kind === "turbofan" ? [] : ["--liftoff-only"]),
					"--import",
					"tsx", join(import.meta.dirname, "pg-gateway-child.ts"), cfgFile],
			});
			let last: { port: number; maxRssKb: number } | undefined;
			const state = () => {
				try {
					last = JSON.parse(readFileSync(stateFile, "utf8"));
				} catch {
					// partial write: keep the previous reading
				}
				return last;
			};
			await waitFor("gateway child", async () => state() !== undefined, { timeoutMs: 60_000, proc });
			return { proc, state };
		};
		const main = await startChild("main");
		stops.push(() => main.proc.stop(30_000));
		const turbofan = flags["no-tier-compare"] ? undefined : await startChild("turbofan");
		if (turbofan) stops.push(() => turbofan.proc.stop(30_000));
		const state = main.state;

		const targets = {
			direct: { port: pg.port, db: pg.database, user: pg.superuser, password: pg.password, sslmode: "verify-full" },
			pgbouncer: { port: bport, db: "bench-db", user: pg.superuser, password: pg.password, sslmode: "require" },
			gateway: { port: state()!.port, db: "bench-db", user: "bench", password: token, sslmode: "verify-full" },
		} as Record<"direct" | "pgbouncer" | "gateway" | "turbofan", { port: number; db: string; user: string; password: string; sslmode: string }>;
		if (turbofan) targets.turbofan = { ...targets.gateway, port: turbofan.state()!.port };
		else delete (targets as Partial<typeof targets>).turbofan;
		type Target = (typeof targets)["direct"];
		const env = (t: Target) => ({
			...process.env,
			PGHOST: "localhost",
			PGPORT: String(t.port),
			PGDATABASE: t.db,
			PGUSER: t.user,
			PGPASSWORD: t.password,
			PGSSLMODE: t.sslmode,
			PGSSLROOTCERT: pg.caFile,
		});
		const pgbench = async (t: Target, args: string[]): Promise<number> => {
			const out = await run(PGBENCH, ["-n", "-S", "-T", String(SECONDS), ...args], { env: env(t) });
			const m = /tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing|including connections establishing|including reconnection times)\)/.exec(out.stdout);
			if (out.code !== 0 || !m) throw new Error(`pgbench ${args.join(" ")} failed: ${out.stderr}\n${out.stdout}`);
			return Number(m[1]);
		};
		const matrix = async (label: string, args: string[], better: Ratio["better"] = "higher", target?: string) => {
			const tps: Record<string, number[]> = Object.fromEntries(Object.keys(targets).map((k) => [k, []]));
			// Interleaved so machine noise hits every path alike.
			for (let r = 0; r < RUNS; r++) for (const [name, t] of Object.entries(targets)) tps[name]!.push(await pgbench(t, args));
			const m = Object.fromEntries(Object.entries(tps).map(([k, v]) => [k, median(v)])) as Record<string, number>;
			raw[label] = { runs: tps, median: m };
			log(`${label}: ${Object.entries(m).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(", ")} tps`);
			ratios.push({ group: "postgres", name: `${label}: gateway / pgbouncer`, ratio: m.gateway! / m.pgbouncer!, better, detail: `${m.gateway!.toFixed(0)} / ${m.pgbouncer!.toFixed(0)} tps`, ...(target ? { target } : {}) });
			ratios.push({ group: "postgres", name: `${label}: gateway / direct`, ratio: m.gateway! / m.direct!, better, detail: `${m.gateway!.toFixed(0)} / ${m.direct!.toFixed(0)} tps` });
			ratios.push({ group: "postgres", name: `${label}: pgbouncer / direct`, ratio: m.pgbouncer! / m.direct!, better, detail: `${m.pgbouncer!.toFixed(0)} / ${m.direct!.toFixed(0)} tps` });
			if (m.turbofan !== undefined) {
				ratios.push({ group: "postgres", name: `${label}: shipped liftoff / default WASM tier`, ratio: m.gateway! / m.turbofan, better, detail: `${m.gateway!.toFixed(0)} / ${m.turbofan.toFixed(0)} tps` });
			}
		};
		for (const mode of ["simple", "prepared"]) {
			for (const c of CLIENTS) {
				await matrix(`pgbench -S ${mode} ${c}c`, ["-M", mode, "-c", String(c), "-j", String(Math.min(c, 2))], "higher", c === 8 ? ">= 0.85x pgbouncer" : undefined);
			}
		}
		await matrix("connect per txn (-C) 8c", ["-C", "-c", "8", "-j", "2"]);
		if (turbofan) {
			const g = state()!.maxRssKb;
			const t = turbofan.state()!.maxRssKb;
			raw["peak rss after pgbench"] = { gatewayKb: g, defaultTierKb: t };
			ratios.push({ group: "postgres", name: "gateway peak RSS after pgbench: liftoff / default WASM tier", ratio: g / t, better: "lower", detail: `${(g / 1024).toFixed(0)} / ${(t / 1024).toFixed(0)} MiB` });
		}

		// Large result with two masked columns, streamed by a client that keeps nothing.
		const stream = (t: Target): Promise<number> =>
			streamRows(
				{ host: "127.0.0.1", port: t.port, database: t.db, user: t.user, password: t.password, sslmode: "verify-full", caPem: pg.caPem, serverName: "localhost" },
				BIG_SELECT,
				ROWS,
			);
		const rssBefore = state()!.maxRssKb;
		const large: Record<string, number[]> = { direct: [], gateway: [] };
		for (let r = 0; r < Math.min(RUNS, 3); r++) for (const name of ["direct", "gateway"] as const) large[name]!.push(await stream(targets[name]));
		await new Promise((r) => setTimeout(r, 500));
		const rssAfter = state()!.maxRssKb;
		const ld = median(large.direct!);
		const lg = median(large.gateway!);
		raw["large select"] = { rows: ROWS, runs: large, gatewayPeakRssKb: { before: rssBefore, after: rssAfter } };
		log(`large select: direct ${ld.toFixed(0)} rows/s, gateway ${lg.toFixed(0)} rows/s, gateway peak RSS ${(rssAfter / 1024).toFixed(0)} MiB`);
		ratios.push({
			group: "postgres",
			name: `SELECT ${ROWS} rows, 2 masked cols: gateway / direct`,
			ratio: lg / ld,
			better: "higher",
			detail: `${lg.toFixed(0)} / ${ld.toFixed(0)} rows/s; gateway peak RSS ${(rssBefore / 1024).toFixed(0)} → ${(rssAfter / 1024).toFixed(0)} MiB`,
			target: ">= 0.7x direct, flat memory",
		});
		ratios.push({
			group: "postgres",
			name: `gateway peak RSS during ${ROWS}-row SELECT / before`,
			ratio: rssAfter / rssBefore,
			better: "lower",
			detail: `${(rssAfter / 1024).toFixed(0)} / ${(rssBefore / 1024).toFixed(0)} MiB`,
		});
		if (flags["cpu-prof"]) {
			// A separate, profiled gateway process for the hot path only: pgbench simple, prepared, and the large SELECT.
			log("profiling the gateway's PostgreSQL hot path (--cpu-prof)...");
			const prof = await startChild("prof");
			const t = { ...targets.gateway, port: prof.state()!.port };
			await pgbench(t, ["-M", "simple", "-c", "8", "-j", "2"]);
			await pgbench(t, ["-M", "prepared", "-c", "8", "-j", "2"]);
			await stream(t);
			await prof.proc.stop(60_000);
			summariseProfile(profDir);
		}
	} finally {
		for (const s of stops.reverse()) await s().catch((e: Error) => log(`stop: ${e.message}`));
		await pg.stop();
	}
}

/** Top self-time frames of the newest .cpuprofile (the gateway child's). */
function summariseProfile(dir: string): void {
	const files = existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".cpuprofile")).sort() : [];
	const file = files.at(-1);
	if (!file) {
		log("no CPU profile written");
		return;
	}
	const prof = JSON.parse(readFileSync(join(dir, file), "utf8")) as {
		nodes: { id: number; callFrame: { functionName: string; url: string; lineNumber: number } }[];
		samples: number[];
		timeDeltas: number[];
	};
	const byId = new Map(prof.nodes.map((n) => [n.id, n]));
	const self = new Map<string, number>();
	let total = 0;
	let idle = 0;
	for (let i = 0; i < prof.samples.length; i++) {
		const n = byId.get(prof.samples[i]!);
		const dt = prof.timeDeltas[i] ?? 0;
		if (!n) continue;
		if (n.callFrame.functionName === "(idle)") {
			idle += dt;
			continue;
		}
		total += dt;
		const cf = n.callFrame;
		const key = `${cf.functionName || "(anonymous)"} ${cf.url.replace(/^.*\/work\/main\//, "").replace(/^file:\/\//, "")}:${cf.lineNumber + 1}`;
		self.set(key, (self.get(key) ?? 0) + dt);
	}
	const top = [...self.entries()].sort((a, b) => b[1] - a[1]).slice(0, 25);
	console.log(`\nCPU profile of the gateway (${file}): busy ${((total / (total + idle)) * 100).toFixed(0)}% of the profiled time; top self time (share of busy time):`);
	for (const [k, v] of top) console.log(`${((v / total) * 100).toFixed(1).padStart(5)}%  ${k}`);
	raw["cpu profile"] = { file, top: top.map(([k, v]) => ({ frame: k, selfPercent: Number(((v / total) * 100).toFixed(2)) })) };
}

// ------------------------------------------------------------------------------------------------
// Other benches, as child processes

async function childBench(name: string, script: string, args: string[], extract: (out: string) => Ratio[]): Promise<void> {
	log(`running bench/${script} ${args.join(" ")}...`);
	const r = await run(NODE, ["--import", "tsx", join(import.meta.dirname, script), ...args], { timeoutMs: 3_600_000 });
	raw[name] = { args, code: r.code, stdout: r.stdout };
	if (r.code !== 0) {
		log(`bench/${script} failed (exit ${r.code}); its stderr tail:\n${r.stderr.split("\n").slice(-15).join("\n")}`);
		ratios.push({ group: name, name: `bench/${script} failed`, ratio: Number.NaN, better: "higher", detail: `exit ${r.code}` });
		return;
	}
	const got = extract(r.stdout);
	if (got.length === 0) log(`bench/${script}: no ratio found in its output:\n${r.stdout}`);
	ratios.push(...got);
}

const num = (s: string | undefined) => (s === undefined ? Number.NaN : Number(s));

async function otherBenches(): Promise<void> {
	if (!SKIP.has("recording")) {
		await childBench("recording", "recording-pgbench.ts", ["--seconds", String(SECONDS), "--runs", String(RUNS)], (out) => {
			const list: Ratio[] = [];
			const tps = /\| TPS \(median\) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)/.exec(out) ?? /\| on \/ off \| ()()([\d.]+)/.exec(out);
			if (tps) list.push({ group: "recording", name: "pgbench -S TPS, recording on / off", ratio: num(tps[3]), better: "higher", detail: tps[1] ? `${tps[2]} / ${tps[1]} tps` : "alternating runs", target: ">= 0.95" });
			const cpu = /\| gateway CPU µs per transaction \(median\) \| ([\d.]+) \| ([\d.]+) \| ([\d.]+)/.exec(out);
			if (cpu) list.push({ group: "recording", name: "gateway CPU per transaction, recording on / off", ratio: num(cpu[3]), better: "lower", detail: `${cpu[2]} / ${cpu[1]} µs` });
			return list;
		});
	}
	if (!SKIP.has("ssh")) {
		await childBench("ssh", "ssh.ts", ["--mib", FULL ? "1024" : "128", "--runs", String(RUNS)], (out) => {
			const list: Ratio[] = [];
			const m = /ssh → gateway → sshd\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)/.exec(out);
			if (m) list.push({ group: "ssh", name: "SSH stream throughput: gateway / direct", ratio: num(m[2]), better: "higher", detail: `${m[1]} MiB/s through the gateway`, target: ">= 0.8x" });
			// The floor: a bare ssh2 relay (bench/ssh-relay.ts) in the same runs.
			const r = /ssh → bare ssh2 relay → sshd\s+\S+\s+\S+\s+([\d.]+)\s+([\d.]+)/.exec(out);
			if (r) list.push({ group: "ssh", name: "SSH stream throughput: bare ssh2 relay / direct (floor)", ratio: num(r[2]), better: "higher", detail: `${r[1]} MiB/s through the relay` });
			return list;
		});
	}
	if (!SKIP.has("kube")) {
		await childBench("kube", "kube.ts", ["--requests", FULL ? "300" : "100", "--kubectl", FULL ? "15" : "5"], (out) => {
			const list: Ratio[] = [];
			const ka = /GET pods \(keep-alive\)\s+gateway\s+\d+\s+([\d.]+)\s+[\d.]+\s+(-?[\d.]+)\s+([\d.]+)/.exec(out);
			if (ka) list.push({ group: "kube", name: "kube GET pods latency (keep-alive): gateway / direct", ratio: num(ka[3]), better: "lower", detail: `median ${ka[1]} ms, +${ka[2]} ms`, target: "< 2 ms added" });
			const kc = /kubectl get pods\s+gateway\s+\d+\s+([\d.]+)\s+[\d.]+\s+(-?[\d.]+)\s+([\d.]+)/.exec(out);
			if (kc) list.push({ group: "kube", name: "kubectl get pods latency: gateway / direct", ratio: num(kc[3]), better: "lower", detail: `median ${kc[1]} ms, +${kc[2]} ms` });
			return list;
		});
	}
	if (!SKIP.has("operator")) {
		await childBench("operator", "operator.ts", ["--runs", FULL ? "5" : "2"], (out) => {
			const list: Ratio[] = [];
			for (const line of out.split("\n")) {
				const m = /^(.{48})\s+(\d+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s*$/.exec(line);
				if (m) list.push({ group: "operator", name: `${m[1]!.trim()}: median / target`, ratio: num(m[6]), better: "lower", detail: `median ${m[3]} s, target ${m[5]} s` });
			}
			return list;
		});
	}
}

// ------------------------------------------------------------------------------------------------
// Output

function table(): string {
	const rows = [["group", "measurement", "ratio", "detail", "target"], ...ratios.map((r) => [r.group, r.name, Number.isNaN(r.ratio) ? "n/a" : `${r.ratio.toFixed(2)}x`, r.detail, r.target ?? ""])];
	const w = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
	const line = (r: string[]) => `| ${r.map((v, c) => v.padEnd(w[c]!)).join(" | ")} |`;
	return [line(rows[0]!), `|${w.map((n) => "-".repeat(n + 2)).join("|")}|`, ...rows.slice(1).map(line)].join("\n");
}

function escapeXml(s: string): string {
	return s.replace(/[<>&"']/g, (c) => ({ "<": "&lt;", ">": "&gt;", "&": "&amp;", '"': "&quot;", "'": "&apos;" })[c]!);
}

/** A horizontal bar chart of the ratios, hand-written SVG (a line at 1.0x). */
function svg(title: string): string {
	const shown = ratios.filter((r) => Number.isFinite(r.ratio));
	const rowH = 22;
	const left = 430;
	const barW = 360;
	const max = Math.max(1.5, ...shown.map((r) => r.ratio)) * 1.05;
	const x = (v: number) => left + (v / max) * barW;
	const h = 60 + shown.length * rowH + 30;
	const parts: string[] = [
		`<svg xmlns="http://www.w3.org/2000/svg" width="${left + barW + 140}" height="${h}" font-family="sans-serif" font-size="12">`,
		`<rect width="100%" height="100%" fill="#fff"/>`,
		`<text x="10" y="22" font-size="15" font-weight="bold">${escapeXml(title)}</text>`,
		`<text x="10" y="40" fill="#555">ratios to a baseline from the same run (medians); green: better-is-higher, blue: better-is-lower</text>`,
	];
	shown.forEach((r, i) => {
		const y = 55 + i * rowH;
		const colour = r.better === "higher" ? "#2e7d32" : "#1565c0";
		parts.push(`<text x="${left - 8}" y="${y + 14}" text-anchor="end">${escapeXml(`${r.group}: ${r.name}`.slice(0, 70))}</text>`);
		parts.push(`<rect x="${left}" y="${y + 3}" width="${Math.max(1, x(r.ratio) - left).toFixed(1)}" height="${rowH - 8}" fill="${colour}" opacity="0.8"/>`);
		parts.push(`<text x="${(x(r.ratio) + 5).toFixed(1)}" y="${y + 14}">${r.ratio.toFixed(2)}x</text>`);
	});
	const one = x(1);
	parts.push(`<line x1="${one.toFixed(1)}" y1="50" x2="${one.toFixed(1)}" y2="${h - 25}" stroke="#c62828" stroke-dasharray="4 3"/>`);
	parts.push(`<text x="${one.toFixed(1)}" y="${h - 10}" text-anchor="middle" fill="#c62828">1.0x</text>`);
	parts.push("</svg>");
	return `${parts.join("\n")}\n`;
}

const started = new Date();
log(`mode ${FULL ? "full" : "quick"}: ${SECONDS}s x ${RUNS} runs, clients ${CLIENTS.join("/")}, ${ROWS} rows; skipping ${[...SKIP].join(", ") || "nothing"}`);
if (!SKIP.has("pg")) await pgBenches();
await otherBenches();
const machine = {
	cpus: cpus().length,
	cpuModel: cpus()[0]?.model ?? "unknown",
	memoryGiB: Number((totalmem() / 2 ** 30).toFixed(1)),
	node: process.version,
	platform: `${process.platform} ${process.arch}`,
};
const stamp = started.toISOString().replace(/[:.]/g, "-");
mkdirSync(RESULTS, { recursive: true });
const doc = { started: started.toISOString(), finished: new Date().toISOString(), mode: FULL ? "full" : "quick", settings: { seconds: SECONDS, runs: RUNS, rows: ROWS, clients: CLIENTS }, machine, ratios, raw };
writeFileSync(join(RESULTS, `${stamp}.json`), `${JSON.stringify(doc, null, 2)}\n`);
writeFileSync(join(RESULTS, "latest.json"), `${JSON.stringify(doc, null, 2)}\n`);
const chart = svg(`Drawbridge benchmarks (${doc.mode}, ${started.toISOString().slice(0, 16)}Z, ${machine.cpus} cores)`);
writeFileSync(join(RESULTS, `${stamp}.svg`), chart);
writeFileSync(join(RESULTS, "latest.svg"), chart);
console.log(`\nDrawbridge benchmarks — ${doc.mode} mode, ${machine.cpus}x ${machine.cpuModel}, ${machine.memoryGiB} GiB, node ${machine.node}`);
console.log(table());
console.log(`\nwritten: bench/results/${stamp}.json, bench/results/${stamp}.svg (and latest.*)`);
