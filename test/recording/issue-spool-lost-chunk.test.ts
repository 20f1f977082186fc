/**
 * Regression (durability of recordings): when the gateway's spool lost part of a sealed chunk before
 * it was uploaded (a segment cut short or gone: disk damage found at recovery), recovery logged an
 * error and went on; the manifest still listed the chunk, session.json said `droppedEvents: 0`, and
 * `verify` reported "missing: chunk N … was deleted", blaming the bucket for what the gateway lost.
 * Such a chunk is now marked `lost: true` in the signed manifest (a closed session's manifest is
 * signed again), its events are counted in droppedEvents, and verify says it was lost in the spool.
 * Nothing short is ever uploaded, and `verify` and the viewer say INCOMPLETE, not FAILED / TAMPERED,
 * when such chunks are the only problem.
 */
import assert from "node:assert/strict";
import { readdir, readFile, rm, stat, truncate, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import Fastify from "fastify";
import { type CliIo, main } from "../../cli/recordings.ts";
import { registerViewer } from "../../gateway/admin/viewer.ts";
import { listSessions, loadSession, loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { loadRecordingKey } from "../../gateway/recording/keys.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { readManifestUnverified, verifySession } from "../../gateway/recording/verify.ts";
import { auditorIdentity, makeRecorder, startChild, tempDir } from "./fixtures.ts";

interface IndexLine {
	index: number;
	name: string;
	events: number;
	firstSeq: number;
	lastSeq: number;
	segment: string;
	offset: number;
	bytes: number;
}

test("a sealed chunk cut short in the spool is recorded as lost, for an open and a closed session", async () => {
	const base = await tempDir("lost-chunk");
	const spool = join(base, "spool");
	const keyFile = join(base, "key.jwk");
	const storeRoot = join(base, "store");
	await writeFile(storeRoot, "not a directory"); // the store is down while the child records
	const child = await startChild([spool, keyFile, "dir", storeRoot]);
	await child.kill();
	const ids = { open: String(child.report.open), closed: String(child.report.closed) };

	// Cut each session's last sealed chunk short in its segment, as disk damage would.
	const cut: Record<string, IndexLine> = {};
	for (const [which, id] of Object.entries(ids)) {
		const dir = join(spool, "sessions", id);
		const lines = (await readFile(join(dir, "chunks.jsonl"), "utf8")).split("\n").filter(Boolean).map((l) => JSON.parse(l) as IndexLine);
		const last = lines[lines.length - 1]!;
		assert.ok(lines.length >= 2, `${which} has several sealed chunks`);
		const size = (await stat(join(dir, last.segment))).size;
		assert.equal(size, last.offset + last.bytes);
		await truncate(join(dir, last.segment), last.offset + Math.floor(last.bytes / 2));
		cut[which] = last;
	}
	assert.ok((await readdir(join(spool, "sessions", ids.closed))).includes("manifest.jws"), "the closed session was signed before the crash");

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
	const sessions = await listSessions(store, {});
	assert.equal(sessions.length, 2);
	for (const [which, id] of Object.entries(ids)) {
		const s = sessions.find((x) => x.sessionId === id)!;
		const c = cut[which]!;
		const v = await verifySession(store, s.prefix, keys);
		assert.deepEqual(
			v.problems.map((p) => [p.object, p.kind]),
			[[c.name, "lost"]],
			`${which}: only the lost chunk is a problem: ${v.problems.map((p) => p.message).join("; ")}`,
		);
		assert.match(v.problems[0]!.message, new RegExp(`lost: chunk ${c.index} of \\d+ \\(events ${c.firstSeq}-${c.lastSeq}\\) never reached the store: the gateway found it damaged in its spool`));
		const loaded = await loadSession(store, s.prefix);
		assert.equal(loaded.document!.droppedEvents, c.events, `${which}: session.json counts the lost events`);
		assert.equal(loaded.unreadable.length, 0, "nothing short was uploaded");
		assert.ok(!loaded.events.some((e) => e.seq >= c.firstSeq && e.seq <= c.lastSeq));
		const manifest = readManifestUnverified((await store.get(`${s.prefix}manifest.jws`)).toString());
		assert.deepEqual(manifest.chunks.filter((x) => x.lost).map((x) => x.name), [c.name]);
	}

	// The auditor's tools say INCOMPLETE (the gateway's own loss), not TAMPERED / FAILED.
	const open = sessions.find((x) => x.sessionId === ids.open)!;
	const out: string[] = [];
	const cli: CliIo = { env: {}, stdout: (t) => void out.push(t), stderr: () => {}, stderrIsTty: false, sleep: async () => {} };
	assert.equal(await main(["verify", open.prefix, "--dir", storeRoot], cli), 1);
	assert.match(out.join(""), /: INCOMPLETE: everything verifies, but the gateway lost 1 chunk\(s\) from its spool before upload/);
	assert.doesNotMatch(out.join(""), /FAILED/);
	const identity = auditorIdentity("https://issuer.test");
	const app = Fastify();
	await registerViewer(app, { store, auditorGroup: "auditors", authenticate: () => identity, publicKeys: async () => keys });
	try {
		const html = (await app.inject({ url: `/viewer/session?prefix=${encodeURIComponent(open.prefix)}`, headers: { authorization: "Bearer x" } })).body;
		assert.match(html, /<span class="badge warn" id="verify">INCOMPLETE<\/span> the gateway lost 1 chunk\(s\) from its spool/);
		assert.doesNotMatch(html, /TAMPERED/);
	} finally {
		await app.close();
	}
});
