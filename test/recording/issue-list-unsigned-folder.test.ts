/**
 * Regression (red-team of recording tamper evidence): the recording format says a session folder
 * without manifest.jws (still open, uploading, or damaged) is skipped by `list`, but `listSessions`
 * (the CLI's `list`, the viewer's session list, `show <id>` lookups by metadata) listed every folder
 * holding a session.json. A bucket writer's made-up session (a session.json with its searchable
 * metadata, nothing signed) was listed among the real ones, as was a real session whose manifest had
 * been deleted. Only folders with a manifest are listed now; the others show in `list --incomplete`.
 */
import assert from "node:assert/strict";
import { before, test } from "node:test";
import { type CliIo, main } from "../../cli/recordings.ts";
import { listSessions } from "../../gateway/recording/catalog.ts";
import { MANIFEST_FILE, SESSION_FILE, sessionPrefix } from "../../gateway/recording/format.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { makeRecorder, meta, sqlEvents, tempDir } from "./fixtures.ts";

let root: string;
let store: DirStore;
const real = meta({ startedAt: "2027-08-01T10:00:00.000Z" });
const other = meta({ startedAt: "2027-08-01T11:00:00.000Z" });

before(async () => {
	root = await tempDir("unsigned-folder");
	store = new DirStore(root);
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("unsigned-folder-spool"));
	try {
		for (const m of [real, other]) {
			const s = await rec.openSession(m);
			for (const e of sqlEvents(2)) s.emit(e);
			await s.close({ reason: "client-closed" });
		}
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
});

test("list shows only folders with a manifest; the others are in list --incomplete", async () => {
	assert.equal((await listSessions(store, {})).length, 2);
	// A made-up session: another folder holding a copy of a real session.json (and its metadata), with
	// the identity rewritten, and no manifest.
	const fake = `recordings/2027/08/01/orders-prod/made-up-session/`;
	const head = await store.head(sessionPrefix(real) + SESSION_FILE);
	const doc = JSON.parse((await store.get(sessionPrefix(real) + SESSION_FILE)).toString());
	doc.sessionId = "made-up-session";
	doc.identity.username = "ceo";
	await store.put(fake + SESSION_FILE, Buffer.from(JSON.stringify(doc)), { metadata: { ...head!.metadata, "session-id": "made-up-session", identity: "ceo" } });
	// And a real session whose manifest was deleted.
	await store.remove(sessionPrefix(other) + MANIFEST_FILE);

	assert.deepEqual((await listSessions(store, {})).map((s) => s.prefix), [sessionPrefix(real)]);
	assert.deepEqual(await listSessions(store, { identity: "ceo" }), []);

	const out: string[] = [];
	const cli: CliIo = { env: {}, stdout: (s) => void out.push(s), stderr: () => {}, stderrIsTty: false, sleep: async () => {} };
	assert.equal(await main(["list", "--incomplete", "--json", "--dir", root], cli), 0);
	assert.deepEqual(
		out.join("").trim().split("\n").map((l) => JSON.parse(l).prefix).sort(),
		[fake, sessionPrefix(other)].sort(),
	);
});
