/**
 * `verifySession`: proves a stored session is exactly what the gateway signed. It detects a modified,
 * missing, reordered, truncated or extra chunk, a modified session.json or terminal.cast, a session
 * moved to another prefix, and a manifest that is missing, unsigned, signed by an unknown key or
 * tampered with. Every problem is reported with the object it concerns; verification never stops at
 * the first problem, so an auditor sees the whole extent of a tampering.
 */
import { constants as bufferConstants } from "node:buffer";
import { gunzipSync } from "node:zlib";
import { base64url, compactVerify, decodeProtectedHeader } from "jose";
import { RecordingError } from "./errors.ts";
import type { StoredEvent } from "./events.ts";
import {
	chunkName,
	decodeChunk,
	MANIFEST_FILE,
	MANIFEST_JWS_TYP,
	MAX_CHUNK_TEXT_BYTES,
	type Manifest,
	parseChunkName,
	SESSION_FILE,
	type SessionDocument,
	sessionMetadata,
	sha256Hex,
	TERMINAL_FILE,
} from "./format.ts";
import type { PublicKeySet } from "./keys.ts";
import type { RecordingStore } from "./store.ts";

export interface VerifyProblem {
	/** Object name within the session prefix (or the prefix itself). */
	object: string;
	kind: "missing" | "lost" | "modified" | "truncated" | "reordered" | "unexpected" | "signature" | "malformed" | "metadata" | "chain";
	message: string;
}

export interface VerifyResult {
	ok: boolean;
	prefix: string;
	sessionId?: string;
	keyId?: string;
	chunks: number;
	events: number;
	problems: VerifyProblem[];
}

async function getOrUndefined(store: RecordingStore, key: string): Promise<Buffer | undefined> {
	try {
		return await store.get(key);
	} catch (e) {
		if (e instanceof RecordingError && e.code === "NOT_FOUND") return undefined;
		throw e;
	}
}

/** Decode the manifest payload WITHOUT checking the signature (for display; use verifySession to trust it). */
export function readManifestUnverified(jws: string): Manifest {
	const parts = jws.trim().split(".");
	if (parts.length !== 3) throw new RecordingError("MALFORMED", "manifest.jws is not a compact JWS (expected three dot-separated parts)");
	return JSON.parse(new TextDecoder().decode(base64url.decode(parts[1]!))) as Manifest;
}

/** The manifest's signature against the trusted keys: the signed payload, or why there is none. */
async function checkManifest(
	jwsBody: Buffer,
	publicKeys: PublicKeySet,
): Promise<{ manifest?: Manifest; keyId?: string; problems: [VerifyProblem["kind"], string][] }> {
	const problems: [VerifyProblem["kind"], string][] = [];
	const jws = jwsBody.toString("utf8").trim();
	let keyId: string | undefined;
	try {
		const header = decodeProtectedHeader(jws);
		keyId = header.kid;
		if (header.typ !== MANIFEST_JWS_TYP) problems.push(["malformed", `JWS typ is ${JSON.stringify(header.typ)}, expected ${MANIFEST_JWS_TYP}`]);
		const trusted = header.kid ? publicKeys.get(header.kid) : undefined;
		if (!trusted) {
			problems.push(["signature", `signed with key ${JSON.stringify(header.kid)}, which is not among the ${publicKeys.size} trusted recording key(s)`]);
			return { keyId, problems };
		}
		if (header.alg !== trusted.alg) {
			problems.push(["signature", `JWS alg ${header.alg} does not match key ${header.kid} (${trusted.alg})`]);
			return { keyId, problems };
		}
		const verified = await compactVerify(jws, trusted.key, { algorithms: [trusted.alg] });
		return { manifest: JSON.parse(new TextDecoder().decode(verified.payload)) as Manifest, keyId, problems };
	} catch (e) {
		problems.push(["signature", `signature verification failed (${(e as Error).message}): the manifest was modified or not signed by the recording key`]);
		return { keyId, problems };
	}
}

/**
 * The session.json of `prefix` when the manifest there is signed by a trusted key, was signed for this
 * very prefix and covers this session.json's bytes; otherwise undefined. Cheap (no chunk is read): for
 * choosing which sessions a filter selects by what the gateway signed, not by unsigned metadata.
 */
export async function readSignedDocument(store: RecordingStore, prefix: string, publicKeys: PublicKeySet): Promise<SessionDocument | undefined> {
	if (!prefix.endsWith("/")) prefix += "/";
	const manifest = await readTrustedManifest(store, prefix, publicKeys);
	if (typeof manifest === "string") return undefined;
	if ((await store.head(prefix + SESSION_FILE))?.size !== manifest.session.bytes) return undefined;
	const body = await getOrUndefined(store, prefix + SESSION_FILE);
	if (!body || sha256Hex(body) !== manifest.session.sha256) return undefined;
	const doc = JSON.parse(body.toString("utf8")) as SessionDocument;
	return doc.sessionId === manifest.sessionId ? doc : undefined;
}

/**
 * The terminal.cast at `prefix` when it is the one the trusted, signed manifest lists (for serving the
 * cast on its own, as the viewer's player fetches it); otherwise the reason. Read only when its size
 * is the signed one.
 */
export async function readSignedCast(store: RecordingStore, prefix: string, publicKeys: PublicKeySet): Promise<{ body?: Buffer; reason?: string }> {
	if (!prefix.endsWith("/")) prefix += "/";
	const manifest = await readTrustedManifest(store, prefix, publicKeys);
	if (typeof manifest === "string") return { reason: manifest };
	if (!manifest.terminal) return { reason: "the signed manifest lists no terminal.cast" };
	const head = await store.head(prefix + TERMINAL_FILE);
	if (!head) return { reason: "terminal.cast is missing" };
	if (head.size !== manifest.terminal.bytes) return { reason: `terminal.cast is modified: ${head.size} bytes, the signed manifest says ${manifest.terminal.bytes}` };
	const body = await getOrUndefined(store, prefix + TERMINAL_FILE);
	if (!body) return { reason: "terminal.cast is missing" };
	const h = sha256Hex(body);
	if (h !== manifest.terminal.sha256) return { reason: `terminal.cast is modified: SHA-256 is ${h}, the signed manifest says ${manifest.terminal.sha256}` };
	return { body };
}

/** The manifest at `prefix` if a trusted key signed it for this prefix, else why not. */
async function readTrustedManifest(store: RecordingStore, prefix: string, publicKeys: PublicKeySet): Promise<Manifest | string> {
	const head = await store.head(prefix + MANIFEST_FILE);
	if (!head) return "the session has no manifest (still open, or its manifest was deleted)";
	if (head.size > MAX_MANIFEST_BYTES) return `manifest.jws is ${head.size} bytes, more than a manifest can be`;
	const jwsBody = await getOrUndefined(store, prefix + MANIFEST_FILE);
	if (!jwsBody) return "the session has no manifest (still open, or its manifest was deleted)";
	const { manifest, problems } = await checkManifest(jwsBody, publicKeys);
	if (!manifest || problems.length > 0) return `the manifest does not verify: ${problems.map((p) => p[1]).join("; ")}`;
	if (manifest.prefix !== prefix) return `the manifest was signed for ${manifest.prefix}`;
	return manifest;
}

/** No manifest is this large (a few hundred bytes per chunk); a larger object is not read. */
export const MAX_MANIFEST_BYTES = 64 * 1024 * 1024;

/** What a verification read and found signed: the document, every event and the terminal stream. */
export interface VerifiedContent {
	document?: SessionDocument;
	events: StoredEvent[];
	cast?: string;
}

/**
 * Verify and keep what was verified. Tools that show a session (show, replay, export, the viewer)
 * display this when the result is ok, not a second read of the store: between two reads a bucket
 * writer could swap the objects (S3 can notify on every GET), and the page would say "verified" above
 * content that never was. `content` is undefined when the session does not verify.
 */
export async function verifyAndRead(store: RecordingStore, prefix: string, publicKeys: PublicKeySet): Promise<{ result: VerifyResult; content?: VerifiedContent }> {
	const content: VerifiedContent = { events: [] };
	const result = await verifySession(store, prefix, publicKeys, content);
	return result.ok ? { result, content } : { result };
}

export async function verifySession(store: RecordingStore, prefix: string, publicKeys: PublicKeySet, keep?: VerifiedContent): Promise<VerifyResult> {
	if (!prefix.endsWith("/")) prefix += "/";
	const problems: VerifyProblem[] = [];
	const result: VerifyResult = { ok: false, prefix, chunks: 0, events: 0, problems };
	const add = (object: string, kind: VerifyProblem["kind"], message: string) => problems.push({ object, kind, message: `${object}: ${message}` });

	const listed = new Map<string, number>();
	for await (const o of store.list(prefix)) listed.set(o.key.slice(prefix.length), o.size);

	// Objects are only read when their size (from the listing) can be what was signed: a bucket
	// writer's multi-GiB object in place of a chunk is reported, never loaded into memory.
	const manifestSize = listed.get(MANIFEST_FILE);
	if (manifestSize !== undefined && manifestSize > MAX_MANIFEST_BYTES) {
		add(MANIFEST_FILE, "malformed", `${manifestSize} bytes, more than a manifest can be (${MAX_MANIFEST_BYTES}): not read`);
		return result;
	}
	// (Up to MAX_CHUNK_TEXT_BYTES is read anyway, to say precisely what changed.)
	const oversized = (name: string, signedBytes: number): number | undefined => {
		const size = listed.get(name);
		return size !== undefined && size > signedBytes && size > MAX_CHUNK_TEXT_BYTES ? size : undefined;
	};

	// 1. Manifest and its signature.
	const jwsBody = await getOrUndefined(store, prefix + MANIFEST_FILE);
	if (!jwsBody) {
		add(MANIFEST_FILE, "missing", "missing: the session is still open or uploading, or its manifest was deleted; nothing under this prefix can be trusted");
		return result;
	}
	const checked = await checkManifest(jwsBody, publicKeys);
	result.keyId = checked.keyId;
	for (const [kind, message] of checked.problems) add(MANIFEST_FILE, kind, message);
	const manifest = checked.manifest;
	if (!manifest) return result;
	result.sessionId = manifest.sessionId;
	if (manifest.prefix !== prefix) {
		add(prefix, "unexpected", `the manifest was signed for ${manifest.prefix}: the session was copied or moved`);
	}

	// 2. session.json.
	const sessionTooBig = oversized(SESSION_FILE, manifest.session.bytes);
	const sessionBody = sessionTooBig === undefined ? await getOrUndefined(store, prefix + SESSION_FILE) : undefined;
	if (sessionTooBig !== undefined) add(SESSION_FILE, "modified", `modified: ${sessionTooBig} bytes, the signed manifest says ${manifest.session.bytes} (not read)`);
	else if (!sessionBody) add(SESSION_FILE, "missing", "missing (listed in the signed manifest)");
	else {
		const h = sha256Hex(sessionBody);
		if (h !== manifest.session.sha256) {
			add(SESSION_FILE, "modified", `modified: SHA-256 is ${h}, the signed manifest says ${manifest.session.sha256}`);
		} else {
			const doc = JSON.parse(sessionBody.toString("utf8")) as SessionDocument;
			if (keep) keep.document = doc;
			if (doc.sessionId !== manifest.sessionId) add(SESSION_FILE, "modified", `names session ${doc.sessionId}, the manifest ${manifest.sessionId}`);
			// Metadata is not signed, but it must agree with the signed document, or searches lie.
			const head = await store.head(prefix + SESSION_FILE);
			if (head) {
				const expected = sessionMetadata(doc);
				// No metadata at all (copied without it): searches read session.json itself. Some of it
				// only: searches take the missing fields as empty, so each missing one is a problem too
				// (a store may drop an empty value, so an empty expected value may be missing).
				const stripped = Object.keys(head.metadata).length > 0;
				for (const [k, v] of Object.entries(expected)) {
					const got = head.metadata[k];
					if (got !== undefined && got !== v) add(SESSION_FILE, "metadata", `object metadata ${k}=${JSON.stringify(got)} disagrees with the signed session.json (${JSON.stringify(v)})`);
					else if (got === undefined && stripped && v !== "") add(SESSION_FILE, "metadata", `object metadata ${k} is missing (the signed session.json says ${JSON.stringify(v)}): searches by it miss this session`);
				}
			}
		}
	}

	// 3. Chunks: presence, hashes, order, chain, sequence numbers.
	const byHash = new Map(manifest.chunks.map((c, i) => [c.sha256, i + 1]));
	let expectedSeq = 1;
	let events = 0;
	for (let i = 0; i < manifest.chunks.length; i++) {
		const m = manifest.chunks[i]!;
		const index = i + 1;
		const name = chunkName(index);
		if (m.name !== name) add(m.name, "malformed", `manifest entry ${index} is named ${m.name}, expected ${name}`);
		const tooBig = oversized(name, m.bytes);
		if (tooBig !== undefined) {
			add(name, "modified", `modified: ${tooBig} bytes, the signed manifest says ${m.bytes} (not read)`);
			expectedSeq = m.lastSeq + 1;
			continue;
		}
		const body = await getOrUndefined(store, prefix + name);
		if (!body && m.lost === true) {
			// Signed by the gateway: not a deletion in the bucket, a loss it found in its own spool.
			add(
				name,
				"lost",
				`lost: chunk ${index} of ${manifest.chunks.length} (events ${m.firstSeq}-${m.lastSeq}) never reached the store: the gateway found it damaged in its spool (the signed manifest says so; session.json counts its events in droppedEvents)`,
			);
			expectedSeq = m.lastSeq + 1;
			continue;
		}
		if (!body) {
			add(name, "missing", `missing: chunk ${index} of ${manifest.chunks.length} (events ${m.firstSeq}-${m.lastSeq}) was deleted`);
			expectedSeq = m.lastSeq + 1;
			continue;
		}
		const h = sha256Hex(body);
		if (h !== m.sha256) {
			const other = byHash.get(h);
			if (other !== undefined) {
				add(name, "reordered", `reordered: holds chunk ${other}'s content (events ${manifest.chunks[other - 1]!.firstSeq}-${manifest.chunks[other - 1]!.lastSeq}), expected chunk ${index}`);
			} else if (body.length < m.bytes && isTruncatedGzip(body)) {
				add(name, "truncated", `truncated: ${body.length} of ${m.bytes} bytes, the gzip stream ends early (SHA-256 ${h}, signed ${m.sha256})`);
			} else {
				let detail = "";
				try {
					const d = decodeChunk(name, body);
					if (d.header.index !== index) detail = ` (its header claims chunk ${d.header.index})`;
				} catch (e) {
					detail = ` (${(e as Error).message})`;
				}
				add(name, "modified", `modified: SHA-256 is ${h}, the signed manifest says ${m.sha256}${detail}`);
			}
			expectedSeq = m.lastSeq + 1;
			continue;
		}
		let decoded: ReturnType<typeof decodeChunk>;
		try {
			// Its hash is signed: the gateway wrote it, so no bomb; any size a string can hold is read.
			decoded = decodeChunk(name, body, bufferConstants.MAX_STRING_LENGTH);
		} catch (e) {
			add(name, "malformed", (e as Error).message);
			continue;
		}
		const hd = decoded.header;
		const prevHash = i === 0 ? null : manifest.chunks[i - 1]!.sha256;
		if (hd.index !== index) add(name, "chain", `header index ${hd.index}, expected ${index}`);
		if (hd.prev !== prevHash) add(name, "chain", `previous-chunk hash ${hd.prev} does not match ${prevHash}`);
		if (hd.sessionId !== manifest.sessionId) add(name, "chain", `belongs to session ${hd.sessionId}`);
		if (hd.firstSeq !== expectedSeq) add(name, "chain", `starts at event ${hd.firstSeq}, expected ${expectedSeq} (events missing or duplicated)`);
		for (let k = 0; k < decoded.events.length; k++) {
			if (decoded.events[k]!.seq !== hd.firstSeq + k) {
				add(name, "chain", `event ${k + 1} has seq ${decoded.events[k]!.seq}, expected ${hd.firstSeq + k}`);
				break;
			}
		}
		if (decoded.events.length !== m.events) add(name, "chain", `holds ${decoded.events.length} events, manifest says ${m.events}`);
		events += decoded.events.length;
		if (keep) for (const e of decoded.events) keep.events.push(e);
		expectedSeq = hd.lastSeq + 1;
	}
	result.chunks = manifest.chunks.length;
	result.events = events;
	if (manifest.totalEvents !== expectedSeq - 1) {
		add(MANIFEST_FILE, "chain", `total events ${manifest.totalEvents} but chunks cover ${expectedSeq - 1}`);
	}

	// 4. terminal.cast.
	const castTooBig = manifest.terminal ? oversized(TERMINAL_FILE, manifest.terminal.bytes) : undefined;
	const castBody = manifest.terminal && castTooBig === undefined ? await getOrUndefined(store, prefix + TERMINAL_FILE) : undefined;
	if (castTooBig !== undefined && manifest.terminal) {
		add(TERMINAL_FILE, "modified", `modified: ${castTooBig} bytes, the signed manifest says ${manifest.terminal.bytes} (not read)`);
	} else if (manifest.terminal) {
		if (!castBody) add(TERMINAL_FILE, "missing", "missing (listed in the signed manifest)");
		else {
			const h = sha256Hex(castBody);
			if (h === manifest.terminal.sha256 && keep) keep.cast = castBody.toString("utf8");
			if (h !== manifest.terminal.sha256) {
				const kind = castBody.length < manifest.terminal.bytes && !endsWithCompleteLine(castBody) ? "truncated" : "modified";
				add(TERMINAL_FILE, kind, `${kind}: SHA-256 is ${h} (${castBody.length} bytes), the signed manifest says ${manifest.terminal.sha256} (${manifest.terminal.bytes} bytes)`);
			}
		}
	} else if (listed.has(TERMINAL_FILE) || (await store.head(prefix + TERMINAL_FILE))) {
		add(TERMINAL_FILE, "unexpected", "present but not listed in the signed manifest (added after signing)");
	}

	// 5. Objects nobody signed.
	const known = new Set([MANIFEST_FILE, SESSION_FILE, TERMINAL_FILE, ...manifest.chunks.map((c) => c.name)]);
	for (const name of [...listed.keys()].sort()) {
		if (known.has(name)) continue;
		const idx = parseChunkName(name);
		add(
			name,
			"unexpected",
			idx !== undefined
				? `chunk ${idx} is not listed in the signed manifest (${manifest.chunks.length} chunks): added after signing`
				: "object not listed in the signed manifest",
		);
	}

	result.ok = problems.length === 0;
	return result;
}

function isTruncatedGzip(body: Uint8Array): boolean {
	try {
		// Unsigned bytes: inflate no further than a reader would (a bomb is "modified", not "truncated").
		gunzipSync(body, { maxOutputLength: MAX_CHUNK_TEXT_BYTES });
		return false;
	} catch (e) {
		return /unexpected end/i.test((e as Error).message);
	}
}

function endsWithCompleteLine(body: Buffer): boolean {
	const text = body.toString("utf8");
	if (!text.endsWith("\n")) return false;
	const last = text.slice(0, -1).split("\n").pop() ?? "";
	try {
		JSON.parse(last);
		return true;
	} catch {
		return false;
	}
}
