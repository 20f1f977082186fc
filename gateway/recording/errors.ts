/**
 * One error base for the recording component (STYLE 5). `code` is a closed union so callers
 * (data paths, CLI, viewer) can switch on it and convert to their native form at the edge.
 */
export type RecordingErrorCode =
	/** The spool is over its byte limit and the policy is `failClosed`: refuse the session. */
	| "SPOOL_FULL"
	/** The session was already closed; emit after close is ignored, a second close is refused. */
	| "SESSION_CLOSED"
	/** The store (MinIO or directory) failed; retried by the uploader. */
	| "STORE_UNAVAILABLE"
	/** An object that must exist does not. */
	| "NOT_FOUND"
	/** A stored object could not be parsed (not gzip, not JSON, wrong version). */
	| "MALFORMED"
	/** Bad recorder / store configuration. */
	| "CONFIG";

export class RecordingError extends Error {
	override readonly name = "RecordingError";
	readonly code: RecordingErrorCode;
	constructor(code: RecordingErrorCode, message: string, options?: { cause?: unknown }) {
		super(message, options);
		this.code = code;
	}
}

/** Thrown by `Recorder.openSession` under `failClosed` when the spool is full. */
export class SpoolFullError extends RecordingError {
	readonly backlogBytes: number;
	readonly maxBytes: number;
	constructor(backlogBytes: number, maxBytes: number) {
		super(
			"SPOOL_FULL",
			`recording spool is full (${backlogBytes} of ${maxBytes} bytes waiting for upload); new sessions are refused until the recording store catches up`,
		);
		this.backlogBytes = backlogBytes;
		this.maxBytes = maxBytes;
	}
}

export function isRecordingError(e: unknown, code?: RecordingErrorCode): e is RecordingError {
	return e instanceof RecordingError && (code === undefined || e.code === code);
}
