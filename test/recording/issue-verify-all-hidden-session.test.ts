/**
 * Regression (red-team of recording tamper evidence): `drawbridge recordings verify --all` chose its
 * sessions with `listSessions`, which finds a session by its session.json and filters by that object's
 * user-metadata, neither of which is signed. Whoever can write the bucket could therefore take a
 * tampered session out of the audit instead of making it verify:
 *
 * - delete its session.json: `verify --all` said "2 of 2 session(s) verified" and exited 0, `list
 *   --incomplete` (folders without a manifest) did not show the folder either, and `verify <id>` /
 *   `show <id>` answered "no recorded session", not "tampered";
 * - rewrite its metadata (identity, started, grant…): `verify --all --identity <who>` skipped it.
 *
 * `verify --all` now finds every session folder from the key layout and selects by the signed
 * session.json (a folder without one that verifies is always checked); `verify/show <id>` find the
 * folder named after the id, and `list --incomplete` also shows folders without session.json.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { before, test } from "node:test";
import { type CliIo, main } from "../../cli/recordings.ts";
import { SESSION_FILE, sessionMetadata, sessionPrefix } from "../../gateway/recording/format.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { makeRecorder, meta, sqlEvents, tempDir } from "./fixtures.ts";

function io() {
	const out: string[] = [];
	const err: string[] = [];
	const cli: CliIo = { env: {}, stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), stderrIsTty: false, sleep: async () => {} };
	return { cli, out: () => out.join(""), err: () => err.join("") };
}

let root: string;
let store: DirStore;
let keyFile: string;
const alice = meta({ startedAt: "2027-05-02T10:00:00.000Z", identity: { issuer: "https://issuer.test", subject: "alice", username: "alice", groups: [] } });
const mallory = meta({ startedAt: "2027-05-02T11:00:00.000Z", identity: { issuer: "https://issuer.test", subject: "mallory", username: "mallory", groups: [] } });
const mallory2 = meta({ startedAt: "2027-05-03T09:00:00.000Z", identity: { issuer: "https://issuer.test", subject: "mallory", username: "mallory", groups: [] } });

before(async () => {
	root = await tempDir("hidden");
	store = new DirStore(root);
	await store.init();
	const { rec, key } = await makeRecorder(store, await tempDir("hidden-spool"));
	try {
		for (const m of [alice, mallory, mallory2]) {
			const s = await rec.openSession(m);
			for (const e of sqlEvents(3)) s.emit(e);
			await s.close({ reason: "client-closed" });
		}
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
	keyFile = join(root, "..", `hidden-pinned-${Date.now()}.jwk`);
	await writeFile(keyFile, JSON.stringify(key.publicJwk));
});

const dir = () => ["--dir", root, "--key", keyFile];

test("every session verifies before tampering", async () => {
	const r = io();
	assert.equal(await main(["verify", "--all", ...dir()], r.cli), 0, r.out() + r.err());
	assert.match(r.out(), /3 of 3 session\(s\) verified, 0 failed/);
});

test("a session whose session.json was deleted is not left out of verify --all, verify <id>, show <id>, list --incomplete", async () => {
	const prefix = sessionPrefix(mallory);
	const head = await store.head(prefix + SESSION_FILE);
	const body = await store.get(prefix + SESSION_FILE);
	await store.remove(prefix + SESSION_FILE);
	try {
		let r = io();
		assert.equal(await main(["verify", "--all", ...dir()], r.cli), 1, r.out());
		assert.match(r.out(), new RegExp(`${prefix}: VERIFICATION FAILED[^\\n]*\\n {2}- session.json: missing`));
		assert.match(r.out(), /2 of 3 session\(s\) verified, 1 failed/);

		r = io();
		assert.equal(await main(["verify", "--all", ...dir(), "--identity", "alice"], r.cli), 1, "a folder whose identity cannot be trusted is checked whatever the filter");
		assert.match(r.out(), /1 of 2 session\(s\) verified, 1 failed/);

		r = io();
		assert.equal(await main(["verify", mallory.sessionId, ...dir()], r.cli), 1, r.out() + r.err());
		assert.match(r.out(), /session.json: missing/);

		r = io();
		assert.equal(await main(["show", mallory.sessionId, ...dir()], r.cli), 1, r.out() + r.err());
		assert.match(r.out(), /VERIFICATION FAILED/);

		r = io();
		assert.equal(await main(["list", "--incomplete", ...dir(), "--json"], r.cli), 0, r.err());
		const listed = r.out().trim().split("\n").map((l) => JSON.parse(l));
		assert.deepEqual(
			listed.map((f) => [f.prefix, f.hasManifest, f.hasSessionJson]),
			[[prefix, true, false]],
		);
	} finally {
		await store.put(prefix + SESSION_FILE, body, { metadata: head!.metadata });
	}
});

test("rewritten metadata does not take a session out of verify --all with filters", async () => {
	const prefix = sessionPrefix(mallory2);
	const head = await store.head(prefix + SESSION_FILE);
	const body = await store.get(prefix + SESSION_FILE);
	// Claims alice, on another day: a filtered audit of mallory's sessions in May 3 would skip it.
	const forged = { ...head!.metadata, identity: "alice", subject: "alice", started: "2027-05-02T12:00:00.000Z" };
	await store.put(prefix + SESSION_FILE, body, { metadata: forged });
	try {
		let r = io();
		assert.equal(await main(["verify", "--all", ...dir(), "--identity", "mallory", "--since", "2027-05-03T00:00:00Z", "--until", "2027-05-04T00:00:00Z", "--json"], r.cli), 1, r.out());
		const results = r.out().trim().split("\n").map((l) => JSON.parse(l));
		assert.deepEqual(results.map((x) => x.prefix), [prefix]);
		assert.ok(results[0].problems.some((p: { kind: string; message: string }) => p.kind === "metadata" && /identity="alice" disagrees/.test(p.message)), r.out());

		// And selection follows what was signed: alice's filter does not pick mallory's session up.
		r = io();
		assert.equal(await main(["verify", "--all", ...dir(), "--identity", "alice", "--json"], r.cli), 0, r.out());
		assert.deepEqual(r.out().trim().split("\n").map((l) => JSON.parse(l).prefix), [sessionPrefix(alice)]);
	} finally {
		await store.put(prefix + SESSION_FILE, body, { metadata: head!.metadata });
	}
	assert.deepEqual(head!.metadata, { ...head!.metadata, ...sessionMetadata(JSON.parse(body.toString())) });
});

test("a session folder copied under another day makes verify <id> name both folders", async () => {
	const prefix = sessionPrefix(alice);
	const copy = prefix.replace("/2027/05/02/", "/2027/05/01/");
	for await (const o of store.list(prefix)) {
		const head = await store.head(o.key);
		await store.put(copy + o.key.slice(prefix.length), await store.get(o.key), { metadata: head!.metadata });
	}
	try {
		const r = io();
		assert.equal(await main(["verify", alice.sessionId, ...dir()], r.cli), 1);
		assert.equal(r.out(), "", "no folder was picked and called verified");
		assert.ok(r.err().includes(prefix) && r.err().includes(copy) && /all but one are copies/.test(r.err()), r.err());
	} finally {
		for await (const o of store.list(copy)) await store.remove(o.key);
	}
});
