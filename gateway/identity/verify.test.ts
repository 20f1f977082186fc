import assert from "node:assert/strict";
import { test } from "node:test";
import { CompactSign, exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";
import type { BundleGrant, Identity, IssuerConfig } from "../config/bundle.ts";
import { grantSubjectsDigest } from "../config/canonical.ts";
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

test("token lifetime is capped per issuer: exp - iat, or exp - now without iat (red-team round)", async () => {
	const { config, privateKey } = await issuer();
	const now = Math.floor(Date.now() / 1000);
	const mint = (claims: Record<string, unknown>) =>
		new SignJWT({ iss: ISS, aud: "drawbridge", sub: "user:alice", grant: "a/b", ...claims }).setProtectedHeader({ alg: "EdDSA", kid: "k1" }).sign(privateKey);
	const v = new TokenVerifier([config]);
	// default one day: a ten-year token was accepted before
	await rejects(v.verify(await mint({ iat: now, exp: now + 10 * 365 * 86_400 })), "lifetime-too-long");
	await rejects(v.verify(await mint({ exp: now + 2 * 86_400 })), "lifetime-too-long");
	await v.verify(await mint({ iat: now, exp: now + 86_400 }));
	await v.verify(await mint({ exp: now + 3600 }));
	const err = await v.verify(await mint({ iat: now, exp: now + 90 * 86_400 })).catch((e: Error) => e);
	assert.match(String((err as Error).message), /valid for 2160 h .* at most 24 h .*maxTokenLifetimeSec/);
	// per issuer
	const short = new TokenVerifier([{ ...config, maxTokenLifetimeSec: 600 }]);
	await rejects(short.verify(await mint({ iat: now, exp: now + 3600 })), "lifetime-too-long");
	await short.verify(await mint({ iat: now, exp: now + 600 }));
	const long = new TokenVerifier([{ ...config, maxTokenLifetimeSec: 30 * 86_400 }]);
	await long.verify(await mint({ iat: now, exp: now + 7 * 86_400 }));
});

test("a kid present in two issuers' JWKS: the token's iss picks the keys, so issuer B's key never verifies a token of issuer A", async () => {
	const a = await issuer("ES256");
	const b = await issuer("ES256");
	const configB: IssuerConfig = { ...b.config, name: "other", issuer: "https://other.test", kind: "oidc" };
	const v = new TokenVerifier([a.config, configB]);
	const now = Math.floor(Date.now() / 1000);
	// claims issuer A, signed with B's key under the kid both publish
	const forged = await new SignJWT({ iss: ISS, aud: "drawbridge", sub: "user:alice", grant: "a/b", iat: now, exp: now + 60 })
		.setProtectedHeader({ alg: "ES256", kid: "k1" })
		.sign(b.privateKey);
	await rejects(v.verify(forged), "bad-signature");
	// without a kid, only issuer A's keys are tried
	const noKid = await new SignJWT({ iss: ISS, aud: "drawbridge", sub: "user:alice", grant: "a/b", iat: now, exp: now + 60 })
		.setProtectedHeader({ alg: "ES256" })
		.sign(b.privateKey);
	await rejects(v.verify(noKid), "bad-signature");
	const good = await new SignJWT({ iss: ISS, aud: "drawbridge", sub: "user:alice", grant: "a/b", iat: now, exp: now + 60 })
		.setProtectedHeader({ alg: "ES256" })
		.sign(a.privateKey);
	assert.equal((await v.verify(good)).issuer, ISS);
});

test("issuer limits are bounded: clock tolerance at most 300 s, lifetime positive", () => {
	const base: IssuerConfig = { name: "x", kind: "oidc", issuer: "x", audiences: ["a"], jwks: { keys: [] }, algorithms: ["ES256"] };
	assert.throws(() => new TokenVerifier([{ ...base, clockToleranceSec: 301 }]), /clockToleranceSec/);
	assert.throws(() => new TokenVerifier([{ ...base, clockToleranceSec: -1 }]), /clockToleranceSec/);
	assert.throws(() => new TokenVerifier([{ ...base, maxTokenLifetimeSec: 0 }]), /maxTokenLifetimeSec/);
	new TokenVerifier([{ ...base, clockToleranceSec: 300, maxTokenLifetimeSec: 60 }]);
});

test("crit naming an unknown extension is refused even when signed with the issuer's own key", async () => {
	const { config, privateKey } = await issuer();
	const now = Math.floor(Date.now() / 1000);
	const claims = { iss: ISS, aud: "drawbridge", sub: "user:alice", grant: "a/b", iat: now, exp: now + 60 };
	const tok = await new CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
		.setProtectedHeader({ alg: "EdDSA", kid: "k1", crit: ["x-ext"], "x-ext": 1 })
		.sign(privateKey, { crit: { "x-ext": true } });
	await rejects(new TokenVerifier([config]).verify(tok), "malformed");
});

test("aud may be an array: accepted when it contains one of the issuer's audiences (RFC 7519 4.1.3)", async () => {
	const { config, privateKey } = await issuer();
	const now = Math.floor(Date.now() / 1000);
	const mint = (aud: string[]) =>
		new SignJWT({ iss: ISS, aud, sub: "user:alice", grant: "a/b", iat: now, exp: now + 60 }).setProtectedHeader({ alg: "EdDSA", kid: "k1" }).sign(privateKey);
	const v = new TokenVerifier([config]);
	await v.verify(await mint(["kubernetes", "drawbridge"]));
	await rejects(v.verify(await mint(["kubernetes", "Drawbridge", "drawbridge/"])), "audience-mismatch");
	await rejects(v.verify(await mint([])), "audience-mismatch");
});

test("legacy secret-based service-account tokens (no exp, iss kubernetes/serviceaccount) are refused", async () => {
	const { privateKey, publicKey } = await generateKeyPair("RS256", { extractable: true });
	const jwk = { ...(await exportJWK(publicKey)), kid: "sa1", alg: "RS256" };
	const kube: IssuerConfig = {
		name: "kubernetes",
		kind: "kubernetes",
		issuer: "https://kubernetes.default.svc",
		audiences: ["drawbridge"],
		jwks: { keys: [jwk as Record<string, unknown>] },
		algorithms: ["RS256"],
	};
	const v = new TokenVerifier([kube]);
	const legacyClaims = {
		"kubernetes.io/serviceaccount/namespace": "ci",
		"kubernetes.io/serviceaccount/service-account.name": "deployer",
		sub: "system:serviceaccount:ci:deployer",
	};
	// the legacy issuer is not the cluster's issuer
	const legacy = await new SignJWT({ ...legacyClaims, iss: "kubernetes/serviceaccount" }).setProtectedHeader({ alg: "RS256", kid: "sa1" }).sign(privateKey);
	await rejects(v.verify(legacy), "unknown-issuer");
	// even re-issued under the configured issuer, a token without exp is refused
	const noExp = await new SignJWT({ ...legacyClaims, iss: kube.issuer, aud: "drawbridge" }).setProtectedHeader({ alg: "RS256", kid: "sa1" }).sign(privateKey);
	await rejects(v.verify(noExp), "claim-invalid");
	// a kubernetes-issuer token whose sub is not a service account (system:kube-controller-manager) is refused
	const now = Math.floor(Date.now() / 1000);
	const spoof = await new SignJWT({ iss: kube.issuer, aud: "drawbridge", sub: "system:kube-controller-manager", iat: now, exp: now + 600 })
		.setProtectedHeader({ alg: "RS256", kid: "sa1" })
		.sign(privateKey);
	await rejects(v.verify(spoof), "claim-invalid");
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
		"lifetime-too-long",
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
	const bound = findGrants({ ...base, grant: "team/b", grantSubjects: grantSubjectsDigest(expired.subjects) }, "orders-prod", [active, expired], now);
	assert.equal(bound.active.length, 0);
	assert.match(noGrantMessage(base, "orders-prod", bound), /user:alice@example.com.*team\/b expired at/);
	assert.match(noGrantMessage(base, "x", findGrants(base, "x", [], now)), /no grant matches/);
});
