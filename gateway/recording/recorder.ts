/**
 * The recorder: `Recorder` for every data path. Events go to a bounded on-disk spool first, then a
 * background uploader moves sealed objects to the `RecordingStore` (MinIO or a directory) with
 * retries and exponential backoff. Nothing here sits inline with forwarding: `emit` only appends to
 * an in-memory buffer; file writes, gzip, hashing, signing and uploads all happen later, the spool's
 * file work in one worker thread for all sessions (spool-io.ts, spool-worker.ts).
 *
 * Spool layout, one directory per session (`<spoolDir>/sessions/<sessionId>/`):
 *   open.json          SessionMeta + key prefix, written durably before openSession resolves
 *   events.jsonl       events of the chunk being built (append-only; truncated after each seal)
 *   segment-NNNNNN.bin sealed chunks (gzip members, the store's chunk objects byte for byte)
 *                      appended back to back; a new segment after `segmentMaxBytes`, and a
 *                      segment is deleted once all its chunks are uploaded and it is not the one
 *                      being written. One file per many chunks, not one per chunk: creating and
 *                      deleting a file per sealed chunk cost more CPU than gzip on ext4.
 *   chunks.jsonl       index of sealed chunks: hash, size, seq range, counts, segment + offset
 *                      (append-only, fsynced; a chunk counts once its line is there)
 *   uploaded           the highest chunk index in the store (chunks upload in order)
 *   terminal.cast      asciicast v2 stream (append-only), uploaded at close
 *   session.json, manifest.jws  written at close; their presence means "finalised"
 * The upload order is chunks (in order) → terminal.cast → session.json → manifest.jws; the session
 * directory is removed after the manifest is stored, so a complete session in the store always has
 * its manifest last, and a restarted gateway resumes exactly where the previous one stopped.
 *
 * Durability (fsync policy, `fsync` option):
 *   "chunk" (default): buffered events are written to events.jsonl every `flushIntervalMs` (default
 *     100 ms), so they survive a gateway crash once written; sealed chunks, the chunk index,
 *     session.json and the manifest are fsynced (file + directory) before they count as spooled. A
 *     power loss can lose at most the events of the open chunk written since its last fsync.
 *   "always": events.jsonl and terminal.cast are fsynced on every flush as well.
 */
import { randomUUID } from "node:crypto";
import { mkdir, open, readdir, readFile, rename, rm, stat, truncate, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { CompactSign } from "jose";
import type { Registry } from "prom-client";
import { RecordingError, SpoolFullError } from "./errors.ts";
import type { OpenSessionOptions, Recorder, RecordingEvent, SessionEnd, SessionMeta, SessionRecorder, StoredEvent } from "./events.ts";
import {
	addCounts,
	castHeader,
	castLine,
	chunkName,
	countEvent,
	emptyCounts,
	FORMAT_VERSION,
	KEYS_PREFIX,
	MANIFEST_FILE,
	MANIFEST_JWS_TYP,
	type Manifest,
	SESSION_FILE,
	type SessionDocument,
	sessionDocument,
	sessionMetadata,
	sessionPrefix,
	sha256Hex,
	TERMINAL_FILE,
} from "./format.ts";
import { putBytes, putNumber, type StatementEvent, StatementSerializer } from "./eventjson.ts";
import type { RecordingKey } from "./keys.ts";
import { RecorderMetrics } from "./metrics.ts";
import { SpoolIO } from "./spool-io.ts";
import type { ChunkEntry, SealChunk, SpoolOp, SpoolResult } from "./spool-worker.ts";
import type { RecordingStore } from "./store.ts";

/** Session ids become spool directory names and key segments: keep them plain. */
const SESSION_ID_RE = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export interface RecorderLogger {
	info(obj: object, msg: string): void;
	warn(obj: object, msg: string): void;
	error(obj: object, msg: string): void;
}

export interface RecorderOptions {
	/** Local spool directory (one per gateway replica; locked with a pid file). */
	spoolDir: string;
	store: RecordingStore;
	key: RecordingKey;
	/** Spool budget in bytes (default 1 GiB). At or over it the `onSpoolFull` policy applies. */
	maxSpoolBytes?: number;
	/**
	 * `failClosed` (default): openSession rejects with SpoolFullError, the data path refuses the client.
	 * `failOpen`: the session is admitted and still spooled beyond the budget; an alert is logged and
	 * `drawbridge_recording_sessions_over_budget_total` increases.
	 */
	onSpoolFull?: "failClosed" | "failOpen";
	/** Seal a chunk when its uncompressed JSON Lines reach this size (default 1 MiB). */
	chunkMaxBytes?: number;
	/**
	 * Sealed chunks of a session are appended to segment files in its spool folder; a new segment
	 * starts when one would grow past this size (default 8 MiB of compressed chunks). A segment is
	 * deleted once every chunk in it is uploaded and the session writes to a newer one.
	 */
	segmentMaxBytes?: number;
	/** Seal a chunk this long after its first event, so live sessions upload progressively (default 10 s). */
	chunkMaxAgeMs?: number;
	/** Write buffered events to the spool file at least this often (default 100 ms). */
	flushIntervalMs?: number;
	fsync?: "chunk" | "always";
	/** Upload retry backoff: initial delay (default 500 ms), doubling up to maxDelayMs (default 30 s), with jitter. */
	retryInitialDelayMs?: number;
	retryMaxDelayMs?: number;
	/** Sessions uploaded in parallel (default 4). */
	uploadConcurrency?: number;
	/** One store operation longer than this counts as failed and is retried (default 60 s): a hung store never stalls the uploader. */
	uploadTimeoutMs?: number;
	registry?: Registry;
	logger?: RecorderLogger;
	/** Cap on captured result rows per statement event (default 100); extra rows are dropped and flagged. */
	maxCapturedRows?: number;
	/** Clock, epoch ms (default Date.now); tests and benchmarks replay sessions at other dates. */
	now?: () => number;
}

const consoleLogger: RecorderLogger = {
	info() {},
	warn(obj, msg) {
		console.warn(`recording: ${msg}`, JSON.stringify(obj));
	},
	error(obj, msg) {
		console.error(`recording: ${msg}`, JSON.stringify(obj));
	},
};

interface OpenRecord {
	format: typeof FORMAT_VERSION;
	meta: SessionMeta;
	prefix: string;
	keyId: string;
}

/** Per-session spool bookkeeping, shared by the live writer and the uploader. */
class SpoolState {
	readonly id: string;
	readonly dir: string;
	readonly prefix: string;
	readonly meta: SessionMeta;
	/** Sealed, not yet uploaded chunks: index → its spool index entry (kept here, not re-read per upload). */
	readonly pendingChunks = new Map<number, ChunkEntry>();
	/**
	 * Gzipped bytes of pending chunks as the worker sealed them, within the recorder's budget
	 * (HELD_CHUNK_BYTES): uploaded from memory; a chunk not held here is read from its segment.
	 */
	readonly heldBodies = new Map<number, Uint8Array>();
	/** Segment files in the session folder. */
	readonly segments = new Set<string>();
	/** The segment the live session appends to: never removed while it does. */
	writingSegment: string | undefined;
	/** Every chunk up to this index is in the store (persisted in `uploaded`, see UPLOADED_FILE). */
	uploadedThrough = 0;
	/**
	 * Sealed chunks whose bytes the spool no longer holds whole (found by recovery: a segment cut
	 * short or gone, disk damage) and that are not in the store: they can never be uploaded, and the
	 * session's manifest says so (`lost: true`) instead of leaving verify to call them deleted.
	 */
	readonly lostChunks = new Set<number>();
	finalized = false;
	finalizedAtMs = 0;
	/** A session finalised by this process: session.json, the manifest and terminal.cast as written to the spool. */
	finalFiles: Map<string, Buffer> | undefined;
	live: LiveSession | undefined;
	uploading = false;
	bytes = 0;
	constructor(id: string, dir: string, meta: SessionMeta, prefix: string) {
		this.id = id;
		this.dir = dir;
		this.meta = meta;
		this.prefix = prefix;
	}
	hasWork(): boolean {
		return this.pendingChunks.size > 0 || this.finalized;
	}
	oldestPendingMs(): number | undefined {
		let oldest: number | undefined;
		for (const e of this.pendingChunks.values()) if (oldest === undefined || e.firstTimeMs < oldest) oldest = e.firstTimeMs;
		const liveFirst = this.live?.currentFirstTimeMs;
		if (liveFirst !== undefined && (oldest === undefined || liveFirst < oldest)) oldest = liveFirst;
		if (this.finalized && oldest === undefined) oldest = this.finalizedAtMs;
		return oldest;
	}
}

export class DiskRecorder implements Recorder {
	readonly options: Required<Omit<RecorderOptions, "registry" | "logger" | "now">>;
	readonly now: () => number;
	#isoMs = Number.NaN;
	#isoSecond = Number.NaN;
	#isoBytes = Buffer.alloc(0);
	/**
	 * new Date(ms).toISOString() as ASCII bytes, for the caller to copy at once: formatted once a
	 * second, and within the second only its three millisecond digits are rewritten in place.
	 */
	isoBytes(ms: number): Buffer {
		if (ms === this.#isoMs) return this.#isoBytes;
		const second = Math.floor(ms / 1000);
		const iso = this.#isoBytes;
		// "YYYY-MM-DDTHH:MM:SS.mmmZ": 24 characters for years 0-9999, the milliseconds at 20-22.
		if (second === this.#isoSecond && Number.isInteger(ms) && iso.length === 24) {
			const f = ms - second * 1000;
			iso[20] = 0x30 + Math.floor(f / 100);
			iso[21] = 0x30 + (Math.floor(f / 10) % 10);
			iso[22] = 0x30 + (f % 10);
		} else {
			this.#isoBytes = Buffer.from(new Date(ms).toISOString(), "latin1");
			this.#isoSecond = second;
		}
		this.#isoMs = ms;
		return this.#isoBytes;
	}
	/** Chunk buffers of sealed chunks, for the next chunks: a busy session does not allocate a megabyte per chunk. */
	private readonly spareBuffers: Buffer[] = [];
	takeBuffer(): Buffer | undefined {
		return this.spareBuffers.pop();
	}
	giveBuffer(buf: Buffer): void {
		// Only buffers of today's standard size: one grown for a giant event goes back to the allocator.
		if (this.spareBuffers.length < SPARE_CHUNK_BUFFERS && buf.length === chunkBufferSize(this.options.chunkMaxBytes)) this.spareBuffers.push(buf);
	}
	/** Bytes of sealed chunks held in memory for upload (SpoolState.heldBodies), all sessions. */
	private heldBytes = 0;
	/** Keep a sealed chunk's bytes for its upload, if the budget allows (else it is read from the spool). */
	hold(state: SpoolState, index: number, body: Uint8Array): void {
		if (this.heldBytes + body.length > HELD_CHUNK_BYTES) return;
		state.heldBodies.set(index, body);
		this.heldBytes += body.length;
	}
	private release(state: SpoolState, index: number): void {
		const body = state.heldBodies.get(index);
		if (!body) return;
		state.heldBodies.delete(index);
		this.heldBytes -= body.length;
	}
	readonly metrics: RecorderMetrics;
	/** Statement events' JSON (emit is synchronous, so one serialiser serves every session). */
	readonly statementJson = new StatementSerializer();
	readonly log: RecorderLogger;
	readonly store: RecordingStore;
	/** The spool worker: every session's file writes, gzip and fsyncs, batched per turn of the event loop. */
	readonly io = new SpoolIO(HEADER_ROOM);
	private readonly sessionsDir: string;
	private readonly states = new Map<string, SpoolState>();
	/** Sessions with events to write at the next flush tick; one timer for all of them. */
	private readonly flushDue = new Set<LiveSession>();
	private flushTimer: NodeJS.Timeout | undefined;
	private backlog = 0;
	/** Sessions between close() and their signed manifest: drain() waits for them too. */
	closing = 0;
	private started = false;
	private stopping = false;
	private loop: Promise<void> | undefined;
	private wake: (() => void) | undefined;
	private sleepTimer: NodeJS.Timeout | undefined;
	private keyPublished = false;
	private consecutiveFailures = 0;
	private drainWaiters: (() => void)[] = [];
	private lockPath: string;

	constructor(options: RecorderOptions) {
		this.options = {
			spoolDir: options.spoolDir,
			store: options.store,
			key: options.key,
			maxSpoolBytes: options.maxSpoolBytes ?? 1024 * 1024 * 1024,
			onSpoolFull: options.onSpoolFull ?? "failClosed",
			chunkMaxBytes: options.chunkMaxBytes ?? 1024 * 1024,
			segmentMaxBytes: options.segmentMaxBytes ?? 8 * 1024 * 1024,
			chunkMaxAgeMs: options.chunkMaxAgeMs ?? 10_000,
			flushIntervalMs: options.flushIntervalMs ?? 100,
			fsync: options.fsync ?? "chunk",
			retryInitialDelayMs: options.retryInitialDelayMs ?? 500,
			retryMaxDelayMs: options.retryMaxDelayMs ?? 30_000,
			uploadConcurrency: options.uploadConcurrency ?? 4,
			maxCapturedRows: options.maxCapturedRows ?? 100,
			uploadTimeoutMs: options.uploadTimeoutMs ?? 60_000,
		};
		if (this.options.onSpoolFull !== "failClosed" && this.options.onSpoolFull !== "failOpen") {
			throw new RecordingError("CONFIG", `onSpoolFull must be failClosed or failOpen, got ${String(this.options.onSpoolFull)}`);
		}
		this.now = options.now ?? Date.now;
		this.store = options.store;
		this.log = options.logger ?? consoleLogger;
		this.sessionsDir = join(options.spoolDir, "sessions");
		this.lockPath = join(options.spoolDir, "LOCK");
		this.metrics = new RecorderMetrics(
			{
				backlogBytes: () => this.backlog,
				oldestUnsentEventAgeSeconds: () => this.oldestUnsentAgeSeconds(),
				openSessions: () => [...this.states.values()].filter((s) => s.live && !s.live.closed).length,
				sessionsAwaitingUpload: () => [...this.states.values()].filter((s) => s.hasWork()).length,
				spoolFull: () => this.backlog >= this.options.maxSpoolBytes,
			},
			options.registry,
		);
	}

	/** Bytes in the spool not yet uploaded. */
	backlogBytes(): number {
		return this.backlog;
	}

	oldestUnsentAgeSeconds(): number {
		let oldest: number | undefined;
		for (const s of this.states.values()) {
			const t = s.oldestPendingMs();
			if (t !== undefined && (oldest === undefined || t < oldest)) oldest = t;
		}
		return oldest === undefined ? 0 : Math.max(0, (Date.now() - oldest) / 1000);
	}

	/** Sessions with data still in the spool. */
	pendingSessions(): string[] {
		return [...this.states.values()].filter((s) => s.hasWork() || (s.live && !s.live.closed)).map((s) => s.id);
	}

	addBytes(state: SpoolState, delta: number): void {
		state.bytes += delta;
		this.backlog += delta;
	}

	/**
	 * Lock the spool, recover sessions a previous process left behind (closing them with
	 * reason `shutdown`, `recovered: true`), and start the uploader. Idempotent.
	 */
	async start(): Promise<void> {
		if (this.started) return;
		await mkdir(this.sessionsDir, { recursive: true });
		await this.lock();
		this.started = true;
		// The spool worker starts now, not at the first session's first flush.
		this.io.start();
		const names = (await readdir(this.sessionsDir)).sort();
		for (const name of names) {
			try {
				await this.recoverDir(name);
			} catch (e) {
				this.log.error({ session: name, err: (e as Error).message }, "cannot recover spooled session; left in place");
			}
		}
		this.loop = this.uploadLoop();
	}

	private async lock(): Promise<void> {
		try {
			const text = await readFile(this.lockPath, "utf8");
			const pid = Number(text.trim());
			if (pid && pid !== process.pid) {
				let alive = false;
				try {
					process.kill(pid, 0);
					alive = true;
				} catch {
					alive = false;
				}
				if (alive) throw new RecordingError("CONFIG", `spool ${this.options.spoolDir} is in use by process ${pid}; each gateway replica needs its own spool`);
			}
		} catch (e) {
			if (e instanceof RecordingError) throw e;
		}
		await writeFile(this.lockPath, `${process.pid}\n`);
	}

	private async recoverDir(name: string): Promise<void> {
		const dir = join(this.sessionsDir, name);
		if (name.startsWith(DONE_PREFIX)) {
			// Stored at close; the previous process stopped while removing it.
			await rm(dir, { recursive: true, force: true });
			return;
		}
		let open: OpenRecord;
		try {
			open = JSON.parse(await readFile(join(dir, "open.json"), "utf8")) as OpenRecord;
		} catch {
			// openSession crashed before open.json was durable: nothing was emitted yet.
			await rm(dir, { recursive: true, force: true });
			return;
		}
		const state = new SpoolState(open.meta.sessionId, dir, open.meta, open.prefix);
		this.states.set(state.id, state);
		await cutTornIndexTail(dir);
		const entries = await readChunkIndex(dir);
		state.uploadedThrough = await readUploadedThrough(dir);
		const segmentSizes = new Map<string, number | undefined>();
		const lost = (e: ChunkEntry, why: string) => {
			state.lostChunks.add(e.index);
			this.log.error({ session: name, chunk: e.name, segment: e.segment, events: `${e.firstSeq}-${e.lastSeq}` }, `sealed chunk ${why}; it cannot be uploaded and is recorded as lost`);
		};
		for (const e of entries) {
			if (e.segment === undefined) {
				// A spool from before segments: the chunk is its own file until uploaded.
				const size = await fileSize(join(dir, e.name));
				if (size !== undefined) {
					state.pendingChunks.set(e.index, e);
					this.addBytes(state, size);
				} else if (e.index > state.uploadedThrough && !(await this.inStore(state, e))) lost(e, "file is gone from the spool");
				continue;
			}
			if (!segmentSizes.has(e.segment)) segmentSizes.set(e.segment, await fileSize(join(dir, e.segment)));
			const size = segmentSizes.get(e.segment);
			if (size === undefined) {
				// Segments are deleted once all their chunks are uploaded: gone before that is damage.
				if (e.index > state.uploadedThrough && !(await this.inStore(state, e))) lost(e, "is in a spool segment that is gone");
				continue;
			}
			state.segments.add(e.segment);
			if (e.index <= state.uploadedThrough) continue;
			if (size < (e.offset ?? 0) + e.bytes) {
				if (!(await this.inStore(state, e))) lost(e, "is cut short in its spool segment");
				continue;
			}
			state.pendingChunks.set(e.index, e);
			this.addBytes(state, e.bytes);
		}
		for (const f of [TERMINAL_FILE, SESSION_FILE, MANIFEST_FILE, "events.jsonl"]) {
			const size = await fileSize(join(dir, f));
			if (size !== undefined) this.addBytes(state, size);
		}
		if ((await fileSize(join(dir, MANIFEST_FILE))) !== undefined) {
			if (state.lostChunks.size > 0) await this.markLost(state);
			state.finalized = true;
			state.finalizedAtMs = Date.now();
			return;
		}
		// Not closed by the previous process: seal what it wrote and close it.
		const live = new LiveSession(this, state, entries, true);
		state.live = live;
		await live.recover();
		this.metrics.sessionsRecovered.inc();
		this.log.warn({ session: state.id, prefix: state.prefix }, "recovered a session the previous gateway process did not close");
		await live.close({ reason: "shutdown", message: "gateway stopped before the session ended; closed from the spool by recovery" });
	}

	async openSession(meta: SessionMeta, options: OpenSessionOptions = {}): Promise<SessionRecorder> {
		if (!this.started || this.stopping) throw new RecordingError("SESSION_CLOSED", "recorder is not running");
		if (!SESSION_ID_RE.test(meta.sessionId)) throw new TypeError(`session id must match ${SESSION_ID_RE} (a UUID is fine), got ${JSON.stringify(meta.sessionId)}`);
		if (this.states.has(meta.sessionId)) throw new TypeError(`duplicate session id ${meta.sessionId}`);
		if (this.backlog >= this.options.maxSpoolBytes) {
			if (this.options.onSpoolFull === "failClosed") {
				this.metrics.sessionsRefused.inc();
				this.log.error({ session: meta.sessionId, backlogBytes: this.backlog, maxSpoolBytes: this.options.maxSpoolBytes }, "spool full: session refused (failClosed)");
				throw new SpoolFullError(this.backlog, this.options.maxSpoolBytes);
			}
			this.metrics.sessionsOverBudget.inc();
			this.log.error(
				{ alert: "RecordingSpoolFull", session: meta.sessionId, backlogBytes: this.backlog, maxSpoolBytes: this.options.maxSpoolBytes },
				"ALERT spool full: session admitted without the spool budget (failOpen)",
			);
		}
		const prefix = sessionPrefix(meta);
		const dir = join(this.sessionsDir, meta.sessionId);
		const state = new SpoolState(meta.sessionId, dir, meta, prefix);
		this.states.set(state.id, state);
		try {
			const record: OpenRecord = { format: FORMAT_VERSION, meta, prefix, keyId: this.options.key.kid };
			const body = Buffer.from(JSON.stringify(record));
			// In the spool worker, with the other sessions' file work of this turn: the folder, open.json
			// (temporary file, fsync, rename), the folder and its parent fsynced.
			const { error } = await this.io.run({ kind: "files", dir, mkdir: true, files: [{ name: "open.json", body }] });
			if (error) throw new Error(error.message);
			this.addBytes(state, body.length);
		} catch (e) {
			this.states.delete(state.id);
			throw new RecordingError("STORE_UNAVAILABLE", `cannot create spool directory for session ${meta.sessionId}: ${(e as Error).message}`, { cause: e });
		}
		const live = new LiveSession(this, state, [], false, options.onFailure);
		state.live = live;
		this.metrics.sessionsStarted.inc({ protocol: meta.protocol });
		return live;
	}

	/**
	 * A session has events to write: it is flushed at the next tick, every flushIntervalMs at most,
	 * together with every other session that has, so that one tick is one message to the worker.
	 */
	scheduleFlush(session: LiveSession): void {
		this.flushDue.add(session);
		if (this.flushTimer) return;
		this.flushTimer = setTimeout(() => {
			this.flushTimer = undefined;
			const due = [...this.flushDue];
			this.flushDue.clear();
			for (const s of due) s.flushNow();
		}, this.options.flushIntervalMs);
		this.flushTimer.unref();
	}

	unscheduleFlush(session: LiveSession): void {
		this.flushDue.delete(session);
	}

	/** Called by a session when it sealed a chunk or finalised. */
	kick(): void {
		this.wake?.();
	}

	/** Resolves when nothing is waiting for upload (open sessions' unsealed events excepted) or after timeoutMs (rejects). */
	async drain(timeoutMs = 60_000): Promise<void> {
		const idle = () => this.closing === 0 && ![...this.states.values()].some((s) => s.hasWork() || (s.live?.sealing ?? 0) > 0) && this.keyPublished;
		if (idle()) return;
		await new Promise<void>((resolve, reject) => {
			const timer = setTimeout(() => {
				this.drainWaiters = this.drainWaiters.filter((w) => w !== done);
				reject(new RecordingError("STORE_UNAVAILABLE", `recording spool not drained after ${timeoutMs} ms (${this.backlog} bytes waiting)`));
			}, timeoutMs);
			const done = () => {
				if (!idle()) return;
				clearTimeout(timer);
				this.drainWaiters = this.drainWaiters.filter((w) => w !== done);
				resolve();
			};
			this.drainWaiters.push(done);
			this.kick();
		});
	}

	/**
	 * Stop: flush every open session's buffered events to the spool (they stay open on disk and are
	 * recovered by the next process), stop the uploader, release the lock.
	 */
	async stop(): Promise<void> {
		if (!this.started || this.stopping) return;
		this.stopping = true;
		for (const s of this.states.values()) if (s.live && !s.live.closed) await s.live.suspend();
		if (this.sleepTimer) clearTimeout(this.sleepTimer);
		this.kick();
		await this.loop;
		if (this.flushTimer) clearTimeout(this.flushTimer);
		await this.io.close();
		try {
			await unlink(this.lockPath);
		} catch {}
	}

	// -------------------------------------------------------------------------------------------
	// Uploader

	private async uploadLoop(): Promise<void> {
		while (!this.stopping) {
			let failed = false;
			try {
				if (!this.keyPublished) {
					// The store may have been down when the gateway started: (re)create the bucket first.
					await this.timed("initialising the store", this.store.init());
					const jwk = this.options.key.publicJwk;
					await this.timed(
						"publishing the public key",
						this.store.put(`${KEYS_PREFIX}${this.options.key.kid}.jwk`, Buffer.from(JSON.stringify(jwk, null, 2)), {
							contentType: "application/jwk+json",
							metadata: { kid: this.options.key.kid, alg: this.options.key.alg },
						}),
					);
					this.keyPublished = true;
				}
			} catch (e) {
				failed = true;
				this.metrics.uploadErrors.inc({ kind: "key" });
				if (e instanceof RecordingError && e.code === "CONFIG") this.log.error({ err: e.message }, "recording store is misconfigured; nothing uploads until it is fixed");
				else this.log.warn({ err: (e as Error).message }, "initialising the recording store or publishing the public key failed; retrying");
			}
			if (!failed) {
				const ready = [...this.states.values()].filter((s) => s.hasWork() && !s.uploading);
				if (ready.length === 0) {
					this.notifyDrain();
					await new Promise<void>((resolve) => {
						this.wake = resolve;
						// Periodic wake-up as a safety net.
						this.sleepTimer = setTimeout(resolve, 5_000);
						this.sleepTimer.unref();
					});
					this.wake = undefined;
					if (this.sleepTimer) clearTimeout(this.sleepTimer);
					continue;
				}
				// A store-wide failure ends the pass (back off); a session-specific one does not, so one
				// damaged spool folder cannot starve the others.
				for (let i = 0; i < ready.length && !this.stopping; i += this.options.uploadConcurrency) {
					const batch = ready.slice(i, i + this.options.uploadConcurrency);
					const results = await Promise.all(batch.map((s) => this.uploadSession(s)));
					if (results.some((r) => r !== "ok")) failed = true;
					if (results.includes("store")) break;
				}
			}
			if (failed) {
				this.consecutiveFailures++;
				const base = Math.min(this.options.retryMaxDelayMs, this.options.retryInitialDelayMs * 2 ** (this.consecutiveFailures - 1));
				const delay = Math.round(base / 2 + (Math.random() * base) / 2);
				await new Promise<void>((resolve) => {
					this.sleepTimer = setTimeout(resolve, delay);
					if (this.stopping) resolve();
					else this.wake = () => this.stopping && resolve();
				});
				this.wake = undefined;
			} else {
				this.consecutiveFailures = 0;
				this.notifyDrain();
			}
		}
	}

	private notifyDrain(): void {
		for (const w of [...this.drainWaiters]) w();
	}

	/** Upload what the session has ready, in order. On failure says whether the store or the session is at fault (retried later either way). */
	private async uploadSession(state: SpoolState): Promise<"ok" | "store" | "session"> {
		state.uploading = true;
		const upload = (name: string, body: Uint8Array, contentType: string, metadata: Record<string, string> = {}) => this.uploadObject(state, name, body, contentType, metadata);
		/** Upload a spool file as the object of the same name, then delete it: its bytes leave the backlog. */
		const put = async (name: string, contentType: string, metadata?: Record<string, string>): Promise<void> => {
			const path = join(state.dir, name);
			const body = await readFile(path);
			await upload(name, body, contentType, metadata);
			await unlink(path);
			this.addBytes(state, -body.length);
		};
		/**
		 * Upload one of a finalised session's last objects: from memory when this process finalised it,
		 * else from the spool. Not deleted one by one: the folder goes once the manifest is stored (a
		 * failure before that uploads them again, the same keys with the same bytes).
		 */
		const putFinal = async (name: string, contentType: string, metadata: (body: Buffer) => Record<string, string>): Promise<boolean> => {
			let body = state.finalFiles?.get(name);
			if (!body && !state.finalFiles) body = await readFile(join(state.dir, name)).catch(() => undefined);
			if (!body) return false;
			await upload(name, body, contentType, metadata(body));
			return true;
		};
		try {
			const indices = [...state.pendingChunks.keys()].sort((a, b) => a - b);
			if (indices.length > 0) {
				const through = state.uploadedThrough;
				try {
					for (const index of indices) {
						const e = state.pendingChunks.get(index)!;
						const metadata = chunkMetadata(state.id, e);
						if (e.segment === undefined) await put(e.name, "application/gzip", metadata);
						else {
							const body = state.heldBodies.get(index) ?? (await readRange(join(state.dir, e.segment), e.offset ?? 0, e.bytes));
							await upload(e.name, body, "application/gzip", metadata);
							this.addBytes(state, -e.bytes);
						}
						state.pendingChunks.delete(index);
						this.release(state, index);
						state.uploadedThrough = index;
					}
				} finally {
					// Chunks upload in order, so one number says what is in the store; a crash before it is
					// written only means a few chunks are uploaded again (same key, same bytes). A finalised
					// session's folder is about to go as a whole: no marker, and its segments stay until then.
					const done = state.finalized && state.pendingChunks.size === 0;
					if (state.uploadedThrough !== through && !done) await writeFile(join(state.dir, UPLOADED_FILE), `${state.uploadedThrough}\n`).catch(() => undefined);
				}
				if (!state.finalized) await this.reapSegments(state);
			}
			if (state.finalized && state.pendingChunks.size === 0) {
				await putFinal(TERMINAL_FILE, "application/x-asciicast", () => ({}));
				await putFinal(SESSION_FILE, "application/json", (body) => sessionMetadata(JSON.parse(body.toString("utf8"))));
				if (!(await putFinal(MANIFEST_FILE, "application/jose", () => ({ "session-id": state.id, kid: this.options.key.kid })))) {
					throw new RecordingError("MALFORMED", `the spool folder of finalised session ${state.id} has no ${MANIFEST_FILE}`);
				}
				await rm(state.dir, { recursive: true, force: true });
				this.backlog -= state.bytes;
				state.bytes = 0;
				state.finalized = false;
				this.states.delete(state.id);
			}
			return "ok";
		} catch (e) {
			const store = e instanceof RecordingError && e.code === "STORE_UNAVAILABLE";
			this.metrics.uploadErrors.inc({ kind: store ? "store" : "other" });
			this.log.warn({ session: state.id, err: (e as Error).message, attempt: this.consecutiveFailures + 1 }, "recording upload failed; will retry with backoff");
			return store ? "store" : "session";
		} finally {
			state.uploading = false;
		}
	}

	/** Store one object of a session. */
	private async uploadObject(state: SpoolState, name: string, body: Uint8Array, contentType: string, metadata: Record<string, string> = {}): Promise<void> {
		await this.timed(`uploading ${state.prefix + name}`, this.store.put(state.prefix + name, body, { contentType, metadata }));
		this.metrics.uploadedBytes.inc(body.length);
		this.metrics.uploadedObjects.inc();
	}

	/** A closing session may go straight to the store: the store answered last time and the key is published ("chunk" durability only). */
	canUploadDirect(): boolean {
		return this.keyPublished && this.consecutiveFailures === 0 && !this.stopping && this.options.fsync === "chunk";
	}

	/**
	 * Store a closing session's objects from memory (LiveSession.closeDirect): its chunk, session.json,
	 * then the manifest; then remove its spool folder, renamed out of the way first so that a crash
	 * while removing it is not recovered as an unclosed session. False on any failure: nothing is
	 * removed, and the session goes the spool way.
	 */
	async uploadDirect(state: SpoolState, chunk: { entry: ChunkEntry; body: Uint8Array } | undefined, sessionBody: Buffer, jws: Buffer): Promise<boolean> {
		try {
			if (chunk) await this.uploadObject(state, chunk.entry.name, chunk.body, "application/gzip", chunkMetadata(state.id, chunk.entry));
			await this.uploadObject(state, SESSION_FILE, sessionBody, "application/json", sessionMetadata(JSON.parse(sessionBody.toString("utf8"))));
			await this.uploadObject(state, MANIFEST_FILE, jws, "application/jose", { "session-id": state.id, kid: this.options.key.kid });
		} catch (e) {
			const store = e instanceof RecordingError && e.code === "STORE_UNAVAILABLE";
			this.metrics.uploadErrors.inc({ kind: store ? "store" : "other" });
			this.log.warn({ session: state.id, err: (e as Error).message }, "recording upload at session close failed; the session goes through the spool");
			return false;
		}
		// Renamed first, at once: from here a crash must not recover the folder as an unclosed session
		// (that would store it again over this, ended "shutdown"). The worker's files of it are closed after.
		const gone = join(this.sessionsDir, `${DONE_PREFIX}${state.id}`);
		try {
			await rename(state.dir, gone);
		} catch (e) {
			this.log.warn({ session: state.id, err: (e as Error).message }, "stored session's spool folder not renamed");
		}
		await this.io.run({ kind: "close", dir: state.dir }).catch(() => undefined);
		await rm(gone, { recursive: true, force: true }).catch((e: Error) => this.log.warn({ session: state.id, err: e.message }, "stored session's spool folder not removed"));
		this.backlog -= state.bytes;
		state.bytes = 0;
		this.states.delete(state.id);
		return true;
	}

	/** Bound one store operation; on timeout it counts as a store failure (the request is abandoned). */
	private timed<T>(what: string, op: Promise<T>): Promise<T> {
		const ms = this.options.uploadTimeoutMs;
		let timer: NodeJS.Timeout | undefined;
		const timeout = new Promise<never>((_, reject) => {
			timer = setTimeout(() => reject(new RecordingError("STORE_UNAVAILABLE", `${what}: no answer from ${this.store.description} within ${ms} ms`)), ms);
		});
		op.catch(() => {});
		return Promise.race([op, timeout]).finally(() => clearTimeout(timer));
	}

	/** Delete the session's segments that hold no chunk waiting for upload and are not being written. */
	async reapSegments(state: SpoolState): Promise<void> {
		const inUse = new Set<string | undefined>();
		for (const e of state.pendingChunks.values()) inUse.add(e.segment);
		for (const seg of [...state.segments]) {
			if (seg === state.writingSegment || inUse.has(seg)) continue;
			state.segments.delete(seg);
			await unlink(join(state.dir, seg)).catch((e: NodeJS.ErrnoException) => {
				if (e.code !== "ENOENT") throw e;
			});
		}
	}

	/** Whether a chunk the spool lost is in the store after all (uploaded before `uploaded` was written). */
	private async inStore(state: SpoolState, e: ChunkEntry): Promise<boolean> {
		try {
			return (await this.options.store.head(state.prefix + e.name))?.size === e.bytes;
		} catch {
			return false;
		}
	}

	/**
	 * A closed session (session.json and manifest in the spool) whose chunks the spool lost: sign
	 * again saying so (their events counted in droppedEvents, their manifest entries `lost: true`).
	 */
	private async markLost(state: SpoolState): Promise<void> {
		const docPath = join(state.dir, SESSION_FILE);
		const manifestPath = join(state.dir, MANIFEST_FILE);
		const oldDoc = await readFile(docPath);
		const oldJws = await readFile(manifestPath);
		const doc = JSON.parse(oldDoc.toString("utf8")) as SessionDocument;
		const manifest = JSON.parse(Buffer.from(oldJws.toString("utf8").split(".")[1] ?? "", "base64url").toString("utf8")) as Manifest;
		let lostEvents = 0;
		manifest.chunks.forEach((c, i) => {
			if (state.lostChunks.has(i + 1) && !c.lost) {
				c.lost = true;
				lostEvents += c.events;
			}
		});
		if (lostEvents === 0) return;
		doc.droppedEvents += lostEvents;
		const docBody = Buffer.from(`${JSON.stringify(doc, null, 2)}\n`);
		manifest.session = { name: SESSION_FILE, sha256: sha256Hex(docBody), bytes: docBody.length };
		manifest.signedAt = new Date(this.now()).toISOString();
		const jws = Buffer.from(await this.signManifest(manifest));
		const { error } = await this.io.run({
			kind: "files",
			dir: state.dir,
			mkdir: false,
			files: [
				{ name: SESSION_FILE, body: docBody },
				{ name: MANIFEST_FILE, body: jws },
			],
		});
		if (error) throw new Error(error.message);
		this.addBytes(state, docBody.length - oldDoc.length + jws.length - oldJws.length);
	}

	/** Sign a manifest with the recording key (compact JWS). */
	async signManifest(manifest: Manifest): Promise<string> {
		const { key } = this.options;
		return new CompactSign(Buffer.from(JSON.stringify(manifest)))
			.setProtectedHeader({ alg: key.alg, kid: key.kid, typ: MANIFEST_JWS_TYP })
			.sign(key.privateKey);
	}
}

async function fileSize(path: string): Promise<number | undefined> {
	try {
		return (await stat(path)).size;
	} catch {
		return undefined;
	}
}

/**
 * A crash while a seal appended its index line leaves that line torn, without its newline. Recovery
 * re-seals the chunk from events.jsonl, and the worker appends the new line to the file as it is: it
 * would run on from the torn bytes into one unreadable line, and the uploader, which looks chunks up
 * in the index, would never find that chunk. So the torn tail is cut off (durably) first.
 */
async function cutTornIndexTail(dir: string): Promise<void> {
	const path = join(dir, "chunks.jsonl");
	let text: Buffer;
	try {
		text = await readFile(path);
	} catch {
		return;
	}
	if (text.length === 0 || text[text.length - 1] === 0x0a) return;
	await truncate(path, text.lastIndexOf(0x0a) + 1);
	const fh = await open(path, "r+");
	try {
		await fh.sync();
	} finally {
		await fh.close();
	}
}

async function readChunkIndex(dir: string): Promise<ChunkEntry[]> {
	let text: string;
	try {
		text = await readFile(join(dir, "chunks.jsonl"), "utf8");
	} catch {
		return [];
	}
	const out: ChunkEntry[] = [];
	for (const line of text.split("\n")) {
		if (!line) continue;
		try {
			out.push(JSON.parse(line) as ChunkEntry);
		} catch {
			// A torn last line: its chunk is re-sealed from events.jsonl by recovery.
		}
	}
	return out;
}

/** A spool folder renamed to this prefix has every object in the store and is being removed. */
const DONE_PREFIX = ".stored-";

/** What the spool worker needs to seal or pack a chunk buffer as chunk `index`. */
function sealChunk(c: ChunkBuffer, index: number): SealChunk {
	return { buf: c.buf, len: c.len, index, name: chunkName(index), events: c.events, firstSeq: c.firstSeq, lastSeq: c.lastSeq, firstTimeMs: c.firstTimeMs, counts: c.counts };
}

/** The searchable metadata of a chunk object. */
function chunkMetadata(sessionId: string, e: ChunkEntry): Record<string, string> {
	return { "session-id": sessionId, chunk: String(e.index), sha256: e.sha256, "first-seq": String(e.firstSeq), "last-seq": String(e.lastSeq) };
}

/** The spool file saying up to which chunk index a session's chunks are in the store. */
const UPLOADED_FILE = "uploaded";
const SEGMENT_RE = /^segment-(\d{6,})\.bin$/;
const segmentNumber = (name: string) => Number(SEGMENT_RE.exec(name)?.[1] ?? 0);

async function readUploadedThrough(dir: string): Promise<number> {
	try {
		const n = Number((await readFile(join(dir, UPLOADED_FILE), "utf8")).trim());
		return Number.isSafeInteger(n) && n > 0 ? n : 0;
	} catch {
		return 0;
	}
}

/** `bytes` bytes of a spool segment from `offset`; a short read means the spool lost data. */
async function readRange(path: string, offset: number, bytes: number): Promise<Buffer> {
	const fh = await open(path, "r");
	try {
		const buf = Buffer.allocUnsafe(bytes);
		let got = 0;
		while (got < bytes) {
			const { bytesRead } = await fh.read(buf, got, bytes - got, offset + got);
			if (bytesRead === 0) throw new RecordingError("MALFORMED", `${path}: ${bytes} bytes expected at offset ${offset}, the file ends after ${got}`);
			got += bytesRead;
		}
		return buf;
	} finally {
		await fh.close();
	}
}

const SEQ_KEY = Buffer.from(',"seq":', "latin1");
const TIME_KEY = Buffer.from(',"time":"', "latin1");
const OFFSET_KEY = Buffer.from('","offsetMs":', "latin1");


/**
 * Bytes kept free at the front of a chunk buffer for the chunk's header line, written there at seal
 * time so that header and events are gzipped from one contiguous range, without a copy.
 */
const HEADER_ROOM = 512;
/** A chunk buffer's standard size: header room, a whole chunk, and slack for the event that crosses the limit. */
const chunkBufferSize = (chunkMaxBytes: number) => HEADER_ROOM + chunkMaxBytes + 16 * 1024;
/** Sealed chunks' buffers kept for reuse, recorder-wide (each up to ~chunkMaxBytes). */
const SPARE_CHUNK_BUFFERS = 8;
/**
 * Most gzipped chunk bytes kept in memory for upload, recorder-wide: a few hundred busy chunks. While
 * the store is down the backlog grows past it, and the chunks beyond it are read from the spool.
 */
const HELD_CHUNK_BYTES = 32 * 1024 * 1024;
/**
 * Chunk buffers live in shared memory: the spool worker reads the ranges it is handed (and writes a
 * chunk's header into its room) without a copy; the main thread never writes a range it handed over.
 */
const sharedBuffer = (size: number) => Buffer.from(new SharedArrayBuffer(size));

/**
 * One chunk in the making: its JSON Lines ("…\n" per event) written straight into a Buffer when the
 * event is emitted, and what the chunk index needs of them. No line string or event object outlives
 * `emit`, so a busy session's unsealed megabyte is one Buffer, not thousands of heap objects that
 * live long enough to be promoted and collected by the major GC.
 */
class ChunkBuffer {
	buf: Buffer;
	/** Events occupy [HEADER_ROOM, len). */
	len = HEADER_ROOM;
	/** Bytes [HEADER_ROOM, flushed) are in events.jsonl. */
	flushed = HEADER_ROOM;
	flushedEvents = 0;
	events = 0;
	firstSeq = 0;
	lastSeq = 0;
	firstTimeMs = 0;
	readonly counts = emptyCounts();

	/**
	 * Sized for a whole chunk up front (the pages are only touched as events arrive), so a busy session
	 * never copies while filling it; sealed chunks hand their buffers on (DiskRecorder.giveBuffer).
	 */
	constructor(buf: Buffer | undefined, chunkMaxBytes: number) {
		this.buf = buf ?? sharedBuffer(chunkBufferSize(chunkMaxBytes));
	}

	get bytes(): number {
		return this.len - HEADER_ROOM;
	}

	/** The buffer, with room for `more` bytes after `len`. Growing copies; views already taken stay valid. */
	room(more: number): Buffer {
		const need = this.len + more;
		if (need > this.buf.length) {
			const next = sharedBuffer(Math.max(need, this.buf.length * 2));
			this.buf.copy(next, 0, 0, this.len);
			this.buf = next;
		}
		return this.buf;
	}

	/** Append one stored line: the event's JSON text, then the stored fields over its closing brace (appendStored). */
	appendEvent(json: string, seq: number, iso: Uint8Array, offsetMs: number, timeMs: number, event: RecordingEvent): void {
		const buf = this.room(json.length > 65536 ? Buffer.byteLength(json) : json.length * 3);
		this.len += buf.write(json, this.len, "utf8");
		this.appendStored(seq, iso, offsetMs, timeMs, event);
	}

	/**
	 * Append a statement event written by the serialiser straight into the buffer; false, with nothing
	 * appended, when it cannot (a value outside the event type, or one JSON.stringify throws on).
	 */
	appendStatement(json: StatementSerializer, event: StatementEvent, seq: number, iso: Uint8Array, offsetMs: number, timeMs: number): boolean {
		const start = this.len;
		try {
			if (!json.write(event, this)) return false;
		} catch {
			this.len = start;
			return false;
		}
		this.appendStored(seq, iso, offsetMs, timeMs, event);
		return true;
	}

	/**
	 * `,"seq":…,"time":"…","offsetMs":…}` and a newline written over the closing brace of the event
	 * just appended, byte by byte (no number-to-string conversions, no joined string); the chunk's seq
	 * range and counts take the event in.
	 */
	private appendStored(seq: number, iso: Uint8Array, offsetMs: number, timeMs: number, event: RecordingEvent): void {
		const buf = this.room(iso.length + 96);
		let p = this.len - 1;
		p = putBytes(buf, p, SEQ_KEY);
		p = putNumber(buf, p, seq);
		p = putBytes(buf, p, TIME_KEY);
		p = putBytes(buf, p, iso);
		p = putBytes(buf, p, OFFSET_KEY);
		p = putNumber(buf, p, offsetMs);
		buf[p++] = 0x7d; // }
		buf[p++] = 0x0a; // \n
		this.len = p;
		this.took(seq, timeMs, event);
	}

	/** Append one stored line as it is (recovery re-reads lines from events.jsonl). */
	append(line: string, seq: number, timeMs: number, event: RecordingEvent): void {
		this.len += this.room(line.length > 65536 ? Buffer.byteLength(line) : line.length * 3).write(line, this.len, "utf8");
		this.took(seq, timeMs, event);
	}

	private took(seq: number, timeMs: number, event: RecordingEvent): void {
		if (this.events === 0) {
			this.firstSeq = seq;
			this.firstTimeMs = timeMs;
		}
		this.events++;
		this.lastSeq = seq;
		countEvent(this.counts, event);
	}
}

/** A range of a chunk buffer handed to the worker for events.jsonl, and what it covers. */
interface FlushPart {
	c: ChunkBuffer;
	view: Buffer;
	to: number;
	events: number;
}

/** The per-session writer handed to data paths. */
class LiveSession implements SessionRecorder {
	readonly sessionId: string;
	closed = false;
	currentFirstTimeMs: number | undefined;
	private readonly rec: DiskRecorder;
	private readonly state: SpoolState;
	private readonly startMs: number;
	private seq = 0;
	/** Chunks that reached chunkMaxBytes, waiting for their seal, in order. */
	private full: ChunkBuffer[] = [];
	/** The chunk events are appended to. */
	private open: ChunkBuffer | undefined;
	/** Events emitted but not yet added to the events metric (added per flush, not per event). */
	private uncounted = 0;
	private pendingCast: string[] = [];
	private readonly entries: ChunkEntry[];
	private castStarted = false;
	/** Bytes in events.jsonl (it is truncated after every seal). */
	private eventsBytes = 0;
	/** The segment sealed chunks are appended to ("" when none is open), its size and number (the worker opens and rolls them). */
	private segName = "";
	private segSize = 0;
	private segNumber = 0;
	private chain: Promise<void> = Promise.resolve();
	/** Waiting for the recorder's next flush tick. */
	private flushDue = false;
	private ageTimer: NodeJS.Timeout | undefined;
	private sealQueued = false;
	/** Seals queued or running: their chunks are about to be uploadable, so drain() waits for them. */
	sealing = 0;
	private dropped = 0;
	private failed: Error | undefined;
	private readonly recovering: boolean;
	/** The last event's offsetMs: offsets never decrease, whatever the wall clock does. */
	private lastOffsetMs = 0;

	private readonly onFailure: ((error: Error) => void) | undefined;

	constructor(rec: DiskRecorder, state: SpoolState, entries: ChunkEntry[], recovering: boolean, onFailure?: (error: Error) => void) {
		this.onFailure = onFailure;
		this.rec = rec;
		this.state = state;
		this.sessionId = state.id;
		this.startMs = new Date(state.meta.startedAt).getTime() || Date.now();
		this.entries = entries;
		this.recovering = recovering;
		const last = entries[entries.length - 1];
		this.seq = last ? last.lastSeq : 0;
		for (const e of entries) if (e.segment !== undefined) this.segNumber = Math.max(this.segNumber, segmentNumber(e.segment));
	}

	emit(event: RecordingEvent): void {
		if (this.closed) return;
		if (this.failed) {
			// The spool refused a write earlier: count what is lost instead of buffering it forever.
			this.dropped++;
			this.rec.metrics.eventsDropped.inc();
			return;
		}
		const now = this.rec.now();
		const seq = ++this.seq;
		// A wall clock stepped back (NTP, a VM resumed) would give later events earlier offsets: the
		// timeline and terminal.cast (asciicast times must not decrease) would play them out of order.
		// `time` stays the wall clock; `offsetMs` never goes back.
		const offsetMs = Math.max(this.lastOffsetMs, now - this.startMs);
		this.lastOffsetMs = offsetMs;
		const cap = this.rec.options.maxCapturedRows;
		if (event.type === "statement" && event.resultRows && event.resultRows.length > cap) {
			event = { ...event, resultRows: event.resultRows.slice(0, cap), resultRowsTruncated: true };
		}
		// The stored event is the event with seq, time and offsetMs appended, in that key order (the
		// same bytes as JSON.stringify({ ...event, seq, time, offsetMs })), written over its closing brace.
		const c = this.chunk(now);
		const iso = this.rec.isoBytes(now);
		if (event.type !== "statement" || !c.appendStatement(this.rec.statementJson, event, seq, iso, offsetMs, now)) {
			let json: string;
			try {
				json = JSON.stringify(event);
			} catch (e) {
				// A data-path bug (e.g. a BigInt in a kube body): keep a notice rather than lose the slot.
				event = { type: "notice", message: `unserialisable ${event.type} event: ${(e as Error).message}` };
				json = JSON.stringify(event);
			}
			c.appendEvent(json, seq, iso, offsetMs, now, event);
		}
		if (event.type === "terminal") {
			if (!this.castStarted) {
				this.castStarted = true;
				this.pendingCast.push(JSON.stringify(castHeader(this.state.meta, event)));
			}
			this.pendingCast.push(castLine(offsetMs, event.stream, event.data));
		}
		this.appended(c);
	}

	/** The open chunk, started if there is none; the first unsealed event starts the age timer. */
	private chunk(nowMs: number): ChunkBuffer {
		this.uncounted++;
		if (this.currentFirstTimeMs === undefined) {
			this.currentFirstTimeMs = nowMs;
			this.ageTimer = setTimeout(() => this.queueSeal(), this.rec.options.chunkMaxAgeMs);
			this.ageTimer.unref();
		}
		this.open ??= new ChunkBuffer(this.rec.takeBuffer(), this.rec.options.chunkMaxBytes);
		return this.open;
	}

	/** After an append: close the chunk at chunkMaxBytes (and seal), or make sure a flush is due. */
	private appended(c: ChunkBuffer): void {
		if (c.bytes >= this.rec.options.chunkMaxBytes) {
			this.full.push(c);
			this.open = undefined;
			this.queueSeal();
		} else if (!this.flushDue) {
			this.flushDue = true;
			this.rec.scheduleFlush(this);
		}
	}

	/** The recorder's flush tick: write what was appended since the last one. */
	flushNow(): void {
		this.flushDue = false;
		void this.enqueue(() => this.flush());
	}

	private queueSeal(): void {
		if (this.sealQueued) return;
		this.sealQueued = true;
		this.sealing++;
		void this.enqueue(async () => {
			this.sealQueued = false;
			await this.seal();
		}).finally(() => {
			this.sealing--;
			this.rec.kick();
		});
	}

	private enqueue(op: () => Promise<void>): Promise<void> {
		const next = this.chain.then(async () => {
			if (this.failed) return;
			try {
				await op();
			} catch (e) {
				this.failed = e as Error;
				this.dropUnwritten();
				this.rec.log.error({ session: this.sessionId, err: (e as Error).message }, "spool write failed; events of this session are being dropped");
				try {
					this.onFailure?.(new RecordingError("STORE_UNAVAILABLE", `recording of session ${this.sessionId} failed: ${(e as Error).message}`, { cause: e }));
				} catch {
					// The data path's handler must not break the recorder.
				}
			}
		});
		this.chain = next;
		return next;
	}

	private countEmitted(): void {
		if (this.uncounted > 0) {
			this.rec.metrics.events.inc(this.uncounted);
			this.uncounted = 0;
		}
	}

	/** What was appended since the last write, fixed now: later emits append after these ranges and never touch them. */
	private unflushed(): { parts: FlushPart[]; cast: string } {
		const parts: FlushPart[] = [];
		for (const c of this.open ? [...this.full, this.open] : this.full) {
			if (c.len > c.flushed) parts.push({ c, view: c.buf.subarray(c.flushed, c.len), to: c.len, events: c.events });
		}
		const cast = this.pendingCast.length ? `${this.pendingCast.join("\n")}\n` : "";
		this.pendingCast = [];
		return { parts, cast };
	}

	/** After the worker wrote `parts` and `cast` (or failed to): account for them, or count the events lost and throw. */
	private wrote(parts: FlushPart[], cast: string, error: Error | undefined): void {
		if (error) {
			let lost = 0;
			for (const x of parts) {
				lost += x.events - x.c.flushedEvents;
				// Counted here, not again by dropUnwritten.
				x.c.flushedEvents = x.events;
			}
			this.dropped += lost;
			this.rec.metrics.eventsDropped.inc(lost);
			throw error;
		}
		let n = 0;
		for (const x of parts) {
			n += x.view.length;
			x.c.flushed = x.to;
			x.c.flushedEvents = x.events;
		}
		this.eventsBytes += n;
		this.rec.addBytes(this.state, n + (cast ? Buffer.byteLength(cast) : 0));
	}

	/** The spool failed: the events buffered and not written are lost, count them (later emits count themselves). */
	private dropUnwritten(): void {
		let lost = 0;
		for (const c of this.open ? [...this.full, this.open] : this.full) lost += c.events - c.flushedEvents;
		this.full = [];
		this.open = undefined;
		this.pendingCast = [];
		this.dropped += lost;
		this.rec.metrics.eventsDropped.inc(lost);
	}

	/** Run one spool operation in the worker; a failure inside it comes back as an Error. */
	private async spool(op: SpoolOp): Promise<{ result: SpoolResult; error: Error | undefined }> {
		let result: SpoolResult;
		try {
			result = await this.rec.io.run(op);
		} catch (e) {
			return { result: {}, error: e as Error };
		}
		const err = result.error;
		if (!err) return { result, error: undefined };
		const error = Object.assign(new Error(err.message), err.code ? { code: err.code } : {});
		return { result, error };
	}

	/** Write what was appended since the last flush to events.jsonl / terminal.cast. */
	private async flush(): Promise<void> {
		this.countEmitted();
		const { parts, cast } = this.unflushed();
		await this.write(parts, cast);
	}

	private async write(parts: FlushPart[], cast: string): Promise<void> {
		if (parts.length === 0 && !cast) return;
		const { error } = await this.spool({ kind: "write", dir: this.state.dir, parts: parts.map((x) => x.view), cast, sync: this.rec.options.fsync === "always" });
		this.wrote(parts, cast, error);
	}

	/**
	 * Seal every chunk so far (the full ones and the open one): the worker writes what is unflushed,
	 * gzips, hash-chains, appends to the segment (fsynced), indexes (fsynced), then empties
	 * events.jsonl; all in one operation. Events emitted meanwhile start the next chunk.
	 */
	private async seal(): Promise<void> {
		if (this.ageTimer) {
			clearTimeout(this.ageTimer);
			this.ageTimer = undefined;
		}
		this.countEmitted();
		const { parts, cast } = this.unflushed();
		const chunks = this.full;
		this.full = [];
		if (this.open && this.open.events > 0) chunks.push(this.open);
		this.open = undefined;
		if (chunks.length === 0) return this.write(parts, cast);
		const last = this.entries[this.entries.length - 1];
		const first = (last?.index ?? 0) + 1;
		const sealChunks = chunks.map((c, i) => sealChunk(c, first + i));
		const { result, error } = await this.spool({
			kind: "seal",
			dir: this.state.dir,
			sessionId: this.sessionId,
			parts: parts.map((x) => x.view),
			cast,
			sync: this.rec.options.fsync === "always",
			chunks: sealChunks,
			prev: last ? last.sha256 : null,
			segment: { number: this.segNumber, name: this.segName, size: this.segSize },
			segmentMaxBytes: this.rec.options.segmentMaxBytes,
			truncateEvents: true,
		});
		// What the worker did before any failure counts: segments it made, chunks it indexed.
		for (const name of result.created ?? []) this.state.segments.add(name);
		if (result.segment) {
			this.segNumber = result.segment.number;
			this.segName = result.segment.name;
			this.segSize = result.segment.size;
			this.state.writingSegment = this.segName || undefined;
		}
		const bodies = result.bodies ?? [];
		for (const [i, e] of (result.entries ?? []).entries()) {
			this.entries.push(e);
			this.state.pendingChunks.set(e.index, e);
			this.rec.addBytes(this.state, e.bytes);
			const body = bodies[i];
			if (body?.length === e.bytes) this.rec.hold(this.state, e.index, body);
		}
		this.wrote(parts, cast, error);
		// Sealed: nothing refers to these bytes any more (the worker answered).
		for (const c of chunks) this.rec.giveBuffer(c.buf);
		// events.jsonl now only holds what the sealed chunks hold, and the worker emptied it.
		this.rec.addBytes(this.state, -this.eventsBytes);
		this.eventsBytes = 0;
		this.currentFirstTimeMs = undefined;
		// Events emitted while sealing are in new chunks: they start the next one.
		const next = this.full[0] ?? this.open;
		if (next && next.events > 0) {
			this.currentFirstTimeMs = next.firstTimeMs;
			this.ageTimer = setTimeout(() => this.queueSeal(), this.rec.options.chunkMaxAgeMs);
			this.ageTimer.unref();
		}
		this.rec.kick();
	}

	/** Recovery: load events.jsonl (dropping a torn last line and anything already sealed). */
	async recover(): Promise<void> {
		let text = "";
		try {
			text = await readFile(join(this.state.dir, "events.jsonl"), "utf8");
		} catch {}
		const lastSealed = this.seq;
		const lines = text.split("\n");
		const good: string[] = [];
		for (const l of lines) {
			if (!l) continue;
			try {
				const ev = JSON.parse(l) as StoredEvent;
				if (ev.seq > lastSealed) good.push(l);
			} catch {
				// torn write at crash time
			}
		}
		// Chunks written but never indexed are re-sealed from events.jsonl: chunk files (spools from
		// before segments) and segments no index line names are removed, and a segment is cut back
		// to the end of its last indexed chunk.
		const segmentEnds = new Map<string, number>();
		for (const e of this.entries) {
			if (e.segment !== undefined) segmentEnds.set(e.segment, Math.max(segmentEnds.get(e.segment) ?? 0, (e.offset ?? 0) + e.bytes));
		}
		for (const f of await readdir(this.state.dir)) {
			const path = join(this.state.dir, f);
			if (f.startsWith("chunk-") && !this.entries.some((e) => e.name === f)) await unlink(path);
			else if (SEGMENT_RE.test(f)) {
				const end = segmentEnds.get(f);
				if (end === undefined) await unlink(path);
				else if (((await fileSize(path)) ?? 0) > end) await truncate(path, end);
				this.segNumber = Math.max(this.segNumber, segmentNumber(f));
			}
		}
		const castPath = join(this.state.dir, TERMINAL_FILE);
		const castSize = await fileSize(castPath);
		if (castSize !== undefined) {
			this.castStarted = true;
			const cast = await readFile(castPath, "utf8");
			const cut = cast.lastIndexOf("\n") + 1;
			if (cut !== cast.length) {
				await writeFile(castPath, cast.slice(0, cut));
				this.rec.addBytes(this.state, cut - cast.length);
			}
		}
		await writeFile(join(this.state.dir, "events.jsonl"), "");
		// Recompute the backlog for events.jsonl: recoverDir counted its old size.
		const oldSize = Buffer.byteLength(text);
		this.rec.addBytes(this.state, -oldSize);
		// Lines are appended in seq order, one writer, so a gap means lines lost inside the file (disk
		// damage: unreadable bytes mid-file), and a seq not above the last one a line seen twice. A
		// chunk with a gap would never verify (seqs must run on), and one event twice is not what
		// happened: a gap becomes a notice saying how many events are missing (counted in
		// droppedEvents) and the events after it are numbered on; a repeated seq is skipped.
		let shift = 0;
		const put = (ev: StoredEvent, line: string) => {
			this.seq = ev.seq;
			const timeMs = Date.parse(ev.time) || Date.now();
			const c = this.chunk(timeMs);
			c.append(`${line}\n`, ev.seq, timeMs, ev);
			this.appended(c);
		};
		for (const l of good) {
			const original = JSON.parse(l) as StoredEvent;
			const seq = original.seq - shift;
			if (seq <= this.seq) continue;
			if (seq > this.seq + 1) {
				const missing = seq - this.seq - 1;
				this.dropped += missing;
				this.rec.log.error({ session: this.sessionId, missing, after: this.seq }, "spool events file lost events inside it; recorded as a notice");
				const notice = {
					type: "notice",
					message: `${missing} event(s) (originally seq ${this.seq + 1 + shift}-${seq - 1 + shift}) were lost from the gateway's spool before they were sealed (damaged spool file); the events after them are numbered on from here`,
					seq: this.seq + 1,
					time: original.time,
					offsetMs: original.offsetMs,
				} as StoredEvent;
				put(notice, JSON.stringify(notice));
				shift += missing - 1;
			}
			const ev = { ...original, seq: original.seq - shift } as StoredEvent;
			put(ev, shift === 0 ? l : JSON.stringify(ev));
		}
	}

	/** Flush buffered events to disk without closing (graceful gateway stop). */
	async suspend(): Promise<void> {
		this.closed = true;
		this.clearTimers();
		await this.enqueue(() => this.flush());
		await this.enqueue(async () => this.closeFiles());
		await this.releaseFiles();
		this.state.live = undefined;
	}

	private clearTimers(): void {
		if (this.flushDue) this.rec.unscheduleFlush(this);
		if (this.ageTimer) clearTimeout(this.ageTimer);
		this.flushDue = false;
		this.ageTimer = undefined;
	}

	/** Close the session's spool files in the worker (terminal.cast fsynced first). */
	private async closeFiles(): Promise<void> {
		const { error } = await this.spool({ kind: "close", dir: this.state.dir });
		this.segName = "";
		this.state.writingSegment = undefined;
		if (error) throw error;
	}

	/** A session whose spool failed skips its queued operations: still close what the worker holds open for it. */
	private async releaseFiles(): Promise<void> {
		if (this.failed) await this.spool({ kind: "close", dir: this.state.dir });
	}

	async close(end: SessionEnd): Promise<void> {
		if (this.closed && !this.recovering) throw new RecordingError("SESSION_CLOSED", `session ${this.sessionId} is already closed`);
		this.closed = true;
		this.clearTimers();
		const endedAt = new Date(this.rec.now()).toISOString();
		this.rec.closing++;
		try {
			if (!(await this.closeDirect(end, endedAt))) {
				await this.enqueue(() => this.seal());
				await this.enqueue(async () => {
					await this.closeFiles();
					await this.finalize(end, endedAt);
				});
				await this.releaseFiles();
			}
		} finally {
			this.rec.closing--;
			this.rec.kick();
		}
		if (this.failed) {
			throw new RecordingError("STORE_UNAVAILABLE", `recording of session ${this.sessionId} is incomplete: ${this.failed.message}`, { cause: this.failed });
		}
	}

	/**
	 * A short session, closed while the store answers: when no chunk of it was sealed yet, its one
	 * chunk, session.json and the manifest go from memory straight to the store, and the spool folder
	 * is removed, instead of being written to the spool durably (segment, index, session.json and the
	 * manifest: about six fsyncs) and read back by the uploader. Every event is in events.jsonl first
	 * (written, not fsynced, as at any flush), so a gateway crash before the manifest is stored is
	 * recovered from the spool as before. Any failure falls back to the spool path (objects already
	 * stored are stored again with the same bytes). False when it does not apply or did not finish.
	 */
	private async closeDirect(end: SessionEnd, endedAt: string): Promise<boolean> {
		if (this.recovering || this.entries.length > 0 || this.full.length > 0 || this.castStarted || this.failed || !this.rec.canUploadDirect()) return false;
		let done = false;
		await this.enqueue(async () => {
			if (this.ageTimer) {
				clearTimeout(this.ageTimer);
				this.ageTimer = undefined;
			}
			this.countEmitted();
			const { parts, cast } = this.unflushed();
			await this.write(parts, cast);
			const c = this.open && this.open.events > 0 ? this.open : undefined;
			let chunk: { entry: ChunkEntry; body: Uint8Array } | undefined;
			if (c) {
				const sc = sealChunk(c, 1);
				const { result, error } = await this.spool({ kind: "pack", sessionId: this.sessionId, chunk: sc, prev: null });
				if (error || !result.packed) return;
				const { body, sha256 } = result.packed;
				const { buf: _buf, len: _len, ...fields } = sc;
				chunk = { entry: { ...fields, sha256, bytes: body.length }, body };
			}
			// The spool path indexes its own entry if it comes to seal the chunk: this.entries stays as it is.
			const docs = await this.finalDocuments(end, endedAt, undefined, chunk ? [chunk.entry] : []);
			if (!(await this.rec.uploadDirect(this.state, chunk, docs.sessionBody, docs.jws))) return;
			if (c) this.rec.giveBuffer(c.buf);
			this.open = undefined;
			this.currentFirstTimeMs = undefined;
			this.state.live = undefined;
			done = true;
		});
		return done;
	}

	/** session.json and the signed manifest over `entries` (and terminal.cast when there is one). */
	private async finalDocuments(end: SessionEnd, endedAt: string, castBody: Buffer | undefined, entries: readonly ChunkEntry[] = this.entries): Promise<{ sessionBody: Buffer; jws: Buffer }> {
		const counts = emptyCounts();
		let lostEvents = 0;
		for (const e of entries) {
			addCounts(counts, e.counts);
			if (this.state.lostChunks.has(e.index)) lostEvents += e.events;
		}
		const doc = sessionDocument(
			this.state.meta,
			this.state.prefix,
			end,
			endedAt,
			counts,
			entries.length,
			castBody !== undefined,
			this.dropped + lostEvents,
			this.recovering,
			this.rec.options.key.kid,
		);
		const sessionBody = Buffer.from(`${JSON.stringify(doc, null, 2)}\n`);
		const manifest: Manifest = {
			format: FORMAT_VERSION,
			kind: "manifest",
			sessionId: this.sessionId,
			prefix: this.state.prefix,
			chunks: entries.map((e) => ({
				name: e.name,
				sha256: e.sha256,
				bytes: e.bytes,
				events: e.events,
				firstSeq: e.firstSeq,
				lastSeq: e.lastSeq,
				...(this.state.lostChunks.has(e.index) ? { lost: true as const } : {}),
			})),
			session: { name: SESSION_FILE, sha256: sha256Hex(sessionBody), bytes: sessionBody.length },
			totalEvents: counts.events,
			signedAt: new Date(this.rec.now()).toISOString(),
		};
		if (castBody !== undefined) manifest.terminal = { name: TERMINAL_FILE, sha256: sha256Hex(castBody), bytes: castBody.length };
		return { sessionBody, jws: Buffer.from(await this.rec.signManifest(manifest)) };
	}

	/** Write session.json and the signed manifest; the session is then ready for its final upload. */
	private async finalize(end: SessionEnd, endedAt: string): Promise<void> {
		const dir = this.state.dir;
		const castBody = this.castStarted ? await readFile(join(dir, TERMINAL_FILE)).catch(() => undefined) : undefined;
		const { sessionBody, jws } = await this.finalDocuments(end, endedAt, castBody);
		const { error } = await this.spool({
			kind: "files",
			dir,
			mkdir: false,
			files: [
				{ name: SESSION_FILE, body: sessionBody },
				{ name: MANIFEST_FILE, body: jws },
			],
		});
		if (error) throw error;
		// The uploader sends these from memory; the spool copies are for a restart.
		this.state.finalFiles = new Map([
			[SESSION_FILE, sessionBody],
			[MANIFEST_FILE, jws],
		]);
		if (castBody !== undefined) this.state.finalFiles.set(TERMINAL_FILE, castBody);
		this.rec.addBytes(this.state, sessionBody.length + jws.length);
		this.currentFirstTimeMs = undefined;
		this.state.finalized = true;
		this.state.finalizedAtMs = Date.now();
		this.state.live = undefined;
		this.rec.kick();
	}
}

export { randomUUID as newSessionId };
