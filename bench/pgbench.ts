/**
 * PostgreSQL data-path benchmark: ratios, never a timed test. Prints a table.
 *
 *   ./node_modules/.bin/node --import tsx bench/pgbench.ts [--seconds 10] [--runs 3] [--rows 2000000] [--turbofan]
 *
 * 1. pgbench -S (select-only) with 8 clients, simple and prepared protocol, against PostgreSQL
 *    directly, through PgBouncer (session pooling) and through the Drawbridge gateway with
 *    guardrails, masking (rules on other tables) and recording on. Every path uses TLS on every hop.
 *    Median TPS of `--runs` runs; ratio gateway/PgBouncer and gateway/direct.
 * 2. A SELECT of `--rows` rows with two masked columns, streamed by a client that keeps nothing:
 *    rows/s direct vs gateway, and the gateway's peak RSS (its own process).
 */
import { chmodSync, chownSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { ServerCode } from "../gateway/postgres/protocol.ts";
import { clientMessages } from "../gateway/postgres/serializer.ts";
import { ServerParser } from "../gateway/postgres/server-parser.ts";
import { connectUpstream, type UpstreamTarget } from "../gateway/postgres/upstream.ts";
import { issueCert, run, startPostgres } from "../test/env/index.ts";
import { freePort, isRoot, lookupUser, makeTempDir, ManagedProcess, waitFor } from "../test/env/process.ts";
import type { ChildConfig } from "./pg-gateway-child.ts";

const arg = (name: string, def: number) => {
	const i = process.argv.indexOf(`--${name}`);
	return i > 0 ? Number(process.argv[i + 1]) : def;
};
const SECONDS = arg("seconds", 10);
const RUNS = arg("runs", 3);
const ROWS = arg("rows", 2_000_000);
const CLIENTS = 8;
const PGBENCH = "/usr/lib/postgresql/15/bin/pgbench";
const ISSUER = "https://bench.drawbridge.test";
const AUDIENCE = "drawbridge-bench";
const CONNECTION = "bench-db";

const median = (xs: number[]) => {
	const s = [...xs].sort((a, b) => a - b);
	return s[Math.floor(s.length / 2)] ?? Number.NaN;
};

console.error("starting PostgreSQL...");
const pg = await startPostgres({ settings: { max_connections: 60 } });
const work = makeTempDir("pgbench");
try {
	await runOkPgbench(["-i", "-s", "1", "-q", pg.connectionString()]);
	console.error(`creating ${ROWS} rows...`);
	await pg.query("drop table if exists big");
	await pg.query(
		`create table big as select g as id, 'user' || g || '@example.com' as email, '4000' || lpad(g::text, 12, '0') as card, 'note ' || g as note from generate_series(1, ${ROWS}) g`,
	);

	// PgBouncer (session pooling, TLS both sides, SCRAM)
	const bouncerDir = makeTempDir("pgbouncer", isRoot ? lookupUser("postgres") : undefined);
	const bouncerPort = await freePort();
	const bcert = await issueCert(pg.ca, { cn: "localhost", name: "pgbouncer" });
	const files = { ini: join(bouncerDir, "pgbouncer.ini"), users: join(bouncerDir, "users.txt"), key: join(bouncerDir, "key.pem"), cert: join(bouncerDir, "cert.pem"), ca: join(bouncerDir, "ca.pem") };
	writeFileSync(files.users, `"${pg.superuser}" "${pg.password}"\n`);
	writeFileSync(files.key, bcert.keyPem);
	writeFileSync(files.cert, bcert.certPem);
	writeFileSync(files.ca, pg.caPem);
	writeFileSync(
		files.ini,
		[
			"[databases]",
			`${CONNECTION} = host=127.0.0.1 port=${pg.port} dbname=${pg.database} user=${pg.superuser} password=${pg.password}`,
			"[pgbouncer]",
			"listen_addr = 127.0.0.1",
			`listen_port = ${bouncerPort}`,
			"auth_type = scram-sha-256",
			`auth_file = ${files.users}`,
			"pool_mode = session",
			"max_client_conn = 100",
			"default_pool_size = 20",
			"client_tls_sslmode = require",
			`client_tls_key_file = ${files.key}`,
			`client_tls_cert_file = ${files.cert}`,
			"server_tls_sslmode = verify-full",
			`server_tls_ca_file = ${files.ca}`,
			`logfile = ${join(bouncerDir, "pgbouncer.log")}`,
			`pidfile = ${join(bouncerDir, "pgbouncer.pid")}`,
			"",
		].join("\n"),
	);
	if (isRoot) {
		const u = lookupUser("postgres");
		for (const f of Object.values(files)) chownSync(f, u.uid, u.gid);
	}
	chmodSync(files.key, 0o600);
	const bouncer = new ManagedProcess({ name: "pgbouncer", command: "/usr/sbin/pgbouncer", args: [files.ini], ...(isRoot ? { runAs: lookupUser("postgres") } : {}) });

	// Gateway in its own process
	const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
	const gcert = await issueCert(pg.ca, { cn: "localhost", name: "gateway-bench" });
	const childCfg: ChildConfig = {
		stateFile: join(work, "gateway-state.json"),
		workDir: work,
		upstream: { host: pg.host, port: pg.port, database: pg.database, user: pg.superuser, password: pg.password, caPem: pg.caPem },
		tls: { certPem: gcert.certPem, keyPem: gcert.keyPem },
		jwk: { ...(await exportJWK(publicKey)), kid: "b1", alg: "EdDSA" },
		issuer: ISSUER,
		audience: AUDIENCE,
		connection: CONNECTION,
		user: "bench",
	};
	const cfgFile = join(work, "gateway.json");
	writeFileSync(cfgFile, JSON.stringify(childCfg));
	const gateway = new ManagedProcess({
		name: "gateway",
		command: process.execPath,
		// --liftoff-only: V8 otherwise recompiles libpg-query's WASM parser with TurboFan on first use,
		// a transient ~500 MiB RSS peak for no measurable parse speed-up (see gateway/postgres/README.md).
		args: [...(process.argv.includes("--turbofan") ? [] : ["--liftoff-only"]), "--import", "tsx", join(import.meta.dirname, "pg-gateway-child.ts"), cfgFile],
	});
	const state = () => {
		try {
			return JSON.parse(readFileSync(childCfg.stateFile, "utf8")) as { port: number; maxRssKb: number };
		} catch {
			return undefined;
		}
	};
	await waitFor("gateway child", async () => state() !== undefined, { timeoutMs: 60_000, proc: gateway });
	const gatewayPort = state()!.port;
	const token = await new SignJWT({})
		.setProtectedHeader({ alg: "EdDSA", kid: "b1" })
		.setIssuer(ISSUER)
		.setAudience(AUDIENCE)
		.setSubject("bench")
		.setIssuedAt()
		.setExpirationTime("4h")
		.sign(privateKey);

	const targets = {
		direct: { port: pg.port, db: pg.database, user: pg.superuser, password: pg.password },
		pgbouncer: { port: bouncerPort, db: CONNECTION, user: pg.superuser, password: pg.password },
		gateway: { port: gatewayPort, db: CONNECTION, user: "bench", password: token },
	} as const;
	const envFor = (t: (typeof targets)[keyof typeof targets], sslmode = "verify-full") => ({
		...process.env,
		PGHOST: "localhost",
		PGPORT: String(t.port),
		PGDATABASE: t.db,
		PGUSER: t.user,
		PGPASSWORD: t.password,
		PGSSLMODE: sslmode,
		PGSSLROOTCERT: pg.caFile,
	});

	const results: Record<string, Record<string, number>> = {};
	for (const mode of ["simple", "prepared"]) {
		results[mode] = {};
		for (const [name, t] of Object.entries(targets)) {
			const tps: number[] = [];
			for (let r = 0; r < RUNS; r++) {
				const out = await run(PGBENCH, ["-n", "-S", "-c", String(CLIENTS), "-j", "2", "-T", String(SECONDS), "-M", mode], {
					env: envFor(t, name === "pgbouncer" ? "require" : "verify-full"),
				});
				const m = /tps = ([\d.]+) \((?:without initial connection time|excluding connections establishing)\)/.exec(out.stdout);
				if (out.code !== 0 || !m) throw new Error(`pgbench ${name} ${mode} failed: ${out.stderr}\n${out.stdout}`);
				tps.push(Number(m[1]));
			}
			results[mode]![name] = median(tps);
			console.error(`${mode} ${name}: ${tps.map((x) => x.toFixed(0)).join(", ")} tps`);
		}
	}

	// Large result: stream ROWS rows with two masked columns (email redact, card partial)
	const stream = async (target: UpstreamTarget): Promise<{ rows: number; seconds: number }> => {
		const up = await connectUpstream(target);
		const parser = new ServerParser();
		const started = performance.now();
		let rows = 0;
		await new Promise<void>((resolve, reject) => {
			up.socket.on("data", (c: Buffer) => {
				parser.push(c);
				for (let f = parser.next(); f; f = parser.next()) {
					if (f.code === ServerCode.DataRow) rows++;
					else if (f.code === ServerCode.ErrorResponse) reject(new Error(f.raw.toString("utf8", 5)));
					else if (f.code === ServerCode.ReadyForQuery) resolve();
				}
			});
			up.socket.resume();
			up.socket.write(clientMessages.query("select id, email, card, note from big"));
		});
		const seconds = (performance.now() - started) / 1000;
		up.socket.end(clientMessages.terminate());
		return { rows, seconds };
	};
	const base = { host: "127.0.0.1", sslmode: "verify-full" as const, caPem: pg.caPem, serverName: "localhost" };
	const rssBefore = state()!.maxRssKb;
	const large: Record<string, number> = {};
	for (const name of ["direct", "gateway"] as const) {
		const t = targets[name];
		const xs: number[] = [];
		for (let r = 0; r < Math.max(1, Math.min(RUNS, 2)); r++) {
			const { rows, seconds } = await stream({ ...base, port: t.port, database: t.db, user: t.user, password: t.password });
			if (rows !== ROWS) throw new Error(`${name}: expected ${ROWS} rows, got ${rows}`);
			xs.push(rows / seconds);
		}
		large[name] = median(xs);
		console.error(`large ${name}: ${xs.map((x) => x.toFixed(0)).join(", ")} rows/s`);
	}
	await new Promise((r) => setTimeout(r, 400));
	const rssAfter = state()!.maxRssKb;

	const line = (cols: string[]) => `| ${cols.join(" | ")} |`;
	const out: string[] = [];
	out.push(`pgbench -S, ${CLIENTS} clients, ${SECONDS}s x ${RUNS} runs (median TPS), TLS on every hop`);
	out.push(line(["mode", "direct", "pgbouncer", "gateway", "gateway/pgbouncer", "gateway/direct", "pgbouncer/direct"]));
	out.push(line(["---", "---", "---", "---", "---", "---", "---"]));
	for (const mode of ["simple", "prepared"]) {
		const r = results[mode]!;
		out.push(
			line([
				mode,
				r.direct!.toFixed(0),
				r.pgbouncer!.toFixed(0),
				r.gateway!.toFixed(0),
				(r.gateway! / r.pgbouncer!).toFixed(2),
				(r.gateway! / r.direct!).toFixed(2),
				(r.pgbouncer! / r.direct!).toFixed(2),
			]),
		);
	}
	out.push("");
	out.push(`SELECT of ${ROWS} rows, two masked columns (redact + partial), streamed`);
	out.push(line(["direct rows/s", "gateway rows/s", "gateway/direct", "gateway peak RSS before", "gateway peak RSS after"]));
	out.push(line(["---", "---", "---", "---", "---"]));
	out.push(
		line([
			large.direct!.toFixed(0),
			large.gateway!.toFixed(0),
			(large.gateway! / large.direct!).toFixed(2),
			`${(rssBefore / 1024).toFixed(0)} MiB`,
			`${(rssAfter / 1024).toFixed(0)} MiB`,
		]),
	);
	console.log(out.join("\n"));
	await gateway.stop();
	await bouncer.stop();
} finally {
	await pg.stop();
}

async function runOkPgbench(args: string[]): Promise<void> {
	const r = await run(PGBENCH, args, {});
	if (r.code !== 0) throw new Error(`pgbench ${args.join(" ")}: ${r.stderr}`);
}
