/**
 * The policy component's one error base (STYLE 5). Policy functions decide rather than throw:
 * untrusted input (SQL, commands, requests) always yields a verdict. Errors are reserved for
 * configuration that cannot be compiled (a bundle the gateway must refuse); `TypeError` marks
 * our own misuse.
 */
export type PolicyErrorCode =
	/** A MaskRule `patterns` entry is not a valid JavaScript regular expression. */
	| "invalid-pattern"
	/** The bundle's masking key is too short for the `hash` strategy (16 bytes minimum). */
	| "invalid-masking-key";

export const POLICY_ERROR_CODES: readonly PolicyErrorCode[] = ["invalid-pattern", "invalid-masking-key"];

export class PolicyError extends Error {
	readonly code: PolicyErrorCode;

	constructor(code: PolicyErrorCode, message: string) {
		super(message);
		this.name = "PolicyError";
		this.code = code;
	}
}
