/**
 * Regression (red-team of the auditor web viewer): cookie tossing. The viewer's session and sign-in
 * state cookies had plain names. Any host under the same registrable domain (a sibling subdomain
 * running someone else's app: `wiki.example.com` next to `gw.example.com`) can set
 * `drawbridge_viewer=<its own token>; Domain=example.com; Path=/viewer`, and the browser sends that to
 * the viewer as if the viewer had set it: the auditor is signed in as the attacker (the login forgery
 * the cross-site POST check closed, by another door). Tossing `drawbridge_viewer_oidc=<state>.<nonce>.
 * <verifier>` from the attacker's own sign-in and sending the auditor to the callback with the
 * attacker's code does the same through OIDC. Where the cookies are Secure they are now `__Host-`
 * cookies, which no other host can set, and the plain names are ignored.
 *
 * Real components: the OIDC test provider (oidc-provider) issues the token and answers discovery, the
 * gateway's TokenVerifier checks it, the viewer runs on fastify.
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
let attackerToken: string;
const host = "gw.example.com";

before(async () => {
	oidc = await startOidc();
	const store = new DirStore(await tempDir("viewer-tossing-store"));
	await store.init();
	const verifier = new TokenVerifier([
		{ name: "test-oidc", kind: "oidc", issuer: oidc.issuer, audiences: ["drawbridge", "drawbridge-viewer"], jwksUri: oidc.jwksUri, algorithms: ["RS256"] },
	]);
	const authenticate = async (request: FastifyRequest) => {
		const m = /^Bearer (.+)$/.exec(request.headers.authorization ?? "");
		return m ? verifier.verify(m[1]!) : undefined;
	};
	const redirectUri = `https://${host}/viewer/oidc/callback`;
	const clientSecret = oidc.registerClient("drawbridge-viewer", { redirect_uris: [redirectUri] });
	app = Fastify();
	await registerViewer(app, { store, authenticate, auditorGroup: "auditors", oidc: { issuer: oidc.issuer, clientId: "drawbridge-viewer", clientSecret, redirectUri } });
	await app.ready();
	// The attacker's own account, which is allowed in (an auditor account they control).
	attackerToken = await oidc.idToken("noor");
});

after(async () => {
	await app?.close();
	await oidc?.stop();
});

test("issue viewer-cookie-tossing: a session cookie under the plain name (settable by a sibling subdomain) signs nobody in", async () => {
	const tossed = await app.inject({ url: "/viewer/api/sessions", headers: { host, cookie: `drawbridge_viewer=${attackerToken}` } });
	assert.equal(tossed.statusCode, 401, tossed.body);
	const page = await app.inject({ url: "/viewer/", headers: { host, cookie: `drawbridge_viewer=${attackerToken}` } });
	assert.equal(page.statusCode, 302);
	assert.doesNotMatch(page.body, /signed in as/);
	// The viewer's own cookie, which only this host can set, still works.
	const own = await app.inject({ url: "/viewer/api/sessions", headers: { host, cookie: `__Host-drawbridge_viewer=${attackerToken}` } });
	assert.equal(own.statusCode, 200, own.body);
});

test("issue viewer-cookie-tossing: a tossed OIDC sign-in state is not this browser's sign-in", async () => {
	// The attacker starts a sign-in in their own browser and learns its state, nonce and verifier.
	const start = await app.inject({ url: "/viewer/oidc/start", headers: { host } });
	assert.equal(start.statusCode, 302);
	const value = String(start.headers["set-cookie"]).split(";")[0]!.split("=")[1]!;
	const state = new URL(String(start.headers.location)).searchParams.get("state")!;
	// ...tosses it under the plain name, and sends the auditor to the callback with their own code.
	const r = await app.inject({ url: `/viewer/oidc/callback?state=${state}&code=attackers-code`, headers: { host, cookie: `drawbridge_viewer_oidc=${value}` } });
	assert.equal(r.statusCode, 400, r.body);
	assert.match(r.body, /does not match this browser/);
	// (The old code took the tossed state as this browser's and went on to exchange the attacker's code.)
	assert.doesNotMatch(String(r.headers["set-cookie"]), /drawbridge_viewer=[^;]/);
});
