import assert from "node:assert/strict";
import { appendFile, mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import { isRecordingError } from "../../gateway/recording/errors.ts";
import { keySegment, metaDecode, metaValue, sessionPrefix } from "../../gateway/recording/format.ts";
import { DirStore, parseEndpoint, parseObjectLock } from "../../gateway/recording/store.ts";
import { tempDir } from "./fixtures.ts";

test("parseObjectLock and parseEndpoint", () => {
	assert.equal(parseObjectLock(undefined), undefined);
	assert.equal(parseObjectLock("off"), undefined);
	assert.deepEqual(parseObjectLock("GOVERNANCE:365"), { mode: "GOVERNANCE", days: 365 });
	assert.deepEqual(parseObjectLock("COMPLIANCE:2555"), { mode: "COMPLIANCE", days: 2555 });
	for (const bad of ["governance:1", "GOVERNANCE", "GOVERNANCE:0", "WORM:30"]) {
		assert.throws(() => parseObjectLock(bad), (e: unknown) => isRecordingError(e, "CONFIG"));
	}
	assert.deepEqual(parseEndpoint("http://127.0.0.1:9000"), { endPoint: "127.0.0.1", port: 9000, useSSL: false });
	assert.deepEqual(parseEndpoint("https://minio.example"), { endPoint: "minio.example", port: 443, useSSL: true });
	assert.throws(() => parseEndpoint("minio:9000"), /invalid S3 endpoint/);
});

test("key layout: UTC date folders, sanitised segments; metadata values stay ASCII and round-trip", () => {
	assert.equal(
		sessionPrefix({ startedAt: "2027-03-31T23:59:59.999-02:00", connection: "orders prod/ü", sessionId: "abc" }),
		"recordings/2027/04/01/orders_prod__/abc/",
	);
	assert.equal(keySegment(".."), "_");
	assert.equal(keySegment(".hidden"), "_hidden");
	assert.equal(keySegment(""), "_");
	const v = metaValue("Zoë 100% <ok>");
	assert.match(v, /^[\x20-\x7e]*$/);
	assert.equal(metaDecode(v), "Zoë 100% <ok>");
});

test("DirStore: refuses keys that escape its root; lists with and without delimiter in key order", async () => {
	const store = new DirStore(await tempDir("dirstore"));
	await store.init();
	await assert.rejects(store.put("../escape", Buffer.from("x")), /invalid object key/);
	await assert.rejects(store.put("/abs", Buffer.from("x")), /invalid object key/);
	await store.put("recordings/2027/01/02/c/s/b.txt", Buffer.from("b"), { metadata: { identity: "x" } });
	await store.put("recordings/2027/01/02/c/s/a.txt", Buffer.from("a"));
	await store.put("recordings/2027/01/03/c/t/a.txt", Buffer.from("a"));
	const keys: string[] = [];
	for await (const o of store.list("recordings/2027/01/02/")) keys.push(o.key);
	assert.deepEqual(keys, ["recordings/2027/01/02/c/s/a.txt", "recordings/2027/01/02/c/s/b.txt"]);
	const dirs: string[] = [];
	for await (const o of store.list("recordings/2027/01/", { delimiter: true })) dirs.push(o.key);
	assert.deepEqual(dirs, ["recordings/2027/01/02/", "recordings/2027/01/03/"]);
	const withMeta: Record<string, string>[] = [];
	for await (const o of store.list("recordings/2027/01/02/c/s/b", { withMetadata: true })) withMeta.push(o.metadata ?? {});
	assert.deepEqual(withMeta, [{ identity: "x" }]);
	assert.equal(await store.head("recordings/none"), undefined);
	await assert.rejects(store.get("recordings/none"), (e: unknown) => isRecordingError(e, "NOT_FOUND"));
});

test("DirStore metadata: one index file per folder (the last put of a key wins, a torn line is skipped); metadata written by earlier versions beside each object is still read", async () => {
	const root = await tempDir("dirstore-meta");
	const store = new DirStore(root);
	await store.init();
	const folder = "recordings/2027/01/02/c/s";
	for (let i = 1; i <= 20; i++) await store.put(`${folder}/chunk-${i}.jsonl.gz`, Buffer.from(`c${i}`), { metadata: { chunk: String(i) } });
	await store.put(`${folder}/chunk-3.jsonl.gz`, Buffer.from("c3 again"), { metadata: { chunk: "3", again: "yes" } });
	// One metadata file for the folder, not one per object.
	assert.deepEqual(await readdir(join(root, ".metadata", ...folder.split("/"))), ["objects.jsonl"]);
	assert.deepEqual((await store.head(`${folder}/chunk-3.jsonl.gz`))?.metadata, { chunk: "3", again: "yes" });
	assert.deepEqual((await store.head(`${folder}/chunk-7.jsonl.gz`))?.metadata, { chunk: "7" });
	// A put cut short by a crash leaves a torn last line: ignored, the rest still reads.
	await appendFile(join(root, ".metadata", ...folder.split("/"), "objects.jsonl"), '{"key":"recordings/2027/01/02/c/s/chunk-21.jsonl.gz","metad');
	const listed = new Map<string, Record<string, string> | undefined>();
	for await (const o of store.list(`${folder}/`, { withMetadata: true })) listed.set(o.key, o.metadata);
	assert.equal(listed.size, 20);
	assert.deepEqual(listed.get(`${folder}/chunk-20.jsonl.gz`), { chunk: "20" });
	// An object stored by an earlier DirStore: its metadata in .metadata/<key>.json.
	const legacy = "recordings/2026/12/31/c/old/session.json";
	await mkdir(join(root, ...legacy.split("/").slice(0, -1)), { recursive: true });
	await writeFile(join(root, ...legacy.split("/")), "{}");
	await mkdir(join(root, ".metadata", ...legacy.split("/").slice(0, -1)), { recursive: true });
	await writeFile(join(root, ".metadata", `${legacy}.json`), JSON.stringify({ contentType: "application/json", metadata: { identity: "old" } }));
	assert.deepEqual((await store.head(legacy))?.metadata, { identity: "old" });
	for await (const o of store.list("recordings/2026/", { withMetadata: true })) assert.deepEqual(o.metadata, { identity: "old" });
	// Folders removed behind the store's back are made again.
	await rm(join(root, "recordings"), { recursive: true });
	await rm(join(root, ".metadata"), { recursive: true });
	await store.put(`${folder}/chunk-1.jsonl.gz`, Buffer.from("c1"), { metadata: { chunk: "1" } });
	assert.deepEqual((await store.head(`${folder}/chunk-1.jsonl.gz`))?.metadata, { chunk: "1" });
});
