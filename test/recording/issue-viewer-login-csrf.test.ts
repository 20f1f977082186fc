/**
 * Regression (red-team of the auditor web viewer): login forgery. `POST /viewer/login` took a pasted
 * token from any page: a site the auditor visits could auto-submit a form carrying the *attacker's*
 * token (say, an auditor account the attacker controls), and the auditor's browser then held the
 * attacker's viewer session. The viewer's own form posts same-origin; a browser says where a POST
 * comes from (`Sec-Fetch-Site`, `Origin`), so cross-site logins and logouts are now refused (403, no
 * cookie). Requests without either header are not from a browser and cannot be forged this way.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { registerViewer } from "../../gateway/admin/viewer.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { tempDir } from "./fixtures.ts";

let app: FastifyInstance;
let token: string;

before(async () => {
	const store = new DirStore(await tempDir("viewer-csrf-store"));
	await store.init();
	const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
	const jwk = { ...(await exportJWK(publicKey)), kid: "k", alg: "ES256" };
	const now = Math.floor(Date.now() / 1000);
	token = await new SignJWT({ iss: "https://idp.test", aud: "drawbridge", iat: now, exp: now + 600, sub: "mallory", groups: ["auditors"] })
		.setProtectedHeader({ alg: "ES256", kid: "k" })
		.sign(privateKey);
	const verifier = new TokenVerifier([
		{ name: "idp", kind: "oidc", issuer: "https://idp.test", audiences: ["drawbridge"], jwks: { keys: [jwk] }, algorithms: ["ES256"] },
	]);
	const authenticate = async (request: FastifyRequest) => {
		const m = /^Bearer (.+)$/.exec(request.headers.authorization ?? "");
		return m ? verifier.verify(m[1]!) : undefined;
	};
	app = Fastify();
	await registerViewer(app, { store, authenticate, auditorGroup: "auditors" });
	await app.ready();
});

after(async () => {
	await app?.close();
});

const login = (headers: Record<string, string>) =>
	app.inject({
		method: "POST",
		url: "/viewer/login",
		payload: `token=${token}`,
		headers: { host: "gw.example:8443", "content-type": "application/x-www-form-urlencoded", ...headers },
	});

test("issue viewer-login-csrf: a cross-site form cannot sign the auditor's browser in (or out)", async () => {
	const forged: Record<string, string>[] = [
		{ origin: "https://evil.example", "sec-fetch-site": "cross-site" },
		{ origin: "https://evil.example" },
		{ origin: "https://gw.example.evil.example:8443" },
		{ "sec-fetch-site": "cross-site" },
		{ "sec-fetch-site": "same-site", origin: "https://other.gw.example:8443" },
		{ origin: "null" },
		{ referer: "https://evil.example/page" },
	];
	for (const headers of forged) {
		const r = await login(headers);
		assert.equal(r.statusCode, 403, JSON.stringify(headers));
		assert.equal(r.headers["set-cookie"], undefined, JSON.stringify(headers));
		assert.match(r.body, /cross-site/);
	}
	const out = await app.inject({ method: "POST", url: "/viewer/logout", headers: { host: "gw.example:8443", origin: "https://evil.example" } });
	assert.equal(out.statusCode, 403);
});

test("issue viewer-login-csrf: the viewer's own form and non-browser clients still sign in", async () => {
	const own: Record<string, string>[] = [
		{ origin: "https://gw.example:8443", "sec-fetch-site": "same-origin" },
		{ origin: "http://gw.example:8443" },
		// Referrer-Policy no-referrer makes some browsers send Origin: null; Sec-Fetch-Site still says same-origin.
		{ origin: "null", "sec-fetch-site": "same-origin" },
		{ referer: "https://gw.example:8443/viewer/login" },
		{},
	];
	for (const headers of own) {
		const r = await login(headers);
		assert.equal(r.statusCode, 303, `${JSON.stringify(headers)}: ${r.body}`);
		assert.match(String(r.headers["set-cookie"]), /drawbridge_viewer=/);
	}
});
