/**
 * Regression (red-team of the auditor web viewer): the session cookie was `Secure` only when the
 * admin server itself saw https. It normally sits behind a TLS-terminating ingress or load balancer
 * and sees plain http, so the cookie was never Secure in a real deployment: the browser sent it on
 * any plain-http request to the host (a typed `gw.example.com/viewer/`, an http:// link) where
 * anyone on the path reads it. The cookie holds the auditor's OIDC ID token itself, which the
 * approvals API and the data paths accept too. Every viewer cookie (session, OIDC sign-in state,
 * and their clearing) is Secure now unless the browser talks plain http to a loopback address
 * (local development, where browsers would not keep it otherwise); the login page says so when it is
 * opened over plain http elsewhere.
 *
 * Real components: the OIDC test provider (oidc-provider) issues the ID token and answers discovery,
 * the gateway's TokenVerifier checks it, the viewer runs on fastify.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import { registerViewer } from "../../gateway/admin/viewer.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { type OidcHandle, startOidc } from "../env/index.ts";
import { tempDir } from "./fixtures.ts";

let oidc: OidcHandle;
let app: FastifyInstance;
let token: string;

before(async () => {
	oidc = await startOidc();
	const store = new DirStore(await tempDir("viewer-cookie-store"));
	await store.init();
	const verifier = new TokenVerifier([
		{ name: "test-oidc", kind: "oidc", issuer: oidc.issuer, audiences: ["drawbridge", "drawbridge-viewer"], jwksUri: oidc.jwksUri, algorithms: ["RS256"] },
	]);
	const authenticate = async (request: FastifyRequest) => {
		const m = /^Bearer (.+)$/.exec(request.headers.authorization ?? "");
		return m ? verifier.verify(m[1]!) : undefined;
	};
	const redirectUri = "https://gw.example.com/viewer/oidc/callback";
	const clientSecret = oidc.registerClient("drawbridge-viewer", { redirect_uris: [redirectUri] });
	app = Fastify();
	await registerViewer(app, { store, authenticate, auditorGroup: "auditors", oidc: { issuer: oidc.issuer, clientId: "drawbridge-viewer", clientSecret, redirectUri } });
	await app.ready();
	token = await oidc.idToken("noor");
});

after(async () => {
	await app?.close();
	await oidc?.stop();
});

const login = (host: string, extra: Record<string, string> = {}) =>
	app.inject({ method: "POST", url: "/viewer/login", payload: `token=${token}`, headers: { host, "content-type": "application/x-www-form-urlencoded", ...extra } });

function cookies(r: { headers: Record<string, unknown> }): string[] {
	const c = r.headers["set-cookie"];
	return c === undefined ? [] : Array.isArray(c) ? c : [String(c)];
}

test("issue viewer-cookie-secure: behind a TLS-terminating proxy (plain http to the admin server) every viewer cookie is Secure", async () => {
	for (const [host, extra] of [
		["gw.example.com", {}],
		["gw.example.com:8080", { "x-forwarded-proto": "https" }],
		["10.0.0.7:8080", {}],
		["localhost.evil.example", {}],
	] as const) {
		const r = await login(host, extra);
		assert.equal(r.statusCode, 303, `${host}: ${r.body}`);
		const [session] = cookies(r);
		assert.match(session!, /^__Host-drawbridge_viewer=/);
		assert.match(session!, /; Secure(;|$)/, `${host}: ${session}`);
		assert.match(session!, /HttpOnly/);
		assert.match(session!, /SameSite=Strict/);
		assert.ok(!session!.includes("; Domain="), session);
	}
	const out = await app.inject({ method: "POST", url: "/viewer/logout", headers: { host: "gw.example.com" } });
	assert.match(cookies(out)[0]!, /^__Host-drawbridge_viewer=;.*; Secure/);
	const start = await app.inject({ url: "/viewer/oidc/start", headers: { host: "gw.example.com" } });
	assert.equal(start.statusCode, 302, start.body);
	assert.match(cookies(start)[0]!, /^__Host-drawbridge_viewer_oidc=[^;]+;.*; Secure/);
	const callback = await app.inject({ url: "/viewer/oidc/callback?code=x&state=y", headers: { host: "gw.example.com" } });
	assert.match(cookies(callback)[0]!, /^__Host-drawbridge_viewer_oidc=;.*; Secure/);
});

test("issue viewer-cookie-secure: plain http to loopback (local development) keeps a cookie browsers accept there", async () => {
	for (const host of ["127.0.0.1:8080", "localhost:8080", "[::1]:8080", "viewer.localhost"]) {
		const r = await login(host);
		assert.equal(r.statusCode, 303, host);
		assert.doesNotMatch(cookies(r)[0]!, /Secure/, host);
	}
});

test("issue viewer-cookie-secure: the login page opened over plain http elsewhere says the cookie needs https", async () => {
	const plain = await app.inject({ url: "/viewer/login", headers: { host: "gw.example.com" } });
	assert.equal(plain.statusCode, 200);
	assert.match(plain.body, /id="login-message">[^<]*plain http[^<]*https/);
	for (const headers of [{ host: "gw.example.com", "x-forwarded-proto": "https" }, { host: "127.0.0.1:8080" }]) {
		const r = await app.inject({ url: "/viewer/login", headers });
		assert.doesNotMatch(r.body, /plain http/, JSON.stringify(headers));
	}
});
