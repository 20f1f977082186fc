/**
 * Request forms that reached the apiserver with an effect the grant or a guardrail should have
 * stopped, at the classification level (parser + policy engine; test/kube/bypass.test.ts sends the
 * same requests through the real gateway to a real kube-apiserver). Each case failed before its fix.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { BundleGrant, GuardrailRule } from "../../gateway/config/bundle.ts";
import { recordableBody } from "../../gateway/kube/mask.ts";
import { parseKubeRequest } from "../../gateway/kube/request.ts";
import { decideKubeRequest } from "../../gateway/kube/scope.ts";

const grant = (key: string, namespaces: string[], verbs: string[], resources: string[]) =>
	({ key, kubernetes: { namespaces, verbs, resources } }) as BundleGrant;
const rw = grant("ops/payments-rw", ["payments"], ["*"], ["*"]);
const ro = grant("ops/payments-ro", ["payments"], ["get", "list", "watch"], ["*"]);
const listOnly = grant("ops/payments-list", ["payments"], ["get", "list"], ["pods"]);
const wild = grant("ops/everything", ["*"], ["*"], ["*"]);
const RULES: GuardrailRule[] = [
	{ name: "no-proxy", action: "block", kubernetes: { resources: ["pods/proxy", "services/proxy", "nodes/proxy"] } },
	{ name: "no-prod-secrets", action: "block", kubernetes: { verbs: ["get", "list", "watch"], resources: ["secrets"], namespaces: ["prod"] } },
	{ name: "no-prod-delete", action: "block", kubernetes: { verbs: ["delete", "deletecollection"], namespaces: ["prod"] } },
];
const decide = (g: BundleGrant, method: string, url: string, upgrade = false) =>
	decideKubeRequest(parseKubeRequest(method, url, { upgrade }), [g], RULES).verdict;

test("bypass: a namespaced grant changed or deleted its own (cluster-scoped) Namespace object", () => {
	for (const [m, u] of [
		["PATCH", "/api/v1/namespaces/payments"],
		["PUT", "/api/v1/namespaces/payments"],
		["DELETE", "/api/v1/namespaces/payments"],
		["PUT", "/api/v1/namespaces/payments/finalize"],
		["PATCH", "/api/v1/namespaces/payments/status"],
	] as const) {
		const v = decide(rw, m, u);
		assert.equal(v.action, "block", `${m} ${u}`);
		assert.match(v.message!, /cluster-scoped/);
	}
	// Reading it stays allowed (kubectl get ns payments), and a cluster-wide grant may still change it.
	assert.equal(decide(rw, "GET", "/api/v1/namespaces/payments").action, "allow");
	assert.equal(decide(wild, "PATCH", "/api/v1/namespaces/payments").action, "allow");
	// Objects inside it are unaffected.
	assert.equal(decide(rw, "DELETE", "/api/v1/namespaces/payments/pods/x").action, "allow");
});

test("bypass: a path after a proxy subresource hid it from rules on pods/proxy, services/proxy, nodes/proxy", () => {
	for (const u of [
		"/api/v1/namespaces/payments/pods/x/proxy/metrics",
		"/api/v1/namespaces/payments/pods/x:8080/proxy/a/b",
		"/api/v1/namespaces/payments/services/http:svc:80/proxy/admin",
		"/api/v1/nodes/n1/proxy/exec/payments/x/c",
		"/api/v1/nodes/n1/proxy/run/payments/x/c",
	]) {
		const r = parseKubeRequest("GET", u);
		assert.equal(r.subresource, "proxy", u);
		assert.deepEqual([wild.key, decide(wild, "GET", u).action, decide(wild, "GET", u).rule], [wild.key, "block", "no-proxy"], u);
	}
	// The granted side: `pods/proxy` now covers a proxied path (it was refused as `proxy/metrics`).
	const g = grant("ops/proxy", ["payments"], ["get"], ["pods/proxy"]);
	assert.equal(decideKubeRequest(parseKubeRequest("GET", "/api/v1/namespaces/payments/pods/x/proxy/metrics"), [g], []).verdict.action, "allow");
});

test("bypass: ?watch=on (or yes, t, 2) was a list to the gateway and a watch to the apiserver", () => {
	for (const w of ["on", "yes", "t", "True", "2", ""]) {
		const r = parseKubeRequest("GET", `/api/v1/namespaces/payments/pods?watch=${w}`);
		assert.equal(r.verb, "watch", `watch=${w}`);
		assert.equal(decide(listOnly, "GET", `/api/v1/namespaces/payments/pods?watch=${w}`).action, "block", `watch=${w}`);
	}
	assert.equal(parseKubeRequest("GET", "/api/v1/namespaces/payments/pods?watch").verb, "watch");
	for (const w of ["0", "false", "FALSE"]) assert.equal(parseKubeRequest("GET", `/api/v1/namespaces/payments/pods?watch=${w}`).verb, "list", w);
});

test("bypass: GET of a named object with ?watch=1 was a watch to the gateway and a get to the apiserver", () => {
	// RequestInfo turns only a name-less GET into a watch; the apiserver answers the object itself.
	const getRule: GuardrailRule[] = [{ name: "no-get-secrets", action: "block", kubernetes: { verbs: ["get"], resources: ["secrets"], namespaces: ["prod"] } }];
	const watchOnly = grant("ops/prod-watch", ["prod"], ["list", "watch"], ["secrets"]);
	for (const q of ["?watch=1", "?watch=true", "?watch", "?watch=on&timeoutSeconds=5", "/?watch=1"]) {
		const u = `/api/v1/namespaces/prod/secrets/db${q}`;
		const r = parseKubeRequest("GET", u);
		assert.deepEqual([r.verb, r.name], ["get", "db"], u);
		assert.equal(decideKubeRequest(r, [wild], getRule).verdict.rule, "no-get-secrets", u);
		assert.equal(decideKubeRequest(r, [watchOnly], []).verdict.action, "block", u);
		assert.equal(parseKubeRequest("HEAD", u).verb, "get", u);
		// Subresources of a named object are gets too (pods/NAME/log?watch=1).
		assert.equal(parseKubeRequest("GET", `/api/v1/namespaces/prod/pods/api/log${q}`).verb, "get", u);
	}
	// Watches stay watches: a collection with ?watch, the /watch/ prefix (named or not), a name in fieldSelector.
	assert.equal(parseKubeRequest("GET", "/api/v1/namespaces/prod/secrets?watch=1").verb, "watch");
	assert.deepEqual(Object.values(parseKubeRequest("GET", "/api/v1/watch/namespaces/prod/secrets/db")).slice(0, 2), [true, "watch"]);
	const fs = parseKubeRequest("GET", "/api/v1/namespaces/prod/secrets?watch=1&fieldSelector=metadata.name%3Ddb");
	assert.deepEqual([fs.verb, fs.name], ["watch", "db"]);
});

test("bypass: a rule on get (or list) did not match the list (or watch) that returns the same objects", () => {
	const rules = (verbs: string[]): GuardrailRule[] => [{ name: "no-secret-reads", action: "block", kubernetes: { verbs, resources: ["secrets"], namespaces: ["prod"] } }];
	const cases: [string[], string, boolean][] = [
		[["get"], "/api/v1/namespaces/prod/secrets", true],
		[["get"], "/api/v1/namespaces/prod/secrets?watch=1", true],
		[["list"], "/api/v1/namespaces/prod/secrets?watch=1", true],
		[["get"], "/api/v1/watch/namespaces/prod/secrets/db", true],
		[["list"], "/api/v1/namespaces/prod/secrets/db", false], // a get is not a list
		[["watch"], "/api/v1/namespaces/prod/secrets", false], // nor a list a watch
		[["get"], "/api/v1/namespaces/prod/configmaps", false],
		[["get"], "/api/v1/namespaces/payments/secrets", false],
	];
	for (const [verbs, u, blocked] of cases) {
		const v = decideKubeRequest(parseKubeRequest("GET", u), [wild], rules(verbs)).verdict;
		assert.equal(v.action, blocked ? "block" : "allow", `${verbs} ${u}`);
	}
	// Grants keep their verbs: a grant with get only still may not list.
	const getOnly = grant("ops/get-only", ["prod"], ["get"], ["secrets"]);
	assert.equal(decideKubeRequest(parseKubeRequest("GET", "/api/v1/namespaces/prod/secrets"), [getOnly], []).scope, true);
});

test("bypass: a read-only grant could exec/attach/port-forward through the GET (WebSocket) form", () => {
	for (const sub of ["exec?command=sh&stdin=1", "attach?stdin=1", "portforward?ports=5432"]) {
		const u = `/api/v1/namespaces/payments/pods/api/${sub}`;
		assert.equal(parseKubeRequest("GET", u, { upgrade: true }).verb, "create", u);
		const v = decide(ro, "GET", u, true);
		assert.equal(v.action, "block", u);
		assert.match(v.message!, /verb create/);
	}
	// An upgraded proxy (WebSocket to a pod, a service, or the kubelet's /exec) is a two-way stream too.
	const proxied = (upgrade: boolean) =>
		decideKubeRequest(parseKubeRequest("GET", "/api/v1/namespaces/payments/pods/api/proxy/ws", { upgrade }), [ro], []).verdict.action;
	assert.equal(proxied(true), "block");
	assert.equal(proxied(false), "allow");
	// A grant that allows exec (create pods/exec) keeps working with either form.
	const exec = grant("ops/exec", ["payments"], ["get", "create"], ["pods/exec"]);
	assert.equal(decideKubeRequest(parseKubeRequest("GET", "/api/v1/namespaces/payments/pods/api/exec?command=id", { upgrade: true }), [exec], []).verdict.action, "allow");
	assert.equal(decideKubeRequest(parseKubeRequest("POST", "/api/v1/namespaces/payments/pods/api/exec?command=id", { upgrade: true }), [exec], []).verdict.action, "allow");
});

test("bypass: requests across all namespaces stepped around rules naming a namespace", () => {
	// GET /api/v1/secrets lists prod's Secrets too; the watch streams them.
	for (const u of ["/api/v1/secrets", "/api/v1/secrets?watch=1", "/api/v1/watch/secrets", "/api/v1/secrets?fieldSelector=metadata.namespace%3Dprod"]) {
		const v = decide(wild, "GET", u);
		assert.deepEqual([v.action, v.rule], ["block", "no-prod-secrets"], u);
	}
	// DELETE /api/v1/namespaces (deletecollection of Namespaces) would delete prod.
	assert.deepEqual(decide(wild, "DELETE", "/api/v1/namespaces?labelSelector=x").rule, "no-prod-delete");
	// Other namespaces are unaffected.
	assert.equal(decide(wild, "GET", "/api/v1/namespaces/payments/secrets").action, "allow");
	assert.equal(decide(wild, "DELETE", "/api/v1/namespaces/payments/pods").action, "allow");
	assert.equal(decide(wild, "DELETE", "/api/v1/namespaces/payments").action, "allow");
	assert.equal(decide(wild, "DELETE", "/api/v1/namespaces/prod").rule, "no-prod-delete");
});

test("bypass: any grant could read non-resource URLs other than discovery (/metrics, /debug, /logs)", () => {
	for (const u of ["/metrics", "/metrics/slis", "/debug/pprof/profile", "/logs/", "/configz"]) {
		const v = decide(ro, "GET", u);
		assert.equal(v.action, "block", u);
		assert.match(v.message!, /not discovery/);
		assert.equal(decide(wild, "GET", u).action, "allow", u);
	}
	for (const u of ["/api", "/api/v1", "/apis", "/apis/apps", "/apis/apps/v1/", "/version", "/openapi/v2", "/openapi/v3", "/openapi/v3/apis/apps/v1?hash=x", "/healthz", "/readyz/etcd", "/livez", "/.well-known/openid-configuration", "/openid/v1/jwks"]) {
		assert.equal(decide(ro, "GET", u).action, "allow", u);
	}
});

test("bypass: the legacy /proxy/ special-verb prefix was read as a resource named proxy", () => {
	const r = parseKubeRequest("GET", "/api/v1/proxy/namespaces/payments/pods/x");
	assert.equal(r.verb, "proxy");
	assert.equal(r.subresource, undefined);
	assert.equal(decide(ro, "GET", "/api/v1/proxy/namespaces/payments/pods/x").action, "block");
});

test("recording: Secrets inside a List sent to the secrets endpoint are masked (the body is recorded even when refused)", () => {
	const list = {
		kind: "List",
		items: [{ kind: "Secret", metadata: { name: "a" }, data: { pw: "aHVudGVyMg==" } }, { metadata: { name: "b" }, stringData: { pw: "hunter2" } }],
	};
	const rec = JSON.stringify(recordableBody(Buffer.from(JSON.stringify(list)), "application/json", "secrets"));
	assert.doesNotMatch(rec, /hunter2|aHVudGVyMg/);
	const secretList = { kind: "SecretList", items: [{ metadata: { name: "a" }, data: { pw: "aHVudGVyMg==" } }] };
	const rec2 = JSON.stringify(recordableBody(Buffer.from(JSON.stringify(secretList)), "application/json", "configmaps"));
	assert.doesNotMatch(rec2, /aHVudGVyMg/);
});

test("bypass: exec equivalents (attach, adding an ephemeral container, nodes/proxy) passed a rule on pods/exec", () => {
	const noExec: GuardrailRule[] = [{ name: "no-exec", action: "block", kubernetes: { verbs: ["create"], resources: ["pods/exec"], namespaces: ["payments"] } }];
	const d = (g: BundleGrant, m: string, u: string, upgrade = false) => decideKubeRequest(parseKubeRequest(m, u, { upgrade }), [g], noExec).verdict;
	for (const [m, u, up] of [
		["PATCH", "/api/v1/namespaces/payments/pods/x/ephemeralcontainers", false],
		["PUT", "/api/v1/namespaces/payments/pods/x/ephemeralcontainers", false],
		["GET", "/api/v1/namespaces/payments/pods/x/attach?stdin=1", true],
		["POST", "/api/v1/namespaces/payments/pods/x/attach?stdin=1", false],
	] as const) {
		const v = d(rw, m, u, up);
		assert.deepEqual([v.action, v.rule], ["block", "no-exec"], `${m} ${u}`);
		assert.match(v.message!, /like pods\/exec/);
	}
	// nodes/proxy has no namespace: it reaches every namespace's pods, so a rule limited to payments matches.
	for (const [m, u, up] of [
		["POST", "/api/v1/nodes/n1/proxy/run/payments/x/c?cmd=id", false],
		["GET", "/api/v1/nodes/n1/proxy/exec/payments/x/c?command=id", true],
		["GET", "/api/v1/nodes/n1/proxy/metrics", false],
		["GET", "/api/v1/proxy/nodes/n1/run/payments/x/c", false],
	] as const) {
		assert.equal(d(wild, m, u, up).action, "block", `${m} ${u}`);
	}
	// Reading ephemeral containers, other namespaces' attach, and the grant side are unchanged.
	assert.equal(d(rw, "GET", "/api/v1/namespaces/payments/pods/x/ephemeralcontainers").action, "allow");
	assert.equal(d(wild, "POST", "/api/v1/namespaces/dev/pods/x/attach").action, "allow");
	const execOnly = grant("ops/exec", ["payments"], ["create"], ["pods/exec"]);
	assert.equal(decideKubeRequest(parseKubeRequest("POST", "/api/v1/namespaces/payments/pods/x/attach"), [execOnly], []).verdict.action, "block");
});

test("bypass: a wildcard grant minted service-account tokens and approved certificates (credentials that outlive the grant)", () => {
	const token = "/api/v1/namespaces/payments/serviceaccounts/bot/token";
	const approval = "/apis/certificates.k8s.io/v1/certificatesigningrequests/c/approval";
	for (const resources of [["*"], ["serviceaccounts/*"], ["*/token"], ["serviceaccounts/tok*"]]) {
		const v = decideKubeRequest(parseKubeRequest("POST", token), [grant("ops/w", ["*"], ["*"], resources)], []).verdict;
		assert.equal(v.action, "block", resources.join());
		assert.match(v.message!, /must name it/);
	}
	assert.equal(decide(wild, "PUT", approval).action, "block");
	assert.equal(decideKubeRequest(parseKubeRequest("POST", token), [grant("ops/t", ["payments"], ["create"], ["serviceaccounts/token"])], []).verdict.action, "allow");
	assert.equal(decideKubeRequest(parseKubeRequest("PUT", approval), [grant("ops/a", ["*"], ["update"], ["certificatesigningrequests/approval"])], []).verdict.action, "allow");
	// Everything else under '*' is unchanged.
	assert.equal(decide(wild, "GET", "/api/v1/namespaces/payments/serviceaccounts/bot").action, "allow");
	assert.equal(decide(wild, "POST", "/apis/certificates.k8s.io/v1/certificatesigningrequests").action, "allow");
});
