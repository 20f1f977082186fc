/**
 * ApprovalStore over ApprovalRequest custom resources, so every gateway replica, the CLI (through any
 * replica's REST API) and `kubectl get approvalrequests` see the same requests.
 *
 * - create: POST the object (spec + annotations), then write `status.phase: Pending` so kubectl's
 *   Phase column is filled from the start.
 * - update: GET, apply the mutation, PUT `/status` carrying the `resourceVersion` read. A 409 Conflict
 *   means another replica wrote first: re-read and re-apply (the mutation re-checks every rule against
 *   the fresh record), so two approvers deciding at once never lose a decision.
 * - subscribe: one list+watch loop per store (resumes from the last resourceVersion, relists on
 *   410 Gone, backs off on errors); waiting callers also re-read periodically (service.ts).
 *
 * RBAC the gateway needs in its namespace: approvalrequests get/list/watch/create/delete and
 * approvalrequests/status get/update. Nobody else should have `update` on the status subresource:
 * writing it directly bypasses the approval rules.
 */
import { ApiException, CustomObjectsApi, type KubeConfig, Watch } from "@kubernetes/client-node";
import { setTimeout as sleep } from "node:timers/promises";
import { ApprovalError } from "./errors.ts";
import {
	APPROVAL_GROUP,
	APPROVAL_PLURAL,
	APPROVAL_VERSION,
	type ApprovalRequestObject,
	objectToRecord,
	recordToObject,
	statusOf,
} from "./kube-mapping.ts";
import type { ApprovalMutation, ApprovalStore } from "./store.ts";
import type { ApprovalRequestRecord } from "./types.ts";

export interface KubeApprovalStoreOptions {
	kubeConfig: KubeConfig;
	/** Namespace the ApprovalRequests live in (the gateway's own). */
	namespace: string;
	/** Attempts of one read-modify-write before giving up with `conflict` (default 10). */
	maxConflictRetries?: number;
	/** Attempts of one API call on throttling (429) or, for reads, transient errors (default 6). */
	transientRetries?: number;
	/** Field manager recorded on writes (default `drawbridge-gateway`). */
	fieldManager?: string;
	/** Called with watch problems (reconnects are automatic). */
	onError?: (message: string) => void;
}

const ID_RE = /^[a-z0-9][a-z0-9-]{0,62}$/;

function statusCode(err: unknown): number | undefined {
	if (err instanceof ApiException) return err.code;
	const code = (err as { code?: unknown; statusCode?: unknown })?.code ?? (err as { statusCode?: unknown })?.statusCode;
	return typeof code === "number" ? code : undefined;
}

/** Transient failures worth retrying. `idempotent` calls (reads, deletes) also retry 5xx and network errors. */
function retryable(err: unknown, idempotent: boolean): boolean {
	const code = statusCode(err);
	if (code === 429) return true; // throttled (API Priority and Fairness): the request was not processed
	if (!idempotent) return false;
	return code === undefined || code === 500 || code === 502 || code === 503 || code === 504;
}

function retryAfterMs(err: unknown): number | undefined {
	const headers = err instanceof ApiException ? (err.headers as Record<string, string | undefined>) : undefined;
	const value = Number(headers?.["retry-after"] ?? headers?.["Retry-After"]);
	return Number.isFinite(value) && value > 0 ? Math.min(value * 1000, 5000) : undefined;
}

function unavailable(err: unknown, what: string): ApprovalError {
	const code = statusCode(err);
	return new ApprovalError("unavailable", `kubernetes API: ${what} failed${code ? ` (HTTP ${code})` : ""}: ${(err as Error)?.message?.slice(0, 300) ?? String(err)}`);
}

export class KubeApprovalStore implements ApprovalStore {
	readonly #api: CustomObjectsApi;
	readonly #kc: KubeConfig;
	readonly #ns: string;
	readonly #maxRetries: number;
	readonly #transientRetries: number;
	readonly #fieldManager: string;
	readonly #onError: (message: string) => void;
	readonly #listeners = new Set<(record: ApprovalRequestRecord) => void>();
	/** resourceVersion last emitted per object: listeners hear each version once. */
	readonly #seen = new Map<string, string>();
	#watchAbort: AbortController | undefined;
	#watching = false;
	#closed = false;

	constructor(options: KubeApprovalStoreOptions) {
		this.#kc = options.kubeConfig;
		this.#api = options.kubeConfig.makeApiClient(CustomObjectsApi);
		this.#ns = options.namespace;
		this.#maxRetries = options.maxConflictRetries ?? 10;
		this.#transientRetries = options.transientRetries ?? 6;
		this.#fieldManager = options.fieldManager ?? "drawbridge-gateway";
		this.#onError = options.onError ?? (() => {});
	}

	/** Call the API, retrying throttling (and, for idempotent calls, transient errors) with backoff. */
	async #call<T>(fn: () => Promise<T>, idempotent: boolean): Promise<T> {
		let delay = 100;
		for (let attempt = 1; ; attempt++) {
			try {
				return await fn();
			} catch (err) {
				if (attempt >= this.#transientRetries || this.#closed || !retryable(err, idempotent)) throw err;
				await sleep(retryAfterMs(err) ?? delay + Math.floor(Math.random() * delay));
				delay = Math.min(delay * 2, 2000);
			}
		}
	}

	#params() {
		return { group: APPROVAL_GROUP, version: APPROVAL_VERSION, namespace: this.#ns, plural: APPROVAL_PLURAL };
	}

	async create(record: ApprovalRequestRecord): Promise<ApprovalRequestRecord> {
		const body = recordToObject(record, this.#ns);
		const { status, ...withoutStatus } = body;
		let created: ApprovalRequestObject;
		try {
			created = (await this.#call(
				() => this.#api.createNamespacedCustomObject({ ...this.#params(), body: withoutStatus, fieldManager: this.#fieldManager }),
				false,
			)) as ApprovalRequestObject;
		} catch (err) {
			if (statusCode(err) === 409) throw new ApprovalError("conflict", `approval ${record.id} already exists`);
			throw unavailable(err, `create ApprovalRequest ${record.id}`);
		}
		try {
			const written = (await this.#call(
				() =>
					this.#api.replaceNamespacedCustomObjectStatus({
						...this.#params(),
						name: record.id,
						body: { ...created, status },
						fieldManager: this.#fieldManager,
					}),
				false,
			)) as ApprovalRequestObject;
			created = written;
		} catch (err) {
			// Without a status the request still reads as Pending; only kubectl's Phase column is empty.
			this.#onError(`approval ${record.id}: initial status write failed: ${(err as Error).message}`);
		}
		const out = objectToRecord(created);
		if (!out) throw new ApprovalError("unavailable", `approval ${record.id}: the API server returned a malformed object`);
		this.#emit(created, out);
		return out;
	}

	async #getObject(id: string): Promise<ApprovalRequestObject | undefined> {
		if (!ID_RE.test(id)) return undefined;
		try {
			return (await this.#call(() => this.#api.getNamespacedCustomObject({ ...this.#params(), name: id }), true)) as ApprovalRequestObject;
		} catch (err) {
			if (statusCode(err) === 404) return undefined;
			throw unavailable(err, `get ApprovalRequest ${id}`);
		}
	}

	async get(id: string): Promise<ApprovalRequestRecord | undefined> {
		const obj = await this.#getObject(id);
		return obj && objectToRecord(obj);
	}

	async list(): Promise<ApprovalRequestRecord[]> {
		let list: { items?: ApprovalRequestObject[] };
		try {
			list = (await this.#call(() => this.#api.listNamespacedCustomObject(this.#params()), true)) as { items?: ApprovalRequestObject[] };
		} catch (err) {
			throw unavailable(err, "list ApprovalRequests");
		}
		return (list.items ?? []).map(objectToRecord).filter((r): r is ApprovalRequestRecord => r !== undefined);
	}

	async update(id: string, mutate: ApprovalMutation): Promise<{ record: ApprovalRequestRecord; changed: boolean }> {
		for (let attempt = 1; ; attempt++) {
			const obj = await this.#getObject(id);
			const current = obj && objectToRecord(obj);
			if (!obj || !current) throw new ApprovalError("not-found", `approval ${id} does not exist`);
			const next = mutate(current);
			if (!next) return { record: current, changed: false };
			try {
				// Only throttling is retried here: after a 5xx the write may have happened, and re-applying
				// the mutation to the fresh state would report a decision that was in fact recorded as a refusal.
				const written = (await this.#call(
					() =>
						this.#api.replaceNamespacedCustomObjectStatus({
							...this.#params(),
							name: id,
							// resourceVersion from the read: the API server refuses the write if anyone wrote since.
							body: { ...obj, status: statusOf(next) },
							fieldManager: this.#fieldManager,
						}),
					false,
				)) as ApprovalRequestObject;
				const record = objectToRecord(written) ?? next;
				this.#emit(written, record);
				return { record, changed: true };
			} catch (err) {
				const code = statusCode(err);
				if (code === 409 && attempt < this.#maxRetries) {
					await sleep(Math.floor(Math.random() * 20 * attempt));
					continue;
				}
				if (code === 409) throw new ApprovalError("conflict", `approval ${id}: ${attempt} conflicting writes in a row; retry`);
				if (code === 404) throw new ApprovalError("not-found", `approval ${id} does not exist`);
				throw unavailable(err, `update ApprovalRequest ${id} status`);
			}
		}
	}

	/** Delete a request (retention of decided requests; the service never deletes Pending ones). */
	async delete(id: string): Promise<void> {
		if (!ID_RE.test(id)) return;
		this.#seen.delete(id);
		try {
			await this.#call(() => this.#api.deleteNamespacedCustomObject({ ...this.#params(), name: id }), true);
		} catch (err) {
			if (statusCode(err) !== 404) throw unavailable(err, `delete ApprovalRequest ${id}`);
		}
	}

	subscribe(listener: (record: ApprovalRequestRecord) => void): () => void {
		this.#listeners.add(listener);
		if (!this.#watching && !this.#closed) {
			this.#watching = true;
			void this.#watchLoop();
		}
		return () => this.#listeners.delete(listener);
	}

	async close(): Promise<void> {
		this.#closed = true;
		this.#listeners.clear();
		this.#watchAbort?.abort();
	}

	#emit(obj: ApprovalRequestObject, record: ApprovalRequestRecord): void {
		const rv = obj.metadata.resourceVersion;
		if (rv && this.#seen.get(record.id) === rv) return;
		if (rv) this.#seen.set(record.id, rv);
		for (const l of this.#listeners) {
			try {
				l(structuredClone(record));
			} catch {
				// a listener's failure is its own
			}
		}
	}

	async #watchLoop(): Promise<void> {
		const path = `/apis/${APPROVAL_GROUP}/${APPROVAL_VERSION}/namespaces/${this.#ns}/${APPROVAL_PLURAL}`;
		let resourceVersion: string | undefined;
		let backoff = 200;
		while (!this.#closed) {
			try {
				if (!resourceVersion) {
					const list = (await this.#api.listNamespacedCustomObject(this.#params())) as {
						items?: ApprovalRequestObject[];
						metadata?: { resourceVersion?: string };
					};
					for (const obj of list.items ?? []) {
						const r = objectToRecord(obj);
						if (r) this.#emit(obj, r);
					}
					resourceVersion = list.metadata?.resourceVersion;
				}
				const ended = await new Promise<{ gone: boolean; err?: unknown }>((resolve) => {
					let gone = false;
					void new Watch(this.#kc)
						.watch(
							path,
							{ allowWatchBookmarks: true, ...(resourceVersion ? { resourceVersion } : {}) },
							(type, obj: ApprovalRequestObject & { code?: number }) => {
								if (type === "ERROR") {
									if (obj?.code === 410) gone = true;
									return;
								}
								const rv = obj?.metadata?.resourceVersion;
								if (rv) resourceVersion = rv;
								if (type === "ADDED" || type === "MODIFIED") {
									const r = objectToRecord(obj);
									if (r) this.#emit(obj, r);
								} else if (type === "DELETED" && obj?.metadata?.name) {
									this.#seen.delete(obj.metadata.name);
								}
							},
							(err) => resolve({ gone, err }),
						)
						.then((abort) => {
							this.#watchAbort = abort;
							if (this.#closed) abort.abort();
						})
						.catch((err) => resolve({ gone, err }));
				});
				if (this.#closed) return;
				if (ended.gone || statusCode(ended.err) === 410) resourceVersion = undefined;
				if (ended.err && (ended.err as Error).name !== "AbortError") {
					this.#onError(`ApprovalRequest watch ended: ${(ended.err as Error).message ?? String(ended.err)}`);
					await sleep(backoff);
					backoff = Math.min(backoff * 2, 10_000);
				} else {
					backoff = 200;
				}
			} catch (err) {
				if (this.#closed) return;
				this.#onError(`ApprovalRequest list failed: ${(err as Error).message}`);
				resourceVersion = undefined;
				await sleep(backoff);
				backoff = Math.min(backoff * 2, 10_000);
			}
		}
	}
}
