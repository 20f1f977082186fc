/**
 * The recording event model: every data path (PostgreSQL, SSH, Kubernetes) describes a session with
 * these events and hands them to a `SessionRecorder`. Recording never sits inline with forwarding:
 * `emit` only enqueues; the recorder spools to disk and uploads in the background (STYLE 9).
 *
 * Everything recorded is already masked by the data path with the MaskingPolicy the session ran
 * under, so a recording never holds what the agent could not see.
 */
import type { GrantOrigin, Identity, Protocol, ResourceKey } from "../config/bundle.ts";

export type Decision = "allow" | "block" | "approved" | "denied" | "expired" | "audit";

export interface SessionMeta {
	sessionId: string;
	protocol: Protocol;
	connection: string;
	connectionNamespace: string;
	identity: Pick<Identity, "issuer" | "subject" | "username" | "groups" | "serviceAccount">;
	grant: ResourceKey;
	origin: GrantOrigin;
	client: { address: string; port?: number; application?: string };
	/** Protocol details: database and upstream user, SSH login, kube user. */
	target: Record<string, string>;
	startedAt: string;
	/** Gateway replica that served the session. */
	gateway: string;
}

export type RecordingEvent =
	| {
			type: "statement";
			/** Masked SQL text. */
			sql: string;
			/** Masked parameter values (extended protocol). */
			params?: (string | null)[];
			statementKinds: string[];
			decision: Decision;
			rule?: string;
			approvalId?: string;
			durationMs?: number;
			rows?: number;
			commandTag?: string;
			error?: { code: string; message: string };
			/** Columns masked in the result, `schema.table.column` or output names. */
			maskedColumns?: string[];
			/**
			 * Optional result-row capture (off by default; the data path turns it on per connection).
			 * Rows are the MASKED values the client received, as text. The recorder keeps at most
			 * `RecorderOptions.maxCapturedRows` rows (default 100) and sets `resultRowsTruncated`.
			 */
			resultColumns?: string[];
			resultRows?: (string | null)[][];
			resultRowsTruncated?: boolean;
	  }
	| {
			type: "approval";
			approvalId: string;
			phase: "Pending" | "Approved" | "Denied" | "Expired" | "Cancelled";
			rule: string;
			command: string;
			decidedBy?: string[];
	  }
	/** Terminal output / input / resize, asciicast-compatible (`o`, `i`, `r`). */
	| { type: "terminal"; stream: "o" | "i" | "r"; data: string }
	| {
			type: "exec";
			command: string;
			decision: Decision;
			rule?: string;
			approvalId?: string;
			exitCode?: number;
			signal?: string;
	  }
	| { type: "sftp"; op: string; path: string; bytes?: number; decision: Decision }
	| {
			type: "kube.request";
			verb: string;
			resource: string;
			subresource?: string;
			namespace?: string;
			name?: string;
			path: string;
			decision: Decision;
			rule?: string;
			approvalId?: string;
			status?: number;
			durationMs?: number;
			/** Mutating request body, Secret data masked. */
			body?: unknown;
	  }
	| { type: "notice"; message: string };

/** One event as stored: the event plus its time relative to session start and a sequence number. */
export type StoredEvent = RecordingEvent & { seq: number; time: string; offsetMs: number };

export interface SessionEnd {
	reason: "client-closed" | "upstream-closed" | "grant-expired" | "grant-revoked" | "error" | "shutdown" | "policy";
	message?: string;
}

export interface SessionRecorder {
	readonly sessionId: string;
	/** Non-blocking: enqueue the event. Never throws on sink failure (the spool keeps it). */
	emit(event: RecordingEvent): void;
	/** Write the end record and the signed manifest. Resolves once durable in the local spool. */
	close(end: SessionEnd): Promise<void>;
}

export interface OpenSessionOptions {
	/**
	 * Called at most once if the spool stops taking this session's events (a disk failure: later events
	 * are counted as dropped). A data path that must not run unrecorded ends the session here.
	 */
	onFailure?: (error: Error) => void;
}

export interface Recorder {
	/**
	 * Start a session. Rejects (fail closed) when the spool is full and the policy is `failClosed`;
	 * the data path then refuses the connection with a clear error.
	 */
	openSession(meta: SessionMeta, options?: OpenSessionOptions): Promise<SessionRecorder>;
}
