/**
 * Data-path metrics, observed from the same recording events every protocol emits (one event model,
 * one place to count): sessions by protocol, connection and end reason; statements, commands and
 * Kubernetes requests by decision; approvals by phase. The recorder itself is unchanged: this wraps
 * it and forwards every call.
 */
import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import type { Recorder, RecordingEvent, SessionEnd, SessionMeta, SessionRecorder } from "../recording/events.ts";

export class DataPathMetrics {
	readonly sessions: Counter<"protocol" | "connection">;
	readonly sessionsActive: Gauge<"protocol">;
	readonly sessionsEnded: Counter<"protocol" | "reason">;
	readonly sessionsRefused: Counter<"protocol">;
	readonly connectionsRefused: Counter<"protocol" | "reason">;
	readonly limitRefusals: Counter<"protocol" | "reason">;
	readonly decisions: Counter<"protocol" | "kind" | "decision">;
	readonly approvals: Counter<"phase">;
	readonly statementDuration: Histogram<"protocol">;

	constructor(registry: Registry) {
		const registers = [registry];
		this.sessions = new Counter({ name: "drawbridge_gateway_sessions_total", help: "Sessions opened, by protocol and connection.", labelNames: ["protocol", "connection"], registers });
		this.sessionsActive = new Gauge({ name: "drawbridge_gateway_sessions_active", help: "Live sessions by protocol.", labelNames: ["protocol"], registers });
		this.sessionsEnded = new Counter({ name: "drawbridge_gateway_sessions_ended_total", help: "Sessions ended, by protocol and reason (grant-expired, grant-revoked, client-closed...).", labelNames: ["protocol", "reason"], registers });
		this.sessionsRefused = new Counter({ name: "drawbridge_gateway_sessions_refused_total", help: "Sessions refused because they could not be recorded (spool full, fail closed).", labelNames: ["protocol"], registers });
		this.connectionsRefused = new Counter({
			name: "drawbridge_gateway_connections_refused_total",
			help: "Connections refused before authentication, by protocol and reason (max-connections, shutting-down, max-auth-tries).",
			labelNames: ["protocol", "reason"],
			registers,
		});
		this.limitRefusals = new Counter({
			name: "drawbridge_gateway_limit_refusals_total",
			help: "Channels and commands of authenticated connections refused by a per-connection limit, by protocol and reason (max-sessions, max-pending-approvals).",
			labelNames: ["protocol", "reason"],
			registers,
		});
		this.decisions = new Counter({
			name: "drawbridge_gateway_decisions_total",
			help: "Policy decisions on statements, commands and Kubernetes requests (allow, block, approved, denied, expired, audit).",
			labelNames: ["protocol", "kind", "decision"],
			registers,
		});
		this.approvals = new Counter({ name: "drawbridge_gateway_approval_phases_total", help: "Approval requests seen by the data paths, by phase.", labelNames: ["phase"], registers });
		this.statementDuration = new Histogram({
			name: "drawbridge_gateway_statement_duration_seconds",
			help: "Duration of executed statements and Kubernetes requests as seen through the gateway.",
			labelNames: ["protocol"],
			buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30],
			registers,
		});
	}

	/** A Recorder that counts what passes through and forwards everything to `inner`. */
	wrap(inner: Recorder): Recorder {
		return {
			openSession: async (meta: SessionMeta): Promise<SessionRecorder> => {
				let session: SessionRecorder;
				try {
					session = await inner.openSession(meta);
				} catch (err) {
					this.sessionsRefused.inc({ protocol: meta.protocol });
					throw err;
				}
				this.sessions.inc({ protocol: meta.protocol, connection: meta.connection });
				this.sessionsActive.inc({ protocol: meta.protocol });
				let closed = false;
				return {
					sessionId: session.sessionId,
					emit: (event: RecordingEvent) => {
						this.#observe(meta.protocol, event);
						session.emit(event);
					},
					close: async (end: SessionEnd) => {
						if (!closed) {
							closed = true;
							this.sessionsActive.dec({ protocol: meta.protocol });
							this.sessionsEnded.inc({ protocol: meta.protocol, reason: end.reason });
						}
						return session.close(end);
					},
				};
			},
		};
	}

	#observe(protocol: string, event: RecordingEvent): void {
		switch (event.type) {
			case "statement":
				this.decisions.inc({ protocol, kind: "statement", decision: event.decision });
				if (event.durationMs !== undefined) this.statementDuration.observe({ protocol }, event.durationMs / 1000);
				break;
			case "exec":
				this.decisions.inc({ protocol, kind: "exec", decision: event.decision });
				break;
			case "sftp":
				this.decisions.inc({ protocol, kind: "sftp", decision: event.decision });
				break;
			case "kube.request":
				this.decisions.inc({ protocol, kind: "request", decision: event.decision });
				if (event.durationMs !== undefined) this.statementDuration.observe({ protocol }, event.durationMs / 1000);
				break;
			case "approval":
				this.approvals.inc({ phase: event.phase });
				break;
			default:
				break;
		}
	}
}
