import assert from "node:assert/strict";
import { rm, writeFile } from "node:fs/promises";
import { type AddressInfo, createServer, type Socket } from "node:net";
import { join } from "node:path";
import { test } from "node:test";
import { listSessions, loadSession, loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { isRecordingError, SpoolFullError } from "../../gateway/recording/errors.ts";
import { loadRecordingKey } from "../../gateway/recording/keys.ts";
import { DirStore, S3Store } from "../../gateway/recording/store.ts";
import { verifySession } from "../../gateway/recording/verify.ts";
import { eventually, makeRecorder, meta, metricValue, sqlEvents, startChild, tempDir } from "./fixtures.ts";

test("recorder killed with a backlog (store down): a new process recovers and uploads everything", async () => {
	const base = await tempDir("recovery");
	const spool = join(base, "spool");
	const keyFile = join(base, "key.jwk");
	const storeRoot = join(base, "store");
	// The store is unusable while the first process runs: its root is a plain file.
	await writeFile(storeRoot, "not a directory");
	const child = await startChild([spool, keyFile, "dir", storeRoot]);
	assert.ok(Number(child.report.backlog) > 0, "backlog while the store is down");
	await child.kill();

	await rm(storeRoot);
	const store = new DirStore(storeRoot);
	await store.init();
	const { rec } = await makeRecorder(store, spool, { key: await loadRecordingKey(keyFile) });
	try {
		await rec.drain(20_000);
		assert.equal(rec.backlogBytes(), 0);
		const sessions = await listSessions(store, {});
		assert.deepEqual(sessions.map((s) => s.sessionId).sort(), [String(child.report.closed), String(child.report.open)].sort());
		const keys = (await loadStoreKeys(store)).set;
		for (const s of sessions) {
			const v = await verifySession(store, s.prefix, keys);
			assert.deepEqual(v.problems, [], `${s.sessionId} verifies`);
			const loaded = await loadSession(store, s.prefix);
			const expected = s.sessionId === child.report.open ? child.report.openEvents : child.report.closedEvents;
			assert.equal(loaded.events.length, expected, `no event lost in ${s.sessionId}`);
			assert.deepEqual(
				loaded.events.map((e) => e.seq),
				Array.from({ length: Number(expected) }, (_, i) => i + 1),
			);
			if (s.sessionId === child.report.open) {
				assert.equal(loaded.document?.recovered, true);
				assert.equal(loaded.document?.end.reason, "shutdown");
				assert.match(loaded.cast ?? "", /last words/);
			} else assert.equal(loaded.document?.recovered, false);
		}
		const metrics = await rec.metrics.registry.getSingleMetricAsString("drawbridge_recording_sessions_recovered_total");
		assert.match(metrics, /drawbridge_recording_sessions_recovered_total 1/);
	} finally {
		await rec.stop();
	}
});

test("spool full, failClosed (default): openSession rejects with SpoolFullError; uploads resume when the store returns", async () => {
	const base = await tempDir("full");
	const storeRoot = join(base, "store");
	await writeFile(storeRoot, "blocked");
	const store = new DirStore(storeRoot);
	const { rec } = await makeRecorder(store, join(base, "spool"), { maxSpoolBytes: 2048 });
	try {
		const s = await rec.openSession(meta());
		for (const e of sqlEvents(60)) s.emit(e);
		await s.close({ reason: "client-closed" });
		assert.ok(rec.backlogBytes() >= 2048, `backlog ${rec.backlogBytes()}`);
		await assert.rejects(rec.openSession(meta()), (e: unknown) => {
			assert.ok(e instanceof SpoolFullError);
			assert.ok(isRecordingError(e, "SPOOL_FULL"));
			assert.match((e as Error).message, /recording spool is full \(\d+ of 2048 bytes waiting for upload\); new sessions are refused/);
			return true;
		});
		const text = await rec.metrics.registry.metrics();
		assert.match(text, /drawbridge_recording_sessions_refused_total 1/);
		assert.match(text, /drawbridge_recording_spool_full 1/);
		await eventually("upload errors counted", async () => (await metricValue(rec, "drawbridge_recording_upload_errors_total", { kind: "key" })) > 0);
		assert.ok((await metricValue(rec, "drawbridge_recording_oldest_unsent_event_age_seconds")) > 0);
		// The store comes back: the backlog drains and sessions are admitted again.
		await rm(storeRoot);
		await store.init();
		await rec.drain(20_000);
		assert.equal(rec.backlogBytes(), 0);
		const s2 = await rec.openSession(meta());
		await s2.close({ reason: "client-closed" });
		await rec.drain(20_000);
		assert.equal((await listSessions(store, {})).length, 2);
	} finally {
		await rec.stop();
	}
});

test("spool full, failOpen: the session is admitted, recorded, and an alert metric increases", async () => {
	const base = await tempDir("failopen");
	const storeRoot = join(base, "store");
	await writeFile(storeRoot, "blocked");
	const store = new DirStore(storeRoot);
	const logged: string[] = [];
	const { rec } = await makeRecorder(store, join(base, "spool"), {
		maxSpoolBytes: 1024,
		onSpoolFull: "failOpen",
		logger: { info() {}, warn() {}, error: (_o, m) => logged.push(m) },
	});
	try {
		const s = await rec.openSession(meta());
		for (const e of sqlEvents(30)) s.emit(e);
		await s.close({ reason: "client-closed" });
		const m2 = meta();
		const s2 = await rec.openSession(m2);
		s2.emit(sqlEvents(1)[0]!);
		await s2.close({ reason: "client-closed" });
		assert.match(await rec.metrics.registry.metrics(), /drawbridge_recording_sessions_over_budget_total 1/);
		assert.ok(logged.some((l) => /ALERT spool full/.test(l)), logged.join("\n"));
		await rm(storeRoot);
		await store.init();
		await rec.drain(20_000);
		const found = await listSessions(store, { sessionId: m2.sessionId });
		assert.equal(found.length, 1);
	} finally {
		await rec.stop();
	}
});

test("a hung store (accepts connections, never answers) times out, counts as an error and is retried", async () => {
	const sockets = new Set<Socket>();
	const blackHole = createServer((s) => {
		sockets.add(s);
		s.on("error", () => {});
	});
	await new Promise<void>((r) => blackHole.listen(0, "127.0.0.1", r));
	const port = (blackHole.address() as AddressInfo).port;
	const store = new S3Store({ endPoint: "127.0.0.1", port, useSSL: false, accessKey: "a", secretKey: "b", bucket: "hung" });
	const { rec } = await makeRecorder(store, await tempDir("hung-spool"), { uploadTimeoutMs: 200 });
	try {
		const s = await rec.openSession(meta());
		s.emit(sqlEvents(1)[0]!);
		await s.close({ reason: "client-closed" });
		await eventually("two timed-out attempts", async () => (await metricValue(rec, "drawbridge_recording_upload_errors_total")) >= 2, 15_000);
		assert.ok(rec.backlogBytes() > 0, "the session stays spooled");
	} finally {
		await rec.stop();
		for (const s of sockets) s.destroy();
		blackHole.close();
	}
});

test("one damaged spool folder does not starve the other sessions' uploads", async () => {
	const base = await tempDir("starve");
	const storeRoot = join(base, "store");
	await writeFile(storeRoot, "blocked");
	const store = new DirStore(storeRoot);
	const spool = join(base, "spool");
	const first = await makeRecorder(store, spool, { uploadConcurrency: 1 });
	const damaged = meta({ startedAt: "2027-01-01T00:00:00.000Z" });
	const healthy = meta({ startedAt: "2027-01-02T00:00:00.000Z" });
	try {
		for (const m of [damaged, healthy]) {
			const s = await first.rec.openSession(m);
			for (const e of sqlEvents(5)) s.emit(e);
			await s.close({ reason: "client-closed" });
		}
	} finally {
		await first.rec.stop();
	}
	// A restarted gateway reads the chunks from the spool (the one that sealed them uploads them
	// from memory), and the damaged session loses its sealed chunk there after recovery found it
	// (disk error, operator mistake).
	const { rec } = await makeRecorder(store, spool, { uploadConcurrency: 1, key: first.key });
	try {
		await rm(join(spool, "sessions", damaged.sessionId, "segment-000001.bin"));
		await rm(storeRoot);
		await store.init();
		await eventually("the healthy session is uploaded", async () => (await listSessions(store, { sessionId: healthy.sessionId })).length === 1, 15_000);
		assert.equal((await listSessions(store, { sessionId: damaged.sessionId })).length, 0);
		assert.ok((await metricValue(rec, "drawbridge_recording_upload_errors_total", { kind: "other" })) > 0);
	} finally {
		await rec.stop();
	}
});
