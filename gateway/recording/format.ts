/**
 * The recording format (docs/recording-format.md): key layout, session.json, gzip'd JSON Lines chunks
 * chained by SHA-256, the asciicast v2 terminal stream and the signed manifest. Pure functions only;
 * the spool, uploader, verifier, CLI and viewer all share them.
 */
import { createHash } from "node:crypto";
import { gunzipSync, gzipSync } from "node:zlib";
import type { GrantOrigin, Protocol, ResourceKey } from "../config/bundle.ts";
import { RecordingError } from "./errors.ts";
import type { RecordingEvent, SessionEnd, SessionMeta, StoredEvent } from "./events.ts";

export const FORMAT_VERSION = "drawbridge.dev/recording/v1" as const;
export const ROOT_PREFIX = "recordings/";
export const KEYS_PREFIX = "recordings/keys/";
export const SESSION_FILE = "session.json";
export const MANIFEST_FILE = "manifest.jws";
export const TERMINAL_FILE = "terminal.cast";
export const MANIFEST_JWS_TYP = "drawbridge-manifest+jws";

/** Characters allowed in a key segment; anything else becomes `_`. */
export function keySegment(s: string): string {
	// No ".." anywhere: stores refuse such keys, and a session that can never upload is a lost recording.
	const cleaned = s.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "_").replace(/\.{2,}/g, "_");
	return cleaned.length > 0 ? cleaned.slice(0, 200) : "_";
}

/** `recordings/<yyyy>/<mm>/<dd>/<connection>/<session-id>/` from the session's UTC start time. */
export function sessionPrefix(meta: Pick<SessionMeta, "startedAt" | "connection" | "sessionId">): string {
	const d = new Date(meta.startedAt);
	if (Number.isNaN(d.getTime())) throw new TypeError(`SessionMeta.startedAt is not a date: ${meta.startedAt}`);
	const yyyy = String(d.getUTCFullYear()).padStart(4, "0");
	const mm = String(d.getUTCMonth() + 1).padStart(2, "0");
	const dd = String(d.getUTCDate()).padStart(2, "0");
	return `${ROOT_PREFIX}${yyyy}/${mm}/${dd}/${keySegment(meta.connection)}/${keySegment(meta.sessionId)}/`;
}

export function chunkName(index: number): string {
	return `chunk-${String(index).padStart(6, "0")}.jsonl.gz`;
}

export function parseChunkName(name: string): number | undefined {
	const m = /^chunk-(\d{6,})\.jsonl\.gz$/.exec(name);
	return m ? Number(m[1]) : undefined;
}

export function sha256Hex(data: Uint8Array | string): string {
	return createHash("sha256").update(data).digest("hex");
}

// ---------------------------------------------------------------------------------------------
// Counts and flags

export interface SessionCounts {
	events: number;
	statements: number;
	execs: number;
	kubeRequests: number;
	sftp: number;
	approvals: number;
	/** Events whose decision was block, denied or expired. */
	blocked: number;
	/** Events whose decision was `approved` (ran after a just-in-time approval). */
	approved: number;
	/** Terminal output bytes (UTF-8). */
	terminalBytes: number;
	notices: number;
}

export function emptyCounts(): SessionCounts {
	return { events: 0, statements: 0, execs: 0, kubeRequests: 0, sftp: 0, approvals: 0, blocked: 0, approved: 0, terminalBytes: 0, notices: 0 };
}

export function addCounts(into: SessionCounts, from: SessionCounts): SessionCounts {
	for (const k of Object.keys(into) as (keyof SessionCounts)[]) into[k] += from[k];
	return into;
}

const BLOCKING_DECISIONS = new Set(["block", "denied", "expired"]);

export function countEvent(c: SessionCounts, e: RecordingEvent): void {
	c.events++;
	switch (e.type) {
		case "statement":
			c.statements++;
			break;
		case "exec":
			c.execs++;
			break;
		case "kube.request":
			c.kubeRequests++;
			break;
		case "sftp":
			c.sftp++;
			break;
		case "approval":
			c.approvals++;
			break;
		case "terminal":
			if (e.stream === "o") c.terminalBytes += Buffer.byteLength(e.data);
			break;
		case "notice":
			c.notices++;
			break;
	}
	if ("decision" in e && BLOCKING_DECISIONS.has(e.decision)) c.blocked++;
	if ("decision" in e && e.decision === "approved") c.approved++;
}

export function flagsOf(c: SessionCounts): { hasBlocked: boolean; hasApprovals: boolean } {
	return { hasBlocked: c.blocked > 0, hasApprovals: c.approvals > 0 || c.approved > 0 };
}

// ---------------------------------------------------------------------------------------------
// session.json

export interface SessionDocument {
	format: typeof FORMAT_VERSION;
	sessionId: string;
	protocol: Protocol;
	connection: string;
	connectionNamespace: string;
	identity: SessionMeta["identity"];
	grant: ResourceKey;
	/** The approving commit / pull request of the grant. */
	origin: GrantOrigin;
	client: SessionMeta["client"];
	target: Record<string, string>;
	gateway: string;
	startedAt: string;
	endedAt: string;
	durationMs: number;
	end: SessionEnd;
	counts: SessionCounts;
	flags: { hasBlocked: boolean; hasApprovals: boolean };
	chunks: number;
	hasTerminal: boolean;
	/** Events the recorder could not spool (disk error under failOpen); 0 in a complete recording. */
	droppedEvents: number;
	/** True when the session was closed by a restarted gateway from its spool, not by the data path. */
	recovered: boolean;
	/** Key id that signs the manifest. */
	keyId: string;
	prefix: string;
}

/** Object user-metadata of session.json: the searchable fields (ASCII, see `metaValue`). */
export function sessionMetadata(doc: SessionDocument): Record<string, string> {
	return {
		"session-id": metaValue(doc.sessionId),
		protocol: doc.protocol,
		identity: metaValue(doc.identity.username),
		subject: metaValue(doc.identity.subject),
		grant: metaValue(doc.grant),
		connection: metaValue(doc.connection),
		"connection-namespace": metaValue(doc.connectionNamespace),
		started: doc.startedAt,
		ended: doc.endedAt,
		"has-blocked": String(doc.flags.hasBlocked),
		"has-approvals": String(doc.flags.hasApprovals),
		commit: metaValue(doc.origin.commit ?? ""),
		"pull-request": doc.origin.pullRequest !== undefined ? String(doc.origin.pullRequest) : "",
	};
}

/** S3 metadata must be printable ASCII: percent-encode `%` and everything outside 0x20..0x7e. */
export function metaValue(s: string): string {
	return s.replace(/[^\x20-\x24\x26-\x7e]/gu, (ch) => encodeURIComponent(ch));
}

export function metaDecode(s: string | undefined): string | undefined {
	if (s === undefined) return undefined;
	try {
		return decodeURIComponent(s);
	} catch {
		return s;
	}
}

// ---------------------------------------------------------------------------------------------
// Chunks

/** First line of every chunk. `prev` chains the chunks: SHA-256 (hex) of the previous chunk object. */
export interface ChunkHeader {
	format: typeof FORMAT_VERSION;
	kind: "chunk";
	sessionId: string;
	index: number;
	prev: string | null;
	firstSeq: number;
	lastSeq: number;
	events: number;
}

/**
 * gzip level of event chunks. Event lines are repetitive JSON: level 3 compresses a pgbench-like chunk
 * 13.4x against level 6's 14.6x (objects ~9 % larger) for half the CPU (0.41 vs 0.86 µs per event),
 * and that CPU is taken from the data path's two cores. Any level decodes the same.
 */
export const CHUNK_GZIP_LEVEL = 3;

export function encodeChunk(header: ChunkHeader, lines: string[]): Buffer {
	const text = `${JSON.stringify(header)}\n${lines.length ? `${lines.join("\n")}\n` : ""}`;
	return gzipSync(text, { level: CHUNK_GZIP_LEVEL });
}

export interface DecodedChunk {
	header: ChunkHeader;
	events: StoredEvent[];
	/** Bytes of JSON Lines text the chunk inflated to. */
	textBytes: number;
}

/**
 * Most text a chunk may inflate to before a reader gives up on it. The gateway seals chunks at
 * `chunkMaxBytes` (1 MiB by default) of text, so only one giant event comes near this; a bucket writer
 * can store a few KiB of gzip that inflate to gigabytes (a decompression bomb against the auditor's CLI
 * or the viewer in the gateway process), and every reader inflates through this limit.
 */
export const MAX_CHUNK_TEXT_BYTES = 64 * 1024 * 1024;

/**
 * Strict decode: throws RecordingError `MALFORMED` with a precise reason, also when the chunk would
 * inflate past `maxTextBytes` (nothing beyond that is ever inflated).
 */
export function decodeChunk(name: string, body: Uint8Array, maxTextBytes = MAX_CHUNK_TEXT_BYTES): DecodedChunk {
	let text: string;
	let textBytes: number;
	try {
		const raw = gunzipSync(body, { maxOutputLength: Math.max(1, maxTextBytes) });
		textBytes = raw.length;
		text = raw.toString("utf8");
	} catch (e) {
		if ((e as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
			throw new RecordingError("MALFORMED", `${name} inflates to more than ${mib(maxTextBytes)} of text: not read (a decompression bomb, or not a chunk the gateway wrote)`);
		}
		const msg = (e as Error).message;
		throw new RecordingError("MALFORMED", `${name} is not a complete gzip stream (${/unexpected end/i.test(msg) ? "truncated" : msg})`);
	}
	const lines = text.split("\n");
	if (lines[lines.length - 1] === "") lines.pop();
	if (lines.length === 0) throw new RecordingError("MALFORMED", `${name} is empty`);
	let header: ChunkHeader;
	try {
		header = JSON.parse(lines[0]!) as ChunkHeader;
	} catch {
		throw new RecordingError("MALFORMED", `${name}: first line is not a JSON chunk header`);
	}
	if (header.format !== FORMAT_VERSION || header.kind !== "chunk") {
		throw new RecordingError("MALFORMED", `${name}: header is not a ${FORMAT_VERSION} chunk header`);
	}
	const events: StoredEvent[] = [];
	for (let i = 1; i < lines.length; i++) {
		try {
			events.push(JSON.parse(lines[i]!) as StoredEvent);
		} catch {
			throw new RecordingError("MALFORMED", `${name}: line ${i + 1} is not valid JSON (truncated or edited)`);
		}
	}
	return { header, events, textBytes };
}

function mib(n: number): string {
	return n >= 1024 * 1024 ? `${Math.floor(n / (1024 * 1024))} MiB` : `${n} bytes`;
}

// ---------------------------------------------------------------------------------------------
// Manifest

export interface ManifestChunk {
	name: string;
	sha256: string;
	bytes: number;
	events: number;
	firstSeq: number;
	lastSeq: number;
	/**
	 * The gateway lost this sealed chunk from its spool before uploading it (disk damage found by
	 * recovery); its events are counted in session.json's droppedEvents.
	 */
	lost?: true;
}

export interface Manifest {
	format: typeof FORMAT_VERSION;
	kind: "manifest";
	sessionId: string;
	prefix: string;
	chunks: ManifestChunk[];
	session: { name: typeof SESSION_FILE; sha256: string; bytes: number };
	terminal?: { name: typeof TERMINAL_FILE; sha256: string; bytes: number };
	totalEvents: number;
	signedAt: string;
}

// ---------------------------------------------------------------------------------------------
// asciicast v2

export interface CastHeader {
	version: 2;
	width: number;
	height: number;
	timestamp: number;
	title?: string;
	env?: Record<string, string>;
}

/** Parse a resize payload `COLSxROWS` (as the SSH data path emits it). */
export function parseResize(data: string): { cols: number; rows: number } | undefined {
	const m = /^(\d{1,5})x(\d{1,5})$/.exec(data.trim());
	if (!m) return undefined;
	return { cols: Number(m[1]), rows: Number(m[2]) };
}

export function castHeader(meta: SessionMeta, first: RecordingEvent | undefined): CastHeader {
	let width = Number(meta.target.cols ?? 80) || 80;
	let height = Number(meta.target.rows ?? 24) || 24;
	if (first?.type === "terminal" && first.stream === "r") {
		const r = parseResize(first.data);
		if (r) {
			width = r.cols;
			height = r.rows;
		}
	}
	const env: Record<string, string> = { SHELL: "/bin/sh", TERM: meta.target.term ?? "xterm-256color" };
	return {
		version: 2,
		width,
		height,
		timestamp: Math.floor(new Date(meta.startedAt).getTime() / 1000),
		title: `${meta.identity.username} @ ${meta.connection} (${meta.sessionId})`,
		env,
	};
}

export function castLine(offsetMs: number, stream: "o" | "i" | "r", data: string): string {
	return JSON.stringify([Math.round(offsetMs) / 1000, stream, data]);
}

export function sessionDocument(
	meta: SessionMeta,
	prefix: string,
	end: SessionEnd,
	endedAt: string,
	counts: SessionCounts,
	chunks: number,
	hasTerminal: boolean,
	droppedEvents: number,
	recovered: boolean,
	keyId: string,
): SessionDocument {
	return {
		format: FORMAT_VERSION,
		sessionId: meta.sessionId,
		protocol: meta.protocol,
		connection: meta.connection,
		connectionNamespace: meta.connectionNamespace,
		identity: meta.identity,
		grant: meta.grant,
		origin: meta.origin,
		client: meta.client,
		target: meta.target,
		gateway: meta.gateway,
		startedAt: meta.startedAt,
		endedAt,
		durationMs: Math.max(0, new Date(endedAt).getTime() - new Date(meta.startedAt).getTime()),
		end,
		counts,
		flags: flagsOf(counts),
		chunks,
		hasTerminal,
		droppedEvents,
		recovered,
		keyId,
		prefix,
	};
}
