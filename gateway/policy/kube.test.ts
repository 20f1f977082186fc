import assert from "node:assert/strict";
import { test } from "node:test";
import type { BundleGrant, GuardrailRule } from "../config/bundle.ts";
import { compileResource, evaluateKubeRequest } from "./kube.ts";
import type { KubeRequest } from "./types.ts";

const GRANT: NonNullable<BundleGrant["kubernetes"]> = {
	namespaces: ["payments", "team-*"],
	verbs: ["get", "list", "watch", "delete"],
	resources: ["pods", "pods/log", "deployments.apps", "namespaces"],
};
const RULES: GuardrailRule[] = [
	{ name: "no-namespace-delete", action: "block", kubernetes: { verbs: ["delete", "deletecollection"], resources: ["namespaces"] } },
	{ name: "approve-pod-delete-payments", action: "requireApproval", kubernetes: { verbs: ["delete"], resources: ["pods"], namespaces: ["payments"] } },
	{ name: "audit-logs", action: "audit", kubernetes: { resources: ["pods/log"] } },
	{ name: "sql-only", action: "block", sql: { statementKinds: ["DROP"] } },
];

const req = (r: Partial<KubeRequest>): KubeRequest => ({ verb: "get", resource: "pods", namespace: "payments", ...r });

test("resource patterns: subresources need their own entry, groups are optional", () => {
	assert.equal(compileResource("pods")("pods", undefined, ""), true);
	assert.equal(compileResource("pods")("pods", "exec", ""), false, "pods does not grant pods/exec");
	assert.equal(compileResource("pods/log")("pods", "log", ""), true);
	assert.equal(compileResource("pods/*")("pods", "exec", ""), true);
	assert.equal(compileResource("pods/*")("pods", undefined, ""), true);
	assert.equal(compileResource("deployments.apps")("deployments", undefined, "apps"), true);
	assert.equal(compileResource("deployments.apps")("deployments", undefined, "extensions"), false);
	assert.equal(compileResource("deployments")("deployments", undefined, "apps"), true);
	assert.equal(compileResource("*")("secrets", "x", "y"), true);
});

test("grant scope: allowed requests (control)", () => {
	for (const r of [
		req({}),
		req({ verb: "list", namespace: "team-a" }),
		req({ resource: "pods", subresource: "log", name: "api-1" }),
		req({ verb: "watch", resource: "deployments", apiGroup: "apps" }),
		req({ resource: "namespaces", namespace: undefined, name: "payments" }),
		{ verb: "get", resource: "", path: "/apis" },
	]) {
		const v = evaluateKubeRequest(r, GRANT, [], "ops/lee");
		assert.notEqual(v.action, "block", JSON.stringify(r) + JSON.stringify(v));
	}
});

test("grant scope: refusals are 403 naming the grant", () => {
	const cases: [Partial<KubeRequest>, RegExp][] = [
		[{ namespace: "kube-system" }, /namespace kube-system/],
		[{ verb: "create" }, /verb create/],
		[{ resource: "secrets" }, /resource secrets/],
		[{ subresource: "exec", verb: "get" }, /pods\/exec/],
		[{ resource: "nodes", namespace: undefined }, /cluster-scoped/],
		[{ resource: "namespaces", namespace: undefined, name: "other" }, /cluster-scoped/],
		[{ resource: "namespaces", namespace: undefined, verb: "list" }, /cluster-scoped/],
		[{ resource: "", verb: "post" }, /discovery/],
	];
	for (const [r, re] of cases) {
		const v = evaluateKubeRequest(req(r), GRANT, RULES, "ops/lee");
		assert.equal(v.action, "block", JSON.stringify(r));
		assert.equal(v.status, 403);
		assert.equal(v.rule, "grant:ops/lee");
		assert.match(v.message!, /grant "ops\/lee"/);
		assert.match(v.message!, re);
	}
	assert.equal(evaluateKubeRequest(req({}), undefined, [], "x/y").action, "block");
});

test("guardrails after scope: block > approval > audit", () => {
	const nsDelete = req({ verb: "delete", resource: "namespaces", namespace: undefined, name: "payments" });
	const scoped = evaluateKubeRequest(nsDelete, GRANT, RULES, "ops/lee");
	assert.deepEqual([scoped.action, scoped.rule], ["block", "grant:ops/lee"], "a namespaced grant cannot delete its namespace");
	const del = evaluateKubeRequest(nsDelete, { namespaces: ["*"], verbs: ["*"], resources: ["*"] }, RULES);
	assert.deepEqual([del.action, del.rule, del.status], ["block", "no-namespace-delete", 403]);
	assert.match(del.message!, /delete namespaces payments/);
	const pod = evaluateKubeRequest(req({ verb: "delete", name: "api-1" }), GRANT, RULES);
	assert.deepEqual([pod.action, pod.rule], ["requireApproval", "approve-pod-delete-payments"]);
	const other = evaluateKubeRequest(req({ verb: "delete", namespace: "team-b" }), GRANT, RULES);
	assert.equal(other.action, "allow");
	const logs = evaluateKubeRequest(req({ subresource: "log" }), GRANT, RULES);
	assert.deepEqual([logs.action, logs.rule], ["audit", "audit-logs"]);
	const wildcard = { namespaces: ["*"], verbs: ["*"], resources: ["*"] };
	assert.equal(evaluateKubeRequest(req({ verb: "create", resource: "nodes", namespace: undefined }), wildcard, RULES).action, "allow");
});
