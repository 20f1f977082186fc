/**
 * Regression (red-team of the auditor web viewer): a session prefix with `..` segments
 * (`recordings/2026/01/01/../../`) passed the prefix check and reached the store, which refuses such
 * keys: the viewer answered 500 with the store's own message, naming its directory. Any store failure
 * did the same (an S3 store's endpoint and bucket), the public, unauthenticated
 * `/api/v1/recordings/keys` too. Prefixes holding `..` are 400 now, and failures
 * answer 503/500 with a message that says what failed, not where (the detail goes to the log).
 *
 * Real components: fastify, the directory store, and an S3 store pointed at a port where nothing
 * listens (connection refused, as when MinIO is down).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { registerViewer } from "../../gateway/admin/viewer.ts";
import { DirStore, S3Store } from "../../gateway/recording/store.ts";
import { freePort } from "../env/index.ts";
import { auditorIdentity, tempDir } from "./fixtures.ts";

const auditor = auditorIdentity();
let dirApp: FastifyInstance;
let s3App: FastifyInstance;
let dir: string;
let s3Port: number;
const headers = { authorization: "Bearer auditor" };

before(async () => {
	dir = await tempDir("viewer-errors-store");
	const store = new DirStore(dir);
	await store.init();
	dirApp = Fastify();
	await registerViewer(dirApp, { store, auditorGroup: "auditors", authenticate: () => auditor });
	await dirApp.ready();
	s3Port = await freePort();
	const down = new S3Store({ endPoint: "127.0.0.1", port: s3Port, useSSL: false, accessKey: "k", secretKey: "secret-key", bucket: "recordings-bucket-name" });
	s3App = Fastify();
	await registerViewer(s3App, { store: down, auditorGroup: "auditors", authenticate: () => auditor, publicKeys: async () => ({ keys: new Map() }) as never });
	await s3App.ready();
});

after(async () => {
	await dirApp?.close();
	await s3App?.close();
});

test("issue viewer-error-details: prefixes with .. are 400 on every route, and the store's path never shows", async () => {
	for (const prefix of ["recordings/2026/01/01/../../", "recordings/2026/01/01/../x/", "recordings/2026/01/01/c/../", "recordings/2026/01/01/c/a..b/"]) {
		for (const route of ["/viewer/session", "/viewer/api/session", "/viewer/api/verify", "/viewer/api/cast"]) {
			const r = await dirApp.inject({ url: `${route}?prefix=${encodeURIComponent(prefix)}`, headers });
			assert.equal(r.statusCode, 400, `${route} ${prefix}: ${r.body}`);
			assert.ok(!r.body.includes(dir), r.body);
		}
	}
});

test("issue viewer-error-details: a store failure is 503 without the store's endpoint, bucket or message", async () => {
	for (const url of ["/api/v1/recordings/keys", "/viewer/api/sessions", "/viewer/", "/viewer/api/session?prefix=recordings/2026/01/01/c/s/", "/viewer/api/cast?prefix=recordings/2026/01/01/c/s/"]) {
		const r = await s3App.inject({ url, headers });
		assert.equal(r.statusCode, 503, `${url}: ${r.body}`);
		assert.doesNotMatch(r.body, new RegExp(`recordings-bucket-name|${s3Port}|127\\.0\\.0\\.1|ECONNREFUSED`), url);
		assert.equal(JSON.parse(r.body).error.code, "unavailable");
	}
});
