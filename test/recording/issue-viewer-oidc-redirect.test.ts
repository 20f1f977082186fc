/**
 * The viewer's OIDC sign-in never follows a redirect: a provider (or whoever answers at its address)
 * that sends the token request elsewhere with a 307 would have had the browser-supplied code, the
 * PKCE verifier and the client secret re-posted to that other host. And a discovery document naming
 * another issuer is refused. The provider here is a hostile HTTP server of our own, named as such.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { registerViewer } from "../../gateway/admin/viewer.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { freePort } from "../env/index.ts";
import { tempDir } from "./fixtures.ts";

const SECRET = "viewer-client-secret-do-not-leak";
let collector: Server;
let hostile: Server;
const collected: { method?: string; url?: string; authorization?: string; body: string }[] = [];
let hostileUrl = "";
let claimedIssuer = "";

const listen = async (s: Server) => {
	await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
	return `http://127.0.0.1:${(s.address() as AddressInfo).port}`;
};
const bodyOf = (req: IncomingMessage) =>
	new Promise<string>((r) => {
		let b = "";
		req.on("data", (c: Buffer) => (b += c.toString()));
		req.on("end", () => r(b));
	});

async function viewer(issuer: string): Promise<{ app: FastifyInstance; url: string }> {
	const store = new DirStore(await tempDir("viewer-oidc-store"));
	await store.init();
	const port = await freePort();
	const url = `http://127.0.0.1:${port}`;
	const app = Fastify();
	await registerViewer(app, {
		store,
		authenticate: async () => undefined,
		auditorGroup: "auditors",
		oidc: { issuer, clientId: "drawbridge-viewer", clientSecret: SECRET, redirectUri: `${url}/viewer/oidc/callback` },
	});
	await app.listen({ host: "127.0.0.1", port });
	return { app, url };
}

before(async () => {
	collector = createServer(async (req, res) => {
		collected.push({ method: req.method, url: req.url, authorization: req.headers.authorization, body: await bodyOf(req) });
		res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ id_token: "x" }));
	});
	const collectorUrl = await listen(collector);
	// Hostile provider: a valid-looking discovery document, and a token endpoint that redirects.
	hostile = createServer(async (req, res) => {
		await bodyOf(req);
		if (req.url === "/.well-known/openid-configuration") {
			res.writeHead(200, { "content-type": "application/json" }).end(
				JSON.stringify({ issuer: claimedIssuer || hostileUrl, authorization_endpoint: `${hostileUrl}/auth`, token_endpoint: `${hostileUrl}/token`, jwks_uri: `${hostileUrl}/jwks` }),
			);
		} else if (req.url === "/token") res.writeHead(307, { location: `${collectorUrl}/steal` }).end();
		else res.writeHead(404).end();
	});
	hostileUrl = await listen(hostile);
});

after(async () => {
	await new Promise((r) => collector?.close(r));
	await new Promise((r) => hostile?.close(r));
});

/** Start a sign-in: the one-time cookie and the state the viewer sent to the provider. */
async function start(url: string): Promise<{ cookie: string; state: string; status: number }> {
	const r = await fetch(`${url}/viewer/oidc/start`, { redirect: "manual" });
	const cookie = (r.headers.get("set-cookie") ?? "").split(";")[0]!;
	const state = new URL(r.headers.get("location") ?? "http://x/").searchParams.get("state") ?? "";
	return { cookie, state, status: r.status };
}

test("a token endpoint that redirects gets nothing re-posted: the sign-in fails with 502 and the secret stays home", async () => {
	claimedIssuer = "";
	const { app, url } = await viewer(hostileUrl);
	try {
		const s = await start(url);
		assert.equal(s.status, 302);
		assert.ok(s.state && s.cookie, "sign-in started");
		const r = await fetch(`${url}/viewer/oidc/callback?code=the-code&state=${encodeURIComponent(s.state)}`, { headers: { cookie: s.cookie }, redirect: "manual" });
		assert.equal(r.status, 502);
		assert.match(await r.text(), /token exchange with the identity provider failed/);
		assert.deepEqual(collected, [], "nothing reached the redirect's target");
	} finally {
		await app.close();
	}
});

test("a discovery document naming another issuer is refused: no redirect to its authorization endpoint", async () => {
	claimedIssuer = "https://accounts.example.com";
	const { app, url } = await viewer(hostileUrl);
	try {
		const s = await start(url);
		assert.notEqual(s.status, 302);
		assert.equal(s.state, "");
	} finally {
		await app.close();
		claimedIssuer = "";
	}
});
