/**
 * The uploader sends the chunks this process sealed from memory (the spool worker hands their
 * gzipped bytes back with the seal) and keeps the pending chunks' index entries in memory. Before,
 * every upload pass re-read and parsed the session's whole chunks.jsonl, which grows with the
 * session: a busy session open for hours paid more for each upload the longer it ran, and every
 * chunk was read back from its segment. Real directory store, real spool worker.
 */
import assert from "node:assert/strict";
import { readdir, unlink } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { sessionPrefix } from "../../gateway/recording/format.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { verifySession } from "../../gateway/recording/verify.ts";
import { eventually, makeRecorder, meta, sqlEvents, tempDir } from "./fixtures.ts";

test("a live session's chunks upload without reading the spool's chunk index or segments back", async () => {
	const store = new DirStore(await tempDir("mem-store"));
	await store.init();
	const spool = join(await tempDir("mem-spool"), "spool");
	// Small chunks: every few dozen events seal one, so the session has many before it ends.
	const { rec } = await makeRecorder(store, spool, { chunkMaxBytes: 4096 });
	try {
		const m = meta();
		const s = await rec.openSession(m);
		const dir = join(spool, "sessions", m.sessionId);
		const events = sqlEvents(400);
		for (const e of events.slice(0, 200)) s.emit(e);
		await eventually("the first chunks uploaded", async () => rec.backlogBytes() < 4096 && (await store.head(`${sessionPrefix(m)}chunk-000003.jsonl.gz`)) !== undefined);
		// Take the index and the segments away from under the running session: the worker keeps
		// appending through its open files, and nothing on the upload path may need to read them.
		for (const name of await readdir(dir)) if (name === "chunks.jsonl" || name.startsWith("segment-")) await unlink(join(dir, name));
		for (const e of events.slice(200)) s.emit(e);
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
		const v = await verifySession(store, sessionPrefix(m), (await loadStoreKeys(store)).set);
		assert.deepEqual(v.problems, []);
		assert.equal(v.events, 400);
		assert.ok(v.chunks > 10, `many chunks (${v.chunks})`);
		assert.equal(rec.backlogBytes(), 0);
	} finally {
		await rec.stop();
	}
});
