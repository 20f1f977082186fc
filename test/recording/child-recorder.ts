/**
 * Child process for the kill-and-restart tests: runs the real recorder against a store given on the
 * command line, records sessions, reports what it emitted, then waits to be killed with SIGKILL.
 * argv: <spoolDir> <keyFile> <storeKind: dir|s3> <storeArg> [s3 access] [s3 secret] [s3 bucket]
 */
import { loadRecordingKey } from "../../gateway/recording/keys.ts";
import { DiskRecorder } from "../../gateway/recording/recorder.ts";
import { DirStore, parseEndpoint, type RecordingStore, S3Store } from "../../gateway/recording/store.ts";
import { meta, sqlEvents } from "./fixtures.ts";

async function run(): Promise<void> {
	const [spoolDir, keyFile, kind, arg, access, secret, bucket] = process.argv.slice(2);
	const store: RecordingStore =
		kind === "dir" ? new DirStore(arg!) : new S3Store({ ...parseEndpoint(arg!), accessKey: access!, secretKey: secret!, bucket: bucket! });
	const rec = new DiskRecorder({
		spoolDir: spoolDir!,
		store,
		key: await loadRecordingKey(keyFile!, true),
		chunkMaxBytes: 4096,
		flushIntervalMs: 20,
		retryInitialDelayMs: 50,
		retryMaxDelayMs: 200,
		logger: { info() {}, warn() {}, error() {} },
	});
	await rec.start();
	const closed = meta({ connection: "closed-conn" });
	const s1 = await rec.openSession(closed);
	for (const e of sqlEvents(50)) s1.emit(e);
	await s1.close({ reason: "client-closed" });
	const open = meta({ connection: "open-conn" });
	const s2 = await rec.openSession(open);
	for (const e of sqlEvents(75)) s2.emit(e);
	s2.emit({ type: "terminal", stream: "o", data: "last words\r\n" });
	// Past the flush interval: everything emitted is in the spool files (not necessarily fsynced).
	await new Promise((r) => setTimeout(r, 300));
	process.stdout.write(`${JSON.stringify({ closed: closed.sessionId, open: open.sessionId, openEvents: 76, closedEvents: 50, backlog: rec.backlogBytes() })}\n`);
	setInterval(() => {}, 1000);
}

run().catch((e) => {
	process.stderr.write(`${(e as Error).stack}\n`);
	process.exit(1);
});
