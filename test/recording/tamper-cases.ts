/**
 * Tampering with each kind of object must make verifySession fail with a precise message. Shared by
 * the directory-store and MinIO suites: the same cases run against both stores.
 */
import assert from "node:assert/strict";
import { gunzipSync, gzipSync } from "node:zlib";
import type { TestContext } from "node:test";
import { loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { CompactSign } from "jose";
import type { RecordingEvent } from "../../gateway/recording/events.ts";
import { generateRecordingKey, type PublicKeySet } from "../../gateway/recording/keys.ts";
import type { DiskRecorder } from "../../gateway/recording/recorder.ts";
import type { RecordingStore } from "../../gateway/recording/store.ts";
import { readManifestUnverified, type VerifyProblem, verifySession } from "../../gateway/recording/verify.ts";
import { blockedAndApproved, meta, sqlEvents } from "./fixtures.ts";

/** Record an SSH-like session with terminal output (4+ chunks) and return its prefix. */
export async function recordSession(rec: DiskRecorder, n = 60): Promise<string> {
	const m = meta({ protocol: "ssh", connection: "db-primary", target: { login: "lee" } });
	const s = await rec.openSession(m);
	s.emit({ type: "terminal", stream: "r", data: "100x30" });
	for (let i = 0; i < n; i++) {
		s.emit({ type: "terminal", stream: "o", data: `line ${i} ${"x".repeat(40)}\r\n` });
		const ev: RecordingEvent = { type: "exec", command: `echo ${i}`, decision: "allow", exitCode: 0 };
		s.emit(ev);
	}
	for (const e of blockedAndApproved) s.emit(e);
	for (const e of sqlEvents(3)) s.emit(e);
	await s.close({ reason: "client-closed" });
	await rec.drain(30_000);
	const { sessionPrefix } = await import("../../gateway/recording/format.ts");
	return sessionPrefix(m);
}

async function rewrite(store: RecordingStore, key: string, f: (b: Buffer) => Buffer | Uint8Array): Promise<void> {
	const head = await store.head(key);
	const body = await store.get(key);
	await store.put(key, f(body), { metadata: head?.metadata ?? {} });
}

function expectProblem(problems: VerifyProblem[], object: string, kind: VerifyProblem["kind"], re: RegExp): void {
	const hit = problems.find((p) => p.object === object && p.kind === kind && re.test(p.message));
	assert.ok(hit, `expected a ${kind} problem on ${object} matching ${re}; got:\n${problems.map((p) => `  ${p.kind} ${p.message}`).join("\n")}`);
}

export async function runTamperCases(t: TestContext, rec: DiskRecorder, store: RecordingStore): Promise<void> {
	let keys: PublicKeySet;
	const fresh = async () => {
		const prefix = await recordSession(rec);
		keys = (await loadStoreKeys(store)).set;
		const v = await verifySession(store, prefix, keys);
		assert.deepEqual(v.problems, [], "untouched session verifies");
		assert.ok(v.chunks >= 4, `need >= 4 chunks, got ${v.chunks}`);
		return { prefix, chunks: v.chunks };
	};
	const check = async (prefix: string) => {
		const v = await verifySession(store, prefix, keys);
		assert.equal(v.ok, false);
		return v.problems;
	};

	await t.test("modified chunk (a byte flipped)", async () => {
		const { prefix } = await fresh();
		await rewrite(store, `${prefix}chunk-000002.jsonl.gz`, (b) => {
			const c = Buffer.from(b);
			c[c.length - 12] = c[c.length - 12]! ^ 0xff;
			return c;
		});
		expectProblem(await check(prefix), "chunk-000002.jsonl.gz", "modified", /modified: SHA-256 is [0-9a-f]{64}, the signed manifest says/);
	});
	await t.test("modified chunk (events edited and re-gzipped)", async () => {
		const { prefix } = await fresh();
		await rewrite(store, `${prefix}chunk-000002.jsonl.gz`, (b) => gzipSync(gunzipSync(b).toString().replace(/echo \d+/, "echo hidden")));
		expectProblem(await check(prefix), "chunk-000002.jsonl.gz", "modified", /modified/);
	});
	await t.test("missing chunk", async () => {
		const { prefix, chunks } = await fresh();
		await store.remove(`${prefix}chunk-000003.jsonl.gz`);
		expectProblem(await check(prefix), "chunk-000003.jsonl.gz", "missing", new RegExp(`missing: chunk 3 of ${chunks} \\(events \\d+-\\d+\\) was deleted`));
	});
	await t.test("reordered chunks (2 and 3 swapped)", async () => {
		const { prefix } = await fresh();
		const b2 = await store.get(`${prefix}chunk-000002.jsonl.gz`);
		const b3 = await store.get(`${prefix}chunk-000003.jsonl.gz`);
		await store.put(`${prefix}chunk-000002.jsonl.gz`, b3);
		await store.put(`${prefix}chunk-000003.jsonl.gz`, b2);
		const problems = await check(prefix);
		expectProblem(problems, "chunk-000002.jsonl.gz", "reordered", /holds chunk 3's content/);
		expectProblem(problems, "chunk-000003.jsonl.gz", "reordered", /holds chunk 2's content/);
	});
	await t.test("truncated chunk", async () => {
		const { prefix } = await fresh();
		await rewrite(store, `${prefix}chunk-000002.jsonl.gz`, (b) => b.subarray(0, Math.floor(b.length / 2)));
		expectProblem(await check(prefix), "chunk-000002.jsonl.gz", "truncated", /truncated: \d+ of \d+ bytes/);
	});
	await t.test("truncated session (last chunk deleted)", async () => {
		const { prefix, chunks } = await fresh();
		const last = `chunk-${String(chunks).padStart(6, "0")}.jsonl.gz`;
		await store.remove(prefix + last);
		expectProblem(await check(prefix), last, "missing", new RegExp(`chunk ${chunks} of ${chunks}`));
	});
	await t.test("chunk appended after signing", async () => {
		const { prefix, chunks } = await fresh();
		const extra = `chunk-${String(chunks + 1).padStart(6, "0")}.jsonl.gz`;
		await store.put(prefix + extra, await store.get(`${prefix}chunk-000001.jsonl.gz`));
		expectProblem(await check(prefix), extra, "unexpected", /not listed in the signed manifest/);
	});
	await t.test("modified session.json", async () => {
		const { prefix } = await fresh();
		await rewrite(store, `${prefix}session.json`, (b) => Buffer.from(b.toString().replace(/"username": "ci-deployer"/, '"username": "someone-else"')));
		expectProblem(await check(prefix), "session.json", "modified", /session.json: modified: SHA-256 is/);
	});
	await t.test("session.json metadata edited (searches would lie)", async () => {
		const { prefix } = await fresh();
		const key = `${prefix}session.json`;
		const head = await store.head(key);
		await store.put(key, await store.get(key), { metadata: { ...head!.metadata, "has-blocked": "false" } });
		expectProblem(await check(prefix), "session.json", "metadata", /has-blocked="false" disagrees with the signed session.json \("true"\)/);
	});
	await t.test("deleted manifest", async () => {
		const { prefix } = await fresh();
		await store.remove(`${prefix}manifest.jws`);
		expectProblem(await check(prefix), "manifest.jws", "missing", /missing/);
	});
	await t.test("manifest payload edited (signature no longer matches)", async () => {
		const { prefix } = await fresh();
		await rewrite(store, `${prefix}manifest.jws`, (b) => {
			const [h, p, s] = b.toString().trim().split(".");
			const payload = JSON.parse(Buffer.from(p!, "base64url").toString());
			payload.chunks.pop();
			return Buffer.from(`${h}.${Buffer.from(JSON.stringify(payload)).toString("base64url")}.${s}`);
		});
		expectProblem(await check(prefix), "manifest.jws", "signature", /signature verification failed/);
	});
	await t.test("manifest re-signed with a key that is not trusted", async () => {
		const { prefix } = await fresh();
		const other = (await generateRecordingKey()).key;
		const manifest = readManifestUnverified((await store.get(`${prefix}manifest.jws`)).toString());
		const jws = await new CompactSign(Buffer.from(JSON.stringify(manifest))).setProtectedHeader({ alg: other.alg, kid: other.kid, typ: "drawbridge-manifest+jws" }).sign(other.privateKey);
		await store.put(`${prefix}manifest.jws`, Buffer.from(jws));
		expectProblem(await check(prefix), "manifest.jws", "signature", new RegExp(`signed with key "${other.kid}", which is not among the \\d+ trusted`));
	});
	await t.test("modified terminal.cast", async () => {
		const { prefix } = await fresh();
		await rewrite(store, `${prefix}terminal.cast`, (b) => Buffer.from(b.toString().replace("line 7", "line X")));
		expectProblem(await check(prefix), "terminal.cast", "modified", /terminal.cast: modified: SHA-256 is/);
	});
	await t.test("truncated terminal.cast", async () => {
		const { prefix } = await fresh();
		await rewrite(store, `${prefix}terminal.cast`, (b) => b.subarray(0, 200));
		expectProblem(await check(prefix), "terminal.cast", "truncated", /truncated/);
	});
	await t.test("session copied to another prefix", async () => {
		const { prefix } = await fresh();
		const moved = prefix.replace("/db-primary/", "/other-host/");
		for await (const o of store.list(prefix)) {
			const head = await store.head(o.key);
			await store.put(moved + o.key.slice(prefix.length), await store.get(o.key), { metadata: head?.metadata ?? {} });
		}
		expectProblem(await check(moved), moved, "unexpected", /the manifest was signed for .*db-primary.*: the session was copied or moved/);
	});
}
