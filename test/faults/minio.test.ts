/**
 * MinIO down while REAL PostgreSQL sessions run through the REAL gateway, recorded by the real
 * DiskRecorder into a real MinIO (test/env). The recorder's own outage behaviour (spooling, metrics,
 * a killed recorder's backlog) is covered by test/recording/minio.test.ts; this is the end-to-end
 * part: agents keep working and new sessions are admitted while the store is down, and once MinIO
 * is back every statement of every session is in the bucket and verifies.
 */
import assert from "node:assert/strict";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { listSessions, loadSession, loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { generateRecordingKey } from "../../gateway/recording/keys.ts";
import { DiskRecorder } from "../../gateway/recording/recorder.ts";
import { parseEndpoint, S3Store } from "../../gateway/recording/store.ts";
import { verifySession } from "../../gateway/recording/verify.ts";
import { type MinioHandle, type PostgresHandle, printLogsOnFailure, startMinio, startPostgres } from "../env/index.ts";
import { type GatewayFixture, startGatewayFixture } from "./fixture.ts";

let minio: MinioHandle;
let pgh: PostgresHandle;
let f: GatewayFixture;
let rec: DiskRecorder;
let store: S3Store;

before(async () => {
	[minio, pgh] = await Promise.all([startMinio(), startPostgres()]);
	store = new S3Store({ ...parseEndpoint(minio.endpoint), accessKey: minio.accessKey, secretKey: minio.secretKey, bucket: "faults-recordings", region: minio.region });
	await store.init();
	rec = new DiskRecorder({
		spoolDir: await mkdtemp(join(tmpdir(), "drawbridge-faults-spool-")),
		store,
		key: (await generateRecordingKey()).key,
		chunkMaxBytes: 4096,
		chunkMaxAgeMs: 200,
		flushIntervalMs: 20,
		retryInitialDelayMs: 50,
		retryMaxDelayMs: 500,
		logger: { info() {}, warn() {}, error() {} },
	});
	await rec.start();
	f = await startGatewayFixture({ pg: pgh, recorder: rec });
});
after(async () => {
	await f?.stop();
	await rec?.stop();
	await pgh?.stop();
	await minio?.destroy();
});
printLogsOnFailure(() => [["minio", minio], ["postgres", pgh]]);

test("MinIO stopped mid-session: statements keep working, a new session is admitted, nothing is lost once it is back", { timeout: 300_000 }, async () => {
	const a = await f.connect("alice");
	const run = async (c: typeof a, tag: string, n: number) => {
		for (let i = 0; i < n; i++) {
			const r = await c.query(`SELECT ${i} AS i, '${tag}' AS tag, count(*)::int AS n FROM orders`);
			assert.equal(r.rows[0]!.n, 400);
		}
	};
	try {
		await run(a, "before-outage", 20);
		await rec.drain(60_000);
		await minio.stop();
		await run(a, "during-outage", 30);
		// A new agent connects while the store is down: the spool admits it.
		const b = await f.connect("bob");
		await run(b, "new-during-outage", 10);
		await b.end();
		assert.ok(rec.backlogBytes() > 0, "events wait in the spool while MinIO is down");
		await run(a, "still-during-outage", 5);
	} finally {
		await a.end();
		if (!minio.running) await minio.start();
	}
	await rec.drain(120_000);
	assert.equal(rec.backlogBytes(), 0);

	const sessions = await listSessions(store, { connection: "shop-prod" });
	assert.equal(sessions.length, 2, JSON.stringify(sessions.map((s) => s.identity)));
	const keys = (await loadStoreKeys(store)).set;
	const counts: Record<string, Record<string, number>> = {};
	for (const s of sessions) {
		const loaded = await loadSession(store, s.prefix);
		assert.deepEqual(loaded.unreadable, []);
		assert.ok(loaded.hasManifest, "finalised with a signed manifest");
		const byTag: Record<string, number> = {};
		for (const e of loaded.events) {
			const sql = (e as { type: string; sql?: string }).type === "statement" ? ((e as { sql?: string }).sql ?? "") : "";
			const tag = /'([a-z-]+)' AS tag/.exec(sql)?.[1];
			if (tag) byTag[tag] = (byTag[tag] ?? 0) + 1;
		}
		counts[s.identity] = byTag;
		const v = await verifySession(store, s.prefix, keys);
		assert.deepEqual(v.problems, [], `${s.identity}: ${JSON.stringify(v.problems)}`);
	}
	const values = Object.values(counts);
	assert.ok(values.some((c) => c["before-outage"] === 20 && c["during-outage"] === 30 && c["still-during-outage"] === 5), JSON.stringify(counts));
	assert.ok(values.some((c) => c["new-during-outage"] === 10), JSON.stringify(counts));
});
