/**
 * Standalone-mode ApprovalStore: records in memory, optionally mirrored to a directory of JSON files
 * (`<id>.json`) so another process on the same host (a second gateway, a debugging session) sees and
 * decides the same requests. The CLI normally goes through the admin REST API instead.
 *
 * Files are written to a temporary name and renamed into place (readers never see half a record);
 * creation uses link(2), which fails if the name exists; read-modify-write holds a per-request lock
 * file created with O_EXCL (`<id>.lock`), taken over when older than `staleLockMs`. Other processes'
 * writes are picked up with fs.watch (inotify) plus the service's periodic re-read.
 */
import { type FSWatcher, watch } from "node:fs";
import { link, mkdir, open, readdir, readFile, rename, stat, unlink, writeFile } from "node:fs/promises";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { setTimeout as sleep } from "node:timers/promises";
import { ApprovalError } from "./errors.ts";
import type { ApprovalMutation, ApprovalStore } from "./store.ts";
import type { ApprovalRequestRecord } from "./types.ts";

export interface LocalApprovalStoreOptions {
	/** Directory for the JSON files; without it the store lives only in this process's memory. */
	directory?: string;
	/** A lock file older than this is considered abandoned by a crashed process, ms (default 10000). */
	staleLockMs?: number;
	/** Give up taking a lock after this long, ms (default 5000). */
	lockTimeoutMs?: number;
}

interface StoredFile {
	revision: number;
	record: ApprovalRequestRecord;
}

const ID_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;

function checkId(id: string): void {
	// Ids become file names: never let one escape the directory.
	if (!ID_RE.test(id)) throw new ApprovalError("not-found", `approval ${JSON.stringify(id)} does not exist`);
}

function clone<T>(v: T): T {
	return structuredClone(v);
}

export class LocalApprovalStore implements ApprovalStore {
	readonly #dir: string | undefined;
	readonly #staleLockMs: number;
	readonly #lockTimeoutMs: number;
	readonly #memory = new Map<string, StoredFile>();
	readonly #listeners = new Set<(record: ApprovalRequestRecord) => void>();
	#watcher: FSWatcher | undefined;
	#ready: Promise<void> | undefined;
	/** Writes in flight: close() waits for them, so a closed store never writes afterwards. */
	readonly #inflight = new Set<Promise<unknown>>();
	#closed = false;

	constructor(options: LocalApprovalStoreOptions = {}) {
		this.#dir = options.directory;
		this.#staleLockMs = options.staleLockMs ?? 10_000;
		this.#lockTimeoutMs = options.lockTimeoutMs ?? 5000;
	}

	#init(): Promise<void> {
		this.#ready ??= (async () => {
			if (!this.#dir) return;
			await mkdir(this.#dir, { recursive: true, mode: 0o700 });
			this.#watcher = watch(this.#dir, { persistent: false }, (_event, filename) => {
				if (typeof filename === "string" && filename.endsWith(".json")) {
					void this.#refresh(filename.slice(0, -5)).catch(() => {});
				}
			});
			this.#watcher.on("error", () => {});
		})();
		return this.#ready;
	}

	create(record: ApprovalRequestRecord): Promise<ApprovalRequestRecord> {
		return this.#write(() => this.#create(record));
	}

	async #create(record: ApprovalRequestRecord): Promise<ApprovalRequestRecord> {
		checkId(record.id);
		await this.#init();
		const file: StoredFile = { revision: 1, record: clone(record) };
		if (this.#dir) {
			const tmp = join(this.#dir, `.${record.id}.${randomBytes(4).toString("hex")}.tmp`);
			await writeFile(tmp, JSON.stringify(file), { mode: 0o600 });
			try {
				await link(tmp, this.#path(record.id));
			} catch (err) {
				if ((err as NodeJS.ErrnoException).code === "EEXIST") throw new ApprovalError("conflict", `approval ${record.id} already exists`);
				throw err;
			} finally {
				await unlink(tmp).catch(() => {});
			}
		} else if (this.#memory.has(record.id)) {
			throw new ApprovalError("conflict", `approval ${record.id} already exists`);
		}
		this.#remember(file);
		return clone(file.record);
	}

	async get(id: string): Promise<ApprovalRequestRecord | undefined> {
		if (!ID_RE.test(id)) return undefined;
		await this.#init();
		const file = this.#dir ? await this.#read(id) : this.#memory.get(id);
		return file && clone(file.record);
	}

	async list(): Promise<ApprovalRequestRecord[]> {
		await this.#init();
		if (!this.#dir) return [...this.#memory.values()].map((f) => clone(f.record));
		const out: ApprovalRequestRecord[] = [];
		for (const name of await readdir(this.#dir)) {
			if (!name.endsWith(".json") || name.startsWith(".")) continue;
			const file = await this.#read(name.slice(0, -5));
			if (file) out.push(file.record);
		}
		return out;
	}

	update(id: string, mutate: ApprovalMutation): Promise<{ record: ApprovalRequestRecord; changed: boolean }> {
		return this.#write(() => this.#update(id, mutate));
	}

	async #update(id: string, mutate: ApprovalMutation): Promise<{ record: ApprovalRequestRecord; changed: boolean }> {
		checkId(id);
		await this.#init();
		if (!this.#dir) {
			const current = this.#memory.get(id);
			if (!current) throw new ApprovalError("not-found", `approval ${id} does not exist`);
			const next = mutate(clone(current.record));
			if (!next) return { record: clone(current.record), changed: false };
			const file = { revision: current.revision + 1, record: clone(next) };
			this.#remember(file);
			return { record: clone(next), changed: true };
		}
		const release = await this.#lock(id);
		try {
			const current = await this.#read(id);
			if (!current) throw new ApprovalError("not-found", `approval ${id} does not exist`);
			const next = mutate(clone(current.record));
			if (!next) return { record: current.record, changed: false };
			const file: StoredFile = { revision: current.revision + 1, record: clone(next) };
			const tmp = join(this.#dir, `.${id}.${randomBytes(4).toString("hex")}.tmp`);
			await writeFile(tmp, JSON.stringify(file), { mode: 0o600 });
			await rename(tmp, this.#path(id));
			this.#remember(file);
			return { record: clone(next), changed: true };
		} finally {
			await release();
		}
	}

	delete(id: string): Promise<void> {
		return this.#write(() => this.#delete(id));
	}

	async #delete(id: string): Promise<void> {
		if (!ID_RE.test(id)) return;
		await this.#init();
		this.#memory.delete(id);
		if (this.#dir) await unlink(this.#path(id)).catch(() => {});
	}

	subscribe(listener: (record: ApprovalRequestRecord) => void): () => void {
		this.#listeners.add(listener);
		void this.#init().catch(() => {});
		return () => this.#listeners.delete(listener);
	}

	/** Stops watching and waits for writes in flight; later writes are refused ("unavailable"). */
	async close(): Promise<void> {
		this.#closed = true;
		this.#watcher?.close();
		this.#listeners.clear();
		await Promise.allSettled([...this.#inflight]);
	}

	#write<T>(op: () => Promise<T>): Promise<T> {
		if (this.#closed) return Promise.reject(new ApprovalError("unavailable", "the approval store is closed"));
		const p = op();
		this.#inflight.add(p);
		const done = () => this.#inflight.delete(p);
		p.then(done, done);
		return p;
	}

	#path(id: string): string {
		return join(this.#dir!, `${id}.json`);
	}

	async #read(id: string): Promise<StoredFile | undefined> {
		try {
			const file = JSON.parse(await readFile(this.#path(id), "utf8")) as StoredFile;
			if (typeof file?.revision !== "number" || file.record?.id !== id) return undefined;
			return file;
		} catch (err) {
			if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
			throw new ApprovalError("unavailable", `approval ${id}: unreadable store file (${(err as Error).message})`);
		}
	}

	/** Note a (possibly foreign) revision and tell listeners if it is new to us. */
	#remember(file: StoredFile): void {
		const known = this.#memory.get(file.record.id);
		if (known && known.revision >= file.revision) return;
		this.#memory.set(file.record.id, clone(file));
		for (const l of this.#listeners) {
			try {
				l(clone(file.record));
			} catch {
				// a listener's failure is its own
			}
		}
	}

	async #refresh(id: string): Promise<void> {
		if (!ID_RE.test(id)) return;
		const file = await this.#read(id);
		if (file) this.#remember(file);
	}

	async #lock(id: string): Promise<() => Promise<void>> {
		const lockPath = join(this.#dir!, `${id}.lock`);
		const deadline = Date.now() + this.#lockTimeoutMs;
		let delay = 5;
		for (;;) {
			try {
				const handle = await open(lockPath, "wx", 0o600);
				await handle.close();
				return () => unlink(lockPath).catch(() => {});
			} catch (err) {
				if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
			}
			const info = await stat(lockPath).catch(() => undefined);
			if (info && Date.now() - info.mtimeMs > this.#staleLockMs) {
				await unlink(lockPath).catch(() => {});
				continue;
			}
			if (Date.now() > deadline) throw new ApprovalError("conflict", `approval ${id} is locked by another writer`);
			await sleep(delay);
			delay = Math.min(delay * 2, 100);
		}
	}
}
