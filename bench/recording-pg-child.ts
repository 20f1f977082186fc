/**
 * The gateway's PostgreSQL listener in its own process for bench/recording-pgbench.ts, with recording
 * ON (DiskRecorder → spool → directory store) or OFF (a discarding Recorder that exists only as this
 * benchmark's baseline: the gateway itself never runs without recording). Same bundle either way.
 * argv: <config.json> on|off. Writes {port, maxRssKb, cpuMicros} to cfg.stateFile every 100 ms.
 */
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUNDLE_API_VERSION } from "../gateway/config/bundle.ts";
import { sealBundle } from "../gateway/config/canonical.ts";
import { BundleStore } from "../gateway/config/store.ts";
import { startPostgresListener } from "../gateway/postgres/listener.ts";
import type { Recorder, SessionRecorder } from "../gateway/recording/events.ts";
import { generateRecordingKey } from "../gateway/recording/keys.ts";
import { DiskRecorder } from "../gateway/recording/recorder.ts";
import { DirStore } from "../gateway/recording/store.ts";
import type { ChildConfig } from "./pg-gateway-child.ts";

const cfg = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as ChildConfig;
const mode = process.argv[3];
if (mode !== "on" && mode !== "off") throw new TypeError("usage: recording-pg-child.ts CONFIG on|off");
const now = Date.now();
const bundle = sealBundle({
	apiVersion: BUNDLE_API_VERSION,
	version: 1,
	generatedAt: new Date().toISOString(),
	issuers: [{ name: "bench", kind: "oidc", issuer: cfg.issuer, audiences: [cfg.audience], jwks: { keys: [cfg.jwk] }, algorithms: ["EdDSA"] }],
	connections: [
		{
			key: `bench/${cfg.connection}`,
			name: cfg.connection,
			namespace: "bench",
			type: "postgres",
			labels: { env: "bench" },
			host: cfg.upstream.host,
			port: cfg.upstream.port,
			credentialRef: "pg",
			postgres: { database: cfg.upstream.database, credentialMode: "static", sslmode: "verify-full", caPem: cfg.upstream.caPem, serverName: "localhost" },
		},
	],
	grants: [
		{
			key: "bench/bench",
			name: "bench",
			namespace: "bench",
			connection: cfg.connection,
			subjects: [{ kind: "User", name: cfg.user }],
			notBefore: new Date(now - 60_000).toISOString(),
			expiresAt: new Date(now + 24 * 3_600_000).toISOString(),
			postgres: { access: "read-write" },
			approvers: { subjects: [], minApprovals: 1 },
			origin: { commit: "bench" },
		},
	],
	maskingPolicies: [
		{ key: "bench/mask", selector: { matchLabels: { env: "bench" } }, rules: [{ name: "email", columns: ["customers.email"], strategy: { type: "redact" } }] },
	],
	guardrailPolicies: [
		{ key: "bench/guard", selector: { matchLabels: { env: "bench" } }, rules: [{ name: "no-drop", action: "block", sql: { statementKinds: ["DROP", "TRUNCATE"] } }] },
	],
	credentials: { pg: { type: "password", username: cfg.upstream.user, password: cfg.upstream.password } },
	maskingKey: Buffer.alloc(32, 3).toString("base64"),
});
const store = new BundleStore();
store.update(bundle);

/** Benchmark baseline only: accepts sessions and discards their events. */
class DiscardingRecorder implements Recorder {
	async openSession(meta: { sessionId: string }): Promise<SessionRecorder> {
		return { sessionId: meta.sessionId, emit() {}, async close() {} };
	}
}

let disk: DiskRecorder | undefined;
let recorder: Recorder;
if (mode === "on") {
	const { key } = await generateRecordingKey();
	disk = new DiskRecorder({ spoolDir: join(cfg.workDir, `spool-${process.pid}`), store: new DirStore(join(cfg.workDir, "recordings")), key });
	await disk.start();
	recorder = disk;
} else recorder = new DiscardingRecorder();
const listener = startPostgresListener({ store, recorder, tls: cfg.tls });
const { port } = await listener.listen(0);
const writeState = () => {
	const cpu = process.cpuUsage();
	// Atomic replace: the parent reads this file while we run.
	writeFileSync(`${cfg.stateFile}.tmp`, JSON.stringify({ port, maxRssKb: process.resourceUsage().maxRSS, cpuMicros: cpu.user + cpu.system }));
	renameSync(`${cfg.stateFile}.tmp`, cfg.stateFile);
};
writeState();
setInterval(writeState, 100).unref();
const stop = async () => {
	await listener.close();
	await disk?.drain(30_000).catch(() => {});
	await disk?.stop();
	process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
