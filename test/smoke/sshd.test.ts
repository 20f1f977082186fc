import assert from "node:assert/strict";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { printLogsOnFailure, runOk, type SshdHandle, startSshd } from "../env/index.ts";

let sshd: SshdHandle;
let keys: string;
before(async () => {
	keys = mkdtempSync(join(tmpdir(), "drawbridge-smoke-ssh-"));
	await runOk("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "test-user-ca", "-f", join(keys, "user_ca")]);
	sshd = await startSshd({ trustedUserCaKey: readFileSync(join(keys, "user_ca.pub"), "utf8") });
});
after(async () => {
	await sshd?.stop();
	rmSync(keys, { recursive: true, force: true });
});
printLogsOnFailure(() => [["sshd", sshd]]);

test("a command runs over ssh as the test user, host key pinned", async () => {
	const r = await sshd.ssh(["id -un; echo hello-from-sshd"]);
	assert.equal(r.code, 0, r.stderr);
	assert.equal(r.stdout, `${sshd.user}\nhello-from-sshd\n`);
});

test("a different host key is refused by StrictHostKeyChecking", async () => {
	const wrong = join(keys, "known_hosts_wrong");
	writeFileSync(wrong, `[127.0.0.1]:${sshd.port} ${sshd.clientPublicKey.split(" ").slice(0, 2).join(" ")}\n`);
	const r = await sshd.ssh(["true"], { extraOptions: ["-o", `UserKnownHostsFile=${wrong}`] });
	assert.equal(r.code, 255);
	assert.match(r.stderr, /REMOTE HOST IDENTIFICATION HAS CHANGED|Host key verification failed/);
});

test("an unknown key is refused; a certificate from the trusted user CA is accepted", async () => {
	const key = join(keys, "agent");
	await runOk("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key]);
	const denied = await sshd.ssh(["true"], { identityFile: key });
	assert.equal(denied.code, 255);
	assert.match(denied.stderr, /Permission denied/);
	await runOk("ssh-keygen", ["-q", "-s", join(keys, "user_ca"), "-I", "smoke", "-n", sshd.user, "-V", "+5m", `${key}.pub`]);
	const ok = await sshd.ssh(["echo", "cert-ok"], { identityFile: key, extraOptions: ["-o", `CertificateFile=${key}-cert.pub`] });
	assert.equal(ok.code, 0, ok.stderr);
	assert.equal(ok.stdout, "cert-ok\n");
	assert.match(sshd.logs(), /Accepted publickey|Accepted certificate/);
});
