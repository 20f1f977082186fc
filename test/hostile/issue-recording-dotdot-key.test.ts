/**
 * Regression (found by the crafted-names test): a Connection named "../../etc/passwd" (or
 * "dots.in.name..") became the key segment "__.._etc_passwd": traversal was prevented, but the
 * DirStore (rightly) refuses any key containing "..", so the session's recording could never be
 * uploaded — retried forever, stuck in the spool. Key segments now never contain "..".
 */
import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { keySegment, sessionPrefix } from "../../gateway/recording/format.ts";
import { generateRecordingKey } from "../../gateway/recording/keys.ts";
import { DiskRecorder } from "../../gateway/recording/recorder.ts";
import { DirStore } from "../../gateway/recording/store.ts";

test("issue recording-dotdot-key: crafted connection names give keys the store accepts, and the recording uploads", async () => {
	for (const name of ["../../etc/passwd", "dots.in.name..", "a...b", "..", "team/../admin"]) {
		const seg = keySegment(name);
		assert.ok(!seg.includes(".."), `${name} → ${seg}`);
		assert.ok(!sessionPrefix({ startedAt: new Date().toISOString(), connection: name, sessionId: "s1" }).includes(".."));
	}
	const base = await mkdtemp(join(tmpdir(), "drawbridge-dotdot-"));
	const rec = new DiskRecorder({
		spoolDir: join(base, "spool"),
		store: new DirStore(join(base, "store")),
		key: (await generateRecordingKey()).key,
		flushIntervalMs: 20,
		retryInitialDelayMs: 50,
		retryMaxDelayMs: 200,
		logger: { info() {}, warn() {}, error() {} },
	});
	await rec.start();
	try {
		const s = await rec.openSession({
			sessionId: "dotdot-1",
			protocol: "postgres",
			connection: "../../etc/passwd",
			connectionNamespace: "team",
			identity: { issuer: "https://issuer", subject: "a", username: "a", groups: [] },
			grant: "team/g",
			origin: {},
			client: { address: "127.0.0.1" },
			target: {},
			startedAt: new Date().toISOString(),
			gateway: "gw",
		});
		s.emit({ type: "statement", sql: "SELECT 1", statementKinds: ["select"], decision: "allow" });
		await s.close({ reason: "client-closed" });
		await rec.drain(30_000);
		assert.equal(rec.backlogBytes(), 0);
	} finally {
		await rec.stop();
	}
});
