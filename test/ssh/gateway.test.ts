/**
 * The SSH data path end to end: real OpenSSH `ssh`, `scp` and `sftp` → gateway (ssh2) → real sshd
 * (test/env startSshd). Certificates come from real `ssh-keygen -s`.
 */
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { chmodSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { BundleConnection, BundleGrant, BundleGuardrailPolicy } from "../../gateway/config/bundle.ts";
import { type SshListener, startSshListener } from "../../gateway/ssh/listener.ts";
import { packetPoolStats } from "../../gateway/ssh/packet-pool.ts";
import { run, type SshdHandle, startSshd } from "../env/index.ts";
import {
	approvalService,
	approver,
	leeCertId,
	makeBundle,
	MemoryRecorder,
	storeWith,
	toAsciicast,
	type TokenIssuer,
	tokenIssuer,
	waitUntil,
} from "./fixtures.ts";
import { type KeyPair, KeyDir } from "./keys.ts";

const keys = new KeyDir();
let sshd: SshdHandle;
let gw: SshListener;
let issuer: TokenIssuer;
let ca: KeyPair;
let agent: KeyPair;
let certFile: string;
let knownHosts: string;
const recorder = new MemoryRecorder();
const approvals = approvalService();
let store: ReturnType<typeof storeWith>;

const grant = (over: Partial<BundleGrant> = {}): BundleGrant => ({
	key: "ops/break-glass",
	name: "break-glass",
	namespace: "ops",
	connection: "db-primary",
	subjects: [{ kind: "User", name: "lee" }],
	notBefore: new Date(Date.now() - 60_000).toISOString(),
	expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
	ssh: { logins: [], allowShell: true, allowSftp: true, allowPortForwarding: false, allowAgentForwarding: false },
	approvers: { subjects: [{ kind: "User", name: "sam" }], minApprovals: 1 },
	origin: { repository: "grants", commit: "abc123", pullRequest: 7 },
	...over,
});

const guardrails: BundleGuardrailPolicy[] = [
	{
		key: "ops/ssh-prod",
		selector: { matchLabels: { env: "prod" } },
		rules: [
			{ name: "no-rm-rf", action: "block", message: "recursive deletes are not allowed", ssh: { commands: ["rm -rf *"] } },
			{ name: "approve-touch", action: "requireApproval", ssh: { commands: ["touch /tmp/approved-*"] } },
			{ name: "audit-id", action: "audit", ssh: { commands: ["id *"] } },
		],
	},
];

function baseArgs(): string[] {
	return [
		"-F",
		"/dev/null",
		"-o",
		"BatchMode=yes",
		"-o",
		"StrictHostKeyChecking=yes",
		"-o",
		`UserKnownHostsFile=${knownHosts}`,
		"-o",
		"IdentitiesOnly=yes",
		"-o",
		"LogLevel=INFO",
	];
}

function sshArgs(opts: { cert?: string; key?: KeyPair; user?: string } = {}): string[] {
	return [
		...baseArgs(),
		"-i",
		(opts.key ?? agent).path,
		"-o",
		`CertificateFile=${opts.cert ?? certFile}`,
		"-p",
		String(gw.address.port),
		"-l",
		opts.user ?? `${sshd.user}@db-primary`,
		"127.0.0.1",
	];
}

function signAgent(opts: { id?: string; principals?: string[]; validity?: string; by?: KeyPair; options?: string[] }): string {
	const line = keys.sign(opts.by ?? ca, agent, {
		id: opts.id ?? leeCertId("ops/break-glass"),
		principals: opts.principals ?? [sshd.user],
		validity: opts.validity ?? "-5m:+1h",
		...(opts.options ? { options: opts.options } : {}),
	});
	const file = join(keys.dir, `cert-${Math.random().toString(36).slice(2)}.pub`);
	writeFileSync(file, `${line}\n`);
	return file;
}

before(async () => {
	issuer = await tokenIssuer();
	sshd = await startSshd();
	ca = keys.keygen("ed25519");
	agent = keys.keygen("ed25519");
	const connection: BundleConnection = {
		key: "ops/db-primary",
		name: "db-primary",
		namespace: "ops",
		type: "ssh",
		labels: { env: "prod" },
		host: sshd.host,
		port: sshd.port,
		credentialRef: "ssh-gw",
		ssh: { hostKeys: [sshd.hostPublicKey], auth: "key" },
	};
	const wrongHost: BundleConnection = {
		...connection,
		key: "ops/impostor",
		name: "impostor",
		ssh: { hostKeys: [keys.keygen("ed25519").publicKey], auth: "key" },
	};
	store = storeWith(
		makeBundle(issuer, {
			connections: [connection, wrongHost],
			grants: [
				grant({ ssh: { ...grant().ssh!, logins: [sshd.user] } }),
				grant({
					key: "ops/impostor",
					name: "impostor",
					connection: "impostor",
					ssh: { ...grant().ssh!, logins: [sshd.user] },
				}),
				grant({
					key: "ops/tunnel",
					name: "tunnel",
					ssh: { logins: [sshd.user], allowShell: false, allowSftp: false, allowPortForwarding: true, allowedForwards: [`127.0.0.1:${sshd.port}`], allowAgentForwarding: false },
				}),
				grant({ key: "ops/revocable", name: "revocable", ssh: { ...grant().ssh!, logins: [sshd.user] } }),
				grant({
					key: "ops/exec-only",
					name: "exec-only",
					subjects: [{ kind: "User", name: "ci-bot" }],
					ssh: { logins: [sshd.user], allowedCommands: ["uptime", "echo *"], allowShell: false, allowSftp: false, allowPortForwarding: false, allowAgentForwarding: false },
				}),
			],
			guardrailPolicies: guardrails,
			// The operator publishes its user CA in the bundle.
			ssh: { userCaKeys: [ca.publicKey] },
			credentials: { "ssh-gw": { type: "sshKey", username: sshd.user, privateKeyPem: readFileSync(sshd.clientKeyFile, "utf8") } },
		}),
	);
	const hostKey = keys.keygen("ed25519");
	gw = await startSshListener({
		store,
		recorder,
		approvals,
		hostKeyPem: hostKey.privateKey,
	});
	knownHosts = join(keys.dir, "known_hosts");
	writeFileSync(knownHosts, `[127.0.0.1]:${gw.address.port} ${gw.hostPublicKey}\n`);
	certFile = signAgent({});
});

after(async () => {
	await gw?.close();
	await sshd?.stop();
	keys.cleanup();
});

describe("ssh through the gateway", () => {
	test("host key is published with an OpenSSH fingerprint", async () => {
		const pub = join(keys.dir, "gw.pub");
		writeFileSync(pub, `${gw.hostPublicKey}\n`);
		const r = await run("ssh-keygen", ["-l", "-f", pub]);
		assert.equal(r.stdout.split(" ")[1], gw.hostKeyFingerprint);
	});

	test("exec with a CA-signed certificate reaches the real sshd, exit status relayed and recorded", async () => {
		const r = await run("ssh", [...sshArgs(), "echo hello-$(id -un); exit 3"], { timeoutMs: 30_000 });
		assert.equal(r.code, 3, r.stderr);
		assert.equal(r.stdout.trim(), `hello-${sshd.user}`);
		const ex = recorder.events("exec").find((e) => e.command === "echo hello-$(id -un); exit 3");
		assert.ok(ex);
		assert.equal(ex.exitCode, 3);
		// The policy engine looks inside $(...): `id -un` matches the audit rule "id *".
		assert.equal(ex.decision, "audit");
		assert.equal(ex.rule, "audit-id");
		const s = recorder.sessions.find((x) => x.events.includes(ex as never))!;
		assert.equal(s.meta.grant, "ops/break-glass");
		assert.equal(s.meta.identity.username, "lee");
		assert.equal(s.meta.target["auth"], "certificate");
	});

	test("large exec output arrives complete before the exit status (regression: close raced the client window)", async () => {
		const size = 24 * 1024 * 1024;
		const child = spawn("ssh", [...sshArgs(), `head -c ${size} /dev/zero`]);
		let bytes = 0;
		child.stdout.on("data", (b: Buffer) => (bytes += b.length));
		const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
		assert.equal(code, 0);
		assert.equal(bytes, size);
	});

	test("recycled packet buffers (packet-pool.ts): random bytes arrive intact both ways, on parallel sessions", async () => {
		const size = 12 * 1024 * 1024;
		/** The host writes `size` random bytes to stdout and their sha256 to stderr. */
		const download = async () => {
			const child = spawn("ssh", [
				...sshArgs(),
				`f=$(mktemp); head -c ${size} /dev/urandom > "$f"; sha256sum < "$f" >&2; cat "$f"; rm -f "$f"`,
			]);
			const hash = createHash("sha256");
			let bytes = 0;
			let stderr = "";
			child.stdout.on("data", (b: Buffer) => {
				bytes += b.length;
				hash.update(b);
			});
			child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
			const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
			assert.equal(code, 0, stderr);
			assert.equal(bytes, size);
			assert.equal(hash.digest("hex"), stderr.trim().split(/\s+/)[0]);
		};
		const before = packetPoolStats.reused;
		await Promise.all([download(), download(), download()]);
		assert.ok(packetPoolStats.reused > before, "gateway → client packets did not come from the pool");
		// Upload: gateway → sshd packets (the upstream ssh2 Client) are pooled too.
		const data = randomBytes(size);
		const beforeUp = packetPoolStats.reused;
		const up = spawn("ssh", [...sshArgs(), "sha256sum"]);
		let out = "";
		up.stdout.on("data", (b: Buffer) => (out += b.toString()));
		up.stdin.end(data);
		assert.equal(await new Promise<number | null>((resolve) => up.on("close", resolve)), 0);
		assert.equal(out.trim().split(/\s+/)[0], createHash("sha256").update(data).digest("hex"));
		assert.ok(packetPoolStats.reused > beforeUp, "gateway → sshd packets did not come from the pool");
	});

	test("wrong principal, expired certificate, untrusted CA and plain keys are refused with a reason", async () => {
		const cases: [string, RegExp][] = [
			[signAgent({ principals: ["somebody-else"] }), /not a principal/],
			[signAgent({ validity: "-2h:-1h" }), /expired/],
			[signAgent({ by: keys.keygen("ed25519") }), /untrusted CA/],
		];
		for (const [cert, why] of cases) {
			const r = await run("ssh", [...sshArgs({ cert }), "true"], { timeoutMs: 30_000 });
			assert.notEqual(r.code, 0);
			assert.match(r.stderr, why);
		}
		const plain = await run("ssh", [...sshArgs({ cert: "/dev/null" }), "true"], { timeoutMs: 30_000 });
		assert.notEqual(plain.code, 0);
		assert.match(plain.stderr, /plain public keys are not accepted/);
	});

	test("a certificate for a grant on another connection cannot be used here; login must be granted", async () => {
		const cert = signAgent({ id: leeCertId("ops/impostor") });
		const r = await run("ssh", [...sshArgs({ cert }), "true"], { timeoutMs: 30_000 });
		assert.notEqual(r.code, 0);
		assert.match(r.stderr, /access denied .*db-primary.*no grant matches/);
		const root = signAgent({ principals: ["root"] });
		const r2 = await run("ssh", [...sshArgs({ cert: root, user: "root@db-primary" }), "true"], { timeoutMs: 30_000 });
		assert.notEqual(r2.code, 0);
		assert.match(r2.stderr, /does not allow login "root"/);
	});

	test("upstream host key not pinned by the Connection: refused, no TOFU", async () => {
		const cert = signAgent({ id: leeCertId("ops/impostor") });
		const r = await run("ssh", [...sshArgs({ cert, user: `${sshd.user}@impostor` }), "true"], { timeoutMs: 30_000 });
		assert.equal(r.code, 255);
		assert.match(r.stderr, /host key .* is not one pinned for impostor/);
	});

	test("guardrails on exec: block names the rule; audit runs and is recorded", async () => {
		const r = await run("ssh", [...sshArgs(), "rm -rf /tmp/drawbridge-nothing"], { timeoutMs: 30_000 });
		assert.equal(r.code, 1);
		assert.match(r.stderr, /no-rm-rf/);
		assert.match(r.stderr, /recursive deletes are not allowed/);
		const blocked = recorder.events("exec").find((e) => e.command === "rm -rf /tmp/drawbridge-nothing");
		assert.equal(blocked?.decision, "block");
		assert.equal(blocked?.rule, "no-rm-rf");
		const a = await run("ssh", [...sshArgs(), "id -u"], { timeoutMs: 30_000 });
		assert.equal(a.code, 0, a.stderr);
		const audited = recorder.events("exec").find((e) => e.command === "id -u");
		assert.equal(audited?.decision, "audit");
		assert.equal(audited?.rule, "audit-id");
	});

	test("requireApproval holds the exec, names the approval on stderr, runs once approved", async () => {
		const marker = `/tmp/approved-${process.pid}-${Date.now()}`;
		const child = spawn("ssh", [...sshArgs(), `touch ${marker} && echo done`]);
		let stderr = "";
		let stdout = "";
		child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
		child.stdout.on("data", (b: Buffer) => (stdout += b.toString()));
		const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
		await waitUntil("approval notice on stderr", () => /approval (\S+) pending/.test(stderr));
		const id = /approval (\S+) pending/.exec(stderr)![1]!;
		assert.match(stderr, /approve-touch/);
		assert.match(stderr, /user:sam/);
		// The requester cannot approve their own request.
		await assert.rejects(approvals.decide(id, approver("lee"), "approve"));
		await approvals.decide(id, approver("sam"), "approve");
		assert.equal(await exited, 0, stderr);
		assert.equal(stdout.trim(), "done");
		const ex = recorder.events("exec").find((e) => e.command === `touch ${marker} && echo done`);
		assert.equal(ex?.decision, "approved");
		assert.equal(ex?.approvalId, id);
		assert.equal(ex?.exitCode, 0);
	});

	test("a denied approval does not run the command", async () => {
		const marker = `/tmp/approved-denied-${process.pid}`;
		const child = spawn("ssh", [...sshArgs(), `touch ${marker}`]);
		let stderr = "";
		child.stderr.on("data", (b: Buffer) => (stderr += b.toString()));
		const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
		await waitUntil("approval notice", () => /approval (\S+) pending/.test(stderr));
		await approvals.decide(/approval (\S+) pending/.exec(stderr)![1]!, approver("sam"), "deny");
		assert.equal(await exited, 1);
		assert.match(stderr, /denied/);
		const r = await run("test", ["-e", marker]);
		assert.notEqual(r.code, 0);
	});

	test("interactive shell with pty: output recorded, blocked line never runs, recording replays as asciicast", async () => {
		const script = "echo shell-$((6*7))\nrm -rf /tmp/drawbridge-shell-nothing\nexit\n";
		const r = await run("ssh", [...sshArgs(), "-tt"], { input: script, timeoutMs: 30_000 });
		assert.match(r.stdout, /shell-42/);
		assert.match(r.stdout, /no-rm-rf/);
		const s = recorder.sessions.find((x) => x.events.some((e) => e.type === "exec" && e.command === "rm -rf /tmp/drawbridge-shell-nothing"));
		assert.ok(s, "session with the blocked shell line");
		const cast = toAsciicast(s).split("\n").filter(Boolean);
		assert.equal(JSON.parse(cast[0]!).version, 2);
		const frames = cast.slice(1).map((l) => JSON.parse(l) as [number, string, string]);
		assert.ok(frames.some(([, code]) => code === "r"), "resize event from the pty request");
		assert.ok(frames.some(([, code]) => code === "i"), "input events");
		const output = frames.filter(([, code]) => code === "o").map(([, , d]) => d).join("");
		assert.match(output, /shell-42/);
		// Monotonic times, as a player needs.
		for (let i = 1; i < frames.length; i++) assert.ok(frames[i]![0] >= frames[i - 1]![0]);
		const ex = s.events.find((e) => e.type === "exec" && e.command === "rm -rf /tmp/drawbridge-shell-nothing");
		assert.equal((ex as { decision: string }).decision, "block");
	});

	test("a shell line needing approval is held (Enter withheld) until approved, later input waits behind it", async () => {
		const marker = `/tmp/approved-shell-${process.pid}-${Date.now()}`;
		const child = spawn("ssh", [...sshArgs(), "-tt"]);
		let out = "";
		child.stdout.on("data", (d: Buffer) => (out += d.toString()));
		child.stderr.on("data", (d: Buffer) => (out += d.toString()));
		const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
		child.stdin.write(`touch ${marker}\necho after-$((1+1))\nexit\n`);
		await waitUntil("approval notice in the terminal", () => /approval (\S+) pending/.test(out), 15_000);
		// Not run yet, and the next line has not run either.
		assert.notEqual((await run("test", ["-e", marker])).code, 0);
		assert.doesNotMatch(out, /after-2/);
		await approvals.decide(/approval (\S+) pending/.exec(out)![1]!, approver("sam"), "approve");
		await exited;
		assert.equal((await run("test", ["-e", marker])).code, 0);
		assert.match(out, /after-2/);
		await run("rm", ["-f", marker]);
	});

	test("scp and sftp work through the gateway; sftp operations are recorded with sizes", async () => {
		const local = join(keys.dir, "payload.bin");
		const payload = Buffer.alloc(300_000, 7);
		writeFileSync(local, payload);
		const remote = `/tmp/drawbridge-scp-${process.pid}.bin`;
		const scp = await run(
			"scp",
			[...baseArgs(), "-i", agent.path, "-o", `CertificateFile=${certFile}`, "-P", String(gw.address.port), "-o", `User=${sshd.user}@db-primary`, local, `127.0.0.1:${remote}`],
			{ timeoutMs: 30_000 },
		);
		assert.equal(scp.code, 0, scp.stderr);
		const back = join(keys.dir, "back.bin");
		const batch = join(keys.dir, "batch");
		writeFileSync(batch, `get ${remote} ${back}\nrename ${remote} ${remote}.old\nrm ${remote}.old\n`);
		const sftp = await run(
			"sftp",
			[...baseArgs(), "-i", agent.path, "-o", `CertificateFile=${certFile}`, "-P", String(gw.address.port), "-o", `User=${sshd.user}@db-primary`, "-b", batch, "127.0.0.1"],
			{ timeoutMs: 30_000 },
		);
		assert.equal(sftp.code, 0, sftp.stderr);
		assert.ok(readFileSync(back).equals(payload));
		const ops = recorder.events("sftp");
		assert.ok(ops.some((o) => o.op === "write" && o.path === remote && o.bytes === payload.length), JSON.stringify(ops));
		assert.ok(ops.some((o) => o.op === "read" && o.path === remote && o.bytes === payload.length));
		assert.ok(ops.some((o) => o.op === "rename" && o.path === `${remote} -> ${remote}.old`));
		assert.ok(ops.some((o) => o.op === "remove" && o.path === `${remote}.old`));
	});

	test("port forwarding is denied unless the grant allows it", async () => {
		const r = await run("ssh", [...sshArgs(), "-W", `127.0.0.1:${sshd.port}`], { timeoutMs: 30_000, input: "" });
		assert.notEqual(r.code, 0);
		assert.match(r.stderr, /administratively prohibited|open failed|stdio forwarding failed/);
		assert.ok(recorder.events("exec").some((e) => e.command.startsWith("direct-tcpip") && e.decision === "block"));
	});

	test("port forwarding works when the grant allows it (ssh -W to the target's sshd port)", async () => {
		const cert = signAgent({ id: leeCertId("ops/tunnel") });
		// Speak to the far end through the tunnel: its first line is the target sshd's version banner.
		const child = spawn("ssh", [...sshArgs({ cert }), "-W", `127.0.0.1:${sshd.port}`]);
		let out = "";
		child.stdout.on("data", (d: Buffer) => (out += d.toString()));
		try {
			await waitUntil("sshd banner through the tunnel", () => out.startsWith("SSH-2.0-OpenSSH"), 15_000);
		} finally {
			child.kill();
		}
		assert.ok(recorder.events("exec").some((e) => e.command === `direct-tcpip 127.0.0.1:${sshd.port}` && e.decision === "allow"));
	});

	test("certificate restrictions are honoured: force-command, no-pty, no-port-forwarding", async () => {
		const forced = signAgent({ options: ["force-command=echo forced-only"] });
		const f = await run("ssh", [...sshArgs({ cert: forced }), "echo something-else"], { timeoutMs: 30_000 });
		assert.equal(f.code, 0, f.stderr);
		assert.equal(f.stdout.trim(), "forced-only");
		const fsh = await run("ssh", [...sshArgs({ cert: forced }), "-T"], { timeoutMs: 30_000, input: "echo typed\n" });
		assert.equal(fsh.stdout.trim(), "forced-only");
		const noPty = signAgent({ options: ["no-pty"] });
		const p = await run("ssh", [...sshArgs({ cert: noPty }), "-tt", "tty"], { timeoutMs: 30_000 });
		assert.match(p.stdout + p.stderr, /not a tty|PTY allocation request failed/);
		const tunnel = signAgent({ id: leeCertId("ops/tunnel"), options: ["no-port-forwarding"] });
		const t = await run("ssh", [...sshArgs({ cert: tunnel }), "-W", `127.0.0.1:${sshd.port}`], { timeoutMs: 30_000, input: "" });
		assert.notEqual(t.code, 0);
	});

	test("token as password (OpenSSH via SSH_ASKPASS); exec-only grant enforces its allow-list", async () => {
		const token = await issuer.token("ci-bot");
		const askpass = join(keys.dir, "askpass.sh");
		writeFileSync(askpass, `#!/bin/sh\necho '${token}'\n`);
		chmodSync(askpass, 0o755);
		const env = { ...process.env, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: "force", DISPLAY: ":0" };
		const args = (cmd: string) => [
			"-F", "/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${knownHosts}`,
			"-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no", "-o", "LogLevel=INFO",
			"-p", String(gw.address.port), "-l", sshd.user, "127.0.0.1", cmd,
		];
		const ok = await run("ssh", args("echo via-token"), { env, timeoutMs: 30_000 });
		assert.equal(ok.code, 0, ok.stderr);
		assert.equal(ok.stdout.trim(), "via-token");
		// keyboard-interactive: the gateway prompts "Drawbridge token:", OpenSSH asks SSH_ASKPASS.
		const kbd = await run(
			"ssh",
			args("echo via-kbd").map((a) => (a === "PreferredAuthentications=password" ? "PreferredAuthentications=keyboard-interactive" : a)),
			{ env, timeoutMs: 30_000 },
		);
		assert.equal(kbd.code, 0, kbd.stderr);
		assert.equal(kbd.stdout.trim(), "via-kbd");
		const no = await run("ssh", args("cat /etc/hostname"), { env, timeoutMs: 30_000 });
		assert.equal(no.code, 1);
		assert.match(no.stderr, /ops\/exec-only/);
		const bad = await issuer.token("mallory");
		writeFileSync(askpass, `#!/bin/sh\necho '${bad}'\n`);
		const denied = await run("ssh", args("true"), { env, timeoutMs: 30_000 });
		assert.notEqual(denied.code, 0);
		assert.match(denied.stderr, /no SSH grant for mallory/);
		writeFileSync(askpass, "#!/bin/sh\necho not-a-token\n");
		const garbage = await run("ssh", args("true"), { env, timeoutMs: 30_000 });
		assert.notEqual(garbage.code, 0);
		assert.match(garbage.stderr, /not a JWT/);
	});

	test("a grant removed from the bundle (revoked) ends a running session", async () => {
		const cert = signAgent({ id: leeCertId("ops/revocable") });
		const child = spawn("ssh", [...sshArgs({ cert }), "sleep 30"]);
		let stderr = "";
		child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
		const exited = new Promise<number | null>((resolve) => child.on("close", resolve));
		await waitUntil("session open", () => recorder.sessions.some((x) => x.meta.grant === "ops/revocable"));
		await new Promise((r) => setTimeout(r, 300));
		const b = store.current.bundle;
		assert.ok(store.update(makeBundle(issuer, { ...b, grants: b.grants.filter((g) => g.key !== "ops/revocable") }, b.version + 1)));
		assert.notEqual(await exited, 0);
		assert.match(stderr, /grant ops\/revocable was revoked/);
		assert.equal(recorder.sessions.find((x) => x.meta.grant === "ops/revocable")?.end?.reason, "grant-revoked");
	});

	test("grant end closes a running session with a stderr message naming the expiry", async () => {
		const expiresAt = new Date(Date.now() + 4000).toISOString();
		const b = store.current.bundle;
		assert.ok(
			store.update(
			makeBundle(
				issuer,
				{
					...b,
					grants: b.grants.map((g) => (g.key === "ops/break-glass" ? { ...g, expiresAt } : g)),
				},
				b.version + 1,
			),
			),
		);
		const t0 = Date.now();
		const r = await run("ssh", [...sshArgs(), "sleep 30"], { timeoutMs: 30_000 });
		assert.ok(Date.now() - t0 < 15_000, "session cut well before sleep ended");
		assert.notEqual(r.code, 0);
		assert.match(r.stderr, new RegExp(`grant ops/break-glass expired at ${expiresAt.replace(/[.]/g, "\\.")}`));
		const ended = recorder.sessions.find((s) => s.end?.reason === "grant-expired");
		assert.ok(ended);
		// And a new connection is refused, naming the expiry.
		const again = await run("ssh", [...sshArgs(), "true"], { timeoutMs: 30_000 });
		assert.notEqual(again.code, 0);
		assert.match(again.stderr, /expired at/);
	});
});
