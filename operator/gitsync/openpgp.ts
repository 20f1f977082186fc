/**
 * Just enough OpenPGP (RFC 4880) to check that a git commit is signed by a trusted key: parse armored
 * public keys (v4 RSA and EdDSA/Ed25519 primary keys and subkeys) and verify a detached v4 binary
 * signature (what `git commit -S` writes into the `gpgsig` header) over the commit payload. Pure, node:crypto.
 *
 * Not covered (documented): key expiry and revocation signatures, subkey binding signatures (every key in
 * a trusted block is trusted as given by the administrator), v5/v6 keys, ECDSA/NIST curves, DSA. SHA-1
 * signatures are refused.
 */

import { type KeyObject, constants, createHash, createPublicKey, verify } from "node:crypto";

export type PgpErrorCode = "MALFORMED" | "UNSUPPORTED" | "NO_SIGNATURE" | "UNTRUSTED_KEY" | "BAD_SIGNATURE";

export class PgpError extends Error {
	readonly code: PgpErrorCode;
	constructor(code: PgpErrorCode, message: string) {
		super(message);
		this.name = "PgpError";
		this.code = code;
	}
}

enum PacketTag {
	Signature = 2,
	PublicKey = 6,
	PublicSubkey = 14,
}

enum PubAlgo {
	RsaEncryptSign = 1,
	RsaSign = 3,
	EdDsaLegacy = 22,
}

const HASHES: Readonly<Record<number, string>> = Object.freeze({ 8: "sha256", 9: "sha384", 10: "sha512", 11: "sha224" });
const ED25519_OID = Buffer.from([0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x0f, 0x01]);

export interface PgpPublicKey {
	/** 40 hex (v4 fingerprint, upper case). */
	fingerprint: string;
	/** Last 16 hex of the fingerprint. */
	keyId: string;
	algorithm: number;
	key: KeyObject;
}

/** Decodes ASCII armor (`-----BEGIN PGP …-----`, headers, blank line, base64, optional `=CRC`). */
export function dearmor(text: string): Buffer {
	const lines = text.replace(/\r/g, "").split("\n");
	const begin = lines.findIndex((l) => /^-----BEGIN PGP [A-Z ]+-----$/.test(l.trim()));
	if (begin < 0) throw new PgpError("MALFORMED", "no ASCII armor");
	let i = begin + 1;
	while (i < lines.length && lines[i]!.trim() !== "" && /^[A-Za-z-]+: /.test(lines[i]!)) i++;
	if (lines[i]?.trim() === "") i++;
	const body: string[] = [];
	for (; i < lines.length; i++) {
		const l = lines[i]!.trim();
		if (l.startsWith("-----END PGP")) return Buffer.from(body.join(""), "base64");
		if (l.startsWith("=") && l.length === 5) continue; // CRC-24
		body.push(l);
	}
	throw new PgpError("MALFORMED", "unterminated ASCII armor");
}

interface Packet {
	tag: number;
	body: Buffer;
}

export function parsePackets(data: Buffer): Packet[] {
	const out: Packet[] = [];
	let off = 0;
	const need = (n: number) => {
		if (off + n > data.length) throw new PgpError("MALFORMED", "truncated packet");
	};
	while (off < data.length) {
		const b = data[off++]!;
		if ((b & 0x80) === 0) throw new PgpError("MALFORMED", "bad packet header");
		let tag: number;
		let len: number;
		if (b & 0x40) {
			tag = b & 0x3f;
			need(1);
			const o1 = data[off++]!;
			if (o1 < 192) len = o1;
			else if (o1 < 224) {
				need(1);
				len = ((o1 - 192) << 8) + data[off++]! + 192;
			} else if (o1 === 255) {
				need(4);
				len = data.readUInt32BE(off);
				off += 4;
			} else throw new PgpError("UNSUPPORTED", "partial body lengths");
		} else {
			tag = (b >> 2) & 0x0f;
			const lt = b & 3;
			if (lt === 3) len = data.length - off;
			else {
				const n = [1, 2, 4][lt]!;
				need(n);
				len = n === 1 ? data[off]! : n === 2 ? data.readUInt16BE(off) : data.readUInt32BE(off);
				off += n;
			}
		}
		need(len);
		out.push({ tag, body: data.subarray(off, off + len) });
		off += len;
	}
	return out;
}

function readMpi(buf: Buffer, off: number): [Buffer, number] {
	if (off + 2 > buf.length) throw new PgpError("MALFORMED", "truncated MPI");
	const bits = buf.readUInt16BE(off);
	const n = Math.ceil(bits / 8);
	if (off + 2 + n > buf.length) throw new PgpError("MALFORMED", "truncated MPI");
	return [buf.subarray(off + 2, off + 2 + n), off + 2 + n];
}

function parseKeyPacket(body: Buffer): PgpPublicKey | undefined {
	if (body[0] !== 4) return undefined; // only v4
	const algorithm = body[5]!;
	let key: KeyObject;
	if (algorithm === PubAlgo.RsaEncryptSign || algorithm === PubAlgo.RsaSign) {
		const [n, o1] = readMpi(body, 6);
		const [e] = readMpi(body, o1);
		key = createPublicKey({ key: { kty: "RSA", n: n.toString("base64url"), e: e.toString("base64url") }, format: "jwk" });
	} else if (algorithm === PubAlgo.EdDsaLegacy) {
		const oidLen = body[6]!;
		const oid = body.subarray(7, 7 + oidLen);
		if (!oid.equals(ED25519_OID)) return undefined;
		const [q] = readMpi(body, 7 + oidLen);
		if (q.length !== 33 || q[0] !== 0x40) throw new PgpError("MALFORMED", "bad Ed25519 point");
		key = createPublicKey({ key: { kty: "OKP", crv: "Ed25519", x: q.subarray(1).toString("base64url") }, format: "jwk" });
	} else return undefined;
	const header = Buffer.alloc(3);
	header[0] = 0x99;
	header.writeUInt16BE(body.length, 1);
	const fingerprint = createHash("sha1").update(header).update(body).digest("hex").toUpperCase();
	return { fingerprint, keyId: fingerprint.slice(-16), algorithm, key };
}

/** Every usable v4 RSA / Ed25519 key (primary and subkeys) in one or more armored public key blocks. */
export function parseArmoredPublicKeys(armored: string): PgpPublicKey[] {
	const out: PgpPublicKey[] = [];
	const blocks = armored.split(/(?=-----BEGIN PGP PUBLIC KEY BLOCK-----)/).filter((b) => b.includes("-----BEGIN PGP PUBLIC KEY BLOCK-----"));
	for (const block of blocks) {
		for (const p of parsePackets(dearmor(block))) {
			if (p.tag === PacketTag.PublicKey || p.tag === PacketTag.PublicSubkey) {
				const k = parseKeyPacket(p.body);
				if (k) out.push(k);
			}
		}
	}
	return out;
}

function subpackets(buf: Buffer): { type: number; data: Buffer }[] {
	const out: { type: number; data: Buffer }[] = [];
	let off = 0;
	while (off < buf.length) {
		const o1 = buf[off]!;
		let len: number;
		if (o1 < 192) {
			len = o1;
			off += 1;
		} else if (o1 < 255) {
			len = ((o1 - 192) << 8) + buf[off + 1]! + 192;
			off += 2;
		} else {
			len = buf.readUInt32BE(off + 1);
			off += 5;
		}
		if (len < 1 || off + len > buf.length) throw new PgpError("MALFORMED", "bad signature subpacket");
		out.push({ type: buf[off]! & 0x7f, data: buf.subarray(off + 1, off + len) });
		off += len;
	}
	return out;
}

/** Verifies an armored detached signature over `data`; returns the key that made it. */
export function verifyDetachedSignature(signatureArmored: string, data: Buffer, trusted: readonly PgpPublicKey[]): PgpPublicKey {
	const sigPacket = parsePackets(dearmor(signatureArmored)).find((p) => p.tag === PacketTag.Signature);
	if (!sigPacket) throw new PgpError("NO_SIGNATURE", "no signature packet");
	const s = sigPacket.body;
	if (s[0] !== 4) throw new PgpError("UNSUPPORTED", `signature version ${s[0]}`);
	const sigType = s[1]!;
	const pubAlgo = s[2]!;
	const hashAlgo = s[3]!;
	if (sigType !== 0x00) throw new PgpError("UNSUPPORTED", `signature type ${sigType} (expected a binary document signature)`);
	const hashName = HASHES[hashAlgo];
	if (!hashName) throw new PgpError("UNSUPPORTED", `hash algorithm ${hashAlgo} (SHA-1 and unknown hashes are refused)`);
	const hashedLen = s.readUInt16BE(4);
	const hashedEnd = 6 + hashedLen;
	const hashed = s.subarray(6, hashedEnd);
	const unhashedLen = s.readUInt16BE(hashedEnd);
	const unhashed = s.subarray(hashedEnd + 2, hashedEnd + 2 + unhashedLen);
	let off = hashedEnd + 2 + unhashedLen;
	const left16 = s.subarray(off, off + 2);
	off += 2;
	const issuers = new Set<string>();
	for (const sp of [...subpackets(hashed), ...subpackets(unhashed)]) {
		if (sp.type === 16 && sp.data.length === 8) issuers.add(sp.data.toString("hex").toUpperCase());
		if (sp.type === 33 && sp.data.length === 21) issuers.add(sp.data.subarray(1).toString("hex").toUpperCase().slice(-16));
	}
	const trailer = Buffer.alloc(6);
	trailer[0] = 0x04;
	trailer[1] = 0xff;
	trailer.writeUInt32BE(hashedEnd, 2);
	const toHash = Buffer.concat([data, s.subarray(0, hashedEnd), trailer]);
	const digest = createHash(hashName).update(toHash).digest();
	if (!digest.subarray(0, 2).equals(left16)) throw new PgpError("BAD_SIGNATURE", "signature does not match the data");
	const candidates = trusted.filter((k) => k.algorithm === pubAlgo || (pubAlgo === PubAlgo.RsaEncryptSign && k.algorithm === PubAlgo.RsaSign));
	const byIssuer = candidates.filter((k) => issuers.has(k.keyId));
	if (byIssuer.length === 0) throw new PgpError("UNTRUSTED_KEY", `signed by key ${[...issuers].join(", ") || "(unknown)"}, which is not trusted`);
	for (const k of byIssuer) {
		let ok = false;
		if (pubAlgo === PubAlgo.EdDsaLegacy) {
			const [r, o1] = readMpi(s, off);
			const [sv] = readMpi(s, o1);
			const sig = Buffer.concat([Buffer.alloc(32 - r.length), r, Buffer.alloc(32 - sv.length), sv]);
			ok = verify(null, digest, k.key, sig);
		} else {
			const [m] = readMpi(s, off);
			const size = Math.ceil((k.key.asymmetricKeyDetails?.modulusLength ?? m.length * 8) / 8);
			const sig = Buffer.concat([Buffer.alloc(Math.max(0, size - m.length)), m]);
			ok = verify(hashName, toHash, { key: k.key, padding: constants.RSA_PKCS1_PADDING }, sig);
		}
		if (ok) return k;
	}
	throw new PgpError("BAD_SIGNATURE", "signature does not verify with the trusted key");
}
