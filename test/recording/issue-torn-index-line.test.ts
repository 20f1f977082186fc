/**
 * Regression (durability of recordings): a crash while a seal appended its line to the spool's chunk
 * index (chunks.jsonl) left a torn last line without its newline. Recovery skipped that line and
 * re-sealed the chunk from events.jsonl, but the worker appended the new index line right after the
 * torn bytes: one unreadable line. The uploader looks chunks up in the index, so the session stopped
 * at "chunk N missing from the spool index" for good (never completed, never verified), and the next
 * restart cut chunk N's bytes from its segment after events.jsonl had been emptied: lost. Recovery
 * now cuts the torn tail off the index before anything is appended to it.
 */
import assert from "node:assert/strict";
import { readFile, rm, writeFile } from "node:fs/promises";
import { gunzipSync } from "node:zlib";
import { join } from "node:path";
import { test } from "node:test";
import { listSessions, loadSession, loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { loadRecordingKey } from "../../gateway/recording/keys.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { verifySession } from "../../gateway/recording/verify.ts";
import { makeRecorder, startChild, tempDir } from "./fixtures.ts";

test("a torn last line in the spool's chunk index does not stop the session's upload", async () => {
	const base = await tempDir("torn-index");
	const spool = join(base, "spool");
	const keyFile = join(base, "key.jwk");
	const storeRoot = join(base, "store");
	await writeFile(storeRoot, "not a directory"); // the store is down while the child records
	const child = await startChild([spool, keyFile, "dir", storeRoot]);
	await child.kill();
	const openId = String(child.report.open);
	const dir = join(spool, "sessions", openId);
	// What a crash in the middle of a seal's index append leaves: the chunk is in its segment, its
	// index line torn, its events still in events.jsonl (emptied only after the index line is durable).
	const lines = (await readFile(join(dir, "chunks.jsonl"), "utf8")).split("\n").filter(Boolean);
	assert.ok(lines.length >= 2, "the open session has sealed chunks");
	const last = JSON.parse(lines[lines.length - 1]!) as { segment: string; offset: number; bytes: number };
	const segment = await readFile(join(dir, last.segment));
	const text = gunzipSync(segment.subarray(last.offset, last.offset + last.bytes)).toString("utf8");
	const unsealed = (await readFile(join(dir, "events.jsonl"), "utf8"));
	await writeFile(join(dir, "events.jsonl"), text.slice(text.indexOf("\n") + 1) + unsealed);
	const torn = lines[lines.length - 1]!.slice(0, 40);
	await writeFile(join(dir, "chunks.jsonl"), `${lines.slice(0, -1).join("\n")}\n${torn}`);

	await rm(storeRoot);
	const store = new DirStore(storeRoot);
	await store.init();
	const errors: string[] = [];
	const { rec } = await makeRecorder(store, spool, {
		key: await loadRecordingKey(keyFile),
		logger: { info() {}, warn() {}, error: (o: unknown, m?: string) => void errors.push(`${m} ${JSON.stringify(o)}`) },
	});
	try {
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
	const keys = (await loadStoreKeys(store)).set;
	const sessions = await listSessions(store, {});
	const open = sessions.find((s) => s.sessionId === openId);
	assert.ok(open, `the recovered session reached the store (errors: ${errors.join("; ")})`);
	assert.deepEqual((await verifySession(store, open.prefix, keys)).problems, []);
	const loaded = await loadSession(store, open.prefix);
	assert.deepEqual(
		loaded.events.map((e) => e.seq),
		Array.from({ length: Number(child.report.openEvents) }, (_, i) => i + 1),
		"every event, in order",
	);
});
