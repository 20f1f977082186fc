/**
 * Recorder metrics (prom-client). Pass a registry to share the admin server's, or read
 * `recorder.metrics.registry`. Names are stable: dashboards and alerts depend on them
 * (docs/recording-format.md "Operations").
 */
import { Counter, Gauge, Registry } from "prom-client";

export interface RecorderMetricsSource {
	backlogBytes(): number;
	oldestUnsentEventAgeSeconds(): number;
	openSessions(): number;
	sessionsAwaitingUpload(): number;
	spoolFull(): boolean;
}

export class RecorderMetrics {
	readonly registry: Registry;
	readonly uploadErrors: Counter<"kind">;
	readonly uploadedBytes: Counter;
	readonly uploadedObjects: Counter;
	readonly sessionsStarted: Counter<"protocol">;
	readonly sessionsRefused: Counter;
	readonly sessionsOverBudget: Counter;
	readonly sessionsRecovered: Counter;
	readonly events: Counter;
	readonly eventsDropped: Counter;

	constructor(source: RecorderMetricsSource, registry?: Registry) {
		this.registry = registry ?? new Registry();
		const registers = [this.registry];
		new Gauge({
			name: "drawbridge_recording_backlog_bytes",
			help: "Bytes in the local recording spool not yet uploaded to the recording store",
			registers,
			collect() {
				this.set(source.backlogBytes());
			},
		});
		new Gauge({
			name: "drawbridge_recording_oldest_unsent_event_age_seconds",
			help: "Age of the oldest recorded event not yet uploaded (0 when the backlog is empty)",
			registers,
			collect() {
				this.set(source.oldestUnsentEventAgeSeconds());
			},
		});
		new Gauge({
			name: "drawbridge_recording_sessions_open",
			help: "Sessions currently being recorded",
			registers,
			collect() {
				this.set(source.openSessions());
			},
		});
		new Gauge({
			name: "drawbridge_recording_sessions_awaiting_upload",
			help: "Sessions (open or closed) with objects still in the spool",
			registers,
			collect() {
				this.set(source.sessionsAwaitingUpload());
			},
		});
		new Gauge({
			name: "drawbridge_recording_spool_full",
			help: "1 while the spool is at or over its byte limit (failClosed refuses new sessions)",
			registers,
			collect() {
				this.set(source.spoolFull() ? 1 : 0);
			},
		});
		this.uploadErrors = new Counter({
			name: "drawbridge_recording_upload_errors_total",
			help: "Failed uploads to the recording store (each is retried with backoff)",
			labelNames: ["kind"],
			registers,
		});
		this.uploadedBytes = new Counter({ name: "drawbridge_recording_uploaded_bytes_total", help: "Bytes uploaded to the recording store", registers });
		this.uploadedObjects = new Counter({ name: "drawbridge_recording_uploaded_objects_total", help: "Objects uploaded to the recording store", registers });
		this.sessionsStarted = new Counter({
			name: "drawbridge_recording_sessions_total",
			help: "Recorded sessions started",
			labelNames: ["protocol"],
			registers,
		});
		this.sessionsRefused = new Counter({
			name: "drawbridge_recording_sessions_refused_total",
			help: "Sessions refused because the spool was full (failClosed)",
			registers,
		});
		this.sessionsOverBudget = new Counter({
			name: "drawbridge_recording_sessions_over_budget_total",
			help: "Sessions admitted while the spool was full (failOpen): ALERT on any increase",
			registers,
		});
		this.sessionsRecovered = new Counter({
			name: "drawbridge_recording_sessions_recovered_total",
			help: "Unclosed sessions found in the spool at start and closed by recovery",
			registers,
		});
		this.events = new Counter({ name: "drawbridge_recording_events_total", help: "Events recorded", registers });
		this.eventsDropped = new Counter({
			name: "drawbridge_recording_events_dropped_total",
			help: "Events that could not be written to the spool (disk error): ALERT on any increase",
			registers,
		});
	}
}
