/**
 * The gateway's recording key: signs every session manifest (JWS, EdDSA over Ed25519 by default,
 * ES256 accepted). The private key is a JWK file the gateway reads once at start (a Kubernetes Secret
 * in a cluster; generated on first start in standalone mode). The public half is published as
 * `recordings/keys/<kid>.jwk` in the store and served by the admin endpoint `GET /recordings/keys`.
 * `kid` is the RFC 7638 JWK thumbprint, so a key id cannot be reused for a different key.
 */
import { readFile } from "node:fs/promises";
import { type CryptoKey, calculateJwkThumbprint, exportJWK, generateKeyPair, importJWK, type JWK } from "jose";
import { RecordingError } from "./errors.ts";
import { writeFileDurable } from "./store.ts";

export type RecordingKeyAlg = "EdDSA" | "ES256";

export interface RecordingKey {
	kid: string;
	alg: RecordingKeyAlg;
	privateKey: CryptoKey;
	/** Public JWK with `kid`, `alg` and `use: "sig"`. */
	publicJwk: JWK;
}

/** Trusted public keys by kid, for verification. */
export type PublicKeySet = Map<string, { alg: RecordingKeyAlg; key: CryptoKey; jwk: JWK }>;

function algOf(jwk: JWK): RecordingKeyAlg {
	if (jwk.kty === "OKP" && jwk.crv === "Ed25519") return "EdDSA";
	if (jwk.kty === "EC" && jwk.crv === "P-256") return "ES256";
	throw new RecordingError("CONFIG", `recording key must be Ed25519 (OKP) or P-256 (EC), got kty=${jwk.kty} crv=${jwk.crv}`);
}

function publicPart(jwk: JWK): JWK {
	const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, oth: _oth, key_ops: _ops, ext: _ext, ...pub } = jwk;
	return pub;
}

export async function recordingKeyFromJwk(jwk: JWK): Promise<RecordingKey> {
	if (!jwk.d) throw new RecordingError("CONFIG", "recording key JWK has no private part (`d`)");
	const alg = algOf(jwk);
	const pub = publicPart(jwk);
	const kid = await calculateJwkThumbprint(pub, "sha256");
	const privateKey = (await importJWK({ ...jwk, alg }, alg)) as CryptoKey;
	return { kid, alg, privateKey, publicJwk: { ...pub, kid, alg, use: "sig" } };
}

export async function generateRecordingKey(alg: RecordingKeyAlg = "EdDSA"): Promise<{ key: RecordingKey; privateJwk: JWK }> {
	const pair = await generateKeyPair(alg === "EdDSA" ? "Ed25519" : "ES256", { extractable: true });
	const privateJwk = await exportJWK(pair.privateKey);
	return { key: await recordingKeyFromJwk(privateJwk), privateJwk };
}

/**
 * Read the private JWK at `path`; when `createIfMissing` (standalone mode) and the file does not
 * exist, generate an Ed25519 key and write it with mode 0600.
 */
export async function loadRecordingKey(path: string, createIfMissing = false): Promise<RecordingKey> {
	let text: string;
	try {
		text = await readFile(path, "utf8");
	} catch (e) {
		if ((e as NodeJS.ErrnoException).code === "ENOENT" && createIfMissing) {
			const { key, privateJwk } = await generateRecordingKey();
			await writeFileDurable(path, Buffer.from(`${JSON.stringify(privateJwk)}\n`));
			const { chmod } = await import("node:fs/promises");
			await chmod(path, 0o600);
			return key;
		}
		throw new RecordingError("CONFIG", `cannot read recording key ${path}: ${(e as Error).message}`, { cause: e });
	}
	let jwk: JWK;
	try {
		jwk = JSON.parse(text) as JWK;
	} catch {
		throw new RecordingError("CONFIG", `recording key ${path} is not a JSON Web Key`);
	}
	return recordingKeyFromJwk(jwk);
}

/**
 * Build a trusted key set from public JWKs. `kid` is the key's RFC 7638 thumbprint, computed when
 * absent; a JWK claiming any other kid is refused (RecordingError CONFIG): otherwise a key published
 * under another key's kid would take its place in the set.
 */
export async function publicKeySet(jwks: JWK[]): Promise<PublicKeySet> {
	const set: PublicKeySet = new Map();
	for (const raw of jwks) {
		const jwk = publicPart(raw);
		const alg = algOf(jwk);
		const kid = await calculateJwkThumbprint(jwk, "sha256");
		if (jwk.kid !== undefined && jwk.kid !== kid) {
			throw new RecordingError("CONFIG", `recording key ${JSON.stringify(jwk.kid)} is not its RFC 7638 thumbprint (${kid}): refused`);
		}
		const key = (await importJWK({ ...jwk, alg }, alg)) as CryptoKey;
		set.set(kid, { alg, key, jwk: { ...jwk, kid, alg } });
	}
	return set;
}

/** The public JWKs in a file holding one JWK or a JWKS (`{"keys": [...]}`); private parts are dropped. */
export async function readPublicJwksFile(path: string): Promise<JWK[]> {
	let parsed: unknown;
	try {
		parsed = JSON.parse(await readFile(path, "utf8"));
	} catch (e) {
		throw new RecordingError("CONFIG", `cannot read recording public keys ${path}: ${(e as Error).message}`, { cause: e });
	}
	const list = parsed && typeof parsed === "object" && Array.isArray((parsed as { keys?: unknown }).keys) ? (parsed as { keys: JWK[] }).keys : [parsed as JWK];
	const jwks = list.map(publicPart);
	await publicKeySet(jwks); // every key must be usable and honestly named
	return jwks;
}

/**
 * The recording keys a gateway's viewer trusts and serves at /api/v1/recordings/keys.
 * Pinned (`pinned` given, from --recording-trusted-keys-file): this gateway's key and the pinned ones,
 * never a key found only in the bucket. Otherwise: the keys published in the bucket plus this
 * gateway's own; those are only as trustworthy as the bucket's writers (docs/recording-format.md).
 */
export async function viewerRecordingKeys(own: RecordingKey, pinned: JWK[] | undefined, published: () => Promise<JWK[]>): Promise<JWK[]> {
	const base = pinned ?? (await published().catch(() => []));
	const out = base.filter((k, i) => base.findIndex((o) => o.kid === k.kid) === i);
	return out.some((k) => k.kid === own.kid) ? out : [...out, own.publicJwk];
}
