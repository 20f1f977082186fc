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
	| "upstream"
	/** The grant does not allow this channel or command. */
	| "not-allowed";

export class SshGatewayError extends Error {
	override name = "SshGatewayError";
	readonly code: SshErrorCode;

	constructor(code: SshErrorCode, message: string) {
		super(message);
		this.code = code;
	}
}
