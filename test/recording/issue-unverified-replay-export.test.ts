/**
 * Regression (red-team of recording tamper evidence): `drawbridge recordings replay` and `export` never
 * verified what they presented. A bucket writer who replaced an SSH session's terminal.cast had
 * `replay` play the forged terminal (exit 0, no word of it), and a session folder fabricated from
 * scratch (session.json with its metadata and a chunk, no manifest: nothing anyone signed) went into
 * `export` (the feed for SIEMs and reports) like any other session. Both verify first now: `replay`
 * does not play a recording that does not verify (unless --no-verify), `export` leaves such sessions
 * out and names them (or marks their lines "unverified": true with --include-unverified), exit 1.
 */
import assert from "node:assert/strict";
import { readFile, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { before, test } from "node:test";
import { type CliIo, main } from "../../cli/recordings.ts";
import { chunkName, encodeChunk, FORMAT_VERSION, SESSION_FILE, sessionMetadata, sessionPrefix, TERMINAL_FILE } from "../../gateway/recording/format.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { makeRecorder, meta, tempDir } from "./fixtures.ts";

function io() {
	const out: string[] = [];
	const err: string[] = [];
	const cli: CliIo = { env: {}, stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), stderrIsTty: false, sleep: async () => {} };
	return { cli, out: () => out.join(""), err: () => err.join("") };
}

let root: string;
let store: DirStore;
let keyFile: string;
const ssh = meta({ protocol: "ssh", connection: "db-primary", startedAt: "2027-06-01T10:00:00.000Z", target: { login: "lee" } });

before(async () => {
	root = await tempDir("unverified");
	store = new DirStore(root);
	await store.init();
	const { rec, key } = await makeRecorder(store, await tempDir("unverified-spool"));
	try {
		const s = await rec.openSession(ssh);
		s.emit({ type: "terminal", stream: "r", data: "80x24" });
		s.emit({ type: "terminal", stream: "i", data: "rm -rf /srv/data\r" });
		s.emit({ type: "terminal", stream: "o", data: "removed\r\n" });
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
	keyFile = join(root, "..", `unverified-${Date.now()}.jwk`);
	await writeFile(keyFile, JSON.stringify(key.publicJwk));
});

const dir = () => ["--dir", root, "--key", keyFile];

test("replay does not play a terminal.cast that does not verify", async () => {
	let r = io();
	assert.equal(await main(["replay", ssh.sessionId, ...dir()], r.cli), 0, r.err());
	assert.equal(r.out(), "removed\r\n\n");
	assert.match(r.err(), /verified: 1 chunk\(s\), 3 event\(s\), manifest signed by pinned key/);

	const prefix = sessionPrefix(ssh);
	const genuine = await store.get(prefix + TERMINAL_FILE);
	await store.put(prefix + TERMINAL_FILE, Buffer.from('{"version":2,"width":80,"height":24}\n[0.5,"o","uptime\\r\\n 10:00 up 3 days\\r\\n"]\n'));
	try {
		r = io();
		assert.equal(await main(["replay", ssh.sessionId, ...dir()], r.cli), 1);
		assert.equal(r.out(), "", "nothing forged was played");
		assert.match(r.err(), /VERIFICATION FAILED \(1 problem\(s\)\)[^\n]*\n {2}- terminal.cast: modified/);
		assert.match(r.err(), /not replaying a recording that does not verify \(--no-verify replays it anyway\)/);

		r = io();
		assert.equal(await main(["replay", ssh.sessionId, ...dir(), "--no-verify"], r.cli), 0);
		assert.match(r.out(), /up 3 days/);
	} finally {
		await store.put(prefix + TERMINAL_FILE, genuine);
	}
});

test("export leaves out a session folder nobody signed, and names it", async () => {
	// A session made up from scratch: the format is public, only the signature is out of reach.
	const fake = meta({ startedAt: "2027-06-01T12:00:00.000Z", identity: { issuer: "https://issuer.test", subject: "alice", username: "alice", groups: [] } });
	const fakePrefix = sessionPrefix(fake);
	const line = JSON.stringify({ type: "statement", sql: "SELECT 1", statementKinds: ["select"], decision: "allow", seq: 1, time: fake.startedAt, offsetMs: 0 });
	await store.put(fakePrefix + chunkName(1), encodeChunk({ format: FORMAT_VERSION, kind: "chunk", sessionId: fake.sessionId, index: 1, prev: null, firstSeq: 1, lastSeq: 1, events: 1 }, [line]));
	const doc = {
		format: FORMAT_VERSION, sessionId: fake.sessionId, protocol: "postgres", connection: fake.connection, connectionNamespace: fake.connectionNamespace,
		identity: fake.identity, grant: fake.grant, origin: fake.origin, client: fake.client, target: fake.target, gateway: fake.gateway,
		startedAt: fake.startedAt, endedAt: "2027-06-01T12:00:01.000Z", durationMs: 1000, end: { reason: "client-closed" },
		counts: { events: 1, statements: 1, execs: 0, kubeRequests: 0, sftp: 0, approvals: 0, blocked: 0, approved: 0, terminalBytes: 0, notices: 0 },
		flags: { hasBlocked: false, hasApprovals: false }, chunks: 1, hasTerminal: false, droppedEvents: 0, recovered: false, keyId: "x", prefix: fakePrefix,
	} as const;
	await store.put(fakePrefix + SESSION_FILE, Buffer.from(JSON.stringify(doc)), { metadata: sessionMetadata(doc as never) });

	const out = join(root, "..", `unverified-export-${Date.now()}.jsonl`);
	let r = io();
	assert.equal(await main(["export", ...dir(), "--out", out], r.cli), 1);
	const lines = (await readFile(out, "utf8")).trim().split("\n").filter(Boolean).map((l) => JSON.parse(l));
	assert.deepEqual([...new Set(lines.map((l) => l.sessionId))], [ssh.sessionId], "only the signed session is exported");
	assert.match(r.err(), new RegExp(`1 session\\(s\\) failed verification and were NOT exported[^\\n]*\\n {2}- ${fakePrefix}: manifest.jws: missing`));

	r = io();
	assert.equal(await main(["export", ...dir(), "--out", out, "--include-unverified"], r.cli), 1);
	const marked = (await readFile(out, "utf8")).trim().split("\n").map((l) => JSON.parse(l));
	assert.deepEqual(marked.filter((l) => l.unverified === true).map((l) => [l.sessionId, l.sql]), [[fake.sessionId, "SELECT 1"]]);
	assert.ok(marked.filter((l) => l.sessionId === ssh.sessionId).every((l) => l.unverified === undefined));
});
