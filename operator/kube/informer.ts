/**
 * List + watch one resource type into an in-memory cache, calling `onChange(key)` for every object that
 * was added, changed or removed. Level-based consumers only use the key and re-read the cache (or the
 * API). On watch expiry (410 Gone) or a dropped stream it re-lists and reports every key again.
 */

import { KubeError, type KubeClient, type KubeObject, type ListOptions, type ResourceType } from "./client.ts";

export const objectKey = (o: { metadata: { namespace?: string; name: string } }): string => `${o.metadata.namespace ?? ""}/${o.metadata.name}`;

export class Informer<T extends KubeObject = KubeObject> {
	private cache = new Map<string, T>();
	private abort = new AbortController();
	private synced = false;
	private syncedWaiters: (() => void)[] = [];
	private stopped = false;

	constructor(
		private readonly client: KubeClient,
		readonly type: ResourceType,
		private readonly onChange: (key: string, obj: T | undefined) => void,
		private readonly opts: ListOptions & { namespace?: string; onError?: (e: unknown) => void } = {},
	) {}

	get(key: string): T | undefined {
		return this.cache.get(key);
	}

	list(): T[] {
		return [...this.cache.values()];
	}

	hasSynced(): boolean {
		return this.synced;
	}

	waitForSync(): Promise<void> {
		if (this.synced) return Promise.resolve();
		return new Promise((r) => this.syncedWaiters.push(r));
	}

	start(): void {
		void this.loop();
	}

	stop(): void {
		this.stopped = true;
		this.abort.abort();
	}

	private async loop(): Promise<void> {
		let backoff = 200;
		while (!this.stopped) {
			try {
				const { items, resourceVersion } = await this.client.list<T>(this.type, this.opts.namespace, this.opts);
				const seen = new Set<string>();
				for (const item of items) {
					const k = objectKey(item);
					seen.add(k);
					const prev = this.cache.get(k);
					this.cache.set(k, item);
					if (!prev || prev.metadata.resourceVersion !== item.metadata.resourceVersion) this.onChange(k, item);
				}
				for (const k of [...this.cache.keys()]) {
					if (!seen.has(k)) {
						this.cache.delete(k);
						this.onChange(k, undefined);
					}
				}
				if (!this.synced) {
					this.synced = true;
					for (const w of this.syncedWaiters.splice(0)) w();
				}
				backoff = 200;
				let rv = resourceVersion;
				while (!this.stopped) {
					let gone = false;
					await this.client.watch<T>(
						this.type,
						this.opts.namespace,
						rv,
						(ev) => {
							if (ev.type === "ERROR") {
								gone = true;
								return;
							}
							if (ev.type === "BOOKMARK") {
								rv = ev.object.metadata.resourceVersion ?? rv;
								return;
							}
							const k = objectKey(ev.object);
							rv = ev.object.metadata.resourceVersion ?? rv;
							if (ev.type === "DELETED") this.cache.delete(k);
							else this.cache.set(k, ev.object);
							this.onChange(k, ev.type === "DELETED" ? undefined : ev.object);
						},
						this.abort.signal,
						this.opts,
					);
					if (gone) break; // re-list
				}
			} catch (e) {
				if (this.stopped) return;
				if (!(e instanceof KubeError && e.code === "GONE")) this.opts.onError?.(e);
				await new Promise((r) => setTimeout(r, backoff));
				backoff = Math.min(backoff * 2, 10_000);
			}
		}
	}
}
