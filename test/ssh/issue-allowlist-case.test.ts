/**
 * `allowedCommands` globs ignored case (red-team round 10, lead 4). ssh2's client → gateway → real
 * sshd, under an exec-only grant allowing `<dir>/deploy.sh *` and `echo *`.
 *
 * The policy's globs match case-insensitively (right for rules, a denylist: matching more is their
 * safe side), and the allowlist used them too. The shell and the target's filesystem are
 * case-sensitive: `<dir>/DEPLOY.sh` is another program than `<dir>/deploy.sh`, and `ECHO` another
 * command than `echo`. On the old code `<dir>/DEPLOY.sh now` matched `<dir>/deploy.sh *` and ran the
 * other file (one the agent could have uploaded with SFTP). The allowlist compares case now.
 */
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { evaluateSshCommand } from "../../gateway/policy/ssh.ts";
import { type SshListener, startSshListener } from "../../gateway/ssh/listener.ts";
import { type SshdHandle, startSshd } from "../env/index.ts";
import { approvalService, MemoryRecorder, makeBundle, sshdConnection, sshdCredentials, sshGrant, storeWith, type TokenIssuer, tokenIssuer } from "./fixtures.ts";
import { KeyDir } from "./keys.ts";

const ssh2 = createRequire(import.meta.url)("ssh2") as typeof import("ssh2");

const keys = new KeyDir();
let sshd: SshdHandle;
let issuer: TokenIssuer;
let gw: SshListener;
let dir: string;
const recorder = new MemoryRecorder();

before(async () => {
	dir = mkdtempSync(join(tmpdir(), "drawbridge-allowcase-"));
	chmodSync(dir, 0o777);
	// The program the grant names, and another one whose name differs in case only.
	writeFileSync(join(dir, "deploy.sh"), `#!/bin/sh\ntouch ${dir}/ran-deploy\n`, { mode: 0o755 });
	writeFileSync(join(dir, "DEPLOY.sh"), `#!/bin/sh\ntouch ${dir}/ran-other\n`, { mode: 0o755 });
	issuer = await tokenIssuer();
	sshd = await startSshd();
	const store = storeWith(
		makeBundle(issuer, {
			connections: [sshdConnection(sshd, "web")],
			grants: [sshGrant(sshd, "lee", "web", { allowedCommands: [`${dir}/deploy.sh *`, "echo *"] })],
			credentials: sshdCredentials(sshd),
		}),
	);
	gw = await startSshListener({ store, recorder, approvals: approvalService(), hostKeyPem: keys.keygen("ed25519").privateKey });
});

after(async () => {
	await gw?.close();
	await sshd?.stop();
	keys.cleanup();
	if (dir) rmSync(dir, { recursive: true, force: true });
});

async function exec(command: string): Promise<{ out: string; code: number | undefined }> {
	const c = new ssh2.Client();
	const password = await issuer.token("lee");
	await new Promise<void>((resolve, reject) => {
		c.on("ready", () => resolve());
		c.on("error", reject);
		c.connect({ host: "127.0.0.1", port: gw.address.port, username: `${sshd.user}@web`, password, hostVerifier: () => true });
	});
	try {
		return await new Promise((resolve, reject) => {
			c.exec(command, (err, s) => {
				if (err) return reject(err);
				let out = "";
				let code: number | undefined;
				s.on("data", (b: Buffer) => (out += b.toString()));
				s.stderr.on("data", (b: Buffer) => (out += b.toString()));
				s.on("exit", (n: number | null) => (code = n ?? undefined));
				s.on("close", () => resolve({ out, code }));
			});
		});
	} finally {
		c.end();
	}
}

test("control: the program the grant names runs", { timeout: 60_000 }, async () => {
	const r = await exec(`${dir}/deploy.sh now`);
	assert.equal(r.code, 0, r.out);
	assert.ok(existsSync(join(dir, "ran-deploy")), r.out);
});

test("a program whose name differs only in case is refused, and does not run", { timeout: 60_000 }, async () => {
	const r = await exec(`${dir}/DEPLOY.sh now`);
	// On the old code the folded glob allowed it and the other file ran.
	assert.equal(existsSync(join(dir, "ran-other")), false, `the other program ran: ${r.out}`);
	assert.equal(r.code, 1, r.out);
	assert.match(r.out, /does not allow the command/);
	assert.ok(recorder.events("exec").some((e) => e.command === `${dir}/DEPLOY.sh now` && e.decision === "block"));
});

test("allowlist globs compare case; rules (a denylist) still ignore it", () => {
	const grant = { logins: ["u"], allowShell: false, allowSftp: false, allowPortForwarding: false, allowAgentForwarding: false, allowedCommands: ["echo *", "uptime"] };
	assert.equal(evaluateSshCommand("echo hi", grant, []).action, "allow");
	assert.equal(evaluateSshCommand("uptime", grant, []).action, "allow");
	for (const c of ["ECHO hi", "Echo hi", "UPTIME", "upTime"]) assert.equal(evaluateSshCommand(c, grant, []).action, "block", c);
	const rules = [{ name: "no-rm", action: "block" as const, ssh: { commands: ["rm *"] } }];
	const { allowedCommands: _, ...shellOnly } = grant;
	assert.equal(evaluateSshCommand("RM -rf /tmp/x", shellOnly, rules).action, "block");
});
