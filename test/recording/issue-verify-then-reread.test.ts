/**
 * Regression (red-team of recording tamper evidence): the viewer's session page and `recordings
 * show` read a session twice: once to display it (loadSession) and once to verify it (verifySession).
 * A bucket writer who swaps an object between the two reads (S3 and MinIO can notify on every GET)
 * had the page say "verified" above a timeline that was never verified: the forged chunk was read
 * for display and the genuine one for verification. Now what is verified is what is shown (replay
 * and export too): one read of each object. Here the store is a real DirStore that hands out the
 * forged chunk for the first read of it and the genuine one after, as such an attacker would.
 * The terminal player fetched terminal.cast on its own (/viewer/api/cast) and got whatever was there;
 * it is served only when it is the one the signed manifest lists now. The page's "events (JSON)"
 * download (/viewer/api/session) was an unverified read: it carries its verification now.
 */
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { gunzipSync, gzipSync } from "node:zlib";
import Fastify from "fastify";
import { registerViewer } from "../../gateway/admin/viewer.ts";
import { loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { chunkName, sessionPrefix, TERMINAL_FILE } from "../../gateway/recording/format.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { auditorIdentity, makeRecorder, meta, tempDir } from "./fixtures.ts";

/** A directory store on which a bucket writer swaps one object back right after its first read. */
class SwappingStore extends DirStore {
	readonly firstRead = new Map<string, Buffer>();
	override async get(key: string): Promise<Buffer> {
		const forged = this.firstRead.get(key);
		if (forged) {
			this.firstRead.delete(key);
			return forged;
		}
		return super.get(key);
	}
}

let store: SwappingStore;
const m = meta();
const prefix = sessionPrefix(m);

before(async () => {
	store = new SwappingStore(await tempDir("reread"));
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("reread-spool"));
	try {
		const s = await rec.openSession(m);
		s.emit({ type: "statement", sql: "DELETE FROM invoices", statementKinds: ["delete"], decision: "allow", rows: 912, commandTag: "DELETE 912" });
		s.emit({ type: "terminal", stream: "o", data: "DELETE 912\r\n" });
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
});

test("the viewer's session page shows what it verified, not a second read", async () => {
	const genuine = await store.get(prefix + chunkName(1));
	const forged = gzipSync(gunzipSync(genuine).toString("utf8").replace("DELETE FROM invoices", "SELECT 1 -- nothing here"));
	const identity = auditorIdentity("https://issuer.test");
	const pinned = (await loadStoreKeys(store)).set;
	const app = Fastify();
	await registerViewer(app, { store, auditorGroup: "auditors", authenticate: () => identity, publicKeys: async () => pinned });
	try {
		const page = async () => (await app.inject({ url: `/viewer/session?prefix=${encodeURIComponent(prefix)}`, headers: { authorization: "Bearer x" } })).body;
		const honest = await page();
		assert.match(honest, /id="verify">verified</);
		assert.match(honest, /DELETE FROM invoices/);

		store.firstRead.set(prefix + chunkName(1), forged);
		const html = await page();
		const saysVerified = /id="verify">verified</.test(html);
		const showsForgery = html.includes("nothing here");
		assert.ok(!(saysVerified && showsForgery), "never 'verified' above content that was not verified");
		assert.match(html, /id="verify">TAMPERED</, "the read that is verified is the forged one");

		// The page's "events (JSON)" download says what it is, and is the verified read when verified.
		const json = async () => (await app.inject({ url: `/viewer/api/session?prefix=${encodeURIComponent(prefix)}`, headers: { authorization: "Bearer x" } })).json();
		let body = await json();
		assert.equal(body.verification.ok, true);
		assert.equal(body.verification.keys, "pinned");
		assert.ok(body.events.some((e: { sql?: string }) => e.sql === "DELETE FROM invoices"));
		store.firstRead.set(prefix + chunkName(1), forged);
		body = await json();
		assert.equal(body.verification.ok, false, "the forged read is the verified one, and fails");
		assert.ok(body.verification.problems.some((p: { object: string }) => p.object === chunkName(1)));

		// The terminal player fetches terminal.cast by itself: only the signed one is served.
		const cast = async () => app.inject({ url: `/viewer/api/cast?prefix=${encodeURIComponent(prefix)}`, headers: { authorization: "Bearer x" } });
		let r = await cast();
		assert.equal(r.statusCode, 200);
		assert.match(r.body, /^\{"version":2/);
		const genuineCast = await store.get(prefix + TERMINAL_FILE);
		await store.put(prefix + TERMINAL_FILE, Buffer.from('{"version":2,"width":80,"height":24}\n[0.1,"o","nothing happened"]\n'));
		try {
			r = await cast();
			assert.equal(r.statusCode, 409);
			assert.match(r.json().error.message, /not served: terminal.cast is modified/);
			assert.doesNotMatch(r.body, /nothing happened/);
		} finally {
			await store.put(prefix + TERMINAL_FILE, genuineCast);
		}
	} finally {
		await app.close();
	}
});
