/** Status of Connections and policies (pure): what `kubectl get connections / maskingpolicies` shows. */

import type { AccessGrant, Condition, Connection, ConnectionStatus, LabelSelector, PolicyStatus } from "../../../crds/index.ts";
import { setCondition } from "./accessgrant.ts";

export function selects(selector: LabelSelector | undefined, labels: Record<string, string> | undefined): boolean {
	return Object.entries(selector?.matchLabels ?? {}).every(([k, v]) => labels?.[k] === v);
}

export interface ConnectionSecretsCheck {
	/** undefined when the Connection names no credential Secret. */
	credential?: "ok" | "missing" | "incomplete";
	ca?: "ok" | "missing";
}

export function connectionStatus(
	c: Connection,
	grants: readonly AccessGrant[],
	check: ConnectionSecretsCheck,
	prev: readonly Condition[] | undefined,
	now: Date,
	/** The Connection of another namespace that holds this name in the bundle (`withoutDuplicateNames`), if any. */
	nameHeldBy?: string,
): ConnectionStatus {
	const ns = c.metadata.namespace;
	const activeGrants = grants.filter((g) => g.metadata.namespace === ns && g.spec.connection === c.metadata.name && g.status?.phase === "Active").length;
	const g = c.metadata.generation !== undefined ? { observedGeneration: c.metadata.generation } : {};
	let ready: Omit<Condition, "lastTransitionTime">;
	if (nameHeldBy !== undefined)
		ready = {
			type: "Ready",
			status: "False",
			reason: "NameInUse",
			message: `the name ${c.metadata.name} is used by the older Connection ${nameHeldBy}; agents name Connections without namespace, so this one and its grants are left out of the gateway bundle: rename it`,
			...g,
		};
	else if (check.credential === "missing") ready = { type: "Ready", status: "False", reason: "SecretNotFound", message: `credential Secret ${c.spec.credentialSecretRef?.name} not found`, ...g };
	else if (check.credential === "incomplete")
		ready = { type: "Ready", status: "False", reason: "CredentialIncomplete", message: `credential Secret ${c.spec.credentialSecretRef?.name} lacks the keys a ${c.spec.type} Connection needs`, ...g };
	else if (check.ca === "missing") ready = { type: "Ready", status: "False", reason: "CaNotFound", message: `CA Secret ${c.spec.tls?.caSecretRef?.name} not found or lacks its key`, ...g };
	else ready = { type: "Ready", status: "True", reason: "Ready", message: "secrets found", ...g };
	return { conditions: setCondition(prev, ready, now), activeGrants, ...g };
}

export function policyStatus(
	p: { metadata: { namespace?: string; generation?: number }; spec: { selector: LabelSelector } },
	connections: readonly Connection[],
	prev: readonly Condition[] | undefined,
	now: Date,
): PolicyStatus {
	const selected = connections.filter((c) => c.metadata.namespace === p.metadata.namespace && selects(p.spec.selector, c.metadata.labels)).length;
	const g = p.metadata.generation !== undefined ? { observedGeneration: p.metadata.generation } : {};
	const cond: Omit<Condition, "lastTransitionTime"> =
		selected > 0
			? { type: "Ready", status: "True", reason: "Selected", message: `applies to ${selected} Connection(s)`, ...g }
			: { type: "Ready", status: "False", reason: "NoConnections", message: "the selector matches no Connection in this namespace", ...g };
	return { conditions: setCondition(prev, cond, now), selectedConnections: selected, ...g };
}
