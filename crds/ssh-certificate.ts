/**
 * OpenSSH user/host certificate codec (PROTOCOL.certkeys, "*-cert-v01@openssh.com"), pure node:crypto.
 *
 * Shared by the operator (the SSH CA signs certificates) and the gateway (verifies client certificates,
 * presents certificates upstream). It lives in crds/ because both sides may import crds/ and the
 * gateway never imports operator/ (STYLE 12). No ssh-keygen at runtime.
 *
 * CA keys are Ed25519 (signature algorithm `ssh-ed25519`). Subject keys may be ssh-ed25519,
 * ecdsa-sha2-nistp256/384/521 or ssh-rsa: the certificate embeds the subject key's fields verbatim, so
 * the codec only needs to know the certificate type name for each key type.
 *
 * Wire layout (all big-endian; `string` = uint32 length + bytes):
 *   string cert-type · string nonce · <subject key fields> · uint64 serial · uint32 type ·
 *   string key-id · string principals(list of string) · uint64 valid-after · uint64 valid-before ·
 *   string critical-options · string extensions · string reserved · string signature-key ·
 *   string signature
 * The signature covers every byte before the final `signature` field.
 */

import { type KeyObject, createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, verify } from "node:crypto";

export type SshCertErrorCode =
	| "MALFORMED" // bytes do not parse
	| "UNSUPPORTED_KEY_TYPE" // key or certificate type we do not handle
	| "BAD_SIGNATURE" // signature does not verify
	| "UNTRUSTED_CA" // signed by a CA we do not trust
	| "WRONG_CERT_TYPE" // host cert where user cert expected or vice versa
	| "NOT_YET_VALID"
	| "EXPIRED"
	| "PRINCIPAL_NOT_ALLOWED"
	| "UNKNOWN_CRITICAL_OPTION";

/** Domain error for untrusted certificate input. */
export class SshCertError extends Error {
	readonly code: SshCertErrorCode;
	constructor(code: SshCertErrorCode, message: string) {
		super(message);
		this.name = "SshCertError";
		this.code = code;
	}
}

export enum SshCertType {
	User = 1,
	Host = 2,
}

/** Subject key type → certificate type name. */
export const CERT_TYPE_BY_KEY_TYPE: Readonly<Record<string, string>> = Object.freeze({
	"ssh-ed25519": "ssh-ed25519-cert-v01@openssh.com",
	"ecdsa-sha2-nistp256": "ecdsa-sha2-nistp256-cert-v01@openssh.com",
	"ecdsa-sha2-nistp384": "ecdsa-sha2-nistp384-cert-v01@openssh.com",
	"ecdsa-sha2-nistp521": "ecdsa-sha2-nistp521-cert-v01@openssh.com",
	"ssh-rsa": "ssh-rsa-cert-v01@openssh.com",
});
const KEY_TYPE_BY_CERT_TYPE: Readonly<Record<string, string>> = Object.freeze(
	Object.fromEntries(Object.entries(CERT_TYPE_BY_KEY_TYPE).map(([k, v]) => [v, k])),
);

/** Critical options OpenSSH defines (unknown ones must make verification fail). */
export const KNOWN_CRITICAL_OPTIONS = Object.freeze(["force-command", "source-address", "verify-required"]);
/** The extension set `ssh-keygen -s` grants by default. */
export const DEFAULT_USER_EXTENSIONS: Readonly<Record<string, string>> = Object.freeze({
	"permit-X11-forwarding": "",
	"permit-agent-forwarding": "",
	"permit-port-forwarding": "",
	"permit-pty": "",
	"permit-user-rc": "",
});

/** uint64 "forever" value for valid-before. */
export const FOREVER = 0xffff_ffff_ffff_ffffn;

// ---------------------------------------------------------------------------------------------
// Wire helpers

class Writer {
	private parts: Buffer[] = [];
	uint32(n: number): this {
		const b = Buffer.alloc(4);
		b.writeUInt32BE(n >>> 0);
		this.parts.push(b);
		return this;
	}
	uint64(n: bigint): this {
		const b = Buffer.alloc(8);
		b.writeBigUInt64BE(n);
		this.parts.push(b);
		return this;
	}
	string(s: Buffer | string): this {
		const b = typeof s === "string" ? Buffer.from(s, "utf8") : s;
		this.uint32(b.length);
		this.parts.push(b);
		return this;
	}
	raw(b: Buffer): this {
		this.parts.push(b);
		return this;
	}
	bytes(): Buffer {
		return Buffer.concat(this.parts);
	}
}

class Reader {
	off = 0;
	constructor(readonly buf: Buffer) {}
	private need(n: number): void {
		if (this.off + n > this.buf.length) throw new SshCertError("MALFORMED", `truncated at byte ${this.off}`);
	}
	uint32(): number {
		this.need(4);
		const v = this.buf.readUInt32BE(this.off);
		this.off += 4;
		return v;
	}
	uint64(): bigint {
		this.need(8);
		const v = this.buf.readBigUInt64BE(this.off);
		this.off += 8;
		return v;
	}
	string(): Buffer {
		const n = this.uint32();
		this.need(n);
		const v = this.buf.subarray(this.off, this.off + n);
		this.off += n;
		return v;
	}
	text(): string {
		return this.string().toString("utf8");
	}
	done(): boolean {
		return this.off === this.buf.length;
	}
}

function encodeStringList(items: readonly string[]): Buffer {
	const w = new Writer();
	for (const i of items) w.string(i);
	return w.bytes();
}

function decodeStringList(b: Buffer): string[] {
	const r = new Reader(b);
	const out: string[] = [];
	while (!r.done()) out.push(r.text());
	return out;
}

/** Options/extensions: sorted by name; non-empty data is itself wrapped as an SSH string. */
function encodeOptions(opts: Readonly<Record<string, string>>): Buffer {
	const w = new Writer();
	for (const name of Object.keys(opts).sort()) {
		const value = opts[name] ?? "";
		w.string(name);
		w.string(value === "" ? Buffer.alloc(0) : new Writer().string(value).bytes());
	}
	return w.bytes();
}

function decodeOptions(b: Buffer): Record<string, string> {
	const r = new Reader(b);
	const out: Record<string, string> = {};
	let prev = "";
	while (!r.done()) {
		const name = r.text();
		if (name <= prev && prev !== "") throw new SshCertError("MALFORMED", `options not sorted or duplicated at ${name}`);
		prev = name;
		const data = r.string();
		if (data.length === 0) out[name] = "";
		else {
			const inner = new Reader(data);
			out[name] = inner.text();
			if (!inner.done()) throw new SshCertError("MALFORMED", `trailing bytes in option ${name}`);
		}
	}
	return out;
}

// ---------------------------------------------------------------------------------------------
// Keys

export interface SshPublicKey {
	/** `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, or a `*-cert-v01@openssh.com` type. */
	type: string;
	/** Whole wire blob (starts with the type string). */
	blob: Buffer;
	comment?: string;
}

/** Parses one `authorized_keys`-style line: `type base64 [comment]`. */
export function parsePublicKeyLine(line: string): SshPublicKey {
	const parts = line.trim().split(/\s+/);
	if (parts.length < 2) throw new SshCertError("MALFORMED", "public key line needs `type base64`");
	const blob = Buffer.from(parts[1]!, "base64");
	const type = new Reader(blob).text();
	if (type !== parts[0]) throw new SshCertError("MALFORMED", `key type ${parts[0]} does not match blob type ${type}`);
	const comment = parts.slice(2).join(" ");
	return comment ? { type, blob, comment } : { type, blob };
}

export function formatPublicKeyLine(key: { type: string; blob: Buffer }, comment?: string): string {
	return `${key.type} ${key.blob.toString("base64")}${comment ? ` ${comment}` : ""}`;
}

/** SSH wire blob of an Ed25519 public key (from a private or public KeyObject). */
export function ed25519PublicBlob(key: KeyObject): Buffer {
	const pub = key.type === "private" ? createPublicKey(key) : key;
	if (pub.asymmetricKeyType !== "ed25519") throw new SshCertError("UNSUPPORTED_KEY_TYPE", `CA keys must be ed25519, got ${pub.asymmetricKeyType}`);
	const jwk = pub.export({ format: "jwk" });
	return new Writer().string("ssh-ed25519").string(Buffer.from(jwk.x!, "base64url")).bytes();
}

/** OpenSSH public key line for an Ed25519 KeyObject (e.g. for `TrustedUserCAKeys`). */
export function ed25519PublicKeyLine(key: KeyObject, comment?: string): string {
	return formatPublicKeyLine({ type: "ssh-ed25519", blob: ed25519PublicBlob(key) }, comment);
}

function ed25519KeyFromBlob(blob: Buffer): KeyObject {
	const r = new Reader(blob);
	const type = r.text();
	if (type !== "ssh-ed25519") throw new SshCertError("UNSUPPORTED_KEY_TYPE", `CA key type ${type} is not supported (ed25519 only)`);
	const raw = r.string();
	if (raw.length !== 32 || !r.done()) throw new SshCertError("MALFORMED", "bad ed25519 key blob");
	return createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: raw.toString("base64url") }, format: "jwk" });
}

/** A fresh Ed25519 key pair; the private key as PKCS#8 PEM (what the operator stores in a Secret). */
export function generateEd25519Pem(): { privateKeyPem: string; publicKeyLine: string } {
	const { privateKey } = generateKeyPairSync("ed25519");
	return {
		privateKeyPem: privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
		publicKeyLine: ed25519PublicKeyLine(privateKey),
	};
}

/**
 * An Ed25519 private key in OpenSSH's own format (`-----BEGIN OPENSSH PRIVATE KEY-----`, unencrypted),
 * which every OpenSSH client and the ssh2 package read. Layout (PROTOCOL.key): magic "openssh-key-v1\0",
 * cipher/kdf "none", one public key, then the private section (two equal check ints, key type, public
 * key, 64-byte private key = seed || public, comment) padded with 1, 2, 3... to a multiple of 8.
 */
export function ed25519OpenSshPrivateKey(key: KeyObject, comment = ""): string {
	if (key.type !== "private" || key.asymmetricKeyType !== "ed25519") throw new TypeError("an ed25519 private key is required");
	const jwk = key.export({ format: "jwk" });
	const pub = Buffer.from(jwk.x!, "base64url");
	const seed = Buffer.from(jwk.d!, "base64url");
	const check = randomBytes(4).readUInt32BE(0);
	const priv = new Writer()
		.uint32(check)
		.uint32(check)
		.string("ssh-ed25519")
		.string(pub)
		.string(Buffer.concat([seed, pub]))
		.string(comment)
		.bytes();
	const pad = Buffer.from(Array.from({ length: (8 - (priv.length % 8)) % 8 }, (_, i) => i + 1));
	const body = new Writer()
		.raw(Buffer.from("openssh-key-v1\0", "latin1"))
		.string("none")
		.string("none")
		.string(Buffer.alloc(0))
		.uint32(1)
		.string(ed25519PublicBlob(key))
		.string(Buffer.concat([priv, pad]))
		.bytes();
	const b64 = body.toString("base64").replace(/(.{70})/g, "$1\n").replace(/\n$/, "");
	return `-----BEGIN OPENSSH PRIVATE KEY-----\n${b64}\n-----END OPENSSH PRIVATE KEY-----\n`;
}

/** SHA256 fingerprint as printed by `ssh-keygen -l` (`SHA256:base64-no-padding`). */
export function fingerprint(blob: Buffer): string {
	return `SHA256:${createHash("sha256").update(blob).digest("base64").replace(/=+$/, "")}`;
}

// ---------------------------------------------------------------------------------------------
// Certificates

export interface SshCertificate {
	certType: string;
	nonce: Buffer;
	/** Subject public key as a plain (non-certificate) key blob. */
	publicKey: SshPublicKey;
	serial: bigint;
	type: SshCertType;
	keyId: string;
	principals: string[];
	/** Seconds since the epoch. */
	validAfter: bigint;
	validBefore: bigint;
	criticalOptions: Record<string, string>;
	extensions: Record<string, string>;
	signatureKey: Buffer;
	signatureAlgorithm: string;
	signature: Buffer;
	/** The bytes the signature covers. */
	signedData: Buffer;
	/** The whole certificate blob. */
	blob: Buffer;
}

export interface SignCertificateOptions {
	/** Ed25519 CA private key (KeyObject or PKCS#8 PEM). */
	caPrivateKey: KeyObject | string;
	/** Subject public key: an `authorized_keys` line or a parsed key. */
	publicKey: string | SshPublicKey;
	principals: string[];
	validAfter: Date;
	validBefore: Date;
	keyId: string;
	/** Default: user certificate. */
	certType?: SshCertType;
	serial?: bigint;
	criticalOptions?: Record<string, string>;
	/** Default for user certificates: DEFAULT_USER_EXTENSIONS; host certificates carry none. */
	extensions?: Record<string, string>;
	/** 32 random bytes by default (tests may pin it). */
	nonce?: Buffer;
}

function toSeconds(d: Date): bigint {
	const ms = d.getTime();
	if (!Number.isFinite(ms) || ms < 0) throw new TypeError("certificate validity needs a valid, non-negative Date");
	return BigInt(Math.floor(ms / 1000));
}

/** Signs an OpenSSH certificate. Returns the certificate blob and its `authorized_keys`-style line. */
export function signCertificate(opts: SignCertificateOptions): { blob: Buffer; line: string; certificate: SshCertificate } {
	const ca = typeof opts.caPrivateKey === "string" ? createPrivateKey(opts.caPrivateKey) : opts.caPrivateKey;
	if (ca.type !== "private" || ca.asymmetricKeyType !== "ed25519") throw new TypeError("caPrivateKey must be an ed25519 private key");
	const subject = typeof opts.publicKey === "string" ? parsePublicKeyLine(opts.publicKey) : opts.publicKey;
	const certType = CERT_TYPE_BY_KEY_TYPE[subject.type];
	if (!certType) throw new SshCertError("UNSUPPORTED_KEY_TYPE", `cannot certify key type ${subject.type}`);
	const after = toSeconds(opts.validAfter);
	const before = toSeconds(opts.validBefore);
	if (before <= after) throw new TypeError("validBefore must be after validAfter");
	const kind = opts.certType ?? SshCertType.User;
	const extensions = opts.extensions ?? (kind === SshCertType.User ? DEFAULT_USER_EXTENSIONS : {});
	for (const name of Object.keys(opts.criticalOptions ?? {})) {
		if (!KNOWN_CRITICAL_OPTIONS.includes(name)) throw new TypeError(`unknown critical option ${name}`);
	}
	const keyFields = new Reader(subject.blob);
	keyFields.text(); // skip the key type
	const body = new Writer()
		.string(certType)
		.string(opts.nonce ?? randomBytes(32))
		.raw(subject.blob.subarray(keyFields.off))
		.uint64(opts.serial ?? 0n)
		.uint32(kind)
		.string(opts.keyId)
		.string(encodeStringList(opts.principals))
		.uint64(after)
		.uint64(before)
		.string(encodeOptions(opts.criticalOptions ?? {}))
		.string(encodeOptions(extensions))
		.string(Buffer.alloc(0))
		.string(ed25519PublicBlob(ca))
		.bytes();
	const sig = sign(null, body, ca);
	const blob = new Writer().raw(body).string(new Writer().string("ssh-ed25519").string(sig).bytes()).bytes();
	return { blob, line: formatPublicKeyLine({ type: certType, blob }, opts.keyId), certificate: parseCertificate(blob) };
}

/** The call the SSH data path uses: a user certificate for `principals`. */
export function signUserCertificate(opts: Omit<SignCertificateOptions, "certType">): { blob: Buffer; line: string; certificate: SshCertificate } {
	return signCertificate({ ...opts, certType: SshCertType.User });
}

/** Parses a certificate blob or `authorized_keys`-style certificate line (no verification). */
export function parseCertificate(input: Buffer | string): SshCertificate {
	const blob = typeof input === "string" ? parsePublicKeyLine(input).blob : input;
	const r = new Reader(blob);
	const certType = r.text();
	const keyType = KEY_TYPE_BY_CERT_TYPE[certType];
	if (!keyType) throw new SshCertError("UNSUPPORTED_KEY_TYPE", `not a supported certificate type: ${certType}`);
	const nonce = r.string();
	const keyStart = r.off;
	switch (keyType) {
		case "ssh-ed25519":
			if (r.string().length !== 32) throw new SshCertError("MALFORMED", "ed25519 key must be 32 bytes");
			break;
		case "ssh-rsa":
			r.string(); // e
			r.string(); // n
			break;
		default:
			r.string(); // curve
			r.string(); // point
	}
	const keyBlob = Buffer.concat([new Writer().string(keyType).bytes(), blob.subarray(keyStart, r.off)]);
	const serial = r.uint64();
	const type = r.uint32();
	if (type !== SshCertType.User && type !== SshCertType.Host) throw new SshCertError("MALFORMED", `bad certificate type ${type}`);
	const keyId = r.text();
	const principals = decodeStringList(r.string());
	const validAfter = r.uint64();
	const validBefore = r.uint64();
	const criticalOptions = decodeOptions(r.string());
	const extensions = decodeOptions(r.string());
	r.string(); // reserved
	const signatureKey = r.string();
	const signedData = blob.subarray(0, r.off);
	const sigBlob = r.string();
	if (!r.done()) throw new SshCertError("MALFORMED", "trailing bytes after signature");
	const sr = new Reader(sigBlob);
	const signatureAlgorithm = sr.text();
	const signature = sr.string();
	return {
		certType,
		nonce,
		publicKey: { type: keyType, blob: keyBlob },
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
		signature,
		signedData,
		blob,
	};
}

export interface VerifyCertificateOptions {
	/** Trusted CA public keys (`authorized_keys` lines or blobs). */
	trustedCaKeys: (string | Buffer)[];
	/** Default: now. */
	now?: Date;
	/** If set, must be among the principals (an empty principal list matches nothing). */
	principal?: string;
	/** Default: User. */
	expectType?: SshCertType;
	/** Allowed clock skew in seconds (default 0). */
	clockToleranceSec?: number;
}

/** Parses and verifies a certificate: CA trust, signature, type, validity window, principal, critical options. */
export function verifyCertificate(input: Buffer | string | SshCertificate, opts: VerifyCertificateOptions): SshCertificate {
	const cert = Buffer.isBuffer(input) || typeof input === "string" ? parseCertificate(input) : input;
	const trusted = opts.trustedCaKeys.map((k) => (typeof k === "string" ? parsePublicKeyLine(k).blob : k));
	if (!trusted.some((t) => t.equals(cert.signatureKey))) throw new SshCertError("UNTRUSTED_CA", "certificate signed by an untrusted CA");
	if (cert.signatureAlgorithm !== "ssh-ed25519") throw new SshCertError("UNSUPPORTED_KEY_TYPE", `signature algorithm ${cert.signatureAlgorithm}`);
	const caKey = ed25519KeyFromBlob(cert.signatureKey);
	if (!verify(null, cert.signedData, caKey, cert.signature)) throw new SshCertError("BAD_SIGNATURE", "certificate signature does not verify");
	if (cert.type !== (opts.expectType ?? SshCertType.User)) throw new SshCertError("WRONG_CERT_TYPE", `certificate type ${cert.type}`);
	const now = BigInt(Math.floor((opts.now ?? new Date()).getTime() / 1000));
	const skew = BigInt(opts.clockToleranceSec ?? 0);
	if (now + skew < cert.validAfter) throw new SshCertError("NOT_YET_VALID", "certificate is not yet valid");
	if (now - skew >= cert.validBefore) throw new SshCertError("EXPIRED", "certificate has expired");
	if (opts.principal !== undefined && !cert.principals.includes(opts.principal)) {
		throw new SshCertError("PRINCIPAL_NOT_ALLOWED", `principal ${opts.principal} not in certificate`);
	}
	for (const name of Object.keys(cert.criticalOptions)) {
		if (!KNOWN_CRITICAL_OPTIONS.includes(name)) throw new SshCertError("UNKNOWN_CRITICAL_OPTION", `unknown critical option ${name}`);
	}
	return cert;
}
