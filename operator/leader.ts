/**
 * Leader election with a coordination.k8s.io/v1 Lease (the client-go algorithm, simplified):
 * - a candidate takes the Lease when it is absent, released (no holder) or expired
 *   (renewTime + leaseDurationSeconds in the past); every write carries the resourceVersion read, so
 *   two candidates racing for the same Lease cannot both win (the loser gets 409);
 * - the leader renews every `retryPeriodMs`; if it cannot renew within `renewDeadlineMs` it stops
 *   leading (`onStoppedLeading`) before any other replica can take over;
 * - on graceful shutdown the leader releases the Lease so a standby takes over at once. `stop()` first
 *   ends the campaign: an acquire/renew round in flight is aborted and awaited, and no round writes the
 *   Lease once stopping has begun. Before, a round in flight could renew the Lease between the release's
 *   read and write (the release then failed with 409) or read the just-released Lease and take it back;
 *   either way the Lease stayed with a process on its way out until it expired.
 */

import { KubeError, type KubeClient, type KubeObject, LEASES } from "./kube/client.ts";

export interface LeaderElectionOptions {
	namespace: string;
	name: string;
	identity: string;
	leaseDurationMs: number;
	renewDeadlineMs: number;
	retryPeriodMs: number;
	onStartedLeading: () => void;
	onStoppedLeading: () => void;
	onError?: (e: unknown) => void;
}

interface Lease extends KubeObject {
	spec: {
		holderIdentity?: string | null;
		leaseDurationSeconds?: number;
		acquireTime?: string | null;
		renewTime?: string | null;
		leaseTransitions?: number;
	};
}

/** MicroTime as the API wants it: RFC 3339 with microseconds. */
function microTime(d: Date): string {
	return d.toISOString().replace(/\.(\d{3})Z$/, ".$1000Z");
}

export class LeaderElector {
	private leading = false;
	private stopped = false;
	private timer: NodeJS.Timeout | undefined;
	private lastRenew = 0;
	/** The acquire/renew round in flight, if any. */
	private round: Promise<void> | undefined;
	/** Aborts the requests of the round in flight when stopping. */
	private readonly campaign = new AbortController();
	/** Requests of acquire/renew rounds. */
	private readonly rounds: KubeClient;

	constructor(
		private readonly kube: KubeClient,
		private readonly opts: LeaderElectionOptions,
	) {
		this.rounds = kube.withSignal(() => this.campaign.signal);
	}

	isLeader(): boolean {
		return this.leading;
	}

	start(): void {
		this.tick();
	}

	/**
	 * Stops campaigning and releases the Lease if this replica holds it (a round in flight may just have
	 * taken it). Resolves `true` when the Lease is released or was not ours. Each release request is
	 * bounded by `retryPeriodMs` and a conflict is retried: a failed release costs a standby the rest of
	 * the lease duration.
	 */
	async stop(): Promise<boolean> {
		this.stopped = true;
		if (this.timer) clearTimeout(this.timer);
		this.campaign.abort(new Error("leader election stopped"));
		await this.round;
		const wasLeading = this.leading;
		this.leading = false;
		let released = false;
		for (let attempt = 0; attempt < 3 && !released; attempt++) {
			const kube = this.kube.withSignal(() => AbortSignal.timeout(Math.max(1000, this.opts.retryPeriodMs)));
			try {
				const lease = await kube.get<Lease>(LEASES, this.opts.namespace, this.opts.name);
				if (!lease || lease.spec.holderIdentity !== this.opts.identity) {
					released = true;
					break;
				}
				lease.spec.holderIdentity = null;
				lease.spec.renewTime = null;
				lease.spec.acquireTime = null;
				await kube.replace(LEASES, lease);
				released = true;
			} catch (e) {
				this.opts.onError?.(e);
			}
		}
		if (wasLeading) this.opts.onStoppedLeading();
		return released;
	}

	private schedule(): void {
		if (this.stopped) return;
		this.timer = setTimeout(() => this.tick(), this.opts.retryPeriodMs);
		this.timer.unref();
	}

	private tick(): void {
		if (this.stopped || this.round) return;
		this.round = this.runRound().finally(() => {
			this.round = undefined;
		});
	}

	private async runRound(): Promise<void> {
		if (this.stopped) return;
		try {
			const ok = await this.tryAcquireOrRenew();
			if (ok) {
				this.lastRenew = Date.now();
				if (!this.leading && !this.stopped) {
					this.leading = true;
					this.opts.onStartedLeading();
				}
			} else if (this.leading && !this.stopped) {
				this.lose();
			}
		} catch (e) {
			if (this.stopped) return;
			this.opts.onError?.(e);
			if (this.leading && Date.now() - this.lastRenew > this.opts.renewDeadlineMs) this.lose();
		}
		this.schedule();
	}

	private lose(): void {
		this.leading = false;
		this.opts.onStoppedLeading();
	}

	private async tryAcquireOrRenew(): Promise<boolean> {
		const now = new Date();
		const durationSec = Math.max(1, Math.ceil(this.opts.leaseDurationMs / 1000));
		const lease = await this.rounds.get<Lease>(LEASES, this.opts.namespace, this.opts.name);
		// Stopping began while the read was in flight: write nothing (release is stop()'s).
		if (this.stopped) return false;
		if (!lease) {
			try {
				await this.rounds.create(LEASES, {
					apiVersion: "coordination.k8s.io/v1",
					kind: "Lease",
					metadata: { name: this.opts.name, namespace: this.opts.namespace },
					spec: { holderIdentity: this.opts.identity, leaseDurationSeconds: durationSec, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: 0 },
				});
				return true;
			} catch (e) {
				if (e instanceof KubeError && e.code === "CONFLICT") return false;
				throw e;
			}
		}
		const holder = lease.spec.holderIdentity ?? "";
		const renewed = lease.spec.renewTime ? Date.parse(lease.spec.renewTime) : 0;
		const expired = renewed + (lease.spec.leaseDurationSeconds ?? durationSec) * 1000 < now.getTime();
		if (holder !== this.opts.identity && holder !== "" && !expired) return false;
		const taking = holder !== this.opts.identity;
		lease.spec = {
			...lease.spec,
			holderIdentity: this.opts.identity,
			leaseDurationSeconds: durationSec,
			renewTime: microTime(now),
			...(taking ? { acquireTime: microTime(now), leaseTransitions: (lease.spec.leaseTransitions ?? 0) + 1 } : {}),
		};
		try {
			await this.rounds.replace(LEASES, lease);
			return true;
		} catch (e) {
			if (e instanceof KubeError && e.code === "CONFLICT") return false;
			throw e;
		}
	}
}
