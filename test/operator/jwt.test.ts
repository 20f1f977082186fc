/**
 * Token issuer: key ring rotation with overlap (table), grant-bound tokens verified by jose and by the
 * gateway's own verifier against the published JWKS.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { createLocalJWKSet, jwtVerify } from "jose";
import { type KeyRing, generateSigningKey, jwksOf, mintGrantToken, parseKeyRing, rotateKeyRing, serializeKeyRing, tokenRefreshAt } from "../../operator/credentials/jwt.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import { grantSubjectsDigest } from "../../gateway/config/canonical.ts";

const H = 3_600_000;
const policy = { rotationIntervalMs: 24 * H, overlapMs: 2 * H };

test("rotateKeyRing: schedule and overlap (table)", () => {
	const t0 = new Date("2026-01-01T00:00:00Z");
	const at = (h: number) => new Date(t0.getTime() + h * H);
	let ring: KeyRing = { keys: [] };
	const steps: [number, boolean, number][] = [
		// [hour, changed, keys in ring]
		[0, true, 1], // empty → first key
		[1, false, 1],
		[23.9, false, 1],
		[24, true, 2], // rotation: new signer, old key overlaps
		[25.9, false, 2],
		[26, true, 1], // overlap over: old key removed
		[48, true, 2],
	];
	let firstKid = "";
	for (const [h, changed, n] of steps) {
		const r = rotateKeyRing(ring, at(h), policy);
		assert.equal(r.changed, changed, `hour ${h} changed`);
		assert.equal(r.ring.keys.length, n, `hour ${h} keys`);
		if (h === 0) firstKid = r.ring.keys[0]!.kid;
		if (h === 24) assert.equal(r.ring.keys[1]!.kid, firstKid, "old key still published during overlap");
		ring = r.ring;
	}
	assert.deepEqual(parseKeyRing(serializeKeyRing(ring)), ring);
	assert.throws(() => parseKeyRing('{"version":2,"keys":[]}'));
	for (const jwk of jwksOf(ring).keys) assert.equal(jwk.d, undefined, "JWKS never carries private parts");
});

test("grant token: claims, exp capped at the grant end, verifies with jose and the gateway verifier; refused after rotation overlap", async () => {
	const now = new Date();
	let ring: KeyRing = rotateKeyRing({ keys: [] }, now, policy).ring;
	const grantEnd = new Date(now.getTime() + 10 * 60_000);
	const minted = await mintGrantToken(ring, {
		issuer: "https://drawbridge-operator.drawbridge.svc",
		audience: ["drawbridge-gateway"],
		subject: "alice",
		groups: ["oncall"],
		grant: "team/alice-orders",
		grantSubjects: grantSubjectsDigest([{ kind: "User", name: "alice" }]),
		grantExpiresAt: grantEnd,
		now,
		ttlMs: H,
	});
	assert.ok(minted.expiresAt.getTime() <= grantEnd.getTime(), "exp never past the grant's end");
	const { payload, protectedHeader } = await jwtVerify(minted.token, createLocalJWKSet(jwksOf(ring)), {
		issuer: "https://drawbridge-operator.drawbridge.svc",
		audience: "drawbridge-gateway",
	});
	assert.equal(protectedHeader.alg, "EdDSA");
	assert.equal(payload.grant, "team/alice-orders");
	assert.equal(payload.sub, "alice");
	assert.equal(payload.jti, minted.jti);
	assert.deepEqual(payload.groups, ["oncall"]);

	const gatewayIssuer = {
		name: "drawbridge",
		kind: "drawbridge" as const,
		issuer: "https://drawbridge-operator.drawbridge.svc",
		audiences: ["drawbridge-gateway"],
		jwks: jwksOf(ring),
		algorithms: ["EdDSA"],
	};
	const identity = await new TokenVerifier([gatewayIssuer]).verify(minted.token);
	assert.equal(identity.grant, "team/alice-orders");
	assert.equal(identity.grantSubjects, payload.grantSubjects);

	// After a rotation and the overlap, the old key is gone from the JWKS: the old token is refused.
	ring = rotateKeyRing(ring, new Date(now.getTime() + 24 * H), policy).ring;
	ring = rotateKeyRing(ring, new Date(now.getTime() + 27 * H), policy).ring;
	await assert.rejects(new TokenVerifier([{ ...gatewayIssuer, jwks: jwksOf(ring) }]).verify(minted.token));

	await assert.rejects(
		mintGrantToken(ring, { issuer: "i", audience: ["a"], subject: "s", grant: "a/b", grantSubjects: "sha256:x", grantExpiresAt: now, now, ttlMs: H }),
		/has ended/,
	);
	assert.equal(tokenRefreshAt(new Date(0), new Date(3 * H)).getTime(), 2 * H);
	assert.ok(generateSigningKey(now).kid.length > 8);
});
