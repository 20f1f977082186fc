/**
 * SFTP detours around the autorun guard (red-team round 9). Real OpenSSH `sftp` and ssh2's SFTP client
 * → gateway → real sshd's sftp-server, under a grant that allows SFTP (and `echo *`).
 *
 * The guard refuses changes to protected names (`.ssh`, `.bashrc`, ...) wherever they appear in a path,
 * but two kinds of protected location were checked by their path text only:
 * - `.config/systemd`, `.config/autostart`, `.config/environment.d` (a pair of names): `symlink .config
 *   cfg` then `put unit cfg/systemd/user/x.service` (or `rename .config old` and later `rename stage
 *   .config`) wrote a systemd user unit: the path said `cfg/systemd`;
 * - the absolute prefixes (`/etc/cron.d`, `/etc/profile.d`, `/var/spool/cron`, ...), which matter for
 *   logins that can write there (root): a relative path (`../etc/cron.d/job` from /root), a link the
 *   agent made to a directory above them (`symlink /etc e`, then `e/cron.d/job`), or a `..` after a link
 *   (`ssl` → /etc/ssl, then `ssl/../cron.d/job`, which the kernel resolves from /etc/ssl while the text
 *   normalises to `~/cron.d/job`) reached them, and so did `/proc/self/root/etc/cron.d/job` (`/`
 *   under another name); `/proc/sys/kernel/core_pattern` (a program the kernel runs as root) was not
 *   on the list at all.
 * Now links and renames of, onto, into or to `.config` and the directories above the prefixes are
 * refused, relative paths are checked as if they started at `/`, and a `..` after a directory name is
 * refused in changes. The test login cannot write /etc (and sshd refuses root here), so for the prefix
 * forms the test shows the gateway's refusal (its own message, the target's `Operation unsupported`
 * for the replaced request) where the old code let the request reach sftp-server.
 */
import assert from "node:assert/strict";
import { chownSync, existsSync, lstatSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type SshListener, startSshListener } from "../../gateway/ssh/listener.ts";
import { run, type SshdHandle, startSshd } from "../env/index.ts";
import { approvalService, MemoryRecorder, makeBundle, sshdConnection, sshdCredentials, sshGrant, storeWith, type TokenIssuer, tokenIssuer, agentSshFiles } from "./fixtures.ts";
import { type KeyPair, KeyDir } from "./keys.ts";

const ssh2 = createRequire(import.meta.url)("ssh2") as typeof import("ssh2");
type Client = InstanceType<typeof ssh2.Client>;
type Sftp = Parameters<Parameters<Client["sftp"]>[0]>[1];

const keys = new KeyDir();
let sshd: SshdHandle;
let issuer: TokenIssuer;
let gw: SshListener;
let agent: KeyPair;
let certFile: string;
let knownHosts: string;
let home: string;
let uid: number;
let gid: number;
const recorder = new MemoryRecorder();
const LEFTOVERS = ["cfg", "cfg-old", "stage", "ssl", "e", "notes.txt"];

before(async () => {
	issuer = await tokenIssuer();
	sshd = await startSshd();
	const ca = keys.keygen("ed25519");
	agent = keys.keygen("ed25519");
	const store = storeWith(
		makeBundle(issuer, {
			connections: [sshdConnection(sshd, "web")],
			grants: [sshGrant(sshd, "lee", "web", { allowSftp: true, allowedCommands: ["echo *"] })],
			ssh: { userCaKeys: [ca.publicKey] },
			credentials: sshdCredentials(sshd),
		}),
	);
	gw = await startSshListener({ store, recorder, approvals: approvalService(), hostKeyPem: keys.keygen("ed25519").privateKey });
	({ knownHosts, certFile } = agentSshFiles(keys, gw, ca, agent, sshd.user));
	const pw = (await run("getent", ["passwd", sshd.user])).stdout.split(":");
	home = pw[5] ?? "";
	uid = Number(pw[2]);
	gid = Number(pw[3]);
	assert.ok(home.startsWith("/"), "home directory of the test user");
});

after(async () => {
	cleanHome();
	await gw?.close();
	await sshd?.stop();
	keys.cleanup();
});

/** Removes what the attacks may have left in the shared test user's home (its .config is the test's own). */
function cleanHome(): void {
	if (!home) return;
	for (const f of [...LEFTOVERS, ".config"]) rmSync(join(home, f), { force: true, recursive: true });
}

async function sftpBatch(lines: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
	const batch = join(keys.dir, `batch-${Math.random().toString(36).slice(2)}`);
	writeFileSync(batch, `${lines.join("\n")}\n`);
	const args = ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${knownHosts}`];
	args.push("-o", "IdentitiesOnly=yes", "-i", agent.path, "-o", `CertificateFile=${certFile}`);
	return run("sftp", [...args, "-P", String(gw.address.port), "-o", `User=${sshd.user}@web`, "-b", batch, "127.0.0.1"], { timeoutMs: 30_000 });
}

async function withSftp<T>(fn: (sftp: Sftp) => Promise<T>): Promise<T> {
	const token = await issuer.token("lee");
	const c = await new Promise<Client>((resolve, reject) => {
		const client = new ssh2.Client();
		client.on("ready", () => resolve(client));
		client.on("error", reject);
		client.connect({ host: "127.0.0.1", port: gw.address.port, username: `${sshd.user}@web`, password: token, hostVerifier: () => true });
	});
	try {
		const sftp = await new Promise<Sftp>((resolve, reject) => c.sftp((err, s) => (err ? reject(err) : resolve(s))));
		return await fn(sftp);
	} finally {
		c.end();
	}
}

/**
 * Makes `link` point to `target`. OpenSSH's sftp-server reads SSH_FXP_SYMLINK's two paths in the
 * reverse of the draft's order, and ssh2 swaps them only when the server it talks to says OpenSSH
 * (the gateway does not): given (link, target) ssh2 sends them in the order OpenSSH reads as target, link.
 */
function makeLink(sftp: Sftp, link: string, target: string, cb: (err?: Error | null) => void): void {
	sftp.symlink(link, target, cb);
}

/** The error of one SFTP request, or undefined when the target did it. */
function outcome(start: (cb: (err?: Error | null) => void) => void): Promise<Error | undefined> {
	return new Promise((resolve) => start((err) => resolve(err ?? undefined)));
}

test("a link or rename of .config cannot carry a systemd user unit past the guard (OpenSSH sftp)", { timeout: 120_000 }, async () => {
	const unit = join(keys.dir, "evil.service");
	writeFileSync(unit, "[Service]\nExecStart=/bin/touch /tmp/drawbridge-unit-ran\n");
	const attacks: string[][] = [
		// A link to ~/.config; the unit written through it.
		["symlink .config cfg", "-mkdir cfg/systemd", "-mkdir cfg/systemd/user", `put ${unit} cfg/systemd/user/evil.service`],
		[`symlink ${home}/.config cfg`, "-mkdir cfg/systemd", "-mkdir cfg/systemd/user", `put ${unit} cfg/systemd/user/evil.service`],
		// ~/.config moved away, a prepared tree moved in.
		["-rename .config cfg-old", "-mkdir stage", "-mkdir stage/systemd", "-mkdir stage/systemd/user", `put ${unit} stage/systemd/user/evil.service`, "rename stage .config"],
	];
	try {
		for (const lines of attacks) {
			cleanHome();
			mkdirSync(join(home, ".config"));
			chownSync(join(home, ".config"), uid, gid);
			const r = await sftpBatch(lines);
			assert.equal(existsSync(join(home, ".config/systemd/user/evil.service")), false, `unit written by: ${lines.join("; ")}\n${r.stderr}`);
			assert.match(r.stderr, /drawbridge: sftp: .*\.config.* refused/, `${lines.join("; ")}: ${r.stderr}`);
			assert.equal(existsSync(join(home, "cfg")), false, "no link to .config was made");
			assert.ok(lstatSync(join(home, ".config")).isDirectory(), ".config is still the directory");
		}
	} finally {
		cleanHome();
	}
});

test("relative paths, links to /etc and `..` after a link do not reach the protected prefixes (ssh2 SFTP)", { timeout: 120_000 }, async () => {
	cleanHome();
	try {
		await withSftp(async (sftp) => {
			const refusedBefore = recorder.events("sftp").filter((e) => e.decision === "block").length;
			const cases: [string, (cb: (err?: Error | null) => void) => void][] = [
				["open ../../etc/cron.d/job for writing", (cb) => sftp.open("../../etc/cron.d/drawbridge-job", "w", (err, h) => (h ? sftp.close(h, () => cb(err)) : cb(err)))],
				["mkdir ../../etc/profile.d/x", (cb) => sftp.mkdir("../../etc/profile.d/drawbridge-x", cb)],
				["symlink e -> /etc", (cb) => makeLink(sftp, `${home}/e`, "/etc", cb)],
				["symlink e -> ../../etc", (cb) => makeLink(sftp, `${home}/e`, "../../etc", cb)],
				["symlink e -> /", (cb) => makeLink(sftp, `${home}/e`, "/", cb)],
				["setstat through ssl/../cron.d", (cb) => sftp.setstat(`${home}/ssl/../cron.d/drawbridge-job`, { mode: 0o644 }, cb)],
				// `/` under another name, and the kernel's own programs.
				["open /proc/self/root/etc/cron.d/job for writing", (cb) => sftp.open("/proc/self/root/etc/cron.d/drawbridge-job", "w", (err, h) => (h ? sftp.close(h, () => cb(err)) : cb(err)))],
				["open /proc/sys/kernel/core_pattern for writing", (cb) => sftp.open("/proc/sys/kernel/core_pattern", "w", (err, h) => (h ? sftp.close(h, () => cb(err)) : cb(err)))],
			];
			// A link to a harmless directory under /etc is allowed (and made): the `..` after it is what is refused.
			assert.equal(await outcome((cb) => makeLink(sftp, `${home}/ssl`, "/etc/ssl", cb)), undefined);
			for (const [what, start] of cases) {
				const err = await outcome(start);
				assert.ok(err, `${what}: done on the target`);
				// The replaced request: the target answers "unsupported" (it never saw the real one).
				assert.match(err.message, /unsupported/i, `${what}: ${err.message}`);
			}
			assert.equal(existsSync(join(home, "e")), false, "no link to a directory above /etc/cron.d was made");
			const refused = recorder.events("sftp").filter((e) => e.decision === "block").slice(refusedBefore);
			assert.equal(refused.length, cases.length, JSON.stringify(refused));
		});
	} finally {
		cleanHome();
	}
});

test("~/.inputrc (readline macros type a line and its Enter for one key) and ~/.bash_aliases (sourced by Debian's .bashrc) cannot be written", { timeout: 60_000 }, async () => {
	const payload = join(keys.dir, "inputrc");
	writeFileSync(payload, '"\\C-t": "touch /tmp/drawbridge-inputrc-ran\\n"\n');
	try {
		for (const name of [".inputrc", ".bash_aliases", ".bash_completion"]) {
			rmSync(join(home, name), { force: true });
			const r = await sftpBatch([`put ${payload} ${name}`]);
			assert.equal(existsSync(join(home, name)), false, `${name} written: ${r.stderr}`);
			assert.match(r.stderr, new RegExp(`drawbridge: sftp: write .*${name.replace(".", "\\.")} refused`), r.stderr);
		}
	} finally {
		for (const name of [".inputrc", ".bash_aliases", ".bash_completion"]) rmSync(join(home, name), { force: true });
	}
});

test("ordinary links, renames and relative writes still work", { timeout: 60_000 }, async () => {
	cleanHome();
	try {
		const r = await sftpBatch(["mkdir stage", "put /etc/hostname stage/notes.txt", "symlink stage/notes.txt e", "rename stage cfg", "ls cfg", "rm cfg/notes.txt", "rmdir cfg", "rm e"]);
		assert.equal(r.code, 0, r.stderr);
		await withSftp(async (sftp) => {
			assert.equal(await outcome((cb) => sftp.mkdir("stage", cb)), undefined);
			assert.equal(await outcome((cb) => makeLink(sftp, "stage/link", "notes.txt", cb)), undefined);
			assert.equal(await outcome((cb) => sftp.rename("stage", "ssl", cb)), undefined);
		});
		assert.ok(lstatSync(join(home, "ssl/link")).isSymbolicLink());
	} finally {
		cleanHome();
	}
});
