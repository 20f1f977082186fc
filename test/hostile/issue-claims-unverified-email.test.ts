/**
 * Regression (red-team of identity mapping): a `Claims` subject on `email` matched a token whose
 * provider said the address was NOT verified (`email_verified: false`). Most providers let anyone
 * register an account under any address and mark it unverified, so mallory, with an account at the
 * configured issuer carrying `email: boss@example.com, email_verified: false`, opened a grant written
 * for `Claims {issuer, claims: {email: boss@example.com}}`. The verifier already refused such an
 * address as a user name (issue-oidc-claim-trust); the `Claims` matcher now applies the same rule:
 * an `email` entry never matches an address the token says is unverified (absent `email_verified` is
 * accepted, as for user names). PostgreSQL answers 28000 "no grant matches".
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { subjectMatches } from "../../gateway/identity/grants.ts";
import type { Identity } from "../../gateway/config/bundle.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { DEFAULT_GRANTS, type GatewayFixture, OIDC_ISSUER, startGatewayFixture } from "../faults/fixture.ts";

let f: GatewayFixture;

before(async () => {
	f = await startGatewayFixture({
		grants: [
			...DEFAULT_GRANTS,
			{ name: "boss-rw", user: "-", access: "read-write", subjects: [{ kind: "Claims", issuer: OIDC_ISSUER, claims: { email: "boss@example.com" } }] },
		],
	});
});
after(async () => {
	await f?.stop();
});
printLogsOnFailure(() => [["postgres", f?.pg]]);

async function tryConnect(sub: string, claims: Record<string, unknown>): Promise<{ ok: true } | { ok: false; code: string; message: string }> {
	const c = new pg.Client(f.clientConfig("boss", await f.token(sub, { claims })));
	c.on("error", () => undefined);
	try {
		await c.connect();
		return { ok: true };
	} catch (e) {
		const x = e as { code?: string; message?: string };
		return { ok: false, code: x.code ?? "", message: x.message ?? "" };
	} finally {
		await c.end().catch(() => undefined);
	}
}

describe("issue claims-unverified-email: a Claims subject on email", () => {
	test("control: the verified address (and one without email_verified) opens the grant", async () => {
		assert.deepEqual(await tryConnect("boss-id", { email: "boss@example.com", email_verified: true }), { ok: true });
		assert.deepEqual(await tryConnect("boss-id", { email: "boss@example.com" }), { ok: true });
	});

	test("an address the provider marks unverified does not", async () => {
		for (const email_verified of [false, "true", "false", 1, null]) {
			const r = await tryConnect("mallory", { email: "boss@example.com", email_verified });
			assert.equal(r.ok, false, `email_verified ${JSON.stringify(email_verified)}`);
			if (!r.ok) {
				assert.equal(r.code, "28000", `${JSON.stringify(email_verified)}: ${r.message}`);
				assert.match(r.message, /no grant matches/);
			}
		}
	});
});

test("issue claims-unverified-email: only the email entry looks at email_verified; the rest of the subject as before", () => {
	const id = (claims: Record<string, unknown>): Identity => ({
		issuer: OIDC_ISSUER,
		issuerKind: "oidc",
		subject: "u",
		username: "u",
		groups: [],
		tokenExpiresAt: new Date(Date.now() + 60_000),
		claims,
	});
	const m = { kind: "Claims", issuer: OIDC_ISSUER, claims: { email: "boss@example.com", hd: "example.com" } } as const;
	assert.ok(subjectMatches(id({ email: "boss@example.com", hd: "example.com", email_verified: true }), m));
	assert.ok(!subjectMatches(id({ email: "boss@example.com", hd: "example.com", email_verified: false }), m));
	assert.ok(subjectMatches(id({ hd: "example.com", email_verified: false }), { kind: "Claims", issuer: OIDC_ISSUER, claims: { hd: "example.com" } }));
});
