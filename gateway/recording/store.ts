/**
 * `RecordingStore`: the few object operations recordings need, with two implementations that keep the
 * identical key layout — `S3Store` (MinIO, or any S3 with object lock) and `DirStore` (a local
 * directory for standalone mode). The uploader, `verifySession`, the CLI and the web viewer only see
 * this interface, so every tool works on both.
 *
 * Keys always use `/`. User metadata keys are lower-case without the `x-amz-meta-` prefix; values are
 * ASCII (callers encode anything else, see format.ts `metaValue`).
 */
import { constants as fsConstants } from "node:fs";
import { type FileHandle, lstat, mkdir, open, readdir, readFile, realpath, rename, stat } from "node:fs/promises";
import { dirname, join, relative, sep } from "node:path";
import type { Readable } from "node:stream";
import * as Minio from "minio";
import { RecordingError } from "./errors.ts";

export interface StoredObjectInfo {
	key: string;
	size: number;
	/** User metadata when the listing can return it cheaply (MinIO, DirStore); otherwise undefined. */
	metadata?: Record<string, string>;
}

export interface PutOptions {
	metadata?: Record<string, string>;
	contentType?: string;
}

export interface RecordingStore {
	/** Human-readable location, e.g. `s3://bucket@http://127.0.0.1:9000` or `dir:/var/recordings`. */
	readonly description: string;
	/** Create the bucket / directory if needed (idempotent). */
	init(): Promise<void>;
	put(key: string, body: Uint8Array, options?: PutOptions): Promise<void>;
	/** Rejects with RecordingError `NOT_FOUND` when the object does not exist. */
	get(key: string): Promise<Buffer>;
	/** Undefined when the object does not exist. */
	head(key: string): Promise<{ size: number; metadata: Record<string, string> } | undefined>;
	/**
	 * Objects under `prefix`. With `delimiter`, only direct children: objects, and sub-prefixes as
	 * entries whose key ends with `/` and size 0. With `withMetadata`, include user metadata when
	 * the backend supports it in the listing.
	 */
	list(prefix: string, options?: { delimiter?: boolean; withMetadata?: boolean }): AsyncIterable<StoredObjectInfo>;
	/** Delete (tests and tamper simulations only; never used by the recorder). */
	remove(key: string): Promise<void>;
}

const SYSTEM_META = new Set(["content-type", "content-length", "content-md5", "etag", "last-modified"]);
function isUserMetaKey(key: string): boolean {
	return !SYSTEM_META.has(key) && !key.startsWith("x-amz-");
}

function normaliseMeta(meta: Record<string, unknown> | undefined): Record<string, string> {
	const out: Record<string, string> = {};
	if (!meta) return out;
	for (const [k, v] of Object.entries(meta)) {
		const key = k.toLowerCase().replace(/^x-amz-meta-/, "");
		if (!isUserMetaKey(key)) continue;
		if (Array.isArray(v)) out[key] = v.join(",");
		else if (v !== undefined && v !== null) out[key] = String(v);
	}
	return out;
}

// ---------------------------------------------------------------------------------------------
// Directory store

/**
 * Objects are plain files at `<root>/<key>`; user metadata sits beside the layout, so the recordings
 * tree itself is byte-identical to the bucket: one append-only `<root>/.metadata/<folder>/objects.jsonl`
 * per folder, a line `{"key","contentType","metadata"}` per put (the last line for a key wins; fsynced
 * before put resolves). Earlier versions kept one `<root>/.metadata/<key>.json` per object; those are
 * still read. A folder's index instead of a file per object halves the files a session creates (on a
 * journal-less ext4 every create scans the recently deleted inodes) and lets a listing read one file
 * per folder. Object writes go to a temporary file, fsync, then rename: a reader never sees half an
 * object.
 */
export class DirStore implements RecordingStore {
	readonly root: string;
	readonly description: string;
	constructor(root: string) {
		this.root = root;
		this.description = `dir:${root}`;
	}
	private path(key: string): string {
		if (key.includes("..") || key.startsWith("/") || key.includes("\\") || key.includes("\0")) {
			throw new TypeError(`invalid object key ${JSON.stringify(key)}`);
		}
		return join(this.root, ...key.split("/"));
	}
	/** Where earlier versions kept an object's metadata (read only). */
	private legacyMetaPath(key: string): string {
		return join(this.root, ".metadata", ...`${key}.json`.split("/"));
	}
	/** The metadata index of the folder holding `key`. */
	private indexPath(key: string): string {
		const parts = key.split("/");
		parts.pop();
		return join(this.root, ".metadata", ...parts, INDEX_FILE);
	}
	/** Object folders known to exist (no mkdir per put). */
	private readonly knownDirs = new Set<string>();
	async init(): Promise<void> {
		await mkdir(this.root, { recursive: true });
	}
	async put(key: string, body: Uint8Array, options?: PutOptions): Promise<void> {
		const target = this.path(key);
		const line = `${JSON.stringify({ key, contentType: options?.contentType, metadata: normaliseMeta(options?.metadata) })}\n`;
		try {
			await writeFileDurable(target, body, this.knownDirs);
			const index = this.indexPath(key);
			const dir = dirname(index);
			const created = (await stat(index).catch(() => undefined)) === undefined;
			if (created) await mkdir(dir, { recursive: true });
			const fh = await open(index, "a");
			try {
				await fh.writeFile(line);
				await fh.sync();
			} finally {
				await fh.close();
			}
			if (created) await fsyncDir(dir);
		} catch (e) {
			throw new RecordingError("STORE_UNAVAILABLE", `writing ${key} to ${this.description}: ${(e as Error).message}`, { cause: e });
		}
	}
	/**
	 * Whether `key` is a plain file inside the tree: no symbolic link anywhere on its path. Listing
	 * already shows only such files; reads must not follow a link either, or whoever can write the
	 * directory could make the gateway read (and the viewer serve) any file it can read, such as its
	 * recording key, or read /dev/zero or a FIFO forever.
	 */
	private async inTree(key: string): Promise<boolean> {
		const path = this.path(key);
		let real: string;
		try {
			real = await realpath(path);
		} catch (e) {
			if ((e as NodeJS.ErrnoException).code === "ENOENT") return false;
			throw e;
		}
		this.realRoot ??= await realpath(this.root);
		return real === join(this.realRoot, ...key.split("/"));
	}
	private realRoot: string | undefined;
	async get(key: string): Promise<Buffer> {
		const notFound = () => new RecordingError("NOT_FOUND", `object ${key} not found in ${this.description}`);
		let fh: FileHandle | undefined;
		try {
			if (!(await this.inTree(key))) throw notFound();
			// O_NOFOLLOW: a link put in place after the check is refused too; O_NONBLOCK: a FIFO does not hang the open.
			fh = await open(this.path(key), fsConstants.O_RDONLY | fsConstants.O_NOFOLLOW | fsConstants.O_NONBLOCK);
			if (!(await fh.stat()).isFile()) throw notFound();
			return await fh.readFile();
		} catch (e) {
			if (e instanceof RecordingError) throw e;
			const code = (e as NodeJS.ErrnoException).code;
			if (code === "ENOENT" || code === "ELOOP") throw notFound();
			throw new RecordingError("STORE_UNAVAILABLE", `reading ${key} from ${this.description}: ${(e as Error).message}`, { cause: e });
		} finally {
			await fh?.close();
		}
	}
	async head(key: string): Promise<{ size: number; metadata: Record<string, string> } | undefined> {
		try {
			const st = await lstat(this.path(key));
			if (!st.isFile() || !(await this.inTree(key))) return undefined;
			return { size: st.size, metadata: await this.readMeta(key) };
		} catch (e) {
			if ((e as NodeJS.ErrnoException).code === "ENOENT") return undefined;
			throw e;
		}
	}
	private async readMeta(key: string, index?: Map<string, Record<string, string>>): Promise<Record<string, string>> {
		const fromIndex = (index ?? (await this.readIndex(this.indexPath(key)))).get(key);
		if (fromIndex) return fromIndex;
		try {
			const parsed = JSON.parse(await readFile(this.legacyMetaPath(key), "utf8")) as { metadata?: Record<string, string> };
			return parsed.metadata ?? {};
		} catch {
			return {};
		}
	}
	/** A folder's metadata index: key → metadata of its last line (a torn last line is skipped). */
	private async readIndex(path: string): Promise<Map<string, Record<string, string>>> {
		const out = new Map<string, Record<string, string>>();
		let text: string;
		try {
			text = await readFile(path, "utf8");
		} catch {
			return out;
		}
		for (const line of text.split("\n")) {
			if (!line) continue;
			try {
				const entry = JSON.parse(line) as { key?: unknown; metadata?: Record<string, string> };
				if (typeof entry.key === "string") out.set(entry.key, entry.metadata ?? {});
			} catch {
				// torn write at crash time: that put had not resolved
			}
		}
		return out;
	}
	async *list(prefix: string, options?: { delimiter?: boolean; withMetadata?: boolean }): AsyncIterable<StoredObjectInfo> {
		// Walk the deepest existing directory that covers the prefix, in sorted (S3-like) order.
		const slash = prefix.lastIndexOf("/");
		const baseKey = slash >= 0 ? prefix.slice(0, slash + 1) : "";
		const baseDir = baseKey ? this.path(baseKey.slice(0, -1)) : this.root;
		const self = this;
		async function* walk(dir: string): AsyncIterable<StoredObjectInfo> {
			let index: Map<string, Record<string, string>> | undefined;
			let entries: import("node:fs").Dirent[];
			try {
				entries = await readdir(dir, { withFileTypes: true });
			} catch (e) {
				if ((e as NodeJS.ErrnoException).code === "ENOENT" || (e as NodeJS.ErrnoException).code === "ENOTDIR") return;
				throw e;
			}
			entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
			for (const ent of entries) {
				const full = join(dir, ent.name);
				const key = relative(self.root, full).split(sep).join("/");
				if (key === ".metadata" || key.startsWith(".metadata/") || ent.name.startsWith(".tmp-")) continue;
				if (ent.isDirectory()) {
					const dirKey = `${key}/`;
					if (!dirKey.startsWith(prefix) && !prefix.startsWith(dirKey)) continue;
					if (options?.delimiter && dirKey.startsWith(prefix)) {
						yield { key: dirKey, size: 0 };
						continue;
					}
					yield* walk(full);
				} else if (ent.isFile() && key.startsWith(prefix)) {
					const st = await stat(full);
					const info: StoredObjectInfo = { key, size: st.size };
					if (options?.withMetadata) {
						index ??= await self.readIndex(self.indexPath(key));
						info.metadata = await self.readMeta(key, index);
					}
					yield info;
				}
			}
		}
		yield* walk(baseDir);
	}
	async remove(key: string): Promise<void> {
		const { rm } = await import("node:fs/promises");
		// The index line stays: metadata is only read for objects that exist.
		await rm(this.path(key), { force: true });
		await rm(this.legacyMetaPath(key), { force: true });
	}
}

const INDEX_FILE = "objects.jsonl";

/**
 * Write via a temporary file + fsync + rename (+ fsync of the directory). `knownDirs`: directories
 * known to exist, to skip the mkdir (the caller's cache; the directory is added once made).
 */
export async function writeFileDurable(target: string, body: Uint8Array, knownDirs?: Set<string>): Promise<void> {
	const dir = dirname(target);
	if (!knownDirs?.has(dir)) {
		await mkdir(dir, { recursive: true });
		knownDirs?.add(dir);
	}
	const tmp = join(dir, `.tmp-${process.pid}-${Math.random().toString(36).slice(2)}`);
	let fh: FileHandle;
	try {
		fh = await open(tmp, "w");
	} catch (e) {
		// A directory remembered as made was removed behind our back: make it again, once.
		if ((e as NodeJS.ErrnoException).code !== "ENOENT" || !knownDirs?.delete(dir)) throw e;
		await mkdir(dir, { recursive: true });
		knownDirs.add(dir);
		fh = await open(tmp, "w");
	}
	try {
		await fh.writeFile(body);
		await fh.sync();
	} finally {
		await fh.close();
	}
	await rename(tmp, target);
	await fsyncDir(dir);
}

export async function fsyncDir(dir: string): Promise<void> {
	try {
		const dh = await open(dir, "r");
		try {
			await dh.sync();
		} finally {
			await dh.close();
		}
	} catch {
		// Some filesystems refuse fsync on directories; the rename is still atomic.
	}
}

// ---------------------------------------------------------------------------------------------
// S3 / MinIO store

export interface S3StoreOptions {
	endPoint: string;
	port?: number;
	useSSL: boolean;
	accessKey: string;
	secretKey: string;
	bucket: string;
	region?: string;
	/** Create the bucket with object locking and set this default retention (WORM). */
	objectLock?: { mode: "GOVERNANCE" | "COMPLIANCE"; days: number };
}

/**
 * Parse an object-lock setting `MODE:DAYS` (e.g. `GOVERNANCE:365`, `COMPLIANCE:2555`) for
 * `S3StoreOptions.objectLock`; empty or `off` means no object lock.
 */
export function parseObjectLock(value: string | undefined): S3StoreOptions["objectLock"] {
	if (value === undefined || value === "" || value === "off") return undefined;
	const m = /^(GOVERNANCE|COMPLIANCE):(\d{1,5})$/.exec(value.trim());
	if (!m || Number(m[2]) < 1) {
		throw new RecordingError("CONFIG", `object lock must be GOVERNANCE:DAYS or COMPLIANCE:DAYS (days >= 1) or off, got ${JSON.stringify(value)}`);
	}
	return { mode: m[1] as "GOVERNANCE" | "COMPLIANCE", days: Number(m[2]) };
}

/** Parse `http(s)://host:port` into minio client options. */
export function parseEndpoint(url: string): { endPoint: string; port: number; useSSL: boolean } {
	let u: URL;
	try {
		u = new URL(url);
	} catch {
		throw new RecordingError("CONFIG", `invalid S3 endpoint ${JSON.stringify(url)}: expected http(s)://host:port`);
	}
	if (u.protocol !== "http:" && u.protocol !== "https:") {
		throw new RecordingError("CONFIG", `invalid S3 endpoint ${JSON.stringify(url)}: expected http(s)://host:port`);
	}
	const useSSL = u.protocol === "https:";
	return { endPoint: u.hostname, port: u.port ? Number(u.port) : useSSL ? 443 : 80, useSSL };
}

export class S3Store implements RecordingStore {
	readonly client: Minio.Client;
	readonly bucket: string;
	readonly description: string;
	private readonly options: S3StoreOptions;
	constructor(options: S3StoreOptions) {
		this.options = options;
		this.bucket = options.bucket;
		const clientOptions: Minio.ClientOptions = {
			endPoint: options.endPoint,
			useSSL: options.useSSL,
			accessKey: options.accessKey,
			secretKey: options.secretKey,
			pathStyle: true,
		};
		if (options.port !== undefined) clientOptions.port = options.port;
		if (options.region) clientOptions.region = options.region;
		this.client = new Minio.Client(clientOptions);
		this.description = `s3://${options.bucket} at ${options.useSSL ? "https" : "http"}://${options.endPoint}:${options.port ?? ""}`;
	}
	private wrap(what: string, e: unknown): RecordingError {
		const code = (e as { code?: string }).code;
		if (code === "NoSuchKey" || code === "NotFound") return new RecordingError("NOT_FOUND", `${what}: not found in ${this.description}`, { cause: e });
		return new RecordingError("STORE_UNAVAILABLE", `${what} on ${this.description}: ${(e as Error).message ?? String(e)}`, { cause: e });
	}
	async init(): Promise<void> {
		try {
			const exists = await this.client.bucketExists(this.bucket);
			if (!exists) {
				await this.client.makeBucket(this.bucket, this.options.region ?? "", this.options.objectLock ? { ObjectLocking: true } : {});
			} else if (this.options.objectLock) {
				// The typings list a void overload first; the promise form is what runs.
				const lock = this.client.getObjectLockConfig(this.bucket) as unknown as Promise<Minio.ObjectLockInfo>;
				const current = await lock.catch(() => undefined);
				if (!current || !("objectLockEnabled" in current) || current.objectLockEnabled !== "Enabled") {
					throw new RecordingError(
						"CONFIG",
						`bucket ${this.bucket} exists without object locking, which can only be enabled when a bucket is created: use a new bucket or turn object lock off`,
					);
				}
			}
			if (this.options.objectLock) {
				await this.client.setObjectLockConfig(this.bucket, {
					mode: this.options.objectLock.mode as Minio.Mode,
					unit: "Days" as never,
					validity: this.options.objectLock.days,
				});
			}
		} catch (e) {
			if (e instanceof RecordingError) throw e;
			throw this.wrap(`initialising bucket ${this.bucket}`, e);
		}
	}
	async put(key: string, body: Uint8Array, options?: PutOptions): Promise<void> {
		const meta: Record<string, string> = {};
		for (const [k, v] of Object.entries(options?.metadata ?? {})) meta[`x-amz-meta-${k.toLowerCase()}`] = v;
		meta["Content-Type"] = options?.contentType ?? "application/octet-stream";
		try {
			await this.client.putObject(this.bucket, key, Buffer.from(body.buffer, body.byteOffset, body.byteLength), body.byteLength, meta);
		} catch (e) {
			throw this.wrap(`uploading ${key}`, e);
		}
	}
	async get(key: string): Promise<Buffer> {
		let stream: Readable;
		try {
			stream = await this.client.getObject(this.bucket, key);
		} catch (e) {
			throw this.wrap(`reading ${key}`, e);
		}
		const parts: Buffer[] = [];
		try {
			for await (const part of stream) parts.push(part as Buffer);
		} catch (e) {
			throw this.wrap(`reading ${key}`, e);
		}
		return Buffer.concat(parts);
	}
	async head(key: string): Promise<{ size: number; metadata: Record<string, string> } | undefined> {
		try {
			const st = await this.client.statObject(this.bucket, key);
			return { size: st.size, metadata: normaliseMeta(st.metaData as Record<string, unknown>) };
		} catch (e) {
			const err = this.wrap(`stat ${key}`, e);
			if (err.code === "NOT_FOUND") return undefined;
			throw err;
		}
	}
	async *list(prefix: string, options?: { delimiter?: boolean; withMetadata?: boolean }): AsyncIterable<StoredObjectInfo> {
		const recursive = !options?.delimiter;
		const stream = options?.withMetadata
			? this.client.extensions.listObjectsV2WithMetadata(this.bucket, prefix, recursive, "")
			: this.client.listObjectsV2(this.bucket, prefix, recursive, "");
		try {
			for await (const raw of stream as AsyncIterable<Record<string, unknown>>) {
				if (typeof raw.prefix === "string" && !raw.name) {
					yield { key: raw.prefix, size: 0 };
					continue;
				}
				const info: StoredObjectInfo = { key: String(raw.name), size: Number(raw.size ?? 0) };
				if (options?.withMetadata) info.metadata = normaliseMeta(metaFromListing(raw.metadata));
				yield info;
			}
		} catch (e) {
			throw this.wrap(`listing ${prefix}`, e);
		}
	}
	async remove(key: string): Promise<void> {
		try {
			await this.client.removeObject(this.bucket, key);
		} catch (e) {
			throw this.wrap(`removing ${key}`, e);
		}
	}
}

function metaFromListing(meta: unknown): Record<string, unknown> {
	if (!meta) return {};
	if (Array.isArray(meta)) {
		const out: Record<string, unknown> = {};
		for (const item of meta as { Key?: string; Value?: string }[]) if (item.Key) out[item.Key] = item.Value;
		return out;
	}
	return meta as Record<string, unknown>;
}
