/**
 * Port forwarding reached anything the target could reach. A grant with `allowPortForwarding: true`
 * let `ssh -W host:port` / `ssh -L` open any destination from the target (the gateway opens
 * direct-tcpip upstream with forwardOut, so `127.0.0.1` is the target's loopback): a database
 * listening on the target's loopback only, the cloud metadata address, every host on the target's
 * network. Now a forward reaches only the grant's `allowedForwards` (`host:port` as listed), and a
 * grant without the list (a bundle from before it) forwards nowhere.
 *
 * Real OpenSSH `ssh -W` (token as the password) → gateway → real sshd (test/env). The "internal
 * service" is a TCP server on 127.0.0.1 beside the target's sshd; it counts its connections.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { BundleGrant } from "../../gateway/config/bundle.ts";
import { type SshListener, startSshListener } from "../../gateway/ssh/listener.ts";
import { type SshdHandle, startSshd } from "../env/index.ts";
import { approvalService, makeBundle, MemoryRecorder, storeWith, type TokenIssuer, tokenIssuer } from "./fixtures.ts";
import { KeyDir } from "./keys.ts";

const keys = new KeyDir();
const recorder = new MemoryRecorder();
let sshd: SshdHandle;
let gw: SshListener;
let issuer: TokenIssuer;
let internal: Server;
let internalPort: number;
let internalConnections = 0;

const grant = (key: string, subject: string, ssh: Partial<NonNullable<BundleGrant["ssh"]>>): BundleGrant => ({
	key,
	name: key.split("/")[1]!,
	namespace: "ops",
	connection: "web",
	subjects: [{ kind: "User", name: subject }],
	notBefore: new Date(Date.now() - 60_000).toISOString(),
	expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
	ssh: { logins: [sshd.user], allowShell: true, allowSftp: false, allowPortForwarding: true, allowAgentForwarding: false, ...ssh },
	approvers: { subjects: [], minApprovals: 1 },
	origin: {},
});

before(async () => {
	internal = createServer((s) => {
		internalConnections++;
		s.end("INTERNAL-SERVICE\n");
	});
	await new Promise<void>((r) => internal.listen(0, "127.0.0.1", r));
	internalPort = (internal.address() as { port: number }).port;
	sshd = await startSshd();
	issuer = await tokenIssuer();
	const bundle = makeBundle(issuer, {
		connections: [
			{
				key: "ops/web",
				name: "web",
				namespace: "ops",
				type: "ssh",
				labels: {},
				host: sshd.host,
				port: sshd.port,
				credentialRef: "ssh-gw",
				ssh: { hostKeys: [sshd.hostPublicKey], auth: "key" },
			},
		],
		grants: [
			// The tunnel to the target's own sshd only.
			grant("ops/tunnel", "lee", { allowedForwards: [`127.0.0.1:${sshd.port}`] }),
			// As compiled before allowedForwards existed: allowPortForwarding alone.
			grant("ops/legacy-tunnel", "kim", {}),
			grant("ops/any", "ana", { allowedForwards: ["*:*"] }),
		],
		credentials: { "ssh-gw": { type: "sshKey", username: sshd.user, privateKeyPem: readFileSync(sshd.clientKeyFile, "utf8") } },
	});
	gw = await startSshListener({
		store: storeWith(bundle),
		recorder,
		approvals: approvalService(),
		hostKeyPem: keys.keygen("ed25519").privateKey,
	});
});

after(async () => {
	await gw?.close();
	await sshd?.stop();
	await new Promise((r) => internal?.close(r));
	keys.cleanup();
});

/** `ssh -W dest` through the gateway as `user` (token as the password): what came back through the tunnel. */
async function forward(user: string, dest: string): Promise<{ code: number | null; out: string; stderr: string }> {
	const askpass = join(keys.dir, `askpass-${user}.sh`);
	writeFileSync(askpass, `#!/bin/sh\necho '${await issuer.token(user)}'\n`, { mode: 0o755 });
	const known = join(keys.dir, "known_hosts");
	writeFileSync(known, `[127.0.0.1]:${gw.address.port} ${gw.hostPublicKey}\n`);
	const child = spawn(
		"ssh",
		[
			"-F", "/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${known}`,
			"-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no", "-o", "LogLevel=INFO",
			"-p", String(gw.address.port), "-l", `${sshd.user}@web`, "-W", dest, "127.0.0.1",
		],
		{ env: { ...process.env, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: "force", DISPLAY: ":0" } },
	);
	let out = "";
	let stderr = "";
	child.stdout.on("data", (d: Buffer) => (out += d.toString()));
	child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
	const timer = setTimeout(() => child.kill(), 15_000);
	// A banner through the tunnel is enough: stop there (sshd would wait for our identification).
	const poll = setInterval(() => {
		if (out.includes("\n")) child.kill();
	}, 50);
	const code = await new Promise<number | null>((r) => child.on("close", (c) => r(c)));
	clearTimeout(timer);
	clearInterval(poll);
	return { code, out, stderr };
}

test("a forward outside allowedForwards is refused with the reason; nothing is opened on the target", async () => {
	const before = internalConnections;
	const r = await forward("lee", `127.0.0.1:${internalPort}`);
	// On the old code: "INTERNAL-SERVICE", a service the grant never named.
	assert.equal(r.out, "");
	assert.equal(internalConnections, before, "the target connected to the internal service");
	assert.match(
		r.stderr,
		new RegExp(`administratively prohibited: drawbridge: grant "ops/tunnel" does not allow forwarding to 127\\.0\\.0\\.1:${internalPort} \\(allowed: 127\\.0\\.0\\.1:${sshd.port}\\)`),
	);
	const ev = recorder.events("exec").find((e) => e.command === `direct-tcpip 127.0.0.1:${internalPort}`);
	assert.equal(ev?.decision, "block");
	assert.equal(ev?.rule, "grant:ops/tunnel");
});

test("a listed destination is forwarded; another spelling of it is not", async () => {
	const ok = await forward("lee", `127.0.0.1:${sshd.port}`);
	assert.match(ok.out, /^SSH-2\.0-OpenSSH/, ok.stderr);
	assert.ok(recorder.events("exec").some((e) => e.command === `direct-tcpip 127.0.0.1:${sshd.port}` && e.decision === "allow"));
	const other = await forward("lee", `localhost:${sshd.port}`);
	assert.equal(other.out, "");
	assert.match(other.stderr, /does not allow forwarding to localhost:/);
});

test("allowPortForwarding without allowedForwards forwards nowhere (deny by default)", async () => {
	const before = internalConnections;
	for (const dest of [`127.0.0.1:${internalPort}`, `127.0.0.1:${sshd.port}`]) {
		const r = await forward("kim", dest);
		assert.equal(r.out, "", dest);
		assert.match(r.stderr, /grant "ops\/legacy-tunnel" does not allow forwarding to .* \(allowed: none: the grant lists no allowedForwards\)/);
	}
	assert.equal(internalConnections, before);
});

test("`*:*` is what reaching anything looks like, and it is written in the grant", async () => {
	const before = internalConnections;
	const r = await forward("ana", `127.0.0.1:${internalPort}`);
	assert.equal(r.out, "INTERNAL-SERVICE\n", r.stderr);
	assert.equal(internalConnections, before + 1);
});
