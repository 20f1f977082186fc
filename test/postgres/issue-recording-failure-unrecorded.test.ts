// Regression (red-team round 10 on recordings: unrecorded actions). When the spool stops taking a
// session's events (a disk failure, the spool directory gone), the recorder counts them as dropped
// and calls the session's `onFailure` so that "a data path that must not run unrecorded ends the
// session here" (gateway/recording/README.md). No data path passed one: through the real gateway to
// a real PostgreSQL with the real recorder, after the session's spool folder vanished, every statement
// kept running and none was recorded (a session refused at open when the spool is full went on
// unrecorded once open). The session now ends with FATAL 53000 at the first event the spool refuses.
// SSH and Kubernetes sessions end likewise (test/ssh/issue-recording-failure-unrecorded.test.ts).
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { generateRecordingKey } from "../../gateway/recording/keys.ts";
import { DiskRecorder } from "../../gateway/recording/recorder.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { CONNECTION, type Fixture, startFixture } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

let fx: Fixture;
let rec: DiskRecorder;
let spool: string;

before(async () => {
	spool = await mkdtemp(join(tmpdir(), "drawbridge-pg-recfail-spool-"));
	const store = new DirStore(await mkdtemp(join(tmpdir(), "drawbridge-pg-recfail-store-")));
	await store.init();
	rec = new DiskRecorder({ spoolDir: spool, store, key: (await generateRecordingKey()).key, flushIntervalMs: 20, chunkMaxBytes: 1024, logger: { info() {}, warn() {}, error() {} } });
	await rec.start();
	fx = await startFixture({ recorder: rec });
	await fx.pg.query("CREATE TABLE unrecorded (n int)");
	await fx.pg.query("GRANT ALL ON unrecorded TO PUBLIC");
});
after(async () => {
	await fx?.stop();
	await rec?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

test("a session whose recording fails is ended, not run unrecorded", async () => {
	const c = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("alice"));
	// the session's spool folder disappears under the recorder (disk replaced, operator error)
	const sessions = await readdir(join(spool, "sessions"));
	assert.equal(sessions.length, 1, JSON.stringify(sessions));
	await rm(join(spool, "sessions", sessions[0]!), { recursive: true, force: true });
	const seen: string[] = [];
	let fatal: Record<string, string> | undefined;
	let closed = false;
	for (let i = 0; i < 200 && !fatal && !closed; i++) {
		c.send(clientMessages.query(`INSERT INTO unrecorded VALUES (${i})`));
		for (;;) {
			let m: Awaited<ReturnType<RawClient["next"]>>;
			try {
				m = await c.next(60_000);
			} catch {
				closed = true;
				break;
			}
			seen.push(m.type);
			if (m.type === "errorResponse" && (m as { fields: Record<string, string> }).fields.S === "FATAL") fatal = (m as { fields: Record<string, string> }).fields;
			if (m.type === "readyForQuery") break;
		}
	}
	c.end();
	assert.ok(fatal, `the session went on unrecorded: ${seen.slice(-10).join(", ")}`);
	assert.equal(fatal.C, "53000");
	assert.match(fatal.M ?? "", /recording failed/);
});
