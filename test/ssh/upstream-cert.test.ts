/**
 * `ssh.auth: certificate`: the gateway logs in to a real sshd that trusts the operator's upstream CA
 * (TrustedUserCAKeys) with a per-session certificate; no gateway key is in authorized_keys.
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

before(async () => {
	const ca = generateKeyPairSync("ed25519");
	const caLine = ed25519PublicKeyLine(ca.publicKey, "drawbridge-upstream-ca");
	sshd = await startSshd({ trustedUserCaKey: caLine });
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

test("the gateway logs in upstream with a per-session certificate from the upstream CA", async () => {
	const askpass = join(keys.dir, "askpass.sh");
	writeFileSync(askpass, `#!/bin/sh\necho '${await issuer.token("lee")}'\n`, { mode: 0o755 });
	const known = join(keys.dir, "known_hosts");
	writeFileSync(known, `[127.0.0.1]:${gw.address.port} ${gw.hostPublicKey}\n`);
	const r = await run(
		"ssh",
		[
			"-F", "/dev/null", "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${known}`,
			"-o", "PreferredAuthentications=password", "-o", "PubkeyAuthentication=no",
			"-p", String(gw.address.port), "-l", `${sshd.user}@db-2`, "127.0.0.1", "echo cert-$(id -un)",
		],
		{ env: { ...process.env, SSH_ASKPASS: askpass, SSH_ASKPASS_REQUIRE: "force", DISPLAY: ":0" }, timeoutMs: 30_000 },
	);
	assert.equal(r.code, 0, `${r.stderr}\n${sshd.logs()}`);
	assert.equal(r.stdout.trim(), `cert-${sshd.user}`);
	// sshd saw a certificate login whose key id names the identity, the grant and the session.
	assert.match(sshd.logs(), /Accepted publickey for .* ED25519-CERT .* ID sub=lee;grant=ops\/db-2-oncall;session=[0-9a-f-]+ \(serial \d+\) CA ED25519/);
});
