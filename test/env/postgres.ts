// A real PostgreSQL 15 cluster for tests: initdb in a temp dir, TLS with a throwaway CA,
// scram-sha-256 over TCP (TLS only unless `plaintext`), trust over the private unix socket,
// a seeded sample database. See test/env/README.md.
import { appendFileSync, chmodSync, chownSync, mkdirSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import {
	type ManagedProcess as ManagedProcessT,
	ManagedProcess,
	type RunAs,
	type RunOptions,
	type RunResult,
	currentUser,
	freePort,
	isRoot,
	lookupUser,
	makeTempDir,
	removeTempDir,
	run,
	runOk,
	trackTempDir,
	waitFor,
} from "./process.ts";
import { seedSql } from "./seed.ts";
import { type TestCa, createCa, issueCert } from "./tls.ts";

export const PG_BIN = "/usr/lib/postgresql/15/bin";
export const PSQL = "/usr/bin/psql";

export interface PostgresOptions {
	/** Seeded database name. Default "shop". */
	database?: string;
	/** Superuser role name. Default "postgres". */
	superuser?: string;
	/** Superuser password. Default "drawbridge-test-superuser". */
	password?: string;
	/** Create and fill the sample schema (customers, orders, views). Default true. */
	seed?: boolean;
	/** Also accept scram-sha-256 over plain TCP (default: TLS only, plaintext is rejected). */
	plaintext?: boolean;
	/**
	 * Extra pg_hba.conf lines placed before the defaults (first match wins), e.g.
	 * "hostssl all certuser 127.0.0.1/32 cert" for client-certificate auth (the server's ssl_ca_file is
	 * the test CA: issue client certs with issueCert(handle.ca, { cn: "certuser", usage: "client" })).
	 */
	hba?: string[];
	/** Extra postgresql.conf settings. */
	settings?: Record<string, string | number | boolean>;
}

export interface QueryOptions {
	database?: string;
	user?: string;
	password?: string;
}

export interface RoleOptions {
	password?: string;
	login?: boolean;
	superuser?: boolean;
	/** e.g. "VALID UNTIL '2030-01-01'" or "CONNECTION LIMIT 3": appended verbatim. */
	extra?: string;
	/** GRANT statements run in the seeded database after creating the role; "$role" is replaced. */
	grants?: string[];
}

export interface PostgresHandle {
	host: "127.0.0.1";
	port: number;
	/** The seeded database ("shop" by default). */
	database: string;
	superuser: string;
	password: string;
	/** PEM of the test CA that signed the server certificate (CN=localhost, SAN localhost + 127.0.0.1). */
	caPem: string;
	caFile: string;
	/** The CA itself, so tests can issue more certs (e.g. client certs) from it. */
	ca: TestCa;
	/** Directory holding the unix socket (.s.PGSQL.<port>); trust auth there. */
	socketDir: string;
	dir: string;
	/** libpq URL with sslmode=verify-full and sslrootcert; defaults to the superuser and seeded db. */
	connectionString(opts?: QueryOptions & { sslmode?: string }): string;
	/** node-postgres ClientConfig over TLS (verify-full against the test CA). */
	clientConfig(opts?: QueryOptions): pg.ClientConfig;
	/** A connected node-postgres client (caller ends it). */
	connect(opts?: QueryOptions): Promise<pg.Client>;
	/** One query on a fresh TLS connection. */
	query<R extends pg.QueryResultRow = pg.QueryResultRow>(
		sql: string,
		params?: unknown[],
		opts?: QueryOptions,
	): Promise<pg.QueryResult<R>>;
	/** Runs /usr/bin/psql over TLS (verify-full) as the superuser unless PGUSER/PGPASSWORD given in env. */
	psql(args: string[], opts?: RunOptions & QueryOptions): Promise<RunResult>;
	createRole(name: string, opts?: RoleOptions): Promise<void>;
	restart(): Promise<void>;
	stop(): Promise<void>;
	logs(): string;
}

export async function startPostgres(options: PostgresOptions = {}): Promise<PostgresHandle> {
	const database = options.database ?? "shop";
	const superuser = options.superuser ?? "postgres";
	const password = options.password ?? "drawbridge-test-superuser";
	const owner: RunAs = isRoot ? lookupUser("postgres") : currentUser();
	const dir = makeTempDir("pg", owner);
	trackTempDir(dir);
	const data = join(dir, "data");
	const tlsDir = join(dir, "tls");
	const port = await freePort();
	let proc: ManagedProcessT | undefined;
	let allLogs = "";

	try {
		mkdirSync(tlsDir);
		const ca = await createCa(tlsDir, "Drawbridge PostgreSQL test CA");
		const server = await issueCert(ca, { cn: "localhost", name: "server" });
		const pwfile = join(dir, "pwfile");
		writeFileSync(pwfile, `${password}\n`, { mode: 0o600 });
		if (isRoot) {
			for (const f of readdirSync(tlsDir)) chownSync(join(tlsDir, f), owner.uid, owner.gid);
			chownSync(tlsDir, owner.uid, owner.gid);
			chownSync(pwfile, owner.uid, owner.gid);
		}
		chmodSync(server.keyFile, 0o600);

		const env = { ...process.env, LC_ALL: "C.UTF-8", LANG: "C.UTF-8" };
		await runOk(
			join(PG_BIN, "initdb"),
			["-D", data, "-U", superuser, `--pwfile=${pwfile}`, "-E", "UTF8", "--no-locale", "-N", "--auth-local=trust", "--auth-host=scram-sha-256"],
			{ runAs: owner, env, cwd: dir },
		);
		writeFileSync(
			join(data, "pg_hba.conf"),
			[
				"# Drawbridge test cluster (test/env/postgres.ts)",
				...(options.hba ?? []),
				"local   all all                trust",
				"hostssl all all 127.0.0.1/32   scram-sha-256",
				options.plaintext ? "hostnossl all all 127.0.0.1/32 scram-sha-256" : "hostnossl all all 0.0.0.0/0 reject",
				"",
			].join("\n"),
		);
		const settings: Record<string, string | number | boolean> = {
			listen_addresses: "127.0.0.1",
			port,
			unix_socket_directories: dir,
			ssl: true,
			ssl_cert_file: server.certFile,
			ssl_key_file: server.keyFile,
			ssl_ca_file: ca.certFile,
			password_encryption: "scram-sha-256",
			fsync: false,
			synchronous_commit: false,
			full_page_writes: false,
			shared_buffers: "32MB",
			max_connections: 100,
			logging_collector: false,
			log_connections: true,
			log_disconnections: false,
			log_line_prefix: "%m [%p] %q%u@%d ",
			...options.settings,
		};
		appendFileSync(
			join(data, "postgresql.conf"),
			`\n# test/env/postgres.ts\n${Object.entries(settings)
				.map(([k, v]) => `${k} = ${typeof v === "string" ? `'${v.replace(/'/g, "''")}'` : typeof v === "boolean" ? (v ? "on" : "off") : v}`)
				.join("\n")}\n`,
		);
		if (isRoot) {
			chownSync(join(data, "pg_hba.conf"), owner.uid, owner.gid);
		}

		const start = async (): Promise<ManagedProcessT> => {
			const p = new ManagedProcess({
				name: "postgres",
				command: join(PG_BIN, "postgres"),
				args: ["-D", data],
				env,
				cwd: dir,
				runAs: owner,
				stopSignal: "SIGINT", // fast shutdown: rolls back open transactions, closes sessions
				cleanupDir: dir,
			});
			await waitFor(
				`postgres on port ${port}`,
				async () => (await run(join(PG_BIN, "pg_isready"), ["-q", "-h", dir, "-p", String(port)])).code === 0,
				{ proc: p, timeoutMs: 30_000 },
			);
			return p;
		};
		proc = await start();

		const socketPsql = (args: string[], input?: string) =>
			runOk(PSQL, ["-X", "-q", "-v", "ON_ERROR_STOP=1", "-h", dir, "-p", String(port), "-U", superuser, ...args], {
				env,
				...(input !== undefined ? { input } : {}),
			});
		if (options.seed !== false) {
			await socketPsql(["-d", "postgres", "-c", `CREATE DATABASE "${database}"`]);
			await socketPsql(["-d", database], seedSql());
		} else if (database !== "postgres") {
			await socketPsql(["-d", "postgres", "-c", `CREATE DATABASE "${database}"`]);
		}

		const clientConfig = (o: QueryOptions = {}): pg.ClientConfig => ({
			host: "127.0.0.1",
			port,
			database: o.database ?? database,
			user: o.user ?? superuser,
			password: o.password ?? (o.user && o.user !== superuser ? undefined : password),
			ssl: { ca: ca.certPem, rejectUnauthorized: true },
		});
		const connect = async (o: QueryOptions = {}) => {
			const c = new pg.Client(clientConfig(o));
			await c.connect();
			return c;
		};
		const handle: PostgresHandle = {
			host: "127.0.0.1",
			port,
			database,
			superuser,
			password,
			caPem: ca.certPem,
			caFile: ca.certFile,
			ca,
			socketDir: dir,
			dir,
			connectionString(o = {}) {
				const user = encodeURIComponent(o.user ?? superuser);
				const pw = o.password ?? (o.user && o.user !== superuser ? undefined : password);
				const auth = pw !== undefined ? `${user}:${encodeURIComponent(pw)}` : user;
				return `postgresql://${auth}@127.0.0.1:${port}/${encodeURIComponent(o.database ?? database)}?sslmode=${o.sslmode ?? "verify-full"}&sslrootcert=${encodeURIComponent(ca.certFile)}`;
			},
			clientConfig,
			connect,
			async query(sql, params, o) {
				const c = await connect(o);
				try {
					return await c.query(sql, params);
				} finally {
					await c.end();
				}
			},
			psql(args, o = {}) {
				const penv: NodeJS.ProcessEnv = {
					...process.env,
					PGHOST: "127.0.0.1",
					PGPORT: String(port),
					PGDATABASE: o.database ?? database,
					PGUSER: o.user ?? superuser,
					PGSSLMODE: "verify-full",
					PGSSLROOTCERT: ca.certFile,
					...o.env,
				};
				const pw = o.password ?? (o.user && o.user !== superuser ? undefined : password);
				if (o.env?.PGPASSWORD === undefined) {
					if (pw !== undefined) penv.PGPASSWORD = pw;
					else delete penv.PGPASSWORD; // never an inherited password for another role
				}
				return run(PSQL, ["-X", ...args], { ...o, env: penv });
			},
			async createRole(name, o = {}) {
				const ident = `"${name.replace(/"/g, '""')}"`;
				const parts = [o.login === false ? "NOLOGIN" : "LOGIN", o.superuser ? "SUPERUSER" : "NOSUPERUSER"];
				if (o.password !== undefined) parts.push(`PASSWORD '${o.password.replace(/'/g, "''")}'`);
				if (o.extra) parts.push(o.extra);
				const c = await connect();
				try {
					await c.query(`CREATE ROLE ${ident} ${parts.join(" ")}`);
					for (const g of o.grants ?? []) await c.query(g.replaceAll("$role", ident));
				} finally {
					await c.end();
				}
			},
			async restart() {
				if (proc) {
					allLogs += proc.logs.text();
					await proc.stop();
				}
				proc = await start();
			},
			async stop() {
				if (proc) {
					allLogs += proc.logs.text();
					await proc.stop();
					proc = undefined;
				}
				removeTempDir(dir);
			},
			logs: () => allLogs + (proc?.logs.text() ?? ""),
		};
		return handle;
	} catch (err) {
		const log = allLogs + (proc?.logs.text() ?? "");
		await proc?.stop();
		removeTempDir(dir);
		if (log && err instanceof Error && !err.message.includes(log.slice(-200))) err.message += `\n--- postgres log ---\n${log}`;
		throw err;
	}
}
