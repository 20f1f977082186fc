/**
 * Grant scope and guardrails for one Kubernetes request, decided by the shared policy engine
 * (gateway/policy/kube.ts `evaluateKubeRequest`: one policy engine for every protocol). This file only
 * picks which of the identity's active grants covers the request.
 */
import type { BundleGrant, GuardrailRule } from "../config/bundle.ts";
import { evaluateKubeRequest } from "../policy/kube.ts";
import type { KubeVerdict } from "../policy/types.ts";
import type { KubeRequest } from "./request.ts";

export type KubeEvaluator = typeof evaluateKubeRequest;

export interface KubeDecision {
	/** The grant the request runs under (the first active one when none covers it). */
	grant: BundleGrant;
	verdict: KubeVerdict;
	/** True when the refusal comes from grant scope, not from a GuardrailRule. */
	scope: boolean;
}

/**
 * Try each active grant (latest expiry first): the first whose scope covers the request decides,
 * guardrails included. If none covers it, the first grant's scope refusal is returned.
 */
export function decideKubeRequest(
	req: KubeRequest,
	grants: readonly BundleGrant[],
	rules: readonly GuardrailRule[],
	evaluate: KubeEvaluator = evaluateKubeRequest,
): KubeDecision {
	let first: KubeDecision | undefined;
	for (const grant of grants) {
		const verdict = evaluate(req, grant.kubernetes, rules, grant.key);
		const scope = verdict.action === "block" && (verdict.rule ?? "").startsWith("grant:");
		if (!scope) return { grant, verdict, scope: false };
		first ??= { grant, verdict, scope: true };
	}
	if (!first) throw new TypeError("decideKubeRequest needs at least one grant");
	return first;
}
