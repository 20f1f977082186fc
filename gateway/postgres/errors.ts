/**
 * One error base for the PostgreSQL data path (STYLE 5). Untrusted input raises `PgGatewayError`
 * with a typed `code`; our own misuse raises `TypeError`. At the edge every `PgGatewayError` becomes
 * an ErrorResponse with the catalogue's SQLSTATE and severity (see `toErrorFields`).
 */

/** The catalogue: code → SQLSTATE and severity used when the error reaches the client. */
export const PG_ERROR_CATALOGUE = {
	/** Malformed or out-of-order frontend message. */
	protocol_violation: { sqlstate: "08P01", severity: "FATAL" },
	/** A message larger than the configured cap. */
	message_too_large: { sqlstate: "08P01", severity: "FATAL" },
	/** StartupMessage with a protocol version we do not speak. */
	unsupported_protocol: { sqlstate: "0A000", severity: "FATAL" },
	/** Cleartext password requested on a connection without TLS. */
	tls_required: { sqlstate: "28000", severity: "FATAL" },
	/** The token was missing, malformed, badly signed, expired, or for another audience. */
	invalid_token: { sqlstate: "28P01", severity: "FATAL" },
	/** A valid identity with no active grant on the requested Connection. */
	no_grant: { sqlstate: "28000", severity: "FATAL" },
	/** The database name names no PostgreSQL Connection. */
	unknown_connection: { sqlstate: "3D000", severity: "FATAL" },
	/** The gateway could not reach or authenticate to the real server. */
	upstream_unavailable: { sqlstate: "08006", severity: "FATAL" },
	/** The real server sent something we cannot relay. */
	upstream_protocol: { sqlstate: "08P01", severity: "FATAL" },
	/** The grant ended (expired or revoked) during the session. */
	grant_ended: { sqlstate: "57P01", severity: "FATAL" },
	/** The recorder refused to open a session, or stopped taking its events (fail closed). */
	recording_unavailable: { sqlstate: "53000", severity: "FATAL" },
	/** Statement blocked by a guardrail or the grant's access level. */
	statement_blocked: { sqlstate: "42501", severity: "ERROR" },
	/** Statement could not be parsed: blocked, never passed. */
	statement_unparseable: { sqlstate: "42601", severity: "ERROR" },
	/** A held statement was denied or its approval expired. */
	approval_denied: { sqlstate: "42501", severity: "ERROR" },
	/** No traffic in either direction for `idleTimeoutMs`. */
	idle_timeout: { sqlstate: "57P05", severity: "FATAL" },
	/** The gateway is shutting down. */
	shutdown: { sqlstate: "57P01", severity: "FATAL" },
	/** The listener's `maxConnections` is reached: refused at startup, before any authentication. */
	too_many_connections: { sqlstate: "53300", severity: "FATAL" },
	/** The gateway is draining for shutdown: new connections are refused, live sessions go on. */
	draining: { sqlstate: "57P03", severity: "FATAL" },
	/** The server reads SQL text differently from the gateway (standard_conforming_strings off, a client-only encoding). */
	unsafe_parser_setting: { sqlstate: "0A000", severity: "FATAL" },
} as const satisfies Record<string, { sqlstate: string; severity: "ERROR" | "FATAL" }>;

export type PgErrorCode = keyof typeof PG_ERROR_CATALOGUE;

export class PgGatewayError extends Error {
	override readonly name = "PgGatewayError";
	readonly code: PgErrorCode;
	/** Overrides the catalogue's SQLSTATE (e.g. a policy verdict's own). */
	readonly sqlstate: string;
	readonly severity: "ERROR" | "FATAL";
	readonly detail: string | undefined;
	readonly hint: string | undefined;

	constructor(code: PgErrorCode, message: string, opts: { sqlstate?: string; detail?: string; hint?: string } = {}) {
		super(message);
		this.code = code;
		this.sqlstate = opts.sqlstate ?? PG_ERROR_CATALOGUE[code].sqlstate;
		this.severity = PG_ERROR_CATALOGUE[code].severity;
		this.detail = opts.detail;
		this.hint = opts.hint;
	}
}

export function isPgGatewayError(e: unknown): e is PgGatewayError {
	return e instanceof PgGatewayError;
}
