import assert from "node:assert/strict";
import { test } from "node:test";
import type { BundleGrant, GuardrailRule } from "../../gateway/config/bundle.ts";
import { parseKubeRequest, qualifiedResource, unsafePathReason } from "../../gateway/kube/request.ts";
import { decideKubeRequest } from "../../gateway/kube/scope.ts";

test("request attributes from method and URL", () => {
	const cases: [string, string, Partial<ReturnType<typeof parseKubeRequest>>][] = [
		["GET", "/api/v1/namespaces/payments/pods", { verb: "list", resource: "pods", namespace: "payments" }],
		["GET", "/api/v1/namespaces/payments/pods?watch=true&resourceVersion=5", { verb: "watch", resource: "pods" }],
		["GET", "/api/v1/namespaces/payments/pods?watch=1&fieldSelector=metadata.name%3Dapi", { verb: "watch", name: "api" }],
		["GET", "/api/v1/watch/namespaces/payments/pods", { verb: "watch", namespace: "payments" }],
		["GET", "/api/v1/namespaces/payments/pods/api-1", { verb: "get", name: "api-1" }],
		["GET", "/api/v1/namespaces/payments/pods/api-1/log?follow=true", { verb: "get", subresource: "log", name: "api-1" }],
		["POST", "/api/v1/namespaces/payments/pods/api-1/exec?command=sh", { verb: "create", subresource: "exec" }],
		["POST", "/apis/apps/v1/namespaces/payments/deployments", { verb: "create", apiGroup: "apps", resource: "deployments" }],
		["PATCH", "/apis/apps/v1/namespaces/payments/deployments/api/scale", { verb: "patch", subresource: "scale" }],
		["PUT", "/api/v1/namespaces/payments/configmaps/c", { verb: "update", name: "c" }],
		["DELETE", "/api/v1/namespaces/payments/pods", { verb: "deletecollection" }],
		["DELETE", "/api/v1/namespaces/payments", { verb: "delete", resource: "namespaces", name: "payments", namespace: "payments" }],
		["PUT", "/api/v1/namespaces/payments/finalize", { resource: "namespaces", subresource: "finalize", name: "payments" }],
		["GET", "/api/v1/namespaces", { verb: "list", resource: "namespaces", namespace: undefined }],
		["GET", "/api/v1/pods", { verb: "list", resource: "pods", namespace: undefined }],
		["GET", "/api/v1/nodes/n1", { verb: "get", resource: "nodes", name: "n1", namespace: undefined }],
		["GET", "/api/v1", { resourceRequest: false, verb: "get" }],
		["GET", "/apis/apps/v1", { resourceRequest: false }],
		["GET", "/version?timeout=32s", { resourceRequest: false }],
		["GET", "/openapi/v3/api/v1", { resourceRequest: false }],
	];
	for (const [method, url, expected] of cases) {
		const got = parseKubeRequest(method, url);
		for (const [k, v] of Object.entries(expected)) {
			assert.deepEqual(got[k as keyof typeof got], v, `${method} ${url}: ${k}`);
		}
	}
	assert.equal(qualifiedResource(parseKubeRequest("GET", "/apis/apps/v1/namespaces/a/deployments/x/scale")), "deployments.apps/scale");
});

const grant = (key: string, namespaces: string[], verbs: string[], resources: string[]) =>
	({ key, kubernetes: { namespaces, verbs, resources } }) as BundleGrant;

test("parsed requests through the policy engine: scope picks a covering grant, guardrails decide", () => {
	const ro = grant("ops/payments-ro", ["payments"], ["get", "list", "watch"], ["pods", "pods/log"]);
	const rw = grant("ops/payments-rw", ["payments"], ["*"], ["*"]);
	const rules: GuardrailRule[] = [
		{ name: "no-namespace-delete", action: "block", kubernetes: { verbs: ["delete"], resources: ["namespaces"] } },
		{ name: "approve-pod-delete", action: "requireApproval", kubernetes: { verbs: ["delete"], resources: ["pods"] } },
	];
	const d1 = decideKubeRequest(parseKubeRequest("GET", "/api/v1/namespaces/payments/pods/x/log?follow=true"), [ro], rules);
	assert.equal(d1.verdict.action, "allow");
	const d2 = decideKubeRequest(parseKubeRequest("GET", "/api/v1/namespaces/billing/pods"), [ro, rw], rules);
	assert.equal(d2.scope, true);
	assert.equal(d2.grant.key, "ops/payments-ro");
	assert.match(d2.verdict.message!, /ops\/payments-ro/);
	const d3 = decideKubeRequest(parseKubeRequest("DELETE", "/api/v1/namespaces/payments/pods/x"), [ro, rw], rules);
	assert.equal(d3.grant.key, "ops/payments-rw");
	assert.equal(d3.verdict.action, "requireApproval");
	// The Namespace object is cluster-scoped: a grant on payments' contents cannot delete payments itself
	// (scope refuses before any guardrail); a cluster-wide grant reaches the guardrail.
	const d4scope = decideKubeRequest(parseKubeRequest("DELETE", "/api/v1/namespaces/payments"), [rw], rules);
	assert.equal(d4scope.verdict.action, "block");
	assert.equal(d4scope.scope, true);
	const all = grant("ops/cluster-rw", ["*"], ["*"], ["*"]);
	const d4 = decideKubeRequest(parseKubeRequest("DELETE", "/api/v1/namespaces/payments"), [all], rules);
	assert.equal(d4.verdict.action, "block");
	assert.equal(d4.verdict.rule, "no-namespace-delete");
	assert.equal(d4.scope, false);
	const d5 = decideKubeRequest(parseKubeRequest("GET", "/apis/apps/v1"), [ro], rules);
	assert.equal(d5.verdict.action, "allow");
});

test("paths a proxy and the apiserver could read differently are refused", () => {
	for (const p of [
		"/api/v1/namespaces/payments/pods/../../billing/pods",
		"/api/v1/namespaces/payments/./pods",
		"/api/v1/namespaces/payments%2F..%2Fbilling/pods",
		"/api/v1/namespaces/pay%6dents/pods",
		"/api//v1/pods",
		"https://evil.example/api/v1/pods",
		"/api/v1/namespaces/a\\b/pods",
	]) {
		assert.ok(unsafePathReason(p), p);
	}
	for (const p of ["/api/v1/namespaces/payments/pods", "/api/v1/namespaces/payments/pods/?watch=1", "/version", "/apis/apps/v1/"]) {
		assert.equal(unsafePathReason(p), undefined, p);
	}
});
