/**
 * Red-team of identity mapping across issuers. `User` and `Group` subjects carry no issuer: they match
 * the user name and groups of a token from ANY configured OIDC issuer (as an apiserver with several
 * OIDC authenticators and no prefixes does). With a second provider where people pick their own
 * `preferred_username` or create their own groups (a public GitLab, Dex without an organisation
 * filter), mallory there, in a group she created named `platform-admins`, opened grants written for
 * the corporate provider's `platform-admins`. This stays the default (docs/security-model.md, "Users
 * and groups across issuers"); what an administrator can do now is give such an issuer a
 * `usernamePrefix` / `groupsPrefix` (the apiserver's `--oidc-*-prefix`), after which its names match
 * only subjects written with the prefix. `Claims` subjects name their issuer and are unaffected.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import type { BundleGrant, IssuerConfig, SubjectMatcher } from "../../gateway/config/bundle.ts";
import { IdentityError } from "../../gateway/identity/errors.ts";
import { findGrants } from "../../gateway/identity/grants.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";

async function provider(issuer: string, extra: Partial<IssuerConfig> = {}) {
	const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
	const jwk = { ...(await exportJWK(publicKey)), kid: "k", alg: "ES256" };
	const config: IssuerConfig = { name: new URL(issuer).hostname, kind: "oidc", issuer, audiences: ["drawbridge"], jwks: { keys: [jwk] }, algorithms: ["ES256"], usernameClaim: "preferred_username", ...extra };
	const now = Math.floor(Date.now() / 1000);
	const sign = (claims: Record<string, unknown>) =>
		new SignJWT({ iss: issuer, aud: "drawbridge", sub: "s-1", iat: now, exp: now + 600, ...claims }).setProtectedHeader({ alg: "ES256", kid: "k" }).sign(privateKey);
	return { config, sign };
}

function grant(key: string, subjects: SubjectMatcher[]): BundleGrant {
	const now = Date.now();
	return {
		key,
		name: key.split("/")[1]!,
		namespace: key.split("/")[0]!,
		connection: "shop-prod",
		subjects,
		notBefore: new Date(now - 60_000).toISOString(),
		expiresAt: new Date(now + 3_600_000).toISOString(),
		postgres: { access: "admin" },
		approvers: { subjects: [{ kind: "User", name: "boss" }], minApprovals: 1 },
		origin: {},
	};
}

const grants = [
	grant("platform/admins", [{ kind: "Group", name: "platform-admins" }]),
	grant("platform/boss", [{ kind: "User", name: "boss" }]),
	grant("platform/gitlab-ci", [{ kind: "Group", name: "gitlab:ci-runners" }]),
];
const opened = (v: TokenVerifier, token: string) =>
	v.verify(token).then((id) => findGrants(id, "shop-prod", grants, new Date()).active.map((g) => g.key).sort());

test("issue cross-issuer-names: without prefixes, a second provider's self-chosen name and group open the first one's grants (stated limit)", async () => {
	const corp = await provider("https://sso.corp.test");
	const gitlab = await provider("https://gitlab.test");
	const v = new TokenVerifier([corp.config, gitlab.config]);
	assert.deepEqual(await opened(v, await corp.sign({ preferred_username: "boss", groups: ["platform-admins"] })), ["platform/admins", "platform/boss"]);
	assert.deepEqual(await opened(v, await gitlab.sign({ preferred_username: "boss", groups: ["platform-admins"] })), ["platform/admins", "platform/boss"]);
});

test("issue cross-issuer-names: with usernamePrefix/groupsPrefix, that provider's names match only prefixed subjects", async () => {
	const corp = await provider("https://sso.corp.test");
	const gitlab = await provider("https://gitlab.test", { usernamePrefix: "gitlab:", groupsPrefix: "gitlab:" });
	const v = new TokenVerifier([corp.config, gitlab.config]);
	const id = await v.verify(await gitlab.sign({ preferred_username: "boss", groups: ["platform-admins", "ci-runners", "system:masters"] }));
	assert.equal(id.username, "gitlab:boss");
	assert.deepEqual(id.groups, ["gitlab:platform-admins", "gitlab:ci-runners"]);
	assert.deepEqual(findGrants(id, "shop-prod", grants, new Date()).active.map((g) => g.key), ["platform/gitlab-ci"]);
	// the corporate provider, without a prefix, as before
	assert.deepEqual(await opened(v, await corp.sign({ preferred_username: "boss", groups: ["platform-admins"] })), ["platform/admins", "platform/boss"]);
	// the prefix does not launder a system: name: the raw claim is checked
	await assert.rejects(v.verify(await gitlab.sign({ preferred_username: "system:admin" })), (e) => e instanceof IdentityError && e.code === "claim-invalid");
});

test("issue cross-issuer-names: a prefix in system:, or on a non-OIDC issuer, is a configuration error", async () => {
	const p = await provider("https://gitlab.test");
	assert.throws(() => new TokenVerifier([{ ...p.config, groupsPrefix: "system:" }]), /groupsPrefix/);
	assert.throws(() => new TokenVerifier([{ ...p.config, usernamePrefix: "system:serviceaccount:x:" }]), /usernamePrefix/);
	assert.throws(() => new TokenVerifier([{ ...p.config, kind: "kubernetes", groupsPrefix: "k:" }]), /groupsPrefix/);
});
