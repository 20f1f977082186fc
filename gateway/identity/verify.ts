/**
 * Token verification: every connection, every protocol. A token is accepted only when
 * - its `iss` names an issuer configured in the bundle (exact match),
 * - its `alg` is asymmetric and allowed for that issuer (never `none`, never HMAC: a public key must
 *   not double as a shared secret),
 * - its signature verifies against that issuer's JWKS (cached, refreshed on unknown `kid`),
 * - `aud` contains one of the issuer's audiences, `exp` is in the future, `nbf`/`iat` not in the future
 *   (within the issuer's clock tolerance, at most 300 s),
 * - the token's lifetime (`exp - iat`, or `exp - now` without `iat`) is at most the issuer's
 *   `maxTokenLifetimeSec` (default one day),
 * - `sub` is a non-empty string (RFC 7519; subjects are compared for self-approval and approval reuse).
 * An OIDC identity additionally:
 * - uses `email` as its user name only if the token does not say `email_verified` is anything but
 *   `true` (the Kubernetes apiserver's rule: an unverified address is anyone's),
 * - never carries groups in the reserved `system:` namespace: those belong to identities the
 *   Kubernetes issuer vouches for (service accounts), and are dropped from an OIDC groups claim;
 * - never has a user name or `sub` in that namespace: such a token is refused.
 */
import { request as httpsRequest } from "node:https";
import { request as httpRequest } from "node:http";
import {
	createLocalJWKSet,
	createRemoteJWKSet,
	customFetch,
	decodeJwt,
	decodeProtectedHeader,
	errors,
	type JWTPayload,
	type JWTVerifyGetKey,
	jwtVerify,
} from "jose";
import type { Identity, IssuerConfig } from "../config/bundle.ts";
import { IdentityError } from "./errors.ts";

const ASYMMETRIC_ALGS = new Set([
	"EdDSA",
	"Ed25519",
	"ES256",
	"ES384",
	"ES512",
	"RS256",
	"RS384",
	"RS512",
	"PS256",
	"PS384",
	"PS512",
]);

export interface TokenVerifierOptions {
	/** How long fetched JWKS stay fresh before a background refresh, ms (default 10 min). */
	jwksCacheMaxAgeMs?: number;
	/** Minimum time between JWKS refetches triggered by an unknown `kid`, ms (default 30 s). */
	jwksCooldownMs?: number;
	/** Timeout of one JWKS fetch, ms (default 5 s). */
	jwksTimeoutMs?: number;
	/** Clock for tests. */
	now?: () => Date;
}

/** Default `maxTokenLifetimeSec`: one day, for every issuer kind. */
export const DEFAULT_MAX_TOKEN_LIFETIME_SEC = 86_400;
/** Default and largest `clockToleranceSec`. */
export const DEFAULT_CLOCK_TOLERANCE_SEC = 30;
export const MAX_CLOCK_TOLERANCE_SEC = 300;

/**
 * Throws TypeError when an issuer's numeric limits are out of range, or its `jwksUri` could hand the
 * keys to anyone on the path (a bundle the operator should not have built).
 */
export function checkIssuerLimits(config: IssuerConfig): void {
	if (config.jwksUri !== undefined) checkJwksUri(config);
	const tol = config.clockToleranceSec;
	if (tol !== undefined && !(Number.isFinite(tol) && tol >= 0 && tol <= MAX_CLOCK_TOLERANCE_SEC)) {
		throw new TypeError(`issuer ${config.name}: clockToleranceSec must be in [0, ${MAX_CLOCK_TOLERANCE_SEC}] (got ${tol})`);
	}
	const life = config.maxTokenLifetimeSec;
	if (life !== undefined && !(Number.isFinite(life) && life > 0)) {
		throw new TypeError(`issuer ${config.name}: maxTokenLifetimeSec must be a positive number of seconds (got ${life})`);
	}
	for (const field of ["usernamePrefix", "groupsPrefix"] as const) {
		const prefix = config[field];
		if (prefix === undefined) continue;
		if (typeof prefix !== "string" || prefix.startsWith("system:") || config.kind !== "oidc") {
			throw new TypeError(`issuer ${config.name}: ${field} is for OIDC issuers and must be a string outside system: (got ${JSON.stringify(prefix)})`);
		}
	}
}

/**
 * The signing keys decide every identity, so they are fetched over HTTPS; plain HTTP only from this
 * machine (a loopback provider in development and tests). Over plain HTTP to another host, whoever is on
 * the path (or spoofs DNS) serves their own key and mints any identity the issuer may assert.
 */
function checkJwksUri(config: IssuerConfig): void {
	let url: URL;
	try {
		url = new URL(String(config.jwksUri));
	} catch {
		throw new TypeError(`issuer ${config.name}: jwksUri is not a URL`);
	}
	if (url.protocol === "https:") return;
	if (url.protocol === "http:" && isLoopbackHost(url.hostname)) return;
	throw new TypeError(`issuer ${config.name}: jwksUri must be https: (plain http: only on a loopback address), got ${url.protocol}//${url.host}`);
}

function isLoopbackHost(hostname: string): boolean {
	return hostname === "localhost" || hostname === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(hostname);
}

interface PreparedIssuer {
	config: IssuerConfig;
	keys: JWTVerifyGetKey;
	algorithms: string[];
}

export class TokenVerifier {
	readonly #issuers = new Map<string, PreparedIssuer>();
	readonly #now: () => Date;

	constructor(issuers: readonly IssuerConfig[], options: TokenVerifierOptions = {}) {
		this.#now = options.now ?? (() => new Date());
		for (const config of issuers) {
			checkIssuerLimits(config);
			// One `iss`, one meaning: a second entry would silently replace the first (its kind, keys and
			// audiences), e.g. an OIDC entry for the cluster's service-account issuer URL turning service
			// accounts into OIDC users.
			if (this.#issuers.has(config.issuer)) {
				throw new TypeError(`issuer ${config.name}: iss ${JSON.stringify(config.issuer)} is already configured by issuer ${this.#issuers.get(config.issuer)!.config.name}`);
			}
			const algorithms = config.algorithms.filter((a) => ASYMMETRIC_ALGS.has(a));
			if (algorithms.length === 0) {
				throw new TypeError(`issuer ${config.name}: no asymmetric algorithm allowed (got ${config.algorithms.join(",")})`);
			}
			let keys: JWTVerifyGetKey;
			if (config.jwks) {
				keys = createLocalJWKSet(config.jwks as Parameters<typeof createLocalJWKSet>[0]);
			} else if (config.jwksUri) {
				const cooldownMs = options.jwksCooldownMs ?? 30_000;
				const remote = createRemoteJWKSet(new URL(config.jwksUri), {
					cacheMaxAge: options.jwksCacheMaxAgeMs ?? 600_000,
					cooldownDuration: cooldownMs,
					timeoutDuration: options.jwksTimeoutMs ?? 5_000,
					[customFetch]: caFetch(config.caPem),
				});
				keys = guardedRemote(remote, config.name, cooldownMs);
			} else {
				throw new TypeError(`issuer ${config.name}: neither jwks nor jwksUri`);
			}
			this.#issuers.set(config.issuer, { config, keys, algorithms });
		}
	}

	/** Verify a token and map it to an Identity, or throw IdentityError. */
	async verify(token: string): Promise<Identity> {
		const trimmed = token.trim();
		let unverified: JWTPayload;
		let alg: string | undefined;
		try {
			alg = decodeProtectedHeader(trimmed).alg;
			unverified = decodeJwt(trimmed);
		} catch {
			throw new IdentityError("malformed", "credential is not a JWT (expected a token as the password)");
		}
		const iss = unverified.iss;
		const issuer = typeof iss === "string" ? this.#issuers.get(iss) : undefined;
		if (!issuer) {
			throw new IdentityError("unknown-issuer", `token issuer ${JSON.stringify(iss ?? null)} is not trusted by this gateway`);
		}
		if (!alg || !issuer.algorithms.includes(alg)) {
			throw new IdentityError(
				"algorithm-not-allowed",
				`token algorithm ${JSON.stringify(alg ?? null)} is not allowed for issuer ${issuer.config.name} (allowed: ${issuer.algorithms.join(", ")})`,
			);
		}
		let payload: JWTPayload;
		try {
			({ payload } = await jwtVerify(trimmed, issuer.keys, {
				issuer: issuer.config.issuer,
				audience: issuer.config.audiences,
				algorithms: issuer.algorithms,
				clockTolerance: issuer.config.clockToleranceSec ?? DEFAULT_CLOCK_TOLERANCE_SEC,
				currentDate: this.#now(),
				requiredClaims: ["exp", "sub"],
			}));
		} catch (err) {
			throw translateJoseError(err, issuer.config);
		}
		// jose checks `iat` only with maxTokenAge: refuse a token issued in the future ourselves.
		const tolerance = issuer.config.clockToleranceSec ?? DEFAULT_CLOCK_TOLERANCE_SEC;
		const nowSec = this.#now().getTime() / 1000;
		if (typeof payload.iat === "number" && payload.iat > nowSec + tolerance) {
			throw new IdentityError("not-yet-valid", "token is not valid yet (iat is in the future)");
		}
		// jose's maxTokenAge bounds now - iat, not what the issuer signed for: bound exp - iat ourselves.
		const maxLifetime = issuer.config.maxTokenLifetimeSec ?? DEFAULT_MAX_TOKEN_LIFETIME_SEC;
		const exp = payload.exp as number;
		const lifetime = typeof payload.iat === "number" ? exp - payload.iat : exp - nowSec;
		if (lifetime > maxLifetime + tolerance) {
			throw new IdentityError(
				"lifetime-too-long",
				`token is valid for ${formatSeconds(lifetime)}${typeof payload.iat === "number" ? " (exp - iat)" : " from now (no iat)"}; issuer ${issuer.config.name} accepts at most ${formatSeconds(maxLifetime)} (maxTokenLifetimeSec): request a shorter-lived token`,
			);
		}
		return toIdentity(payload, issuer.config);
	}
}

/**
 * Whether a value a client sent somewhere other than the password (a PostgreSQL user or database
 * name) is a token pasted into the wrong field: such a value is never echoed in an error, logged or
 * recorded. `presented` is the credential of the same attempt, if any.
 */
export function looksLikeToken(value: string, presented = ""): boolean {
	const v = value.trim();
	if (v.length >= 16 && presented.includes(v)) return true;
	// A compact JWS: base64url JSON header (`{"` is `eyJ`), payload, signature.
	return /eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\./.test(v);
}

function translateJoseError(err: unknown, issuer: IssuerConfig): IdentityError {
	if (err instanceof IdentityError) return err;
	if (err instanceof errors.JWTExpired) {
		return new IdentityError("expired", `token expired at ${expiryOf(err.payload)}`);
	}
	if (err instanceof errors.JWTClaimValidationFailed) {
		if (err.claim === "aud") {
			return new IdentityError(
				"audience-mismatch",
				`token audience does not include ${issuer.audiences.map((a) => JSON.stringify(a)).join(" or ")}`,
			);
		}
		if (err.claim === "nbf" || err.claim === "iat") {
			return new IdentityError("not-yet-valid", `token is not valid yet (${err.claim} is in the future)`);
		}
		return new IdentityError("claim-invalid", `token claim ${err.claim} is ${err.reason}`);
	}
	if (err instanceof errors.JOSEAlgNotAllowed) {
		return new IdentityError("algorithm-not-allowed", "token algorithm is not allowed");
	}
	if (err instanceof errors.JWSSignatureVerificationFailed) {
		return new IdentityError("bad-signature", `token signature does not verify against the keys of issuer ${issuer.name}`);
	}
	if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) {
		return new IdentityError("no-matching-key", `no key of issuer ${issuer.name} matches the token's kid`);
	}
	if (err instanceof errors.JWKSTimeout || err instanceof errors.JWKSInvalid) {
		return new IdentityError("jwks-unavailable", `signing keys of issuer ${issuer.name} are unavailable`);
	}
	if (err instanceof errors.JOSEError) {
		return new IdentityError("malformed", `token is invalid (${err.code})`);
	}
	if (err instanceof Error && /fetch|ECONNREFUSED|status|certificate/i.test(err.message)) {
		return new IdentityError("jwks-unavailable", `signing keys of issuer ${issuer.name} are unavailable`);
	}
	return new IdentityError("malformed", "token is invalid");
}

function formatSeconds(sec: number): string {
	const s = Math.round(sec);
	if (s >= 86_400 && s % 3600 === 0) return `${s / 3600} h (${s} s)`;
	return s >= 3600 ? `${(s / 3600).toFixed(1)} h (${s} s)` : `${s} s`;
}

function expiryOf(payload: JWTPayload): string {
	return typeof payload.exp === "number" ? new Date(payload.exp * 1000).toISOString() : "an unknown time";
}

function toIdentity(payload: JWTPayload, issuer: IssuerConfig): Identity {
	const claims = payload as Record<string, unknown>;
	if (typeof payload.sub !== "string" || payload.sub === "") {
		throw new IdentityError("claim-invalid", "token claim sub is not a non-empty string");
	}
	const subject = payload.sub;
	const groupsClaim = claims[issuer.groupsClaim ?? "groups"];
	const groups = Array.isArray(groupsClaim) ? groupsClaim.filter((g): g is string => typeof g === "string") : [];
	const exp = new Date((payload.exp ?? 0) * 1000);
	const base = {
		issuer: issuer.issuer,
		issuerKind: issuer.kind,
		subject,
		tokenExpiresAt: exp,
		claims,
		...(typeof payload.jti === "string" ? { tokenId: payload.jti } : {}),
	};
	switch (issuer.kind) {
		case "kubernetes": {
			// sub: system:serviceaccount:<namespace>:<name>
			const match = /^system:serviceaccount:([^:]+):([^:]+)$/.exec(subject);
			if (!match) throw new IdentityError("claim-invalid", "kubernetes token subject is not a service account");
			const [, namespace, name] = match as unknown as [string, string, string];
			return {
				...base,
				username: subject,
				groups: ["system:serviceaccounts", `system:serviceaccounts:${namespace}`, "system:authenticated"],
				serviceAccount: { namespace, name },
			};
		}
		case "drawbridge": {
			const grant = claims.grant;
			if (typeof grant !== "string" || !grant.includes("/")) {
				throw new IdentityError("claim-invalid", "drawbridge token has no grant claim");
			}
			const sa = claims.serviceAccount as { namespace?: unknown; name?: unknown } | undefined;
			return {
				...base,
				username: typeof claims.username === "string" ? claims.username : subject,
				groups,
				grant,
				...(typeof claims.grantSubjects === "string" ? { grantSubjects: claims.grantSubjects } : {}),
				...(sa && typeof sa.namespace === "string" && typeof sa.name === "string"
					? { serviceAccount: { namespace: sa.namespace, name: sa.name } }
					: {}),
			};
		}
		case "oidc": {
			const nameClaim = claims[issuer.usernameClaim ?? "sub"];
			if (typeof nameClaim !== "string" || nameClaim === "") {
				throw new IdentityError("claim-invalid", `token has no ${issuer.usernameClaim ?? "sub"} claim`);
			}
			if (issuer.usernameClaim === "email" && "email_verified" in claims && claims.email_verified !== true) {
				throw new IdentityError("claim-invalid", "token's email is not verified (email_verified is not true): it cannot be the user name");
			}
			// `system:` names belong to Kubernetes (service accounts, components); an OIDC provider that
			// lets a user pick `sub` or `preferred_username` must not let them become one on any data path
			// (User subjects spelled `system:serviceaccount:ns:name`, approvals' same-person check).
			for (const [what, value] of [["user name", nameClaim], ["sub", subject]] as const) {
				if (value.startsWith("system:")) {
					throw new IdentityError(
						"claim-invalid",
						`token's ${what} ${JSON.stringify(value.slice(0, 100))} is in the reserved system: namespace, which only the Kubernetes issuer vouches for`,
					);
				}
			}
			// A name is impersonated on Kubernetes as an HTTP header value, and HTTP drops the spaces and
			// tabs around it: ` alice` or `alice\t` became alice, ` system:admin` system:admin.
			if (!plainName(nameClaim)) {
				throw new IdentityError(
					"claim-invalid",
					`token's user name ${JSON.stringify(nameClaim.slice(0, 100))} has surrounding whitespace or control characters`,
				);
			}
			const userPrefix = issuer.usernamePrefix ?? "";
			const groupPrefix = issuer.groupsPrefix ?? "";
			return {
				...base,
				username: `${userPrefix}${nameClaim}`,
				groups: groups.filter((g) => plainName(g) && !g.startsWith("system:")).map((g) => `${groupPrefix}${g}`),
			};
		}
	}
}

/** Not empty, no whitespace at either end, no control characters (C0, DEL, C1) anywhere. */
function plainName(name: string): boolean {
	return name !== "" && name.trim() === name && !/[\u0000-\u001f\u007f-\u009f]/.test(name);
}

/**
 * A remote JWKS that fails closed as `jwks-unavailable` (a redirect, an error status, a timeout, a
 * body over 1 MB, invalid JSON), and after a failed fetch does not fetch again for one cooldown:
 * jose backs off only after a *successful* fetch, so an endpoint that fails fast was asked once per
 * token presented, by anyone. Tokens whose `kid` the cached keys hold are still verified meanwhile.
 */
function guardedRemote(remote: ReturnType<typeof createRemoteJWKSet>, name: string, cooldownMs: number): JWTVerifyGetKey {
	let failedAt = Number.NEGATIVE_INFINITY;
	return async (header, token) => {
		const known = header.kid === undefined || (remote.jwks()?.keys ?? []).some((k) => k.kid === header.kid);
		const wouldFetch = !remote.fresh || !known;
		if (wouldFetch && Date.now() - failedAt < cooldownMs) {
			throw new IdentityError("jwks-unavailable", `signing keys of issuer ${name} are unavailable (the last fetch failed; retried after ${Math.ceil(cooldownMs / 1000)} s)`);
		}
		try {
			return await remote(header, token);
		} catch (err) {
			if (err instanceof errors.JWKSNoMatchingKey || err instanceof errors.JWKSMultipleMatchingKeys) throw err;
			failedAt = Date.now();
			throw new IdentityError("jwks-unavailable", `signing keys of issuer ${name} are unavailable`);
		}
	};
}

/** A fetch for jose that trusts an extra CA (e.g. a kube-apiserver's) and never follows redirects. */
function caFetch(caPem: string | undefined) {
	return (url: string, options: { headers: Headers; signal: AbortSignal }): Promise<Response> =>
		new Promise((resolve, reject) => {
			const target = new URL(url);
			const requester = target.protocol === "https:" ? httpsRequest : httpRequest;
			const req = requester(
				target,
				{
					method: "GET",
					headers: Object.fromEntries(options.headers.entries()),
					signal: options.signal,
					...(caPem ? { ca: caPem } : {}),
				},
				(res) => {
					const chunks: Buffer[] = [];
					let size = 0;
					res.on("data", (c: Buffer) => {
						size += c.length;
						if (size > 1_000_000) {
							req.destroy(new Error("JWKS response too large"));
							return;
						}
						chunks.push(c);
					});
					res.on("end", () => {
						resolve(new Response(Buffer.concat(chunks), { status: res.statusCode ?? 500 }));
					});
					res.on("error", reject);
				},
			);
			req.on("error", reject);
			req.end();
		});
}
