/**
 * Regression (red-team of key handling): an issuer whose `jwksUri` was plain `http://` to another host
 * was accepted, and its keys fetched in the clear on the first token. Whoever sits on that path (or
 * answers for the host name) serves a JWKS with their own key and mints any identity that issuer may
 * assert: every user, group and claim of it. The verifier (and so a bundle, which gateways refuse
 * whole) now requires `https:`; plain `http:` only to a loopback address (a development provider on
 * this machine, the test harness). Nothing is fetched to decide this.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { IssuerConfig } from "../../gateway/config/bundle.ts";
import { BundleError, BundleStore } from "../../gateway/config/store.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import { makeBundle, tokenIssuer } from "../ssh/fixtures.ts";

const base: IssuerConfig = { name: "corp", kind: "oidc", issuer: "https://idp.corp.test", audiences: ["drawbridge"], algorithms: ["RS256"] };

test("issue jwks-plain-http: a plain-http jwksUri to another host is a configuration error", () => {
	for (const jwksUri of ["http://idp.corp.test/keys", "http://10.0.0.7:8080/jwks", "http://[2001:db8::1]/jwks", "HTTP://idp.corp.test/keys", "http://127.0.0.1.nip.io/jwks", "ftp://idp.corp.test/jwks", "file:///etc/jwks.json", "not a url"]) {
		assert.throws(() => new TokenVerifier([{ ...base, jwksUri }]), (e: unknown) => e instanceof TypeError && /jwksUri/.test((e as Error).message), jwksUri);
	}
});

test("issue jwks-plain-http: https anywhere, and plain http to loopback, are accepted", () => {
	for (const jwksUri of ["https://idp.corp.test/keys", "http://127.0.0.1:5556/dex/keys", "http://localhost:8080/jwks", "http://[::1]:9000/jwks"]) {
		new TokenVerifier([{ ...base, jwksUri }]);
	}
});

test("issue jwks-plain-http: a gateway refuses a bundle naming such an issuer, and keeps the one it has", async () => {
	const t = await tokenIssuer();
	const store = new BundleStore();
	store.update(makeBundle(t, {}, 1));
	const bad = makeBundle(t, { issuers: [{ ...base, jwksUri: "http://idp.corp.test/keys" }] }, 2);
	assert.throws(() => store.update(bad), (e: unknown) => e instanceof BundleError && e.code === "invalid" && /jwksUri must be https/.test(e.message));
	assert.equal(store.current.version, 1);
});
