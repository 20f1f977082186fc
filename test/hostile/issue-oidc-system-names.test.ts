/**
 * Regression (red-team of identity mapping): an OIDC token whose `sub` (or configured user-name claim)
 * is spelled like a Kubernetes name, `system:serviceaccount:ci:deployer`, was accepted on the
 * PostgreSQL and SSH paths with that user name. Only the Kubernetes path refused it (it would be
 * impersonated). So:
 * - a grant written with a `User` subject `system:serviceaccount:ci:deployer` (a natural way to name a
 *   service account, and one the CRD accepts) was opened by any OIDC user whose provider lets them
 *   choose `sub` or `preferred_username`: real service accounts never match `User` entries, so the
 *   only identities that ever matched such an entry were forged ones;
 * - approvals' same-person check reads a `system:serviceaccount:` subject as that service account, so
 *   such a requester was "another principal" than their own user name under a second issuer.
 * The verifier now refuses an OIDC user name or `sub` in the reserved `system:` namespace, for every
 * data path: FATAL 28P01 (`claim-invalid`) on PostgreSQL, an authentication failure on SSH, 401 on
 * Kubernetes (test/kube/bypass.test.ts).
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import pg from "pg";
import { IdentityError } from "../../gateway/identity/errors.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { DEFAULT_GRANTS, type GatewayFixture, startGatewayFixture } from "../faults/fixture.ts";
import { tokenEchoed } from "./jwt-attacks.ts";

const SA_NAME = "system:serviceaccount:ci:deployer";

let f: GatewayFixture;

before(async () => {
	f = await startGatewayFixture({ grants: [...DEFAULT_GRANTS, { name: "ci-deployer", user: SA_NAME, access: "read-write" }] });
});
after(async () => {
	await f?.stop();
});
printLogsOnFailure(() => [["postgres", f?.pg]]);

async function refusal(password: string): Promise<{ code: string; message: string; detail: string }> {
	const c = new pg.Client(f.clientConfig("deployer", password));
	c.on("error", () => undefined);
	try {
		await c.connect();
	} catch (e) {
		const x = e as { code?: string; message?: string; detail?: string };
		return { code: x.code ?? "", message: x.message ?? "", detail: x.detail ?? "" };
	} finally {
		await c.end().catch(() => undefined);
	}
	throw new Error("connection was accepted");
}

describe("issue oidc-system-names: OIDC user names in the system: namespace", () => {
	test("control: an OIDC user with an ordinary name connects", async () => {
		const c = await f.connect("alice");
		await c.end();
	});

	test("an OIDC sub spelled like a service account does not open a User grant written with that name", async () => {
		const token = await f.token(SA_NAME);
		const r = await refusal(token);
		assert.equal(r.code, "28P01", JSON.stringify(r));
		assert.match(r.message, /reserved system: namespace/);
		assert.match(r.detail, /reason: claim-invalid/);
		assert.ok(!tokenEchoed(`${r.message} ${r.detail}`, token));
	});

	test("other system: names are refused too (a Kubernetes component, system:anonymous)", async () => {
		for (const sub of ["system:kube-controller-manager", "system:anonymous", "system:"]) {
			const r = await refusal(await f.token(sub));
			assert.equal(r.code, "28P01", `${sub}: ${JSON.stringify(r)}`);
			assert.match(r.detail, /reason: claim-invalid/);
		}
	});
});

test("issue oidc-system-names: the configured user-name claim and sub are both checked; the Kubernetes issuer is unaffected", async () => {
	const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
	const jwk = { ...(await exportJWK(publicKey)), kid: "k", alg: "ES256" };
	const v = new TokenVerifier([
		{ name: "idp", kind: "oidc", issuer: "https://idp.test", audiences: ["drawbridge"], jwks: { keys: [jwk] }, algorithms: ["ES256"], usernameClaim: "preferred_username" },
		{ name: "cluster", kind: "kubernetes", issuer: "https://kubernetes.test", audiences: ["drawbridge"], jwks: { keys: [jwk] }, algorithms: ["ES256"] },
	]);
	const now = Math.floor(Date.now() / 1000);
	const sign = (claims: Record<string, unknown>) =>
		new SignJWT({ iss: "https://idp.test", aud: "drawbridge", sub: "u-1", iat: now, exp: now + 600, ...claims }).setProtectedHeader({ alg: "ES256", kid: "k" }).sign(privateKey);
	const refused = (e: unknown) => e instanceof IdentityError && e.code === "claim-invalid" && /reserved system: namespace/.test(e.message);
	await assert.rejects(v.verify(await sign({ preferred_username: SA_NAME })), refused);
	await assert.rejects(v.verify(await sign({ sub: SA_NAME, preferred_username: "deployer" })), refused);
	assert.equal((await v.verify(await sign({ preferred_username: "deployer" }))).username, "deployer");
	// Kubernetes is case-sensitive: `System:` is an ordinary name there, and so here.
	assert.equal((await v.verify(await sign({ preferred_username: "System:deployer" }))).username, "System:deployer");
	const sa = await v.verify(await sign({ iss: "https://kubernetes.test", sub: SA_NAME }));
	assert.deepEqual(sa.serviceAccount, { namespace: "ci", name: "deployer" });
});
