/**
 * The recorder against a REAL MinIO (test/env startMinio): end-to-end upload with object lock, MinIO
 * stopped mid-session and restarted, a recorder process killed with a backlog, tampering with each
 * kind of object, and the auditor CLI over S3.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type CliIo, main as cli } from "../../cli/recordings.ts";
import { listSessions, loadSession, loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { isRecordingError } from "../../gateway/recording/errors.ts";
import { sessionPrefix } from "../../gateway/recording/format.ts";
import { loadRecordingKey } from "../../gateway/recording/keys.ts";
import { parseEndpoint, S3Store } from "../../gateway/recording/store.ts";
import { verifySession } from "../../gateway/recording/verify.ts";
import { type MinioHandle, printLogsOnFailure, startMinio } from "../env/index.ts";
import { blockedAndApproved, eventually, makeRecorder, meta, metricValue, sqlEvents, startChild, tempDir } from "./fixtures.ts";
import { runTamperCases } from "./tamper-cases.ts";

let minio: MinioHandle;
before(async () => {
	minio = await startMinio();
});
after(async () => {
	await minio?.destroy();
});
printLogsOnFailure(() => [["minio", minio]]);

function s3(bucket: string, objectLock?: { mode: "GOVERNANCE" | "COMPLIANCE"; days: number }): S3Store {
	const o = { ...parseEndpoint(minio.endpoint), accessKey: minio.accessKey, secretKey: minio.secretKey, bucket, region: minio.region };
	return new S3Store(objectLock ? { ...o, objectLock } : o);
}

test("end to end on MinIO with object lock: record, upload, list by metadata, verify; locked versions cannot be deleted", async () => {
	const store = s3("rec-e2e", { mode: "GOVERNANCE", days: 1 });
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("minio-e2e"), { chunkMaxBytes: 4096 });
	const m = meta();
	try {
		const s = await rec.openSession(m);
		for (const e of sqlEvents(80)) s.emit(e);
		for (const e of blockedAndApproved) s.emit(e);
		await s.close({ reason: "client-closed" });
		await rec.drain(30_000);
	} finally {
		await rec.stop();
	}
	const prefix = sessionPrefix(m);
	const head = await store.head(`${prefix}session.json`);
	assert.equal(head?.metadata.identity, "ci-deployer");
	assert.equal(head?.metadata.grant, "ci/deployer-orders-ro");
	assert.equal(head?.metadata["has-blocked"], "true");
	assert.equal(head?.metadata["has-approvals"], "true");
	assert.equal(head?.metadata["pull-request"], "42");
	const listed = await listSessions(store, { connection: "orders-prod", hasBlocked: true });
	assert.deepEqual(listed.map((x) => x.sessionId), [m.sessionId]);
	const keys = (await loadStoreKeys(store)).set;
	const v = await verifySession(store, prefix, keys);
	assert.deepEqual(v.problems, []);
	assert.equal(v.events, 84);
	// WORM: the stored version of the manifest is retained; deleting that version is refused.
	const client = store.client;
	const stat = await client.statObject("rec-e2e", `${prefix}manifest.jws`);
	assert.ok(stat.versionId, "object lock implies versioning");
	const retention = await client.getObjectRetention("rec-e2e", `${prefix}manifest.jws`, { versionId: stat.versionId! });
	assert.equal(retention?.mode, "GOVERNANCE");
	await assert.rejects(client.removeObject("rec-e2e", `${prefix}manifest.jws`, { versionId: stat.versionId! }), /retention|WORM|locked|protected/i);
});

test("MinIO stopped mid-session and restarted: the gateway keeps recording, nothing is lost, verify passes", async () => {
	const store = s3("rec-outage");
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("minio-outage"), { chunkMaxBytes: 2048, chunkMaxAgeMs: 200 });
	const m = meta({ protocol: "ssh", connection: "db-primary" });
	try {
		const s = await rec.openSession(m);
		let n = 0;
		const burst = (k: number) => {
			for (let i = 0; i < k; i++) {
				s.emit({ type: "terminal", stream: "o", data: `output ${n} ${"y".repeat(30)}\r\n` });
				s.emit({ type: "exec", command: `step ${n++}`, decision: "allow", exitCode: 0 });
			}
		};
		burst(40);
		await new Promise((r) => setTimeout(r, 400));
		await rec.drain(30_000);
		// The live session's sealed chunks are already in the bucket; auditors see it as incomplete.
		const out: string[] = [];
		const io: CliIo = { env: { AWS_ACCESS_KEY_ID: minio.accessKey, AWS_SECRET_ACCESS_KEY: minio.secretKey }, stdout: (x) => void out.push(x), stderr: () => {}, stderrIsTty: false, sleep: async () => {} };
		assert.equal(await cli(["list", "--incomplete", "--json", "--endpoint", minio.endpoint, "--bucket", "rec-outage"], io), 0);
		const incomplete = out.join("").trim().split("\n").map((l) => JSON.parse(l) as { sessionId: string; chunks: number; hasSessionJson: boolean });
		assert.equal(incomplete.length, 1);
		assert.equal(incomplete[0]!.sessionId, m.sessionId);
		assert.ok(incomplete[0]!.chunks >= 1);
		assert.equal(incomplete[0]!.hasSessionJson, false);
		await minio.stop();
		burst(60);
		await new Promise((r) => setTimeout(r, 800));
		assert.ok(rec.backlogBytes() > 0, "events spool while MinIO is down");
		await eventually("upload errors counted", async () => (await metricValue(rec, "drawbridge_recording_upload_errors_total", { kind: "store" })) > 0);
		assert.ok((await metricValue(rec, "drawbridge_recording_oldest_unsent_event_age_seconds")) >= 0.5, "oldest unsent event age grows during the outage");
		// The data path is never blocked: a new session opens while the store is down.
		const other = await rec.openSession(meta());
		other.emit(sqlEvents(1)[0]!);
		await other.close({ reason: "client-closed" });
		burst(20);
		await s.close({ reason: "client-closed" });
		await minio.start();
		await rec.drain(60_000);
		assert.equal(rec.backlogBytes(), 0);
		const loaded = await loadSession(store, sessionPrefix(m));
		assert.equal(loaded.events.length, 240);
		assert.deepEqual(
			loaded.events.map((e) => e.seq),
			Array.from({ length: 240 }, (_, i) => i + 1),
		);
		const v = await verifySession(store, sessionPrefix(m), (await loadStoreKeys(store)).set);
		assert.deepEqual(v.problems, []);
		assert.match(loaded.cast ?? "", /output 119 /);
	} finally {
		if (!minio.running) await minio.start();
		await rec.stop();
	}
});

test("recorder process killed while MinIO is down; a new process uploads the backlog", async () => {
	const base = await tempDir("minio-kill");
	const spool = join(base, "spool");
	const keyFile = join(base, "key.jwk");
	const bucket = "rec-kill";
	// The bucket does not exist yet and MinIO is down: the recorder must create it once MinIO is back.
	await minio.stop();
	let child: Awaited<ReturnType<typeof startChild>> | undefined;
	try {
		child = await startChild([spool, keyFile, "s3", minio.endpoint, minio.accessKey, minio.secretKey, bucket]);
		await child.kill();
	} finally {
		await minio.start();
	}
	const report = child.report;
	const store = s3(bucket);
	const { rec } = await makeRecorder(store, spool, { key: await loadRecordingKey(keyFile) });
	try {
		await rec.drain(60_000);
		const sessions = await listSessions(store, {});
		assert.deepEqual(sessions.map((s) => s.sessionId).sort(), [String(report.closed), String(report.open)].sort());
		const keys = (await loadStoreKeys(store)).set;
		for (const s of sessions) {
			assert.deepEqual((await verifySession(store, s.prefix, keys)).problems, []);
			const expected: number = s.sessionId === report.open ? 76 : 50;
			assert.equal((await loadSession(store, s.prefix)).events.length, expected);
		}
	} finally {
		await rec.stop();
	}
});

test("MinIO: tampering with each kind of object fails verification precisely", async (t) => {
	const store = s3("rec-tamper");
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("minio-tamper"), { chunkMaxBytes: 1500 });
	try {
		await runTamperCases(t, rec, store);
	} finally {
		await rec.stop();
	}
});

test("auditor CLI over MinIO: list, show, verify with --endpoint and env credentials", async () => {
	const store = s3("rec-cli");
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("minio-cli"));
	const m = meta();
	try {
		const s = await rec.openSession(m);
		for (const e of blockedAndApproved) s.emit(e);
		await s.close({ reason: "client-closed" });
		await rec.drain(30_000);
	} finally {
		await rec.stop();
	}
	const out: string[] = [];
	const err: string[] = [];
	const io: CliIo = {
		env: { AWS_ACCESS_KEY_ID: minio.accessKey, AWS_SECRET_ACCESS_KEY: minio.secretKey },
		stdout: (x) => void out.push(x),
		stderr: (x) => void err.push(x),
		stderrIsTty: false,
		sleep: async () => {},
	};
	const flags = ["--endpoint", minio.endpoint, "--bucket", "rec-cli"];
	assert.equal(await cli(["list", ...flags, "--approvals"], io), 0);
	assert.match(out.join(""), new RegExp(`postgres\\s+ci-deployer\\s+orders-prod\\s+ci/deployer-orders-ro\\s+BA\\s+${m.sessionId}`));
	out.length = 0;
	assert.equal(await cli(["verify", m.sessionId, ...flags], io), 0);
	assert.match(out.join(""), /verified against UNPINNED keys from the bucket itself: 1 chunk\(s\), 4 event\(s\)/);
	out.length = 0;
	assert.equal(await cli(["show", m.sessionId, ...flags], io), 0);
	assert.match(out.join(""), /APPROVAL Approved ar-7f3c/);
	// Unreachable store: exit 3 with the store named.
	assert.equal(await cli(["list", "--endpoint", "http://127.0.0.1:1", "--bucket", "nowhere"], io), 3);
	assert.match(err.join(""), /127\.0\.0\.1/);
});

test("object lock requested on an existing bucket without locking: a precise CONFIG error", async () => {
	await minio.createBucket("rec-nolock");
	await assert.rejects(s3("rec-nolock", { mode: "COMPLIANCE", days: 1 }).init(), (e: unknown) => {
		assert.ok(isRecordingError(e, "CONFIG"), String(e));
		assert.match((e as Error).message, /bucket rec-nolock exists without object locking, which can only be enabled when a bucket is created/);
		return true;
	});
	// An object-locked bucket is accepted again on the next start (idempotent init).
	await s3("rec-e2e", { mode: "GOVERNANCE", days: 1 }).init();
});
