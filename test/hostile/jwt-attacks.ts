/**
 * The JWT attack corpus, shared by the PostgreSQL and Kubernetes suites. Each case builds one forged
 * or otherwise unacceptable token from a fixture that can mint tokens with the real issuer keys (and
 * an attacker's own keys), and names the IdentityError code the gateway must answer with.
 */
import { createServer, type Server } from "node:http";
import { base64url, CompactSign, exportJWK, generateKeyPair, SignJWT } from "jose";
import type { JWK } from "jose";

export type SigningKey = Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];

export interface Minter {
	/** Real issuer key unless `key` is given. */
	token(
		sub: string,
		o?: {
			issuer?: "oidc" | "operator";
			iss?: string;
			aud?: string | string[];
			expSec?: number;
			nbfSec?: number;
			iatSec?: number;
			claims?: Record<string, unknown>;
			header?: Record<string, unknown>;
			key?: SigningKey;
			alg?: string;
		},
	): Promise<string>;
	oidcIssuer: string;
	oidcPublicJwk: JWK;
	/** A user with an active grant on the connection under test (the control case). */
	grantedUser: string;
	/** Key of a grant on ANOTHER connection (operator token replayed here). */
	otherConnectionGrant: string;
	/** Key of a grant on THIS connection held by someone else. */
	thisConnectionGrant: string;
}

export interface AttackCase {
	id: string;
	note: string;
	/** The password / bearer token to present. */
	make(m: Minter, jku: JkuTrap): Promise<string>;
	/** Expected failure: IdentityError code (token refused) or "no-grant" (valid token, no grant here) or "oversized". */
	expect: string;
}

/** An attacker-controlled JWKS endpoint: records whether the gateway ever fetched it. */
export interface JkuTrap {
	url: string;
	hits: number;
	attackerKey: SigningKey;
	attackerJwk: JWK;
	close(): Promise<void>;
}

export async function startJkuTrap(): Promise<JkuTrap> {
	const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
	const attackerJwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "EdDSA", use: "sig" };
	const trap = { hits: 0 } as JkuTrap;
	const server: Server = createServer((_req, res) => {
		trap.hits++;
		res.setHeader("content-type", "application/json");
		res.end(JSON.stringify({ keys: [attackerJwk] }));
	});
	await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
	const port = (server.address() as { port: number }).port;
	trap.url = `http://127.0.0.1:${port}/jwks.json`;
	trap.attackerKey = privateKey;
	trap.attackerJwk = attackerJwk;
	trap.close = () => new Promise<void>((r) => server.close(() => r()));
	return trap;
}

const enc = (o: unknown) => base64url.encode(JSON.stringify(o));
const now = () => Math.floor(Date.now() / 1000);

function payload(m: Minter, sub: string, extra: Record<string, unknown> = {}) {
	return { iss: m.oidcIssuer, aud: "drawbridge-gateway", sub, iat: now(), exp: now() + 600, ...extra };
}

export const JWT_ATTACKS: AttackCase[] = [
	{
		id: "alg-none",
		note: "unsigned token, alg none",
		expect: "algorithm-not-allowed",
		make: async (m) => `${enc({ alg: "none", typ: "JWT" })}.${enc(payload(m, m.grantedUser))}.`,
	},
	{
		id: "alg-none-case",
		note: "alg NoNe (case games)",
		expect: "algorithm-not-allowed",
		make: async (m) => `${enc({ alg: "NoNe" })}.${enc(payload(m, m.grantedUser))}.`,
	},
	{
		id: "hs256-public-key-as-secret",
		note: "HS256 signed with the issuer's public key bytes (RS/HS key confusion)",
		expect: "algorithm-not-allowed",
		make: async (m) => {
			const secret = new TextEncoder().encode(JSON.stringify(m.oidcPublicJwk));
			return new SignJWT(payload(m, m.grantedUser)).setProtectedHeader({ alg: "HS256", kid: "k1" }).sign(secret);
		},
	},
	{
		id: "hs256-raw-x-as-secret",
		note: "HS256 signed with the raw public key (x) as the HMAC secret",
		expect: "algorithm-not-allowed",
		make: async (m) => {
			const secret = base64url.decode(String(m.oidcPublicJwk.x));
			return new SignJWT(payload(m, m.grantedUser)).setProtectedHeader({ alg: "HS256", kid: "k1" }).sign(secret);
		},
	},
	{
		id: "attacker-key-same-kid",
		note: "attacker's own EdDSA key claiming the issuer's kid",
		expect: "bad-signature",
		make: async (m, t) => m.token(m.grantedUser, { key: t.attackerKey }),
	},
	{
		id: "kid-path-traversal",
		note: "kid ../../../../etc/passwd with the attacker's key",
		expect: "no-matching-key",
		make: async (m, t) => m.token(m.grantedUser, { key: t.attackerKey, header: { kid: "../../../../etc/passwd" } }),
	},
	{
		id: "kid-dev-null",
		note: "kid /dev/null (empty-key trick)",
		expect: "no-matching-key",
		make: async (m, t) => m.token(m.grantedUser, { key: t.attackerKey, header: { kid: "/dev/null" } }),
	},
	{
		id: "kid-sql-injection",
		note: "kid with SQL injection",
		expect: "no-matching-key",
		make: async (m, t) => m.token(m.grantedUser, { key: t.attackerKey, header: { kid: "x' UNION SELECT 'secret" } }),
	},
	{
		id: "kid-real-key-bad-kid",
		note: "real key, but a traversal kid: the kid selects no key",
		expect: "no-matching-key",
		make: async (m) => m.token(m.grantedUser, { header: { kid: "../k1" } }),
	},
	{
		id: "jku-injection",
		note: "jku pointing at the attacker's JWKS, signed by the attacker",
		expect: "bad-signature",
		make: async (m, t) => m.token(m.grantedUser, { key: t.attackerKey, header: { jku: t.url } }),
	},
	{
		id: "x5u-injection",
		note: "x5u pointing at the attacker",
		expect: "bad-signature",
		make: async (m, t) => m.token(m.grantedUser, { key: t.attackerKey, header: { x5u: t.url } }),
	},
	{
		id: "embedded-jwk",
		note: "attacker's public key embedded in the jwk header",
		expect: "bad-signature",
		make: async (m, t) => m.token(m.grantedUser, { key: t.attackerKey, header: { jwk: { kty: t.attackerJwk.kty, crv: t.attackerJwk.crv, x: t.attackerJwk.x } } }),
	},
	{
		id: "signature-bit-flip",
		note: "valid token with one signature bit flipped",
		expect: "bad-signature",
		make: async (m) => {
			const tok = await m.token(m.grantedUser);
			const [h, p, s] = tok.split(".") as [string, string, string];
			const sig = base64url.decode(s);
			sig[0] = (sig[0] ?? 0) ^ 0x01;
			return `${h}.${p}.${base64url.encode(sig)}`;
		},
	},
	{
		id: "payload-swap",
		note: "real signature, payload edited to another subject",
		expect: "bad-signature",
		make: async (m) => {
			const tok = await m.token("nobody");
			const [h, , s] = tok.split(".") as [string, string, string];
			return `${h}.${enc(payload(m, m.grantedUser))}.${s}`;
		},
	},
	{
		id: "hs256-jwks-json-as-secret",
		note: "HS256 signed with the issuer's whole JWKS document as the HMAC secret",
		expect: "algorithm-not-allowed",
		make: async (m) => {
			const secret = new TextEncoder().encode(JSON.stringify({ keys: [m.oidcPublicJwk] }));
			return new SignJWT(payload(m, m.grantedUser)).setProtectedHeader({ alg: "HS256", kid: "k1" }).sign(secret);
		},
	},
	{
		id: "es256k",
		note: "alg ES256K (secp256k1, not the issuer's curve), any signature",
		expect: "algorithm-not-allowed",
		make: async (m) => `${enc({ alg: "ES256K", kid: "k1" })}.${enc(payload(m, m.grantedUser))}.${base64url.encode(new Uint8Array(64))}`,
	},
	{
		id: "crit-unknown-extension",
		note: "a crit header naming an extension the verifier does not implement (refused before the signature, RFC 7515 4.1.11; with the issuer's own key in gateway/identity/verify.test.ts)",
		expect: "malformed",
		make: async (m, t) =>
			new CompactSign(new TextEncoder().encode(JSON.stringify(payload(m, m.grantedUser))))
				.setProtectedHeader({ alg: "EdDSA", kid: "k1", crit: ["x-drawbridge-bypass"], "x-drawbridge-bypass": true })
				.sign(t.attackerKey, { crit: { "x-drawbridge-bypass": true } }),
	},
	{
		id: "ten-year-token",
		note: "a real key, valid for ten years (no lifetime cap before this round)",
		expect: "lifetime-too-long",
		make: async (m) => m.token(m.grantedUser, { expSec: 10 * 365 * 86_400 }),
	},
	{
		id: "backdated-long-token",
		note: "issued two days ago, still unexpired: a leaked long-lived token",
		expect: "lifetime-too-long",
		make: async (m) => m.token(m.grantedUser, { iatSec: -2 * 86_400, expSec: 600 }),
	},
	{ id: "expired", note: "exp an hour ago", expect: "expired", make: async (m) => m.token(m.grantedUser, { expSec: -3600 }) },
	{ id: "future-nbf", note: "nbf in an hour", expect: "not-yet-valid", make: async (m) => m.token(m.grantedUser, { nbfSec: 3600 }) },
	{ id: "future-iat", note: "iat in an hour", expect: "not-yet-valid", make: async (m) => m.token(m.grantedUser, { iatSec: 3600 }) },
	{
		id: "wrong-issuer",
		note: "iss of an issuer the gateway does not trust",
		expect: "unknown-issuer",
		make: async (m) => m.token(m.grantedUser, { iss: "https://evil.example" }),
	},
	{
		id: "issuer-trailing-slash",
		note: "iss with a trailing slash (exact match required)",
		expect: "unknown-issuer",
		make: async (m) => m.token(m.grantedUser, { iss: `${m.oidcIssuer}/` }),
	},
	{
		id: "issuer-case",
		note: "iss in upper case (exact, case-sensitive match required)",
		expect: "unknown-issuer",
		make: async (m) => m.token(m.grantedUser, { iss: m.oidcIssuer.toUpperCase() }),
	},
	{ id: "wrong-audience", note: "aud for another service", expect: "audience-mismatch", make: async (m) => m.token(m.grantedUser, { aud: "kubernetes" }) },
	{
		id: "grant-claim-on-oidc-token",
		note: "OIDC token (no grant for its subject) carrying a forged grant claim",
		expect: "no-grant",
		make: async (m) => m.token("mallory", { claims: { grant: m.thisConnectionGrant } }),
	},
	{
		id: "operator-token-other-connection",
		note: "operator token minted for a grant on another connection",
		expect: "no-grant",
		make: async (m) => m.token(m.grantedUser, { issuer: "operator", claims: { grant: m.otherConnectionGrant } }),
	},
	{
		id: "operator-token-unknown-grant",
		note: "operator token for a grant that does not exist",
		expect: "no-grant",
		make: async (m) => m.token(m.grantedUser, { issuer: "operator", claims: { grant: "team/../kube-system/admin" } }),
	},
	{ id: "truncated", note: "token cut in half", expect: "malformed", make: async (m) => (await m.token(m.grantedUser)).slice(0, 60) },
	{
		id: "truncated-signature",
		note: "last 10 characters of the signature missing",
		expect: "bad-signature|malformed",
		make: async (m) => (await m.token(m.grantedUser)).slice(0, -10),
	},
	{ id: "garbage", note: "not a JWT", expect: "malformed", make: async () => "hunter2" },
	{ id: "garbage-dots", note: "three dots", expect: "malformed", make: async () => "..." },
	{ id: "garbage-json", note: "header that is not JSON", expect: "malformed", make: async () => `${base64url.encode("{not json")}.${enc({})}.AAAA` },
	{
		id: "payload-array",
		note: "payload is a JSON array",
		expect: "malformed",
		make: async () => `${enc({ alg: "EdDSA", kid: "k1" })}.${base64url.encode("[1,2,3]")}.AAAA`,
	},
	{
		id: "oversized-token",
		note: "a 200 KiB token (padded claim)",
		expect: "bad-signature|malformed|oversized",
		make: async (m) => {
			const tok = await m.token(m.grantedUser, { claims: { pad: "A".repeat(200 * 1024) } });
			// Flip a real signature bit (the last base64url character may carry only padding bits).
			const [h, p, sig] = tok.split(".") as [string, string, string];
			const bytes = base64url.decode(sig);
			bytes[5] = (bytes[5] ?? 0) ^ 0x10;
			return `${h}.${p}.${base64url.encode(bytes)}`;
		},
	},
];

/** The JSON of a JWT header would never contain these: messages must not echo the token. */
export function tokenEchoed(message: string, token: string): boolean {
	if (token.length < 16) return false;
	const parts = token.split(".").filter((p) => p.length >= 16);
	return parts.some((p) => message.includes(p));
}
