/**
 * Regression (red-team of recording readers): verify and loadSession read every object whole before
 * looking at it. A bucket writer who put a multi-GiB object in place of a chunk, session.json or
 * manifest.jws made verify (the viewer's badges, in the gateway process; the auditor's CLI) load it
 * into memory, or throw instead of reporting (over 2 GiB the read fails: verification errored out
 * rather than saying "modified"). Sizes come with the listing: an object larger than what was signed
 * (or than any manifest / anything the gateway writes) is now reported without being read. The files
 * here are sparse: they take no disk space.
 */
import assert from "node:assert/strict";
import { open } from "node:fs/promises";
import { join } from "node:path";
import { before, test } from "node:test";
import { loadSession, loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { chunkName, KEYS_PREFIX, MANIFEST_FILE, SESSION_FILE, sessionPrefix } from "../../gateway/recording/format.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { verifySession } from "../../gateway/recording/verify.ts";
import { makeRecorder, meta, sqlEvents, tempDir } from "./fixtures.ts";

let root: string;
let store: DirStore;
const m = meta();
const prefix = sessionPrefix(m);
const GIB3 = 3 * 1024 * 1024 * 1024;

before(async () => {
	root = await tempDir("oversized");
	store = new DirStore(root);
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("oversized-spool"));
	try {
		const s = await rec.openSession(m);
		for (const e of sqlEvents(3)) s.emit(e);
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
});

/** Make the object `name` a sparse file of `size` bytes (its bytes kept to restore). */
async function inflate(name: string, size: number): Promise<() => Promise<void>> {
	const original = await store.get(prefix + name);
	const fh = await open(join(root, prefix, name), "r+");
	await fh.truncate(size);
	await fh.close();
	return async () => {
		const f = await open(join(root, prefix, name), "r+");
		await f.truncate(0);
		await f.write(original, 0, original.length, 0);
		await f.close();
	};
}

test("a chunk or session.json far larger than signed is reported as modified without being read", async () => {
	const keys = (await loadStoreKeys(store)).set;
	assert.equal((await verifySession(store, prefix, keys)).ok, true);
	const restoreChunk = await inflate(chunkName(1), GIB3);
	const restoreDoc = await inflate(SESSION_FILE, GIB3);
	try {
		const v = await verifySession(store, prefix, keys);
		assert.equal(v.ok, false);
		const byObject = new Map(v.problems.map((p) => [p.object, p]));
		assert.match(byObject.get(chunkName(1))?.message ?? "", new RegExp(`modified: ${GIB3} bytes, the signed manifest says \\d+ \\(not read\\)`));
		assert.match(byObject.get(SESSION_FILE)?.message ?? "", new RegExp(`modified: ${GIB3} bytes, the signed manifest says \\d+ \\(not read\\)`));

		const loaded = await loadSession(store, prefix);
		assert.equal(loaded.document, undefined);
		assert.deepEqual(loaded.unreadable.map((u) => u.replace(/\(\d+\)/, "(N)")), [
			`session.json not read: ${GIB3} bytes, more than the gateway writes (N)`,
			`chunk-000001.jsonl.gz not read: ${GIB3} bytes, more than the gateway writes (N)`,
		]);
	} finally {
		await restoreChunk();
		await restoreDoc();
	}
	assert.equal((await verifySession(store, prefix, keys)).ok, true);
});

test("a manifest larger than any manifest is not read", async () => {
	const keys = (await loadStoreKeys(store)).set;
	const restore = await inflate(MANIFEST_FILE, GIB3);
	try {
		const v = await verifySession(store, prefix, keys);
		assert.deepEqual(v.problems.map((p) => [p.object, p.kind]), [[MANIFEST_FILE, "malformed"]]);
		assert.match(v.problems[0]!.message, /more than a manifest can be .*not read/);
	} finally {
		await restore();
	}
});

test("an object under recordings/keys/ larger than any key is skipped, not read", async () => {
	const before = (await loadStoreKeys(store)).jwks.length;
	await store.put(`${KEYS_PREFIX}huge.jwk`, Buffer.from("{}"));
	const fh = await open(join(root, KEYS_PREFIX, "huge.jwk"), "r+");
	await fh.truncate(GIB3);
	await fh.close();
	// The same directory through a store that notes every read.
	const reads: string[] = [];
	const watched = new (class extends DirStore {
		override async get(key: string): Promise<Buffer> {
			reads.push(key);
			return super.get(key);
		}
	})(root);
	try {
		assert.equal((await loadStoreKeys(watched)).jwks.length, before);
		assert.ok(!reads.includes(`${KEYS_PREFIX}huge.jwk`), "the huge object was not read");
	} finally {
		await store.remove(`${KEYS_PREFIX}huge.jwk`);
	}
});
