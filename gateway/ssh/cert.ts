/**
 * OpenSSH public keys and user certificates, parsed and verified with node:crypto.
 *
 * Spec: OpenSSH PROTOCOL.certkeys (certificate layout, critical options, extensions), RFC 4253 section
 * 6.6 (ssh-rsa), RFC 8332 (rsa-sha2-256/512), RFC 5656 section 3.1 (ecdsa-sha2-*), RFC 8709 (ssh-ed25519).
 *
 * ssh2 (the npm package) has no certificate support (mscdex/ssh2#551), but its server hands the raw
 * key algorithm name, key blob, signature and signed data of a `publickey` USERAUTH_REQUEST to the
 * `authentication` handler unchanged for `*-cert-v01@openssh.com` types; so the gateway parses and
 * verifies certificates here and checks the proof-of-possession signature with the certified key.
 *
 * Key id convention (shared with operator/credentials, the CA side): `;`-separated `k=v` pairs, e.g.
 * `sub=lee;grant=ops/break-glass`. `grant` names the grant the certificate was minted for; `sub` the
 * subject. The extension `grant@drawbridge.dev` (value = grant key) is accepted as well.
 */
import { createHash, createPublicKey, type KeyObject, verify as cryptoVerify } from "node:crypto";
import { isIP } from "node:net";
import { SshGatewayError } from "./errors.ts";
import { SshWireError, WireReader } from "./wire.ts";

export type SshKeyType =
	| "ssh-ed25519"
	| "ecdsa-sha2-nistp256"
	| "ecdsa-sha2-nistp384"
	| "ecdsa-sha2-nistp521"
	| "ssh-rsa";

export interface SshPublicKey {
	type: SshKeyType;
	/** The wire blob (what `authorized_keys` base64-encodes). */
	blob: Buffer;
	key: KeyObject;
}

export const CERT_TYPES: Readonly<Record<string, SshKeyType>> = Object.freeze({
	"ssh-ed25519-cert-v01@openssh.com": "ssh-ed25519",
	"ecdsa-sha2-nistp256-cert-v01@openssh.com": "ecdsa-sha2-nistp256",
	"ecdsa-sha2-nistp384-cert-v01@openssh.com": "ecdsa-sha2-nistp384",
	"ecdsa-sha2-nistp521-cert-v01@openssh.com": "ecdsa-sha2-nistp521",
	"ssh-rsa-cert-v01@openssh.com": "ssh-rsa",
});

/** USERAUTH algorithm names that carry a certificate blob (RSA certs are offered under SHA-2 names). */
export function isCertificateAlgorithm(algo: string): boolean {
	return algo.endsWith("-cert-v01@openssh.com");
}

export enum CertType {
	User = 1,
	Host = 2,
}

export interface SshCertificate {
	/** `ssh-ed25519-cert-v01@openssh.com` etc. */
	certType: string;
	nonce: Buffer;
	/** The certified key. */
	publicKey: SshPublicKey;
	serial: bigint;
	type: CertType;
	keyId: string;
	principals: string[];
	/** Seconds since the epoch; `validBefore` 0xffffffffffffffff means forever. */
	validAfter: bigint;
	validBefore: bigint;
	criticalOptions: Map<string, string>;
	extensions: Map<string, string>;
	signatureKey: SshPublicKey;
	/** Signature algorithm used by the CA. */
	signatureAlgorithm: string;
	/** Raw signature bytes (inner blob of the signature). */
	signature: Buffer;
	/** Bytes the CA signed: the certificate up to and including the signature key. */
	signedData: Buffer;
	/** The whole certificate blob. */
	blob: Buffer;
}

const CURVES: Record<string, { crv: string; nist: string; size: number; hash: string }> = {
	"ecdsa-sha2-nistp256": { crv: "P-256", nist: "nistp256", size: 32, hash: "sha256" },
	"ecdsa-sha2-nistp384": { crv: "P-384", nist: "nistp384", size: 48, hash: "sha384" },
	"ecdsa-sha2-nistp521": { crv: "P-521", nist: "nistp521", size: 66, hash: "sha512" },
};

function b64u(b: Buffer): string {
	return b.toString("base64url");
}

/** Read the type-specific public key fields that follow the type name (or the nonce, in certs). */
function readKeyFields(type: SshKeyType, r: WireReader): KeyObject {
	if (type === "ssh-ed25519") {
		const pk = r.bytes();
		if (pk.length !== 32) throw new SshGatewayError("cert-malformed", "ed25519 key must be 32 bytes");
		return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: b64u(pk) }, format: "jwk" });
	}
	if (type === "ssh-rsa") {
		const e = r.mpint();
		const n = r.mpint();
		if (n.length * 8 < 2048 - 8) throw new SshGatewayError("cert-unsupported", "RSA keys under 2048 bits are refused");
		return createPublicKey({ key: { kty: "RSA", n: b64u(n), e: b64u(e) }, format: "jwk" });
	}
	const curve = CURVES[type]!;
	const name = r.string();
	if (name !== curve.nist) throw new SshGatewayError("cert-malformed", `curve ${name} does not match ${type}`);
	const q = r.bytes();
	if (q.length !== 1 + 2 * curve.size || q[0] !== 0x04)
		throw new SshGatewayError("cert-unsupported", "only uncompressed EC points are accepted");
	return createPublicKey({
		key: {
			kty: "EC",
			crv: curve.crv,
			x: b64u(q.subarray(1, 1 + curve.size)),
			y: b64u(q.subarray(1 + curve.size)),
		},
		format: "jwk",
	});
}

function asKeyType(name: string): SshKeyType {
	if (name === "ssh-ed25519" || name === "ssh-rsa" || name in CURVES) return name as SshKeyType;
	throw new SshGatewayError("cert-unsupported", `unsupported key type ${JSON.stringify(name)}`);
}

function wrapWire<T>(fn: () => T): T {
	try {
		return fn();
	} catch (e) {
		if (e instanceof SshGatewayError) throw e;
		if (e instanceof SshWireError) throw new SshGatewayError("cert-malformed", e.message);
		throw new SshGatewayError("cert-malformed", (e as Error).message);
	}
}

/** Parse a plain public key blob (`ssh-ed25519`, `ecdsa-sha2-*`, `ssh-rsa`). */
export function parsePublicKeyBlob(blob: Buffer): SshPublicKey {
	return wrapWire(() => {
		const r = new WireReader(blob);
		const type = asKeyType(r.string());
		const key = readKeyFields(type, r);
		r.end();
		return { type, blob: Buffer.from(blob), key };
	});
}

/** Parse one `authorized_keys`-style line: `[options] type base64 [comment]` (options are not supported). */
export function parseAuthorizedKey(line: string): SshPublicKey {
	const parts = line.trim().split(/\s+/);
	const type = parts[0] ?? "";
	const b64 = parts[1] ?? "";
	if (!/^[A-Za-z0-9+/]+=*$/.test(b64)) throw new SshGatewayError("cert-malformed", "not an OpenSSH public key line");
	const key = parsePublicKeyBlob(Buffer.from(b64, "base64"));
	if (key.type !== type) throw new SshGatewayError("cert-malformed", `key type ${type} does not match blob ${key.type}`);
	return key;
}

/** OpenSSH fingerprint, `SHA256:<base64 without padding>`. */
export function fingerprint(blob: Buffer): string {
	return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

/** `type base64` line for a key blob. */
export function authorizedKeyLine(key: Pick<SshPublicKey, "type" | "blob">, comment?: string): string {
	return `${key.type} ${key.blob.toString("base64")}${comment ? ` ${comment}` : ""}`;
}

function readNameList(buf: Buffer): string[] {
	const r = new WireReader(buf);
	const out: string[] = [];
	while (r.remaining > 0) out.push(r.string());
	return out;
}

/** Critical options / extensions: name + `string`-wrapped data (empty for flags). */
function readOptions(buf: Buffer, what: string): Map<string, string> {
	const r = new WireReader(buf);
	const out = new Map<string, string>();
	let prev = "";
	while (r.remaining > 0) {
		const name = r.string();
		const data = r.bytes();
		if (out.has(name)) throw new SshGatewayError("cert-malformed", `duplicate ${what} ${name}`);
		// PROTOCOL.certkeys: options must be in lexical order; out of order means a sloppy or hostile signer.
		if (name <= prev) throw new SshGatewayError("cert-malformed", `${what} not in lexical order`);
		prev = name;
		out.set(name, data.length === 0 ? "" : new WireReader(data).string());
	}
	return out;
}

/** Parse an OpenSSH certificate blob (does not verify anything). */
export function parseCertificate(blob: Buffer): SshCertificate {
	return wrapWire(() => {
		const r = new WireReader(blob);
		const certType = r.string();
		const keyType = CERT_TYPES[certType];
		if (!keyType) throw new SshGatewayError("cert-unsupported", `unsupported certificate type ${JSON.stringify(certType)}`);
		const nonce = r.bytes();
		const keyStart = r.pos;
		const key = readKeyFields(keyType, r);
		const keyFields = blob.subarray(keyStart, r.pos);
		const serial = r.uint64();
		const type = r.uint32();
		if (type !== CertType.User && type !== CertType.Host)
			throw new SshGatewayError("cert-malformed", `certificate type ${type}`);
		const keyId = r.string();
		const principals = readNameList(r.bytes());
		const validAfter = r.uint64();
		const validBefore = r.uint64();
		const criticalOptions = readOptions(r.bytes(), "critical option");
		const extensions = readOptions(r.bytes(), "extension");
		r.bytes(); // reserved
		const sigKeyBlob = r.bytes();
		const signedEnd = r.pos;
		const sig = new WireReader(r.bytes());
		r.end();
		const signatureAlgorithm = sig.string();
		const signature = sig.bytes();
		sig.end();
		const signatureKey = parsePublicKeyBlob(sigKeyBlob);
		// Rebuild the plain key blob of the certified key: string type || key fields.
		const typeBuf = Buffer.from(keyType);
		const plainBlob = Buffer.concat([Buffer.from([0, 0, 0, typeBuf.length]), typeBuf, keyFields]);
		plainBlob.writeUInt32BE(typeBuf.length, 0);
		return {
			certType,
			nonce: Buffer.from(nonce),
			publicKey: { type: keyType, blob: plainBlob, key },
			serial,
			type,
			keyId,
			principals,
			validAfter,
			validBefore,
			criticalOptions,
			extensions,
			signatureKey,
			signatureAlgorithm,
			signature: Buffer.from(signature),
			signedData: Buffer.from(blob.subarray(0, signedEnd)),
			blob: Buffer.from(blob),
		};
	});
}

/**
 * Verify an SSH signature made by `key`. `sig` is either the full signature blob (`string algo ||
 * string sig`) or, when `algo` is given, the inner signature bytes. SHA-1 `ssh-rsa` is refused.
 */
export function verifySshSignature(key: SshPublicKey, data: Buffer, sig: Buffer, algo?: string): boolean {
	let algorithm = algo;
	let raw = sig;
	if (algorithm === undefined) {
		try {
			const r = new WireReader(sig);
			algorithm = r.string();
			raw = r.bytes();
			r.end();
		} catch {
			return false;
		}
	}
	try {
		switch (key.type) {
			case "ssh-ed25519":
				if (algorithm !== "ssh-ed25519" || raw.length !== 64) return false;
				return cryptoVerify(null, data, key.key, raw);
			case "ssh-rsa": {
				const hash = algorithm === "rsa-sha2-256" ? "sha256" : algorithm === "rsa-sha2-512" ? "sha512" : undefined;
				if (!hash) return false;
				return cryptoVerify(hash, data, key.key, raw);
			}
			default: {
				const curve = CURVES[key.type]!;
				if (algorithm !== key.type) return false;
				const r = new WireReader(raw);
				const rr = r.mpint();
				const ss = r.mpint();
				r.end();
				if (rr.length > curve.size || ss.length > curve.size) return false;
				const p1363 = Buffer.alloc(curve.size * 2);
				rr.copy(p1363, curve.size - rr.length);
				ss.copy(p1363, 2 * curve.size - ss.length);
				return cryptoVerify(curve.hash, data, { key: key.key, dsaEncoding: "ieee-p1363" }, p1363);
			}
		}
	} catch {
		return false;
	}
}

/** Critical options the gateway understands (PROTOCOL.certkeys). Any other one refuses the certificate. */
const KNOWN_CRITICAL = new Set(["force-command", "source-address", "verify-required"]);

export interface CertCheckOptions {
	/** Trusted CA public keys. */
	trustedCAs: readonly SshPublicKey[];
	/** Login the client asked for; must be one of the principals. */
	principal: string;
	now: Date;
	/** Client IP, for `source-address`. */
	clientAddress?: string;
	/** Allowed clock skew in seconds (default 0: OpenSSH allows none either). */
	clockToleranceSec?: number;
}

export interface VerifiedCertificate {
	cert: SshCertificate;
	caFingerprint: string;
	/** `grant=` in the key id, or the `grant@drawbridge.dev` extension. */
	grant?: string;
	/** `subjects=` in the key id: the digest of the grant's subjects when the certificate was signed. */
	grantSubjects?: string;
	/** `sub=` in the key id; otherwise the whole key id. */
	subject: string;
	forceCommand?: string;
	validBefore: Date;
}

/** Parse the `k=v;k=v` key id convention. */
export function parseKeyId(keyId: string): Record<string, string> {
	const out: Record<string, string> = {};
	for (const part of keyId.split(";")) {
		const eq = part.indexOf("=");
		if (eq <= 0) continue;
		out[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
	}
	return out;
}

const FOREVER = 0xffffffffffffffffn;

/** Every check OpenSSH's sshd makes on a user certificate, plus the CA signature. Throws SshGatewayError. */
export function verifyUserCertificate(cert: SshCertificate, opts: CertCheckOptions): VerifiedCertificate {
	if (cert.type !== CertType.User) throw new SshGatewayError("cert-wrong-type", "host certificate presented for user authentication");
	const ca = opts.trustedCAs.find((k) => k.blob.equals(cert.signatureKey.blob));
	if (!ca) throw new SshGatewayError("cert-untrusted-ca", `certificate signed by untrusted CA ${fingerprint(cert.signatureKey.blob)}`);
	if (cert.signatureAlgorithm === "ssh-rsa") throw new SshGatewayError("cert-unsupported", "SHA-1 RSA CA signatures are refused");
	if (!verifySshSignature(ca, cert.signedData, cert.signature, cert.signatureAlgorithm))
		throw new SshGatewayError("cert-bad-signature", "certificate signature does not verify");
	const tol = BigInt(opts.clockToleranceSec ?? 0);
	const nowSec = BigInt(Math.floor(opts.now.getTime() / 1000));
	if (nowSec + tol < cert.validAfter)
		throw new SshGatewayError("cert-not-yet-valid", `certificate not valid before ${secToIso(cert.validAfter)}`);
	if (nowSec - tol >= cert.validBefore)
		throw new SshGatewayError("cert-expired", `certificate expired at ${secToIso(cert.validBefore)}`);
	// Deny by default: OpenSSH treats an empty principal list as "any user"; we do not.
	if (cert.principals.length === 0) throw new SshGatewayError("cert-principal", "certificate has no principals");
	if (!cert.principals.includes(opts.principal))
		throw new SshGatewayError("cert-principal", `login ${JSON.stringify(opts.principal)} is not a principal of the certificate`);
	for (const name of cert.criticalOptions.keys()) {
		if (!KNOWN_CRITICAL.has(name)) throw new SshGatewayError("cert-critical-option", `unsupported critical option ${name}`);
	}
	const src = cert.criticalOptions.get("source-address");
	if (src !== undefined) {
		if (!opts.clientAddress || !addressMatchesList(opts.clientAddress, src))
			throw new SshGatewayError("cert-source-address", `client address ${opts.clientAddress ?? "?"} not allowed by source-address`);
	}
	const kv = parseKeyId(cert.keyId);
	const grant = kv["grant"] ?? cert.extensions.get("grant@drawbridge.dev");
	const result: VerifiedCertificate = {
		cert,
		caFingerprint: fingerprint(ca.blob),
		subject: kv["sub"] ?? cert.keyId,
		validBefore: cert.validBefore >= FOREVER ? new Date(8.64e15) : new Date(Number(cert.validBefore) * 1000),
	};
	if (grant) result.grant = grant;
	if (kv["subjects"]) result.grantSubjects = kv["subjects"];
	const fc = cert.criticalOptions.get("force-command");
	if (fc !== undefined) result.forceCommand = fc;
	return result;
}

function secToIso(s: bigint): string {
	if (s >= FOREVER) return "forever";
	return new Date(Number(s) * 1000).toISOString();
}

/** `source-address` is a comma-separated list of addresses / CIDRs (IPv4 and IPv6). */
export function addressMatchesList(address: string, list: string): boolean {
	const addr = address.startsWith("::ffff:") && isIP(address.slice(7)) === 4 ? address.slice(7) : address;
	for (const entry of list.split(",")) {
		const [net, bitsStr] = entry.trim().split("/") as [string, string | undefined];
		const a = ipBytes(addr);
		const n = ipBytes(net);
		if (!a || !n || a.length !== n.length) continue;
		const bits = bitsStr === undefined ? a.length * 8 : Number(bitsStr);
		if (!Number.isInteger(bits) || bits < 0 || bits > a.length * 8) continue;
		let ok = true;
		for (let i = 0; i < bits; i++) {
			const byte = i >> 3;
			const mask = 0x80 >> (i & 7);
			if ((a[byte]! & mask) !== (n[byte]! & mask)) {
				ok = false;
				break;
			}
		}
		if (ok) return true;
	}
	return false;
}

function ipBytes(ip: string): number[] | undefined {
	const v = isIP(ip);
	if (v === 4) return ip.split(".").map(Number);
	if (v !== 6) return undefined;
	const [head, tail] = ip.includes("::") ? ip.split("::") : [ip, undefined];
	const h = head ? head.split(":") : [];
	const t = tail ? tail.split(":") : [];
	const last = (t.length ? t : h).at(-1) ?? "";
	const v4: string[] = [];
	if (isIP(last) === 4) {
		(t.length ? t : h).pop();
		const p = last.split(".").map(Number);
		v4.push(((p[0]! << 8) | p[1]!).toString(16), ((p[2]! << 8) | p[3]!).toString(16));
	}
	const groups = tail === undefined ? [...h, ...v4] : [...h, ...new Array(8 - h.length - t.length - v4.length).fill("0"), ...t, ...v4];
	const out: number[] = [];
	for (const g of groups) {
		const n = Number.parseInt(g, 16);
		out.push(n >> 8, n & 0xff);
	}
	return out.length === 16 ? out : undefined;
}
