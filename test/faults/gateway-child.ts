/**
 * The gateway's PostgreSQL listener in its own process (bench/pg-gateway-child.ts: guardrails,
 * masking and DiskRecorder on), so memory tests measure the gateway alone, not the clients.
 * Its state file reports port, peak RSS and process.memoryUsage() every 200 ms.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import type { ChildConfig } from "../../bench/pg-gateway-child.ts";
import { issueCert, type PostgresHandle } from "../env/index.ts";
import { makeTempDir, ManagedProcess } from "../env/process.ts";
import { waitFor } from "./fixture.ts";

export const CHILD_CONNECTION = "bench-db";
export const CHILD_USER = "bench";

export interface GatewayChild {
	port: number;
	token(): Promise<string>;
	/** Current RSS of the gateway process, bytes. */
	rss(): number;
	memory(): { rss: number; heapUsed: number; external: number; arrayBuffers: number };
	logs(): string;
	stop(): Promise<void>;
}

export async function startGatewayChild(pg: PostgresHandle): Promise<GatewayChild> {
	const work = makeTempDir("faults-gw");
	const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
	const cert = await issueCert(pg.ca, { cn: "localhost", name: `gateway-child-${Date.now()}` });
	const cfg: ChildConfig = {
		stateFile: join(work, "state.json"),
		workDir: work,
		upstream: { host: pg.host, port: pg.port, database: pg.database, user: pg.superuser, password: pg.password, caPem: pg.caPem },
		tls: { certPem: cert.certPem, keyPem: cert.keyPem },
		jwk: { ...(await exportJWK(publicKey)), kid: "f1", alg: "EdDSA" },
		issuer: "https://faults.drawbridge.test",
		audience: "drawbridge-faults",
		connection: CHILD_CONNECTION,
		user: CHILD_USER,
	};
	const cfgFile = join(work, "gateway.json");
	writeFileSync(cfgFile, JSON.stringify(cfg));
	const proc = new ManagedProcess({
		name: "gateway",
		command: process.execPath,
		args: ["--liftoff-only", "--import", "tsx", join(import.meta.dirname, "../../bench/pg-gateway-child.ts"), cfgFile],
		cleanupDir: work,
	});
	type State = { port: number; memory: { rss: number; heapUsed: number; external: number; arrayBuffers: number } };
	let last: State | undefined;
	// The child rewrites the file every 200 ms (not atomically): keep the last complete read.
	const state = (): State | undefined => {
		try {
			last = JSON.parse(readFileSync(cfg.stateFile, "utf8")) as State;
		} catch {
			// partial write: use the previous reading
		}
		return last;
	};
	await waitFor("gateway child state", () => state() !== undefined, 60_000, 100);
	return {
		port: state()!.port,
		token: () =>
			new SignJWT({})
				.setProtectedHeader({ alg: "EdDSA", kid: "f1" })
				.setIssuer(cfg.issuer)
				.setAudience(cfg.audience)
				.setSubject(CHILD_USER)
				.setIssuedAt()
				.setExpirationTime("2h")
				.sign(privateKey),
		rss: () => state()!.memory.rss,
		memory: () => state()!.memory,
		logs: () => proc.logs.text(),
		stop: () => proc.stop(),
	};
}

/** Sample a value for `ms` (every 200 ms) and return the maximum. */
export async function peakOver(ms: number, sample: () => number): Promise<number> {
	let peak = sample();
	const end = Date.now() + ms;
	while (Date.now() < end) {
		await new Promise((r) => setTimeout(r, 200));
		peak = Math.max(peak, sample());
	}
	return peak;
}
