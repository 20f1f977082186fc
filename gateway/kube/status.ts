/**
 * The Kubernetes component's error base and its conversion to the peer's native form: a
 * `meta/v1 Status` object (what kubectl prints as `Error from server (Forbidden): ...`).
 */

export type KubeErrorCode =
	/** Path the gateway refuses to interpret (dot segments, encoded slashes, empty segments). → 400 BadRequest */
	| "bad-request"
	/** No or unverifiable bearer token. → 401 Unauthorized */
	| "unauthenticated"
	/** Connection prefix names no Kubernetes connection, or it is ambiguous. → 404 NotFound */
	| "unknown-connection"
	/** Identity holds no active grant on the connection. → 403 Forbidden */
	| "no-grant"
	/** Grant does not cover verb / resource / namespace. → 403 Forbidden */
	| "out-of-scope"
	/** GuardrailPolicy blocked the request. → 403 Forbidden */
	| "blocked"
	/** Approval denied, expired or cancelled. → 403 Forbidden */
	| "approval-refused"
	/** Approvals unavailable. → 503 ServiceUnavailable */
	| "approval-unavailable"
	/** kube-apiserver unreachable or TLS failure. → 502 */
	| "upstream"
	/** Recording could not start (fail closed). → 503 */
	| "recording"
	/** The gateway is draining for shutdown: no new requests. → 503 ServiceUnavailable + Retry-After */
	| "shutting-down"
	/** A body held for approval is larger than MAX_HELD_BODY. → 413 RequestEntityTooLarge */
	| "too-large";

const HTTP: Record<KubeErrorCode, [number, string]> = {
	"bad-request": [400, "BadRequest"],
	unauthenticated: [401, "Unauthorized"],
	"unknown-connection": [404, "NotFound"],
	"no-grant": [403, "Forbidden"],
	"out-of-scope": [403, "Forbidden"],
	blocked: [403, "Forbidden"],
	"approval-refused": [403, "Forbidden"],
	"approval-unavailable": [503, "ServiceUnavailable"],
	upstream: [502, "ServiceUnavailable"],
	recording: [503, "ServiceUnavailable"],
	"shutting-down": [503, "ServiceUnavailable"],
	"too-large": [413, "RequestEntityTooLarge"],
};

export class KubeGatewayError extends Error {
	override name = "KubeGatewayError";
	readonly code: KubeErrorCode;

	constructor(code: KubeErrorCode, message: string) {
		super(message);
		this.code = code;
	}

	get httpStatus(): number {
		return HTTP[this.code][0];
	}

	/** Status object; `details.kind` is `drawbridge` so clients can tell it from apiserver errors. */
	toStatus(): Record<string, unknown> {
		const [code, reason] = HTTP[this.code];
		return {
			kind: "Status",
			apiVersion: "v1",
			metadata: {},
			status: "Failure",
			message: `drawbridge: ${this.message}`,
			reason,
			details: { kind: "drawbridge", causes: [{ reason: this.code, message: this.message }] },
			code,
		};
	}
}

/** Catalogue of codes, kept in step with the union and README.md by a test. */
export const KUBE_ERROR_CATALOGUE: Record<KubeErrorCode, string> = {
	"bad-request": "400 BadRequest: the path has dot segments, empty segments, percent-encoding or is not origin-form.",
	unauthenticated: "401 Unauthorized: no bearer token, or it did not verify.",
	"unknown-connection": "404 NotFound: no such Kubernetes connection, or none/several granted without a /k8s/<connection> prefix.",
	"no-grant": "403 Forbidden: no active grant for this identity on the connection.",
	"out-of-scope": "403 Forbidden: no active grant covers the verb, resource or namespace.",
	blocked: "403 Forbidden: a GuardrailPolicy rule blocks the request (or the policy could not be evaluated).",
	"approval-refused": "403 Forbidden: the approval was denied, expired or cancelled.",
	"approval-unavailable": "503 ServiceUnavailable: approval required but the approvals service failed.",
	upstream: "502: the kube-apiserver is unreachable or the TLS connection to it failed.",
	recording: "503 ServiceUnavailable: the recording could not start (fail closed).",
	"shutting-down":
		"503 ServiceUnavailable + Retry-After + Connection: close: the gateway is draining for shutdown and takes no new requests.",
	"too-large": "413 RequestEntityTooLarge: a request held for approval carries more than 3 MiB (the apiserver's default limit).",
};

export function httpStatusOf(code: KubeErrorCode): number {
	return HTTP[code][0];
}
