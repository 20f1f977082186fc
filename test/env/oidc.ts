// An OpenID Provider for tests: the certified `oidc-provider` package, in the test process, over
// plain HTTP on loopback. ID tokens come out of a real authorization-code flow (with PKCE) that the
// harness drives with fetch; the login/consent interaction completes automatically for the requested
// test user, so tokens are signed by the provider and verify against its discovery document + JWKS.
import { generateKeyPairSync, randomBytes, createHash } from "node:crypto";
import { type IncomingMessage, type ServerResponse, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import Provider from "oidc-provider";
import { LogBuffer } from "./process.ts";

export interface OidcUser {
	email?: string;
	name?: string;
	groups?: string[];
}

export interface OidcOptions {
	/** Test users by login name (the `sub`). Default: see DEFAULT_OIDC_USERS. */
	users?: Record<string, OidcUser>;
}

export interface IdTokenOptions {
	/** Overrides the user's groups for this token. */
	groups?: string[];
	/** `aud` (the client_id the token is issued to). Default "drawbridge". */
	audience?: string;
	/** Lifetime in seconds. Default 3600. */
	expiresIn?: number;
	/** Nonce to embed. Default random. */
	nonce?: string;
}

export interface OidcHandle {
	/** Issuer, e.g. http://127.0.0.1:PORT (no trailing slash). */
	issuer: string;
	port: number;
	discoveryUrl: string;
	jwksUri: string;
	users: Record<string, OidcUser>;
	/** Default client: id "drawbridge", secret in clientSecret (redirect http://127.0.0.1/callback). */
	clientId: string;
	clientSecret: string;
	/** Registers (or replaces) a client; returns its secret. */
	registerClient(clientId: string, metadata?: Record<string, unknown>): string;
	/** A fresh ID token for `user` from a real authorization-code flow. */
	idToken(user: string, opts?: IdTokenOptions): Promise<string>;
	/** The oidc-provider instance, for tests that need more. */
	provider: Provider;
	stop(): Promise<void>;
	logs(): string;
}

export const DEFAULT_OIDC_USERS: Record<string, OidcUser> = {
	alice: { name: "Alice Admin", email: "alice@example.com", groups: ["platform-admins", "support-leads"] },
	bob: { name: "Bob Builder", email: "bob@example.com", groups: ["developers"] },
	sam: { name: "Sam Support", email: "sam@example.com", groups: ["support-leads"] },
	lee: { name: "Lee Oncall", email: "lee@example.com", groups: ["oncall", "developers"] },
	noor: { name: "Noor Auditor", email: "noor@example.com", groups: ["auditors"] },
	priya: { name: "Priya Platform", email: "priya@example.com", groups: ["platform-admins"] },
};

const REDIRECT = "http://127.0.0.1/callback";

/** A small in-memory adapter (oidc-provider's model storage) that also lets us add clients at runtime. */
function makeAdapter(store: Map<string, Record<string, unknown>>) {
	return class Adapter {
		constructor(readonly model: string) {}
		key(id: string) {
			return `${this.model}:${id}`;
		}
		async upsert(id: string, payload: Record<string, unknown>) {
			store.set(this.key(id), payload);
			if (payload.uid) store.set(`uid:${payload.uid}`, { id });
			if (payload.userCode) store.set(`userCode:${payload.userCode}`, { id });
		}
		async find(id: string) {
			return store.get(this.key(id));
		}
		async findByUid(uid: string) {
			const ref = store.get(`uid:${uid}`);
			return ref ? store.get(this.key(String(ref.id))) : undefined;
		}
		async findByUserCode(code: string) {
			const ref = store.get(`userCode:${code}`);
			return ref ? store.get(this.key(String(ref.id))) : undefined;
		}
		async consume(id: string) {
			const p = store.get(this.key(id));
			if (p) p.consumed = Math.floor(Date.now() / 1000);
		}
		async destroy(id: string) {
			store.delete(this.key(id));
		}
		async revokeByGrantId(grantId: string) {
			for (const [k, v] of store) if (v.grantId === grantId) store.delete(k);
		}
	};
}

export async function startOidc(options: OidcOptions = {}): Promise<OidcHandle> {
	const users: Record<string, OidcUser> = structuredClone(options.users ?? DEFAULT_OIDC_USERS);
	const logs = new LogBuffer();
	const store = new Map<string, Record<string, unknown>>();
	// Per-call overrides; idToken() calls are serialised so these are unambiguous.
	let override: { user: string; groups?: string[]; ttl: number } | undefined;

	let handler: (req: IncomingMessage, res: ServerResponse) => void = (_req, res) => {
		res.writeHead(503).end();
	};
	const server = createServer((req, res) => handler(req, res));
	await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
	const port = (server.address() as AddressInfo).port;
	const issuer = `http://127.0.0.1:${port}`;

	const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
	const jwk = { ...privateKey.export({ format: "jwk" }), kid: `test-${randomBytes(4).toString("hex")}`, use: "sig", alg: "RS256" };

	const provider = new Provider(issuer, {
		adapter: makeAdapter(store),
		jwks: { keys: [jwk as never] },
		cookies: { keys: [randomBytes(32).toString("hex")] },
		features: { devInteractions: { enabled: false } },
		conformIdTokenClaims: false,
		scopes: ["openid", "email", "profile", "groups", "offline_access"],
		claims: { openid: ["sub"], email: ["email", "email_verified"], profile: ["name"], groups: ["groups"] },
		clients: [],
		ttl: {
			IdToken: () => override?.ttl ?? 3600,
			AccessToken: 3600,
			AuthorizationCode: 60,
			Interaction: 600,
			Session: 3600,
			Grant: 3600,
		},
		async findAccount(_ctx: unknown, sub: string) {
			const u = users[sub] ?? (override?.user === sub ? {} : undefined);
			if (!u) return undefined;
			return {
				accountId: sub,
				async claims() {
					const o = override;
					const groups = o?.user === sub && o.groups ? o.groups : (u.groups ?? []);
					return {
						sub,
						email: u.email ?? `${sub}@example.com`,
						email_verified: true,
						name: u.name ?? sub,
						groups,
					};
				},
			};
		},
		renderError(ctx: { type: string; body: unknown }, out: unknown) {
			ctx.type = "application/json";
			ctx.body = out;
		},
	});
	provider.on("server_error", (_ctx: unknown, err: Error) => logs.push(`[oidc] server_error ${err.stack ?? err}\n`));
	provider.on("grant.error", (_ctx: unknown, err: Error) => logs.push(`[oidc] grant.error ${err}\n`));
	provider.on("authorization.error", (_ctx: unknown, err: Error) => logs.push(`[oidc] authorization.error ${err}\n`));

	const registerClient = (clientId: string, metadata: Record<string, unknown> = {}): string => {
		const secret = `secret-${clientId}-${randomBytes(8).toString("hex")}`;
		store.set(`Client:${clientId}`, {
			client_id: clientId,
			client_secret: secret,
			application_type: "native",
			redirect_uris: [REDIRECT],
			grant_types: ["authorization_code", "refresh_token"],
			response_types: ["code"],
			token_endpoint_auth_method: "client_secret_basic",
			...metadata,
		});
		return secret;
	};
	const clientId = "drawbridge";
	const clientSecret = registerClient(clientId);
	const secrets = new Map<string, string>([[clientId, clientSecret]]);

	// Auto-completing interaction: log in as login_hint, grant the requested OIDC scopes.
	const callback = provider.callback();
	handler = (req, res) => {
		logs.push(`${new Date().toISOString()} ${req.method} ${req.url}\n`);
		if (req.url?.startsWith("/interaction/")) {
			(async () => {
				const details = await provider.interactionDetails(req, res);
				const accountId = String(details.params.login_hint ?? "");
				if (!accountId) throw new Error("login_hint required by the test provider");
				const grant = new provider.Grant({ accountId, clientId: String(details.params.client_id) });
				grant.addOIDCScope(String(details.params.scope ?? "openid"));
				const grantId = await grant.save();
				await provider.interactionFinished(
					req,
					res,
					{ login: { accountId }, consent: { grantId } },
					{ mergeWithLastSubmission: false },
				);
			})().catch((err: Error) => {
				logs.push(`[oidc] interaction failed: ${err.stack}\n`);
				if (!res.headersSent) res.writeHead(500, { "content-type": "text/plain" });
				res.end(String(err));
			});
			return;
		}
		callback(req, res);
	};

	let chain: Promise<unknown> = Promise.resolve();
	const idToken = (user: string, o: IdTokenOptions = {}): Promise<string> => {
		const run = async () => {
			const aud = o.audience ?? clientId;
			if (!secrets.has(aud)) secrets.set(aud, registerClient(aud));
			override = { user, ttl: o.expiresIn ?? 3600, ...(o.groups ? { groups: o.groups } : {}) };
			try {
				return await codeFlow(issuer, aud, secrets.get(aud)!, user, o.nonce ?? randomBytes(8).toString("hex"));
			} finally {
				override = undefined;
			}
		};
		const p = chain.then(run, run);
		chain = p.catch(() => {});
		return p;
	};

	return {
		issuer,
		port,
		discoveryUrl: `${issuer}/.well-known/openid-configuration`,
		jwksUri: `${issuer}/jwks`,
		users,
		clientId,
		clientSecret,
		registerClient(id, metadata) {
			const s = registerClient(id, metadata);
			secrets.set(id, s);
			return s;
		},
		idToken,
		provider,
		async stop() {
			server.closeAllConnections();
			await new Promise<void>((resolve) => server.close(() => resolve()));
		},
		logs: () => logs.text(),
	};
}

/** Drives /auth → /interaction → /auth/<uid> → redirect with code → /token, keeping cookies by hand. */
async function codeFlow(issuer: string, client: string, secret: string, user: string, nonce: string): Promise<string> {
	const verifier = randomBytes(32).toString("base64url");
	const challenge = createHash("sha256").update(verifier).digest("base64url");
	const state = randomBytes(8).toString("hex");
	const auth = new URL(`${issuer}/auth`);
	auth.search = new URLSearchParams({
		client_id: client,
		response_type: "code",
		redirect_uri: REDIRECT,
		scope: "openid email profile groups",
		login_hint: user,
		nonce,
		state,
		code_challenge: challenge,
		code_challenge_method: "S256",
		prompt: "login consent",
	}).toString();
	const cookies = new Map<string, string>();
	let next = auth.toString();
	for (let hop = 0; hop < 10; hop++) {
		const res = await fetch(next, {
			redirect: "manual",
			headers: { cookie: [...cookies].map(([k, v]) => `${k}=${v}`).join("; ") },
		});
		for (const c of res.headers.getSetCookie()) {
			const [kv] = c.split(";");
			const i = kv!.indexOf("=");
			cookies.set(kv!.slice(0, i), kv!.slice(i + 1));
		}
		const loc = res.headers.get("location");
		if (res.status < 300 || res.status >= 400 || !loc) {
			throw new Error(`OIDC authorization flow stopped at ${next}: ${res.status} ${await res.text()}`);
		}
		await res.arrayBuffer();
		const target = new URL(loc, next);
		if (target.toString().startsWith(REDIRECT)) {
			const err = target.searchParams.get("error");
			if (err) throw new Error(`OIDC authorization failed: ${err} ${target.searchParams.get("error_description") ?? ""}`);
			if (target.searchParams.get("state") !== state) throw new Error("OIDC state mismatch");
			const code = target.searchParams.get("code");
			if (!code) throw new Error(`OIDC redirect without code: ${target}`);
			const tok = await fetch(`${issuer}/token`, {
				method: "POST",
				headers: {
					"content-type": "application/x-www-form-urlencoded",
					authorization: `Basic ${Buffer.from(`${encodeURIComponent(client)}:${encodeURIComponent(secret)}`).toString("base64")}`,
				},
				body: new URLSearchParams({ grant_type: "authorization_code", code, redirect_uri: REDIRECT, code_verifier: verifier }),
			});
			const body = (await tok.json()) as { id_token?: string; error?: string; error_description?: string };
			if (!body.id_token) throw new Error(`OIDC token endpoint: ${tok.status} ${body.error ?? ""} ${body.error_description ?? ""}`);
			return body.id_token;
		}
		next = target.toString();
	}
	throw new Error("OIDC authorization flow: too many redirects");
}
