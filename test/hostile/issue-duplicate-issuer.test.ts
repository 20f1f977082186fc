/**
 * Regression (red-team of issuer configuration): two issuers in a bundle with the same `iss` were
 * both accepted, and the later one silently replaced the earlier (its kind, keys and audiences). The
 * operator appends `--issuers-file` entries after its own issuer and the cluster's, so one entry
 * naming the operator's `iss` as kind `oidc` (an administrator adding "the operator's JWKS" as a
 * provider; on EKS/GKE, the cluster's public service-account issuer added as OIDC) changed how every
 * token of that issuer maps: an operator token minted for ONE grant lost its grant binding and opened
 * every grant of its subject; service accounts became OIDC users matched by `User` name. The verifier
 * and the bundle validator now refuse a repeated `iss`; the operator refuses to compile one.
 */
import assert from "node:assert/strict";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import type { BundleGrant, IssuerConfig } from "../../gateway/config/bundle.ts";
import { grantSubjectsDigest } from "../../gateway/config/canonical.ts";
import { BundleError, BundleStore } from "../../gateway/config/store.ts";
import { findGrants } from "../../gateway/identity/grants.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import { issuersFor } from "../../operator/config/writer.ts";
import type { OperatorOptions } from "../../operator/options.ts";
import { makeBundle, tokenIssuer } from "../ssh/fixtures.ts";

const OPERATOR = "https://operator.drawbridge.test";

function grant(key: string): BundleGrant {
	const now = Date.now();
	return {
		key,
		name: key.split("/")[1]!,
		namespace: key.split("/")[0]!,
		connection: "shop-prod",
		subjects: [{ kind: "User", name: "alice" }],
		notBefore: new Date(now - 60_000).toISOString(),
		expiresAt: new Date(now + 3_600_000).toISOString(),
		postgres: { access: "read-only" },
		approvers: { subjects: [{ kind: "Group", name: "dba" }], minApprovals: 1 },
		origin: {},
	};
}

test("issue duplicate-issuer: a second entry for the operator's iss is refused; an operator token stays bound to its grant", async () => {
	const { privateKey, publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519", extractable: true });
	const jwk = { ...(await exportJWK(publicKey)), kid: "op1", alg: "EdDSA", use: "sig" };
	const operator: IssuerConfig = { name: "drawbridge-operator", kind: "drawbridge", issuer: OPERATOR, audiences: ["drawbridge-gateway"], jwks: { keys: [jwk] }, algorithms: ["EdDSA"] };
	const extra: IssuerConfig = { ...operator, name: "operator-as-oidc", kind: "oidc" };
	assert.throws(() => new TokenVerifier([operator, extra]), (e: unknown) => e instanceof TypeError && /already configured by issuer drawbridge-operator/.test((e as Error).message));

	// What the single, unambiguous entry does: the token minted for team/alice-ro opens only it.
	const now = Math.floor(Date.now() / 1000);
	const token = await new SignJWT({ grant: "team/alice-ro", grantSubjects: grantSubjectsDigest([{ kind: "User", name: "alice" }]) })
		.setProtectedHeader({ alg: "EdDSA", kid: "op1" })
		.setIssuer(OPERATOR)
		.setAudience("drawbridge-gateway")
		.setSubject("alice")
		.setIssuedAt(now)
		.setExpirationTime(now + 600)
		.sign(privateKey);
	const identity = await new TokenVerifier([operator]).verify(token);
	const lookup = findGrants(identity, "shop-prod", [grant("team/alice-ro"), grant("team/alice-admin")], new Date());
	assert.deepEqual(lookup.active.map((g) => g.key), ["team/alice-ro"]);
});

test("issue duplicate-issuer: a gateway refuses such a bundle whole and keeps the one it has", async () => {
	const t = await tokenIssuer();
	const store = new BundleStore();
	store.update(makeBundle(t, {}, 1));
	const first = makeBundle(t, {}, 1).issuers[0]!;
	const bad = makeBundle(t, { issuers: [first, { ...first, name: "again", kind: "kubernetes" }] }, 2);
	assert.throws(() => store.update(bad), (e: unknown) => e instanceof BundleError && e.code === "invalid" && /duplicate issuer/.test(e.message));
	assert.equal(store.current.version, 1);
});

test("issue duplicate-issuer: the operator refuses to compile an --issuers-file entry repeating its own iss", () => {
	const dir = mkdtempSync(join(tmpdir(), "drawbridge-issuers-"));
	const file = join(dir, "issuers.json");
	const opts = {
		issuer: OPERATOR,
		tokenAudiences: ["drawbridge-gateway"],
		tokenTtlMs: 3_600_000,
		kubeAudiences: ["drawbridge-gateway"],
		extraIssuersFile: file,
	} as Partial<OperatorOptions> as OperatorOptions;
	const extra = (iss: string) => [{ name: "corp", kind: "oidc", issuer: iss, audiences: ["drawbridge"], jwksUri: `${iss}/keys`, algorithms: ["RS256"] }];
	writeFileSync(file, JSON.stringify(extra("https://sso.corp.test")));
	assert.deepEqual(issuersFor(opts, { keys: [] }).map((i) => i.issuer), [OPERATOR, "https://sso.corp.test"]);
	writeFileSync(file, JSON.stringify(extra(OPERATOR)));
	assert.throws(() => issuersFor(opts, { keys: [] }), /drawbridge-operator and corp both have iss/);
});
