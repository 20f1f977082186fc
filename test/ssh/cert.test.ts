import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { after, describe, test } from "node:test";
import {
	addressMatchesList,
	CertType,
	fingerprint,
	parseAuthorizedKey,
	parseCertificate,
	parseKeyId,
	verifyUserCertificate,
} from "../../gateway/ssh/cert.ts";
import { SshGatewayError } from "../../gateway/ssh/errors.ts";
import { blobOf, KeyDir } from "./keys.ts";

const keys = new KeyDir();
after(() => keys.cleanup());

const now = new Date();

function expectCode(fn: () => unknown, code: string): void {
	assert.throws(fn, (e: unknown) => e instanceof SshGatewayError && e.code === code);
}

describe("OpenSSH certificates signed by ssh-keygen", () => {
	for (const [caType, userType, hashAlg] of [
		["ed25519", "ed25519", undefined],
		["ecdsa", "ed25519", undefined],
		["rsa", "ed25519", "rsa-sha2-512"],
		["ed25519", "ecdsa", undefined],
		["ed25519", "rsa", undefined],
	] as const) {
		test(`${userType} user key, ${caType} CA ${hashAlg ?? ""}`, () => {
			const ca = keys.keygen(caType);
			const user = keys.keygen(userType);
			const line = keys.sign(ca, user, {
				id: "sub=lee;grant=ops/break-glass",
				principals: ["root", "lee"],
				validity: "-5m:+1h",
				...(hashAlg ? { hashAlg } : {}),
			});
			const cert = parseCertificate(blobOf(line));
			assert.equal(cert.type, CertType.User);
			assert.deepEqual(cert.principals, ["root", "lee"]);
			assert.equal(cert.keyId, "sub=lee;grant=ops/break-glass");
			// The certified key is the user's key.
			assert.ok(cert.publicKey.blob.equals(blobOf(user.publicKey)));
			assert.ok(cert.signatureKey.blob.equals(blobOf(ca.publicKey)));
			assert.ok(cert.extensions.has("permit-pty"));
			const v = verifyUserCertificate(cert, { trustedCAs: [parseAuthorizedKey(ca.publicKey)], principal: "root", now });
			assert.equal(v.grant, "ops/break-glass");
			assert.equal(v.subject, "lee");
			// Fingerprint matches ssh-keygen -l.
			const fp = execFileSync("ssh-keygen", ["-l", "-f", `${ca.path}.pub`], { encoding: "utf8" }).split(" ")[1];
			assert.equal(v.caFingerprint, fp);
		});
	}

	const ca = keys.keygen("ed25519");
	const user = keys.keygen("ed25519");
	const trustedCAs = [parseAuthorizedKey(ca.publicKey)];

	test("untrusted CA is refused", () => {
		const other = keys.keygen("ed25519");
		const cert = parseCertificate(blobOf(keys.sign(other, user, { id: "x", principals: ["root"] })));
		expectCode(() => verifyUserCertificate(cert, { trustedCAs, principal: "root", now }), "cert-untrusted-ca");
	});

	test("tampered certificate fails the CA signature", () => {
		const blob = blobOf(keys.sign(ca, user, { id: "sub=lee", principals: ["root"] }));
		const cert = parseCertificate(blob);
		// Flip a byte inside the key id (keeps structure valid).
		const idx = blob.indexOf(Buffer.from("sub=lee"));
		const bad = Buffer.from(blob);
		bad[idx + 4] = "x".charCodeAt(0);
		const forged = parseCertificate(bad);
		assert.equal(forged.keyId, "sub=xee");
		expectCode(() => verifyUserCertificate(forged, { trustedCAs, principal: "root", now }), "cert-bad-signature");
		assert.ok(verifyUserCertificate(cert, { trustedCAs, principal: "root", now }));
	});

	test("expired and not-yet-valid certificates are refused", () => {
		const expired = parseCertificate(blobOf(keys.sign(ca, user, { id: "e", principals: ["root"], validity: "-2h:-1h" })));
		expectCode(() => verifyUserCertificate(expired, { trustedCAs, principal: "root", now }), "cert-expired");
		const future = parseCertificate(blobOf(keys.sign(ca, user, { id: "f", principals: ["root"], validity: "+1h:+2h" })));
		expectCode(() => verifyUserCertificate(future, { trustedCAs, principal: "root", now }), "cert-not-yet-valid");
	});

	test("wrong principal and empty principals are refused", () => {
		const cert = parseCertificate(blobOf(keys.sign(ca, user, { id: "p", principals: ["deploy"] })));
		expectCode(() => verifyUserCertificate(cert, { trustedCAs, principal: "root", now }), "cert-principal");
		const none = parseCertificate(blobOf(keys.sign(ca, user, { id: "n" })));
		assert.deepEqual(none.principals, []);
		expectCode(() => verifyUserCertificate(none, { trustedCAs, principal: "root", now }), "cert-principal");
	});

	test("host certificate is refused for user auth", () => {
		const cert = parseCertificate(blobOf(keys.sign(ca, user, { id: "h", principals: ["root"], host: true })));
		expectCode(() => verifyUserCertificate(cert, { trustedCAs, principal: "root", now }), "cert-wrong-type");
	});

	test("critical options: source-address enforced, force-command surfaced, unknown refused", () => {
		const src = parseCertificate(
			blobOf(keys.sign(ca, user, { id: "s", principals: ["root"], options: ["source-address=10.0.0.0/8,::1"] })),
		);
		expectCode(
			() => verifyUserCertificate(src, { trustedCAs, principal: "root", now, clientAddress: "192.168.1.1" }),
			"cert-source-address",
		);
		assert.ok(verifyUserCertificate(src, { trustedCAs, principal: "root", now, clientAddress: "10.1.2.3" }));
		assert.ok(verifyUserCertificate(src, { trustedCAs, principal: "root", now, clientAddress: "::1" }));
		const fc = parseCertificate(blobOf(keys.sign(ca, user, { id: "f", principals: ["root"], options: ["force-command=uptime"] })));
		assert.equal(verifyUserCertificate(fc, { trustedCAs, principal: "root", now }).forceCommand, "uptime");
		// ssh-keygen refuses to sign unknown critical options without a namespace; custom ones with @ are allowed.
		const unk = parseCertificate(
			blobOf(keys.sign(ca, user, { id: "u", principals: ["root"], options: ["critical:weird@example.com=1"] })),
		);
		expectCode(() => verifyUserCertificate(unk, { trustedCAs, principal: "root", now }), "cert-critical-option");
	});

	test("truncation anywhere is a cert-malformed error, never a crash", () => {
		const blob = blobOf(keys.sign(ca, user, { id: "t", principals: ["root"] }));
		for (let i = 0; i < blob.length; i += 7) {
			expectCode(() => parseCertificate(blob.subarray(0, i)), "cert-malformed");
		}
		const extra = Buffer.concat([blob, Buffer.from([0])]);
		expectCode(() => parseCertificate(extra), "cert-malformed");
	});

	test("fingerprint of a plain key equals ssh-keygen -l", () => {
		const k = keys.keygen("rsa", 3072);
		const fp = execFileSync("ssh-keygen", ["-l", "-f", `${k.path}.pub`], { encoding: "utf8" }).split(" ")[1];
		assert.equal(fingerprint(parseAuthorizedKey(k.publicKey).blob), fp);
	});
});

test("key id convention", () => {
	assert.deepEqual(parseKeyId("sub=lee;grant=ops/bg"), { sub: "lee", grant: "ops/bg" });
	assert.deepEqual(parseKeyId("plain-id"), {});
});

test("source-address matching", () => {
	assert.ok(addressMatchesList("127.0.0.1", "127.0.0.0/8"));
	assert.ok(addressMatchesList("::ffff:127.0.0.1", "127.0.0.1/32"));
	assert.ok(!addressMatchesList("128.0.0.1", "127.0.0.0/8"));
	assert.ok(addressMatchesList("2001:db8::5", "2001:db8::/32"));
	assert.ok(!addressMatchesList("2001:db9::5", "2001:db8::/32"));
	assert.ok(!addressMatchesList("10.0.0.1", "garbage"));
});

test("interop: a certificate minted like the operator's (crds/ssh-certificate.ts) verifies here", async () => {
	const { generateKeyPairSync } = await import("node:crypto");
	const { ed25519PublicKeyLine, signUserCertificate } = await import("../../crds/ssh-certificate.ts");
	const caKey = generateKeyPairSync("ed25519");
	const agentKey = generateKeyPairSync("ed25519");
	const { blob } = signUserCertificate({
		caPrivateKey: caKey.privateKey,
		publicKey: ed25519PublicKeyLine(agentKey.publicKey),
		principals: ["root"],
		validAfter: new Date(Date.now() - 60_000),
		validBefore: new Date(Date.now() + 3_600_000),
		keyId: "sub=system:serviceaccount:ci:deployer;grant=ops/break-glass",
		serial: 42n,
		extensions: { "permit-pty": "" },
	});
	const v = verifyUserCertificate(parseCertificate(blob), {
		trustedCAs: [parseAuthorizedKey(ed25519PublicKeyLine(caKey.publicKey))],
		principal: "root",
		now: new Date(),
	});
	assert.equal(v.grant, "ops/break-glass");
	assert.equal(v.subject, "system:serviceaccount:ci:deployer");
	assert.equal(v.cert.serial, 42n);
	assert.deepEqual([...v.cert.extensions.keys()], ["permit-pty"]);
});
