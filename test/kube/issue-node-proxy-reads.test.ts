/**
 * nodes/proxy reads every pod on the node (red-team round 9, real kubectl 1.33 through the real gateway
 * to a real kube-apiserver whose RBAC gives the agents cluster-admin).
 *
 * `nodes/proxy` was matched only as exec. The kubelet API behind it also answers `/pods` (every pod on
 * the node, whole: env values included), `/containerLogs/NS/POD/CONTAINER`, `/attach`,
 * `/portForward`, for pods of any namespace. Under a rule blocking `get pods` in prod (round 8's "no
 * reading prod's pods"), `kubectl get --raw /api/v1/nodes/n1/proxy/pods` answered them; a rule on
 * `pods/log` or `pods/portforward` in prod was passed the same way. Now nodes/proxy is matched as
 * `get`/`list pods`, `get pods/log`, `create pods/attach` and `create pods/portforward` as well, each
 * without a namespace.
 *
 * The test cluster has no kubelet: the Node `n1` is registered with the address of an HTTPS server of
 * the test that answers like a kubelet would (a pod list holding a prod pod's env value); the
 * apiserver proxies to it (no kubelet client certificate or CA is configured, as in the harness).
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import https from "node:https";
import type { AddressInfo } from "node:net";
import { networkInterfaces, tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { generateKubeconfig } from "../../gateway/kube/kubeconfig.ts";
import type { KubeListener } from "../../gateway/kube/listener.ts";
import { parseKubeRequest } from "../../gateway/kube/request.ts";
import { evaluateKubeRequest } from "../../gateway/policy/kube.ts";
import { issueCert, KUBECTL, type KubeHandle, run, startKube } from "../env/index.ts";
import { type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";
import { kubeGateway, userGrant } from "./fixtures.ts";

const CANARY = "prod-db-password-9d2";
const NO_POD_READS: GuardrailRule = { name: "no-prod-pod-reads", action: "block", kubernetes: { verbs: ["get"], resources: ["pods"], namespaces: ["prod"] } };

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
let kubelet: https.Server;
const seen: string[] = [];
let dir: string;
let kubeconfig: string;

function machineAddress(): string {
	for (const list of Object.values(networkInterfaces())) {
		for (const a of list ?? []) if (a.family === "IPv4" && !a.internal) return a.address;
	}
	throw new Error("no non-loopback IPv4 address to stand in for a node");
}

async function kubectl(args: string[]) {
	return run(KUBECTL, [`--kubeconfig=${kubeconfig}`, ...args], { env: { ...process.env, HOME: dir }, timeoutMs: 60_000 });
}

before(async () => {
	const ip = machineAddress();
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	const serving = await issueCert(kube.ca, { cn: "n1", ips: [ip], name: "fake-kubelet-n1" });
	kubelet = https.createServer({ cert: serving.certPem, key: serving.keyPem }, (req, res) => {
		seen.push(req.url ?? "");
		res.setHeader("content-type", "application/json");
		res.end(JSON.stringify({ kind: "PodList", items: [{ metadata: { name: "api", namespace: "prod" }, spec: { containers: [{ name: "api", env: [{ name: "DB_PASSWORD", value: CANARY }] }] } }] }));
	});
	await new Promise<void>((resolve) => kubelet.listen(0, ip, resolve));
	const port = (kubelet.address() as AddressInfo).port;
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	const node = await kube.request("POST", "/api/v1/nodes", { apiVersion: "v1", kind: "Node", metadata: { name: "n1" } });
	assert.equal(node.status, 201, node.text);
	const status = await kube.request(
		"PATCH",
		"/api/v1/nodes/n1/status",
		{ status: { addresses: [{ type: "InternalIP", address: ip }], daemonEndpoints: { kubeletEndpoint: { Port: port } } } },
		{ contentType: "application/merge-patch+json" },
	);
	assert.equal(status.status, 200, status.text);
	gw = await kubeGateway(
		issuer,
		kube,
		{
			grants: [userGrant("admin", { namespaces: ["*"], verbs: ["*"], resources: ["*"] })],
			guardrailPolicies: [{ key: "ops/kube-prod", selector: { matchLabels: { env: "prod" } }, rules: [NO_POD_READS] }],
		},
		"gateway-node-proxy-reads",
	);
	dir = mkdtempSync(join(tmpdir(), "drawbridge-node-proxy-"));
	kubeconfig = join(dir, "kubeconfig");
	writeFileSync(kubeconfig, generateKubeconfig({ gatewayUrl: gw.url, connection: "cluster-prod", caPem: kube.caPem, token: await issuer.token("admin", { groups: ["agents"] }) }));
});

after(async () => {
	await gw?.close();
	await kube?.stop();
	await new Promise((resolve) => kubelet?.close(resolve));
	if (dir) rmSync(dir, { recursive: true, force: true });
});

describe("nodes/proxy under a rule that blocks reading prod's pods", () => {
	test("control: the apiserver proxies nodes/n1/proxy/pods to the node's kubelet (admin, no gateway); other node reads pass the gateway", async () => {
		const r = await kube.request("GET", "/api/v1/nodes/n1/proxy/pods");
		assert.equal(r.status, 200, r.text);
		assert.match(r.text, new RegExp(CANARY));
		const nodes = await kubectl(["get", "nodes", "-o", "name"]);
		assert.equal(nodes.code, 0, nodes.stderr);
		assert.match(nodes.stdout, /node\/n1/);
	});

	test("kubectl get --raw /api/v1/nodes/n1/proxy/pods (and /runningpods, /containerLogs) is refused by the pod-read rule", async () => {
		const before = seen.length;
		for (const path of ["/api/v1/nodes/n1/proxy/pods", "/api/v1/nodes/n1/proxy/runningpods/", "/api/v1/nodes/n1/proxy/containerLogs/prod/api/api"]) {
			const r = await kubectl(["get", "--raw", path]);
			assert.notEqual(r.code, 0, `${path} passed: ${r.stdout}`);
			assert.doesNotMatch(r.stdout + r.stderr, new RegExp(CANARY), path);
			assert.match(r.stderr, /no-prod-pod-reads/, `${path}: ${r.stderr}`);
			assert.match(r.stderr, /the kubelet API behind nodes\/proxy answers for every pod on the node/, path);
		}
		assert.equal(seen.length, before, `the kubelet was asked: ${seen.slice(before).join(", ")}`);
	});
});

describe("the decision (pure)", () => {
	const grant = { namespaces: ["*"], verbs: ["*"], resources: ["*"] };
	test("nodes/proxy meets rules on get/list pods, pods/log, pods/attach, pods/portforward in any namespace", () => {
		const rules: [GuardrailRule, string][] = [
			[{ name: "r", action: "block", kubernetes: { verbs: ["list"], resources: ["pods"], namespaces: ["prod"] } }, "/pods"],
			[{ name: "r", action: "block", kubernetes: { verbs: ["get"], resources: ["pods/log"], namespaces: ["prod"] } }, "/containerLogs/prod/api/api"],
			[{ name: "r", action: "requireApproval", kubernetes: { resources: ["pods/attach"], namespaces: ["prod"] } }, "/attach/prod/api/api"],
			[{ name: "r", action: "block", kubernetes: { resources: ["pods/portforward"] } }, "/portForward/prod/api"],
		];
		for (const [rule, sub] of rules) {
			for (const path of [`/api/v1/nodes/n1/proxy${sub}`, `/api/v1/proxy/nodes/n1${sub}`]) {
				const v = evaluateKubeRequest(parseKubeRequest("GET", path), grant, [rule]);
				assert.equal(v.action, rule.action, `${path} under ${JSON.stringify(rule.kubernetes)}`);
			}
		}
		// Reading the Node object itself is not a pod read.
		assert.equal(evaluateKubeRequest(parseKubeRequest("GET", "/api/v1/nodes/n1"), grant, [NO_POD_READS]).action, "allow");
		assert.equal(evaluateKubeRequest(parseKubeRequest("GET", "/api/v1/nodes/n1/status"), grant, [NO_POD_READS]).action, "allow");
	});
});
