/**
 * Regression (red-team of recording tamper evidence): `drawbridge recordings verify` printed the names
 * of objects it found in the bucket as they were. A bucket writer who can put any key there added to a
 * tampered session's folder an object whose name holds terminal controls: `ESC[1A ESC[2K` (cursor up,
 * erase line) repeated erased the `VERIFICATION FAILED` lines above it on the auditor's terminal, and
 * the rest of the name printed a fake "verified" line in their place. The same went for the folder
 * names in `verify --all`, `list --incomplete` and error messages. Every such name is made inert now.
 */
import assert from "node:assert/strict";
import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { before, test } from "node:test";
import { type CliIo, main } from "../../cli/recordings.ts";
import { sessionPrefix } from "../../gateway/recording/format.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { makeRecorder, meta, sqlEvents, tempDir } from "./fixtures.ts";

function io() {
	const out: string[] = [];
	const err: string[] = [];
	const cli: CliIo = { env: {}, stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), stderrIsTty: false, sleep: async () => {} };
	return { cli, out: () => out.join(""), err: () => err.join("") };
}

/** No byte a terminal acts on but the newline. */
function assertInert(text: string): void {
	assert.doesNotMatch(text, /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/, JSON.stringify(text));
}

let root: string;
let keyFile: string;
const m = meta({ startedAt: "2027-07-01T10:00:00.000Z" });
const ERASE = "\x1b[1A\x1b[2K".repeat(3);
const evil = `x${ERASE}\rverified: 1 chunk(s), 3 event(s), manifest signed by pinned key`;

before(async () => {
	root = await tempDir("escapes");
	const store = new DirStore(root);
	await store.init();
	const { rec, key } = await makeRecorder(store, await tempDir("escapes-spool"));
	try {
		const s = await rec.openSession(m);
		for (const e of sqlEvents(3)) s.emit(e);
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
	keyFile = join(root, "..", `escapes-${Date.now()}.jwk`);
	await writeFile(keyFile, JSON.stringify(key.publicJwk));
	// A bucket writer's object: any key is allowed in S3, any file name but "/" in a directory.
	await writeFile(join(root, sessionPrefix(m), evil), "");
	// And a session folder whose name is the payload, holding one chunk-like object.
	const { mkdir } = await import("node:fs/promises");
	await mkdir(join(root, "recordings/2027/07/01/orders-prod", evil), { recursive: true });
	await writeFile(join(root, "recordings/2027/07/01/orders-prod", evil, "chunk-000001.jsonl.gz"), "");
});

test("verify, verify --all and list --incomplete show bucket names inertly", async () => {
	let r = io();
	assert.equal(await main(["verify", m.sessionId, "--dir", root, "--key", keyFile], r.cli), 1);
	assert.match(r.out(), /VERIFICATION FAILED \(1 problem\(s\)\)/);
	assert.match(r.out(), /object not listed in the signed manifest/);
	assert.match(r.out(), /\\x1b\[1A\\x1b\[2K/, "the controls are shown as escapes");
	assertInert(r.out() + r.err());

	r = io();
	assert.equal(await main(["verify", "--all", "--dir", root, "--key", keyFile], r.cli), 1);
	assert.match(r.out(), /0 of 2 session\(s\) verified, 2 failed/);
	assertInert(r.out() + r.err());

	r = io();
	assert.equal(await main(["list", "--incomplete", "--dir", root], r.cli), 0);
	assert.match(r.out(), /1 session folder\(s\)/);
	assertInert(r.out() + r.err());

	r = io();
	assert.equal(await main(["show", evil, "--dir", root, "--key", keyFile], r.cli), 1);
	assertInert(r.out() + r.err());
});
