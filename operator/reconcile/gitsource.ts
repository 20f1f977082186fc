/**
 * The GitSource reconciler: fetch → snapshot → load (pure) → server-side apply → prune → status.
 *
 * - Every resource is applied with field manager `drawbridge-operator` and `force`, so edits made by
 *   hand in the cluster are overwritten on the next sync (drift correction).
 * - Files with problems are reported (status.errors with path/line, a Warning Event per new problem,
 *   the invalid-files metric) and skipped; what they declared before stays as it was.
 * - Prune only deletes objects carrying this GitSource's label, and never when the fetch failed.
 * - `trustedKeys` (signed commits only): the head commit, and every commit the branch gained on its
 *   first-parent chain since the last synced one, must carry an OpenPGP signature by one of the keys;
 *   otherwise nothing is applied or pruned (the last good commit stays in force) and the GitSource
 *   reports `UntrustedCommit` — a direct push that skipped review grants nothing, also once a signed
 *   merge lands on top of it.
 * - Fast-forward only: a head that does not descend from `status.lastSyncedCommit` (a force push, or the
 *   server serving an older commit again, signed or not) is refused with `NotFastForward` unless
 *   `spec.allowForcePush`; nothing is applied or pruned, so grants removed since stay removed.
 * - Each fetch has a deadline and a byte cap (`--git-timeout`, `--git-max-fetch-size`): a stalled or
 *   flooding server fails that sync (`FetchFailed`) and the queue moves on. Grant expiry never waits for
 *   git: AccessGrants have their own queue and timers.
 */

import { join } from "node:path";
import type { Logger } from "pino";
import type { GitSource, GitSourceStatus } from "../../crds/index.ts";
import { parseDuration } from "../../crds/index.ts";
import { canonicalJson } from "../../gateway/config/canonical.ts";
import { GIT_KINDS, type FileProblem, type LoadedSnapshot, loadSnapshotYielding, printable } from "../gitsync/load.ts";
import { PgpError, parseArmoredPublicKeys, verifyDetachedSignature } from "../gitsync/openpgp.ts";
import { GitFetchError, branchCommitsSince, commitSignature, fastForward, fetchBranch, readSnapshot, redactUrl } from "../gitsync/repo.ts";
import { type KubeClient, KubeError, type KubeObject, SECRETS } from "../kube/client.ts";
import type { EventRecorder } from "../kube/events.ts";
import type { OperatorMetrics } from "../metrics.ts";
import type { OperatorOptions } from "../options.ts";
import { setCondition } from "./desired/accessgrant.ts";
import { type ExistingObject, desiredObject, pruneSet } from "./desired/gitobject.ts";
import { ANNOTATIONS, FIELD_MANAGER, LABELS, labelValue } from "./labels.ts";
import { type Secret, secretValue } from "./stores.ts";
import { GITSOURCES, TYPE_BY_KIND, splitKey } from "./types.ts";

export interface GitSourceReconcilerDeps {
	kube: KubeClient;
	opts: OperatorOptions;
	log: Logger;
	metrics: OperatorMetrics;
	events: EventRecorder;
	/** Aborted when this replica stops leading or shuts down: a fetch in flight ends at once. */
	signal?: () => AbortSignal | undefined;
}

export const DEFAULT_INTERVAL_MS = 60_000;
/** status.errors holds at most this many problems (the CRD's maxItems). */
const MAX_STATUS_ERRORS = 256;
/** Warning Events for new problems written per sync; the rest are summed up in one more Event. */
export const MAX_EVENTS_PER_SYNC = 20;
const APPLY_CONCURRENCY = 8;

/** The GitSource's Ready reason per kind of fetch failure: a stalled, flooding or redirecting server, or a refused address, is not a server refusal. */
const FETCH_REASONS = { FETCH_TIMEOUT: "FetchTimeout", FETCH_TOO_LARGE: "FetchTooLarge", FETCH_REFUSED: "FetchRefused", FETCH_FAILED: "FetchFailed" } as const;

export class GitSourceReconciler {
	constructor(private readonly d: GitSourceReconcilerDeps) {}

	async reconcile(key: string): Promise<{ requeueAt?: Date } | undefined> {
		const [ns, name] = splitKey(key);
		const gs = await this.d.kube.get<GitSource>(GITSOURCES, ns, name);
		if (!gs) return undefined;
		const interval = parseDuration(gs.spec.interval ?? "1m") ?? DEFAULT_INTERVAL_MS;
		const next = { requeueAt: new Date(Date.now() + interval) };
		if (gs.spec.suspend) {
			await this.writeStatus(gs, { ready: false, reason: "Suspended", message: "spec.suspend is true" });
			return undefined;
		}
		const started = process.hrtime.bigint();
		const source = `${ns}/${name}`;
		const branch = gs.spec.branch ?? "main";
		let commit: string;
		let loaded: LoadedSnapshot;
		try {
			let token: string | undefined;
			if (gs.spec.secretRef) {
				const s = await this.d.kube.get<Secret>(SECRETS, ns, gs.spec.secretRef.name);
				token = secretValue(s, gs.spec.secretRef.key ?? "token");
				if (!token) throw new Error(`Secret ${ns}/${gs.spec.secretRef.name} has no key ${gs.spec.secretRef.key ?? "token"}`);
			}
			const gitdir = join(this.d.opts.gitCacheDir, ns, name);
			const signal = this.d.signal?.();
			commit = await fetchBranch(gitdir, {
				url: gs.spec.url,
				branch,
				...(signal ? { signal } : {}),
				...(token ? { token } : {}),
				timeoutMs: this.d.opts.gitFetchTimeoutMs,
				maxBytes: this.d.opts.gitMaxFetchBytes,
				allowLinkLocal: this.d.opts.gitAllowLinkLocal,
			});
			const previous = gs.status?.lastSyncedCommit;
			const forward = previous !== undefined && (await fastForward(gitdir, previous, commit));
			if (previous && !gs.spec.allowForcePush && !forward) {
				const why = `${branch} now points at ${commit}, which does not descend from the last synced commit ${previous} (force push or rollback); still serving ${previous.slice(0, 12)}. Set spec.allowForcePush to accept it.`;
				this.d.log.warn({ source, commit, previous }, "branch head is not a fast-forward of the last synced commit; keeping the last good commit");
				if (gs.status?.lastAttemptedCommit !== commit) await this.d.events.record(gs, "Warning", "NotFastForward", why);
				await this.writeStatus(gs, { ready: false, reason: "NotFastForward", message: why, attempted: commit });
				return next;
			}
			if (gs.spec.trustedKeys?.length) {
				// A history rewritten on purpose (allowForcePush, not a fast-forward) is judged by its head.
				const untrusted = await this.untrustedCommits(gitdir, forward ? previous : undefined, commit, gs);
				if (untrusted) {
					this.d.log.warn({ source, commit, reason: untrusted }, "head commit not signed by a trusted key; keeping the last good commit");
					if (gs.status?.lastAttemptedCommit !== commit) await this.d.events.record(gs, "Warning", "UntrustedCommit", `${commit.slice(0, 12)}: ${untrusted}`);
					await this.writeStatus(gs, { ready: false, reason: "UntrustedCommit", message: `${commit.slice(0, 12)}: ${untrusted}; still serving ${gs.status?.lastSyncedCommit?.slice(0, 12) ?? "nothing"}`, attempted: commit });
					return next;
				}
			}
			const snap = await readSnapshot(gitdir, commit, { path: gs.spec.path ?? ".", repository: gs.spec.url, branch, maxReadBytes: this.d.opts.gitMaxReadBytes });
			// Tenancy: a GitSource places resources in its own namespace; only one in the operator's
			// namespace (where creating it already means administering Drawbridge) may place them anywhere.
			loaded = await loadSnapshotYielding(snap, ns, { namespaces: ns === this.d.opts.namespace ? "any" : [] });
		} catch (e) {
			const message = `fetch ${redactUrl(gs.spec.url)}@${branch}: ${(e as Error).message}`;
			this.d.metrics.syncDuration.observe({ source, result: "error" }, Number(process.hrtime.bigint() - started) / 1e9);
			this.d.log.warn({ source, err: message }, "git sync failed");
			// A stalled or flooding server gets its own reason: the sync gave up, the server did not refuse.
			const reason = e instanceof GitFetchError ? FETCH_REASONS[e.code] : "FetchFailed";
			const prevReady = gs.status?.conditions?.find((c) => c.type === "Ready");
			if (prevReady?.reason !== reason) await this.d.events.record(gs, "Warning", reason, message);
			await this.writeStatus(gs, { ready: false, reason, message });
			throw new Error(message);
		}

		const problems: FileProblem[] = [...loaded.problems];
		const applied = new Set<string>();
		// Connections first (grants reference them), then the rest; a few applies in flight at once.
		const ordered = [...loaded.resources].sort((x, y) => Number(y.kind === "Connection") - Number(x.kind === "Connection"));
		const applyOne = async (r: (typeof ordered)[number]) => {
			const body = desiredObject(r, { namespace: ns, name });
			try {
				await this.d.kube.apply(TYPE_BY_KIND[r.kind], body, FIELD_MANAGER, true);
				applied.add(`${r.kind}:${r.key}`);
			} catch (e) {
				if (e instanceof KubeError && (e.code === "INVALID" || e.code === "FORBIDDEN" || e.code === "NOT_FOUND")) {
					problems.push({ path: r.path, line: r.line, message: printable(`${r.kind} ${r.key} rejected by the API server: ${e.message}`) });
				} else throw e;
			}
		};
		const connections = ordered.filter((r) => r.kind === "Connection");
		const rest = ordered.filter((r) => r.kind !== "Connection");
		for (const batch of [connections, rest]) {
			let next = 0;
			await Promise.all(
				Array.from({ length: Math.min(APPLY_CONCURRENCY, batch.length) }, async () => {
					while (next < batch.length) await applyOne(batch[next++]!);
				}),
			);
		}
		const brokenPaths = new Set(problems.map((p) => p.path));
		let pruned = 0;
		if (gs.spec.prune !== false) {
			const existing: ExistingObject[] = [];
			const raw = new Map<string, KubeObject>();
			for (const kind of GIT_KINDS) {
				const { items } = await this.d.kube.list(TYPE_BY_KIND[kind], undefined, { labelSelector: `${LABELS.gitSource}=${labelValue(ns, name)}` });
				for (const o of items) {
					const k = `${o.metadata.namespace}/${o.metadata.name}`;
					existing.push({ kind, key: k, ...(o.metadata.uid ? { uid: o.metadata.uid } : {}), ...(o.metadata.annotations?.[ANNOTATIONS.path] ? { path: o.metadata.annotations[ANNOTATIONS.path] } : {}) });
					raw.set(`${kind}:${k}`, o);
				}
			}
			for (const e of pruneSet(existing, applied, brokenPaths)) {
				const [ons, oname] = splitKey(e.key);
				if (await this.d.kube.delete(TYPE_BY_KIND[e.kind as keyof typeof TYPE_BY_KIND], ons, oname, e.uid)) {
					pruned++;
					this.d.log.info({ source, kind: e.kind, key: e.key }, "pruned: removed from git");
				}
			}
		}
		const seconds = Number(process.hrtime.bigint() - started) / 1e9;
		this.d.metrics.syncDuration.observe({ source, result: problems.length ? "partial" : "ok" }, seconds);
		this.d.metrics.invalidFiles.set({ source }, brokenPaths.size);
		this.d.metrics.appliedResources.set({ source }, applied.size);
		const prevErrors = new Set((gs.status?.errors ?? []).map((e) => `${e.path}:${e.line ?? ""}:${e.message}`));
		// At most MAX_EVENTS_PER_SYNC Events per sync, and only for problems that fit in status.errors
		// (the comparison base next time): a repository full of broken documents cannot flood the apiserver.
		const fresh = problems.slice(0, MAX_STATUS_ERRORS).filter((p) => !prevErrors.has(`${p.path}:${p.line ?? ""}:${p.message.slice(0, 4096)}`));
		for (const p of fresh.slice(0, MAX_EVENTS_PER_SYNC)) {
			await this.d.events.record(gs, "Warning", "InvalidFile", `${p.path}${p.line ? `:${p.line}` : ""}${p.column ? `:${p.column}` : ""}: ${p.message}`);
		}
		if (fresh.length > MAX_EVENTS_PER_SYNC) {
			await this.d.events.record(gs, "Warning", "InvalidFile", `${fresh.length - MAX_EVENTS_PER_SYNC} more new problem(s) in ${commit.slice(0, 12)}; see status.errors`);
		}
		await this.writeStatus(gs, {
			ready: true,
			reason: problems.length ? "SyncedWithErrors" : "Synced",
			message: `${applied.size} resources applied from ${commit.slice(0, 12)}, ${pruned} pruned${problems.length ? `, ${brokenPaths.size} file(s) skipped` : ""}`,
			commit,
			applied: applied.size,
			problems,
		});
		this.d.log.info({ source, commit, applied: applied.size, pruned, problems: problems.length, seconds }, "git sync done");
		return next;
	}

	/**
	 * Why the sync from `previous` to `head` does not count, or undefined when a trusted key signed every
	 * commit it puts on the branch (`branchCommitsSince`: the head and its first parents since the last
	 * synced commit; the head alone without `previous`). Checking the head alone let a direct push ride in
	 * under the next signed merge: an unsigned commit refused as the head was applied once a reviewed
	 * merge landed on top of it, or when both arrived between two syncs.
	 */
	private async untrustedCommits(gitdir: string, previous: string | undefined, head: string, gs: GitSource): Promise<string | undefined> {
		let commits: string[] | undefined;
		try {
			commits = await branchCommitsSince(gitdir, previous, head);
		} catch (e) {
			return `the commits since ${previous?.slice(0, 12)} cannot be read: ${(e as Error).message}`;
		}
		if (commits === undefined) return `more than 1000 commits since the last synced commit ${previous?.slice(0, 12)}; their signatures cannot all be checked`;
		// The head is judged even when it is the commit synced last (trusted keys may have changed since).
		for (const c of commits.includes(head) ? commits : [head, ...commits]) {
			const why = await this.untrustedReason(gitdir, c, gs);
			if (why === undefined) continue;
			return c === head ? why : `${why} (commit ${c.slice(0, 12)}, between the last synced commit ${previous?.slice(0, 12)} and the head: every commit the branch gained since must be signed)`;
		}
		return undefined;
	}

	/** Why the commit does not count (unsigned, unknown key, bad signature), or undefined when a trusted key signed it. */
	private async untrustedReason(gitdir: string, commit: string, gs: GitSource): Promise<string | undefined> {
		try {
			const keys = (gs.spec.trustedKeys ?? []).flatMap((k) => parseArmoredPublicKeys(k.publicKey));
			if (keys.length === 0) return "no usable key in trustedKeys (v4 RSA or Ed25519 expected)";
			const { signature, payload } = await commitSignature(gitdir, commit);
			if (!signature) return "commit is not signed";
			verifyDetachedSignature(signature, Buffer.from(payload, "utf8"), keys);
			return undefined;
		} catch (e) {
			return e instanceof PgpError ? `${e.code}: ${e.message}` : (e as Error).message;
		}
	}

	private async writeStatus(
		gs: GitSource,
		s: { ready: boolean; reason: string; message: string; commit?: string; attempted?: string; applied?: number; problems?: FileProblem[] },
	): Promise<void> {
		const now = new Date();
		const gen = gs.metadata.generation;
		const g = gen !== undefined ? { observedGeneration: gen } : {};
		let conditions = setCondition(gs.status?.conditions, { type: "Ready", status: s.ready ? "True" : "False", reason: s.reason, message: s.message, ...g }, now);
		if (s.problems) {
			conditions = setCondition(
				conditions,
				s.problems.length
					? { type: "FilesValid", status: "False", reason: "InvalidFiles", message: `${new Set(s.problems.map((p) => p.path)).size} file(s) could not be applied; see status.errors`, ...g }
					: { type: "FilesValid", status: "True", reason: "AllValid", message: "every file applied", ...g },
				now,
			);
		}
		const status: GitSourceStatus = {
			...(gs.status ?? {}),
			conditions,
			...g,
			...(s.commit ? { lastAttemptedCommit: s.commit, lastSyncedCommit: s.commit, lastSyncTime: now.toISOString() } : {}),
			...(s.attempted ? { lastAttemptedCommit: s.attempted } : {}),
			...(s.applied !== undefined ? { resources: s.applied } : {}),
			...(s.problems
				? {
						errors: s.problems.slice(0, MAX_STATUS_ERRORS).map((p) => ({
							path: p.path,
							...(p.line ? { line: p.line } : {}),
							...(p.column ? { column: p.column } : {}),
							message: p.message.slice(0, 4096),
						})),
					}
				: {}),
		};
		const [ns, name] = [gs.metadata.namespace!, gs.metadata.name];
		const prev = { ...(gs.status ?? {}) };
		const comparable = (x: GitSourceStatus) => canonicalJson({ ...x, lastSyncTime: undefined, conditions: x.conditions?.map((c) => ({ ...c, lastTransitionTime: undefined })) });
		if (comparable(prev) === comparable(status) && !s.commit) return;
		await this.d.kube.mergePatch(GITSOURCES, ns, name, { status }, "status");
	}
}
