/**
 * A short session (no chunk sealed before it closes) closed while the store answers goes from
 * memory straight to the store inside close(), instead of through the spool's segment, index and
 * durable session.json/manifest (recorder.ts closeDirect). These tests hold that path to the same
 * promises as the spool path, with a real directory store and a real MinIO stopped at the moment of
 * the close: the recording is complete and verifies, the end reason is the real one, nothing is
 * left in the spool, and a failed upload loses nothing.
 */
import assert from "node:assert/strict";
import { mkdir, readdir, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { listSessions, loadSession, loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { sessionPrefix } from "../../gateway/recording/format.ts";
import { DirStore, parseEndpoint, S3Store } from "../../gateway/recording/store.ts";
import { verifySession } from "../../gateway/recording/verify.ts";
import { type MinioHandle, printLogsOnFailure, startMinio } from "../env/index.ts";
import { makeRecorder, meta, sqlEvents, tempDir } from "./fixtures.ts";

let minio: MinioHandle;
before(async () => {
	minio = await startMinio();
});
after(async () => {
	await minio?.destroy();
});
printLogsOnFailure(() => [["minio", minio]]);

const spoolSessions = async (spool: string) => (await readdir(join(spool, "sessions"))).sort();

test("a short session's recording is in the store, complete and verified, when close() returns; its spool folder is gone", async () => {
	const store = new DirStore(await tempDir("direct-store"));
	await store.init();
	const spool = join(await tempDir("direct-spool"), "spool");
	const { rec } = await makeRecorder(store, spool);
	try {
		await rec.drain(10_000); // the public key is published: the store has answered
		const m = meta();
		const s = await rec.openSession(m);
		for (const e of sqlEvents(20)) s.emit(e);
		await s.close({ reason: "client-closed" });
		// No drain: the spool path would only now start uploading in the background.
		const prefix = sessionPrefix(m);
		assert.ok(await store.head(`${prefix}manifest.jws`), "manifest stored by close()");
		assert.deepEqual(await spoolSessions(spool), [], "spool folder removed");
		const v = await verifySession(store, prefix, (await loadStoreKeys(store)).set);
		assert.deepEqual(v.problems, []);
		assert.equal(v.events, 20);
		const loaded = await loadSession(store, prefix);
		assert.equal(loaded.document?.end.reason, "client-closed");
		assert.equal(loaded.document?.counts.statements, 20);
		assert.equal(rec.backlogBytes(), 0);
		// A session with no events at all is stored the same way, with no chunk.
		const empty = meta();
		await (await rec.openSession(empty)).close({ reason: "client-closed" });
		assert.deepEqual((await verifySession(store, sessionPrefix(empty), (await loadStoreKeys(store)).set)).problems, []);
		assert.deepEqual(await spoolSessions(spool), []);
	} finally {
		await rec.stop();
	}
});

test("MinIO stopped when a short session closes: the upload fails, the session goes through the spool, and uploads intact once MinIO is back", async () => {
	const o = { ...parseEndpoint(minio.endpoint), accessKey: minio.accessKey, secretKey: minio.secretKey, bucket: "rec-direct", region: minio.region };
	const store = new S3Store(o);
	await store.init();
	const spool = join(await tempDir("direct-minio"), "spool");
	const { rec } = await makeRecorder(store, spool, { uploadTimeoutMs: 3_000 });
	const m = meta();
	try {
		await rec.drain(20_000);
		const s = await rec.openSession(m);
		for (const e of sqlEvents(12)) s.emit(e);
		await minio.stop();
		try {
			await s.close({ reason: "client-closed" });
			// Nothing could be stored: the session is spooled, sealed and signed, waiting.
			assert.deepEqual(await spoolSessions(spool), [m.sessionId]);
			assert.ok((await readdir(join(spool, "sessions", m.sessionId))).includes("manifest.jws"));
			assert.ok(rec.backlogBytes() > 0);
		} finally {
			await minio.start();
		}
		await rec.drain(60_000);
		const prefix = sessionPrefix(m);
		const v = await verifySession(store, prefix, (await loadStoreKeys(store)).set);
		assert.deepEqual(v.problems, []);
		assert.equal(v.events, 12);
		assert.equal((await loadSession(store, prefix)).document?.end.reason, "client-closed");
		assert.deepEqual(await spoolSessions(spool), []);
	} finally {
		if (!minio.running) await minio.start();
		await rec.stop();
	}
});

test("a spool folder left half-removed after its session was stored is deleted at start, not recovered and uploaded again", async () => {
	const store = new DirStore(await tempDir("direct-stored-store"));
	await store.init();
	const spool = join(await tempDir("direct-stored-spool"), "spool");
	// What a process killed between storing a session and removing its folder leaves behind.
	const m = meta();
	const stored = join(spool, "sessions", `.stored-${m.sessionId}`);
	await mkdir(stored, { recursive: true });
	await writeFile(join(stored, "open.json"), JSON.stringify({ format: "x", meta: m, prefix: sessionPrefix(m), keyId: "k" }));
	await writeFile(join(stored, "events.jsonl"), `${JSON.stringify({ ...sqlEvents(1)[0], seq: 1, time: new Date().toISOString(), offsetMs: 1 })}\n`);
	const { rec } = await makeRecorder(store, spool);
	try {
		await rec.drain(10_000);
		assert.deepEqual(await spoolSessions(spool), []);
		assert.deepEqual(await listSessions(store, {}), [], "nothing recovered from it");
	} finally {
		await rec.stop();
	}
});
