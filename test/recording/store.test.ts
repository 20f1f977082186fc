import assert from "node:assert/strict";
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
