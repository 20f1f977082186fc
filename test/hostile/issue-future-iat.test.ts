/**
 * Regression (found by the JWT attack corpus): a token whose `iat` lay in the future was accepted,
 * although TokenVerifier documents "nbf/iat not in the future". jose checks `iat` only when
 * `maxTokenAge` is set; the verifier now checks it itself (within the issuer's clock tolerance).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { IdentityError } from "../../gateway/identity/errors.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";

test("issue future-iat: a token issued an hour from now is refused as not-yet-valid; within tolerance it is accepted", async () => {
	const { privateKey, publicKey } = await generateKeyPair("ES256");
	const jwk = { ...(await exportJWK(publicKey)), kid: "k", alg: "ES256" };
	const v = new TokenVerifier([{ name: "t", kind: "oidc", issuer: "https://t", audiences: ["a"], jwks: { keys: [jwk] }, algorithms: ["ES256"], clockToleranceSec: 30 }]);
	const now = Math.floor(Date.now() / 1000);
	const make = (iat: number) =>
		new SignJWT({}).setProtectedHeader({ alg: "ES256", kid: "k" }).setIssuer("https://t").setAudience("a").setSubject("u").setIssuedAt(iat).setExpirationTime(now + 7200).sign(privateKey);
	await assert.rejects(v.verify(await make(now + 3600)), (e) => e instanceof IdentityError && e.code === "not-yet-valid" && /iat/.test(e.message));
	const ok = await v.verify(await make(now + 10));
	assert.equal(ok.subject, "u");
});
