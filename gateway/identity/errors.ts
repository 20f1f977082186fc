/**
 * Identity errors: untrusted input (a token) that failed verification. Every data path converts
 * these at its edge: PostgreSQL FATAL 28P01/28000, SSH disconnect, Kubernetes 401 Status.
 * The message never contains the token itself.
 */
export type IdentityErrorCode =
	/** Not a compact JWS at all. */
	| "malformed"
	/** `iss` names no issuer in the bundle (deny by default). */
	| "unknown-issuer"
	/** `alg` is none, HMAC, or not in the issuer's allowed list. */
	| "algorithm-not-allowed"
	| "bad-signature"
	| "expired"
	/** `exp - iat` (or `exp - now` without `iat`) exceeds the issuer's `maxTokenLifetimeSec`. */
	| "lifetime-too-long"
	| "not-yet-valid"
	| "audience-mismatch"
	| "claim-invalid"
	/** The issuer's JWKS could not be fetched (fail closed). */
	| "jwks-unavailable"
	/** No key in the JWKS matches the token's `kid`/`alg`. */
	| "no-matching-key";

export class IdentityError extends Error {
	override readonly name = "IdentityError";
	constructor(
		readonly code: IdentityErrorCode,
		message: string,
	) {
		super(message);
	}
}

/** Human-readable catalogue, kept in step with the code union by a test. */
export const IDENTITY_ERROR_CATALOGUE: Record<IdentityErrorCode, string> = {
	malformed: "The credential is not a JSON Web Token.",
	"unknown-issuer": "The token's issuer is not configured on this gateway.",
	"algorithm-not-allowed": "The token's signing algorithm is not allowed for its issuer.",
	"bad-signature": "The token's signature does not verify against the issuer's keys.",
	expired: "The token has expired.",
	"lifetime-too-long": "The token is valid for longer than this gateway accepts from its issuer (maxTokenLifetimeSec).",
	"not-yet-valid": "The token is not valid yet (nbf/iat in the future).",
	"audience-mismatch": "The token was issued for another audience.",
	"claim-invalid": "A required claim is missing or invalid.",
	"jwks-unavailable": "The issuer's signing keys could not be fetched.",
	"no-matching-key": "No signing key of the issuer matches the token.",
};
