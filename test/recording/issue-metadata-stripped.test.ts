/**
 * Regression (red-team of recording tamper evidence): session.json's user-metadata (the searchable
 * fields) is unsigned and verify checks it against the signed document, but only the keys that are
 * there: a bucket writer who deleted `has-blocked` or `identity` from it made `list --has-blocked` /
 * `list --identity` (and the viewer's filters) miss the session while `verify` still said it was
 * intact. A missing key is now a verify problem, and a search reads session.json itself when a key
 * it needs is missing instead of taking the field as empty.
 */
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { listSessions, loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { SESSION_FILE, sessionPrefix } from "../../gateway/recording/format.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { verifySession } from "../../gateway/recording/verify.ts";
import { blockedAndApproved, makeRecorder, meta, tempDir } from "./fixtures.ts";

let store: DirStore;
const m = meta({ identity: { issuer: "https://issuer.test", subject: "mallory", username: "mallory", groups: [] } });
const prefix = sessionPrefix(m);

before(async () => {
	store = new DirStore(await tempDir("stripped"));
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("stripped-spool"));
	try {
		const s = await rec.openSession(m);
		for (const e of blockedAndApproved) s.emit(e);
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
});

test("metadata keys deleted from session.json: verify reports each, searches still find the session", async () => {
	const keys = (await loadStoreKeys(store)).set;
	assert.equal((await verifySession(store, prefix, keys)).ok, true);
	assert.equal((await listSessions(store, { hasBlocked: true, identity: "mallory" })).length, 1);

	const head = await store.head(prefix + SESSION_FILE);
	const { "has-blocked": _b, identity: _i, subject: _s, ...rest } = head!.metadata;
	await store.put(prefix + SESSION_FILE, await store.get(prefix + SESSION_FILE), { metadata: rest });

	const v = await verifySession(store, prefix, keys);
	assert.equal(v.ok, false);
	const missing = v.problems.filter((p) => p.kind === "metadata").map((p) => p.message);
	assert.deepEqual(missing, [
		'session.json: object metadata identity is missing (the signed session.json says "mallory"): searches by it miss this session',
		'session.json: object metadata subject is missing (the signed session.json says "mallory"): searches by it miss this session',
		'session.json: object metadata has-blocked is missing (the signed session.json says "true"): searches by it miss this session',
	]);

	const found = await listSessions(store, { hasBlocked: true, identity: "mallory" });
	assert.deepEqual(found.map((s) => [s.prefix, s.identity, s.hasBlocked]), [[prefix, "mallory", true]]);

	// Metadata stripped altogether (a copy without it) is no problem: searches read the document.
	await store.put(prefix + SESSION_FILE, await store.get(prefix + SESSION_FILE), { metadata: {} });
	assert.deepEqual((await verifySession(store, prefix, keys)).problems, []);
	assert.equal((await listSessions(store, { hasBlocked: true, identity: "mallory" })).length, 1);
});
