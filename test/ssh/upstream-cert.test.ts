/**
 * `ssh.auth: certificate`: the gateway logs in to a real sshd that trusts the operator's upstream CA
 * (TrustedUserCAKeys) with a per-session certificate; no gateway key is in authorized_keys.
 * sshd runs with `ExposeAuthInfo yes`, so a session can read the certificate the gateway presented
 * (`$SSH_USER_AUTH`) and `ssh-keygen -L` shows its validity.
 */
import assert from "node:assert/strict";
import { generateKeyPairSync } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { ed25519PublicKeyLine } from "../../crds/ssh-certificate.ts";
import { type SshListener, startSshListener } from "../../gateway/ssh/listener.ts";
import { run, type SshdHandle, startSshd } from "../env/index.ts";
import { approvalService, makeBundle, MemoryRecorder, storeWith, type TokenIssuer, tokenIssuer } from "./fixtures.ts";
import { KeyDir } from "./keys.ts";

const keys = new KeyDir();
let sshd: SshdHandle;
let gw: SshListener;
let issuer: TokenIssuer;
/** The end of kim's grant: 60 s after the suite starts, well inside the 300 s a certificate may last. */
const briefGrantEnd = new Date(Date.now() + 60_000);

before(async () => {
	const ca = generateKeyPairSync("ed25519");
	const caLine = ed25519PublicKeyLine(ca.publicKey, "drawbridge-upstream-ca");
	sshd = await startSshd({ trustedUserCaKey: caLine, extraConfig: ["ExposeAuthInfo yes"] });
	issuer = await tokenIssuer();
	const bundle = makeBundle(issuer, {
		connections: [
			{
				key: "ops/db-2",
				name: "db-2",
				namespace: "ops",
				type: "ssh",
				labels: {},
				host: sshd.host,
				port: sshd.port,
				ssh: { hostKeys: [sshd.hostPublicKey], auth: "certificate" },
			},
		],
		grants: [
			{
				key: "ops/db-2-oncall",
				name: "db-2-oncall",
				namespace: "ops",
				connection: "db-2",
				subjects: [{ kind: "User", name: "lee" }],
				notBefore: new Date(Date.now() - 60_000).toISOString(),
				expiresAt: new Date(Date.now() + 3_600_000).toISOString(),
				ssh: { logins: [sshd.user], allowShell: true, allowSftp: true, allowPortForwarding: false, allowAgentForwarding: false },
				approvers: { subjects: [], minApprovals: 1 },
				origin: {},
			},
			{
				key: "ops/db-2-brief",
				name: "db-2-brief",
				namespace: "ops",
				connection: "db-2",
				subjects: [{ kind: "User", name: "kim" }],
				notBefore: new Date(Date.now() - 60_000).toISOString(),
				expiresAt: briefGrantEnd.toISOString(),
				ssh: { logins: [sshd.user], allowShell: true, allowSftp: false, allowPortForwarding: false, allowAgentForwarding: false },
				approvers: { subjects: [], minApprovals: 1 },
				origin: {},
			},
		],
		ssh: { userCaKeys: [], upstreamCaCredentialRef: "upstream-ca", upstreamCaPublicKey: caLine },
		credentials: {
			"upstream-ca": { type: "sshKey", username: "", privateKeyPem: ca.privateKey.export({ type: "pkcs8", format: "pem" }).toString() },
		},
	});
	gw = await startSshListener({
		store: storeWith(bundle),
		recorder: new MemoryRecorder(),
		approvals: approvalService(),
		hostKeyPem: keys.keygen("ed25519").privateKey,
	});
});

after(async () => {
	await gw?.close();
	await sshd?.stop();
	keys.cleanup();
});

/** `ssh` through the gateway with `user`'s token as the password; runs `command` on the target. */
async function sshAs(user: string, command: string) {
	const askpass = join(keys.dir, `askpass-${user}.sh`);
	writeFileSync(askpass, `#!/bin/sh\necho '${await issuer.token(user)}'\n`, { mode: 0o755 });
	const known = join(keys.dir, "known_hosts");
	writeFileSync(known, `[127.0.0.1]:${gw.address.port} ${gw.hostPublicKey}\n`);
	return run(
		"ssh",
		[
			"-F", "/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${known}`,
			"-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
			"-p", String(gw.address.port), "-l", `${sshd.user}@db-2`, "127.0.0.1", command,
		],
		{ env: { ...process.env, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: "force", DISPLAY: ":0" }, timeoutMs: 30_000 },
	);
}

/**
 * The certificate the target's sshd accepted for this session (ExposeAuthInfo writes
 * `publickey <type> <base64>`), as `ssh-keygen -L` reads it: validity in seconds since the epoch.
 */
async function presentedCertificate(user: string): Promise<{ keyId: string; from: number; to: number }> {
	const r = await sshAs(user, 'cat "$SSH_USER_AUTH"');
	assert.equal(r.code, 0, `${r.stderr}\n${sshd.logs()}`);
	const m = /^publickey (ssh-ed25519-cert-v01@openssh\.com \S+)$/m.exec(r.stdout);
	assert.ok(m, `no certificate in SSH_USER_AUTH: ${r.stdout}`);
	const file = join(keys.dir, `presented-${user}-cert.pub`);
	writeFileSync(file, `${m[1]}\n`);
	// ssh-keygen prints local time without a zone: read it in UTC.
	const l = await run("ssh-keygen", ["-L", "-f", file], { env: { ...process.env, TZ: "UTC" } });
	assert.equal(l.code, 0, l.stderr);
	const valid = /Valid: from (\S+) to (\S+)/.exec(l.stdout);
	const keyId = /Key ID: "([^"]*)"/.exec(l.stdout);
	assert.ok(valid && keyId, l.stdout);
	return { keyId: keyId[1]!, from: Date.parse(`${valid[1]}Z`) / 1000, to: Date.parse(`${valid[2]}Z`) / 1000 };
}

test("the gateway logs in upstream with a per-session certificate from the upstream CA", async () => {
	const r = await sshAs("lee", "echo cert-$(id -un)");
	assert.equal(r.code, 0, `${r.stderr}\n${sshd.logs()}`);
	assert.equal(r.stdout.trim(), `cert-${sshd.user}`);
	// sshd saw a certificate login whose key id names the identity, the grant and the session.
	assert.match(sshd.logs(), /Accepted publickey for .* ED25519-CERT .* ID sub=lee;grant=ops\/db-2-oncall;session=[0-9a-f-]+ \(serial \d+\) CA ED25519/);
});

test("the session certificate lasts at most 300 s under a long grant", async () => {
	const before = Math.floor(Date.now() / 1000);
	const cert = await presentedCertificate("lee");
	const after = Math.ceil(Date.now() / 1000);
	assert.match(cert.keyId, /^sub=lee;grant=ops\/db-2-oncall;/);
	assert.ok(cert.to >= before + 300 - 1 && cert.to <= after + 300, `valid to ${cert.to}, minted between ${before} and ${after}`);
	assert.ok(cert.from >= before - 61 && cert.from <= after - 60, `valid from ${cert.from}`);
});

test("the session certificate ends no later than the grant: a grant ending in 60 s gets at most 60 s", async () => {
	// On the old code: 300 s whatever the grant's end, so the key and certificate (if copied out of the
	// gateway) logged in to the target for four minutes after the grant had ended.
	const cert = await presentedCertificate("kim");
	assert.match(cert.keyId, /^sub=kim;grant=ops\/db-2-brief;/);
	const grantEnd = briefGrantEnd.getTime() / 1000;
	assert.ok(cert.to <= grantEnd, `certificate valid to ${new Date(cert.to * 1000).toISOString()}, past the grant's end ${briefGrantEnd.toISOString()}`);
	assert.ok(cert.to >= Math.floor(grantEnd), `certificate valid to ${cert.to}, grant ends ${grantEnd}: cut short by more than rounding`);
});
