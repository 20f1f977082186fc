/**
 * Reaching inside a workload by another name (red-team round 9, real kubectl 1.33 through the real
 * gateway to a real kube-apiserver whose RBAC gives the agents cluster-admin).
 *
 * A guardrail written as "no exec in payments" (`create pods/exec`, `namespaces: [payments]`) caught
 * exec, attach, debug containers and nodes/proxy, but not the other ways into a workload:
 * - `kubectl port-forward` (`pods/portforward`): a TCP stream into the pod's network namespace, its
 *   loopback-only admin ports included, past every NetworkPolicy;
 * - `pods/NAME:PORT/proxy/...` and `services/NAME:PORT/proxy/...`: HTTP from the apiserver to the
 *   address in a Pod's `status.podIPs` (a Service's Endpoints address counts only when a Pod of its
 *   namespace lists it). That status is whatever was written to it (`patch pods/status`, for a pod no
 *   kubelet runs): a Pod in `sandbox` whose status names a payments pod's IP, and a selector-less
 *   Service there whose Endpoints name that Pod, reached the payments workload from a namespace no rule
 *   named.
 *
 * The "workload" here is an HTTP server of the test on the machine's own address (no kubelet or pod
 * network exists in the test cluster): through the apiserver's proxy it answers with its marker, which
 * is what an agent read past the rule before the fix. Now these requests are matched as `create
 * pods/exec` (same rule, same approval), the proxy ones without a namespace; rules naming
 * `pods/proxy` / `services/proxy` in a namespace match them in every namespace.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { generateKubeconfig } from "../../gateway/kube/kubeconfig.ts";
import type { KubeListener } from "../../gateway/kube/listener.ts";
import { parseKubeRequest } from "../../gateway/kube/request.ts";
import { evaluateKubeRequest } from "../../gateway/policy/kube.ts";
import { KUBECTL, type KubeHandle, run, startKube } from "../env/index.ts";
import { type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";
import { kubeGateway, userGrant } from "./fixtures.ts";

const MARKER = "payments-workload-inside-4c1";
const NO_EXEC: GuardrailRule = {
	name: "no-exec-payments",
	action: "block",
	kubernetes: { verbs: ["create"], resources: ["pods/exec"], namespaces: ["payments"] },
};
const GRANT = { namespaces: ["payments", "sandbox"], verbs: ["*"], resources: ["*"] };

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
let workload: http.Server;
let port: number;
let ip: string;
let dir: string;
let kubeconfig: string;

/** A non-loopback IPv4 address of this machine: the apiserver refuses to proxy to loopback. */
function machineAddress(): string {
	for (const list of Object.values(networkInterfaces())) {
		for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
	}
	throw new Error("no non-loopback IPv4 address to stand in for a pod");
}

async function kubectl(args: string[]) {
	return run(KUBECTL, [`--kubeconfig=${kubeconfig}`, ...args], { env: { ...process.env, HOME: dir }, timeoutMs: 60_000 });
}

async function ok(method: string, path: string, body?: unknown, contentType?: string): Promise<void> {
	const r = await kube.request(method, path, body, contentType ? { contentType } : {});
	assert.ok(r.status >= 200 && r.status < 300, `${method} ${path}: ${r.status} ${r.text}`);
}

/**
 * A selector-less Service `name` in `ns` on port 80 whose Endpoints are the workload's address, naming
 * `pod`: the apiserver proxies only to an address that a Pod of the same namespace lists in its status.
 */
async function serviceToWorkload(ns: string, name: string, pod: string): Promise<void> {
	await ok("POST", `/api/v1/namespaces/${ns}/services`, {
		apiVersion: "v1",
		kind: "Service",
		metadata: { name },
		spec: { ports: [{ name: "http", port: 80, targetPort: port }] },
	});
	await ok("POST", `/api/v1/namespaces/${ns}/endpoints`, {
		apiVersion: "v1",
		kind: "Endpoints",
		metadata: { name },
		subsets: [{ addresses: [{ ip, targetRef: { kind: "Pod", namespace: ns, name: pod } }], ports: [{ name: "http", port }] }],
	});
}

/** A Pod `name` in `ns` whose status says Running at the workload's address. */
async function podAtWorkload(ns: string, name: string): Promise<void> {
	await ok("POST", `/api/v1/namespaces/${ns}/pods`, {
		apiVersion: "v1",
		kind: "Pod",
		metadata: { name },
		spec: { nodeName: "node-1", containers: [{ name: "app", image: "example.invalid/app:1" }] },
	});
	await ok(
		"PATCH",
		`/api/v1/namespaces/${ns}/pods/${name}/status`,
		{ status: { phase: "Running", podIP: ip, podIPs: [{ ip }] } },
		"application/merge-patch+json",
	);
}

before(async () => {
	ip = machineAddress();
	workload = http.createServer((_req, res) => res.end(MARKER));
	await new Promise<void>((resolve) => workload.listen(0, ip, resolve));
	port = (workload.address() as AddressInfo).port;
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	await kube.createNamespace("payments");
	await kube.createNamespace("sandbox");
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	await podAtWorkload("payments", "api");
	await podAtWorkload("sandbox", "shadow");
	await serviceToWorkload("payments", "web", "api");
	await serviceToWorkload("sandbox", "mirror", "shadow");
	gw = await kubeGateway(issuer, kube, { grants: [userGrant("dev", GRANT)], guardrailPolicies: [{ key: "ops/kube-prod", selector: { matchLabels: { env: "prod" } }, rules: [NO_EXEC] }] }, "gateway-workload-reach");
	dir = mkdtempSync(join(tmpdir(), "drawbridge-workload-reach-"));
	kubeconfig = join(dir, "kubeconfig");
	writeFileSync(
		kubeconfig,
		generateKubeconfig({ gatewayUrl: gw.url, connection: "cluster-prod", caPem: kube.caPem, token: await issuer.token("dev", { groups: ["agents"] }), namespace: "payments" }),
	);
});

after(async () => {
	await gw?.close();
	await kube?.stop();
	await new Promise((resolve) => workload?.close(resolve));
	if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("reaching inside a workload under a rule that blocks exec in payments", () => {
	test("control: the apiserver's proxy does reach the workload (admin, no gateway), and plain reads pass the gateway", async () => {
		for (const path of ["/api/v1/namespaces/payments/services/web:80/proxy/", "/api/v1/namespaces/sandbox/services/mirror:80/proxy/", `/api/v1/namespaces/sandbox/pods/shadow:${port}/proxy/`]) {
			const r = await kube.request("GET", path);
			assert.equal(r.status, 200, `${path}: ${r.text}`);
			assert.equal(r.text, MARKER);
		}
		const svc = await kubectl(["get", "services", "-n", "sandbox", "-o", "name"]);
		assert.equal(svc.code, 0, svc.stderr);
		assert.match(svc.stdout, /service\/mirror/);
	});

	test("services/proxy and pods/proxy are refused like exec, in payments and from sandbox", async () => {
		for (const path of [
			"/api/v1/namespaces/payments/services/web:80/proxy/",
			"/api/v1/namespaces/payments/services/http:web:http/proxy/admin",
			`/api/v1/namespaces/payments/pods/api:${port}/proxy/`,
			// Another namespace's Pod whose status names the payments workload, and a Service over it.
			"/api/v1/namespaces/sandbox/services/mirror:80/proxy/",
			`/api/v1/namespaces/sandbox/pods/shadow:${port}/proxy/`,
		]) {
			const r = await kubectl(["get", "--raw", path]);
			assert.notEqual(r.code, 0, `${path} passed: ${r.stdout}`);
			assert.doesNotMatch(r.stdout + r.stderr, new RegExp(MARKER), path);
			assert.match(r.stderr, /no-exec-payments/, `${path}: ${r.stderr}`);
			assert.match(r.stderr, /reaches inside a workload like pods\/exec/, path);
		}
	});

	test("kubectl port-forward is refused like exec in payments; outside it the gateway does not refuse it", async () => {
		const r = await kubectl(["port-forward", "-n", "payments", "pod/api", "0:80"]);
		assert.notEqual(r.code, 0, r.stdout);
		assert.match(r.stderr, /no-exec-payments/, r.stderr);
		assert.match(r.stderr, /create pods\/portforward api in namespace payments/, r.stderr);
		// sandbox's own pod: the rule names payments, and port-forward goes to the pod itself (through its
		// node's kubelet, of which the test cluster has none: the apiserver's own error).
		const s = await kubectl(["port-forward", "-n", "sandbox", "pod/shadow", "0:80"]);
		assert.notEqual(s.code, 0, s.stdout);
		assert.doesNotMatch(s.stderr, /no-exec-payments|drawbridge/, s.stderr);
	});
});

describe("the decision (pure)", () => {
	const grant = { namespaces: ["*"], verbs: ["*"], resources: ["*"] };
	const held: GuardrailRule = { ...NO_EXEC, name: "exec-needs-approval", action: "requireApproval" };

	test("a rule holding exec holds port-forward, pods/proxy and services/proxy (also the legacy /proxy/ form)", () => {
		for (const [method, path, upgrade] of [
			["POST", "/api/v1/namespaces/payments/pods/api/portforward", true],
			["GET", "/api/v1/namespaces/payments/pods/api/portforward?ports=80", true],
			["GET", "/api/v1/namespaces/sandbox/services/mirror/proxy/x", false],
			["POST", "/api/v1/namespaces/sandbox/pods/shadow/proxy/x", false],
			["GET", "/api/v1/proxy/namespaces/sandbox/services/mirror/x", false],
		] as const) {
			const v = evaluateKubeRequest(parseKubeRequest(method, path, { upgrade }), grant, [held]);
			assert.equal(v.action, "requireApproval", `${method} ${path}`);
			assert.equal(v.rule, "exec-needs-approval");
		}
	});

	test("rules naming pods/proxy or services/proxy in payments match them from any namespace; port-forward keeps its namespace", () => {
		const rule: GuardrailRule = { name: "no-proxy-payments", action: "block", kubernetes: { resources: ["services/proxy", "pods/proxy"], namespaces: ["payments"] } };
		for (const path of ["/api/v1/namespaces/sandbox/services/mirror:80/proxy/", "/api/v1/namespaces/sandbox/pods/shadow/proxy/"]) {
			const v = evaluateKubeRequest(parseKubeRequest("GET", path), grant, [rule]);
			assert.equal(v.action, "block", path);
			assert.match(v.message ?? "", /another namespace's workload/);
		}
		assert.equal(evaluateKubeRequest(parseKubeRequest("POST", "/api/v1/namespaces/sandbox/pods/shadow/portforward"), grant, [NO_EXEC]).action, "allow");
		assert.equal(evaluateKubeRequest(parseKubeRequest("GET", "/api/v1/namespaces/sandbox/services/mirror"), grant, [rule, NO_EXEC]).action, "allow");
	});
});
