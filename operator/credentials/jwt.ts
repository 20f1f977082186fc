/**
 * The operator as a token issuer.
 *
 * Signing keys (Ed25519, JWS `EdDSA`) live in a key ring persisted in one Kubernetes Secret. The ring
 * is rotated on a schedule: the newest key signs; older keys stay published in the JWKS for an overlap
 * period (at least the longest token lifetime) so tokens signed before a rotation keep verifying, then
 * are removed. Everything here is pure (time passed in), so rotation is tested with tables; the kube
 * module only reads and writes the serialised ring.
 *
 * Tokens are bound to one AccessGrant: `grant` = `namespace/name`, `grantSubjects` = the digest of its
 * subjects, `aud`, `iss`, `jti`, and `exp` never later than the grant's end.
 */

import { createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID } from "node:crypto";
import { SignJWT } from "jose";

export const JWT_ALGORITHM = "EdDSA" as const;

export interface SigningKey {
	kid: string;
	/** PKCS#8 PEM. */
	privateKeyPem: string;
	/** Public JWK (OKP / Ed25519) with kid, alg, use. */
	publicJwk: Record<string, string>;
	/** RFC 3339: when this key was generated (and started signing). */
	createdAt: string;
}

export interface KeyRing {
	/** Newest first; the first key signs. */
	keys: SigningKey[];
}

export interface RotationPolicy {
	/** A key signs for this long before a new one replaces it. */
	rotationIntervalMs: number;
	/** A replaced key stays in the JWKS this long (>= the longest token lifetime). */
	overlapMs: number;
}

export function generateSigningKey(now: Date): SigningKey {
	const { privateKey, publicKey } = generateKeyPairSync("ed25519");
	const jwk = publicKey.export({ format: "jwk" }) as Record<string, string>;
	const kid = `${now.toISOString().replace(/[-:.TZ]/g, "").slice(0, 14)}-${jwk.x!.slice(0, 8)}`;
	return {
		kid,
		privateKeyPem: privateKey.export({ format: "pem", type: "pkcs8" }).toString(),
		publicJwk: { kty: "OKP", crv: "Ed25519", x: jwk.x!, kid, alg: JWT_ALGORITHM, use: "sig" },
		createdAt: now.toISOString(),
	};
}

/**
 * Returns the ring as it should be at `now` and whether it changed: a new signing key when the ring is
 * empty or the current signer is older than the rotation interval; keys replaced longer ago than the
 * overlap are dropped. Deterministic except for the key material of a newly generated key.
 */
export function rotateKeyRing(ring: KeyRing, now: Date, policy: RotationPolicy, generate = generateSigningKey): { ring: KeyRing; changed: boolean } {
	const keys = [...ring.keys].sort((a, b) => Date.parse(b.createdAt) - Date.parse(a.createdAt));
	let changed = keys.length !== ring.keys.length || keys.some((k, i) => k !== ring.keys[i]);
	const t = now.getTime();
	const signer = keys[0];
	if (!signer || t - Date.parse(signer.createdAt) >= policy.rotationIntervalMs) {
		keys.unshift(generate(now));
		changed = true;
	}
	// keys[i] was replaced when keys[i-1] was created.
	const kept: SigningKey[] = [keys[0]!];
	for (let i = 1; i < keys.length; i++) {
		const replacedAt = Date.parse(keys[i - 1]!.createdAt);
		if (t - replacedAt < policy.overlapMs) kept.push(keys[i]!);
		else changed = true;
	}
	return { ring: { keys: kept }, changed };
}

/** The public JWKS (every key in the ring, signer first). */
export function jwksOf(ring: KeyRing): { keys: Record<string, string>[] } {
	return { keys: ring.keys.map((k) => ({ ...k.publicJwk })) };
}

export function serializeKeyRing(ring: KeyRing): string {
	return JSON.stringify({ version: 1, keys: ring.keys });
}

export function parseKeyRing(text: string | undefined): KeyRing {
	if (!text) return { keys: [] };
	const parsed = JSON.parse(text) as { version?: number; keys?: SigningKey[] };
	if (parsed.version !== 1 || !Array.isArray(parsed.keys)) throw new Error("signing key ring: unsupported format");
	for (const k of parsed.keys) {
		if (typeof k.kid !== "string" || typeof k.privateKeyPem !== "string" || typeof k.createdAt !== "string") {
			throw new Error("signing key ring: malformed key entry");
		}
		// Fail here rather than at signing time if the PEM is corrupt.
		createPublicKey(createPrivateKey(k.privateKeyPem));
	}
	return { keys: parsed.keys };
}

export interface GrantTokenRequest {
	issuer: string;
	audience: string[];
	/** `sub`: the user name the gateway matches against the grant's User subjects. */
	subject: string;
	groups?: string[];
	/** `namespace/name` of the grant. */
	grant: string;
	/**
	 * `grantSubjectsDigest` of the grant's subjects as compiled into the bundle: the gateway refuses the
	 * token once the grant names other subjects (a removed subject keeps no access through a copy).
	 */
	grantSubjects: string;
	grantExpiresAt: Date;
	now: Date;
	/** Token lifetime before it is capped at the grant's end. */
	ttlMs: number;
}

export interface MintedToken {
	token: string;
	jti: string;
	kid: string;
	issuedAt: Date;
	expiresAt: Date;
}

/** Signs a grant-bound token with the ring's current key. Refuses a grant already ended. */
export async function mintGrantToken(ring: KeyRing, req: GrantTokenRequest): Promise<MintedToken> {
	const signer = ring.keys[0];
	if (!signer) throw new Error("signing key ring is empty");
	const exp = Math.min(req.now.getTime() + req.ttlMs, req.grantExpiresAt.getTime());
	const expSec = Math.floor(exp / 1000);
	const iatSec = Math.floor(req.now.getTime() / 1000);
	if (expSec <= iatSec) throw new Error(`grant ${req.grant} has ended; no token minted`);
	const jti = randomUUID();
	const token = await new SignJWT({ grant: req.grant, grantSubjects: req.grantSubjects, ...(req.groups?.length ? { groups: req.groups } : {}) })
		.setProtectedHeader({ alg: JWT_ALGORITHM, kid: signer.kid, typ: "JWT" })
		.setIssuer(req.issuer)
		.setAudience(req.audience)
		.setSubject(req.subject)
		.setIssuedAt(iatSec)
		.setNotBefore(iatSec)
		.setExpirationTime(expSec)
		.setJti(jti)
		.sign(createPrivateKey(signer.privateKeyPem));
	return { token, jti, kid: signer.kid, issuedAt: new Date(iatSec * 1000), expiresAt: new Date(expSec * 1000) };
}

/**
 * When a delivered token should be replaced: after two thirds of its lifetime, or right away if it was
 * signed by a key no longer in the ring. Never after the grant's end (the token is deleted then).
 */
export function tokenRefreshAt(issuedAt: Date, expiresAt: Date): Date {
	const life = expiresAt.getTime() - issuedAt.getTime();
	return new Date(issuedAt.getTime() + Math.floor((life * 2) / 3));
}
