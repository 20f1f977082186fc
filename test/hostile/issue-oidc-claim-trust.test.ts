/**
 * Regression (red-team of identity verification): three claims of a correctly signed OIDC token were
 * trusted although the issuer does not vouch for them the way the gateway used them.
 *
 * 1. `email` as the user name while the token says `email_verified: false`: an IdP that lets anyone
 *    register an unverified address (most do) let mallory become `boss@example.com`, matching that
 *    user's grants and approver entries. Refused now when `email_verified` is present and not `true`
 *    (the Kubernetes apiserver's rule for the same claim).
 * 2. a `sub` that is not a non-empty string (`{}`, `12`, `""`) became the subject `[object Object]`,
 *    `12` or `""`: distinct users collided on one subject (approval reuse and self-approval compare
 *    issuer+subject). RFC 7519 makes `sub` a string; anything else is refused.
 * 3. groups in the reserved `system:` namespace from an OIDC groups claim (`system:serviceaccounts:ci`,
 *    `system:masters`) matched grant and approver subjects written for Kubernetes service accounts.
 *    Only Kubernetes-issued identities carry `system:` groups now; an OIDC token's are dropped.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { IdentityError } from "../../gateway/identity/errors.ts";
import { findGrants } from "../../gateway/identity/grants.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import type { BundleGrant } from "../../gateway/config/bundle.ts";

async function setup(usernameClaim?: string) {
	const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
	const jwk = { ...(await exportJWK(publicKey)), kid: "k", alg: "ES256" };
	const v = new TokenVerifier([
		{ name: "idp", kind: "oidc", issuer: "https://idp.test", audiences: ["drawbridge"], jwks: { keys: [jwk] }, algorithms: ["ES256"], ...(usernameClaim ? { usernameClaim } : {}) },
	]);
	const now = Math.floor(Date.now() / 1000);
	const sign = (claims: Record<string, unknown>) =>
		new SignJWT({ iss: "https://idp.test", aud: "drawbridge", sub: "u-123", iat: now, exp: now + 600, ...claims })
			.setProtectedHeader({ alg: "ES256", kid: "k" })
			.sign(privateKey);
	return { v, sign };
}

const refused = (code: string, re: RegExp) => (e: unknown) => e instanceof IdentityError && e.code === code && re.test(e.message);

test("issue oidc-claim-trust: an unverified email is not a user name", async () => {
	const { v, sign } = await setup("email");
	await assert.rejects(v.verify(await sign({ email: "boss@example.com", email_verified: false })), refused("claim-invalid", /email_verified/));
	await assert.rejects(v.verify(await sign({ email: "boss@example.com", email_verified: "true" })), refused("claim-invalid", /email_verified/));
	assert.equal((await v.verify(await sign({ email: "boss@example.com", email_verified: true }))).username, "boss@example.com");
	// Absent: the IdP makes no statement (Azure AD, GitHub); accepted as the Kubernetes apiserver does.
	assert.equal((await v.verify(await sign({ email: "boss@example.com" }))).username, "boss@example.com");
	// Another username claim: email_verified is not this gateway's business.
	const other = await setup("preferred_username");
	assert.equal((await other.v.verify(await other.sign({ preferred_username: "boss", email_verified: false }))).username, "boss");
});

test("issue oidc-claim-trust: sub must be a non-empty string", async () => {
	const { v, sign } = await setup("email");
	for (const sub of [{ id: 1 }, ["a"], 12, "", true]) {
		await assert.rejects(v.verify(await sign({ sub, email: "x@example.com" })), refused("claim-invalid", /sub/), `sub ${JSON.stringify(sub)}`);
	}
});

test("issue oidc-claim-trust: system: groups from an OIDC token are dropped and match no grant", async () => {
	const { v, sign } = await setup();
	const id = await v.verify(await sign({ groups: ["system:serviceaccounts:ci", "system:masters", "SYSTEM:x", "devs"] }));
	assert.deepEqual(id.groups, ["SYSTEM:x", "devs"]);
	const now = new Date();
	const grant: BundleGrant = {
		key: "ci/deployers",
		name: "deployers",
		namespace: "ci",
		connection: "orders-prod",
		subjects: [{ kind: "Group", name: "system:serviceaccounts:ci" }],
		notBefore: new Date(now.getTime() - 60_000).toISOString(),
		expiresAt: new Date(now.getTime() + 60_000).toISOString(),
		approvers: { subjects: [], minApprovals: 1 },
		origin: {},
	};
	assert.equal(findGrants(id, "orders-prod", [grant], now).active.length, 0);
});
