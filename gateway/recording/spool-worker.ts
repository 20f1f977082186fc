/**
 * The spool's file work, in one worker thread for every session of a recorder (see spool-io.ts).
 * The main thread batches what all sessions need written at a flush tick into one message; this
 * thread does it with synchronous calls (appends, gzip, SHA-256, fsync) and answers once per batch.
 * Before, each session's flush and seal went through libuv's pool one call at a time: a dozen
 * thread hand-offs and main-thread wake-ups per seal, and one per session per flush tick.
 *
 * Loaded without tsx (Node's own type stripping): erasable TypeScript only, node: imports only.
 * Event bytes arrive as views of SharedArrayBuffer-backed chunk buffers: the main thread never
 * writes a range it handed over, and reuses a buffer only after the seal that read it answered.
 */
import { createHash } from "node:crypto";
import { closeSync, fsyncSync, ftruncateSync, mkdirSync, openSync, renameSync, truncateSync, writeSync, writevSync } from "node:fs";
import { dirname, join } from "node:path";
import { parentPort, workerData } from "node:worker_threads";
import { gzipSync } from "node:zlib";
import type { ManifestChunk, SessionCounts } from "./format.ts";

/** Event lines to append to the session's events.jsonl, and asciicast lines for terminal.cast. */
export interface WriteOp {
	kind: "write";
	dir: string;
	parts: Uint8Array[];
	/** terminal.cast lines, newline-terminated ("" when none). */
	cast: string;
	/** fsync events.jsonl / terminal.cast after writing ("always" durability). */
	sync: boolean;
}

/** What the chunk index needs of one chunk, besides what sealing computes. */
export interface SealChunk {
	/** The chunk buffer; events are bytes [headerRoom, len), the header goes in front of them. */
	buf: Uint8Array;
	len: number;
	index: number;
	name: string;
	events: number;
	firstSeq: number;
	lastSeq: number;
	firstTimeMs: number;
	counts: SessionCounts;
}

export interface SegmentState {
	number: number;
	name: string;
	size: number;
}

/** Write, then seal `chunks` in order into the session's segment files, index them, empty events.jsonl. */
export interface SealOp {
	kind: "seal";
	dir: string;
	sessionId: string;
	parts: Uint8Array[];
	cast: string;
	sync: boolean;
	chunks: SealChunk[];
	/** SHA-256 of the session's last sealed chunk, null before the first. */
	prev: string | null;
	/** The segment being appended to (name "" when none is open). */
	segment: SegmentState;
	segmentMaxBytes: number;
	/** events.jsonl is emptied after the chunks are indexed (it holds nothing else). */
	truncateEvents: boolean;
}

/** Close the session's files (terminal.cast fsynced first). */
export interface CloseOp {
	kind: "close";
	dir: string;
}

/**
 * Whole files written durably: each through a temporary file, fsynced and renamed over its name,
 * then the directory fsynced. `mkdir`: the directory is made first, and its parent fsynced as
 * well (once per batch for all the folders made in it), so that the new directory's entry survives
 * a power loss with the files in it.
 */
export interface FilesOp {
	kind: "files";
	dir: string;
	mkdir: boolean;
	files: { name: string; body: Uint8Array }[];
}

/**
 * A chunk with its header, gzipped and hashed, written nowhere: for a session whose one chunk goes
 * from memory straight to the store at close (recorder.ts closeDirect).
 */
export interface PackOp {
	kind: "pack";
	sessionId: string;
	chunk: SealChunk;
	prev: string | null;
}

export type SpoolOp = WriteOp | SealOp | CloseOp | FilesOp | PackOp;

/** One sealed chunk's line in the spool's chunks.jsonl: its manifest entry and what the spool needs besides. */
export interface ChunkEntry extends ManifestChunk {
	index: number;
	/** Epoch ms of the chunk's first event (for the oldest-unsent-age metric). */
	firstTimeMs: number;
	counts: SessionCounts;
	/**
	 * The spool segment file holding the chunk's bytes at `offset`. Absent in spools written before
	 * segments existed: the chunk is then the file `name` itself.
	 */
	segment?: string;
	offset?: number;
}

export interface SpoolResult {
	/** Set when the op failed; for a seal, `entries` still lists the chunks indexed before it did. */
	error?: { message: string; code?: string };
	entries?: ChunkEntry[];
	segment?: SegmentState;
	/** Segment files this op created (a seal may start one or more). */
	created?: string[];
	/** A pack's gzipped chunk and its SHA-256. */
	packed?: { body: Uint8Array; sha256: string };
	/**
	 * A seal's gzipped chunks, one per entry (what was appended to the segment): the uploader sends
	 * them from memory instead of reading the segment back.
	 */
	bodies?: Uint8Array[];
}

export interface SpoolRequest {
	id: number;
	ops: SpoolOp[];
}

export interface SpoolReply {
	id: number;
	results: SpoolResult[];
}

export interface SpoolWorkerData {
	format: string;
	gzipLevel: number;
	headerRoom: number;
}

const config = workerData as SpoolWorkerData;
const EVENTS_FILE = "events.jsonl";
const CAST_FILE = "terminal.cast";
const INDEX_FILE = "chunks.jsonl";

/** Open files by path: events.jsonl, terminal.cast and chunks.jsonl in append mode, the writing segment. */
const files = new Map<string, number>();

function fd(path: string, flags: string): number {
	let f = files.get(path);
	if (f === undefined) {
		f = openSync(path, flags);
		files.set(path, f);
	}
	return f;
}

function closeFile(path: string): void {
	const f = files.get(path);
	if (f === undefined) return;
	files.delete(path);
	closeSync(f);
}

function writeAll(f: number, buf: Uint8Array): void {
	let done = 0;
	while (done < buf.length) {
		const n = writeSync(f, buf, done, buf.length - done);
		if (n <= 0) throw new Error(`write returned ${n}`);
		done += n;
	}
}

function writevAll(f: number, parts: Uint8Array[]): void {
	let total = 0;
	for (const p of parts) total += p.length;
	const n = writevSync(f, parts);
	// A short writev (a full disk, a signal): finish part by part from where it stopped.
	if (n === total) return;
	let skip = n;
	for (const p of parts) {
		if (skip >= p.length) {
			skip -= p.length;
			continue;
		}
		writeAll(f, p.subarray(skip));
		skip = 0;
	}
}

function fsyncDir(dir: string): void {
	let f: number | undefined;
	try {
		f = openSync(dir, "r");
		fsyncSync(f);
	} catch {
		// Some filesystems refuse fsync on directories.
	} finally {
		if (f !== undefined) closeSync(f);
	}
}

function write(op: WriteOp | SealOp): void {
	if (op.parts.length > 0) {
		const f = fd(join(op.dir, EVENTS_FILE), "a");
		writevAll(f, op.parts);
		if (op.sync) fsyncSync(f);
	}
	if (op.cast) {
		const f = fd(join(op.dir, CAST_FILE), "a");
		writeAll(f, Buffer.from(op.cast, "utf8"));
		if (op.sync) fsyncSync(f);
	}
}

/** The chunk's gzip member: its header line (with the previous chunk's hash) and its events. */
function pack(sessionId: string, c: SealChunk, prev: string | null): Buffer {
	const header = {
		format: config.format,
		kind: "chunk",
		sessionId,
		index: c.index,
		prev,
		firstSeq: c.firstSeq,
		lastSeq: c.lastSeq,
		events: c.events,
	};
	const head = Buffer.from(`${JSON.stringify(header)}\n`, "utf8");
	// The header goes into the room the main thread left in front of the events; one that does
	// not fit (it cannot with today's fields) is joined by copy instead.
	let input: Uint8Array;
	if (head.length <= config.headerRoom) {
		c.buf.set(head, config.headerRoom - head.length);
		input = c.buf.subarray(config.headerRoom - head.length, c.len);
	} else input = Buffer.concat([head, c.buf.subarray(config.headerRoom, c.len)]);
	return gzipSync(input, { level: config.gzipLevel });
}

const sha256Hex = (body: Uint8Array) => createHash("sha256").update(body).digest("hex");

function seal(op: SealOp, result: SpoolResult): void {
	const entries: ChunkEntry[] = [];
	const bodies: Uint8Array[] = [];
	const created: string[] = [];
	const segment = { ...op.segment };
	result.entries = entries;
	result.bodies = bodies;
	result.created = created;
	result.segment = segment;
	write(op);
	let prev = op.prev;
	for (const c of op.chunks) {
		const body = pack(op.sessionId, c, prev);
		// Appended to the segment and fsynced; the index line after it (fsynced too) is what makes
		// the chunk count: recovery cuts a segment back to its last indexed chunk.
		if (segment.name && segment.size > 0 && segment.size + body.length > op.segmentMaxBytes) {
			closeFile(join(op.dir, segment.name));
			segment.name = "";
		}
		let fresh = false;
		if (!segment.name) {
			segment.number++;
			segment.name = `segment-${String(segment.number).padStart(6, "0")}.bin`;
			segment.size = 0;
			const f = openSync(join(op.dir, segment.name), "wx");
			files.set(join(op.dir, segment.name), f);
			created.push(segment.name);
			fresh = true;
		}
		const seg = fd(join(op.dir, segment.name), "a");
		const offset = segment.size;
		writeAll(seg, body);
		segment.size += body.length;
		fsyncSync(seg);
		if (fresh) fsyncDir(op.dir);
		const sha256 = sha256Hex(body);
		const entry: ChunkEntry = {
			index: c.index,
			name: c.name,
			sha256,
			bytes: body.length,
			events: c.events,
			firstSeq: c.firstSeq,
			lastSeq: c.lastSeq,
			firstTimeMs: c.firstTimeMs,
			counts: c.counts,
			segment: segment.name,
			offset,
		};
		const index = fd(join(op.dir, INDEX_FILE), "a");
		writeAll(index, Buffer.from(`${JSON.stringify(entry)}\n`, "utf8"));
		fsyncSync(index);
		entries.push(entry);
		bodies.push(body);
		prev = sha256;
	}
	if (op.truncateEvents) {
		const path = join(op.dir, EVENTS_FILE);
		const f = files.get(path);
		if (f !== undefined) ftruncateSync(f, 0);
		else {
			// Written by a worker before this one (it died): empty the file by name.
			try {
				truncateSync(path, 0);
			} catch (e) {
				if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
			}
		}
	}
}

function close(op: CloseOp): void {
	const prefix = `${op.dir}/`;
	let first: unknown;
	for (const path of [...files.keys()]) {
		if (!path.startsWith(prefix)) continue;
		try {
			if (path.endsWith(`/${CAST_FILE}`)) fsyncSync(files.get(path)!);
		} catch (e) {
			first ??= e;
		}
		try {
			closeFile(path);
		} catch (e) {
			first ??= e;
		}
	}
	if (first) throw first;
}

function writeFiles(op: FilesOp): void {
	if (op.mkdir) mkdirSync(op.dir, { recursive: true });
	for (const file of op.files) {
		const tmp = join(op.dir, `.tmp-${process.pid}-${file.name}`);
		const f = openSync(tmp, "w");
		try {
			writeAll(f, file.body);
			fsyncSync(f);
		} finally {
			closeSync(f);
		}
		renameSync(tmp, join(op.dir, file.name));
	}
	fsyncDir(op.dir);
	if (op.mkdir) parentsToSync.add(dirname(op.dir));
}

/** Parents of folders made in this batch: fsynced once each when the batch is done, before it is answered. */
const parentsToSync = new Set<string>();

function run(op: SpoolOp): SpoolResult {
	const result: SpoolResult = {};
	try {
		if (op.kind === "write") write(op);
		else if (op.kind === "seal") seal(op, result);
		else if (op.kind === "files") writeFiles(op);
		else if (op.kind === "pack") {
			const body = pack(op.sessionId, op.chunk, op.prev);
			result.packed = { body, sha256: sha256Hex(body) };
		}
		else close(op);
	} catch (e) {
		const err = e as NodeJS.ErrnoException;
		result.error = { message: err.message ?? String(e), ...(err.code ? { code: err.code } : {}) };
	}
	return result;
}

parentPort!.on("message", (req: SpoolRequest) => {
	const reply: SpoolReply = { id: req.id, results: req.ops.map(run) };
	for (const dir of parentsToSync) fsyncDir(dir);
	parentsToSync.clear();
	parentPort!.postMessage(reply);
});
