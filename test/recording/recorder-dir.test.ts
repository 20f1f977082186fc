import assert from "node:assert/strict";
import { readdir, rm } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { listSessions, loadSession, loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { verifySession } from "../../gateway/recording/verify.ts";
import { isRecordingError } from "../../gateway/recording/errors.ts";
import type { RecordingEvent } from "../../gateway/recording/events.ts";
import { blockedAndApproved, makeRecorder, meta, metricValue, sqlEvents, tempDir } from "./fixtures.ts";

test("a SQL session through the real recorder lands in a directory store and verifies", async () => {
	const root = await tempDir("store");
	const store = new DirStore(root);
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("spool"), { chunkMaxBytes: 2048 });
	try {
		const m = meta();
		const s = await rec.openSession(m);
		for (const e of sqlEvents(100)) s.emit(e);
		for (const e of blockedAndApproved) s.emit(e);
		await s.close({ reason: "client-closed" });
		await rec.drain(10_000);
		const sessions = await listSessions(store, {});
		assert.equal(sessions.length, 1);
		assert.equal(sessions[0]!.sessionId, m.sessionId);
		assert.equal(sessions[0]!.hasBlocked, true);
		assert.equal(sessions[0]!.hasApprovals, true);
		const { set } = await loadStoreKeys(store);
		const v = await verifySession(store, sessions[0]!.prefix, set);
		assert.deepEqual(v.problems, []);
		assert.ok(v.chunks > 3, `expected several chunks, got ${v.chunks}`);
		assert.equal(v.events, 104);
		const loaded = await loadSession(store, sessions[0]!.prefix);
		assert.deepEqual(
			loaded.events.map((e) => e.seq),
			Array.from({ length: 104 }, (_, i) => i + 1),
		);
		assert.equal(loaded.document?.counts.statements, 102);
		assert.equal(loaded.document?.end.reason, "client-closed");
		assert.equal(rec.backlogBytes(), 0);
		assert.deepEqual(await readdir(join(rec.options.spoolDir, "sessions")), []);
	} finally {
		await rec.stop();
	}
});

test("captured result rows are capped per statement and flagged", async () => {
	const store = new DirStore(await tempDir("rows-store"));
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("rows-spool"), { maxCapturedRows: 3 });
	try {
		const m = meta();
		const s = await rec.openSession(m);
		const rows = Array.from({ length: 10 }, (_, i) => [String(i), "****@example.com"]);
		s.emit({ type: "statement", sql: "SELECT id, email FROM customers", statementKinds: ["select"], decision: "allow", rows: 10, resultColumns: ["id", "email"], resultRows: rows });
		s.emit({ type: "statement", sql: "SELECT 1", statementKinds: ["select"], decision: "allow", resultColumns: ["?column?"], resultRows: [["1"]] });
		await s.close({ reason: "client-closed" });
		await rec.drain(10_000);
		const [summary] = await listSessions(store, {});
		const loaded = await loadSession(store, summary!.prefix);
		const [first, second] = loaded.events;
		assert.ok(first?.type === "statement" && second?.type === "statement");
		assert.equal(first.resultRows?.length, 3);
		assert.equal(first.resultRowsTruncated, true);
		assert.deepEqual(second.resultRows, [["1"]]);
		assert.equal(second.resultRowsTruncated, undefined);
	} finally {
		await rec.stop();
	}
});

test("a stored event is the emitted event plus seq, time and offsetMs; an unserialisable one becomes a notice, with no bytes of it left behind", async () => {
	const store = new DirStore(await tempDir("line-store"));
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("line-spool"));
	try {
		const m = meta();
		const s = await rec.openSession(m);
		const event: RecordingEvent = { type: "statement", sql: 'SELECT "a""b", \'}\' FROM t -- }', params: ["x", null], statementKinds: ["select"], decision: "block", rule: "r" };
		s.emit(event);
		s.emit({ type: "kube.request", verb: "create", resource: "pods", path: "/api/v1/pods", decision: "allow", body: { n: 1n } });
		s.emit({ type: "terminal", stream: "o", data: "héllo" });
		// The statement serialiser writes into the chunk buffer field by field: this one fails after
		// its SQL is written, which must not leave half an event in the chunk.
		s.emit({ type: "statement", sql: "SELECT 1", statementKinds: ["select"], decision: "allow", error: { code: "x", message: 2n } } as unknown as RecordingEvent);
		s.emit({ type: "statement", sql: "SELECT 2", statementKinds: ["select"], decision: "allow" });
		await s.close({ reason: "client-closed" });
		await rec.drain(10_000);
		const [summary] = await listSessions(store, {});
		const loaded = await loadSession(store, summary!.prefix);
		const [first, second, third, fourth, fifth] = loaded.events;
		// Same keys in the same order as the event, then the recorder's three.
		assert.deepEqual(Object.keys(first!), [...Object.keys(event), "seq", "time", "offsetMs"]);
		assert.deepEqual({ ...first, time: undefined, offsetMs: undefined }, { ...event, seq: 1, time: undefined, offsetMs: undefined });
		assert.match(first!.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
		assert.equal(typeof first!.offsetMs, "number");
		assert.equal(second?.type, "notice");
		assert.match(second?.type === "notice" ? second.message : "", /^unserialisable kube\.request event: .*BigInt/);
		assert.equal(second!.seq, 2);
		assert.equal(third!.seq, 3);
		assert.match(fourth?.type === "notice" ? fourth.message : "", /^unserialisable statement event: .*BigInt/);
		assert.equal(fourth!.seq, 4);
		assert.deepEqual({ ...fifth, time: undefined, offsetMs: undefined }, { type: "statement", sql: "SELECT 2", statementKinds: ["select"], decision: "allow", seq: 5, time: undefined, offsetMs: undefined });
		assert.equal(loaded.events.length, 5);
		assert.equal(loaded.document?.counts.blocked, 1);
		assert.equal(loaded.document?.counts.notices, 2);
		assert.equal(loaded.document?.counts.terminalBytes, Buffer.byteLength("héllo"));
	} finally {
		await rec.stop();
	}
});

test("a spool write failure is loud: events are counted as dropped and close() rejects", async () => {
	const store = new DirStore(await tempDir("fail-store"));
	await store.init();
	const spool = await tempDir("fail-spool");
	const { rec } = await makeRecorder(store, spool);
	try {
		const m = meta();
		const failures: Error[] = [];
		const s = await rec.openSession(m, { onFailure: (e) => failures.push(e) });
		// The session's spool directory disappears under the recorder (disk replaced, operator error).
		await rm(join(spool, "sessions", m.sessionId), { recursive: true, force: true });
		for (const e of sqlEvents(5)) s.emit(e);
		await new Promise((r) => setTimeout(r, 100));
		for (const e of sqlEvents(3)) s.emit(e);
		await assert.rejects(s.close({ reason: "client-closed" }), (e: unknown) => {
			assert.ok(isRecordingError(e, "STORE_UNAVAILABLE"));
			assert.match((e as Error).message, new RegExp(`recording of session ${m.sessionId} is incomplete`));
			return true;
		});
		assert.equal(await metricValue(rec, "drawbridge_recording_events_dropped_total"), 8);
		assert.equal(failures.length, 1, "the data path is told once");
		assert.match(failures[0]!.message, new RegExp(`recording of session ${m.sessionId} failed`));
	} finally {
		await rec.stop();
	}
});

test("regression: a burst of 150k events emitted without yielding is recorded completely (no call-stack overflow)", async () => {
	const store = new DirStore(await tempDir("burst-store"));
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("burst-spool"), { flushIntervalMs: 100 });
	try {
		const m = meta();
		const s = await rec.openSession(m);
		const n = 150_000;
		for (let i = 0; i < n; i++) s.emit({ type: "notice", message: `n${i}` });
		await s.close({ reason: "client-closed" });
		await rec.drain(60_000);
		const [summary] = await listSessions(store, {});
		const v = await verifySession(store, summary!.prefix, (await loadStoreKeys(store)).set);
		assert.deepEqual(v.problems, []);
		assert.equal(v.events, n);
		assert.ok(v.chunks > 1, "split into chunks of at most chunkMaxBytes");
	} finally {
		await rec.stop();
	}
});

test("a session without events still gets session.json and a signed manifest that verifies", async () => {
	const store = new DirStore(await tempDir("empty-store"));
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("empty-spool"));
	try {
		const s = await rec.openSession(meta());
		s.emit({ type: "notice", message: "dropped: emitted after close" });
		await s.close({ reason: "upstream-closed", message: "refused by the upstream" });
		s.emit({ type: "notice", message: "ignored" });
		await assert.rejects(s.close({ reason: "client-closed" }), (e: unknown) => isRecordingError(e, "SESSION_CLOSED"));
		const empty = await rec.openSession(meta());
		await empty.close({ reason: "client-closed" });
		await rec.drain(10_000);
		const sessions = await listSessions(store, {});
		assert.equal(sessions.length, 2);
		const keys = (await loadStoreKeys(store)).set;
		const results = await Promise.all(sessions.map((x) => verifySession(store, x.prefix, keys)));
		assert.deepEqual(results.map((r) => [r.ok, r.events].join()).sort(), ["true,0", "true,1"]);
	} finally {
		await rec.stop();
	}
});
