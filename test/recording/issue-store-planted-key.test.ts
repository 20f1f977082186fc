/**
 * Regressions (red-team of recording verification): whoever can write the recordings bucket (which the
 * security model trusts for storage, not integrity) could make a forged session verify.
 *
 * 1. kid collision. `kid` is documented as the RFC 7638 thumbprint "so a key id cannot be reused for a
 *    different key", but `publicKeySet` took the `kid` a JWK claims. An attacker's key published as
 *    `recordings/keys/<anything>.jwk` with the gateway's kid replaced the gateway's key in the trusted
 *    set (the last listed wins): forged manifests signed by the attacker verified as the gateway's,
 *    and every genuine session showed TAMPERED. A JWK whose kid is not its thumbprint is refused now
 *    (skipped when it comes from the store, an error when the auditor passes it with --key).
 * 2. One unusable object under recordings/keys/ (say an RSA JWK) made loading the store's keys throw:
 *    every verification in the viewer and CLI failed. Such keys are skipped now.
 * 3. The gateway's viewer and its public /api/v1/recordings/keys trusted and re-served every key found
 *    in the bucket, so `recordings verify --keys-url` (the documented way to pin) trusted a key the
 *    attacker planted. With --recording-trusted-keys-file the gateway pins: its own key plus the listed
 *    ones, never a key it only found in the bucket.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { before, test } from "node:test";
import { CompactSign, exportJWK, generateKeyPair } from "jose";
import { loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { KEYS_PREFIX, MANIFEST_JWS_TYP, sessionPrefix, sha256Hex } from "../../gateway/recording/format.ts";
import { generateRecordingKey, publicKeySet, type RecordingKey, readPublicJwksFile, viewerRecordingKeys } from "../../gateway/recording/keys.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { readManifestUnverified, verifySession } from "../../gateway/recording/verify.ts";
import { makeRecorder, meta, sqlEvents, tempDir } from "./fixtures.ts";

let store: DirStore;
let gatewayKey: RecordingKey;
let prefix: string;

/** Rewrite session.json (the identity), fix its hash in the manifest and sign that with `signer` under `kid`. */
async function forge(signer: RecordingKey, kid: string): Promise<void> {
	const doc = JSON.parse((await store.get(`${prefix}session.json`)).toString());
	doc.identity.username = "nobody-you-know";
	const body = Buffer.from(JSON.stringify(doc));
	await store.put(`${prefix}session.json`, body);
	const manifest = readManifestUnverified((await store.get(`${prefix}manifest.jws`)).toString());
	manifest.session.sha256 = sha256Hex(body);
	manifest.session.bytes = body.length;
	const jws = await new CompactSign(Buffer.from(JSON.stringify(manifest))).setProtectedHeader({ alg: signer.alg, kid, typ: MANIFEST_JWS_TYP }).sign(signer.privateKey);
	await store.put(`${prefix}manifest.jws`, Buffer.from(jws));
}

before(async () => {
	store = new DirStore(await tempDir("planted-key"));
	await store.init();
	const { rec, key } = await makeRecorder(store, await tempDir("planted-key-spool"));
	gatewayKey = key;
	const m = meta();
	prefix = sessionPrefix(m);
	try {
		const s = await rec.openSession(m);
		for (const e of sqlEvents(3)) s.emit(e);
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
	assert.ok((await verifySession(store, prefix, (await loadStoreKeys(store)).set)).ok);
});

test("issue store-planted-key: a JWK claiming another key's kid is not trusted under that kid", async () => {
	const attacker = (await generateRecordingKey()).key;
	await assert.rejects(publicKeySet([{ ...attacker.publicJwk, kid: gatewayKey.kid }]), /thumbprint/);
	// Published in the bucket after the gateway's own key (listing order decides who wins a collision).
	await store.put(`${KEYS_PREFIX}${"z".repeat(60)}.jwk`, Buffer.from(JSON.stringify({ ...attacker.publicJwk, kid: gatewayKey.kid })));
	const { set } = await loadStoreKeys(store);
	assert.equal(set.size, 1);
	assert.ok(set.get(gatewayKey.kid));
	assert.deepEqual(set.get(gatewayKey.kid)!.jwk.x, gatewayKey.publicJwk.x);
	// The genuine session still verifies.
	assert.ok((await verifySession(store, prefix, set)).ok);
	await store.remove(`${KEYS_PREFIX}${"z".repeat(60)}.jwk`);
});

test("issue store-planted-key: an unusable key object in the bucket does not break verification", async () => {
	const { publicKey } = await generateKeyPair("RS256", { extractable: true });
	await store.put(`${KEYS_PREFIX}rsa.jwk`, Buffer.from(JSON.stringify(await exportJWK(publicKey))));
	const { set } = await loadStoreKeys(store);
	assert.ok(set.get(gatewayKey.kid));
	await store.remove(`${KEYS_PREFIX}rsa.jwk`);
});

test("issue store-planted-key: pinned viewer keys ignore a key planted in the bucket; the store default does not", async () => {
	const attacker = (await generateRecordingKey()).key;
	await store.put(`${KEYS_PREFIX}${attacker.kid}.jwk`, Buffer.from(JSON.stringify(attacker.publicJwk)));
	await forge(attacker, attacker.kid);
	const fromStore = async () => (await loadStoreKeys(store)).jwks;
	// Without a trusted-keys file: the bucket's keys (documented: only as trustworthy as its writers).
	const unpinned = await viewerRecordingKeys(gatewayKey, undefined, fromStore);
	assert.ok(unpinned.some((k) => k.kid === attacker.kid));
	// Pinned: the gateway's own key and the listed ones.
	const older = (await generateRecordingKey()).key;
	const file = join(await tempDir("trusted-keys"), "trusted.jwks");
	await writeFile(file, JSON.stringify({ keys: [older.publicJwk] }));
	const pinned = await viewerRecordingKeys(gatewayKey, await readPublicJwksFile(file), fromStore);
	assert.deepEqual(pinned.map((k) => k.kid).sort(), [gatewayKey.kid, older.kid].sort());
	const v = await verifySession(store, prefix, await publicKeySet(pinned));
	assert.equal(v.ok, false);
	assert.match(v.problems[0]!.message, /not among the 2 trusted recording key/);
});
