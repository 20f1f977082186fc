/**
 * The embedded target database of `drawbridge dev`: a PostgreSQL cluster from the machine's own
 * server binaries, kept in the dev state directory so it survives restarts. Password auth
 * (scram-sha-256) on loopback TCP, the way a real target is reached; the gateway is its only client.
 *
 * PostgreSQL refuses to run as root: when we are root, the cluster belongs to the `postgres` system
 * user (created by Debian's postgresql-common).
 */
import { spawn, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { chmodSync, chownSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";

export const PG_BIN_CANDIDATES = ["/usr/lib/postgresql/17/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/15/bin"];

export interface EmbeddedPostgres {
	host: "127.0.0.1";
	port: number;
	superuser: "postgres";
	password: string;
	dataDir: string;
	/** Run SQL as the superuser through the private socket; returns unaligned tuples-only output. */
	psql(database: string, sql: string): string;
	stop(): Promise<void>;
}

export class DevPostgresError extends Error {
	override readonly name = "DevPostgresError";
}

function findBin(): string {
	const bin = PG_BIN_CANDIDATES.find((d) => existsSync(join(d, "initdb")));
	if (!bin) {
		throw new DevPostgresError(
			`PostgreSQL server binaries not found (looked in ${PG_BIN_CANDIDATES.join(", ")}). Install them: sudo apt-get install postgresql`,
		);
	}
	return bin;
}

interface Owner {
	uid: number;
	gid: number;
}

function owner(): Owner | undefined {
	if (process.getuid?.() !== 0) return undefined;
	const r = spawnSync("id", ["-u", "postgres"], { encoding: "utf8" });
	const g = spawnSync("id", ["-g", "postgres"], { encoding: "utf8" });
	if (r.status !== 0 || g.status !== 0) {
		throw new DevPostgresError("running as root needs the `postgres` system user (sudo apt-get install postgresql)");
	}
	return { uid: Number(r.stdout.trim()), gid: Number(g.stdout.trim()) };
}

function runAs(cmd: string, args: string[], who: Owner | undefined, input?: string): string {
	const r = spawnSync(cmd, args, {
		encoding: "utf8",
		...(who ? { uid: who.uid, gid: who.gid } : {}),
		...(input !== undefined ? { input } : {}),
		env: { PATH: process.env.PATH ?? "/usr/bin:/bin", LANG: "C.UTF-8" },
	});
	if (r.status !== 0) throw new DevPostgresError(`${cmd} ${args.join(" ")} failed: ${r.stderr || r.stdout}`);
	return r.stdout;
}

/**
 * Start (initialising on first use) the cluster in `stateDir/postgres`, listening on 127.0.0.1:port.
 * `onProgress` gets one line per step.
 */
export async function startEmbeddedPostgres(
	stateDir: string,
	port: number,
	onProgress: (line: string) => void = () => {},
): Promise<EmbeddedPostgres> {
	const bin = findBin();
	const who = owner();
	const root = join(stateDir, "postgres");
	const dataDir = join(root, "data");
	const socketDir = join(root, "run");
	const pwFile = join(root, "superuser-password");
	mkdirSync(socketDir, { recursive: true });
	if (who) {
		// The postgres user must traverse the (root-owned, otherwise private) state directory.
		chmodSync(stateDir, 0o711);
		chownSync(root, who.uid, who.gid);
		chownSync(socketDir, who.uid, who.gid);
	}
	if (!existsSync(join(dataDir, "PG_VERSION"))) {
		onProgress("initialising embedded PostgreSQL cluster");
		const password = randomBytes(18).toString("base64url");
		writeFileSync(pwFile, password, { mode: 0o600 });
		if (who) chownSync(pwFile, who.uid, who.gid);
		runAs(
			join(bin, "initdb"),
			["-D", dataDir, "-U", "postgres", "--auth-local=trust", "--auth-host=scram-sha-256", `--pwfile=${pwFile}`, "-E", "UTF8", "--no-instructions"],
			who,
		);
		writeFileSync(
			join(dataDir, "pg_hba.conf"),
			"# drawbridge dev: trust on the private socket, scram on loopback TCP\nlocal all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
		);
	}
	const password = readFileSync(pwFile, "utf8").trim();
	onProgress(`starting embedded PostgreSQL on 127.0.0.1:${port}`);
	const logFile = join(root, "postgres.log");
	if (who) {
		if (!existsSync(logFile)) writeFileSync(logFile, "");
		chownSync(logFile, who.uid, who.gid);
	}
	// A stale postmaster.pid from a killed run would stop pg_ctl; pg_ctl handles a dead pid itself.
	runAs(
		join(bin, "pg_ctl"),
		[
			"-D",
			dataDir,
			"-l",
			logFile,
			"-w",
			"-t",
			"60",
			"-o",
			`-c listen_addresses=127.0.0.1 -p ${port} -c unix_socket_directories=${socketDir} -c password_encryption=scram-sha-256`,
			"start",
		],
		who,
	);
	const psql = (db: string, sql: string) =>
		runAs("psql", ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", socketDir, "-p", String(port), "-U", "postgres", "-d", db], who, sql);
	return {
		host: "127.0.0.1",
		port,
		superuser: "postgres",
		password,
		dataDir,
		psql,
		async stop() {
			await new Promise<void>((resolve) => {
				const p = spawn(join(bin, "pg_ctl"), ["-D", dataDir, "-m", "fast", "-w", "stop"], {
					stdio: "ignore",
					...(who ? { uid: who.uid, gid: who.gid } : {}),
				});
				p.on("exit", () => resolve());
				p.on("error", () => resolve());
			});
		},
	};
}

/** Create `database` if missing and load `seedSql` into it. Returns true when it was created. */
export function ensureDatabase(pgHandle: EmbeddedPostgres, database: string, seedSql: string): boolean {
	const names = pgHandle.psql("postgres", "SELECT datname FROM pg_database").split("\n").map((l) => l.trim());
	if (names.includes(database)) return false;
	pgHandle.psql("postgres", `CREATE DATABASE "${database.replaceAll('"', '""')}"`);
	pgHandle.psql(database, seedSql);
	return true;
}
