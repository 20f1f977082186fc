/**
 * The SSH listener's connection cap and drain, with real OpenSSH `ssh` → gateway → real sshd: at the
 * cap and while draining a new client is refused before key exchange with SSH_MSG_DISCONNECT whose
 * description `ssh` prints (exit 255); the session already open keeps running commands; a slot frees
 * when that session ends.
 */
import assert from "node:assert/strict";
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { createConnection } from "node:net";
import { after, before, test } from "node:test";
import { disconnectPacket, DisconnectReason } from "../../gateway/ssh/refuse.ts";
import { type SshListener, type SshRefusalReason, startSshListener } from "../../gateway/ssh/listener.ts";
import { run, type SshdHandle, startSshd } from "../env/index.ts";
import { approvalService, makeBundle, MemoryRecorder, storeWith, tokenIssuer, waitUntil, sshdConnection, sshdCredentials, sshGrant, agentSshFiles } from "./fixtures.ts";
import { type KeyPair, KeyDir } from "./keys.ts";

const keys = new KeyDir();
let sshd: SshdHandle;
let gw: SshListener;
let agent: KeyPair;
let certFile: string;
let knownHosts: string;
const refused: SshRefusalReason[] = [];

before(async () => {
	const issuer = await tokenIssuer();
	sshd = await startSshd();
	const ca = keys.keygen("ed25519");
	agent = keys.keygen("ed25519");
	const connection = sshdConnection(sshd, "db-primary", {});
	const store = storeWith(
		makeBundle(issuer, {
			connections: [connection],
			grants: [
				sshGrant(sshd, "break-glass", "db-primary", { allowShell: true }, { approvers: { subjects: [], minApprovals: 1 } }),
			],
			ssh: { userCaKeys: [ca.publicKey] },
			credentials: sshdCredentials(sshd),
		}),
	);
	gw = await startSshListener({
		store,
		recorder: new MemoryRecorder(),
		approvals: approvalService(),
		hostKeyPem: keys.keygen("ed25519").privateKey,
		maxConnections: 1,
		onRefused: (reason) => refused.push(reason),
	});
	({ knownHosts, certFile } = agentSshFiles(keys, gw, ca, agent, sshd.user, "ops/break-glass"));
});

after(async () => {
	await gw?.close();
	await sshd?.stop();
	keys.cleanup();
});

function sshArgs(): string[] {
	return [
		"-F", "/dev/null",
		"-o", "BatchMode=yes",
		"-o", "StrictHostKeyChecking=yes",
		"-o", `UserKnownHostsFile=${knownHosts}`,
		"-o", "IdentitiesOnly=yes",
		"-o", "LogLevel=INFO",
		"-i", agent.path,
		"-o", `CertificateFile=${certFile}`,
		"-p", String(gw.address.port),
		"-l", `${sshd.user}@db-primary`,
		"127.0.0.1",
	];
}

/** A live session: a remote loop that answers each line it reads, so the test can prove it still works. */
class Neighbour {
	readonly child: ChildProcessWithoutNullStreams;
	#out = "";
	readonly exited: Promise<number | null>;

	constructor() {
		this.child = spawn("ssh", [...sshArgs(), 'while read l; do echo "got:$l"; done']);
		this.child.stdout.setEncoding("utf8");
		this.child.stdout.on("data", (d: string) => (this.#out += d));
		this.child.stderr.on("data", () => {});
		this.exited = new Promise((resolve) => this.child.on("exit", (code) => resolve(code)));
	}

	async roundTrip(word: string): Promise<void> {
		this.child.stdin.write(`${word}\n`);
		await waitUntil(`neighbour answers ${word}`, () => this.#out.includes(`got:${word}\n`), 30_000);
	}

	async end(): Promise<number | null> {
		this.child.stdin.end();
		return this.exited;
	}
}

test("at the cap a new ssh is told the limit was reached (exit 255), the neighbour keeps working, a freed slot admits it", { timeout: 120_000 }, async () => {
	refused.length = 0;
	const n = new Neighbour();
	await n.roundTrip("first");
	assert.equal(gw.connectionCount, 1);

	const r = await run("ssh", [...sshArgs(), "echo over-the-cap"], { timeoutMs: 30_000 });
	assert.equal(r.code, 255, r.stderr);
	assert.match(r.stderr, /Received disconnect from 127\.0\.0\.1 port \d+:12: drawbridge: the gateway's connection limit was reached \(at most 1 concurrent SSH connections\)/);
	assert.doesNotMatch(r.stdout, /over-the-cap/);
	assert.deepEqual(refused, ["max-connections"]);

	await n.roundTrip("still-alive");
	assert.equal(await n.end(), 0);
	await waitUntil("slot freed", () => gw.connectionCount === 0, 10_000);

	const ok = await run("ssh", [...sshArgs(), "echo admitted"], { timeoutMs: 30_000 });
	assert.equal(ok.code, 0, ok.stderr);
	assert.equal(ok.stdout.trim(), "admitted");
	assert.deepEqual(refused, ["max-connections"]);
});

test("the refusal is the identification line then one plaintext SSH_MSG_DISCONNECT packet", async () => {
	const n = new Neighbour();
	await n.roundTrip("hold");
	const sock = createConnection({ host: "127.0.0.1", port: gw.address.port });
	sock.write("SSH-2.0-OpenSSH_9.2\r\n");
	const chunks: Buffer[] = [];
	sock.on("data", (c: Buffer) => chunks.push(c));
	await new Promise((resolve) => sock.on("close", resolve));
	const got = Buffer.concat(chunks);
	const ident = "SSH-2.0-Drawbridge\r\n";
	assert.equal(got.subarray(0, ident.length).toString("latin1"), ident);
	const packet = got.subarray(ident.length);
	assert.equal(packet.length % 8, 0);
	assert.equal(packet.readUInt32BE(0), packet.length - 4);
	assert.ok(packet[4]! >= 4, "padding of at least 4 bytes");
	assert.equal(packet[5], 1); // SSH_MSG_DISCONNECT
	assert.equal(packet.readUInt32BE(6), 12); // SSH_DISCONNECT_TOO_MANY_CONNECTIONS
	assert.equal(await n.end(), 0);
	await waitUntil("slot freed", () => gw.connectionCount === 0, 10_000);
});

test("disconnectPacket pads every description length to whole blocks", () => {
	for (let len = 0; len < 40; len++) {
		const p = disconnectPacket(DisconnectReason.ByApplication, "x".repeat(len));
		assert.equal(p.length % 8, 0, `length ${len}`);
		const padding = p[4]!;
		assert.ok(padding >= 4 && padding < 12, `padding ${padding} for ${len}`);
		assert.equal(p.readUInt32BE(10), len);
		assert.equal(p.length, 4 + 1 + 1 + 4 + 4 + len + 4 + padding);
	}
});

// Last: draining cannot be undone.
test("draining: a new ssh is told the gateway is shutting down while a live session still runs commands", { timeout: 120_000 }, async () => {
	refused.length = 0;
	const n = new Neighbour();
	await n.roundTrip("before-drain");
	gw.drain();
	const r = await run("ssh", [...sshArgs(), "echo during-drain"], { timeoutMs: 30_000 });
	assert.equal(r.code, 255, r.stderr);
	assert.match(r.stderr, /Received disconnect from 127\.0\.0\.1 port \d+:11: drawbridge: the gateway is shutting down/);
	assert.doesNotMatch(r.stdout, /during-drain/);
	await n.roundTrip("during-drain");
	assert.deepEqual(refused, ["shutting-down"]);
	assert.equal(await n.end(), 0);
	// Still refused once the session is gone: draining is not the cap.
	await waitUntil("slot freed", () => gw.connectionCount === 0, 10_000);
	const again = await run("ssh", [...sshArgs(), "true"], { timeoutMs: 30_000 });
	assert.equal(again.code, 255);
	assert.match(again.stderr, /shutting down/);
	assert.deepEqual(refused, ["shutting-down", "shutting-down"]);
});
