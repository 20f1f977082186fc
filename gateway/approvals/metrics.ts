/**
 * Prometheus metrics for approvals, as an ApprovalNotifier (it hears exactly the transitions this
 * replica wrote, so summing over replicas counts each transition once), plus a fan-out notifier.
 */
import { Counter, type Registry } from "prom-client";
import type { ApprovalEvent, ApprovalNotifier } from "./service.ts";

export class ApprovalMetrics implements ApprovalNotifier {
	readonly #events: Counter<"type" | "protocol">;

	constructor(registry: Registry) {
		this.#events = new Counter({
			name: "drawbridge_gateway_approval_events_total",
			help: "Approval transitions written by this replica, by event type (approval.requested, approval.approved, ...) and protocol.",
			labelNames: ["type", "protocol"],
			registers: [registry],
		});
	}

	notify(event: ApprovalEvent): void {
		this.#events.inc({ type: event.type, protocol: event.record.protocol });
	}
}

/** Tell several notifiers; one failing never stops the others. */
export function fanOut(...notifiers: (ApprovalNotifier | undefined)[]): ApprovalNotifier {
	const list = notifiers.filter((n): n is ApprovalNotifier => n !== undefined);
	return {
		notify(event) {
			for (const n of list) {
				try {
					n.notify(event);
				} catch {
					// a notifier's failure is its own
				}
			}
		},
	};
}
