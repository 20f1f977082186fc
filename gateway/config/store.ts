/**
 * The gateway's view of the current config bundle: validated once, indexed, frozen, swapped
 * atomically. Data paths ask it for connections, grants and the policies that select a connection,
 * and subscribe to a session's grant so the session ends when the grant expires or leaves git.
 */
import { EventEmitter } from "node:events";
import {
	BUNDLE_API_VERSION,
	type BundleConnection,
	type BundleGrant,
	type ConfigBundle,
	type GuardrailRule,
	type LabelSelector,
	type MaskRule,
	type SubjectMatcher,
} from "./bundle.ts";
import { bundleHash } from "./canonical.ts";
import type { BundleMark } from "./highwater.ts";
import { checkIssuerLimits, TokenVerifier, type TokenVerifierOptions } from "../identity/verify.ts";

export class BundleError extends Error {
	override readonly name = "BundleError";
	constructor(
		/** `rollback`: older than the newest bundle accepted (also before a restart: the high-water mark). */
		readonly code: "invalid" | "hash-mismatch" | "rollback",
		message: string,
	) {
		super(message);
	}
}

export interface ConnectionPolicies {
	maskRules: MaskRule[];
	/** Subjects exempt from masking on this connection. */
	maskExempt: SubjectMatcher[];
	guardrailRules: GuardrailRule[];
}

/** An accepted bundle with its indexes. Immutable. */
export class LoadedBundle {
	readonly connections: ReadonlyMap<string, BundleConnection>;
	readonly grantsByConnection: ReadonlyMap<string, readonly BundleGrant[]>;
	readonly grantsByKey: ReadonlyMap<string, BundleGrant>;
	readonly verifier: TokenVerifier;
	readonly maskingKey: Buffer;
	readonly #policies = new Map<string, ConnectionPolicies>();

	constructor(
		readonly bundle: ConfigBundle,
		verifier: TokenVerifier,
	) {
		this.verifier = verifier;
		this.maskingKey = Buffer.from(bundle.maskingKey, "base64");
		const connections = new Map<string, BundleConnection>();
		for (const c of bundle.connections) connections.set(c.name, c);
		const byConnection = new Map<string, BundleGrant[]>();
		const byKey = new Map<string, BundleGrant>();
		for (const g of bundle.grants) {
			byKey.set(g.key, g);
			const list = byConnection.get(g.connection) ?? [];
			list.push(g);
			byConnection.set(g.connection, list);
		}
		this.connections = connections;
		this.grantsByConnection = byConnection;
		this.grantsByKey = byKey;
		for (const c of bundle.connections) {
			// A policy selects Connections of its own namespace only (docs/resources.md), never another team's.
			const masking = bundle.maskingPolicies.filter((p) => namespaceOf(p.key) === c.namespace && selects(p.selector, c.labels));
			const guardrails = bundle.guardrailPolicies.filter((p) => namespaceOf(p.key) === c.namespace && selects(p.selector, c.labels));
			this.#policies.set(
				c.name,
				Object.freeze({
					maskRules: masking.flatMap((p) => p.rules),
					maskExempt: commonExemptions(masking),
					guardrailRules: guardrails.flatMap((p) => p.rules),
				}),
			);
		}
		deepFreeze(bundle);
	}

	get version(): number {
		return this.bundle.version;
	}

	connection(name: string): BundleConnection | undefined {
		return this.connections.get(name);
	}

	grantsFor(connection: string): readonly BundleGrant[] {
		return this.grantsByConnection.get(connection) ?? [];
	}

	policiesFor(connection: string): ConnectionPolicies {
		return this.#policies.get(connection) ?? { maskRules: [], maskExempt: [], guardrailRules: [] };
	}
}

/** `ns` of a `ns/name` key. */
function namespaceOf(key: string): string {
	const i = key.indexOf("/");
	return i < 0 ? "" : key.slice(0, i);
}

/**
 * Exemption switches off every mask rule on the connection (`maskExempt`), so a subject is exempt only
 * when every masking policy selecting the connection names it (the same matcher in each): one policy's
 * `exempt` must not lift another policy's masks.
 */
function commonExemptions(policies: readonly { exempt?: SubjectMatcher[] }[]): SubjectMatcher[] {
	if (policies.length === 0) return [];
	const [first, ...rest] = policies;
	const sets = rest.map((p) => new Set((p.exempt ?? []).map((m) => JSON.stringify(canonicalMatcher(m)))));
	return (first!.exempt ?? []).filter((m) => sets.every((set) => set.has(JSON.stringify(canonicalMatcher(m)))));
}

function canonicalMatcher(m: SubjectMatcher): unknown {
	if (m.kind === "Claims") return { kind: m.kind, issuer: m.issuer, claims: Object.entries(m.claims).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)) };
	return m.kind === "ServiceAccount" ? { kind: m.kind, namespace: m.namespace, name: m.name } : { kind: m.kind, name: m.name };
}

export function selects(selector: LabelSelector, labels: Record<string, string>): boolean {
	const match = selector.matchLabels ?? {};
	return Object.entries(match).every(([k, v]) => labels[k] === v);
}

/** Structural checks beyond the TypeScript type: a bundle comes from outside the process. */
export function validateBundle(bundle: unknown): ConfigBundle {
	const b = bundle as Partial<ConfigBundle> | null;
	if (!b || typeof b !== "object") throw new BundleError("invalid", "bundle is not an object");
	if (b.apiVersion !== BUNDLE_API_VERSION) throw new BundleError("invalid", `bundle apiVersion must be ${BUNDLE_API_VERSION}`);
	if (typeof b.version !== "number" || !Number.isSafeInteger(b.version)) throw new BundleError("invalid", "bundle version must be an integer");
	for (const field of ["issuers", "connections", "grants", "maskingPolicies", "guardrailPolicies"] as const) {
		if (!Array.isArray(b[field])) throw new BundleError("invalid", `bundle.${field} must be an array`);
	}
	if (!b.credentials || typeof b.credentials !== "object") throw new BundleError("invalid", "bundle.credentials must be an object");
	if (typeof b.maskingKey !== "string" || Buffer.from(b.maskingKey, "base64").length < 32) {
		throw new BundleError("invalid", "bundle.maskingKey must be base64 of at least 32 bytes");
	}
	const issuerIds = new Set<string>();
	for (const i of b.issuers ?? []) {
		try {
			checkIssuerLimits(i);
		} catch (err) {
			throw new BundleError("invalid", (err as Error).message);
		}
		if (issuerIds.has(i.issuer)) throw new BundleError("invalid", `duplicate issuer ${JSON.stringify(i.issuer)} (issuer ${i.name})`);
		issuerIds.add(i.issuer);
	}
	const names = new Set<string>();
	for (const c of b.connections ?? []) {
		if (names.has(c.name)) throw new BundleError("invalid", `duplicate connection name ${c.name}`);
		names.add(c.name);
	}
	for (const g of b.grants ?? []) {
		if (Number.isNaN(Date.parse(g.notBefore)) || Number.isNaN(Date.parse(g.expiresAt))) {
			throw new BundleError("invalid", `grant ${g.key}: notBefore/expiresAt must be RFC 3339 times`);
		}
	}
	const full = b as ConfigBundle;
	const expected = bundleHash(full);
	if (full.hash !== expected) throw new BundleError("hash-mismatch", `bundle hash ${full.hash} does not match content (${expected})`);
	return full;
}

export type GrantEndReason = "expired" | "revoked";

export interface BundleStoreEvents {
	change: [next: LoadedBundle, previous: LoadedBundle | undefined];
	/** A valid bundle refused because it is older than the high-water mark (logged and counted by the caller). */
	refused: [error: BundleError, bundle: ConfigBundle];
}

export interface BundleStoreOptions {
	verifier?: TokenVerifierOptions;
	/**
	 * The newest bundle accepted before this process started (gateway/config/highwater.ts): a bundle
	 * with a lower version, or the same version and another hash, is refused with code `rollback`.
	 */
	highWater?: BundleMark;
	/** Where the mark is kept, named in the refusal message. */
	highWaterLocation?: string;
	/** Clock for tests. */
	now?: () => Date;
}

export class BundleStore extends EventEmitter<BundleStoreEvents> {
	#current: LoadedBundle | undefined;
	#highWater: BundleMark | undefined;
	readonly #options: BundleStoreOptions;

	constructor(options: BundleStoreOptions = {}) {
		super();
		this.setMaxListeners(0);
		this.#options = options;
		this.#highWater = options.highWater;
	}

	/** The newest bundle accepted, by this process or (when loaded at start) before it. */
	get highWater(): BundleMark | undefined {
		return this.#highWater;
	}

	get current(): LoadedBundle {
		if (!this.#current) throw new TypeError("no config bundle loaded yet");
		return this.#current;
	}

	get loaded(): boolean {
		return this.#current !== undefined;
	}

	now(): Date {
		return this.#options.now?.() ?? new Date();
	}

	/**
	 * Accept a bundle if valid and newer than the current one. Returns false (and keeps the current
	 * bundle) for the current version seen again; throws BundleError for an invalid one, and with code
	 * `rollback` (after emitting `refused`) for one older than the high-water mark.
	 */
	update(raw: unknown): boolean {
		const bundle = validateBundle(structuredClone(raw));
		const previous = this.#current;
		const mark = this.#highWater;
		// Versions only move forward, across restarts too: an older bundle may name revoked grants.
		if (mark && (bundle.version < mark.version || (!previous && bundle.version === mark.version && bundle.hash !== mark.hash))) {
			const older = bundle.version < mark.version;
			const err = new BundleError(
				"rollback",
				`config bundle version ${bundle.version} (generated ${bundle.generatedAt}, hash ${bundle.hash.slice(0, 12)}) refused: ` +
					(older ? "older than" : "same version as, but different content from,") +
					` version ${mark.version} (hash ${mark.hash.slice(0, 12)}, generated ${mark.generatedAt}) already accepted` +
					`${this.#options.highWaterLocation ? ` (high-water mark ${this.#options.highWaterLocation})` : ""}; ` +
					"an older bundle may grant revoked access. If this rollback is deliberate, see docs/operations.md, \"Bundle rollback refused\"",
			);
			this.emit("refused", err, bundle);
			throw err;
		}
		// The current version seen again (a watch re-listing, a replica's duplicate write) is ignored.
		if (previous && bundle.version <= previous.version) return false;
		const sameIssuers =
			previous && JSON.stringify(previous.bundle.issuers) === JSON.stringify(bundle.issuers);
		const verifier = sameIssuers ? previous.verifier : new TokenVerifier(bundle.issuers, this.#options.verifier);
		const next = new LoadedBundle(bundle, verifier);
		this.#current = next;
		this.#highWater = { version: bundle.version, hash: bundle.hash, generatedAt: bundle.generatedAt, acceptedAt: this.now().toISOString() };
		this.emit("change", next, previous);
		return true;
	}

	/**
	 * Call `onEnd` once when grant `key` expires or disappears from the bundle (revoked), whichever
	 * comes first; a later bundle that extends the grant reschedules. Returns an unsubscribe function.
	 */
	watchGrant(key: string, onEnd: (reason: GrantEndReason, grant: BundleGrant) => void): () => void {
		let timer: NodeJS.Timeout | undefined;
		let last = this.current.grantsByKey.get(key);
		let ended = false;
		const end = (reason: GrantEndReason, grant: BundleGrant) => {
			if (ended) return;
			ended = true;
			cancel();
			onEnd(reason, grant);
		};
		const schedule = (grant: BundleGrant) => {
			if (timer) clearTimeout(timer);
			const ms = Date.parse(grant.expiresAt) - this.now().getTime();
			if (ms <= 0) {
				queueMicrotask(() => end("expired", grant));
				return;
			}
			// setTimeout caps at ~24.8 days: re-arm for long grants.
			timer = setTimeout(() => {
				if (Date.parse(grant.expiresAt) <= this.now().getTime()) end("expired", grant);
				else schedule(grant);
			}, Math.min(ms, 2_000_000_000));
			timer.unref();
		};
		const onChange = (next: LoadedBundle) => {
			const grant = next.grantsByKey.get(key);
			if (!grant) {
				if (last) end("revoked", last);
				return;
			}
			last = grant;
			schedule(grant);
		};
		const cancel = () => {
			if (timer) clearTimeout(timer);
			this.off("change", onChange);
		};
		this.on("change", onChange);
		if (last) schedule(last);
		else queueMicrotask(() => end("revoked", { key } as BundleGrant));
		return cancel;
	}
}

function deepFreeze<T>(value: T): T {
	if (value && typeof value === "object" && !Object.isFrozen(value)) {
		Object.freeze(value);
		for (const v of Object.values(value)) deepFreeze(v);
	}
	return value;
}
