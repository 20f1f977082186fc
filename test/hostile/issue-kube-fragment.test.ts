/**
 * Regression (found by fuzzing the Kubernetes request parser, counterexample "/.#"): a request
 * target with a fragment was accepted; the gateway classified `new URL(target).pathname`, which drops
 * the fragment and the dot segment before it, while the raw target went to the apiserver, which
 * keeps both. Gateway and apiserver then disagreed on the addressed path. Fragments are now refused
 * like dot segments and percent-encoding.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { unsafePathReason } from "../../gateway/kube/request.ts";

test("issue kube-fragment: request targets with a fragment are refused", () => {
	for (const t of ["/.#", "/api/v1/namespaces/payments/configmaps#x/billing", "/api/v1/namespaces/payments#/configmaps", "/api/v1/pods?watch=1#frag"]) {
		assert.match(unsafePathReason(t) ?? "", /fragment/, t);
	}
	assert.equal(unsafePathReason("/api/v1/namespaces/payments/configmaps?watch=1"), undefined);
});
