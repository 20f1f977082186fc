/**
 * The spool keeps sealed chunks in segment files (many chunks per file) instead of one file per
 * chunk. These tests hold the properties that matter: every chunk reaches the store byte for byte and
 * in order, finished segments go away once uploaded, a crash's leftovers (a torn chunk at a segment's
 * end, a segment no index line names) are cut away by recovery, nothing uploaded is uploaded again
 * after a restart, and a spool written before segments existed is still recovered.
 */
import assert from "node:assert/strict";
import { appendFile, readdir, readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { listSessions, loadSession, loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { loadRecordingKey } from "../../gateway/recording/keys.ts";
import { DirStore, type PutOptions } from "../../gateway/recording/store.ts";
import { verifySession } from "../../gateway/recording/verify.ts";
import { eventually, makeRecorder, meta, sqlEvents, startChild, tempDir } from "./fixtures.ts";

interface IndexLine {
	index: number;
	name: string;
	bytes: number;
	segment?: string;
	offset?: number;
}

async function indexLines(sessionDir: string): Promise<IndexLine[]> {
	const text = await readFile(join(sessionDir, "chunks.jsonl"), "utf8").catch(() => "");
	return text
		.split("\n")
		.filter(Boolean)
		.map((l) => JSON.parse(l) as IndexLine);
}

const segmentsIn = async (dir: string) => (await readdir(dir)).filter((f) => f.startsWith("segment-")).sort();

/** A DirStore that counts puts per key (the objects are still written to a real directory). */
class CountingStore extends DirStore {
	readonly puts = new Map<string, number>();
	override async put(key: string, body: Uint8Array, options?: PutOptions): Promise<void> {
		await super.put(key, body, options);
		this.puts.set(key, (this.puts.get(key) ?? 0) + 1);
	}
}

async function verifyAll(store: DirStore, expected: Map<string, number>): Promise<void> {
	const sessions = await listSessions(store, {});
	assert.deepEqual(sessions.map((s) => s.sessionId).sort(), [...expected.keys()].sort());
	const keys = (await loadStoreKeys(store)).set;
	for (const s of sessions) {
		assert.deepEqual((await verifySession(store, s.prefix, keys)).problems, [], `${s.sessionId} verifies`);
		const loaded = await loadSession(store, s.prefix);
		const n = expected.get(s.sessionId)!;
		assert.deepEqual(
			loaded.events.map((e) => e.seq),
			Array.from({ length: n }, (_, i) => i + 1),
			`every event of ${s.sessionId}, in order`,
		);
	}
}

/** A spool left by a recorder process killed while its store was down (test/recording/child-recorder.ts). */
async function crashedSpool(name: string) {
	const base = await tempDir(name);
	const spool = join(base, "spool");
	const keyFile = join(base, "key.jwk");
	const storeRoot = join(base, "store");
	await writeFile(storeRoot, "not a directory");
	const child = await startChild([spool, keyFile, "dir", storeRoot]);
	await child.kill();
	return { spool, keyFile, storeRoot, report: child.report };
}

/** A new recorder on that spool with the store back: both sessions are uploaded whole and verify. */
async function recoverAndVerify(crashed: Awaited<ReturnType<typeof crashedSpool>>): Promise<void> {
	await rm(crashed.storeRoot);
	const store = new DirStore(crashed.storeRoot);
	await store.init();
	const { rec } = await makeRecorder(store, crashed.spool, { key: await loadRecordingKey(crashed.keyFile) });
	try {
		await rec.drain(20_000);
		await verifyAll(
			store,
			new Map([
				[String(crashed.report.closed), Number(crashed.report.closedEvents)],
				[String(crashed.report.open), Number(crashed.report.openEvents)],
			]),
		);
	} finally {
		await rec.stop();
	}
}

test("sealed chunks share segment files; a segment is deleted once its chunks are uploaded and it is no longer written", async () => {
	const base = await tempDir("segments");
	const storeRoot = join(base, "store");
	const spool = join(base, "spool");
	// The store is unusable at first (its root is a plain file): sealed chunks stay in the spool.
	await writeFile(storeRoot, "not a directory");
	const store = new DirStore(storeRoot);
	const { rec } = await makeRecorder(store, spool, { chunkMaxBytes: 1024, segmentMaxBytes: 8 * 1024 });
	try {
		const m = meta();
		const s = await rec.openSession(m);
		const dir = join(spool, "sessions", m.sessionId);
		for (const e of sqlEvents(600)) s.emit(e);
		// The seal of the full chunks runs in the background: wait until the index stops growing.
		let seen = -1;
		await eventually("chunks sealed", async () => {
			const n = (await indexLines(dir)).length;
			const settled = n >= 40 && n === seen;
			seen = n;
			if (!settled) await new Promise((r) => setTimeout(r, 250));
			return settled;
		});
		const lines = await indexLines(dir);
		const segments = await segmentsIn(dir);
		assert.equal((await readdir(dir)).filter((f) => f.startsWith("chunk-")).length, 0, "no file per chunk");
		assert.ok(segments.length >= 3 && segments.length <= lines.length / 5, `${lines.length} chunks in ${segments.length} segments`);
		assert.deepEqual([...new Set(lines.map((l) => l.segment))].sort(), segments, "every segment is named by the index");
		// Within a segment, chunks sit back to back in index order; a finished segment holds nothing
		// else (the last one may hold a chunk being sealed right now, not yet indexed).
		for (const seg of segments) {
			const inSeg = lines.filter((l) => l.segment === seg);
			let end = 0;
			for (const l of inSeg) {
				assert.equal(l.offset, end, `${l.name} follows the previous chunk in ${seg}`);
				end += l.bytes;
			}
			const size = (await readFile(join(dir, seg))).length;
			if (seg === segments[segments.length - 1]) assert.ok(size >= end, `${seg} holds its chunks`);
			else assert.equal(size, end, `${seg} holds exactly its chunks`);
		}

		// The store comes back: everything sealed is uploaded and only the segment being written stays.
		await rm(storeRoot);
		await store.init();
		await eventually("sealed chunks uploaded", async () => (await segmentsIn(dir)).length === 1 && rec.backlogBytes() < 4096, 20_000);
		assert.equal((await segmentsIn(dir))[0], segments[segments.length - 1], "the segment still being written is kept");
		assert.equal((await readFile(join(dir, "uploaded"), "utf8")).trim(), String(lines[lines.length - 1]!.index));

		for (const e of sqlEvents(10)) s.emit(e);
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
		await assert.rejects(readdir(dir), /ENOENT/, "the session's spool folder is gone once uploaded");
		await verifyAll(store, new Map([[m.sessionId, 610]]));
	} finally {
		await rec.stop();
	}
});

test("a torn chunk at a segment's end and a segment no index line names are cut away by recovery; nothing flushed is lost", async () => {
	const crashed = await crashedSpool("segments-crash");
	// What a crash in the middle of a seal leaves: half a gzip member after the last indexed chunk,
	// and a new segment created just before the process died.
	const openDir = join(crashed.spool, "sessions", String(crashed.report.open));
	const segments = await segmentsIn(openDir);
	assert.ok(segments.length >= 1, "the open session has sealed chunks in a segment");
	await appendFile(join(openDir, segments[segments.length - 1]!), Buffer.from([0x1f, 0x8b, 0x08, 0x00, 0xde, 0xad, 0xbe, 0xef]));
	await writeFile(join(openDir, "segment-000900.bin"), "garbage from a seal that never reached the index");
	await recoverAndVerify(crashed);
});

test("chunks already in the store are not uploaded again when the gateway restarts", async () => {
	const base = await tempDir("segments-restart");
	const spool = join(base, "spool");
	const store = new CountingStore(join(base, "store"));
	await store.init();
	const first = await makeRecorder(store, spool, { chunkMaxBytes: 1024 });
	const m = meta();
	const s = await first.rec.openSession(m);
	for (const e of sqlEvents(200)) s.emit(e);
	const dir = join(spool, "sessions", m.sessionId);
	await eventually("sealed chunks uploaded", async () => {
		const lines = await indexLines(dir);
		return lines.length >= 10 && [...store.puts.keys()].filter((k) => k.endsWith(".jsonl.gz")).length === lines.length;
	});
	const uploadedBefore = [...store.puts.keys()].filter((k) => k.endsWith(".jsonl.gz"));
	// A graceful stop leaves the session open in the spool; the next process closes it from there.
	await first.rec.stop();

	const second = await makeRecorder(store, spool, { key: first.key });
	try {
		await second.rec.drain(20_000);
		for (const k of uploadedBefore) assert.equal(store.puts.get(k), 1, `${k} uploaded once`);
		const manifest = [...store.puts.keys()].filter((k) => k.endsWith("/manifest.jws"));
		assert.equal(manifest.length, 1, "the second process finished the session");
		assert.equal(store.puts.get(manifest[0]!), 1);
		await verifyAll(store, new Map([[m.sessionId, 200]]));
	} finally {
		await second.rec.stop();
	}
});

test("a spool written before segments existed (one file per sealed chunk) is still recovered and uploaded", async () => {
	const crashed = await crashedSpool("segments-legacy");
	// Rewrite both sessions' spool folders in the earlier layout: each indexed chunk as its own
	// chunk-NNNNNN.jsonl.gz file, index lines without segment/offset, no segment files.
	let legacyChunks = 0;
	for (const id of [crashed.report.closed, crashed.report.open]) {
		const dir = join(crashed.spool, "sessions", String(id));
		const out: string[] = [];
		for (const l of await indexLines(dir)) {
			const seg = await readFile(join(dir, l.segment!));
			await writeFile(join(dir, l.name), seg.subarray(l.offset!, l.offset! + l.bytes));
			const { segment: _s, offset: _o, ...rest } = l as IndexLine & Record<string, unknown>;
			out.push(JSON.stringify(rest));
			legacyChunks++;
		}
		await writeFile(join(dir, "chunks.jsonl"), out.length ? `${out.join("\n")}\n` : "");
		for (const seg of await segmentsIn(dir)) await rm(join(dir, seg));
	}
	assert.ok(legacyChunks >= 2, "the earlier layout holds sealed chunks");
	await recoverAndVerify(crashed);
});
