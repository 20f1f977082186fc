/**
 * An SSH session recorded by the REAL recorder (gateway/recording: spool, hash-chained chunks, signed
 * manifest, directory store) replays: its asciicast stream shows what the agent saw, its events carry the
 * blocked line, and the signed manifest verifies.
 */
import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { listSessions, loadSession, loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { generateRecordingKey } from "../../gateway/recording/keys.ts";
import { DiskRecorder } from "../../gateway/recording/recorder.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { verifySession } from "../../gateway/recording/verify.ts";
import { type SshListener, startSshListener } from "../../gateway/ssh/listener.ts";
import { run, type SshdHandle, startSshd } from "../env/index.ts";
import { approvalService, makeBundle, storeWith, tokenIssuer } from "./fixtures.ts";
import { KeyDir } from "./keys.ts";

const keys = new KeyDir();
let sshd: SshdHandle;
let gw: SshListener;
let rec: DiskRecorder;
let dir: string;
let store: DirStore;
let issuer: Awaited<ReturnType<typeof tokenIssuer>>;

before(async () => {
	dir = mkdtempSync(join(tmpdir(), "drawbridge-ssh-rec-"));
	store = new DirStore(join(dir, "store"));
	sshd = await startSshd();
	const { key } = await generateRecordingKey();
	rec = new DiskRecorder({ spoolDir: join(dir, "spool"), store, key, flushIntervalMs: 20, logger: { info() {}, warn() {}, error() {} } });
	await rec.start();
	issuer = await tokenIssuer();
	const bundle = makeBundle(issuer, {
		connections: [
			{
				key: "ops/web-1",
				name: "web-1",
				namespace: "ops",
				type: "ssh",
				labels: { env: "prod" },
				host: sshd.host,
				port: sshd.port,
				credentialRef: "gw",
				ssh: { hostKeys: [sshd.hostPublicKey], auth: "key" },
			},
		],
		grants: [
			{
				key: "ops/web-oncall",
				name: "web-oncall",
				namespace: "ops",
				connection: "web-1",
				subjects: [{ kind: "User", name: "lee" }],
				notBefore: new Date(Date.now() - 60_000).toISOString(),
				expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
				ssh: { logins: [sshd.user], allowShell: true, allowSftp: false, allowPortForwarding: false, allowAgentForwarding: false },
				approvers: { subjects: [], minApprovals: 1 },
				origin: { repository: "grants", pullRequest: 12, commit: "0123abc" },
			},
		],
		guardrailPolicies: [{ key: "ops/g", selector: {}, rules: [{ name: "no-reboot", action: "block", ssh: { commands: ["reboot*"] } }] }],
		credentials: { gw: { type: "sshKey", username: sshd.user, privateKeyPem: readFileSync(sshd.clientKeyFile, "utf8") } },
	});
	gw = await startSshListener({
		store: storeWith(bundle),
		recorder: rec,
		approvals: approvalService(),
		hostKeyPem: keys.keygen("ed25519").privateKey,
		trustedUserCAKeys: [],
	});
});

after(async () => {
	await gw?.close();
	await rec?.stop();
	await sshd?.stop();
	keys.cleanup();
	if (dir) rmSync(dir, { recursive: true, force: true });
});

test("an SSH shell session recorded by the real recorder replays and verifies", async () => {
	const askpass = join(keys.dir, "askpass.sh");
	const token = await issuer.token("lee");
	writeFileSync(askpass, `#!/bin/sh\necho '${token}'\n`, { mode: 0o755 });
	const known = join(keys.dir, "known_hosts");
	writeFileSync(known, `[127.0.0.1]:${gw.address.port} ${gw.hostPublicKey}\n`);
	const r = await run(
		"ssh",
		[
			"-F", "/dev/null", "-tt", "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${known}`,
			"-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
			"-p", String(gw.address.port), "-l", `${sshd.user}@web-1`, "127.0.0.1",
		],
		{
			input: "echo replay-$((40+2))\nreboot now\nexit\n",
			env: { ...process.env, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: "force", DISPLAY: ":0" },
			timeoutMs: 30_000,
		},
	);
	assert.match(r.stdout, /replay-42/, r.stderr);
	assert.match(r.stdout, /no-reboot/);
	// The session closes when the client disconnects; then everything is uploaded.
	let sessions: Awaited<ReturnType<typeof listSessions>> = [];
	for (let i = 0; i < 100 && !sessions.some((x) => x.protocol === "ssh" && x.endedAt); i++) {
		await rec.drain(30_000);
		sessions = await listSessions(store, {});
		if (!sessions.some((x) => x.protocol === "ssh" && x.endedAt)) await new Promise((r) => setTimeout(r, 100));
	}
	const s = sessions.find((x) => x.protocol === "ssh");
	assert.ok(s, JSON.stringify(sessions));
	assert.equal(s.grant, "ops/web-oncall");
	assert.equal(s.hasBlocked, true);
	const loaded = await loadSession(store, s.prefix);
	assert.ok(loaded.cast, "terminal.cast uploaded");
	const lines = loaded.cast.trim().split("\n");
	const header = JSON.parse(lines[0]!) as { version: number; width: number };
	assert.equal(header.version, 2);
	const frames = lines.slice(1).map((l) => JSON.parse(l) as [number, string, string]);
	assert.match(frames.filter((f) => f[1] === "o").map((f) => f[2]).join(""), /replay-42/);
	const blocked = loaded.events.find((e) => e.type === "exec" && e.command === "reboot now");
	assert.equal((blocked as { decision?: string } | undefined)?.decision, "block");
	const verified = await verifySession(store, s.prefix, (await loadStoreKeys(store)).set);
	assert.equal(verified.ok, true, JSON.stringify(verified.problems));
});

