/**
 * The gateway's PostgreSQL listener in its own process, for bench/pgbench.ts (so its RSS and CPU are
 * its own). Reads a JSON config file (argv[2]); writes {port, maxRssKb} to the state file every 200 ms.
 * Guardrails, masking and recording (DiskRecorder to a directory store) are all on.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { BUNDLE_API_VERSION } from "../gateway/config/bundle.ts";
import { sealBundle } from "../gateway/config/canonical.ts";
import { BundleStore } from "../gateway/config/store.ts";
import { startPostgresListener } from "../gateway/postgres/listener.ts";
import { generateRecordingKey } from "../gateway/recording/keys.ts";
import { DiskRecorder } from "../gateway/recording/recorder.ts";
import { DirStore } from "../gateway/recording/store.ts";

export interface ChildConfig {
	stateFile: string;
	workDir: string;
	upstream: { host: string; port: number; database: string; user: string; password: string; caPem: string };
	tls: { certPem: string; keyPem: string };
	jwk: Record<string, unknown>;
	issuer: string;
	audience: string;
	connection: string;
	user: string;
}

const cfg = JSON.parse(readFileSync(process.argv[2]!, "utf8")) as ChildConfig;
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
		{
			key: "bench/mask",
			selector: { matchLabels: { env: "bench" } },
			rules: [
				{ name: "email", columns: ["big.email", "customers.email"], strategy: { type: "redact" } },
				{ name: "card", columns: ["big.card", "customers.card_number"], strategy: { type: "partial", keepLast: 4 } },
			],
		},
	],
	guardrailPolicies: [
		{
			key: "bench/guard",
			selector: { matchLabels: { env: "bench" } },
			rules: [
				{ name: "no-drop", action: "block", sql: { statementKinds: ["DROP", "TRUNCATE"] } },
				{ name: "no-unbounded-delete", action: "block", sql: { statementKinds: ["DELETE", "UPDATE"], withoutWhere: true } },
			],
		},
	],
	credentials: { pg: { type: "password", username: cfg.upstream.user, password: cfg.upstream.password } },
	maskingKey: Buffer.alloc(32, 3).toString("base64"),
});
const store = new BundleStore();
store.update(bundle);
const { key } = await generateRecordingKey();
const recorder = new DiskRecorder({ spoolDir: join(cfg.workDir, "spool"), store: new DirStore(join(cfg.workDir, "recordings")), key });
await recorder.start();
const listener = startPostgresListener({ store, recorder, tls: cfg.tls });
const { port } = await listener.listen(0);
const writeState = () => writeFileSync(cfg.stateFile, JSON.stringify({ port, maxRssKb: process.resourceUsage().maxRSS, memory: process.memoryUsage() }));
writeState();
setInterval(writeState, 200);
const stop = async () => {
	await listener.close();
	await recorder.stop();
	writeState();
	process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
