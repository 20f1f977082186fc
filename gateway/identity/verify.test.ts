import assert from "node:assert/strict";
import { test } from "node:test";
import { exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";
import type { BundleGrant, Identity, IssuerConfig } from "../config/bundle.ts";
import { IDENTITY_ERROR_CATALOGUE, IdentityError, type IdentityErrorCode } from "./errors.ts";
import { findGrants, noGrantMessage, subjectMatches } from "./grants.ts";
import { TokenVerifier } from "./verify.ts";

const ISS = "https://drawbridge.test/operator";

async function issuer(alg: "EdDSA" | "ES256" = "EdDSA") {
	const { privateKey, publicKey } = await generateKeyPair(alg, { extractable: true });
	const jwk: JWK = { ...(await exportJWK(publicKey)), kid: "k1", alg, use: "sig" };
	const config: IssuerConfig = {
		name: "operator",
		kind: "drawbridge",
		issuer: ISS,
		audiences: ["drawbridge"],
		jwks: { keys: [jwk as Record<string, unknown>] },
		algorithms: [alg],
	};
	const sign = (claims: Record<string, unknown>, opts: { exp?: string | number; nbf?: string | number; aud?: string; iss?: string } = {}) => {
		let jwt = new SignJWT(claims)
			.setProtectedHeader({ alg, kid: "k1" })
			.setIssuer(opts.iss ?? ISS)
			.setAudience(opts.aud ?? "drawbridge")
			.setSubject("user:alice")
			.setIssuedAt()
			.setExpirationTime(opts.exp ?? "5m");
		if (opts.nbf !== undefined) jwt = jwt.setNotBefore(opts.nbf);
		return jwt.sign(privateKey);
	};
	return { config, sign, privateKey };
}

async function rejects(p: Promise<unknown>, code: IdentityErrorCode) {
	await assert.rejects(p, (err: unknown) => {
		assert.ok(err instanceof IdentityError, `expected IdentityError, got ${String(err)}`);
		assert.equal(err.code, code, err.message);
		return true;
	});
}

test("a valid operator token maps to an identity bound to its grant", async () => {
	const { config, sign } = await issuer();
	const v = new TokenVerifier([config]);
	const id = await v.verify(await sign({ grant: "team/ci-ro", groups: ["ci"] }));
	assert.equal(id.subject, "user:alice");
	assert.equal(id.grant, "team/ci-ro");
	assert.deepEqual(id.groups, ["ci"]);
	assert.equal(id.issuerKind, "drawbridge");
});

test("expired, future nbf, wrong audience, wrong issuer, bad signature and garbage are refused with precise codes", async () => {
	const { config, sign } = await issuer();
	const other = await issuer();
	const v = new TokenVerifier([config]);
	await rejects(v.verify(await sign({ grant: "a/b" }, { exp: Math.floor(Date.now() / 1000) - 120 })), "expired");
	await rejects(v.verify(await sign({ grant: "a/b" }, { nbf: Math.floor(Date.now() / 1000) + 600 })), "not-yet-valid");
	await rejects(v.verify(await sign({ grant: "a/b" }, { aud: "someone-else" })), "audience-mismatch");
	await rejects(v.verify(await sign({ grant: "a/b" }, { iss: "https://evil.example" })), "unknown-issuer");
	await rejects(v.verify(await other.sign({ grant: "a/b" })), "bad-signature");
	await rejects(v.verify("not-a-token"), "malformed");
	await rejects(v.verify(await sign({})), "claim-invalid");
});

test("alg none and HMAC key confusion are refused before any signature check", async () => {
	const { config } = await issuer();
	const v = new TokenVerifier([config]);
	const b64 = (o: unknown) => Buffer.from(JSON.stringify(o)).toString("base64url");
	const claims = { iss: ISS, aud: "drawbridge", sub: "user:alice", grant: "a/b", exp: Math.floor(Date.now() / 1000) + 60 };
	await rejects(v.verify(`${b64({ alg: "none" })}.${b64(claims)}.`), "algorithm-not-allowed");
	// HS256 signed with the issuer's public key bytes as the secret: the classic confusion attack.
	const pub = JSON.stringify(config.jwks?.keys[0]);
	const hs = await new SignJWT(claims).setProtectedHeader({ alg: "HS256", kid: "k1" }).sign(new TextEncoder().encode(pub));
	await rejects(v.verify(hs), "algorithm-not-allowed");
});

test("an issuer configured with only HMAC algorithms is a programming error", () => {
	assert.throws(
		() => new TokenVerifier([{ name: "x", kind: "oidc", issuer: "x", audiences: ["a"], jwks: { keys: [] }, algorithms: ["HS256"] }]),
		TypeError,
	);
});

test("every identity error code has a catalogue entry", () => {
	const codes: IdentityErrorCode[] = [
		"malformed", "unknown-issuer", "algorithm-not-allowed", "bad-signature", "expired",
		"not-yet-valid", "audience-mismatch", "claim-invalid", "jwks-unavailable", "no-matching-key",
	];
	assert.deepEqual(Object.keys(IDENTITY_ERROR_CATALOGUE).sort(), [...codes].sort());
});

const base: Identity = {
	issuer: "https://oidc.test",
	issuerKind: "oidc",
	subject: "123",
	username: "alice@example.com",
	groups: ["support-leads"],
	tokenExpiresAt: new Date(Date.now() + 60_000),
	claims: { repository: "org/app", ref: "refs/heads/main" },
};

function grant(partial: Partial<BundleGrant>): BundleGrant {
	return {
		key: "team/g",
		name: "g",
		namespace: "team",
		connection: "orders-prod",
		subjects: [{ kind: "User", name: "alice@example.com" }],
		notBefore: new Date(Date.now() - 60_000).toISOString(),
		expiresAt: new Date(Date.now() + 60_000).toISOString(),
		approvers: { subjects: [], minApprovals: 1 },
		origin: {},
		...partial,
	};
}

test("subject matchers: users, groups, service accounts, claims", () => {
	assert.ok(subjectMatches(base, { kind: "User", name: "alice@example.com" }));
	assert.ok(!subjectMatches(base, { kind: "User", name: "bob@example.com" }));
	assert.ok(subjectMatches(base, { kind: "Group", name: "support-leads" }));
	assert.ok(subjectMatches(base, { kind: "Claims", issuer: "https://oidc.test", claims: { repository: "org/app" } }));
	assert.ok(!subjectMatches(base, { kind: "Claims", issuer: "https://other", claims: { repository: "org/app" } }));
	assert.ok(!subjectMatches(base, { kind: "Claims", issuer: "https://oidc.test", claims: {} }));
	const sa: Identity = { ...base, username: "system:serviceaccount:ci:deployer", serviceAccount: { namespace: "ci", name: "deployer" } };
	assert.ok(subjectMatches(sa, { kind: "ServiceAccount", namespace: "ci", name: "deployer" }));
	assert.ok(!subjectMatches(sa, { kind: "ServiceAccount", namespace: "ci", name: "other" }));
	assert.ok(!subjectMatches(sa, { kind: "User", name: "system:serviceaccount:ci:deployer" }));
});

test("grant lookup: only valid windows; bound tokens unlock only their grant; messages name the identity", () => {
	const now = new Date();
	const active = grant({ key: "team/a" });
	const expired = grant({ key: "team/b", expiresAt: new Date(now.getTime() - 1000).toISOString() });
	const otherConn = grant({ key: "team/c", connection: "tickets-prod" });
	const r = findGrants(base, "orders-prod", [active, expired, otherConn], now);
	assert.deepEqual(r.active.map((g) => g.key), ["team/a"]);
	assert.deepEqual(r.inactive.map((i) => i.grant.key), ["team/b"]);
	const bound = findGrants({ ...base, grant: "team/b" }, "orders-prod", [active, expired], now);
	assert.equal(bound.active.length, 0);
	assert.match(noGrantMessage(base, "orders-prod", bound), /user:alice@example.com.*team\/b expired at/);
	assert.match(noGrantMessage(base, "x", findGrants(base, "x", [], now)), /no grant matches/);
});
