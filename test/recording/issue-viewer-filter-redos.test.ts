/**
 * Regression (red-team of the auditor web viewer): the list filters' `*` wildcard was compiled to a
 * regular expression, `*` to `.*`. `identity=******************************X` became
 * `^.*.*…X$`, which backtracks through every way of splitting a name into 30 pieces before failing:
 * 12 stars took 40 s on a 26-character name, 30 would take years. The regex runs on the gateway's
 * only event loop, so one auditor's filter froze every PostgreSQL, SSH and Kubernetes session of that
 * gateway. Wildcards are matched by a linear walk now, and filters over 256 characters, repeated
 * parameters and unreadable dates are refused with 400 instead of being used (or silently dropped).
 *
 * The viewer runs in a worker thread (real fastify, real listener, a DirStore with a real recording):
 * a frozen event loop there shows here as a request that is never answered.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { Worker } from "node:worker_threads";
import { glob } from "../../gateway/recording/catalog.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { makeRecorder, meta, sqlEvents, tempDir } from "./fixtures.ts";

let worker: Worker;
let base: string;
const session = meta({ identity: { issuer: "https://idp.test", subject: "0f3c2a9e-alice", username: "alice.anderson@example.com", groups: [] } });

before(async () => {
	const dir = await tempDir("viewer-redos-store");
	const store = new DirStore(dir);
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("viewer-redos-spool"));
	try {
		const s = await rec.openSession(session);
		for (const e of sqlEvents(2)) s.emit(e);
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
	worker = new Worker(new URL("./viewer-worker.ts", import.meta.url), { workerData: { dir } });
	const port = await new Promise<number>((resolve, reject) => {
		worker.once("message", (m: { port: number }) => resolve(m.port));
		worker.once("error", reject);
	});
	base = `http://127.0.0.1:${port}/viewer`;
});

after(async () => {
	await worker?.terminate();
});

/** GET, failing the test (not hanging it) when the viewer's event loop is stuck. */
async function get(path: string): Promise<{ status: number; body: string }> {
	let r: Response;
	try {
		// A liveness bound, not a timing assertion: the answer takes milliseconds; a frozen loop never answers.
		r = await fetch(`${base}${path}`, { headers: { authorization: "Bearer auditor" }, signal: AbortSignal.timeout(60_000) });
	} catch (e) {
		assert.fail(`the viewer did not answer ${path.slice(0, 80)}: ${(e as Error).message}`);
	}
	return { status: r.status, body: await r.text() };
}

test("issue viewer-filter-redos: a wildcard-heavy filter is answered and the gateway's loop stays free", async () => {
	for (const name of ["identity", "grant", "connection"]) {
		const r = await get(`/api/sessions?${name}=${"*".repeat(40)}X`);
		assert.equal(r.status, 200, r.body);
		assert.deepEqual(JSON.parse(r.body).sessions, [], name);
	}
	const html = await get(`/?identity=${"*".repeat(40)}X`);
	assert.equal(html.status, 200);
	// Wildcards still match what they should.
	for (const q of ["identity=*anderson*", "identity=alice*example.com", "identity=0f3c*", "identity=*a*a*", "grant=ci/*", "connection=*prod"]) {
		const r = await get(`/api/sessions?${q}`);
		assert.equal(r.status, 200, r.body);
		assert.equal(JSON.parse(r.body).sessions.length, 1, q);
	}
	for (const q of ["identity=alice", "identity=*bob*", "grant=*x", "connection=orders"]) {
		const r = await get(`/api/sessions?${q}`);
		assert.equal(JSON.parse(r.body).sessions.length, 0, q);
	}
});

test("issue viewer-filter-redos: over-long, repeated and unreadable filters are 400, not used or ignored", async () => {
	for (const q of [
		`identity=${"a".repeat(257)}`,
		`grant=${"*".repeat(5000)}`,
		"identity=a&identity=b",
		"since=2026-13-45",
		"until=yesterday",
		`since=${"9".repeat(100)}`,
	]) {
		const r = await get(`/api/sessions?${q}`);
		assert.equal(r.status, 400, `${q.slice(0, 40)}: ${r.body}`);
		assert.equal(JSON.parse(r.body).error.code, "bad_request");
		const page = await get(`/?${q}`);
		assert.equal(page.status, 400, q.slice(0, 40));
		assert.match(page.body, /id="bad-filter"/);
	}
	// The list page's own empty fields still mean "any".
	const r = await get("/?identity=&grant=&connection=&protocol=&since=&until=&blocked=&approvals=");
	assert.equal(r.status, 200);
	assert.match(r.body, /data-session=/);
});

test("issue viewer-filter-redos: glob agrees with the meaning of * on tricky patterns", () => {
	const cases: [string, string, boolean][] = [
		["*", "", true],
		["**", "abc", true],
		["a*", "a", true],
		["*a", "ba", true],
		["*a", "ab", false],
		["a*b*c", "aXbYc", true],
		["a*b*c", "aXbY", false],
		["*ab*ab*", "xabyab", true],
		["*aab", "aaab", true],
		["a*a", "a", false],
		["exact", "exact", true],
		["exact", "exactly", false],
		["ns/*", "ns/", true],
		[`${"*".repeat(200)}X`, "a".repeat(1000), false],
	];
	for (const [p, v, want] of cases) assert.equal(glob(p, v), want, `${p.slice(0, 20)} ~ ${v.slice(0, 20)}`);
});
