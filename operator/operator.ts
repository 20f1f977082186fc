/**
 * Wiring: informers (every replica, so a standby is warm), HTTP endpoints (every replica), and — only
 * while this replica holds the Lease — the work queues and reconcilers:
 *
 *   GitSource ──informer──▶ gitQueue ──▶ GitSourceReconciler ──SSA/prune──▶ Connections, AccessGrants, policies
 *   AccessGrant ─informer─▶ grantQueue ─▶ GrantReconciler ──▶ token Secrets, PostgreSQL roles, status, Events
 *   anything ────────────▶ bundleQueue ─▶ BundleWriter ──▶ Secret drawbridge-gateway-bundle ──▶ gateways
 *   keysQueue ──▶ signing key rotation ──▶ bundle (inline JWKS) + grants (re-mint tokens of retired keys)
 */

import type { Logger } from "pino";
import type { AccessGrant, Connection, GitSource, GuardrailPolicy, MaskingPolicy } from "../crds/index.ts";
import type { IssuerConfig } from "../gateway/config/bundle.ts";
import { BundleWriter, discoverKubeIssuer } from "./config/writer.ts";
import { type KeyRing, jwksOf, parseKeyRing } from "./credentials/jwt.ts";
import { verifyWebhook, WebhookError } from "./gitsync/webhook.ts";
import { type KubeClient, SECRETS } from "./kube/client.ts";
import { EventRecorder } from "./kube/events.ts";
import { Informer } from "./kube/informer.ts";
import { LeaderElector } from "./leader.ts";
import { OperatorMetrics } from "./metrics.ts";
import type { OperatorOptions } from "./options.ts";
import { GitSourceReconciler } from "./reconcile/gitsource.ts";
import { GrantReconciler } from "./reconcile/grant.ts";
import { WorkQueue } from "./reconcile/queue.ts";
import { StatusReconciler } from "./reconcile/status.ts";
import { type Secret, type SshCas, ensureRecordingKeys, loadAndRotateKeyRing, loadMaskingKey, loadSshCas, secretValue } from "./reconcile/stores.ts";
import { ACCESSGRANTS, CONNECTIONS, GITSOURCES, GUARDRAILPOLICIES, MASKINGPOLICIES } from "./reconcile/types.ts";
import { OperatorServer } from "./server.ts";

const BUNDLE_KEY = "bundle";
const KEYS_KEY = "signing-keys";
const SYNC_REQUESTED = "access.drawbridge.dev/sync-requested-at";
const RESYNC_MS = 5 * 60_000;
/** Bursts of changes (a sync applying many grants) collapse into one bundle write. */
const BUNDLE_DEBOUNCE_MS = 100;
/** After the shutdown grace, how long aborted reconciles get to unwind before the Lease is released regardless. */
const ABORT_SETTLE_MS = 1000;

interface Queues {
	status: WorkQueue;
	grants: WorkQueue;
	git: WorkQueue;
	bundle: WorkQueue;
	keys: WorkQueue;
	resync: NodeJS.Timeout;
}

export class Operator {
	readonly metrics: OperatorMetrics;
	private readonly events: EventRecorder;
	private readonly connections: Informer<Connection & { metadata: { name: string } }>;
	private readonly grants: Informer<AccessGrant>;
	private readonly masking: Informer<MaskingPolicy>;
	private readonly guardrails: Informer<GuardrailPolicy>;
	private readonly gitSources: Informer<GitSource>;
	private readonly elector: LeaderElector;
	private readonly server: OperatorServer;
	private readonly grantReconciler: GrantReconciler;
	private readonly gitReconciler: GitSourceReconciler;
	private readonly statusReconciler: StatusReconciler;
	private readonly bundleWriter: BundleWriter;
	private queues: Queues | undefined;
	private ring: KeyRing | undefined;
	private maskingKey: string | undefined;
	private sshCas: SshCas | undefined;
	private recordingKid: string | undefined;
	private standbyCaPub: { user: string; upstream: string } | undefined;
	private kubeIssuer: IssuerConfig | undefined;
	private ringReload: NodeJS.Timeout | undefined;
	private gitSeen = new Map<string, string>();
	private seen = new Map<string, string>();
	private lastBundleMs = 0;
	private grantSeen = new Map<string, { mark: string; phase: string | undefined }>();
	private stopping = false;
	/** Aborted when this leadership term ends (shutdown or lost Lease): every reconcile request with it. */
	private term: AbortController | undefined;
	/** The API client of reconcilers, key stores and the bundle writer: its requests end with the term. */
	private readonly work: KubeClient;
	port = 0;

	constructor(
		private readonly opts: OperatorOptions,
		private readonly kube: KubeClient,
		private readonly log: Logger,
		options: { defaultMetrics?: boolean; onLostLeadership?: () => void } = {},
	) {
		this.metrics = new OperatorMetrics(options.defaultMetrics ?? false);
		this.work = kube.withSignal(() => this.term?.signal);
		const work = this.work;
		this.events = new EventRecorder(work, opts.identity, (e) => log.debug({ err: (e as Error).message }, "event not recorded"));
		const onErr = (what: string) => (e: unknown) => log.warn({ err: (e as Error).message, informer: what }, "watch failed; retrying");
		this.connections = new Informer(kube, CONNECTIONS, (key, obj) => this.onConnection(key, obj), { onError: onErr("connections") });
		this.grants = new Informer(kube, ACCESSGRANTS, (key, obj) => this.onGrant(key, obj), { onError: onErr("accessgrants") });
		this.masking = new Informer(kube, MASKINGPOLICIES, (key, obj) => this.onPolicy("MaskingPolicy", key, obj), { onError: onErr("maskingpolicies") });
		this.guardrails = new Informer(kube, GUARDRAILPOLICIES, (key, obj) => this.onPolicy("GuardrailPolicy", key, obj), { onError: onErr("guardrailpolicies") });
		this.gitSources = new Informer(kube, GITSOURCES, (key, obj) => this.onGitSource(key, obj), { onError: onErr("gitsources") });
		const common = { kube: work, opts, log, metrics: this.metrics, events: this.events, signal: () => this.term?.signal };
		this.grantReconciler = new GrantReconciler({
			...common,
			connection: (key) => this.connections.get(key),
			connections: () => this.connections.list(),
			keyRing: () => {
				if (!this.ring) throw new Error("signing keys not loaded");
				return this.ring;
			},
			sshUserCa: () => {
				if (!this.sshCas) throw new Error("SSH CA not loaded");
				return this.sshCas.user;
			},
			onCredentialsChanged: () => this.kickBundle(),
		});
		this.gitReconciler = new GitSourceReconciler(common);
		this.statusReconciler = new StatusReconciler(work, {
			connection: (key) => this.connections.get(key),
			connections: () => this.connections.list(),
			grants: () => this.grants.list(),
			masking: (key) => this.masking.get(key),
			guardrail: (key) => this.guardrails.get(key),
		});
		this.bundleWriter = new BundleWriter(
			work,
			opts,
			{
				connections: () => this.connections.list(),
				grants: () => this.grants.list(),
				maskingPolicies: () => this.masking.list(),
				guardrailPolicies: () => this.guardrails.list(),
				keyRing: () => this.ring!,
				maskingKey: () => this.maskingKey!,
				sshCas: () => this.sshCas,
				kubeIssuer: () => this.kubeIssuer,
			},
			log,
			this.metrics,
		);
		this.elector = new LeaderElector(kube, {
			namespace: opts.namespace,
			name: opts.leaseName,
			identity: opts.identity,
			leaseDurationMs: opts.leaseDurationMs,
			renewDeadlineMs: opts.renewDeadlineMs,
			retryPeriodMs: opts.retryPeriodMs,
			onStartedLeading: () => void this.startLeading(),
			onStoppedLeading: () => {
				this.stopLeading();
				if (!this.stopping) options.onLostLeadership?.();
			},
			onError: (e) => log.warn({ err: (e as Error).message }, "leader election"),
		});
		this.server = new OperatorServer(
			{
				ready: () => this.isReady(),
				jwks: () => (this.ring ? jwksOf(this.ring) : undefined),
				sshCaPublicKeys: () => (this.sshCas ? { user: this.sshCas.user.publicKeyLine, upstream: this.sshCas.upstream.publicKeyLine } : this.standbyCaPub),
				issuer: opts.issuer,
				webhook: (ns, name, headers, body) => this.onWebhook(ns, name, headers, body),
			},
			this.metrics,
			log,
		);
	}

	isLeader(): boolean {
		return this.elector.isLeader();
	}

	isReady(): boolean {
		return this.ring !== undefined && [this.connections, this.grants, this.masking, this.guardrails, this.gitSources].every((i) => i.hasSynced());
	}

	/** Starts serving and campaigning. Resolves once the HTTP server listens and caches are synced. */
	async start(): Promise<void> {
		const addr = await this.server.listen(this.opts.listenHost, this.opts.listenPort);
		this.port = addr.port;
		for (const i of [this.connections, this.grants, this.masking, this.guardrails, this.gitSources]) i.start();
		await Promise.all([this.connections, this.grants, this.masking, this.guardrails, this.gitSources].map((i) => i.waitForSync()));
		await this.reloadRing();
		this.ringReload = setInterval(() => void this.reloadRing(), 10_000);
		this.ringReload.unref();
		this.elector.start();
		this.log.info({ identity: this.opts.identity, port: this.port }, "operator started");
	}

	/**
	 * Graceful, and quick to hand over: stop taking work; let running reconciles finish for at most
	 * `graceMs` (`--shutdown-grace`); then abort what is still running (API requests torn down, git
	 * fetches ended, PostgreSQL admin connections closed, the revocation grace wait cut short) and give
	 * it `ABORT_SETTLE_MS` to unwind; then release the Lease and close HTTP. So the Lease is released
	 * about `graceMs` + 1 s after SIGTERM at most, whatever the git server, the apiserver or PostgreSQL
	 * are doing, and a standby takes over at its next retry instead of waiting for the Lease to expire.
	 * Work cut short is not lost: every reconcile is idempotent and the next leader runs them all again.
	 */
	async stop(graceMs = this.opts.shutdownGraceMs): Promise<void> {
		this.stopping = true;
		if (this.ringReload) clearInterval(this.ringReload);
		const q = this.queues;
		if (q) {
			for (const w of [q.status, q.grants, q.git, q.bundle, q.keys]) w.stop();
			const idle = Promise.all([q.status.idle(), q.grants.idle(), q.git.idle(), q.bundle.idle(), q.keys.idle()]).then(() => true);
			const within = (ms: number) => Promise.race([idle, new Promise<false>((r) => setTimeout(() => r(false), ms).unref())]);
			if (!(await within(graceMs))) {
				this.log.warn({ graceMs }, "reconciles still running at the end of the shutdown grace; aborting them (the next leader redoes them)");
				this.term?.abort(new Error("operator shutting down"));
				if (!(await within(ABORT_SETTLE_MS))) this.log.warn("reconciles did not unwind after the abort; releasing the Lease anyway");
			}
		}
		this.term?.abort(new Error("operator shutting down"));
		const released = await this.elector.stop();
		this.log.info({ released }, released ? "leader Lease released (or not held)" : "leader Lease could not be released; a standby takes over when it expires");
		for (const i of [this.connections, this.grants, this.masking, this.guardrails, this.gitSources]) i.stop();
		await this.server.close();
		this.log.info("operator stopped");
	}

	/** Resolves when every queue is idle (tests). */
	async idle(): Promise<void> {
		const q = this.queues;
		if (!q) return;
		for (let i = 0; i < 3; i++) await Promise.all([q.git.idle(), q.grants.idle(), q.status.idle(), q.bundle.idle(), q.keys.idle()]);
	}

	private async reloadRing(): Promise<void> {
		if (this.isLeader() && this.ring) return;
		try {
			const s = await this.kube.get<Secret>(SECRETS, this.opts.namespace, this.opts.signingKeysSecretName);
			const ring = parseKeyRing(secretValue(s, "keys.json"));
			if (ring.keys.length > 0) this.ring = ring;
			if (!this.sshCas) {
				const ca = await this.kube.get<Secret>(SECRETS, this.opts.namespace, this.opts.sshCaSecretName);
				const user = secretValue(ca, "user-ca.pub");
				const upstream = secretValue(ca, "upstream-ca.pub");
				// Public halves only: a standby serves them; the leader loads the private keys.
				if (user && upstream) this.standbyCaPub = { user, upstream };
			}
		} catch (e) {
			this.log.warn({ err: (e as Error).message }, "reading signing keys failed");
		}
	}

	private async startLeading(): Promise<void> {
		if (this.stopping || this.queues) return;
		this.term = new AbortController();
		this.metrics.leader.set(1);
		this.log.info({ identity: this.opts.identity }, "became leader");
		const onError = (kind: string) => (key: string, err: unknown, attempt: number) => {
			// Work aborted by the end of the term (shutdown, lost Lease) is not a failure: nothing retries it here.
			if (this.term?.signal.aborted) {
				this.log.debug({ kind, key, err: (err as Error).message }, "reconcile aborted; the next leader redoes it");
				return;
			}
			this.metrics.reconcileErrors.inc({ kind });
			this.log.warn({ kind, key, attempt, err: (err as Error).message }, "reconcile failed; retrying");
		};
		const timed = <T>(kind: string, fn: () => Promise<T>) => async () => {
			const end = this.metrics.reconcileDuration.startTimer({ kind });
			try {
				return await fn();
			} finally {
				end();
			}
		};
		const q: Queues = {
			status: new WorkQueue({ concurrency: 2, onError: onError("Status") }),
			grants: new WorkQueue({ concurrency: this.opts.concurrency, onError: onError("AccessGrant") }),
			git: new WorkQueue({ concurrency: 2, retryBaseMs: 1000, onError: onError("GitSource") }),
			bundle: new WorkQueue({ concurrency: 1, retryBaseMs: 200, onError: onError("Bundle") }),
			keys: new WorkQueue({ concurrency: 1, retryBaseMs: 1000, onError: onError("SigningKeys") }),
			resync: setInterval(() => this.enqueueAll(), RESYNC_MS),
		};
		q.resync.unref();
		this.queues = q;
		q.keys.start(async () => {
			const { ring, changed, nextCheck } = await loadAndRotateKeyRing(this.work, this.opts.namespace, this.opts.signingKeysSecretName, {
				rotationIntervalMs: this.opts.keyRotationIntervalMs,
				overlapMs: this.opts.keyOverlapMs,
			});
			const first = !this.ring;
			this.ring = ring;
			if (changed && !first) {
				this.log.info({ kids: ring.keys.map((k) => k.kid) }, "signing keys rotated");
				this.enqueueAll();
			}
			// The gateways' recording key and the public keys auditors pin: made once, re-made (and
			// added to the pinned set) at the next check after the Secret was deleted.
			try {
				const recording = await ensureRecordingKeys(this.work, this.opts.namespace, this.opts.recordingKeySecretName, this.opts.recordingTrustedKeysConfigMapName);
				if (recording.kid !== this.recordingKid) this.log.info({ kid: recording.kid, trustedKeys: recording.keys }, "recording signing key ready");
				this.recordingKid = recording.kid;
			} catch (e) {
				this.log.warn({ err: (e as Error).message }, "recording signing key not ensured; retrying in 30 s");
				return { requeueAt: new Date(Math.min(nextCheck.getTime(), Date.now() + 30_000)) };
			}
			return { requeueAt: nextCheck };
		});
		try {
			this.maskingKey = await loadMaskingKey(this.work, this.opts.namespace, this.opts.maskingKeySecretName);
			this.sshCas = await loadSshCas(this.work, this.opts.namespace, this.opts.sshCaSecretName);
			await this.refreshKubeIssuer();
			q.keys.add(KEYS_KEY);
			await q.keys.idle();
		} catch (e) {
			this.log.error({ err: (e as Error).message }, "initial key setup failed; retrying");
		}
		if (this.queues !== q) return;
		q.grants.start((key) => timed("AccessGrant", () => this.grantReconciler.reconcile(key))());
		q.git.start((key) => timed("GitSource", () => this.gitReconciler.reconcile(key))());
		q.status.start((key) => timed("Status", () => this.statusReconciler.reconcile(key))());
		q.bundle.start(() =>
			timed("Bundle", async () => {
				if (!this.ring || !this.maskingKey) throw new Error("keys not loaded yet");
				const t0 = performance.now();
				try {
					return await this.bundleWriter.sync();
				} finally {
					this.lastBundleMs = performance.now() - t0;
				}
			})(),
		);
		this.enqueueAll();
	}

	private stopLeading(): void {
		this.metrics.leader.set(0);
		const q = this.queues;
		this.queues = undefined;
		// A replica that no longer holds the Lease must stop writing at once (another may lead already).
		this.term?.abort(new Error("stopped leading"));
		if (!q) return;
		clearInterval(q.resync);
		for (const w of [q.status, q.grants, q.git, q.bundle, q.keys]) w.stop();
		this.log.warn({ identity: this.opts.identity }, "stopped leading");
	}

	private async refreshKubeIssuer(): Promise<void> {
		if (this.opts.kubeIssuer) return; // configured explicitly (jwksUri), nothing to discover
		try {
			const next = await discoverKubeIssuer(this.kube, this.opts.kubeAudiences);
			if (JSON.stringify(next) !== JSON.stringify(this.kubeIssuer)) {
				this.kubeIssuer = next;
				this.kickBundle();
				this.log.info({ issuer: next.issuer, keys: next.jwks?.keys.length }, "service-account issuer discovered");
			}
		} catch (e) {
			this.log.warn({ err: (e as Error).message }, "service-account issuer discovery failed; ServiceAccount subjects cannot connect until it succeeds or --kube-issuer is set");
		}
	}

	/**
	 * Schedules a bundle compile. During a burst (a sync applying many grants) compiles are spaced by at
	 * least their own duration, so the compiler never takes more than about half the CPU.
	 */
	private kickBundle(): void {
		this.queues?.bundle.addAfter(BUNDLE_KEY, Math.max(BUNDLE_DEBOUNCE_MS, this.lastBundleMs));
	}

	private enqueueAll(): void {
		const q = this.queues;
		if (!q) return;
		void this.refreshKubeIssuer();
		for (const g of this.grants.list()) q.grants.add(`${g.metadata.namespace}/${g.metadata.name}`);
		for (const s of this.gitSources.list()) q.git.add(`${s.metadata.namespace}/${s.metadata.name}`);
		for (const c of this.connections.list()) q.status.add(`Connection/${c.metadata.namespace}/${c.metadata.name}`);
		for (const p of this.masking.list()) q.status.add(`MaskingPolicy/${p.metadata.namespace}/${p.metadata.name}`);
		for (const p of this.guardrails.list()) q.status.add(`GuardrailPolicy/${p.metadata.namespace}/${p.metadata.name}`);
		this.kickBundle();
	}

	/** True when anything but status changed since the last event for `id` (our status writes come back as events). */
	private specChanged(id: string, obj: { metadata: { generation?: number; labels?: unknown; annotations?: unknown; deletionTimestamp?: string; uid?: string; finalizers?: unknown } } | undefined): boolean {
		if (!obj) {
			this.seen.delete(id);
			return true;
		}
		const m = obj.metadata;
		const mark = JSON.stringify([m.generation, m.labels, m.annotations, m.deletionTimestamp, m.uid, m.finalizers]);
		if (this.seen.get(id) === mark) return false;
		this.seen.set(id, mark);
		return true;
	}

	private onConnection(key: string, obj: Connection | undefined): void {
		if (!this.specChanged(`Connection/${key}`, obj)) return;
		const q = this.queues;
		if (!q) return;
		const [ns, name] = [key.slice(0, key.indexOf("/")), key.slice(key.indexOf("/") + 1)];
		// Grants and statuses of every Connection of this name: which one holds the name in the bundle
		// (the oldest) moves with this one's creation or deletion.
		for (const g of this.grants.list()) if (g.spec.connection === name) q.grants.add(`${g.metadata.namespace}/${g.metadata.name}`);
		q.status.add(`Connection/${key}`);
		for (const c of this.connections.list()) if (c.metadata.name === name) q.status.add(`Connection/${c.metadata.namespace}/${name}`);
		for (const p of this.masking.list()) if (p.metadata.namespace === ns) q.status.add(`MaskingPolicy/${ns}/${p.metadata.name}`);
		for (const p of this.guardrails.list()) if (p.metadata.namespace === ns) q.status.add(`GuardrailPolicy/${ns}/${p.metadata.name}`);
		this.kickBundle();
	}

	private onPolicy(kind: "MaskingPolicy" | "GuardrailPolicy", key: string, obj: MaskingPolicy | GuardrailPolicy | undefined): void {
		if (!this.specChanged(`${kind}/${key}`, obj)) return;
		this.queues?.status.add(`${kind}/${key}`);
		this.kickBundle();
	}

	/**
	 * Our own status writes come back as watch events; they change nothing a reconcile or the bundle
	 * depends on, so only spec / metadata changes (and deletions) enqueue. Phase changes refresh the
	 * Connection's status (activeGrants).
	 */
	private onGrant(key: string, obj: AccessGrant | undefined): void {
		const counts: Record<string, number> = { Pending: 0, Active: 0, Expired: 0, Revoked: 0, Invalid: 0 };
		for (const g of this.grants.list()) {
			const p = g.status?.phase;
			if (p) counts[p] = (counts[p] ?? 0) + 1;
		}
		for (const [phase, n] of Object.entries(counts)) this.metrics.grantsByPhase.set({ phase }, n);
		const q = this.queues;
		if (!obj) {
			this.grantSeen.delete(key);
			q?.grants.add(key);
			this.kickBundle();
			return;
		}
		const m = obj.metadata;
		const mark = JSON.stringify([m.generation, m.deletionTimestamp, m.finalizers, m.annotations, m.uid]);
		const prev = this.grantSeen.get(key);
		this.grantSeen.set(key, { mark, phase: obj.status?.phase });
		if (prev?.phase !== obj.status?.phase) q?.status.add(`Connection/${m.namespace}/${obj.spec.connection}`);
		if (prev?.mark === mark) return;
		q?.grants.add(key);
		this.kickBundle();
	}

	/** Only spec changes and sync requests trigger a sync; our own status writes do not (no loop). */
	private onGitSource(key: string, obj: GitSource | undefined): void {
		if (!obj) {
			this.gitSeen.delete(key);
			return;
		}
		const mark = `${obj.metadata.generation ?? 0}|${obj.metadata.annotations?.[SYNC_REQUESTED] ?? ""}`;
		if (this.gitSeen.get(key) === mark) return;
		this.gitSeen.set(key, mark);
		this.queues?.git.add(key);
	}

	private async onWebhook(ns: string, name: string, headers: Record<string, string | string[] | undefined>, body: Buffer): Promise<{ status: number; message: string }> {
		const key = `${ns}/${name}`;
		const gs = this.gitSources.get(key);
		if (!gs) {
			this.metrics.webhooks.inc({ result: "unknown-source" });
			return { status: 404, message: "no such GitSource" };
		}
		let secret = "";
		if (gs.spec.webhookSecretRef) {
			const s = await this.kube.get<Secret>(SECRETS, ns, gs.spec.webhookSecretRef.name);
			secret = secretValue(s, gs.spec.webhookSecretRef.key ?? "secret") ?? "";
		}
		try {
			const v = verifyWebhook(headers, body, secret, gs.spec.branch ?? "main");
			if (!v.triggersSync) {
				this.metrics.webhooks.inc({ result: "ignored" });
				return { status: 202, message: `ignored ${v.event}${v.ref ? ` ${v.ref}` : ""}` };
			}
		} catch (e) {
			const code = e instanceof WebhookError ? e.code : "ERROR";
			this.metrics.webhooks.inc({ result: code.toLowerCase() });
			this.log.warn({ source: key, code }, "webhook refused");
			return { status: e instanceof WebhookError ? e.status : 400, message: e instanceof WebhookError ? e.message : "bad request" };
		}
		this.metrics.webhooks.inc({ result: "accepted" });
		if (this.queues) this.queues.git.add(key);
		else {
			// A standby got the request: leave a mark on the GitSource the leader's informer picks up.
			await this.kube.mergePatch(GITSOURCES, ns, name, { metadata: { annotations: { [SYNC_REQUESTED]: new Date().toISOString() } } });
		}
		return { status: 202, message: "sync triggered" };
	}
}
