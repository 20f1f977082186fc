/**
 * The SSH certificate codec against real OpenSSH: `ssh-keygen -L` parses our certificates and a real
 * sshd with TrustedUserCAKeys accepts them (and refuses expired / wrong-principal / foreign-CA ones).
 */
import assert from "node:assert/strict";
import { execFile, spawn } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdtemp, readFile, rm, writeFile, chmod } from "node:fs/promises";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import {
	SshCertError,
	SshCertType,
	ed25519OpenSshPrivateKey,
	ed25519PublicKeyLine,
	generateEd25519Pem,
	parseCertificate,
	signUserCertificate,
	verifyCertificate,
} from "../../crds/ssh-certificate.ts";

const run = promisify(execFile);

async function freePort(): Promise<number> {
	return new Promise((resolve, reject) => {
		const s = createServer();
		s.listen(0, "127.0.0.1", () => {
			const a = s.address();
			s.close(() => (typeof a === "object" && a ? resolve(a.port) : reject(new Error("no port"))));
		});
	});
}

async function userKey(dir: string, type: "ed25519" | "ecdsa" | "rsa"): Promise<{ path: string; pub: string }> {
	const path = join(dir, `id_${type}`);
	await run("ssh-keygen", ["-q", "-t", type, "-N", "", "-C", `test-${type}`, "-f", path]);
	return { path, pub: (await readFile(`${path}.pub`, "utf8")).trim() };
}

test("ssh-keygen -L parses certificates for ed25519, ecdsa and rsa subject keys", async (t) => {
	const dir = await mkdtemp(join(tmpdir(), "dbsshcert-"));
	t.after(() => rm(dir, { recursive: true, force: true }));
	const ca = generateEd25519Pem();
	for (const type of ["ed25519", "ecdsa", "rsa"] as const) {
		const key = await userKey(dir, type);
		const validAfter = new Date("2026-01-01T00:00:00Z");
		const validBefore = new Date("2026-01-01T01:00:00Z");
		const { line, certificate } = signUserCertificate({
			caPrivateKey: ca.privateKeyPem,
			publicKey: key.pub,
			principals: ["deploy", "root"],
			validAfter,
			validBefore,
			keyId: "grant:ci/deployer-orders-ro",
			serial: 42n,
			criticalOptions: { "force-command": "/usr/bin/uptime" },
			extensions: { "permit-pty": "" },
		});
		const certPath = `${key.path}-cert.pub`;
		await writeFile(certPath, `${line}\n`);
		const { stdout } = await run("ssh-keygen", ["-L", "-f", certPath]);
		assert.match(stdout, /Type: .*-cert-v01@openssh.com user certificate/);
		assert.match(stdout, /Key ID: "grant:ci\/deployer-orders-ro"/);
		assert.match(stdout, /Serial: 42/);
		assert.match(stdout, /Principals:\s+deploy\s+root/);
		assert.match(stdout, /force-command \/usr\/bin\/uptime/);
		assert.match(stdout, /permit-pty/);
		assert.doesNotMatch(stdout, /permit-port-forwarding/);
		assert.equal(certificate.principals.join(","), "deploy,root");
		// Round trip: parse what we wrote, verify against the CA.
		const parsed = parseCertificate(line);
		assert.equal(parsed.keyId, "grant:ci/deployer-orders-ro");
		assert.equal(parsed.publicKey.blob.toString("base64"), key.pub.split(" ")[1]);
		verifyCertificate(parsed, { trustedCaKeys: [ca.publicKeyLine], now: new Date("2026-01-01T00:30:00Z"), principal: "deploy" });
	}
});

test("verifyCertificate refuses foreign CA, tampering, expiry, wrong principal, host certs", () => {
	const ca = generateEd25519Pem();
	const other = generateEd25519Pem();
	const { privateKey } = generateKeyPairSync("ed25519");
	const subject = ed25519PublicKeyLine(privateKey);
	const base = {
		caPrivateKey: ca.privateKeyPem,
		publicKey: subject,
		principals: ["alice"],
		validAfter: new Date(1_000_000_000_000),
		validBefore: new Date(1_000_000_600_000),
		keyId: "k",
	};
	const { blob } = signUserCertificate(base);
	const at = new Date(1_000_000_300_000);
	const code = (fn: () => unknown) => {
		try {
			fn();
		} catch (e) {
			return e instanceof SshCertError ? e.code : String(e);
		}
		return "ok";
	};
	assert.equal(code(() => verifyCertificate(blob, { trustedCaKeys: [ca.publicKeyLine], now: at, principal: "alice" })), "ok");
	assert.equal(code(() => verifyCertificate(blob, { trustedCaKeys: [other.publicKeyLine], now: at })), "UNTRUSTED_CA");
	assert.equal(code(() => verifyCertificate(blob, { trustedCaKeys: [ca.publicKeyLine], now: new Date(1_000_000_600_000) })), "EXPIRED");
	assert.equal(code(() => verifyCertificate(blob, { trustedCaKeys: [ca.publicKeyLine], now: new Date(999_999_999_000) })), "NOT_YET_VALID");
	assert.equal(code(() => verifyCertificate(blob, { trustedCaKeys: [ca.publicKeyLine], now: at, principal: "bob" })), "PRINCIPAL_NOT_ALLOWED");
	assert.equal(code(() => verifyCertificate(blob, { trustedCaKeys: [ca.publicKeyLine], now: at, expectType: SshCertType.Host })), "WRONG_CERT_TYPE");
	// Flip one byte of the key id: signature must fail.
	const tampered = Buffer.from(blob);
	const idx = tampered.indexOf(Buffer.from("alice"));
	tampered[idx] = "A".charCodeAt(0);
	assert.equal(code(() => verifyCertificate(tampered, { trustedCaKeys: [ca.publicKeyLine], now: at })), "BAD_SIGNATURE");
	// Truncation at every length is MALFORMED, never a crash of another kind.
	for (let n = 0; n < blob.length; n += 7) {
		const c = code(() => parseCertificate(blob.subarray(0, n)));
		assert.ok(c === "MALFORMED" || c === "UNSUPPORTED_KEY_TYPE", `len ${n}: ${c}`);
	}
});

test("a real sshd with TrustedUserCAKeys accepts our certificate and refuses a bad one", async (t) => {
	const dir = await mkdtemp(join(tmpdir(), "dbsshd-"));
	t.after(() => rm(dir, { recursive: true, force: true }));
	const ca = generateEd25519Pem();
	await writeFile(join(dir, "ca.pub"), `${ca.publicKeyLine}\n`);
	await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", join(dir, "host")]);
	const user = await userKey(dir, "ed25519");
	const port = await freePort();
	const config = [
		`HostKey ${join(dir, "host")}`,
		`ListenAddress 127.0.0.1`,
		`Port ${port}`,
		`PidFile ${join(dir, "sshd.pid")}`,
		"AuthorizedKeysFile none",
		`TrustedUserCAKeys ${join(dir, "ca.pub")}`,
		"PasswordAuthentication no",
		"KbdInteractiveAuthentication no",
		"PermitRootLogin prohibit-password",
		"UsePAM no",
		"StrictModes no",
	].join("\n");
	await writeFile(join(dir, "sshd_config"), `${config}\n`);
	const sshd = spawn("/usr/sbin/sshd", ["-D", "-e", "-f", join(dir, "sshd_config")], { stdio: ["ignore", "ignore", "pipe"] });
	let log = "";
	sshd.stderr.on("data", (d) => (log += d));
	t.after(() => sshd.kill());
	for (let i = 0; i < 50 && !log.includes("Server listening"); i++) await new Promise((r) => setTimeout(r, 100));
	assert.match(log, /Server listening/);

	const me = (await run("id", ["-un"])).stdout.trim();
	const trySsh = async (principals: string[], validBefore: Date, caPem = ca.privateKeyPem) => {
		const { line } = signUserCertificate({
			caPrivateKey: caPem,
			publicKey: user.pub,
			principals,
			validAfter: new Date(Date.now() - 60_000),
			validBefore,
			keyId: "test",
		});
		await writeFile(`${user.path}-cert.pub`, `${line}\n`);
		await chmod(user.path, 0o600);
		try {
			const { stdout } = await run("ssh", [
				"-i",
				user.path,
				"-o",
				`CertificateFile=${user.path}-cert.pub`,
				"-o",
				"IdentitiesOnly=yes",
				"-o",
				"BatchMode=yes",
				"-o",
				"StrictHostKeyChecking=no",
				"-o",
				"UserKnownHostsFile=/dev/null",
				"-o",
				"LogLevel=ERROR",
				"-p",
				String(port),
				`${me}@127.0.0.1`,
				"echo cert-ok",
			]);
			return stdout.trim();
		} catch (e) {
			return `refused: ${(e as { stderr?: string }).stderr?.trim() ?? e}`;
		}
	};
	assert.equal(await trySsh([me], new Date(Date.now() + 600_000)), "cert-ok");
	assert.match(await trySsh(["someone-else"], new Date(Date.now() + 600_000)), /^refused/);
	assert.match(await trySsh([me], new Date(Date.now() - 1_000)), /^refused/);
	assert.match(await trySsh([me], new Date(Date.now() + 600_000), generateEd25519Pem().privateKeyPem), /^refused/);

	// A key pair made entirely by us (OpenSSH private key format + certificate), as delivered to agents.
	const { privateKey } = generateKeyPairSync("ed25519");
	const ours = join(dir, "id_ours");
	await writeFile(ours, ed25519OpenSshPrivateKey(privateKey, "agent@drawbridge"), { mode: 0o600 });
	const derived = (await run("ssh-keygen", ["-y", "-f", ours])).stdout.trim();
	assert.equal(derived.split(" ").slice(0, 2).join(" "), ed25519PublicKeyLine(privateKey));
	user.path = ours;
	user.pub = ed25519PublicKeyLine(privateKey);
	assert.equal(await trySsh([me], new Date(Date.now() + 600_000)), "cert-ok");
});
