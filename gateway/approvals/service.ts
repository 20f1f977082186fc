/**
 * The ApprovalService every data path uses, over any ApprovalStore. Holds no state that matters
 * across restarts: records live in the store; this class only adds timers (expiry), subscriptions
 * (waiting) and notifications for the transitions *this* instance wrote (so with N replicas each event
 * is announced once: only one writer wins each transition).
 */
import type { Identity } from "../config/bundle.ts";
import {
	applyDecision,
	approveHintFor,
	DEFAULT_REQUEST_LIMITS,
	cancel,
	checkApproverCredential,
	commandRefusal,
	expireIfDue,
	findReusable,
	newApprovalId,
	newRecord,
	type RequestLimits,
	requestRefusal,
	validateInput,
} from "./decision.ts";
import { ApprovalError } from "./errors.ts";
import type { ApprovalStore } from "./store.ts";
import type { ApprovalPhase, ApprovalRequestInput, ApprovalRequestRecord, ApprovalService } from "./types.ts";

export type ApprovalEventType =
	| "approval.requested"
	/** A vote that did not (yet) decide the request (minApprovals > 1). */
	| "approval.decision"
	| "approval.approved"
	| "approval.denied"
	| "approval.expired"
	| "approval.cancelled";

export interface ApprovalEvent {
	type: ApprovalEventType;
	record: ApprovalRequestRecord;
}

/** Anything that wants to hear about transitions (webhooks). Must not block: enqueue and return. */
export interface ApprovalNotifier {
	notify(event: ApprovalEvent): void;
}

export interface StoreApprovalServiceOptions {
	store: ApprovalStore;
	notifier?: ApprovalNotifier;
	/** Base URL of the admin server's web pages, for `approveHint` (default: CLI line only). */
	webBaseUrl?: string;
	/** Safety-net re-read interval while waiting, ms (default 5000): watches can miss events. */
	waitPollIntervalMs?: number;
	/**
	 * How often the sweep runs, ms (default 30000; 0 disables): Pending requests past expiry are marked
	 * Expired, decided requests older than `retainDecidedMs` are deleted.
	 */
	sweepIntervalMs?: number;
	/** Keep decided requests this long after they left Pending, ms (default 7 days; 0 keeps them forever). */
	retainDecidedMs?: number;
	/** How often one requester may ask (decision.ts `DEFAULT_REQUEST_LIMITS`: 5 pending, 20 a minute, 60 s after a deny). */
	requestLimits?: Partial<RequestLimits>;
	/** Background failures (sweep) are reported here. */
	onError?: (message: string) => void;
	now?: () => Date;
}

/** Attempts to record a disconnected client's cancel before giving up (backoff 0.2 s doubling, at most 5 s). */
const CANCEL_ATTEMPTS = 8;

const FINAL_EVENT: Record<Exclude<ApprovalPhase, "Pending">, ApprovalEventType> = {
	Approved: "approval.approved",
	Denied: "approval.denied",
	Expired: "approval.expired",
	Cancelled: "approval.cancelled",
};

export class StoreApprovalService implements ApprovalService {
	readonly #store: ApprovalStore;
	readonly #notifier: ApprovalNotifier | undefined;
	readonly #webBaseUrl: string | undefined;
	readonly #pollMs: number;
	readonly #now: () => Date;
	readonly #sweep: NodeJS.Timeout | undefined;
	readonly #retainMs: number;
	readonly #onError: (message: string) => void;
	readonly #limits: RequestLimits;
	#closed = false;
	/** The last `request()` in line (see there). */
	#requesting: Promise<unknown> = Promise.resolve();

	constructor(options: StoreApprovalServiceOptions) {
		this.#store = options.store;
		this.#notifier = options.notifier;
		this.#webBaseUrl = options.webBaseUrl;
		this.#pollMs = options.waitPollIntervalMs ?? 5000;
		this.#now = options.now ?? (() => new Date());
		this.#retainMs = options.retainDecidedMs ?? 7 * 86_400_000;
		this.#onError = options.onError ?? (() => {});
		this.#limits = Object.freeze({ ...DEFAULT_REQUEST_LIMITS, ...options.requestLimits });
		const sweepMs = options.sweepIntervalMs ?? 30_000;
		if (sweepMs > 0) {
			this.#sweep = setInterval(() => void this.sweep().catch((err: Error) => this.#onError(`approvals sweep failed: ${err.message}`)), sweepMs);
			this.#sweep.unref();
		}
	}

	async request(input: ApprovalRequestInput): Promise<ApprovalRequestRecord> {
		validateInput(input);
		const tooLong = commandRefusal(input);
		if (tooLong) throw tooLong;
		// One at a time in this process: the per-requester limits are read from the store, then the
		// request is created. Concurrent calls all read the store before any had created its request,
		// so an agent holding statements in many sessions at the same moment paged approvers once per
		// session, past the 5-pending limit. (Across replicas the race remains; docs/approvals.md.)
		const turn = this.#requesting.then(() => this.#request(input));
		this.#requesting = turn.catch(() => undefined);
		return turn;
	}

	async #request(input: ApprovalRequestInput): Promise<ApprovalRequestRecord> {
		const records = await this.#store.list();
		if ((input.reuseWindowSeconds ?? 0) > 0) {
			const reusable = findReusable(records, input, this.#now());
			if (reusable) return { ...reusable, reusedFrom: reusable.id };
		}
		const refusal = requestRefusal(records, input, this.#now(), this.#limits);
		if (refusal) throw refusal;
		const id = newApprovalId();
		const record = await this.#store.create(newRecord(input, id, this.#now(), approveHintFor(id, this.#webBaseUrl)));
		this.#emit("approval.requested", record);
		return record;
	}

	async get(id: string): Promise<ApprovalRequestRecord | undefined> {
		const record = await this.#store.get(id);
		return record && (expireIfDue(record, this.#now()) ?? record);
	}

	async list(filter?: { phase?: ApprovalPhase }): Promise<ApprovalRequestRecord[]> {
		const now = this.#now();
		const all = (await this.#store.list()).map((r) => expireIfDue(r, now) ?? r);
		const out = filter?.phase ? all.filter((r) => r.phase === filter.phase) : all;
		return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt) || a.id.localeCompare(b.id));
	}

	async decide(id: string, approver: Identity, decision: "approve" | "deny", comment?: string): Promise<ApprovalRequestRecord> {
		checkApproverCredential(approver, this.#now());
		let expiredNow = false;
		const { record, changed } = await this.#store.update(id, (current) => {
			expiredNow = false;
			const expired = expireIfDue(current, this.#now());
			if (expired) {
				expiredNow = true;
				return expired;
			}
			return applyDecision(current, approver, decision, comment, this.#now());
		});
		if (expiredNow) {
			if (changed) this.#emit("approval.expired", record);
			throw new ApprovalError("expired", `approval ${id} expired at ${record.expiresAt}`);
		}
		this.#emit(record.phase === "Pending" ? "approval.decision" : FINAL_EVENT[record.phase], record);
		return record;
	}

	waitForDecision(id: string, signal: AbortSignal): Promise<ApprovalRequestRecord> {
		return new Promise<ApprovalRequestRecord>((resolve, reject) => {
			let settled = false;
			let expiryTimer: NodeJS.Timeout | undefined;
			const cleanup = () => {
				settled = true;
				unsubscribe();
				clearInterval(poll);
				if (expiryTimer) clearTimeout(expiryTimer);
				signal.removeEventListener("abort", abortListener);
			};
			const finish = (record: ApprovalRequestRecord) => {
				if (settled) return;
				cleanup();
				resolve(record);
			};
			const fail = (err: unknown) => {
				if (settled) return;
				cleanup();
				reject(err);
			};
			const transition = async (mutate: (r: ApprovalRequestRecord) => ApprovalRequestRecord | undefined) => {
				const { record, changed } = await this.#store.update(id, mutate);
				if (changed && record.phase !== "Pending") this.#emit(FINAL_EVENT[record.phase], record);
				return record;
			};
			const check = async () => {
				if (settled) return;
				const record = await this.#store.get(id);
				if (!record) return fail(new ApprovalError("not-found", `approval ${id} does not exist`));
				if (record.phase !== "Pending") return finish(record);
				const dueIn = Date.parse(record.expiresAt) - this.#now().getTime();
				if (dueIn <= 0) return finish(await transition((r) => expireIfDue(r, this.#now())));
				if (!expiryTimer && !settled) {
					expiryTimer = setTimeout(() => {
						expiryTimer = undefined;
						void transition((r) => expireIfDue(r, this.#now()))
							.then((r) => (r.phase === "Pending" ? check() : finish(r)))
							.catch(tolerate);
					}, dueIn + 5);
				}
			};
			// A store hiccup during a re-read is not a verdict: the watch or the next re-read tries again.
			// Only a request that no longer exists ends the wait with an error.
			const tolerate = (err: unknown) => {
				if (err instanceof ApprovalError && err.code === "not-found") fail(err);
			};
			// The cancel must reach the store even through a hiccup (a timeout or 5xx under load): one
			// lost write would leave the request Pending for approvers until it expires.
			const onAbort = (attempt = 0) => {
				void transition((r) => cancel(r, this.#now(), "the waiting client disconnected"))
					.then(finish)
					.catch((err: unknown) => {
						const gone = err instanceof ApprovalError && err.code === "not-found";
						if (gone || attempt >= CANCEL_ATTEMPTS - 1) return fail(err);
						setTimeout(() => onAbort(attempt + 1), Math.min(200 * 2 ** attempt, 5_000)).unref();
					});
			};
			const abortListener = () => onAbort();
			const unsubscribe = this.#store.subscribe((record) => {
				if (record.id === id && record.phase !== "Pending") finish(record);
			});
			const poll = setInterval(() => void check().catch(tolerate), this.#pollMs);
			poll.unref();
			if (signal.aborted) {
				onAbort();
				return;
			}
			signal.addEventListener("abort", abortListener, { once: true });
			void check().catch(tolerate);
		});
	}

	/**
	 * Persist Expired for every Pending request past its expiry (any replica may do it; one wins) and
	 * delete decided requests past retention. Returns how many were expired, deleted, or failed
	 * (failures go to `onError`; one failing record never stops the others).
	 */
	async sweep(): Promise<{ expired: number; deleted: number; failed: number }> {
		const counts = { expired: 0, deleted: 0, failed: 0 };
		if (this.#closed) return counts;
		const now = this.#now();
		for (const r of await this.#store.list()) {
			// One failing record (e.g. no RBAC for delete) must not stop the others from expiring.
			try {
				if (expireIfDue(r, now)) {
					const { record, changed } = await this.#store.update(r.id, (cur) => expireIfDue(cur, this.#now()));
					if (changed) {
						counts.expired++;
						this.#emit("approval.expired", record);
					}
				} else if (this.#retainMs > 0 && r.phase !== "Pending") {
					const decided = Date.parse(r.decidedAt ?? r.expiresAt);
					if (now.getTime() - decided > this.#retainMs) {
						await this.#store.delete(r.id);
						counts.deleted++;
					}
				}
			} catch (err) {
				counts.failed++;
				this.#onError(`approval ${r.id}: sweep failed: ${(err as Error).message}`);
			}
		}
		return counts;
	}

	async close(): Promise<void> {
		this.#closed = true;
		if (this.#sweep) clearInterval(this.#sweep);
		await this.#store.close();
	}

	#emit(type: ApprovalEventType, record: ApprovalRequestRecord): void {
		if (!this.#notifier) return;
		try {
			this.#notifier.notify({ type, record });
		} catch {
			// A notifier must never break the decision path.
		}
	}
}
