/**
 * Red-team round (identity): a hostile OIDC issuer. A local HTTP server of our own plays the
 * issuer's JWKS endpoint and misbehaves: it redirects to another host, hangs, serves a huge
 * document, fails fast, and is asked for unknown `kid`s in a flood. The TokenVerifier (real jose,
 * real tokens) must fail closed with `jwks-unavailable`, never follow the redirect, and never fetch
 * more often than its cooldown, whatever the token says.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import { after, before, test } from "node:test";
import { exportJWK, generateKeyPair, SignJWT, type JWK } from "jose";
import type { IssuerConfig } from "../../gateway/config/bundle.ts";
import { IdentityError } from "../../gateway/identity/errors.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";

type Mode = "ok" | "redirect" | "hang" | "huge" | "500";
let mode: Mode = "ok";
const hits: Record<string, number> = {};
let hostile: Server;
let elsewhere: Server;
let base = "";
let elsewhereHits = 0;
let signer: Awaited<ReturnType<typeof generateKeyPair>>["privateKey"];
let jwk: JWK;

function listen(s: Server): Promise<number> {
	return new Promise((r) => s.listen(0, "127.0.0.1", () => r((s.address() as { port: number }).port)));
}

before(async () => {
	const kp = await generateKeyPair("ES256", { extractable: true });
	signer = kp.privateKey;
	jwk = { ...(await exportJWK(kp.publicKey)), kid: "good", alg: "ES256", use: "sig" };
	elsewhere = createServer((_req, res) => {
		elsewhereHits++;
		res.setHeader("content-type", "application/json");
		res.end(JSON.stringify({ keys: [jwk] }));
	});
	const elsewherePort = await listen(elsewhere);
	hostile = createServer((req: IncomingMessage, res: ServerResponse) => {
		const path = req.url ?? "/";
		hits[path] = (hits[path] ?? 0) + 1;
		switch (mode) {
			case "ok":
				res.setHeader("content-type", "application/json");
				res.end(JSON.stringify({ keys: [jwk] }));
				return;
			case "redirect":
				res.writeHead(302, { location: `http://127.0.0.1:${elsewherePort}/jwks` });
				res.end();
				return;
			case "hang":
				res.writeHead(200, { "content-type": "application/json" });
				res.write('{"keys": [');
				return; // never ends
			case "huge":
				res.writeHead(200, { "content-type": "application/json" });
				res.write('{"keys": [], "pad": "');
				for (let i = 0; i < 64; i++) res.write("A".repeat(64 * 1024));
				res.end('"}');
				return;
			case "500":
				res.writeHead(500);
				res.end("down");
				return;
		}
	});
	base = `http://127.0.0.1:${await listen(hostile)}`;
});
after(async () => {
	hostile.closeAllConnections();
	await new Promise((r) => hostile.close(r));
	await new Promise((r) => elsewhere.close(r));
});

function issuerAt(path: string): IssuerConfig {
	return { name: "hostile", kind: "oidc", issuer: `${base}${path}`, audiences: ["drawbridge-gateway"], jwksUri: `${base}${path}`, algorithms: ["ES256"] };
}

function mint(path: string, kid = "good"): Promise<string> {
	const now = Math.floor(Date.now() / 1000);
	return new SignJWT({ iss: `${base}${path}`, aud: "drawbridge-gateway", sub: "alice", iat: now, exp: now + 300 })
		.setProtectedHeader({ alg: "ES256", kid })
		.sign(signer);
}

async function code(p: Promise<unknown>): Promise<string> {
	try {
		await p;
		return "accepted";
	} catch (err) {
		assert.ok(err instanceof IdentityError, String(err));
		return err.code;
	}
}

test("an issuer whose JWKS URL redirects to another host: not followed, jwks-unavailable", async () => {
	mode = "redirect";
	const v = new TokenVerifier([issuerAt("/redirect")]);
	assert.equal(await code(v.verify(await mint("/redirect"))), "jwks-unavailable");
	assert.equal(elsewhereHits, 0);
});

test("a JWKS endpoint that hangs mid-body: jwks-unavailable within the timeout", async () => {
	mode = "hang";
	const v = new TokenVerifier([issuerAt("/hang")], { jwksTimeoutMs: 500 });
	const t0 = Date.now();
	assert.equal(await code(v.verify(await mint("/hang"))), "jwks-unavailable");
	assert.ok(Date.now() - t0 < 5_000);
});

test("a huge JWKS document: cut off at 1 MB, jwks-unavailable", async () => {
	mode = "huge";
	const v = new TokenVerifier([issuerAt("/huge")]);
	assert.equal(await code(v.verify(await mint("/huge"))), "jwks-unavailable");
});

test("a flood of unknown kids refetches at most once per cooldown", async () => {
	mode = "ok";
	const v = new TokenVerifier([issuerAt("/flood")], { jwksCooldownMs: 60_000 });
	assert.equal(await code(v.verify(await mint("/flood"))), "accepted");
	const before = hits["/flood"] ?? 0;
	const results = await Promise.all(Array.from({ length: 50 }, async (_, i) => code(v.verify(await mint("/flood", `random-${i}`)))));
	assert.ok(results.every((r) => r === "no-matching-key"), results.join());
	assert.ok((hits["/flood"] ?? 0) - before <= 1, `refetched ${(hits["/flood"] ?? 0) - before} times`);
});

test("a JWKS endpoint that fails fast is not hammered: one fetch per cooldown, and it recovers", async () => {
	mode = "500";
	const v = new TokenVerifier([issuerAt("/down")], { jwksCooldownMs: 1_000 });
	for (let i = 0; i < 30; i++) assert.equal(await code(v.verify(await mint("/down", `k${i}`))), "jwks-unavailable");
	assert.ok((hits["/down"] ?? 0) <= 2, `fetched ${hits["/down"]} times for 30 tokens`);
	mode = "ok";
	await new Promise((r) => setTimeout(r, 1_100));
	assert.equal(await code(v.verify(await mint("/down"))), "accepted");
});
