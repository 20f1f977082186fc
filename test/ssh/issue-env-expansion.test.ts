/**
 * Environment values the shell evaluates (red team, round 7). Real OpenSSH `ssh` and ssh2's client →
 * gateway → real sshd (with Debian's `AcceptEnv LANG LC_*`), the login shell bash, under an exec-only
 * grant (allowShell false, allowedCommands ["echo *"]).
 *
 * The gateway relayed the pty-req's terminal type (sshd sets it as TERM) and env requests for LANG,
 * LC_* and TERM with any value. bash re-reads a variable's value as code in expansions an allowed
 * `echo *` command may contain: `${TERM@P}` (prompt expansion runs `$(…)` in the value), `${a[LC_X]}`
 * and `${!LC_X}` (an array subscript `a[$(…)]` in the value is expanded). So
 * `TERM='$(touch X)' ssh -tt gw 'echo ${TERM@P}'` ran `touch` past the allowlist, which checks every
 * command and substitution written in the line but cannot see into a variable's value. Now only plain
 * names travel (`xterm-256color`, `en_US.UTF-8`, `de_DE@euro`): a pty-req with another terminal type is
 * refused, such env values are dropped (a notice in the recording).
 */
// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the strings are shell lines for bash, `${…}` included on purpose
import assert from "node:assert/strict";
import { existsSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";
import { isPlainEnvValue, type SshListener, startSshListener } from "../../gateway/ssh/listener.ts";
import { run, type SshdHandle, startSshd } from "../env/index.ts";
import { approvalService, makeBundle, MemoryRecorder, storeWith, type TokenIssuer, tokenIssuer, sshdConnection, sshdCredentials, sshGrant, agentSshFiles } from "./fixtures.ts";
import { type KeyPair, KeyDir } from "./keys.ts";

const ssh2 = createRequire(import.meta.url)("ssh2") as typeof import("ssh2");

const keys = new KeyDir();
let sshd: SshdHandle;
let issuer: TokenIssuer;
let gw: SshListener;
let agent: KeyPair;
let certFile: string;
let knownHosts: string;
const recorder = new MemoryRecorder();
const marker = `/tmp/drawbridge-sshenv-${process.pid}`;

before(async () => {
	issuer = await tokenIssuer();
	sshd = await startSshd({ extraConfig: ["AcceptEnv LANG LC_*"] });
	const ca = keys.keygen("ed25519");
	agent = keys.keygen("ed25519");
	const connection = sshdConnection(sshd, "web");
	const store = storeWith(
		makeBundle(issuer, {
			connections: [connection],
			grants: [
				sshGrant(sshd, "lee", "web", { allowedCommands: ["echo *"] }),
			],
			ssh: { userCaKeys: [ca.publicKey] },
			credentials: sshdCredentials(sshd),
		}),
	);
	gw = await startSshListener({ store, recorder, approvals: approvalService(), hostKeyPem: keys.keygen("ed25519").privateKey });
	({ knownHosts, certFile } = agentSshFiles(keys, gw, ca, agent, sshd.user));
});

after(async () => {
	rmSync(marker, { force: true });
	await gw?.close();
	await sshd?.stop();
	keys.cleanup();
});

const sshArgs = () => [
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
	"-i",
	agent.path,
	"-o",
	`CertificateFile=${certFile}`,
	"-p",
	String(gw.address.port),
	"-l",
	`${sshd.user}@web`,
	"127.0.0.1",
];

interface ExecResult {
	err?: Error;
	out: string;
}

/** One exec through the gateway with ssh2's client (token as password), with a pty and/or env. */
async function exec(command: string, opts: { term?: string; env?: Record<string, string> }): Promise<ExecResult> {
	const token = await issuer.token("lee");
	const c = new ssh2.Client();
	await new Promise<void>((resolve, reject) => {
		c.on("ready", () => resolve());
		c.on("error", reject);
		c.connect({ host: "127.0.0.1", port: gw.address.port, username: `${sshd.user}@web`, password: token, hostVerifier: () => true });
	});
	try {
		return await new Promise<ExecResult>((resolve) => {
			const o: { pty?: { term: string; rows: number; cols: number; width: number; height: number }; env?: Record<string, string> } = {};
			if (opts.term !== undefined) o.pty = { term: opts.term, rows: 24, cols: 80, width: 0, height: 0 };
			if (opts.env) o.env = opts.env;
			c.exec(command, o, (err, s) => {
				if (err) return resolve({ err, out: "" });
				let out = "";
				s.on("data", (b: Buffer) => (out += b.toString()));
				s.stderr.on("data", (b: Buffer) => (out += b.toString()));
				s.on("close", () => resolve({ out }));
			});
		});
	} finally {
		c.end();
	}
}

test("bash evaluates these values as code: the premise, without the gateway", async () => {
	for (const [line, env] of [
		["echo ${TERM@P}", { TERM: `$(touch ${marker})` }],
		["echo ${a[LC_X]}", { LC_X: `a[$(touch ${marker})]` }],
		["echo ${!LC_X}", { LC_X: `a[$(touch ${marker})]` }],
	] as const) {
		rmSync(marker, { force: true });
		const r = await run("bash", ["-c", line], { env: { ...process.env, ...env } });
		assert.equal(r.code, 0, r.stderr);
		assert.ok(existsSync(marker), `${line} with ${JSON.stringify(env)}`);
	}
	rmSync(marker, { force: true });
});

test("a pty-req terminal type with shell syntax is refused (sshd would set it as TERM)", { timeout: 60_000 }, async () => {
	// OpenSSH sends the client's $TERM. On the old code the allowed `echo ${TERM@P}` ran touch on the target.
	rmSync(marker, { force: true });
	const r = await run("ssh", ["-tt", ...sshArgs(), "echo ${TERM@P}"], { env: { ...process.env, TERM: `$(touch ${marker})` }, timeoutMs: 30_000 });
	assert.equal(existsSync(marker), false, `the payload ran on the target\n${r.stdout}\n${r.stderr}`);
	assert.match(r.stderr, /PTY allocation request failed/);
	// ssh2's client: the pty request fails, nothing runs.
	const x = await exec("echo ${TERM@P}", { term: `$(touch ${marker})` });
	assert.equal(existsSync(marker), false, x.out);
	assert.ok(x.err, "the pty request is refused");
	assert.ok(recorder.events("notice").some((e) => /pty refused: terminal type .* is not a plain name/.test(e.message)));
	// An ordinary terminal type still gets its pty.
	const ok = await run("ssh", ["-tt", ...sshArgs(), "echo [$TERM]"], { env: { ...process.env, TERM: "xterm-256color" }, timeoutMs: 30_000 });
	assert.match(ok.stdout, /\[xterm-256color\]/, ok.stderr);
});

test("LC_* and LANG values with shell syntax are dropped; plain locale names travel", { timeout: 60_000 }, async () => {
	for (const command of ["echo ${a[LC_X]}", "echo ${!LC_X}", "echo ${LANG@P}"]) {
		rmSync(marker, { force: true });
		// On the old code each ran touch on the target (sshd's AcceptEnv LANG LC_* let them in).
		const r = await exec(command, { env: { LC_X: `a[$(touch ${marker})]`, LANG: `$(touch ${marker})` } });
		assert.equal(r.err, undefined);
		assert.equal(existsSync(marker), false, `${command}: ${r.out}`);
	}
	assert.ok(recorder.events("notice").some((e) => /env LC_X dropped/.test(e.message)));
	const plain = await exec("echo [$LANG] [$LC_TIME]", { env: { LANG: "C.UTF-8", LC_TIME: "de_DE@euro" } });
	assert.match(plain.out, /\[C\.UTF-8\] \[de_DE@euro\]/);
});

test("an array subscript fed from the command line itself is refused under the allowlist (test/ssh/issue-arithmetic-expansion.test.ts)", { timeout: 60_000 }, async () => {
	const payload = `x[$(touch ${marker})]`;
	let line = "";
	for (let k = 0, off = 0; k < 4; k++) {
		line = `echo \${a[\${BASH_EXECUTION_STRING:${off}:${payload.length}}]} '${payload}'`;
		off = line.indexOf(`'${payload}'`) + 1;
	}
	rmSync(marker, { force: true });
	// On the old code the allowed `echo *` ran touch on the target.
	const r = await run("ssh", [...sshArgs(), line], { timeoutMs: 30_000 });
	assert.equal(existsSync(marker), false, `the payload ran on the target\n${r.stderr}`);
	assert.match(r.stderr, /expansion that evaluates text as code/);
});

test("isPlainEnvValue", () => {
	for (const v of ["", "xterm-256color", "screen.xterm-256color", "xterm+256color", "en_US.UTF-8", "de_DE@euro", "C", "POSIX"]) assert.ok(isPlainEnvValue(v), v);
	for (const v of ["$(id)", "`id`", "a[$(id)]", "a b", "x;y", "a[1]", "${x}", "x\ny", "\\", "'", "x".repeat(65)]) assert.ok(!isPlainEnvValue(v), v);
});
