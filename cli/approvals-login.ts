/**
 * `drawbridge approvals login`: get the approver's OIDC ID token with the authorization-code flow and
 * PKCE (RFC 7636) through a loopback redirect (RFC 8252 §7.3: `http://127.0.0.1:<any port>/callback`),
 * and store it in the token file the other commands read (mode 0600).
 *
 * The CLI checks `state`, `nonce` and the audience only to catch mix-ups; the gateway verifies the
 * token for real (issuer, signature, audience, expiry) on every request.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, rename, writeFile } from "node:fs/promises";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import { dirname } from "node:path";
import { decodeJwt } from "jose";

export interface LoginOptions {
	issuer: string;
	clientId: string;
	clientSecret?: string;
	loginHint?: string;
	scopes: string[];
	tokenFile: string;
	timeoutMs: number;
	/** Where to tell the user to go (stderr). */
	announce: (url: string) => void;
}

export interface LoginResult {
	tokenFile: string;
	subject: string;
	email?: string;
	expiresAt: Date;
}

interface Discovery {
	issuer: string;
	authorization_endpoint: string;
	token_endpoint: string;
}

export class LoginError extends Error {}

const PAGE_OK = "<!doctype html><title>Drawbridge</title><p>Signed in. You can close this tab and return to the terminal.</p>";
const PAGE_FAIL = "<!doctype html><title>Drawbridge</title><p>Sign-in failed. See the terminal for details.</p>";

export async function oidcLogin(o: LoginOptions): Promise<LoginResult> {
	const issuer = o.issuer.replace(/\/+$/, "");
	// Redirects are never followed (the token request may carry the client secret).
	const discoveryRes = await fetch(`${issuer}/.well-known/openid-configuration`, { redirect: "error" }).catch((e: Error) => {
		throw new LoginError(`cannot reach the OIDC issuer ${issuer}: ${e.message}`);
	});
	if (!discoveryRes.ok) throw new LoginError(`OIDC discovery at ${issuer} answered HTTP ${discoveryRes.status}`);
	const discovery = (await discoveryRes.json()) as Discovery;
	if (typeof discovery.issuer !== "string" || discovery.issuer.replace(/\/+$/, "") !== issuer) throw new LoginError(`discovery names issuer ${discovery.issuer}, expected ${issuer}`);

	const verifier = randomBytes(32).toString("base64url");
	const challenge = createHash("sha256").update(verifier).digest("base64url");
	const state = randomBytes(16).toString("base64url");
	const nonce = randomBytes(16).toString("base64url");

	let redirectUri = "";
	const code = await new Promise<string>((resolve, reject) => {
		const server = createServer((req, res) => {
			const url = new URL(req.url ?? "/", "http://127.0.0.1");
			if (url.pathname !== "/callback") {
				res.writeHead(404).end();
				return;
			}
			const done = (err?: Error, value?: string) => {
				res.writeHead(err ? 400 : 200, { "content-type": "text/html; charset=utf-8", "cache-control": "no-store" }).end(err ? PAGE_FAIL : PAGE_OK);
				clearTimeout(timer);
				server.close();
				server.closeAllConnections();
				if (err) reject(err);
				else resolve(value!);
			};
			if (url.searchParams.get("state") !== state) return done(new LoginError("the sign-in response does not match this login (state mismatch)"));
			const error = url.searchParams.get("error");
			if (error) return done(new LoginError(`the identity provider refused: ${error} ${url.searchParams.get("error_description") ?? ""}`.trim()));
			const got = url.searchParams.get("code");
			if (!got) return done(new LoginError("the sign-in response carries no code"));
			done(undefined, got);
		});
		const timer = setTimeout(() => {
			server.close();
			server.closeAllConnections();
			reject(new LoginError(`no sign-in within ${Math.round(o.timeoutMs / 1000)} s`));
		}, o.timeoutMs);
		server.on("error", reject);
		server.listen(0, "127.0.0.1", () => {
			redirectUri = `http://127.0.0.1:${(server.address() as AddressInfo).port}/callback`;
			const auth = new URL(discovery.authorization_endpoint);
			auth.search = new URLSearchParams({
				client_id: o.clientId,
				response_type: "code",
				redirect_uri: redirectUri,
				scope: o.scopes.join(" "),
				state,
				nonce,
				code_challenge: challenge,
				code_challenge_method: "S256",
				...(o.loginHint ? { login_hint: o.loginHint } : {}),
			}).toString();
			o.announce(auth.href);
		});
	});

	const body = new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: redirectUri, code_verifier: verifier });
	const headers: Record<string, string> = { "content-type": "application/x-www-form-urlencoded", accept: "application/json" };
	if (o.clientSecret) {
		headers.authorization = `Basic ${Buffer.from(`${encodeURIComponent(o.clientId)}:${encodeURIComponent(o.clientSecret)}`).toString("base64")}`;
	} else {
		body.set("client_id", o.clientId);
	}
	const tokenRes = await fetch(discovery.token_endpoint, { method: "POST", headers, body, redirect: "error" }).catch((e: Error) => {
		throw new LoginError(`token exchange with ${discovery.token_endpoint} failed (no answer, or a redirect, which is never followed): ${e.message}`);
	});
	const tokens = (await tokenRes.json().catch(() => ({}))) as { id_token?: string; error?: string; error_description?: string };
	if (!tokenRes.ok || !tokens.id_token) {
		throw new LoginError(`token exchange failed: HTTP ${tokenRes.status} ${tokens.error ?? ""} ${tokens.error_description ?? ""}`.trim());
	}
	const claims = decodeJwt(tokens.id_token);
	if (claims.nonce !== nonce) throw new LoginError("the ID token's nonce does not match this login");
	const aud = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
	if (!aud.includes(o.clientId)) throw new LoginError(`the ID token is for ${aud.join(", ")}, not ${o.clientId}`);
	if (typeof claims.exp !== "number" || typeof claims.sub !== "string") throw new LoginError("the ID token has no exp or sub");

	await mkdir(dirname(o.tokenFile), { recursive: true, mode: 0o700 });
	const tmp = `${o.tokenFile}.${randomBytes(4).toString("hex")}.tmp`;
	await writeFile(tmp, `${tokens.id_token}\n`, { mode: 0o600 });
	await rename(tmp, o.tokenFile);
	return {
		tokenFile: o.tokenFile,
		subject: claims.sub,
		...(typeof claims.email === "string" ? { email: claims.email } : {}),
		expiresAt: new Date(claims.exp * 1000),
	};
}
