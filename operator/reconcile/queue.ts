/**
 * A level-based work queue of keys (controller-runtime style):
 * - a key queued twice before it is processed is processed once (dedup);
 * - a key is never processed by two workers at once; if it is added while being processed it runs
 *   again afterwards (dirty);
 * - a failing key is retried with exponential backoff (base .. max), reset on success;
 * - `addAt` schedules a key for an instant (grant start/end); only the earliest pending instant per
 *   key is kept, so requeues never pile up.
 * Handlers re-read current state; the queue carries no payload.
 */

export interface QueueOptions {
	concurrency?: number;
	retryBaseMs?: number;
	retryMaxMs?: number;
	/** Called when a handler throws (after scheduling the retry). */
	onError?: (key: string, err: unknown, attempt: number) => void;
}

export type Handler = (key: string) => Promise<{ requeueAt?: Date } | undefined>;

export class WorkQueue {
	private queue: string[] = [];
	private queued = new Set<string>();
	private processing = new Set<string>();
	private dirty = new Set<string>();
	private timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
	private failures = new Map<string, number>();
	private active = 0;
	private handler: Handler | undefined;
	private stopped = false;
	private idleWaiters: (() => void)[] = [];
	private readonly concurrency: number;
	private readonly base: number;
	private readonly max: number;

	constructor(private readonly opts: QueueOptions = {}) {
		this.concurrency = opts.concurrency ?? 2;
		this.base = opts.retryBaseMs ?? 100;
		this.max = opts.retryMaxMs ?? 60_000;
	}

	add(key: string): void {
		if (this.stopped) return;
		if (this.processing.has(key)) {
			this.dirty.add(key);
			return;
		}
		if (this.queued.has(key)) return;
		this.queued.add(key);
		this.queue.push(key);
		this.pump();
	}

	/** Schedules `key` at `at` (or now if in the past); keeps only the earliest schedule per key. */
	addAt(key: string, at: Date): void {
		if (this.stopped) return; // a handler ending after stop() (retry, requeue) schedules nothing
		const t = at.getTime();
		const delay = t - Date.now();
		if (delay <= 0) {
			this.add(key);
			return;
		}
		const prev = this.timers.get(key);
		if (prev && prev.at <= t) return;
		if (prev) clearTimeout(prev.timer);
		// setTimeout caps at ~24.8 days; re-arm on wake-up for longer waits.
		const timer = setTimeout(() => {
			this.timers.delete(key);
			if (Date.now() < t) this.addAt(key, at);
			else this.add(key);
		}, Math.min(delay, 2_000_000_000));
		timer.unref();
		this.timers.set(key, { at: t, timer });
	}

	addAfter(key: string, ms: number): void {
		this.addAt(key, new Date(Date.now() + ms));
	}

	start(handler: Handler): void {
		this.handler = handler;
		this.pump();
	}

	stop(): void {
		this.stopped = true;
		for (const { timer } of this.timers.values()) clearTimeout(timer);
		this.timers.clear();
		this.queue = [];
		this.queued.clear();
	}

	get length(): number {
		return this.queue.length;
	}

	/** Resolves when nothing is queued or processing (timers may still be pending). */
	idle(): Promise<void> {
		if (this.queue.length === 0 && this.active === 0) return Promise.resolve();
		return new Promise((r) => this.idleWaiters.push(r));
	}

	/** Pending scheduled instant for a key (tests, metrics). */
	scheduledAt(key: string): Date | undefined {
		const t = this.timers.get(key);
		return t ? new Date(t.at) : undefined;
	}

	private pump(): void {
		while (this.handler && !this.stopped && this.active < this.concurrency && this.queue.length > 0) {
			const key = this.queue.shift()!;
			this.queued.delete(key);
			this.processing.add(key);
			this.active++;
			void this.run(key);
		}
		if (this.queue.length === 0 && this.active === 0) for (const w of this.idleWaiters.splice(0)) w();
	}

	private async run(key: string): Promise<void> {
		try {
			const res = await this.handler!(key);
			this.failures.delete(key);
			if (res?.requeueAt) this.addAt(key, res.requeueAt);
		} catch (err) {
			const attempt = (this.failures.get(key) ?? 0) + 1;
			this.failures.set(key, attempt);
			const delay = Math.min(this.max, this.base * 2 ** (attempt - 1));
			this.addAfter(key, delay * (0.8 + Math.random() * 0.4));
			this.opts.onError?.(key, err, attempt);
		} finally {
			this.processing.delete(key);
			this.active--;
			if (this.dirty.delete(key)) this.add(key);
			this.pump();
		}
	}
}
