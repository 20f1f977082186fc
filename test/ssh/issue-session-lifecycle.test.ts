/**
 * Regressions (red team, SSH session behaviour), against a real sshd through the gateway:
 *
 * 1. A connection outlived its terms. Only expiry and removal of the grant ended an SSH session, so a
 *    connection the agent keeps open (OpenSSH ControlMaster/ControlPersist, a long-lived bot) kept
 *    running commands after the grant dropped its subject or narrowed allowedCommands, and guardrail
 *    rules merged after it connected never applied to it (rules came from the bundle of login time).
 * 2. A session opened for an authentication request ssh2 never accepted leaked. The gateway opens the
 *    recording and the upstream SSH connection before USERAUTH_SUCCESS; a client that sent a valid
 *    token and hung up during that window (or superseded the request) left the upstream connection to
 *    the target and an open recording behind, until the grant ended.
 */
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";
import type { BundleGrant } from "../../gateway/config/bundle.ts";
import type { Recorder } from "../../gateway/recording/events.ts";
import { type SshListener, startSshListener } from "../../gateway/ssh/listener.ts";
import { type SshdHandle, startSshd } from "../env/index.ts";
import { approvalService, makeBundle, MemoryRecorder, storeWith, type TokenIssuer, tokenIssuer, waitUntil } from "./fixtures.ts";
import { KeyDir } from "./keys.ts";

const ssh2 = createRequire(import.meta.url)("ssh2") as typeof import("ssh2");

const keys = new KeyDir();
let sshd: SshdHandle;
let issuer: TokenIssuer;
let store: ReturnType<typeof storeWith>;
let gw: SshListener;
let slowGw: SshListener;
const recorder = new MemoryRecorder();
const slowRecorder = new MemoryRecorder();

const grant = (login: string, over: Partial<BundleGrant> = {}): BundleGrant => ({
	key: "ops/lee",
	name: "lee",
	namespace: "ops",
	connection: "db-primary",
	subjects: [{ kind: "User", name: "lee" }],
	notBefore: new Date(Date.now() - 60_000).toISOString(),
	expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
	ssh: { logins: [login], allowShell: true, allowSftp: false, allowPortForwarding: false, allowAgentForwarding: false },
	approvers: { subjects: [{ kind: "User", name: "sam" }], minApprovals: 1 },
	origin: {},
	...over,
});

before(async () => {
	issuer = await tokenIssuer();
	sshd = await startSshd();
	store = storeWith(
		makeBundle(issuer, {
			connections: [
				{
					key: "ops/db-primary",
					name: "db-primary",
					namespace: "ops",
					type: "ssh",
					labels: { env: "prod" },
					host: sshd.host,
					port: sshd.port,
					credentialRef: "ssh-gw",
					ssh: { hostKeys: [sshd.hostPublicKey], auth: "key" },
				},
			],
			grants: [grant(sshd.user), grant(sshd.user, { key: "ops/bot", name: "bot", subjects: [{ kind: "User", name: "bot" }] })],
			credentials: { "ssh-gw": { type: "sshKey", username: sshd.user, privateKeyPem: readFileSync(sshd.clientKeyFile, "utf8") } },
		}),
	);
	gw = await startSshListener({ store, recorder, approvals: approvalService(), hostKeyPem: keys.keygen("ed25519").privateKey });
	// A recorder that takes a while to open a session (a spool on a slow disk): widens the window
	// between the token being verified and USERAUTH_SUCCESS.
	const slow: Recorder = {
		openSession: async (meta) => {
			await new Promise((r) => setTimeout(r, 400));
			return slowRecorder.openSession(meta);
		},
	};
	slowGw = await startSshListener({ store, recorder: slow, approvals: approvalService(), hostKeyPem: keys.keygen("ed25519").privateKey });
});

after(async () => {
	await gw?.close();
	await slowGw?.close();
	await sshd?.stop();
	keys.cleanup();
});

type Client = InstanceType<typeof ssh2.Client>;

async function connect(port: number, sub: string): Promise<Client> {
	const token = await issuer.token(sub);
	return new Promise((resolve, reject) => {
		const c = new ssh2.Client();
		c.on("ready", () => resolve(c));
		c.on("error", reject);
		c.connect({ host: "127.0.0.1", port, username: `${sshd.user}@db-primary`, password: token, hostVerifier: () => true });
	});
}

function exec(c: Client, command: string): Promise<{ code: number | undefined; out: string }> {
	return new Promise((resolve) => {
		try {
			c.exec(command, (err, s) => {
				if (err) return resolve({ code: undefined, out: `open failed: ${err.message}` });
				let out = "";
				s.on("data", (d: Buffer) => (out += d.toString()));
				s.stderr.on("data", (d: Buffer) => (out += d.toString()));
				s.on("close", (code: number | undefined) => resolve({ code, out }));
			});
		} catch (e) {
			resolve({ code: undefined, out: `not connected: ${(e as Error).message}` });
		}
	});
}

function updateBundle(change: (b: ReturnType<typeof makeBundle>) => Partial<ReturnType<typeof makeBundle>>): void {
	const b = store.current.bundle;
	assert.ok(store.update(makeBundle(issuer, { ...b, ...change(b) }, b.version + 1)));
}

/** Established TCP connections from the gateway to the target sshd. */
function upstreamConnections(): number {
	const out = execFileSync("ss", ["-Htn", "state", "established", `( dport = :${sshd.port} )`]).toString();
	return out.split("\n").filter((l) => l.trim()).length;
}

test("a guardrail merged after the agent connected applies to its next command on the same connection", async () => {
	const c = await connect(gw.address.port, "lee");
	try {
		assert.equal((await exec(c, "echo before-rule")).out.trim(), "before-rule");
		updateBundle(() => ({
			guardrailPolicies: [
				{ key: "ops/late", selector: { matchLabels: { env: "prod" } }, rules: [{ name: "no-echo-late", action: "block", ssh: { commands: ["echo late-*"] } }] },
			],
		}));
		const r = await exec(c, "echo late-rule");
		assert.equal(r.code, 1, r.out);
		assert.match(r.out, /no-echo-late/);
	} finally {
		c.end();
		updateBundle(() => ({ guardrailPolicies: [] }));
	}
});

test("a grant that drops the agent's subject or narrows its commands ends the open connection", async () => {
	for (const change of [
		(g: BundleGrant): BundleGrant => ({ ...g, subjects: [{ kind: "User", name: "someone-else" }] }),
		(g: BundleGrant): BundleGrant => ({ ...g, ssh: { ...g.ssh!, allowedCommands: ["uptime"] } }),
	]) {
		const c = await connect(gw.address.port, "lee");
		const closed = new Promise<void>((resolve) => c.on("close", () => resolve()));
		c.on("error", () => {});
		assert.equal((await exec(c, "echo first")).out.trim(), "first");
		const before = store.current.bundle.grants;
		updateBundle((b) => ({ grants: b.grants.map((g) => (g.key === "ops/lee" ? change(g) : g)) }));
		await Promise.race([closed, new Promise((r) => setTimeout(r, 5_000))]);
		const r = await exec(c, "echo second");
		assert.equal(r.code, undefined, `the old connection still ran a command: ${r.out}`);
		const s = recorder.sessions.find((x) => x.meta.grant === "ops/lee" && x.end?.reason === "policy");
		assert.ok(s, "session recorded as ended by a policy change");
		recorder.sessions.length = 0;
		updateBundle(() => ({ grants: before }));
	}
});

test("an unrelated grant changing leaves the connection alone", async () => {
	const c = await connect(gw.address.port, "lee");
	try {
		updateBundle((b) => ({ grants: b.grants.map((g) => (g.key === "ops/bot" ? { ...g, ssh: { ...g.ssh!, allowShell: false } } : g)) }));
		await new Promise((r) => setTimeout(r, 300));
		assert.equal((await exec(c, "echo still-mine")).out.trim(), "still-mine");
	} finally {
		c.end();
	}
});

test("a client that hangs up while its session is being opened leaves no upstream connection or open recording", async () => {
	for (let i = 0; i < 3; i++) {
		const token = await issuer.token("lee");
		await new Promise<void>((resolve) => {
			const c = new ssh2.Client();
			c.on("error", () => {});
			c.on("close", () => resolve());
			c.connect({
				host: "127.0.0.1",
				port: slowGw.address.port,
				username: `${sshd.user}@db-primary`,
				hostVerifier: () => true,
				authHandler: (_methods, _partial, next) => {
					next({ type: "password", username: `${sshd.user}@db-primary`, password: token });
					// Gone before the gateway can answer USERAUTH_SUCCESS.
					setTimeout(() => (c as unknown as { _sock: { destroy(): void } })._sock.destroy(), 50);
				},
			});
		});
	}
	await waitUntil("sessions opened for the vanished clients", () => slowRecorder.sessions.length === 3);
	await waitUntil("every such session ended", () => slowRecorder.sessions.every((s) => s.end !== undefined), 5_000);
	await waitUntil("no upstream connection left", () => upstreamConnections() === 0, 5_000);
});

test("the upstream connection is dialled while the recording opens, and a recording that fails to open refuses the login and ends it", async () => {
	let upstreamSeen = false;
	const failing: Recorder = {
		openSession: async () => {
			// The target's connection is made while the recording is still opening…
			await waitUntil("the upstream connection while the recording opens", () => upstreamConnections() === 1, 5_000);
			upstreamSeen = true;
			throw new Error("spool disk failed");
		},
	};
	const failGw = await startSshListener({ store, recorder: failing, approvals: approvalService(), hostKeyPem: keys.keygen("ed25519").privateKey });
	try {
		assert.equal(upstreamConnections(), 0);
		const token = await issuer.token("lee");
		const refused = await new Promise<Error | undefined>((resolve) => {
			const c = new ssh2.Client();
			c.on("ready", () => {
				c.end();
				resolve(undefined);
			});
			c.on("error", (e) => resolve(e));
			c.connect({ host: "127.0.0.1", port: failGw.address.port, username: `${sshd.user}@db-primary`, password: token, hostVerifier: () => true });
		});
		assert.ok(upstreamSeen);
		assert.ok(refused, "the login is refused");
		// …and does not outlive the refused login.
		await waitUntil("no upstream connection left", () => upstreamConnections() === 0, 5_000);
	} finally {
		await failGw.close();
	}
});

test("malformed channel requests are refused without dropping the agent's connection", async () => {
	// A second exec on one channel threw inside ssh2's packet handler; a command with a NUL byte reached
	// sshd, which drops the whole upstream connection. Either ended every channel of the connection.
	const c = await connect(gw.address.port, "lee");
	let closed = false;
	c.on("close", () => (closed = true));
	c.on("error", () => {});
	try {
		const proto = (c as unknown as { _protocol: { exec(id: number, cmd: string, wantReply: boolean): void } })._protocol;
		// A second exec on a channel that already runs one (RFC 4254 6.5 allows one per channel).
		const first = await new Promise<string>((resolve) => {
			c.exec("sleep 0.3; echo first", (err, s) => {
				assert.ifError(err);
				let out = "";
				s.on("data", (d: Buffer) => (out += d.toString()));
				s.on("close", () => resolve(out));
				proto.exec((s as unknown as { outgoing: { id: number } }).outgoing.id, "echo second", true);
			});
		});
		assert.equal(first.trim(), "first");
		const nul = await exec(c, "echo ok\0; id");
		assert.equal(nul.code, 1, nul.out);
		assert.match(nul.out, /NUL bytes are refused/);
		assert.equal((await exec(c, "echo alive")).out.trim(), "alive");
		assert.equal(closed, false);
	} finally {
		c.end();
	}
});
