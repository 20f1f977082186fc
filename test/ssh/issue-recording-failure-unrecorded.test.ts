/**
 * Regression (recordings red-team round 10, unrecorded actions): the SSH twin of
 * test/postgres/issue-recording-failure-unrecorded.test.ts. When the spool stopped taking a session's
 * events (its folder gone, a disk failure), the recorder called no one (no data path passed
 * `onFailure`) and the session went on unrecorded. Through ssh2's client → gateway (real recorder) →
 * real sshd: the shell's output could no longer be recorded and the shell kept running. Now the
 * session ends with a message naming the failure.
 */
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { generateRecordingKey } from "../../gateway/recording/keys.ts";
import { DiskRecorder } from "../../gateway/recording/recorder.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { type SshListener, startSshListener } from "../../gateway/ssh/listener.ts";
import { type SshdHandle, startSshd } from "../env/index.ts";
import { approvalService, makeBundle, sshdConnection, sshdCredentials, sshGrant, storeWith, type TokenIssuer, tokenIssuer } from "./fixtures.ts";
import { KeyDir } from "./keys.ts";

const ssh2 = createRequire(import.meta.url)("ssh2") as typeof import("ssh2");

const keys = new KeyDir();
let sshd: SshdHandle;
let issuer: TokenIssuer;
let gw: SshListener;
let rec: DiskRecorder;
let spool: string;

before(async () => {
	issuer = await tokenIssuer();
	sshd = await startSshd();
	spool = await mkdtemp(join(tmpdir(), "drawbridge-ssh-recfail-spool-"));
	const store = new DirStore(await mkdtemp(join(tmpdir(), "drawbridge-ssh-recfail-store-")));
	await store.init();
	rec = new DiskRecorder({ spoolDir: spool, store, key: (await generateRecordingKey()).key, flushIntervalMs: 20, logger: { info() {}, warn() {}, error() {} } });
	await rec.start();
	gw = await startSshListener({
		store: storeWith(makeBundle(issuer, { connections: [sshdConnection(sshd, "web")], grants: [sshGrant(sshd, "lee", "web", { allowShell: true })], credentials: sshdCredentials(sshd) })),
		recorder: rec,
		approvals: approvalService(),
		hostKeyPem: keys.keygen("ed25519").privateKey,
	});
});

after(async () => {
	await gw?.close();
	await rec?.stop();
	await sshd?.stop();
	keys.cleanup();
});

test("a shell whose recording fails is closed, not run unrecorded", async () => {
	const token = await issuer.token("lee");
	const c = new ssh2.Client();
	const gone = new Promise<void>((resolve) => c.on("close", () => resolve()));
	await new Promise<void>((resolve, reject) => {
		c.on("ready", () => resolve());
		c.on("error", () => undefined);
		c.once("error", reject);
		c.connect({ host: "127.0.0.1", port: gw.address.port, username: `${sshd.user}@web`, password: token, hostVerifier: () => true });
	});
	// the session's spool folder disappears under the recorder (disk replaced, operator error)
	const sessions = await readdir(join(spool, "sessions"));
	assert.equal(sessions.length, 1, JSON.stringify(sessions));
	await rm(join(spool, "sessions", sessions[0]!), { recursive: true, force: true });
	let out = "";
	const ch = await new Promise<import("ssh2").ClientChannel>((resolve, reject) =>
		c.shell({ term: "xterm", rows: 24, cols: 80 }, (err, s) => (err ? reject(err) : resolve(s))),
	);
	ch.on("data", (b: Buffer) => (out += b.toString()));
	ch.stderr.on("data", (b: Buffer) => (out += b.toString()));
	const closed = new Promise<void>((resolve) => ch.on("close", () => resolve()));
	ch.write("echo still-here-$((6*7))\n");
	const timeout = new Promise<"timeout">((resolve) => setTimeout(() => resolve("timeout"), 60_000).unref());
	const outcome = await Promise.race([closed.then(() => "closed" as const), timeout]);
	c.end();
	await Promise.race([gone, timeout]);
	assert.equal(outcome, "closed", `the shell went on unrecorded: ${JSON.stringify(out.slice(-300))}`);
	assert.match(out, /recording failed/);
});
