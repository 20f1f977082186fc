/**
 * Regression (red-team of the directory store, standalone mode's "bucket"): DirStore listed only
 * plain files but read any key through symbolic links. Whoever can write the recordings directory
 * (not the gateway's key file, mode 0600) could link `terminal.cast` or `session.json` to a file the
 * gateway process can read, its recording key say, and have the gateway read it: the viewer (in the
 * gateway) served a linked terminal.cast as is; `verify` followed a chunk linked to /dev/zero and read
 * forever (out of memory). A key read now refuses links anywhere on its path and anything that is not
 * a regular file (FIFO, device): as listing does, it is "not found".
 */
import assert from "node:assert/strict";
import { mkdir, rename, symlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { before, test } from "node:test";
import { loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { chunkName, sessionPrefix, TERMINAL_FILE } from "../../gateway/recording/format.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { verifySession } from "../../gateway/recording/verify.ts";
import { makeRecorder, meta, tempDir } from "./fixtures.ts";

let root: string;
let store: DirStore;
let secretDir: string;
const m = meta({ protocol: "ssh" });
const prefix = sessionPrefix(m);

before(async () => {
	root = await tempDir("symlink");
	store = new DirStore(root);
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("symlink-spool"));
	try {
		const s = await rec.openSession(m);
		s.emit({ type: "terminal", stream: "o", data: "hello\r\n" });
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
	secretDir = await tempDir("symlink-secret");
	await writeFile(join(secretDir, TERMINAL_FILE), '{"kty":"OKP","crv":"Ed25519","d":"the-gateway-private-key"}\n');
});

test("a key that is a link to a file outside the tree is not found", async () => {
	const path = join(root, prefix, TERMINAL_FILE);
	await rename(path, `${path}.genuine`);
	await symlink(join(secretDir, TERMINAL_FILE), path);
	await assert.rejects(store.get(prefix + TERMINAL_FILE), (e: Error & { code?: string }) => e.code === "NOT_FOUND");
	assert.equal(await store.head(prefix + TERMINAL_FILE), undefined);
	const v = await verifySession(store, prefix, (await loadStoreKeys(store)).set);
	assert.ok(v.problems.some((p) => p.object === TERMINAL_FILE && p.kind === "missing"), JSON.stringify(v.problems));
});

test("a key under a linked folder is not found", async () => {
	await mkdir(join(root, "recordings/2027/09/01/x"), { recursive: true });
	await symlink(secretDir, join(root, "recordings/2027/09/01/x/linked"));
	await assert.rejects(store.get(`recordings/2027/09/01/x/linked/${TERMINAL_FILE}`), (e: Error & { code?: string }) => e.code === "NOT_FOUND");
	assert.equal(await store.head(`recordings/2027/09/01/x/linked/${TERMINAL_FILE}`), undefined);
});

test("a chunk linked to /dev/zero is not read", async () => {
	const path = join(root, prefix, chunkName(1));
	await rename(path, `${path}.genuine`);
	await symlink("/dev/zero", path);
	await assert.rejects(store.get(prefix + chunkName(1)), (e: Error & { code?: string }) => e.code === "NOT_FOUND");
	const v = await verifySession(store, prefix, (await loadStoreKeys(store)).set);
	assert.ok(v.problems.some((p) => p.object === chunkName(1) && p.kind === "missing"), JSON.stringify(v.problems));
});
