/**
 * The PostgreSQL side shared by the benches (run.ts, pg-cpu.ts, the recording benches): pgbench's
 * tables, the `big` table of the large-result bench, the gateway child's config with a token it
 * accepts, and the start of the recording benches' gateway child.
 */
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { issueCert, type PostgresHandle, run } from "../test/env/index.ts";
import { ManagedProcess, waitFor } from "../test/env/process.ts";
import type { ChildConfig } from "./pg-gateway-child.ts";

export const PGBENCH = "/usr/lib/postgresql/15/bin/pgbench";
/** The large-result statement: `email` and `card` are masked by the bench bundle (redact, partial). */
export const BIG_SELECT = "SELECT id, email, card, note FROM big";

/** pgbench -i (scale 1) and, when rows > 0, `big` with that many rows. */
export async function prepareBenchData(pg: PostgresHandle, rows: number): Promise<void> {
	const init = await run(PGBENCH, ["-i", "-s", "1", "-q", pg.connectionString()], {});
	if (init.code !== 0) throw new Error(`pgbench -i: ${init.stderr}`);
	if (rows > 0) {
		await pg.query(
			`CREATE TABLE big AS SELECT g AS id, 'user' || g || '@example.com' AS email, '4000' || lpad(g::text, 12, '0') AS card, 'note ' || g AS note FROM generate_series(1, ${rows}) g`,
		);
	}
}

/** Config for bench/pg-gateway-child.ts in front of `pg`, and a 6 h token for user `bench`. */
export async function gatewayChildConfig(pg: PostgresHandle, work: string, kid: string): Promise<{ cfg: ChildConfig; token: string }> {
	const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
	const gcert = await issueCert(pg.ca, { cn: "localhost", name: "bench-gateway" });
	const cfg: ChildConfig = {
		stateFile: join(work, "gateway-state.json"),
		workDir: work,
		upstream: { host: pg.host, port: pg.port, database: pg.database, user: pg.superuser, password: pg.password, caPem: pg.caPem },
		tls: { certPem: gcert.certPem, keyPem: gcert.keyPem },
		jwk: { ...(await exportJWK(publicKey)), kid, alg: "EdDSA" },
		issuer: "https://bench.drawbridge.test",
		audience: "drawbridge-bench",
		connection: "bench-db",
		user: "bench",
	};
	const token = await new SignJWT({}).setProtectedHeader({ alg: "EdDSA", kid }).setIssuer(cfg.issuer).setAudience(cfg.audience).setSubject("bench").setIssuedAt().setExpirationTime("6h").sign(privateKey);
	return { cfg, token };
}

/**
 * Starts bench/recording-pg-child.ts on the config in `cfgFile` (`cfg` is its content) in recording
 * `mode` (on, off, serialize or switch) under `nodeFlags`, and waits until it has written its state
 * file (removed first: a previous child's never counts). For recording-pgbench.ts and recording-perf.ts.
 */
export async function startRecordingChild(cfg: ChildConfig, cfgFile: string, mode: string, nodeFlags: string[]): Promise<ManagedProcess> {
	rmSync(cfg.stateFile, { force: true });
	const gw = new ManagedProcess({
		name: `gateway-${mode}`,
		command: process.execPath,
		args: [...nodeFlags, "--import", "tsx", join(import.meta.dirname, "recording-pg-child.ts"), cfgFile, mode],
	});
	await waitFor("gateway child", async () => existsSync(cfg.stateFile), { timeoutMs: 60_000, proc: gw });
	return gw;
}
