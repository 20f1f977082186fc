/**
 * The gateway's PostgreSQL listener in its own process, for bench/run.ts and bench/pg-cpu.ts (so its RSS and CPU are
 * its own). Reads a JSON config file (bench/bundle.ts ChildConfig, written by bench/pg-world.ts
 * gatewayChildConfig); writes {port, maxRssKb, memory} to the config's state file every 200 ms.
 * Guardrails, masking and recording (DiskRecorder to a directory store) are all on. Prints nothing.
 *
 * Usage: ./node_modules/.bin/node --liftoff-only --import tsx bench/pg-gateway-child.ts CONFIG.json
 */
import { readFileSync, writeFileSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { BundleStore } from "../gateway/config/store.ts";
import { startPostgresListener } from "../gateway/postgres/listener.ts";
import { generateRecordingKey } from "../gateway/recording/keys.ts";
import { DiskRecorder } from "../gateway/recording/recorder.ts";
import { DirStore } from "../gateway/recording/store.ts";
import { benchArgs } from "./args.ts";
import { benchBundle, type ChildConfig } from "./bundle.ts";

export type { ChildConfig } from "./bundle.ts";

const { positionals } = benchArgs(import.meta.url, { options: {}, positionals: ["CONFIG.json"] });
const cfg = JSON.parse(readFileSync(positionals[0]!, "utf8")) as ChildConfig;
const bundle = benchBundle(cfg, {
	mask: [
		{ name: "email", columns: ["big.email", "customers.email"], strategy: { type: "redact" } },
		{ name: "card", columns: ["big.card", "customers.card_number"], strategy: { type: "partial", keepLast: 4 } },
	],
	guardrails: [
		{ name: "no-drop", action: "block", sql: { statementKinds: ["DROP", "TRUNCATE"] } },
		{ name: "no-unbounded-delete", action: "block", sql: { statementKinds: ["DELETE", "UPDATE"], withoutWhere: true } },
	],
});
const store = new BundleStore();
store.update(bundle);
const { key } = await generateRecordingKey();
const recorder = new DiskRecorder({ spoolDir: join(cfg.workDir, "spool"), store: new DirStore(join(cfg.workDir, "recordings")), key });
await recorder.start();
const listener = startPostgresListener({ store, recorder, tls: cfg.tls });
const { port } = await listener.listen(0);
const state = () => JSON.stringify({ port, maxRssKb: process.resourceUsage().maxRSS, memory: process.memoryUsage() });
const writeState = () => writeFileSync(cfg.stateFile, state());
writeState();
// Asynchronous, one at a time: a synchronous write that blocks on a busy disk stalls the event
// loop being measured (a profile once showed 60 % of the gateway's busy time in writeFileSync).
let writing = false;
setInterval(() => {
	if (writing) return;
	writing = true;
	void writeFile(cfg.stateFile, state())
		.catch(() => undefined)
		.finally(() => {
			writing = false;
		});
}, 200);
const stop = async () => {
	await listener.close();
	await recorder.stop();
	writeState();
	process.exit(0);
};
process.on("SIGTERM", () => void stop());
process.on("SIGINT", () => void stop());
