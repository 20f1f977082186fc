import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type MinioHandle, printLogsOnFailure, startMinio } from "../env/index.ts";

let s3: MinioHandle;
before(async () => {
	s3 = await startMinio({ buckets: [{ name: "recordings", objectLock: true }] });
});
after(async () => {
	await s3?.destroy();
});
printLogsOnFailure(() => [["minio", s3]]);

async function read(bucket: string, key: string): Promise<string> {
	const stream = await s3.client().getObject(bucket, key);
	const chunks: Buffer[] = [];
	for await (const c of stream) chunks.push(c as Buffer);
	return Buffer.concat(chunks).toString("utf8");
}

test("put then get an object with the minio client", async () => {
	const c = s3.client();
	await s3.createBucket("smoke");
	await c.putObject("smoke", "hello.txt", Buffer.from("hello minio"));
	assert.equal(await read("smoke", "hello.txt"), "hello minio");
	const stat = await c.statObject("smoke", "hello.txt");
	assert.equal(stat.size, 11);
});

test("object lock: a retained version cannot be deleted", async () => {
	const c = s3.client();
	const cfg = (await c.getObjectLockConfig("recordings")) as unknown as { objectLockEnabled?: string };
	assert.equal(cfg.objectLockEnabled, "Enabled");
	const until = new Date(Date.now() + 3_600_000);
	// The minio client turns unknown x-amz-* metadata into x-amz-meta-*: set retention explicitly.
	const put = await c.putObject("recordings", "r1.json", Buffer.from("{}"), 2);
	assert.ok(put.versionId);
	await c.putObjectRetention("recordings", "r1.json", {
		mode: "COMPLIANCE",
		retainUntilDate: until.toISOString(),
		versionId: put.versionId,
	});
	await assert.rejects(c.removeObject("recordings", "r1.json", { versionId: put.versionId ?? undefined }), /retention|WORM|AccessDenied/i);
});

test("stop makes requests fail; start brings the same data back on the same port", async () => {
	await s3.client().putObject("smoke", "persist.txt", Buffer.from("still here"));
	await s3.stop();
	assert.equal(s3.running, false);
	await assert.rejects(fetch(`${s3.endpoint}/minio/health/live`));
	await s3.start();
	assert.equal(await read("smoke", "persist.txt"), "still here");
});
