/**
 * PgBouncer (Debian's) as the benches' baseline proxy: session pooling, TLS on both sides
 * (verify-full towards the server), SCRAM, database `bench-db` in front of the cluster's own.
 */
import { chmodSync, chownSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { issueCert, type PostgresHandle } from "../test/env/index.ts";
import { freePort, isRoot, lookupUser, makeTempDir, ManagedProcess } from "../test/env/process.ts";

export const BOUNCER_DATABASE = "bench-db";

export async function startPgBouncer(pg: PostgresHandle): Promise<{ port: number; proc: ManagedProcess }> {
	const runAs = isRoot ? lookupUser("postgres") : undefined;
	const dir = makeTempDir("bench-pgbouncer", runAs);
	const port = await freePort();
	const cert = await issueCert(pg.ca, { cn: "localhost", name: "bench-pgbouncer" });
	const files = { ini: join(dir, "pgbouncer.ini"), users: join(dir, "users.txt"), key: join(dir, "key.pem"), cert: join(dir, "cert.pem"), ca: join(dir, "ca.pem") };
	writeFileSync(files.users, `"${pg.superuser}" "${pg.password}"\n`);
	writeFileSync(files.key, cert.keyPem);
	writeFileSync(files.cert, cert.certPem);
	writeFileSync(files.ca, pg.caPem);
	writeFileSync(
		files.ini,
		[
			"[databases]",
			`${BOUNCER_DATABASE} = host=127.0.0.1 port=${pg.port} dbname=${pg.database} user=${pg.superuser} password=${pg.password}`,
			"[pgbouncer]",
			"listen_addr = 127.0.0.1",
			`listen_port = ${port}`,
			"auth_type = scram-sha-256",
			`auth_file = ${files.users}`,
			"pool_mode = session",
			"max_client_conn = 200",
			"default_pool_size = 40",
			"client_tls_sslmode = require",
			`client_tls_key_file = ${files.key}`,
			`client_tls_cert_file = ${files.cert}`,
			"server_tls_sslmode = verify-full",
			`server_tls_ca_file = ${files.ca}`,
			`logfile = ${join(dir, "pgbouncer.log")}`,
			`pidfile = ${join(dir, "pgbouncer.pid")}`,
			"",
		].join("\n"),
	);
	if (runAs) for (const f of Object.values(files)) chownSync(f, runAs.uid, runAs.gid);
	chmodSync(files.key, 0o600);
	const proc = new ManagedProcess({ name: "pgbouncer", command: "/usr/sbin/pgbouncer", args: [files.ini], ...(runAs ? { runAs } : {}) });
	return { port, proc };
}
