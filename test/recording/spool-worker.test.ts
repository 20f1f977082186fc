/**
 * The spool's file work runs in one worker thread per recorder (gateway/recording/spool-worker.ts).
 * What must hold: all sessions due at a flush tick go to the worker as one message; a worker that
 * dies is replaced and the sessions it was not working for keep recording (their files reopened where
 * they were); and closed sessions, failed ones included, leave no file open in the spool.
 */
import assert from "node:assert/strict";
import { readdir, readFile, readlink, rename, stat } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { listSessions, loadSession, loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { verifySession } from "../../gateway/recording/verify.ts";
import { eventually, makeRecorder, meta, sqlEvents, tempDir } from "./fixtures.ts";

/** Files this process holds open under `dir` (the worker shares the process's descriptor table). */
async function openFilesUnder(dir: string): Promise<string[]> {
	const out: string[] = [];
	for (const fd of await readdir("/proc/self/fd")) {
		const target = await readlink(`/proc/self/fd/${fd}`).catch(() => "");
		if (target.startsWith(`${dir}/`)) out.push(target);
	}
	return out;
}

async function storeAndRecorder(name: string, extra: Parameters<typeof makeRecorder>[2] = {}) {
	const store = new DirStore(await tempDir(`${name}-store`));
	await store.init();
	const spool = await tempDir(`${name}-spool`);
	const { rec } = await makeRecorder(store, spool, extra);
	return { store, spool, rec };
}

test("every session due at a flush tick goes to the spool worker in one message", async () => {
	const { rec } = await storeAndRecorder("batch", { flushIntervalMs: 200 });
	try {
		const sessions = await Promise.all(Array.from({ length: 8 }, () => rec.openSession(meta())));
		// Let the recorder settle (opening sessions does not go through the worker).
		await new Promise((r) => setTimeout(r, 50));
		const before = { ...rec.io.stats };
		for (const s of sessions) s.emit(sqlEvents(1)[0]!);
		await eventually("the tick's writes are done", async () => rec.io.stats.operations - before.operations >= 8);
		assert.equal(rec.io.stats.operations - before.operations, 8, "one write per session");
		assert.equal(rec.io.stats.batches - before.batches, 1, "all eight in one message");
		for (const s of sessions) await s.close({ reason: "client-closed" });
	} finally {
		await rec.stop();
	}
});

test("a spool worker that dies is replaced: sessions it held no work for keep recording and verify", async () => {
	const { store, spool, rec } = await storeAndRecorder("respawn", { chunkMaxBytes: 4096, chunkMaxAgeMs: 1500 });
	const dir = (id: string) => join(spool, "sessions", id);
	const sealedThrough = async (id: string, seq: number) => (await readFile(join(dir(id), "chunks.jsonl"), "utf8").catch(() => "")).includes(`"lastSeq":${seq},`);
	try {
		const m = meta();
		const failures: Error[] = [];
		const s = await rec.openSession(m, { onFailure: (e) => failures.push(e) });
		// A few sealed chunks (a segment and the index open in the worker)...
		for (const e of sqlEvents(60)) s.emit(e);
		await eventually("all sixty sealed", () => sealedThrough(m.sessionId, 60));
		// ...and five events written to events.jsonl by this worker, not sealed yet.
		for (const e of sqlEvents(5)) s.emit(e);
		await eventually("five events flushed, nothing in flight", async () => (await stat(join(dir(m.sessionId), "events.jsonl"))).size > 0 && rec.io.outstanding === 0);
		const first = rec.io.worker;
		assert.ok(first, "a worker is running");
		await first.terminate();
		// The age seal goes to a new worker: it seals the five and empties events.jsonl, which it never opened.
		await eventually("the five sealed by the new worker", () => sealedThrough(m.sessionId, 65));
		assert.equal((await stat(join(dir(m.sessionId), "events.jsonl"))).size, 0);
		// More events: the new worker opens events.jsonl, the index and the segment again, where they were.
		for (const e of sqlEvents(55)) s.emit(e);
		await s.close({ reason: "client-closed" });
		assert.equal(rec.io.stats.workersStarted, 2);
		assert.notEqual(rec.io.worker, first);
		assert.deepEqual(failures, []);
		await rec.drain(20_000);
		const [summary] = await listSessions(store, {});
		assert.equal(summary?.sessionId, m.sessionId);
		assert.deepEqual((await verifySession(store, summary!.prefix, (await loadStoreKeys(store)).set)).problems, []);
		const loaded = await loadSession(store, summary!.prefix);
		assert.deepEqual(
			loaded.events.map((e) => e.seq),
			Array.from({ length: 120 }, (_, i) => i + 1),
		);
		let chunks = 0;
		for await (const o of store.list(summary!.prefix)) if (o.key.includes("/chunk-")) chunks++;
		assert.ok(chunks > 3, `several chunks across the restart, got ${chunks}`);
	} finally {
		await rec.stop();
	}
});

test("closed sessions leave no spool file open, failed ones included", async () => {
	// A segment per chunk: the failing session's next seal must create a file in its vanished folder.
	const { spool, rec } = await storeAndRecorder("fds", { chunkMaxBytes: 4096, segmentMaxBytes: 1 });
	try {
		const good = await rec.openSession(meta());
		const badMeta = meta();
		const bad = await rec.openSession(badMeta, { onFailure: () => {} });
		for (const e of sqlEvents(40)) {
			good.emit(e);
			bad.emit(e);
		}
		await eventually("both sessions have files open in the worker", async () => {
			const open = await openFilesUnder(join(spool, "sessions"));
			return open.some((f) => f.includes(badMeta.sessionId)) && open.some((f) => !f.includes(badMeta.sessionId));
		});
		// The failing session's folder is moved away under it: its next new file cannot be created.
		await rename(join(spool, "sessions", badMeta.sessionId), join(spool, `gone-${badMeta.sessionId}`));
		for (const e of sqlEvents(40)) bad.emit(e);
		await assert.rejects(bad.close({ reason: "client-closed" }));
		await good.close({ reason: "client-closed" });
		// The uploader opens segments for a moment to read chunks; the worker's files must all be closed.
		let open: string[] = [];
		await eventually("no spool file left open", async () => {
			open = await openFilesUnder(spool);
			return open.length === 0;
		}).catch(() => assert.deepEqual(open, [], "spool files left open after every session closed"));
	} finally {
		await rec.stop();
	}
});
