/**
 * Red-team regression (admin server, round 10): the approvals API answered the held commands and who
 * asked (`GET /api/v1/approvals`, `/:id`, the approve/deny results) with no `Cache-Control`, so the
 * approver's browser kept them in its HTTP cache on disk (the approvals page fetches them with the
 * token), after the tab and its sessionStorage token were gone; the page itself was `no-store`, its
 * data was not. Every admin response is `no-store` now unless its route says otherwise (the viewer's
 * static assets, the public recording keys). A real admin server with the approvals routes, tokens
 * signed with jose and verified by the identity module, over HTTP.
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { buildAdminServer } from "../../gateway/admin/server.ts";
import { LocalApprovalStore } from "../../gateway/approvals/local-store.ts";
import { registerApprovalRoutes, verifierAuthenticator } from "../../gateway/approvals/routes.ts";
import { StoreApprovalService } from "../../gateway/approvals/service.ts";
import { BundleStore } from "../../gateway/config/store.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import { input } from "./fixtures.ts";

const ISSUER = "https://idp.cache.test";
let app: FastifyInstance;
let service: StoreApprovalService;
let base: string;
let token: string;

before(async () => {
	const { privateKey, publicKey } = await generateKeyPair("ES256");
	const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" };
	token = await new SignJWT({ email: "sam@example.com", groups: ["support-leads"] })
		.setProtectedHeader({ alg: "ES256", kid: "k1" })
		.setIssuer(ISSUER)
		.setAudience("drawbridge")
		.setSubject("sam")
		.setIssuedAt()
		.setExpirationTime("10m")
		.sign(privateKey);
	const verifier = new TokenVerifier([{ name: "idp", kind: "oidc", issuer: ISSUER, audiences: ["drawbridge"], jwks: { keys: [jwk] }, algorithms: ["ES256"], usernameClaim: "email" }]);
	service = new StoreApprovalService({ store: new LocalApprovalStore(), sweepIntervalMs: 0 });
	app = await buildAdminServer({ store: new BundleStore(), plugins: [(a) => registerApprovalRoutes(a, { service, authenticate: verifierAuthenticator(verifier) })] });
	await app.listen({ port: 0, host: "127.0.0.1" });
	base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
});
after(async () => {
	await app?.close();
	await service?.close();
});

test("issue approvals-api-cache: answers holding requested commands are never stored by a cache", async () => {
	const held = await service.request(input({ command: "UPDATE users SET password_hash = 'x' WHERE id = 7" }));
	const auth = { authorization: `Bearer ${token}` };
	const answers: [string, Response][] = [
		["list", await fetch(`${base}/api/v1/approvals`, { headers: auth })],
		["show", await fetch(`${base}/api/v1/approvals/${held.id}`, { headers: auth })],
		["deny", await fetch(`${base}/api/v1/approvals/${held.id}/deny`, { method: "POST", headers: { ...auth, "content-type": "application/json" }, body: "{}" })],
		["no token", await fetch(`${base}/api/v1/approvals`)],
	];
	for (const [what, res] of answers) {
		const body = await res.text();
		if (what !== "no token") assert.ok(body.includes("password_hash"), `${what}: ${body.slice(0, 200)}`);
		// Before: no Cache-Control at all on the API's answers.
		assert.equal(res.headers.get("cache-control"), "no-store", `${what} (HTTP ${res.status})`);
	}
	// The page itself was already no-store and stays so.
	assert.equal((await fetch(`${base}/approvals/${held.id}`)).headers.get("cache-control"), "no-store");
});
