/**
 * Leader election with a coordination.k8s.io/v1 Lease (the client-go algorithm, simplified):
 * - a candidate takes the Lease when it is absent, released (no holder) or expired
 *   (renewTime + leaseDurationSeconds in the past); every write carries the resourceVersion read, so
 *   two candidates racing for the same Lease cannot both win (the loser gets 409);
 * - the leader renews every `retryPeriodMs`; if it cannot renew within `renewDeadlineMs` it stops
 *   leading (`onStoppedLeading`) before any other replica can take over;
 * - on graceful shutdown the leader releases the Lease so a standby takes over at once.
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

	constructor(
		private readonly kube: KubeClient,
		private readonly opts: LeaderElectionOptions,
	) {}

	isLeader(): boolean {
		return this.leading;
	}

	start(): void {
		void this.tick();
	}

	/** Stops campaigning; releases the Lease if held. */
	async stop(): Promise<void> {
		this.stopped = true;
		if (this.timer) clearTimeout(this.timer);
		if (this.leading) {
			this.leading = false;
			try {
				const lease = await this.kube.get<Lease>(LEASES, this.opts.namespace, this.opts.name);
				if (lease && lease.spec.holderIdentity === this.opts.identity) {
					lease.spec.holderIdentity = null;
					lease.spec.renewTime = null;
					lease.spec.acquireTime = null;
					await this.kube.replace(LEASES, lease);
				}
			} catch (e) {
				this.opts.onError?.(e);
			}
			this.opts.onStoppedLeading();
		}
	}

	private schedule(): void {
		if (this.stopped) return;
		this.timer = setTimeout(() => void this.tick(), this.opts.retryPeriodMs);
		this.timer.unref();
	}

	private async tick(): Promise<void> {
		if (this.stopped) return;
		try {
			const ok = await this.tryAcquireOrRenew();
			if (ok) {
				this.lastRenew = Date.now();
				if (!this.leading && !this.stopped) {
					this.leading = true;
					this.opts.onStartedLeading();
				}
			} else if (this.leading) {
				this.lose();
			}
		} catch (e) {
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
		const lease = await this.kube.get<Lease>(LEASES, this.opts.namespace, this.opts.name);
		if (!lease) {
			try {
				await this.kube.create(LEASES, {
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
			await this.kube.replace(LEASES, lease);
			return true;
		} catch (e) {
			if (e instanceof KubeError && e.code === "CONFLICT") return false;
			throw e;
		}
	}
}
