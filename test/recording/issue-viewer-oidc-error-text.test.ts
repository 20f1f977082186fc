/**
 * Regression (red-team of the auditor web viewer): `GET /viewer/oidc/callback?error=…&error_description=…`
 * put the query's text on the gateway's own sign-in page before checking that the response belonged
 * to a sign-in this browser started. Any link could make the gateway say "Your account is locked; call
 * … or sign in at https://evil.example" (escaped, but believed: it is the real gateway's page). The
 * state is checked first now; the provider's error is shown only for this browser's own sign-in,
 * printable ASCII and at most 200 characters each.
 *
 * Real components: the OIDC test provider (oidc-provider) for discovery and the start of the flow, the
 * viewer on fastify.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { registerViewer } from "../../gateway/admin/viewer.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { type OidcHandle, startOidc } from "../env/index.ts";
import { tempDir } from "./fixtures.ts";

let oidc: OidcHandle;
let app: FastifyInstance;
const LURE = "Your account is locked. Call +1 555 0100 or sign in at https://evil.example/drawbridge";

before(async () => {
	oidc = await startOidc();
	const store = new DirStore(await tempDir("viewer-oidc-error-store"));
	await store.init();
	const redirectUri = "http://127.0.0.1:8080/viewer/oidc/callback";
	const clientSecret = oidc.registerClient("drawbridge-viewer", { redirect_uris: [redirectUri] });
	app = Fastify();
	await registerViewer(app, {
		store,
		authenticate: () => undefined,
		auditorGroup: "auditors",
		oidc: { issuer: oidc.issuer, clientId: "drawbridge-viewer", clientSecret, redirectUri },
	});
	await app.ready();
});

after(async () => {
	await app?.close();
	await oidc?.stop();
});

test("issue viewer-oidc-error-text: an unsolicited callback cannot put its text on the gateway's page", async () => {
	const q = new URLSearchParams({ error: "access_denied", error_description: LURE });
	for (const extra of ["", "&state=guessed", "&state=guessed&code=abc"]) {
		const r = await app.inject({ url: `/viewer/oidc/callback?${q}${extra}`, headers: { host: "127.0.0.1:8080" } });
		assert.equal(r.statusCode, 400, extra);
		assert.doesNotMatch(r.body, /evil\.example|locked|555/, extra);
		assert.match(r.body, /does not match this browser/);
	}
	// Also with the OIDC cookie of another sign-in (the attacker cannot read the victim's state).
	const start = await app.inject({ url: "/viewer/oidc/start", headers: { host: "127.0.0.1:8080" } });
	const cookie = String(start.headers["set-cookie"]).split(";")[0]!;
	const r = await app.inject({ url: `/viewer/oidc/callback?${q}&state=guessed`, headers: { host: "127.0.0.1:8080", cookie } });
	assert.equal(r.statusCode, 400);
	assert.doesNotMatch(r.body, /evil\.example/);
});

test("issue viewer-oidc-error-text: the provider's own refusal of this browser's sign-in is still shown", async () => {
	const start = await app.inject({ url: "/viewer/oidc/start", headers: { host: "127.0.0.1:8080" } });
	assert.equal(start.statusCode, 302);
	const state = new URL(String(start.headers.location)).searchParams.get("state")!;
	const cookie = String(start.headers["set-cookie"]).split(";")[0]!;
	const q = new URLSearchParams({ error: "access_denied", error_description: `End-User aborted interaction\u202e${"x".repeat(500)}`, state });
	const r = await app.inject({ url: `/viewer/oidc/callback?${q}`, headers: { host: "127.0.0.1:8080", cookie } });
	assert.equal(r.statusCode, 401);
	assert.match(r.body, /refused the sign-in: access_denied \(End-User aborted interaction\?x+\)/);
	assert.doesNotMatch(r.body, /x{201}/);
	assert.doesNotMatch(r.body, /\u202e/);
});
