/**
 * Per-connection limits of the SSH listener (red team: one connection opened 60 exec channels at the
 * gateway, each able to raise an approval request, and authentication attempts were bounded only by
 * the 30 s deadline). Real OpenSSH `ssh`/`scp`/`sftp` and ssh2's client → gateway → real sshd:
 * 1. the 11th session channel open at once is refused with CHANNEL_OPEN_FAILURE "resource shortage"
 *    and a description, while the first 10 keep working and a freed slot admits a new one;
 * 2. a 4th approval request pending at once on one connection is refused without asking anyone;
 * 3. after 6 failed authentication requests the 7th is answered with SSH_MSG_DISCONNECT (14) whose
 *    description `ssh` prints;
 * 4. ordinary ssh, scp and sftp still work.
 */
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type SshLimitReason, type SshListener, type SshRefusalReason, startSshListener } from "../../gateway/ssh/listener.ts";
import { run, type SshdHandle, startSshd } from "../env/index.ts";
import { approvalService, makeBundle, MemoryRecorder, storeWith, type TokenIssuer, tokenIssuer, waitUntil, sshdConnection, sshdCredentials, sshGrant, agentSshFiles } from "./fixtures.ts";
import { type KeyPair, KeyDir } from "./keys.ts";

const ssh2 = createRequire(import.meta.url)("ssh2") as typeof import("ssh2");
type Client = InstanceType<typeof ssh2.Client>;
type Stream = import("ssh2").ClientChannel;

const keys = new KeyDir();
let sshd: SshdHandle;
let issuer: TokenIssuer;
let gw: SshListener;
let agent: KeyPair;
let certFile: string;
let knownHosts: string;
const approvals = approvalService();
const recorder = new MemoryRecorder();
const refused: SshRefusalReason[] = [];
const limited: SshLimitReason[] = [];

before(async () => {
	issuer = await tokenIssuer();
	sshd = await startSshd();
	const ca = keys.keygen("ed25519");
	agent = keys.keygen("ed25519");
	const connection = sshdConnection(sshd, "db-primary");
	const store = storeWith(
		makeBundle(issuer, {
			connections: [connection],
			grants: [
				sshGrant(sshd, "lee", "db-primary", { allowShell: true, allowSftp: true }),
			],
			guardrailPolicies: [
				{
					key: "ops/ssh-prod",
					selector: { matchLabels: { env: "prod" } },
					rules: [{ name: "approve-deploy", action: "requireApproval", ssh: { commands: ["echo deploy-*"] } }],
				},
			],
			ssh: { userCaKeys: [ca.publicKey] },
			credentials: sshdCredentials(sshd),
		}),
	);
	// Defaults on purpose: 10 sessions, 6 auth tries, 3 pending approvals.
	gw = await startSshListener({
		store,
		recorder,
		approvals,
		hostKeyPem: keys.keygen("ed25519").privateKey,
		onRefused: (r) => refused.push(r),
		onLimited: (r) => limited.push(r),
	});
	({ knownHosts, certFile } = agentSshFiles(keys, gw, ca, agent, sshd.user));
});

after(async () => {
	await gw?.close();
	await sshd?.stop();
	keys.cleanup();
});

function baseArgs(): string[] {
	return ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${knownHosts}`, "-o", "IdentitiesOnly=yes", "-o", "LogLevel=INFO"];
}

function certArgs(): string[] {
	return [...baseArgs(), "-i", agent.path, "-o", `CertificateFile=${certFile}`];
}

async function connect(): Promise<Client> {
	const token = await issuer.token("lee");
	return new Promise((resolve, reject) => {
		const c = new ssh2.Client();
		c.on("ready", () => resolve(c));
		c.on("error", reject);
		c.connect({ host: "127.0.0.1", port: gw.address.port, username: `${sshd.user}@db-primary`, password: token, hostVerifier: () => true });
	});
}

/** An exec channel with its output collected; `opened` rejects with ssh2's open-failure error. */
function openExec(c: Client, command: string): Promise<{ stream: Stream; out: () => string; closed: Promise<number | undefined> }> {
	return new Promise((resolve, reject) => {
		c.exec(command, (err, stream) => {
			if (err) return reject(err);
			let out = "";
			stream.on("data", (d: Buffer) => (out += d.toString()));
			stream.stderr.on("data", (d: Buffer) => (out += d.toString()));
			const closed = new Promise<number | undefined>((r) => stream.on("close", (code: number | undefined) => r(code)));
			resolve({ stream, out: () => out, closed });
		});
	});
}

test("the 11th session channel open at once is refused (resource shortage, with why); the 10 open ones keep working; a freed slot admits a new one", { timeout: 120_000 }, async () => {
	limited.length = 0;
	const c = await connect();
	try {
		const held = [];
		for (let i = 0; i < 10; i++) held.push(await openExec(c, 'while read l; do echo "got:$l"; done'));
		const err = await openExec(c, "echo eleventh").then(
			() => assert.fail("the 11th channel was opened"),
			(e: Error & { reason?: number }) => e,
		);
		assert.equal(err.reason, 4, err.message); // SSH_OPEN_RESOURCE_SHORTAGE
		assert.match(err.message, /drawbridge: at most 10 session channels may be open at once on one SSH connection/);
		assert.deepEqual(limited, ["max-sessions"]);
		// The refusal cost nothing to the others: each of the 10 still answers.
		for (const [i, h] of held.entries()) h.stream.write(`ping-${i}\n`);
		for (const [i, h] of held.entries()) await waitUntil(`channel ${i} answers`, () => h.out().includes(`got:ping-${i}\n`), 30_000);
		// Closing one frees its slot.
		held[0]!.stream.end();
		assert.equal(await held[0]!.closed, 0);
		const again = await openExec(c, "echo admitted");
		assert.equal(await again.closed, 0);
		assert.match(again.out(), /admitted/);
		for (const h of held.slice(1)) h.stream.end();
		await Promise.all(held.slice(1).map((h) => h.closed));
	} finally {
		c.end();
	}
});

test("a connection may have at most 3 approval requests pending; the 4th command is refused without asking; abandoning one withdraws it and frees a slot", { timeout: 120_000 }, async () => {
	limited.length = 0;
	const c = await connect();
	try {
		const held = [];
		for (let i = 1; i <= 3; i++) {
			const h = await openExec(c, `echo deploy-${i}`);
			await waitUntil(`approval ${i} pending`, () => /approval \S+ pending/.test(h.out()), 30_000);
			held.push(h);
		}
		const pendingBefore = (await approvals.list()).filter((r) => r.phase === "Pending").length;
		const fourth = await openExec(c, "echo deploy-4");
		assert.equal(await fourth.closed, 1);
		assert.match(fourth.out(), /drawbridge: "echo deploy-4" needs approval \(rule approve-deploy\), but 3 approval requests of this connection are already pending \(at most 3\)/);
		assert.equal((await approvals.list()).filter((r) => r.phase === "Pending").length, pendingBefore, "no approval request was raised");
		assert.deepEqual(limited, ["max-pending-approvals"]);
		// Giving up on one (closing its channel before it is decided) withdraws its request and frees a slot.
		held[0]!.stream.close();
		await held[0]!.closed;
		const pendingNow = async () => (await approvals.list()).filter((r) => r.phase === "Pending").length;
		const deadline = Date.now() + 10_000;
		while ((await pendingNow()) !== pendingBefore - 1 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
		assert.equal(await pendingNow(), pendingBefore - 1, "the abandoned request is no longer pending");
		const fifth = await openExec(c, "echo deploy-5");
		await waitUntil("approval 5 pending", () => /approval \S+ pending/.test(fifth.out()), 10_000).catch((e) => assert.fail(`${e}: ${fifth.out()}`));
		fifth.stream.close();
		for (const h of held.slice(1)) h.stream.close();
	} finally {
		c.end();
	}
});

test("after 6 failed authentication requests the 7th is disconnected with the reason ssh prints (14)", { timeout: 60_000 }, async () => {
	refused.length = 0;
	// Plain keys are not accepted: each is one failed publickey request (after the free "none").
	const plain = Array.from({ length: 8 }, () => keys.keygen("ed25519"));
	const r = await run(
		"ssh",
		[...baseArgs(), ...plain.flatMap((k) => ["-i", k.path]), "-p", String(gw.address.port), "-l", `${sshd.user}@db-primary`, "127.0.0.1", "echo in"],
		{ timeoutMs: 30_000 },
	);
	assert.equal(r.code, 255, r.stderr);
	assert.match(r.stderr, /Received disconnect from 127\.0\.0\.1 port \d+:14: drawbridge: too many authentication attempts \(at most 6 failures per connection\)/);
	assert.doesNotMatch(r.stdout, /in/);
	assert.deepEqual(refused, ["max-auth-tries"]);
});

test("a token client that keeps guessing is cut at the 7th attempt, without the token being checked", { timeout: 60_000 }, async () => {
	refused.length = 0;
	const attempts: string[] = [];
	const onAuth = (info: { method: string; reason?: string }) => attempts.push(info.reason ?? "ok");
	gw.on("auth", onAuth);
	try {
		const err = await new Promise<Error & { code?: number }>((resolve) => {
			const c = new ssh2.Client();
			let tries = 0;
			c.on("error", (e) => resolve(e as Error & { code?: number }));
			c.on("ready", () => assert.fail("authenticated with a bad token"));
			c.connect({
				host: "127.0.0.1",
				port: gw.address.port,
				username: `${sshd.user}@db-primary`,
				hostVerifier: () => true,
				authHandler: (_methods, _partial, next) => {
					tries++;
					if (tries > 20) return next(false as never);
					next({ type: "password", username: `${sshd.user}@db-primary`, password: `not-a-token-${tries}` });
				},
			});
		});
		assert.equal(err.code, 14, err.message);
		assert.match(err.message, /drawbridge: too many authentication attempts/);
		assert.equal(attempts.filter((a) => a !== "too many authentication attempts").length, 6, JSON.stringify(attempts));
		assert.deepEqual(refused, ["max-auth-tries"]);
	} finally {
		gw.off("auth", onAuth);
	}
});

test("ordinary ssh, scp and sftp still work", { timeout: 120_000 }, async () => {
	refused.length = 0;
	limited.length = 0;
	const target = ["-p", String(gw.address.port), "-l", `${sshd.user}@db-primary`, "127.0.0.1"];
	const r = await run("ssh", [...certArgs(), ...target, "echo hello"], { timeoutMs: 30_000 });
	assert.equal(r.code, 0, r.stderr);
	assert.equal(r.stdout.trim(), "hello");
	const local = join(keys.dir, "payload.bin");
	const payload = Buffer.alloc(100_000, 3);
	writeFileSync(local, payload);
	const remote = `/tmp/drawbridge-limits-${process.pid}.bin`;
	const where = ["-P", String(gw.address.port), "-o", `User=${sshd.user}@db-primary`];
	const scp = await run("scp", [...certArgs(), ...where, local, `127.0.0.1:${remote}`], { timeoutMs: 30_000 });
	assert.equal(scp.code, 0, scp.stderr);
	const back = join(keys.dir, "back.bin");
	const batch = join(keys.dir, "batch");
	writeFileSync(batch, `get ${remote} ${back}\nrm ${remote}\n`);
	const sftp = await run("sftp", [...certArgs(), ...where, "-b", batch, "127.0.0.1"], { timeoutMs: 30_000 });
	assert.equal(sftp.code, 0, sftp.stderr);
	assert.ok(readFileSync(back).equals(payload));
	assert.deepEqual(refused, []);
	assert.deepEqual(limited, []);
});
