/**
 * Reading recordings back: listing sessions with filters (using the date key layout to touch only
 * the days asked for, and object metadata instead of reading each session.json), loading one
 * session's events and terminal stream, and loading the published public keys. Shared by the CLI and
 * the web viewer.
 */
import type { JWK } from "jose";
import { RecordingError } from "./errors.ts";
import type { StoredEvent } from "./events.ts";
import {
	decodeChunk,
	KEYS_PREFIX,
	keySegment,
	MANIFEST_FILE,
	MAX_CHUNK_TEXT_BYTES,
	metaDecode,
	parseChunkName,
	ROOT_PREFIX,
	SESSION_FILE,
	type SessionDocument,
	sessionMetadata,
	TERMINAL_FILE,
} from "./format.ts";
import { type PublicKeySet, publicKeySet } from "./keys.ts";
import type { RecordingStore } from "./store.ts";

export interface SessionSummary {
	prefix: string;
	sessionId: string;
	protocol: string;
	identity: string;
	subject: string;
	grant: string;
	connection: string;
	startedAt: string;
	endedAt: string;
	hasBlocked: boolean;
	hasApprovals: boolean;
	commit: string;
	pullRequest: string;
}

export interface SessionFilter {
	/** Matches the identity's username or subject; `*` is a wildcard. */
	identity?: string;
	grant?: string;
	connection?: string;
	protocol?: string;
	sessionId?: string;
	/** Sessions that started at or after this time. */
	since?: Date;
	/** Sessions that started before this time. */
	until?: Date;
	hasBlocked?: boolean;
	hasApprovals?: boolean;
}

export type ListProgress = (p: { prefixesScanned: number; prefixesTotal?: number; sessionsSeen: number; matched: number }) => void;

/**
 * `*` matches any run of characters. No regular expression: `***…X` compiled to `^.*.*.*…X$`
 * backtracked for minutes on a 30-character name (C(n+k, k) ways to split it), blocking the gateway's
 * event loop, so every data path, from one viewer filter. This walk is at most pattern × value steps:
 * on a mismatch it only moves the last `*` one character further (greedy matching with one restart
 * point is exact for a lone wildcard kind).
 */
export function glob(pattern: string, value: string): boolean {
	if (!pattern.includes("*")) return pattern === value;
	let p = 0;
	let v = 0;
	let star = -1;
	let resume = 0;
	while (v < value.length) {
		if (p < pattern.length && pattern[p] === "*") {
			star = p++;
			resume = v;
		} else if (p < pattern.length && pattern[p] === value[v]) {
			p++;
			v++;
		} else if (star >= 0) {
			p = star + 1;
			v = ++resume;
		} else {
			return false;
		}
	}
	while (p < pattern.length && pattern[p] === "*") p++;
	return p === pattern.length;
}

/** Metadata keys a summary needs; without one of them the session.json is read instead (commit and
 * pull-request are empty when unknown, and a store may drop empty values). */
const SUMMARY_KEYS = ["session-id", "protocol", "identity", "subject", "grant", "connection", "started", "ended", "has-blocked", "has-approvals"];

function summaryFromMetadata(prefix: string, m: Record<string, string>): SessionSummary | undefined {
	if (!m["session-id"] || !m.started || SUMMARY_KEYS.some((k) => m[k] === undefined)) return undefined;
	return {
		prefix,
		sessionId: metaDecode(m["session-id"])!,
		protocol: m.protocol ?? "",
		identity: metaDecode(m.identity) ?? "",
		subject: metaDecode(m.subject) ?? "",
		grant: metaDecode(m.grant) ?? "",
		connection: metaDecode(m.connection) ?? "",
		startedAt: m.started,
		endedAt: m.ended ?? "",
		hasBlocked: m["has-blocked"] === "true",
		hasApprovals: m["has-approvals"] === "true",
		commit: metaDecode(m.commit) ?? "",
		pullRequest: m["pull-request"] ?? "",
	};
}

/** The summary of a session from its (signed) document rather than from object metadata. */
export function summaryOfDocument(prefix: string, doc: SessionDocument): SessionSummary | undefined {
	return summaryFromMetadata(prefix, sessionMetadata(doc));
}

export function matches(s: SessionSummary, f: SessionFilter): boolean {
	if (f.identity && !glob(f.identity, s.identity) && !glob(f.identity, s.subject)) return false;
	if (f.grant && !glob(f.grant, s.grant)) return false;
	if (f.connection && !glob(f.connection, s.connection)) return false;
	if (f.protocol && f.protocol !== s.protocol) return false;
	if (f.sessionId && !glob(f.sessionId, s.sessionId)) return false;
	const t = Date.parse(s.startedAt);
	if (f.since && !(t >= f.since.getTime())) return false;
	if (f.until && !(t < f.until.getTime())) return false;
	if (f.hasBlocked !== undefined && s.hasBlocked !== f.hasBlocked) return false;
	if (f.hasApprovals !== undefined && s.hasApprovals !== f.hasApprovals) return false;
	return true;
}

function dayPrefix(d: Date): string {
	return `${ROOT_PREFIX}${String(d.getUTCFullYear()).padStart(4, "0")}/${String(d.getUTCMonth() + 1).padStart(2, "0")}/${String(d.getUTCDate()).padStart(2, "0")}/`;
}

/** Day prefixes to scan: the days of [since, until) when both are given (≤ 4000 days), else walk the tree. */
async function dayPrefixes(store: RecordingStore, f: SessionFilter): Promise<string[]> {
	if (f.since && f.until && f.until.getTime() > f.since.getTime()) {
		const days = Math.ceil((f.until.getTime() - f.since.getTime()) / 86_400_000) + 1;
		if (days <= 4000) {
			const out: string[] = [];
			const d = new Date(Date.UTC(f.since.getUTCFullYear(), f.since.getUTCMonth(), f.since.getUTCDate()));
			while (d.getTime() < f.until.getTime()) {
				out.push(dayPrefix(d));
				d.setUTCDate(d.getUTCDate() + 1);
			}
			return out;
		}
	}
	const out: string[] = [];
	const children = async (p: string) => {
		const r: string[] = [];
		for await (const o of store.list(p, { delimiter: true })) if (o.key.endsWith("/")) r.push(o.key);
		return r;
	};
	for (const y of await children(ROOT_PREFIX)) {
		if (!/\/\d{4}\/$/.test(y)) continue; // skips recordings/keys/
		const yEnd = Date.UTC(Number(y.slice(-5, -1)) + 1, 0, 1);
		const yStart = Date.UTC(Number(y.slice(-5, -1)), 0, 1);
		if (f.since && yEnd <= f.since.getTime()) continue;
		if (f.until && yStart >= f.until.getTime()) continue;
		for (const m of await children(y)) {
			for (const d of await children(m)) {
				const [yy, mm, dd] = d.slice(ROOT_PREFIX.length, -1).split("/").map(Number);
				const start = Date.UTC(yy!, mm! - 1, dd!);
				if (f.since && start + 86_400_000 <= f.since.getTime()) continue;
				if (f.until && start >= f.until.getTime()) continue;
				out.push(d);
			}
		}
	}
	return out;
}

/**
 * List closed sessions (those with a session.json) matching the filter, oldest first. A connection
 * filter without wildcards narrows every day prefix to `<day>/<connection>/`.
 */
export async function listSessions(store: RecordingStore, filter: SessionFilter = {}, progress?: ListProgress): Promise<SessionSummary[]> {
	const days = await dayPrefixes(store, filter);
	const out: SessionSummary[] = [];
	let seen = 0;
	let scanned = 0;
	const exactConnection = filter.connection && !filter.connection.includes("*") ? filter.connection : undefined;
	for (const day of days) {
		const prefix = exactConnection ? `${day}${exactConnection}/` : day;
		// Only folders with a manifest are closed sessions (the gateway writes it last); the others
		// (open, uploading, or a folder someone made up) are for `list --incomplete`.
		const signed = new Set<string>();
		const found: SessionSummary[] = [];
		for await (const o of store.list(prefix, { withMetadata: true })) {
			if (o.key.endsWith(`/${MANIFEST_FILE}`)) signed.add(o.key.slice(0, -MANIFEST_FILE.length));
			if (!o.key.endsWith(`/${SESSION_FILE}`)) continue;
			seen++;
			const sessionPrefix = o.key.slice(0, -SESSION_FILE.length);
			let s = o.metadata ? summaryFromMetadata(sessionPrefix, o.metadata) : undefined;
			if (!s) {
				const head = await store.head(o.key);
				s = head ? summaryFromMetadata(sessionPrefix, head.metadata) : undefined;
			}
			if (!s) {
				// No metadata (copied without it): read the document itself.
				const doc = JSON.parse((await store.get(o.key)).toString("utf8")) as SessionDocument;
				s = summaryFromMetadata(sessionPrefix, sessionMetadata(doc));
			}
			if (s && matches(s, filter)) found.push(s);
		}
		for (const s of found) if (signed.has(s.prefix)) out.push(s);
		scanned++;
		progress?.({ prefixesScanned: scanned, prefixesTotal: days.length, sessionsSeen: seen, matched: out.length });
	}
	out.sort((a, b) => (a.startedAt < b.startedAt ? -1 : a.startedAt > b.startedAt ? 1 : 0));
	return out;
}

/** A session folder as the key layout shows it: `<day>/<connection>/<session-id>/` and what it holds. */
export interface SessionFolder {
	prefix: string;
	/** Folder names (keySegment of the connection and session id). */
	connection: string;
	sessionId: string;
	/** UTC day of the session start, from the key layout. */
	day: string;
	chunks: number;
	hasManifest: boolean;
	hasSessionJson: boolean;
}

/**
 * Every session folder under the days and connection of the filter, from the key layout alone: no
 * object metadata and no session.json is trusted to find them, so a folder whose session.json was
 * deleted or whose metadata was rewritten is still found. The session-id filter matches the folder
 * name. Other filters (identity, grant, …) cannot apply here.
 */
export async function listSessionFolders(store: RecordingStore, filter: SessionFilter = {}): Promise<SessionFolder[]> {
	const out: SessionFolder[] = [];
	const exactConnection = filter.connection && !filter.connection.includes("*") ? keySegment(filter.connection) : undefined;
	for (const day of await dayPrefixes(store, filter)) {
		const folders = new Map<string, SessionFolder>();
		for await (const o of store.list(exactConnection ? `${day}${exactConnection}/` : day)) {
			const rest = o.key.slice(day.length).split("/");
			if (rest.length !== 3) continue;
			const prefix = `${day}${rest[0]}/${rest[1]}/`;
			let f = folders.get(prefix);
			if (!f) {
				f = { prefix, connection: rest[0]!, sessionId: rest[1]!, day: day.slice(ROOT_PREFIX.length, -1).replaceAll("/", "-"), chunks: 0, hasManifest: false, hasSessionJson: false };
				folders.set(prefix, f);
			}
			if (parseChunkName(rest[2]!) !== undefined) f.chunks++;
			else if (rest[2] === MANIFEST_FILE) f.hasManifest = true;
			else if (rest[2] === SESSION_FILE) f.hasSessionJson = true;
		}
		for (const f of folders.values()) {
			if (filter.connection && !glob(filter.connection, f.connection) && keySegment(filter.connection) !== f.connection) continue;
			if (filter.sessionId && !glob(filter.sessionId, f.sessionId) && keySegment(filter.sessionId) !== f.sessionId) continue;
			out.push(f);
		}
	}
	return out;
}

export type IncompleteSession = SessionFolder;

/**
 * Session folders that `list` does not show as closed sessions: without a manifest (still open,
 * still uploading: the gateway's spool holds the rest) or without session.json (damaged: `list`
 * finds sessions by their session.json). Only the key layout is known about them. Filters on
 * connection, session id and time (by day) apply; identity/grant filters cannot.
 */
export async function listIncompleteSessions(store: RecordingStore, filter: SessionFilter = {}): Promise<IncompleteSession[]> {
	return (await listSessionFolders(store, filter)).filter((f) => !f.hasManifest || !f.hasSessionJson);
}

/**
 * Find a session by id (or accept a prefix as is). The folder named after the id is found from the
 * key layout, so neither deleting its session.json nor rewriting its metadata hides it or puts another
 * folder in its place; when several folders carry the id (a copy under another day or connection),
 * that is an error naming them all. Sessions whose folder name is not the id are then looked up by
 * their metadata.
 */
export async function resolveSession(store: RecordingStore, idOrPrefix: string, hint: SessionFilter = {}): Promise<string> {
	if (idOrPrefix.startsWith(ROOT_PREFIX)) return idOrPrefix.endsWith("/") ? idOrPrefix : `${idOrPrefix}/`;
	const folder = keySegment(idOrPrefix);
	const byLayout = (await listSessionFolders(store, { ...hint, sessionId: folder })).filter((f) => f.sessionId === folder);
	if (byLayout.length > 1) {
		throw new RecordingError(
			"MALFORMED",
			`${byLayout.length} session folders in ${store.description} are named ${folder}: ${byLayout.map((f) => f.prefix).join(", ")}; a session has one folder, so all but one are copies: give the prefix to check each`,
		);
	}
	if (byLayout.length === 1) return byLayout[0]!.prefix;
	const found = await listSessions(store, { ...hint, sessionId: idOrPrefix });
	if (found.length === 0) throw new RecordingError("NOT_FOUND", `no recorded session with id ${idOrPrefix} in ${store.description}`);
	return found[0]!.prefix;
}

export interface LoadedSession {
	prefix: string;
	document?: SessionDocument;
	events: StoredEvent[];
	cast?: string;
	hasManifest: boolean;
	/** Chunks that could not be decoded (damaged or tampered), with the reason. */
	unreadable: string[];
}

/**
 * Most event text `loadSession` inflates for one session (all chunks together). The chunks are not
 * verified when they are loaded, so without this a bucket writer's chunks, each under
 * MAX_CHUNK_TEXT_BYTES, could still add up to more memory than the viewer's process (the gateway) has.
 */
export const MAX_SESSION_TEXT_BYTES = 512 * 1024 * 1024;
/** Largest session.json and terminal.cast `loadSession` reads (it does not verify them). */
export const MAX_SESSION_JSON_BYTES = 16 * 1024 * 1024;
export const MAX_CAST_BYTES = 256 * 1024 * 1024;

export interface LoadOptions {
	/** Per chunk (default MAX_CHUNK_TEXT_BYTES). */
	maxChunkTextBytes?: number;
	/** For the whole session (default MAX_SESSION_TEXT_BYTES); later chunks are left unread. */
	maxSessionTextBytes?: number;
}

/**
 * Load a session's document, events (all chunks in order) and terminal stream. Does not verify.
 * Chunks that inflate past the limits are not read; they are listed in `unreadable`.
 */
export async function loadSession(store: RecordingStore, prefix: string, limits: LoadOptions = {}): Promise<LoadedSession> {
	const maxChunk = limits.maxChunkTextBytes ?? MAX_CHUNK_TEXT_BYTES;
	let budget = limits.maxSessionTextBytes ?? MAX_SESSION_TEXT_BYTES;
	const names: string[] = [];
	const sizes = new Map<string, number>();
	let hasManifest = false;
	let hasCast = false;
	let hasDoc = false;
	for await (const o of store.list(prefix)) {
		const name = o.key.slice(prefix.length);
		sizes.set(name, o.size);
		if (parseChunkName(name) !== undefined) names.push(name);
		else if (name === MANIFEST_FILE) hasManifest = true;
		else if (name === TERMINAL_FILE) hasCast = true;
		else if (name === SESSION_FILE) hasDoc = true;
	}
	names.sort((a, b) => parseChunkName(a)! - parseChunkName(b)!);
	const events: StoredEvent[] = [];
	const unreadable: string[] = [];
	// Not verified: an object larger than the gateway ever writes is reported, not loaded.
	const tooBig = (name: string, max: number) => {
		const size = sizes.get(name) ?? 0;
		if (size <= max) return false;
		unreadable.push(`${name} not read: ${size} bytes, more than the gateway writes (${max})`);
		return true;
	};
	if (hasDoc && tooBig(SESSION_FILE, MAX_SESSION_JSON_BYTES)) hasDoc = false;
	if (hasCast && tooBig(TERMINAL_FILE, MAX_CAST_BYTES)) hasCast = false;
	const overBudget = (n: string) =>
		`${n} not read: the session's chunks inflate to more than one load reads (${limits.maxSessionTextBytes ?? MAX_SESSION_TEXT_BYTES} bytes)`;
	for (const n of names) {
		if (budget <= 0) {
			unreadable.push(overBudget(n));
			continue;
		}
		if (tooBig(n, MAX_CHUNK_TEXT_BYTES)) continue;
		try {
			const d = decodeChunk(n, await store.get(prefix + n), Math.min(maxChunk, budget));
			budget -= d.textBytes;
			for (const e of d.events) events.push(e);
		} catch (e) {
			if (budget < maxChunk && /inflates to more than/.test((e as Error).message)) {
				budget = 0;
				unreadable.push(overBudget(n));
				continue;
			}
			// Show what can be shown; verification reports the damage precisely.
			unreadable.push((e as Error).message);
		}
	}
	const out: LoadedSession = { prefix, events, hasManifest, unreadable };
	if (hasDoc) out.document = JSON.parse((await store.get(prefix + SESSION_FILE)).toString("utf8")) as SessionDocument;
	if (hasCast) out.cast = (await store.get(prefix + TERMINAL_FILE)).toString("utf8");
	return out;
}

const MAX_JWK_BYTES = 64 * 1024;

/** Public keys published in the store (`recordings/keys/<kid>.jwk`). */
export async function loadStoreKeys(store: RecordingStore): Promise<{ set: PublicKeySet; jwks: JWK[] }> {
	const jwks: JWK[] = [];
	for await (const o of store.list(KEYS_PREFIX)) {
		// A public JWK is a few hundred bytes: a larger object is no key, and is not read.
		if (!o.key.endsWith(".jwk") || o.size > MAX_JWK_BYTES) continue;
		try {
			const jwk = JSON.parse((await store.get(o.key)).toString("utf8")) as JWK;
			// Refuses a key of another type and one whose kid is not its thumbprint (a planted key
			// claiming the gateway's kid): it is skipped, the others still verify.
			await publicKeySet([jwk]);
			jwks.push(jwk);
		} catch {
			// A key object that cannot be trusted verifies nothing; skip it.
		}
	}
	return { set: await publicKeySet(jwks), jwks };
}
