/** Kubernetes Events (core/v1) about our resources, best effort: a failed Event never fails a reconcile. */

import { EVENTS, type KubeClient, type KubeObject } from "./client.ts";

export type EventType = "Normal" | "Warning";

export class EventRecorder {
	constructor(
		private readonly kube: KubeClient,
		private readonly instance: string,
		private readonly onError: (e: unknown) => void = () => {},
	) {}

	async record(obj: KubeObject, type: EventType, reason: string, message: string): Promise<void> {
		const now = new Date().toISOString();
		const namespace = obj.metadata.namespace ?? "default";
		try {
			await this.kube.create(EVENTS, {
				apiVersion: "v1",
				kind: "Event",
				metadata: { generateName: `${obj.metadata.name}.`, namespace } as unknown as KubeObject["metadata"],
				involvedObject: {
					apiVersion: obj.apiVersion,
					kind: obj.kind,
					name: obj.metadata.name,
					namespace,
					...(obj.metadata.uid ? { uid: obj.metadata.uid } : {}),
				},
				reason,
				message: message.slice(0, 1024),
				type,
				source: { component: "drawbridge-operator" },
				reportingComponent: "drawbridge-operator",
				reportingInstance: this.instance,
				firstTimestamp: now,
				lastTimestamp: now,
				count: 1,
			});
		} catch (e) {
			this.onError(e);
		}
	}
}
