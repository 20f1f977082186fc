import assert from "node:assert/strict";
import { test } from "node:test";
import type { BundleGrant, GuardrailRule } from "../../gateway/config/bundle.ts";
import { parseKubeRequest, qualifiedResource } from "../../gateway/kube/request.ts";
import { checkGrantScope, evaluateKubeGuardrails, resourceMatches } from "../../gateway/kube/scope.ts";

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

test("resource patterns", () => {
	const pods = parseKubeRequest("GET", "/api/v1/namespaces/a/pods/p");
	const log = parseKubeRequest("GET", "/api/v1/namespaces/a/pods/p/log");
	const deploy = parseKubeRequest("GET", "/apis/apps/v1/namespaces/a/deployments");
	assert.ok(resourceMatches("pods", pods));
	assert.ok(!resourceMatches("pods", log));
	assert.ok(resourceMatches("pods/log", log));
	assert.ok(resourceMatches("pods/*", log));
	assert.ok(!resourceMatches("pods/*", pods));
	assert.ok(resourceMatches("deployments.apps", deploy));
	assert.ok(resourceMatches("deployments", deploy));
	assert.ok(!resourceMatches("deployments.extensions", deploy));
	assert.ok(resourceMatches("*", log));
});

const grant = {
	key: "ops/payments-ro",
	kubernetes: { namespaces: ["payments"], verbs: ["get", "list", "watch", "delete"], resources: ["pods", "pods/log", "namespaces"] },
} as BundleGrant;

test("grant scope narrows: verbs, resources, namespaces, cluster scope", () => {
	assert.equal(checkGrantScope(parseKubeRequest("GET", "/api/v1/namespaces/payments/pods"), grant), undefined);
	assert.equal(checkGrantScope(parseKubeRequest("GET", "/api/v1/namespaces/payments/pods/x/log"), grant), undefined);
	assert.match(checkGrantScope(parseKubeRequest("GET", "/api/v1/namespaces/billing/pods"), grant)!, /namespace "billing".*ops\/payments-ro|ops\/payments-ro.*namespace "billing"/);
	assert.match(checkGrantScope(parseKubeRequest("POST", "/api/v1/namespaces/payments/pods"), grant)!, /verb "create"/);
	assert.match(checkGrantScope(parseKubeRequest("GET", "/api/v1/namespaces/payments/secrets"), grant)!, /resource "secrets"/);
	assert.match(checkGrantScope(parseKubeRequest("GET", "/api/v1/pods"), grant)!, /all-namespace/);
	assert.match(checkGrantScope(parseKubeRequest("POST", "/api/v1/namespaces/payments/pods/x/exec"), grant)!, /verb "create"/);
	assert.equal(checkGrantScope(parseKubeRequest("GET", "/version"), grant), undefined);
	assert.match(checkGrantScope(parseKubeRequest("POST", "/version"), grant)!, /non-resource/);
	assert.match(checkGrantScope(parseKubeRequest("GET", "/api/v1"), { key: "x" } as BundleGrant)!, /no Kubernetes access/);
});

test("local guardrail evaluation: strictest rule wins", () => {
	const rules: GuardrailRule[] = [
		{ name: "audit-all-deletes", action: "audit", kubernetes: { verbs: ["delete"] } },
		{ name: "no-namespace-delete", action: "block", kubernetes: { verbs: ["delete", "deletecollection"], resources: ["namespaces"] } },
		{ name: "approve-pod-delete", action: "requireApproval", kubernetes: { verbs: ["delete"], resources: ["pods"], namespaces: ["payments"] } },
		{ name: "sql-only", action: "block", sql: { statementKinds: ["DROP"] } },
	];
	assert.deepEqual(evaluateKubeGuardrails(parseKubeRequest("DELETE", "/api/v1/namespaces/payments"), rules), {
		action: "block",
		rule: "no-namespace-delete",
	});
	const v = evaluateKubeGuardrails(parseKubeRequest("DELETE", "/api/v1/namespaces/payments/pods/p"), rules);
	assert.equal(v.action, "requireApproval");
	assert.equal(v.rule, "approve-pod-delete");
	assert.equal(evaluateKubeGuardrails(parseKubeRequest("DELETE", "/api/v1/namespaces/other/pods/p"), rules).action, "audit");
	assert.equal(evaluateKubeGuardrails(parseKubeRequest("GET", "/api/v1/namespaces/payments/pods"), rules).action, "allow");
});
