/**
 * Regression (red-team of recording durability/tamper evidence): whoever can write the recordings
 * bucket could replace a chunk with a few hundred KiB of gzip that inflate to hundreds of MiB or more.
 * Every reader inflated chunks whole before looking at them: `loadSession` (the CLI's show / replay /
 * export and the viewer, which runs in the gateway's admin server, so the gateway process itself) and
 * `verifySession` (to describe a chunk whose hash did not match). A decompression bomb took the auditor's
 * tools, or the gateway, out of memory. Readers now inflate at most MAX_CHUNK_TEXT_BYTES per chunk and
 * MAX_SESSION_TEXT_BYTES per session; a chunk beyond that is reported, never read.
 */
import assert from "node:assert/strict";
import { gzipSync } from "node:zlib";
import { before, test } from "node:test";
import { loadSession } from "../../gateway/recording/catalog.ts";
import { chunkName, decodeChunk, FORMAT_VERSION, MAX_CHUNK_TEXT_BYTES, sessionPrefix } from "../../gateway/recording/format.ts";
import { publicKeySet } from "../../gateway/recording/keys.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { verifySession } from "../../gateway/recording/verify.ts";
import { makeRecorder, meta, sqlEvents, tempDir } from "./fixtures.ts";

let store: DirStore;
let prefix: string;
let sessionId: string;
let keys: Awaited<ReturnType<typeof publicKeySet>>;

before(async () => {
	store = new DirStore(await tempDir("bomb"));
	await store.init();
	// Small chunks: the session gets several, so the per-session budget can be exercised.
	const { rec, key } = await makeRecorder(store, await tempDir("bomb-spool"), { chunkMaxBytes: 512 });
	keys = await publicKeySet([key.publicJwk]);
	const m = meta();
	prefix = sessionPrefix(m);
	sessionId = m.sessionId;
	try {
		const s = await rec.openSession(m);
		for (const e of sqlEvents(30)) s.emit(e);
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
});

/** A well-formed chunk (header + one statement event) whose SQL is `textBytes` long: gzip makes it tiny. */
function bomb(textBytes: number): Buffer {
	const header = JSON.stringify({ format: FORMAT_VERSION, kind: "chunk", sessionId, index: 1, prev: null, firstSeq: 1, lastSeq: 1, events: 1 });
	const head = `${header}\n{"type":"statement","seq":1,"time":"2027-01-01T00:00:00.000Z","offsetMs":0,"decision":"allow","statementKinds":["select"],"sql":"`;
	const tail = '"}\n';
	const text = Buffer.alloc(textBytes, "A");
	text.write(head, 0);
	text.write(tail, textBytes - tail.length);
	return gzipSync(text, { level: 9 });
}

test("a chunk that inflates past the limit is reported, not read, by loadSession and verifySession", async () => {
	const original = await store.get(prefix + chunkName(1));
	const body = bomb(MAX_CHUNK_TEXT_BYTES + 16 * 1024 * 1024);
	assert.ok(body.length < 200 * 1024, `the bomb is small on disk (${body.length} bytes)`);
	await store.put(prefix + chunkName(1), body);
	try {
		const s = await loadSession(store, prefix);
		assert.equal(s.unreadable.length, 1, "the bomb chunk is listed as unreadable");
		assert.match(s.unreadable[0]!, /chunk-000001\.jsonl\.gz inflates to more than 64 MiB of text: not read/);
		assert.ok(!s.events.some((e) => e.type === "statement" && e.sql.startsWith("AAAA")), "none of the bomb's events were loaded");
		assert.ok(s.events.length > 0, "the other chunks still load");

		const v = await verifySession(store, prefix, keys);
		assert.equal(v.ok, false);
		const p = v.problems.find((x) => x.object === chunkName(1));
		assert.equal(p?.kind, "modified");
		assert.match(p!.message, /inflates to more than 64 MiB of text: not read/);
	} finally {
		await store.put(prefix + chunkName(1), original);
	}
	assert.equal((await verifySession(store, prefix, keys)).ok, true, "the restored session verifies");
});

test("loadSession stops inflating once the session's chunks reach the session budget", async () => {
	const full = await loadSession(store, prefix);
	assert.equal(full.unreadable.length, 0);
	const chunks = [];
	for await (const o of store.list(prefix)) if (/chunk-\d+/.test(o.key)) chunks.push(o.key);
	assert.ok(chunks.length >= 3, `the session has several chunks (${chunks.length})`);
	// A budget of one chunk and a bit: the first loads, the rest are reported.
	const first = decodeChunk(chunkName(1), await store.get(prefix + chunkName(1)));
	const limited = await loadSession(store, prefix, { maxSessionTextBytes: first.textBytes + 10 });
	assert.ok(limited.events.length > 0 && limited.events.length < full.events.length, `${limited.events.length} of ${full.events.length} events loaded`);
	assert.ok(limited.unreadable.length >= chunks.length - 2, limited.unreadable.join("\n"));
	assert.ok(limited.unreadable.some((u) => /not read: the session's chunks inflate to more than one load reads/.test(u)), limited.unreadable.join("\n"));
});
