import assert from "node:assert/strict";
import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { test } from "node:test";
import Fastify from "fastify";
import { type CliIo, main } from "../../cli/recordings.ts";
import { registerViewer } from "../../gateway/admin/viewer.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { blockedAndApproved, makeRecorder, meta, sqlEvents, tempDir } from "./fixtures.ts";

function io(env: Record<string, string> = {}) {
	const out: string[] = [];
	const err: string[] = [];
	const slept: number[] = [];
	const cli: CliIo = {
		env,
		stdout: (s) => void out.push(s),
		stderr: (s) => void err.push(s),
		stderrIsTty: false,
		sleep: async (ms) => void slept.push(ms),
	};
	return { cli, out: () => out.join(""), err: () => err.join(""), slept };
}

test("recordings CLI over a directory store: list filters, show, replay, verify, export, help", async (t) => {
	const root = await tempDir("cli-store");
	const store = new DirStore(root);
	await store.init();
	let clock = 0;
	const { rec } = await makeRecorder(store, await tempDir("cli-spool"), { chunkMaxBytes: 4096, now: () => (clock += 250) });
	const mSql = meta({ startedAt: "2027-03-05T10:00:00.000Z" });
	const mQuiet = meta({ startedAt: "2027-03-20T09:00:00.000Z", identity: { issuer: "https://issuer.test", subject: "lee", username: "lee@example.com", groups: ["oncall"] }, grant: "oncall/break-glass" });
	const mSsh = meta({ startedAt: "2027-04-02T08:00:00.000Z", protocol: "ssh", connection: "db-primary", target: { login: "lee" }, identity: { issuer: "https://issuer.test", subject: "lee", username: "lee@example.com", groups: ["oncall"] }, grant: "oncall/break-glass" });
	try {
		clock = Date.parse(mSql.startedAt);
		const s1 = await rec.openSession(mSql);
		for (const e of sqlEvents(20)) s1.emit(e);
		for (const e of blockedAndApproved) s1.emit(e);
		await s1.close({ reason: "client-closed" });
		clock = Date.parse(mQuiet.startedAt);
		const s2 = await rec.openSession(mQuiet);
		s2.emit(sqlEvents(1)[0]!);
		await s2.close({ reason: "grant-expired", message: "grant oncall/break-glass expired" });
		clock = Date.parse(mSsh.startedAt);
		const s3 = await rec.openSession(mSsh);
		s3.emit({ type: "terminal", stream: "r", data: "90x20" });
		s3.emit({ type: "terminal", stream: "o", data: "$ " });
		s3.emit({ type: "terminal", stream: "i", data: "sudo systemctl restart postgresql\r" });
		s3.emit({ type: "exec", command: "sudo systemctl restart postgresql", decision: "audit", rule: "audit-sudo", exitCode: 0 });
		s3.emit({ type: "terminal", stream: "o", data: "restarted\r\n" });
		await s3.close({ reason: "client-closed" });
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
	const dirArgs = ["--dir", root];

	await t.test("list: all, then each filter", async () => {
		let r = io();
		assert.equal(await main(["list", ...dirArgs], r.cli), 0);
		assert.equal(r.out().split("\n").filter((l) => l.includes("orders-prod") || l.includes("db-primary")).length, 3);
		assert.match(r.out(), /STARTED\s+DURATION\s+PROTOCOL\s+IDENTITY/);
		r = io();
		assert.equal(await main(["list", ...dirArgs, "--connection", "orders-prod", "--since", "2027-03-01", "--until", "2027-04-01", "--json"], r.cli), 0);
		const march = r.out().trim().split("\n").map((l) => JSON.parse(l));
		assert.deepEqual(march.map((s) => s.sessionId), [mSql.sessionId, mQuiet.sessionId]);
		r = io();
		await main(["list", ...dirArgs, "--blocked", "--json"], r.cli);
		assert.deepEqual(r.out().trim().split("\n").map((l) => JSON.parse(l).sessionId), [mSql.sessionId]);
		r = io();
		await main(["list", ...dirArgs, "--approvals", "--json"], r.cli);
		assert.deepEqual(r.out().trim().split("\n").map((l) => JSON.parse(l).sessionId), [mSql.sessionId]);
		r = io();
		await main(["list", ...dirArgs, "--identity", "*@example.com", "--grant", "oncall/*", "--protocol", "ssh", "--json"], r.cli);
		assert.deepEqual(r.out().trim().split("\n").map((l) => JSON.parse(l).sessionId), [mSsh.sessionId]);
		r = io();
		assert.equal(await main(["list", ...dirArgs, "--identity", "nobody"], r.cli), 1);
		assert.match(r.err(), /no sessions match/);
		r = io({ DRAWBRIDGE_RECORDINGS_DIR: root });
		assert.equal(await main(["list", "--progress", "--since", "2027-03-01", "--until", "2027-03-03"], r.cli), 1);
		assert.match(r.err(), /scanning \[#+\.*\] 2\/2/);
	});

	await t.test("show: header, approving PR, verification, decisions and approvals in the timeline", async () => {
		const r = io();
		assert.equal(await main(["show", mSql.sessionId, ...dirArgs], r.cli), 0);
		const text = r.out();
		assert.match(text, /Identity {4}ci-deployer/);
		assert.match(text, /Grant {7}ci\/deployer-orders-ro {2}approved by commit 0123456789abcdef0123456789abcdef01234567 {2}PR #42 {2}https:\/\/git.test\/grants\/pull\/42/);
		// No --key: the keys come from the bucket itself, and show says so where the verdict is.
		assert.match(text, /Integrity {3}verified against UNPINNED keys from the bucket itself: \d+ chunk\(s\), 24 event\(s\)/);
		assert.match(r.err(), /^WARNING: no pinned keys: recordings are verified against the keys published in the recordings bucket itself/);
		assert.match(text, /SQL {4}BLOCK {4}DROP TABLE customers rule=no-ddl {2}→ ERROR 42501/);
		assert.match(text, /APPROVAL Approved ar-7f3c rule=delete-needs-approval DELETE FROM tickets by user:sam/);
		assert.match(text, /SQL {4}APPROVED {1}DELETE FROM tickets .* approval=ar-7f3c {2}→ DELETE 12/);
	});

	await t.test("replay: terminal output at --speed, SQL as a timed log", async () => {
		let r = io();
		assert.equal(await main(["replay", mSsh.sessionId, ...dirArgs, "--speed", "10"], r.cli), 0);
		assert.equal(r.out(), "$ restarted\r\n\n");
		r = io();
		assert.equal(await main(["replay", mSql.sessionId, ...dirArgs, "--speed", "2"], r.cli), 0);
		assert.match(r.out(), /\+00:0\d\.\d{3} {2}SQL {4}ALLOW/);
	});

	await t.test("verify: one session, --all, pinned key file, tampered store", async () => {
		let r = io();
		assert.equal(await main(["verify", mSsh.sessionId, ...dirArgs], r.cli), 0);
		assert.match(r.out(), /verified against UNPINNED keys from the bucket itself: 1 chunk\(s\), 5 event\(s\)/);
		assert.match(r.err(), /WARNING: no pinned keys.*forge a recording that verifies. Pin keys with --key FILE/);
		r = io();
		assert.equal(await main(["verify", mSsh.sessionId, ...dirArgs, "--json"], r.cli), 0);
		assert.equal(JSON.parse(r.out()).keys, "bucket");
		r = io();
		assert.equal(await main(["keys", ...dirArgs], r.cli), 0);
		const keyFile = join(root, "..", `pinned-${Date.now()}.jwks`);
		await (await import("node:fs/promises")).writeFile(keyFile, r.out());
		r = io();
		assert.equal(await main(["verify", "--all", ...dirArgs, "--key", keyFile], r.cli), 0);
		assert.match(r.out(), /3 of 3 session\(s\) verified, 0 failed\n/);
		assert.doesNotMatch(r.out() + r.err(), /UNPINNED|WARNING/);
		r = io();
		assert.equal(await main(["verify", mSsh.sessionId, ...dirArgs, "--key", keyFile], r.cli), 0);
		assert.match(r.out(), /verified: 1 chunk\(s\), 5 event\(s\), manifest signed by pinned key /);
		r = io();
		assert.equal(await main(["verify", mSsh.sessionId, ...dirArgs, "--key", keyFile, "--json"], r.cli), 0);
		assert.equal(JSON.parse(r.out()).keys, "pinned");
		const sshPrefix = `recordings/2027/04/02/db-primary/${mSsh.sessionId}/`;
		await store.put(`${sshPrefix}terminal.cast`, Buffer.from('{"version":2,"width":80,"height":24}\n[0.1,"o","nothing happened"]\n'));
		r = io();
		assert.equal(await main(["verify", "--all", ...dirArgs, "--key", keyFile], r.cli), 1);
		assert.match(r.out(), /VERIFICATION FAILED \(1 problem\(s\)\).*\n {2}- terminal.cast: modified: SHA-256 is/);
		assert.match(r.out(), /2 of 3 session\(s\) verified, 1 failed/);
	});

	await t.test("verify --keys-url: keys from a gateway's admin endpoint", async () => {
		const app = Fastify();
		await registerViewer(app, { store, auditorGroup: "auditors", authenticate: () => undefined });
		const url = await app.listen({ host: "127.0.0.1", port: 0 });
		try {
			let r = io();
			assert.equal(await main(["verify", mSql.sessionId, ...dirArgs, "--keys-url", `${url}/api/v1/recordings/keys`], r.cli), 0);
			assert.match(r.out(), /verified/);
			r = io();
			assert.equal(await main(["verify", mSql.sessionId, ...dirArgs, "--keys-url", `${url}/nope`], r.cli), 3);
			assert.match(r.err(), /cannot fetch recording keys from .*\/nope: HTTP 404/);
		} finally {
			await app.close();
		}
	});

	await t.test("export: JSON Lines with session context", async () => {
		// The SSH session's terminal.cast was replaced by the verify test: it is left out, and named.
		const out = join(root, "..", `export-${Date.now()}.jsonl`);
		let r = io();
		assert.equal(await main(["export", ...dirArgs, "--out", out], r.cli), 1);
		let lines = (await readFile(out, "utf8")).trim().split("\n").map((l) => JSON.parse(l));
		assert.equal(lines.length, 24 + 1);
		const blocked = lines.find((l) => l.decision === "block");
		assert.equal(blocked.identity, "ci-deployer");
		assert.equal(blocked.grant, "ci/deployer-orders-ro");
		assert.equal(blocked.pullRequest, 42);
		assert.equal(blocked.sessionId, mSql.sessionId);
		assert.equal(blocked.unverified, undefined);
		assert.match(r.err(), /exported 25 event\(s\) from 2 session\(s\) \(verified against UNPINNED keys from the bucket itself\)/);
		assert.match(r.err(), new RegExp(`1 session\\(s\\) failed verification and were NOT exported .*:\n {2}- recordings/2027/04/02/db-primary/${mSsh.sessionId}/: terminal.cast: modified`));
		r = io();
		assert.equal(await main(["export", ...dirArgs, "--out", out, "--include-unverified"], r.cli), 1);
		lines = (await readFile(out, "utf8")).trim().split("\n").map((l) => JSON.parse(l));
		assert.equal(lines.length, 24 + 1 + 5);
		assert.deepEqual(new Set(lines.filter((l) => l.unverified === true).map((l) => l.sessionId)), new Set([mSsh.sessionId]));
		assert.match(r.err(), /exported 30 event\(s\) from 3 session\(s\)/);
		r = io();
		assert.equal(await main(["export", ...dirArgs, "--out", out, "--no-verify"], r.cli), 0);
		assert.equal((await readFile(out, "utf8")).trim().split("\n").length, 30);
		assert.match(r.err(), /exported 30 event\(s\) from 3 session\(s\) \(not verified\)/);
	});

	await t.test("help and usage errors", async () => {
		let r = io();
		assert.equal(await main(["--help"], r.cli), 0);
		assert.match(r.out(), /Usage: drawbridge recordings <command>/);
		for (const cmd of ["list", "show", "replay", "verify", "export", "keys"]) {
			r = io();
			assert.equal(await main([cmd, "--help"], r.cli), 0);
			assert.match(r.out(), new RegExp(`Usage: drawbridge recordings ${cmd}`));
		}
		r = io();
		assert.equal(await main(["list"], r.cli), 2);
		assert.match(r.err(), /no recording store: pass --dir DIR or --endpoint URL/);
		r = io();
		assert.equal(await main(["list", "--dir", root, "--since", "yesterday"], r.cli), 2);
		assert.match(r.err(), /--since: not a time/);
		r = io();
		assert.equal(await main(["show", "no-such-session", "--dir", root], r.cli), 1);
		assert.match(r.err(), /no recorded session with id no-such-session/);
		r = io();
		assert.equal(await main(["frobnicate"], r.cli), 2);
	});
});
