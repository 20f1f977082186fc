// OpenSSH sshd for tests: /usr/sbin/sshd on a free loopback port, temp host key, config and
// authorized_keys in a temp dir, a test user, and an `ssh` helper that pins the host key.
import { appendFileSync, chmodSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import {
	type ManagedProcess as ManagedProcessT,
	ManagedProcess,
	type RunOptions,
	type RunResult,
	currentUser,
	freePort,
	isRoot,
	makeTempDir,
	removeTempDir,
	run,
	runOk,
	trackTempDir,
	waitFor,
} from "./process.ts";

export const SSHD = "/usr/sbin/sshd";
export const SSH_TEST_USER = "drawbridge-test";

export interface SshdOptions {
	/** OpenSSH public key line of a user CA; sets TrustedUserCAKeys (user certificates signed by it log in). */
	trustedUserCaKey?: string;
	/** Extra lines appended to sshd_config. */
	extraConfig?: string[];
}

export interface SshdHandle {
	host: "127.0.0.1";
	port: number;
	/** The login user: "drawbridge-test" when running as root (created if missing), else the current user. */
	user: string;
	/** Client key pair (ed25519) authorised for `user`. */
	clientKeyFile: string;
	clientPublicKey: string;
	/** The server's host public key ("ssh-ed25519 AAAA…") and a known_hosts file pinning it. */
	hostPublicKey: string;
	knownHostsFile: string;
	/** The AuthorizedKeysFile used for every user (read on each login: append freely). */
	authorizedKeysFile: string;
	dir: string;
	/** Appends a public key line to authorized_keys. */
	addAuthorizedKey(line: string): void;
	/** Runs OpenSSH `ssh` as the client key to user@127.0.0.1 with StrictHostKeyChecking=yes. */
	ssh(args: string[], opts?: RunOptions & { user?: string; identityFile?: string; extraOptions?: string[] }): Promise<RunResult>;
	restart(): Promise<void>;
	stop(): Promise<void>;
	logs(): string;
}

/** Creates the test login user if we are root and it does not exist yet (idempotent, race tolerant). */
export async function ensureSshTestUser(): Promise<string> {
	if (!isRoot) return currentUser().user;
	// Test files run in parallel: another process may be creating the user (useradd exits 9 when it
	// exists, 10 when /etc/passwd is locked), so retry until getent sees it.
	let lastError = "";
	for (let attempt = 0; ; attempt++) {
		if ((await run("getent", ["passwd", SSH_TEST_USER])).code === 0) break;
		if (attempt >= 20) throw new Error(`useradd ${SSH_TEST_USER} failed: ${lastError}`);
		const r = await run("useradd", ["--create-home", "--shell", "/bin/bash", "--comment", "Drawbridge test user", SSH_TEST_USER]);
		if (r.code !== 0) {
			lastError = r.stderr;
			await new Promise((resolve) => setTimeout(resolve, 250));
		}
	}
	// A "!" (locked) password makes sshd refuse the account when UsePAM is off; "*" means "no password".
	const shadow = await run("getent", ["shadow", SSH_TEST_USER]);
	if (shadow.stdout.split(":")[1]?.startsWith("!")) await runOk("usermod", ["-p", "*", SSH_TEST_USER]);
	return SSH_TEST_USER;
}

export async function startSshd(options: SshdOptions = {}): Promise<SshdHandle> {
	const user = await ensureSshTestUser();
	if (isRoot) mkdirSync("/run/sshd", { recursive: true, mode: 0o755 });
	const dir = makeTempDir("sshd");
	// sshd reads AuthorizedKeysFile as the logging-in user: the dir must be traversable.
	chmodSync(dir, 0o755);
	trackTempDir(dir);
	const port = await freePort();
	const hostKey = join(dir, "ssh_host_ed25519_key");
	const clientKeyFile = join(dir, "client_ed25519");
	const authorizedKeysFile = join(dir, "authorized_keys");
	const knownHostsFile = join(dir, "known_hosts");
	const config = join(dir, "sshd_config");
	let proc: ManagedProcessT | undefined;
	let allLogs = "";
	try {
		await Promise.all([
			runOk("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "drawbridge-test-host", "-f", hostKey]),
			runOk("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "drawbridge-test-client", "-f", clientKeyFile]),
		]);
		const clientPublicKey = readFileSync(`${clientKeyFile}.pub`, "utf8").trim();
		const hostPublicKey = readFileSync(`${hostKey}.pub`, "utf8").trim().split(" ").slice(0, 2).join(" ");
		writeFileSync(authorizedKeysFile, `${clientPublicKey}\n`, { mode: 0o644 });
		writeFileSync(knownHostsFile, `[127.0.0.1]:${port} ${hostPublicKey}\n`);
		const lines = [
			"# Drawbridge test sshd (test/env/sshd.ts)",
			`Port ${port}`,
			"ListenAddress 127.0.0.1",
			`HostKey ${hostKey}`,
			`PidFile ${join(dir, "sshd.pid")}`,
			`AuthorizedKeysFile ${authorizedKeysFile}`,
			"UsePAM no",
			"StrictModes no",
			"PubkeyAuthentication yes",
			"PasswordAuthentication no",
			"KbdInteractiveAuthentication no",
			"PermitRootLogin no",
			"LogLevel VERBOSE",
			"PrintMotd no",
			"Subsystem sftp internal-sftp",
			"MaxStartups 100:30:200",
			"MaxSessions 50",
		];
		if (options.trustedUserCaKey) {
			const caFile = join(dir, "trusted_user_ca_keys");
			writeFileSync(caFile, `${options.trustedUserCaKey.trim()}\n`);
			lines.push(`TrustedUserCAKeys ${caFile}`);
		}
		lines.push(...(options.extraConfig ?? []));
		writeFileSync(config, `${lines.join("\n")}\n`);
		await runOk(SSHD, ["-t", "-f", config]);

		const start = async () => {
			const p = new ManagedProcess({
				name: "sshd",
				command: SSHD,
				args: ["-D", "-e", "-f", config],
				cwd: dir,
				cleanupDir: dir,
			});
			await waitFor(`sshd on port ${port}`, () => sshBanner(port), { proc: p, timeoutMs: 15_000 });
			return p;
		};
		proc = await start();

		return {
			host: "127.0.0.1",
			port,
			user,
			clientKeyFile,
			clientPublicKey,
			hostPublicKey,
			knownHostsFile,
			authorizedKeysFile,
			dir,
			addAuthorizedKey(line) {
				appendFileSync(authorizedKeysFile, `${line.trim()}\n`);
			},
			ssh(args, o = {}) {
				return run(
					"ssh",
					[
						// ssh keeps the first value given for an option: the caller's win.
						...(o.extraOptions ?? []),
						"-F",
						"/dev/null",
						"-i",
						o.identityFile ?? clientKeyFile,
						"-o",
						"IdentitiesOnly=yes",
						"-o",
						"BatchMode=yes",
						"-o",
						"StrictHostKeyChecking=yes",
						"-o",
						`UserKnownHostsFile=${knownHostsFile}`,
						"-o",
						"GlobalKnownHostsFile=/dev/null",
						"-o",
						"ConnectTimeout=10",
						"-p",
						String(port),
						`${o.user ?? user}@127.0.0.1`,
						...args,
					],
					{ timeoutMs: 60_000, ...o },
				);
			},
			async restart() {
				if (proc) {
					allLogs += proc.logs.text();
					await proc.stop();
				}
				proc = await start();
			},
			async stop() {
				if (proc) {
					allLogs += proc.logs.text();
					await proc.stop();
					proc = undefined;
				}
				removeTempDir(dir);
			},
			logs: () => allLogs + (proc?.logs.text() ?? ""),
		};
	} catch (err) {
		const log = proc?.logs.text() ?? "";
		await proc?.stop();
		removeTempDir(dir);
		if (log && err instanceof Error) err.message += `\n--- sshd log ---\n${log}`;
		throw err;
	}
}

/** True when something on the port greets with an SSH-2.0 banner. */
function sshBanner(port: number): Promise<boolean> {
	return new Promise((resolve) => {
		const s = connect(port, "127.0.0.1");
		let buf = "";
		const done = (ok: boolean) => {
			s.destroy();
			resolve(ok);
		};
		s.setTimeout(2000, () => done(false));
		s.on("data", (b: Buffer) => {
			buf += b.toString("latin1");
			if (buf.includes("\n")) done(buf.startsWith("SSH-2.0-"));
		});
		s.on("error", () => done(false));
	});
}
