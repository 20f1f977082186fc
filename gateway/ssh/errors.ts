/**
 * The SSH component's single error base (STYLE 5). `TypeError` stays for our own misuse; everything
 * caused by untrusted input (keys, certificates, tokens, requests) is an `SshGatewayError` with a typed
 * code, converted at the edge into an SSH banner + disconnect, or a stderr line + exit status.
 */

export type SshErrorCode =
	/** Certificate or key blob is not well formed. */
	| "cert-malformed"
	/** Key type we do not accept (DSA, SHA-1 RSA CA signatures, unknown curves). */
	| "cert-unsupported"
	/** Host certificate presented as a user certificate. */
	| "cert-wrong-type"
	/** Signed by a key that is not a configured CA. */
	| "cert-untrusted-ca"
	/** CA signature does not verify. */
	| "cert-bad-signature"
	| "cert-not-yet-valid"
	| "cert-expired"
	/** Login not among the certificate's principals (or the certificate has none). */
	| "cert-principal"
	/** Unknown critical option: OpenSSH semantics say refuse. */
	| "cert-critical-option"
	/** `source-address` critical option does not cover the client. */
	| "cert-source-address"
	/** The user's signature over the session (proof of key possession) does not verify. */
	| "auth-bad-signature"
	/** Method we do not offer (`none`, `hostbased`): refused silently with the list of usable ones. */
	| "auth-method"
	/** Token verification failed. */
	| "auth-token"
	/** Authenticated, but no active grant for the requested connection / login. */
	| "no-grant"
	/** Target connection unknown or ambiguous. */
	| "unknown-connection"
	/** Target host key not among the Connection's pinned keys. */
	| "upstream-host-key"
	/** Upstream connect / auth failed. */
	| "upstream";

export class SshGatewayError extends Error {
	override name = "SshGatewayError";
	readonly code: SshErrorCode;

	constructor(code: SshErrorCode, message: string) {
		super(message);
		this.code = code;
	}
}

/** Catalogue of codes, what the agent sees, kept in step with the union and README.md by a test. */
export const SSH_ERROR_CATALOGUE: Record<SshErrorCode, string> = {
	"cert-malformed": "Banner + auth failure: the certificate or key blob is not well formed.",
	"cert-unsupported": "Banner + auth failure: key type refused (plain public keys, DSA, SHA-1 RSA CA signatures, small RSA).",
	"cert-wrong-type": "Banner + auth failure: a host certificate was presented for user authentication.",
	"cert-untrusted-ca": "Banner + auth failure: the certificate's CA is not trusted by this gateway.",
	"cert-bad-signature": "Banner + auth failure: the CA signature does not verify.",
	"cert-not-yet-valid": "Banner + auth failure: the certificate is not valid yet.",
	"cert-expired": "Banner + auth failure: the certificate has expired.",
	"cert-principal": "Banner + auth failure: the login is not a principal of the certificate (or it has none).",
	"cert-critical-option": "Banner + auth failure: the certificate carries a critical option the gateway does not understand.",
	"cert-source-address": "Banner + auth failure: the client address is outside the certificate's source-address.",
	"auth-bad-signature": "Banner + auth failure: the session signature does not verify with the certified key.",
	"auth-method": "Auth failure without banner: the method (none, hostbased) is not offered.",
	"auth-token": "Banner + auth failure: the token did not verify.",
	"no-grant": "Banner + disconnect: authenticated, but no active grant allows this connection and login.",
	"unknown-connection": "Banner + disconnect: the connection named in the user is unknown or ambiguous.",
	"upstream-host-key": "stderr + exit 255: the target's host key is not pinned by the Connection.",
	upstream: "stderr + exit 255 (or disconnect): the target is unreachable or refused the gateway.",
};
