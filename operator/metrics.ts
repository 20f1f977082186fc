/** Prometheus metrics of the operator (one registry per Operator instance, so tests can run several). */

import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

export class OperatorMetrics {
	readonly registry = new Registry();
	readonly syncDuration = new Histogram({
		name: "drawbridge_operator_git_sync_duration_seconds",
		help: "Duration of one GitSource sync (fetch, parse, apply, prune).",
		labelNames: ["source", "result"] as const,
		buckets: [0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60],
		registers: [this.registry],
	});
	readonly invalidFiles = new Gauge({
		name: "drawbridge_operator_git_invalid_files",
		help: "Files skipped in the last sync of a GitSource because they are broken.",
		labelNames: ["source"] as const,
		registers: [this.registry],
	});
	readonly appliedResources = new Gauge({
		name: "drawbridge_operator_git_resources",
		help: "Resources applied from the last synced commit of a GitSource.",
		labelNames: ["source"] as const,
		registers: [this.registry],
	});
	readonly grantsByPhase = new Gauge({
		name: "drawbridge_operator_grants",
		help: "AccessGrants by phase.",
		labelNames: ["phase"] as const,
		registers: [this.registry],
	});
	readonly reconcileErrors = new Counter({
		name: "drawbridge_operator_reconcile_errors_total",
		help: "Reconcile attempts that failed (retried with backoff).",
		labelNames: ["kind"] as const,
		registers: [this.registry],
	});
	readonly reconcileDuration = new Histogram({
		name: "drawbridge_operator_reconcile_duration_seconds",
		help: "Duration of one reconcile.",
		labelNames: ["kind"] as const,
		buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
		registers: [this.registry],
	});
	readonly webhooks = new Counter({
		name: "drawbridge_operator_webhooks_total",
		help: "Push webhooks received, by result.",
		labelNames: ["result"] as const,
		registers: [this.registry],
	});
	readonly bundleVersion = new Gauge({
		name: "drawbridge_operator_bundle_version",
		help: "Version of the last gateway config bundle written.",
		registers: [this.registry],
	});
	readonly credentialsIssued = new Counter({
		name: "drawbridge_operator_credentials_issued_total",
		help: "Credentials minted, by type (token, postgresRole).",
		labelNames: ["type"] as const,
		registers: [this.registry],
	});
	readonly credentialsRevoked = new Counter({
		name: "drawbridge_operator_credentials_revoked_total",
		help: "Credentials revoked, by type (token, postgresRole).",
		labelNames: ["type"] as const,
		registers: [this.registry],
	});
	readonly leader = new Gauge({
		name: "drawbridge_operator_leader",
		help: "1 while this replica holds the leader Lease.",
		registers: [this.registry],
	});

	constructor(defaults = false) {
		if (defaults) collectDefaultMetrics({ register: this.registry });
	}
}
