/**
 * Everything an SSH client can ask for besides a plain shell or exec (red team, round 10). Real OpenSSH
 * `ssh`/`sftp` and ssh2's client → gateway → real sshd, under an exec-only grant (allowedCommands
 * ["echo *"], no shell) that allows SFTP:
 * 1. SFTP wrote the target's autorun files: `put rc .ssh/rc` (sshd runs ~/.ssh/rc before every
 *    session's command), then the allowed `echo hi` ran the payload past the allowlist; same through
 *    rename, posix-rename, symlink and hardlink, and ~/.bashrc (Debian's bash sources it for sshd's
 *    `bash -c`). Such requests are now refused in the SFTP stream (the target never sees them);
 * 2. SFTP extended requests the gateway does not know are refused;
 * 3. already holding (kept as regressions): remote forwarding (`ssh -R`), direct-tcpip without
 *    allowPortForwarding, direct-streamlocal to /var/run/docker.sock, subsystems other than sftp,
 *    env LD_PRELOAD/BASH_ENV, a second exec on one channel;
 * 4. ordinary sftp put/get/rename/rm elsewhere still work.
 */
import assert from "node:assert/strict";
import { chownSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { after, before, test } from "node:test";
import type { BundleConnection } from "../../gateway/config/bundle.ts";
import { type SshListener, startSshListener } from "../../gateway/ssh/listener.ts";
import { run, type SshdHandle, startSshd } from "../env/index.ts";
import { approvalService, leeCertId, makeBundle, MemoryRecorder, storeWith, type TokenIssuer, tokenIssuer, sshdConnection, sshdCredentials, sshGrant, agentSshFiles } from "./fixtures.ts";
import { type KeyPair, KeyDir } from "./keys.ts";

const ssh2 = createRequire(import.meta.url)("ssh2") as typeof import("ssh2");
type Client = InstanceType<typeof ssh2.Client>;

const keys = new KeyDir();
let sshd: SshdHandle;
let issuer: TokenIssuer;
let gw: SshListener;
let agent: KeyPair;
let certFile: string;
let appCertFile: string;
let knownHosts: string;
let home: string;
let uid: number;
let gid: number;
const recorder = new MemoryRecorder();
const marker = `/tmp/drawbridge-sshred-${process.pid}`;

before(async () => {
	issuer = await tokenIssuer();
	sshd = await startSshd();
	const ca = keys.keygen("ed25519");
	agent = keys.keygen("ed25519");
	const connection = sshdConnection(sshd, "web");
	const app: BundleConnection = { ...connection, key: "ops/app", name: "app", labels: { env: "app" } };
	const store = storeWith(
		makeBundle(issuer, {
			connections: [connection, app],
			grants: [
				sshGrant(sshd, "lee", "web", { allowSftp: true, allowedCommands: ["echo *"] }),
				// Denylist only: shell lines are checked against the rule (best effort).
				sshGrant(sshd, "lee-app", "app", { allowShell: true }),
			],
			guardrailPolicies: [
				{
					key: "ops/app-rules",
					selector: { matchLabels: { env: "app" } },
					rules: [{ name: "no-touch", action: "block", ssh: { commands: ["touch *"] } }],
				},
			],
			ssh: { userCaKeys: [ca.publicKey] },
			credentials: sshdCredentials(sshd),
		}),
	);
	gw = await startSshListener({ store, recorder, approvals: approvalService(), hostKeyPem: keys.keygen("ed25519").privateKey });
	({ knownHosts, certFile } = agentSshFiles(keys, gw, ca, agent, sshd.user));
	appCertFile = join(keys.dir, "agent-app-cert.pub");
	writeFileSync(appCertFile, `${keys.sign(ca, agent, { id: leeCertId("ops/lee-app"), principals: [sshd.user], validity: "-5m:+1h" })}\n`);
	const pw = (await run("getent", ["passwd", sshd.user])).stdout.split(":");
	home = pw[5] ?? "";
	uid = Number(pw[2]);
	gid = Number(pw[3]);
	assert.ok(home.startsWith("/"), "home directory of the test user");
});

after(async () => {
	rmSync(marker, { force: true });
	await gw?.close();
	await sshd?.stop();
	keys.cleanup();
});

function certArgs(cert = certFile): string[] {
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
		"-i",
		agent.path,
		"-o",
		`CertificateFile=${cert}`,
	];
}

const sshTarget = () => ["-p", String(gw.address.port), "-l", `${sshd.user}@web`, "127.0.0.1"];

async function sftpBatch(lines: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
	const batch = join(keys.dir, `batch-${Math.random().toString(36).slice(2)}`);
	writeFileSync(batch, `${lines.join("\n")}\n`);
	return run("sftp", [...certArgs(), "-P", String(gw.address.port), "-o", `User=${sshd.user}@web`, "-b", batch, "127.0.0.1"], { timeoutMs: 30_000 });
}

async function connect(): Promise<Client> {
	const token = await issuer.token("lee");
	return new Promise((resolve, reject) => {
		const c = new ssh2.Client();
		c.on("ready", () => resolve(c));
		c.on("error", reject);
		c.connect({ host: "127.0.0.1", port: gw.address.port, username: `${sshd.user}@web`, password: token, hostVerifier: () => true });
	});
}

/** An open attempt's callback: resolves with the refusal, or undefined (after closing what opened). */
function opened(resolve: (e: Error | undefined) => void): (err: Error | undefined, s?: { close(): void }) => void {
	return (err, s) => {
		if (err) return resolve(err);
		s?.close();
		resolve(undefined);
	};
}

/** Restores (or removes) a file of the shared test user's home after an attack that may have written it. */
function preserving(path: string): () => void {
	const before = existsSync(path) ? readFileSync(path) : undefined;
	return () => {
		if (before === undefined) rmSync(path, { force: true, recursive: true });
		else writeFileSync(path, before);
	};
}

test("sftp cannot write the target's autorun files (~/.ssh/rc, ~/.bashrc), directly or by rename/symlink/hardlink; the allowed exec then runs no payload", { timeout: 120_000 }, async () => {
	const payload = join(keys.dir, "rc");
	writeFileSync(payload, `touch ${marker}\n`);
	const restoreSsh = preserving(join(home, ".ssh"));
	const restoreBashrc = preserving(join(home, ".bashrc"));
	try {
		const attacks: string[][] = [
			[`put ${payload} .ssh/rc`],
			[`put ${payload} staging-rc`, `rename staging-rc .ssh/rc`],
			[`-rmdir .ssh`, `-mkdir stage`, `put ${payload} stage/rc`, `rename stage .ssh`],
			[`symlink .ssh linkdir`, `put ${payload} linkdir/rc`],
			[`symlink ${home}/.ssh abslink`, `put ${payload} abslink/rc`],
			[`put ${payload} ./.ssh/../.ssh//rc`],
			[`put ${payload} .bashrc`],
			[`ln .bashrc bashrc-hardlink`, `put ${payload} bashrc-hardlink`],
		];
		for (const lines of attacks) {
			rmSync(marker, { force: true });
			// An existing ~/.ssh (most targets have one): writes through links to it must fail too.
			mkdirSync(join(home, ".ssh"), { recursive: true });
			chownSync(join(home, ".ssh"), uid, gid);
			const r = await sftpBatch(lines);
			const e = await run("ssh", [...certArgs(), ...sshTarget(), "echo hi"], { timeoutMs: 30_000 });
			assert.equal(e.stdout.trim(), "hi", e.stderr);
			// Also a non-interactive bash started by sshd (Debian's bash sources ~/.bashrc for it).
			assert.equal(existsSync(marker), false, `payload ran after: ${lines.join("; ")}\n${r.stderr}`);
			assert.match(r.stderr, /drawbridge: sftp: .* refused/, lines.join("; "));
			for (const f of ["staging-rc", "staging-dir-rc", "stage", "linkdir", "abslink", "bashrc-hardlink"]) rmSync(join(home, f), { force: true, recursive: true });
			restoreSsh();
			restoreBashrc();
		}
		const notes = recorder.events("sftp").filter((e) => e.decision === "block");
		assert.ok(notes.some((e) => e.path.includes(".ssh/rc")), JSON.stringify(notes));
	} finally {
		for (const f of ["staging-rc", "staging-dir-rc", "stage", "linkdir", "abslink", "bashrc-hardlink"]) rmSync(join(home, f), { force: true, recursive: true });
		restoreSsh();
		restoreBashrc();
	}
});

test("ordinary sftp elsewhere still works: put, get, rename, symlink, ln, rm, ls", { timeout: 60_000 }, async () => {
	const local = join(keys.dir, "data.bin");
	const data = Buffer.alloc(300_000, 7);
	writeFileSync(local, data);
	const remote = `/tmp/drawbridge-sshred-data-${process.pid}`;
	const back = join(keys.dir, "back.bin");
	const r = await sftpBatch([
		`put ${local} ${remote}`,
		`rename ${remote} ${remote}.2`,
		`symlink ${remote}.2 ${remote}.lnk`,
		`ln ${remote}.2 ${remote}.hard`,
		`get ${remote}.lnk ${back}`,
		`ls /tmp`,
		`rm ${remote}.2`,
		`rm ${remote}.lnk`,
		`rm ${remote}.hard`,
		`get .profile ${join(keys.dir, "profile")}`,
	]);
	assert.equal(r.code, 0, r.stderr);
	assert.ok(readFileSync(back).equals(data));
	assert.ok(existsSync(join(keys.dir, "profile")), "reading dotfiles stays allowed");
});

test("already holding: ssh -R, direct-tcpip without the grant, direct-streamlocal, subsystem netconf, env LD_PRELOAD/BASH_ENV", { timeout: 60_000 }, async () => {
	const fwd = await run("ssh", [...certArgs(), "-o", "ExitOnForwardFailure=yes", "-R", "0:127.0.0.1:22", ...sshTarget(), "echo hi"], { timeoutMs: 30_000 });
	assert.notEqual(fwd.code, 0);
	assert.match(fwd.stderr, /remote port forwarding failed/i);
	const c = await connect();
	try {
		const tcp = await new Promise<Error | undefined>((r) => c.forwardOut("127.0.0.1", 1, "127.0.0.1", sshd.port, opened(r)));
		assert.ok(tcp, "direct-tcpip refused without allowPortForwarding");
		const unix = await new Promise<Error | undefined>((r) => c.openssh_forwardOutStreamLocal("/var/run/docker.sock", opened(r)));
		assert.ok(unix, "direct-streamlocal refused");
		const sub = await new Promise<Error | undefined>((r) => c.subsys("netconf", opened(r)));
		assert.ok(sub, "subsystem netconf refused");
		const out = await new Promise<string>((resolve, reject) =>
			c.exec('echo "[$LD_PRELOAD|$BASH_ENV|$PATH_X]"', { env: { LD_PRELOAD: "/tmp/evil.so", BASH_ENV: "/tmp/evil.sh", PATH_X: "x" } }, (err, s) => {
				if (err) return reject(err);
				let o = "";
				s.on("data", (d: Buffer) => (o += d.toString()));
				s.stderr.on("data", (d: Buffer) => (o += d.toString()));
				s.on("close", () => resolve(o));
			}),
		);
		assert.equal(out.trim(), "[||]");
	} finally {
		c.end();
	}
});

test("an exec with a pty is an interactive terminal: its typed lines are checked like a shell's (ssh -tt gw bash)", { timeout: 60_000 }, async () => {
	const target = ["-p", String(gw.address.port), "-l", `${sshd.user}@app`, "127.0.0.1"];
	const lines = `touch ${marker}-pty\necho typed-ok\nexit\n`;
	try {
		// The control: the login shell's lines are checked.
		rmSync(`${marker}-pty`, { force: true });
		const shell = await run("ssh", [...certArgs(appCertFile), "-tt", ...target], { input: lines, timeoutMs: 30_000 });
		assert.equal(existsSync(`${marker}-pty`), false, shell.stdout);
		assert.match(shell.stdout, /no-touch/);
		// The attack: the same lines typed into `bash` started as an exec command with a pty.
		for (const cmd of ["bash", "bash -i", "exec sh"]) {
			rmSync(`${marker}-pty`, { force: true });
			const r = await run("ssh", [...certArgs(appCertFile), "-tt", ...target, cmd], { input: lines, timeoutMs: 30_000 });
			assert.equal(existsSync(`${marker}-pty`), false, `${cmd}: ${r.stdout}`);
			assert.match(r.stdout, /no-touch/, cmd);
			assert.match(r.stdout, /typed-ok/, cmd);
		}
		// Without a pty an exec's input is data (scp -t, tar, a script on stdin): not line-checked (README).
		const plain = await run("ssh", [...certArgs(appCertFile), ...target, "cat"], { input: "touch x\n", timeoutMs: 30_000 });
		assert.equal(plain.stdout, "touch x\n");
	} finally {
		rmSync(`${marker}-pty`, { force: true });
	}
});

test("pty-req terminal modes do not reach the target: a remapped line kill (VKILL ^X), VLNEXT, VINTR, -icanon stay the target's defaults", { timeout: 60_000 }, async () => {
	// The gateway kills a refused shell line with ^U; an agent whose pty-req set VKILL to ^X (or turned
	// ICANON off, or made ^U a literal with VLNEXT) would turn that kill into typed text and run the
	// line. ssh2 1.17.0 reads the encoded modes from their second byte, so the server side never sees
	// them and the gateway relays none (README "Requests besides shell, exec and sftp"). If an ssh2
	// upgrade starts delivering them, this fails: strip control-character and line-discipline modes on
	// line-checked channels before relaying any.
	const modes = { VKILL: 24, VLNEXT: 21, VINTR: 255, VEOF: 255, VERASE: 8, ICANON: 0, ISIG: 0, TTY_OP_ISPEED: 38400, TTY_OP_OSPEED: 38400 } as const;
	const sttyOver = (c: Client) =>
		new Promise<string>((resolve, reject) =>
			c.exec("stty -a", { pty: { term: "xterm", rows: 24, cols: 200, width: 0, height: 0, modes } }, (err, s) => {
				if (err) return reject(err);
				let o = "";
				s.on("data", (d: Buffer) => (o += d.toString()));
				s.on("close", () => resolve(o));
			}),
		);
	// The control: sshd honours these modes from ssh2's client when they are sent to it directly.
	const direct = await new Promise<Client>((resolve, reject) => {
		const c = new ssh2.Client();
		c.on("ready", () => resolve(c));
		c.on("error", reject);
		c.connect({ host: sshd.host, port: sshd.port, username: sshd.user, privateKey: readFileSync(sshd.clientKeyFile), hostVerifier: () => true });
	});
	try {
		const d = await sttyOver(direct);
		assert.match(d, /kill = \^X;/, d);
		assert.match(d, /-icanon/, d);
	} finally {
		direct.end();
	}
	// Through the gateway, on the line-checked app connection: the target's defaults.
	const token = await issuer.token("lee");
	const gwc = await new Promise<Client>((resolve, reject) => {
		const c = new ssh2.Client();
		c.on("ready", () => resolve(c));
		c.on("error", reject);
		c.connect({ host: "127.0.0.1", port: gw.address.port, username: `${sshd.user}@app`, password: token, hostVerifier: () => true });
	});
	try {
		const g = await sttyOver(gwc);
		assert.match(g, /kill = \^U;/, g);
		assert.match(g, /lnext = \^V;/, g);
		assert.match(g, /intr = \^C;/, g);
		assert.match(g, /(^|\s)icanon(\s|$)/m, g);
		assert.match(g, /(^|\s)isig(\s|$)/m, g);
	} finally {
		gwc.end();
	}
});
