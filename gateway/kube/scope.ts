/**
 * Grant scope for Kubernetes requests: the grant narrows what the agent's own RBAC (applied through
 * impersonation) would allow; it never widens it. Deny by default.
 *
 * Matching rules (documented in gateway/kube/README.md):
 * - verbs: exact Kubernetes verbs or `*`.
 * - resources: `*`; `pods` (no subresource); `pods/log`; `pods/*` (any subresource of pods);
 *   `deployments.apps` restricts the API group; a bare name matches that resource in any group.
 * - namespaces: names, globs (`team-*`) or `*`. Cluster-scoped requests and all-namespace lists need
 *   `*`; the Namespace object `namespaces/NAME` counts as living in NAME.
 * - non-resource requests (discovery, /version, /openapi): GET/HEAD only; RBAC decides further.
 */
import type { BundleGrant, GuardrailRule } from "../config/bundle.ts";
import type { GuardrailVerdict } from "../policy/types.ts";
import type { KubeRequest } from "./request.ts";

export function globMatch(pattern: string, value: string): boolean {
	if (pattern === "*") return true;
	if (!pattern.includes("*")) return pattern === value;
	const re = new RegExp(`^${pattern.split("*").map((s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")}$`);
	return re.test(value);
}

/** Does a resource pattern (`pods`, `pods/log`, `pods/*`, `deployments.apps`, `*`) cover the request? */
export function resourceMatches(pattern: string, req: Pick<KubeRequest, "resource" | "apiGroup" | "subresource">): boolean {
	if (pattern === "*") return true;
	const slash = pattern.indexOf("/");
	const base = slash < 0 ? pattern : pattern.slice(0, slash);
	const sub = slash < 0 ? undefined : pattern.slice(slash + 1);
	const dot = base.indexOf(".");
	const res = dot < 0 ? base : base.slice(0, dot);
	const group = dot < 0 ? undefined : base.slice(dot + 1);
	if (!globMatch(res, req.resource)) return false;
	if (group !== undefined && !globMatch(group === "core" ? "" : group, req.apiGroup)) return false;
	if (sub === undefined) return req.subresource === undefined;
	return req.subresource !== undefined && globMatch(sub, req.subresource);
}

export function namespaceMatches(patterns: readonly string[], ns: string | undefined): boolean {
	if (ns === undefined) return patterns.includes("*");
	return patterns.some((p) => globMatch(p, ns));
}

/** Undefined when the grant allows the request; otherwise the reason (for the 403 Status message). */
export function checkGrantScope(req: KubeRequest, grant: BundleGrant): string | undefined {
	const k = grant.kubernetes;
	if (!k) return `grant ${grant.key} carries no Kubernetes access`;
	if (!req.resourceRequest) {
		if (req.verb === "get" || req.verb === "head") return undefined;
		return `grant ${grant.key} allows only reads of non-resource URLs`;
	}
	if (!k.verbs.some((v) => v === "*" || v === req.verb)) {
		return `grant ${grant.key} does not allow verb "${req.verb}" (allowed: ${k.verbs.join(", ")})`;
	}
	if (!k.resources.some((r) => resourceMatches(r, req))) {
		const res = req.subresource ? `${req.resource}/${req.subresource}` : req.resource;
		return `grant ${grant.key} does not allow resource "${res}${req.apiGroup ? ` (group ${req.apiGroup})` : ""}" (allowed: ${k.resources.join(", ")})`;
	}
	if (!namespaceMatches(k.namespaces, req.namespace)) {
		return req.namespace === undefined
			? `grant ${grant.key} does not allow cluster-wide or all-namespace requests (namespaces: ${k.namespaces.join(", ")})`
			: `grant ${grant.key} does not allow namespace "${req.namespace}" (allowed: ${k.namespaces.join(", ")})`;
	}
	return undefined;
}

/**
 * Evaluate GuardrailPolicy rules with a `kubernetes` matcher. The strictest matching rule wins
 * (block > requireApproval > audit). This is the local evaluator used until gateway/policy/kube.ts
 * lands; `KubeListenerOptions.evaluate` lets main.ts swap in the policy engine's.
 */
export type KubeGuardrailEvaluator = (req: KubeRequest, rules: readonly GuardrailRule[]) => GuardrailVerdict;

const RANK = { block: 3, requireApproval: 2, audit: 1 } as const;

export const evaluateKubeGuardrails: KubeGuardrailEvaluator = (req, rules) => {
	let best: GuardrailRule | undefined;
	for (const rule of rules) {
		const m = rule.kubernetes;
		if (!m) continue;
		if (m.verbs?.length && !m.verbs.some((v) => v === "*" || v === req.verb)) continue;
		if (m.resources?.length && !m.resources.some((r) => resourceMatches(r, req))) continue;
		if (m.namespaces?.length && !namespaceMatches(m.namespaces, req.namespace)) continue;
		if (!m.verbs?.length && !m.resources?.length && !m.namespaces?.length) continue;
		if (!best || RANK[rule.action] > RANK[best.action]) best = rule;
	}
	if (!best) return { action: "allow" };
	const verdict: GuardrailVerdict = { action: best.action, rule: best.name };
	if (best.message) verdict.message = best.message;
	if (best.action === "requireApproval") verdict.approval = best.approval ?? {};
	return verdict;
};
