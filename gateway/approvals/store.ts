/**
 * Where ApprovalRequests live. Two implementations: `KubeApprovalStore` (ApprovalRequest resources,
 * watched by every replica and the CLI) and `LocalApprovalStore` (standalone mode: memory plus an
 * optional directory of JSON files). The rules live in decision.ts and the waiting/expiry logic in
 * service.ts, so both stores behave the same.
 */
import type { ApprovalRequestRecord } from "./types.ts";

/** Returns the next record, or undefined to leave the stored one unchanged. May throw ApprovalError. */
export type ApprovalMutation = (current: ApprovalRequestRecord) => ApprovalRequestRecord | undefined;

export interface ApprovalStore {
	/** Store a new record; throws if the id exists. */
	create(record: ApprovalRequestRecord): Promise<ApprovalRequestRecord>;
	get(id: string): Promise<ApprovalRequestRecord | undefined>;
	list(): Promise<ApprovalRequestRecord[]>;
	/**
	 * Optimistic read-modify-write: `mutate` sees the current stored record; when another writer wins
	 * the race the store re-reads and calls `mutate` again (so no decision is ever lost). Throws
	 * ApprovalError("not-found") for an unknown id, ApprovalError("conflict") after too many retries.
	 */
	update(id: string, mutate: ApprovalMutation): Promise<{ record: ApprovalRequestRecord; changed: boolean }>;
	/** Remove a record (retention of decided requests); unknown ids are ignored. */
	delete(id: string): Promise<void>;
	/** Called for every created or changed record this store learns about (own writes and others'). */
	subscribe(listener: (record: ApprovalRequestRecord) => void): () => void;
	close(): Promise<void>;
}
