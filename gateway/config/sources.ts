/**
 * Where a gateway gets its config bundle. Each source pushes whatever it reads into a BundleStore;
 * the store validates and keeps the newest valid bundle, so a broken or stale read never replaces a
 * good bundle.
 *
 * - file: a JSON file (standalone mode writes it; also handy for a mounted Secret volume). Watched
 *   with fs.watch plus a poll, because atomic renames and Secret volume symlink swaps can escape watch.
 * - kubernetes: a Secret (key `bundle.json`) watched through the API.
 */
import { watch as fsWatch, type FSWatcher } from "node:fs";
import { readFile } from "node:fs/promises";
import type { KubeConfig } from "@kubernetes/client-node";
import type { BundleStore } from "./store.ts";

export interface BundleSource {
	/** Resolves after the first successful load (the file source rejects when its first read fails; the Secret source waits). */
	start(): Promise<void>;
	stop(): Promise<void>;
}

export interface FileSourceOptions {
	path: string;
	/** Poll interval in ms as a backstop to fs.watch (default 1000). */
	pollIntervalMs?: number;
	onError?: (err: unknown) => void;
}

export class FileBundleSource implements BundleSource {
	#watcher: FSWatcher | undefined;
	#timer: NodeJS.Timeout | undefined;
	#lastText = "";

	constructor(
		private readonly store: BundleStore,
		private readonly options: FileSourceOptions,
	) {}

	async start(): Promise<void> {
		await this.#load(true);
		try {
			this.#watcher = fsWatch(this.options.path, () => void this.#load(false));
			this.#watcher.on("error", () => {});
		} catch {
			// The poll below still picks changes up.
		}
		this.#timer = setInterval(() => void this.#load(false), this.options.pollIntervalMs ?? 1000);
		this.#timer.unref();
	}

	async #load(first: boolean): Promise<void> {
		try {
			const text = await readFile(this.options.path, "utf8");
			if (text === this.#lastText) return;
			const parsed: unknown = JSON.parse(text);
			this.store.update(parsed);
			this.#lastText = text;
		} catch (err) {
			if (first) throw err;
			this.options.onError?.(err);
		}
	}

	async stop(): Promise<void> {
		this.#watcher?.close();
		if (this.#timer) clearInterval(this.#timer);
	}
}

export interface KubeSecretSourceOptions {
	namespace: string;
	name: string;
	/** Key in the Secret's data holding the bundle JSON (default `bundle.json`). */
	key?: string;
	/** API access (a @kubernetes/client-node KubeConfig); default: `loadFromDefault()` (in-cluster, KUBECONFIG, ~/.kube/config). */
	kubeConfig?: KubeConfig;
	/** How often the first read is retried while the Secret is missing or unreadable, ms (default 2000). */
	retryIntervalMs?: number;
	onError?: (err: unknown) => void;
}

/**
 * Watches a Secret with @kubernetes/client-node. Imported lazily so standalone mode never loads the
 * Kubernetes client.
 */
export class KubeSecretBundleSource implements BundleSource {
	#stopWatch: (() => void) | undefined;
	#stopped = false;

	constructor(
		private readonly store: BundleStore,
		private readonly options: KubeSecretSourceOptions,
	) {}

	async start(): Promise<void> {
		const k8s = await import("@kubernetes/client-node");
		let kc = this.options.kubeConfig;
		if (!kc) {
			kc = new k8s.KubeConfig();
			kc.loadFromDefault();
		}
		const core = kc.makeApiClient(k8s.CoreV1Api);
		const key = this.options.key ?? "bundle.json";
		const apply = (secret: { data?: Record<string, string> } | undefined) => {
			const encoded = secret?.data?.[key];
			if (!encoded) return;
			this.store.update(JSON.parse(Buffer.from(encoded, "base64").toString("utf8")));
		};
		// The operator may not have written the Secret yet (fresh install): wait for it rather than
		// exit, so the gateway is alive-but-not-ready instead of crash-looping.
		for (;;) {
			try {
				apply(await core.readNamespacedSecret({ namespace: this.options.namespace, name: this.options.name }));
				if (this.store.loaded) break;
				this.options.onError?.(new Error(`Secret ${this.options.namespace}/${this.options.name} has no ${key} yet; waiting`));
			} catch (err) {
				this.options.onError?.(err);
			}
			if (this.#stopped) return;
			await new Promise((r) => setTimeout(r, this.options.retryIntervalMs ?? 2000));
		}
		const watch = new k8s.Watch(kc);
		const run = async () => {
			if (this.#stopped) return;
			try {
				const req = await watch.watch(
					`/api/v1/namespaces/${encodeURIComponent(this.options.namespace)}/secrets`,
					{ fieldSelector: `metadata.name=${this.options.name}` },
					(_type, obj) => {
						try {
							apply(obj as { data?: Record<string, string> });
						} catch (err) {
							this.options.onError?.(err);
						}
					},
					(err) => {
						// client-node closes a watch after 30 s without an event. Routine for a Secret
						// that rarely changes: watch again at once, quietly. The new watch starts with the
						// current object (ADDED), so nothing written in between is missed.
						const inactivity = (err as { name?: string } | null)?.name === "TimeoutError";
						if (err && !inactivity) this.options.onError?.(err);
						if (!this.#stopped) setTimeout(() => void run(), inactivity ? 0 : 1000).unref();
					},
				);
				this.#stopWatch = () => req.abort();
			} catch (err) {
				this.options.onError?.(err);
				if (!this.#stopped) setTimeout(() => void run(), 2000).unref();
			}
		};
		await run();
	}

	async stop(): Promise<void> {
		this.#stopped = true;
		this.#stopWatch?.();
	}
}
