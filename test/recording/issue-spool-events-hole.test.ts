/**
 * Regression (durability of recordings): recovery re-seals a crashed session's unsealed events from
 * its spool file events.jsonl, skipping lines it cannot parse. Lines are only torn at the end by a
 * crash, but disk damage (a power loss on a filesystem that can leave unwritten blocks as zeros
 * inside a file) can make lines in the middle unreadable. The events after such a hole were sealed
 * with their seqs as they were: a chunk with a gap, which never verifies ("event k has seq …"), so
 * the whole recording read as tampered, and session.json said nothing was dropped. Now the hole
 * becomes a notice event saying how many events are missing, the events after it are numbered on,
 * droppedEvents counts the missing ones, and the recording verifies.
 */
import assert from "node:assert/strict";
import { readFile, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { gunzipSync } from "node:zlib";
import { listSessions, loadSession, loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { loadRecordingKey } from "../../gateway/recording/keys.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { verifySession } from "../../gateway/recording/verify.ts";
import { makeRecorder, startChild, tempDir } from "./fixtures.ts";

test("unreadable lines inside the spool's events file become a notice; the recovered recording verifies", async () => {
	const base = await tempDir("events-hole");
	const spool = join(base, "spool");
	const keyFile = join(base, "key.jwk");
	const storeRoot = join(base, "store");
	await writeFile(storeRoot, "not a directory"); // the store is down while the child records
	const child = await startChild([spool, keyFile, "dir", storeRoot]);
	await child.kill();
	const openId = String(child.report.open);
	const total = Number(child.report.openEvents);
	const dir = join(spool, "sessions", openId);

	// Unseal the last sealed chunk (a crash before its index line: its events are still in
	// events.jsonl), then zero two lines in the middle of events.jsonl, as disk damage would.
	const lines = (await readFile(join(dir, "chunks.jsonl"), "utf8")).split("\n").filter(Boolean);
	let events = (await readFile(join(dir, "events.jsonl"), "utf8")).split("\n").filter(Boolean);
	while (events.length < 6) {
		assert.ok(lines.length > 1, "enough sealed chunks to unseal");
		const last = JSON.parse(lines.pop()!) as { segment: string; offset: number; bytes: number };
		const text = gunzipSync((await readFile(join(dir, last.segment))).subarray(last.offset, last.offset + last.bytes)).toString("utf8");
		events = [...text.split("\n").filter(Boolean).slice(1), ...events];
	}
	const holeSeqs = [JSON.parse(events[2]!).seq as number, JSON.parse(events[3]!).seq as number];
	events[2] = "\0".repeat(events[2]!.length);
	events[3] = "\0".repeat(events[3]!.length);
	await writeFile(join(dir, "events.jsonl"), `${events.join("\n")}\n`);
	await writeFile(join(dir, "chunks.jsonl"), `${lines.join("\n")}\n`);

	await rm(storeRoot);
	const store = new DirStore(storeRoot);
	await store.init();
	const { rec } = await makeRecorder(store, spool, { key: await loadRecordingKey(keyFile) });
	try {
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
	const keys = (await loadStoreKeys(store)).set;
	const open = (await listSessions(store, {})).find((s) => s.sessionId === openId)!;
	assert.deepEqual((await verifySession(store, open.prefix, keys)).problems, [], "the recovered recording verifies");
	const loaded = await loadSession(store, open.prefix);
	assert.equal(loaded.document!.droppedEvents, 2);
	// total - 2 lost + 1 notice, numbered 1, 2, 3 … without a gap.
	assert.deepEqual(
		loaded.events.map((e) => e.seq),
		Array.from({ length: total - 1 }, (_, i) => i + 1),
	);
	const notice = loaded.events[holeSeqs[0]! - 1]!;
	assert.equal(notice.type, "notice");
	assert.match(notice.type === "notice" ? notice.message : "", new RegExp(`^2 event\\(s\\) \\(originally seq ${holeSeqs[0]}-${holeSeqs[1]}\\) were lost from the gateway's spool`));
	assert.equal(loaded.document!.counts.notices, 1);
});
