import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { createRemoteJWKSet, decodeJwt, jwtVerify } from "jose";
import { type OidcHandle, printLogsOnFailure, startOidc } from "../env/index.ts";

let op: OidcHandle;
before(async () => {
	op = await startOidc();
});
after(async () => {
	await op?.stop();
});
printLogsOnFailure(() => [["oidc", op]]);

test("discovery document names the issuer and a JWKS with a signing key", async () => {
	const disc = (await (await fetch(op.discoveryUrl)).json()) as Record<string, unknown>;
	assert.equal(disc.issuer, op.issuer);
	assert.equal(disc.jwks_uri, op.jwksUri);
	const jwks = (await (await fetch(String(disc.jwks_uri))).json()) as { keys: { kty: string; d?: string }[] };
	assert.ok(jwks.keys.length >= 1);
	assert.ok(jwks.keys.every((k) => k.d === undefined), "no private parts published");
});

test("an ID token with groups verifies against the served JWKS", async () => {
	const disc = (await (await fetch(op.discoveryUrl)).json()) as { issuer: string; jwks_uri: string };
	const token = await op.idToken("alice");
	const { payload } = await jwtVerify(token, createRemoteJWKSet(new URL(disc.jwks_uri)), {
		issuer: disc.issuer,
		audience: "drawbridge",
	});
	assert.equal(payload.sub, "alice");
	assert.equal(payload.email, "alice@example.com");
	assert.deepEqual(payload.groups, ["platform-admins", "support-leads"]);
});

test("audience, groups and lifetime can be chosen per token", async () => {
	const token = await op.idToken("bob", { audience: "drawbridge-gateway", groups: ["data-team"], expiresIn: 120 });
	const jwks = createRemoteJWKSet(new URL(op.jwksUri));
	const { payload } = await jwtVerify(token, jwks, { issuer: op.issuer, audience: "drawbridge-gateway" });
	assert.deepEqual(payload.groups, ["data-team"]);
	assert.equal((payload.exp ?? 0) - (payload.iat ?? 0), 120);
	await assert.rejects(jwtVerify(token, jwks, { issuer: op.issuer, audience: "drawbridge" }), /aud/);
	// Overrides do not leak into the next token.
	const again = decodeJwt(await op.idToken("bob"));
	assert.deepEqual(again.groups, ["developers"]);
});

test("a tampered token does not verify", async () => {
	const token = await op.idToken("sam");
	const [h, p, s] = token.split(".");
	const claims = JSON.parse(Buffer.from(p!, "base64url").toString());
	claims.groups = ["platform-admins"];
	const forged = `${h}.${Buffer.from(JSON.stringify(claims)).toString("base64url")}.${s}`;
	await assert.rejects(jwtVerify(forged, createRemoteJWKSet(new URL(op.jwksUri)), { issuer: op.issuer }));
});
