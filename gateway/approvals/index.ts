/**
 * Approvals component: what gateway/main.ts wires. See docs/approvals.md.
 *
 *   const approvals = createApprovalService({ store: { kind: "kubernetes", namespace, kubeConfig }, webBaseUrl: publicUrl, webhooks });
 *   adminPlugins.push((app) => registerApprovalRoutes(app, { service: approvals.service, authenticate: verifierAuthenticator(verifier) }));
 *   // data paths: approvals.service.request(...) then waitForDecision(id, signal)
 *   // shutdown: await approvals.close()
 */
import type { KubeConfig } from "@kubernetes/client-node";
import { KubeApprovalStore } from "./kube-store.ts";
import { LocalApprovalStore } from "./local-store.ts";
import type { Registry } from "prom-client";
import { ApprovalMetrics, fanOut } from "./metrics.ts";
import { StoreApprovalService } from "./service.ts";
import { WebhookNotifier, type WebhookTarget } from "./webhook.ts";

export { ApprovalError, type ApprovalErrorCode, APPROVAL_ERROR_CATALOGUE, APPROVAL_ERROR_HTTP_STATUS } from "./errors.ts";
export { registerApprovalRoutes, verifierAuthenticator, bearerToken, APPROVALS_API_PREFIX, type ApprovalRoutesOptions } from "./routes.ts";
export { StoreApprovalService, type ApprovalEvent, type ApprovalEventType, type ApprovalNotifier } from "./service.ts";
export { KubeApprovalStore } from "./kube-store.ts";
export { LocalApprovalStore } from "./local-store.ts";
export {
	WebhookNotifier,
	verifyWebhookSignature,
	signWebhookBody,
	parseWebhookTargets,
	type WebhookTarget,
	type ApprovalWebhookPayload,
} from "./webhook.ts";
export { ApprovalMetrics, fanOut } from "./metrics.ts";
export type * from "./types.ts";

export interface CreateApprovalServiceOptions {
	store: { kind: "kubernetes"; namespace: string; kubeConfig: KubeConfig } | { kind: "local"; dir?: string };
	/** Public admin URL: approve hints and webhook links point at `<webBaseUrl>/approvals/<id>`. */
	webBaseUrl?: string;
	webhooks?: WebhookTarget[];
	/** The admin server's registry: approval transition counters are registered on it. */
	registry?: Registry;
	onError?: (message: string) => void;
}

export interface ApprovalsComponent {
	service: StoreApprovalService;
	notifier: WebhookNotifier | undefined;
	close(): Promise<void>;
}

export function createApprovalService(options: CreateApprovalServiceOptions): ApprovalsComponent {
	const onError = options.onError ?? (() => {});
	const store =
		options.store.kind === "kubernetes"
			? new KubeApprovalStore({ kubeConfig: options.store.kubeConfig, namespace: options.store.namespace, onError })
			: new LocalApprovalStore(options.store.dir ? { directory: options.store.dir } : {});
	const notifier =
		options.webhooks && options.webhooks.length > 0
			? new WebhookNotifier({ targets: options.webhooks, onError, ...(options.webBaseUrl ? { webBaseUrl: options.webBaseUrl } : {}) })
			: undefined;
	const metrics = options.registry ? new ApprovalMetrics(options.registry) : undefined;
	const service = new StoreApprovalService({
		store,
		notifier: fanOut(notifier, metrics),
		onError,
		...(options.webBaseUrl ? { webBaseUrl: options.webBaseUrl } : {}),
	});
	return {
		service,
		notifier,
		async close() {
			await service.close();
			notifier?.close();
		},
	};
}
