/**
 * Red-team round: deletes that happen later, elsewhere or implicitly. Every request here is allowed by
 * the grant (cluster-wide, every verb) and none is `delete configmaps|pods|... in prod`, yet each makes the
 * cluster delete what the rule "prod-deletes" protects: a collection delete, an eviction, deleting the
 * CustomResourceDefinition or the Namespace, a Node (PodGC), handing the object to the garbage collector
 * (ownerReferences) or to the TTL controller (ttlSecondsAfterFinished). Real gateway, real kube-apiserver
 * whose RBAC allows everything. The test control plane has no controller-manager, so the garbage
 * collector, PodGC and the namespace controller never run here: for those the test asserts the request
 * is refused and the object left untouched; eviction and CRD deletion happen inside the apiserver and
 * are shown end to end. See gateway/kube/README.md, "Deletes by another name".
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, describe, test } from "node:test";
import { bodyHandsOver } from "../../gateway/kube/handover.ts";
import { generateKubeconfig } from "../../gateway/kube/kubeconfig.ts";
import { type KubeListener, startKubeListener } from "../../gateway/kube/listener.ts";
import { parseKubeRequest } from "../../gateway/kube/request.ts";
import { decideKubeRequest } from "../../gateway/kube/scope.ts";
import { issueCert, KUBECTL, type KubeHandle, run, startKube } from "../env/index.ts";
import { approvalService, approver, makeBundle, MemoryRecorder, storeWith, type TokenIssuer, tokenIssuer, waitUntil } from "../ssh/fixtures.ts";
import { httpsText, kubeConnection, kubeCredentials, userGrant } from "./fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
const recorder = new MemoryRecorder();
const approvals = approvalService();
const dir = mkdtempSync(join(tmpdir(), "kube-implicit-"));

async function kubectl(args: string[]) {
	const file = join(dir, "kubeconfig");
	const token = await issuer.token("ops", { groups: ["agents"] });
	writeFileSync(file, generateKubeconfig({ gatewayUrl: gw.url, connection: "cluster-prod", caPem: kube.caPem, token, namespace: "prod" }));
	return run(KUBECTL, [`--kubeconfig=${file}`, ...args], { env: { ...process.env, HOME: dir }, timeoutMs: 60_000 });
}

interface Sent {
	status: number;
	text: string;
	drawbridge: boolean;
}

async function send(method: string, path: string, body?: string, contentType = "application/merge-patch+json"): Promise<Sent> {
	const token = await issuer.token("ops", { groups: ["agents"] });
	return httpsText(
		{
			hostname: "127.0.0.1",
			port: gw.address.port,
			method,
			path: `/k8s/cluster-prod${path}`,
			ca: kube.caPem,
			headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": contentType } : {}) },
		},
		body,
	);
}

function refused(r: Sent, what: string): void {
	assert.equal(r.status, 403, `${what}: ${r.status} ${r.text}`);
	assert.ok(r.drawbridge, `${what}: ${r.text}`);
	assert.match(r.text, /prod-deletes/, what);
}

async function exists(path: string): Promise<boolean> {
	const r = await kube.request<{ metadata?: { deletionTimestamp?: string } }>("GET", path);
	return r.status === 200 && !r.body.metadata?.deletionTimestamp;
}

async function ownerRefs(path: string): Promise<unknown> {
	const r = await kube.request<{ metadata: { ownerReferences?: unknown } }>("GET", path);
	return r.body.metadata.ownerReferences;
}

const CM = "/api/v1/namespaces/prod/configmaps/flags";
const CRD = {
	apiVersion: "apiextensions.k8s.io/v1",
	kind: "CustomResourceDefinition",
	metadata: { name: "widgets.example.com" },
	spec: {
		group: "example.com",
		scope: "Namespaced",
		names: { plural: "widgets", singular: "widget", kind: "Widget" },
		versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } } }],
	},
};

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	for (const ns of ["prod", "staging", "held"]) await kube.createNamespace(ns);
	const heldCm = await kube.request("POST", "/api/v1/namespaces/held/configmaps", { apiVersion: "v1", kind: "ConfigMap", metadata: { name: "flags" }, data: { a: "1" } });
	assert.equal(heldCm.status, 201);
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	for (const ns of ["prod", "staging"]) {
		for (const name of ["flags", "other"]) {
			const r = await kube.request("POST", `/api/v1/namespaces/${ns}/configmaps`, { apiVersion: "v1", kind: "ConfigMap", metadata: { name, labels: { app: "x" } }, data: { a: "1" } });
			assert.equal(r.status, 201, JSON.stringify(r.body));
		}
		const pod = await kube.request("POST", `/api/v1/namespaces/${ns}/pods`, {
			apiVersion: "v1",
			kind: "Pod",
			metadata: { name: "api" },
			spec: { containers: [{ name: "api", image: "example.invalid/api:1" }] },
		});
		assert.equal(pod.status, 201, JSON.stringify(pod.body));
	}
	const job = await kube.request("POST", "/apis/batch/v1/namespaces/prod/jobs", {
		apiVersion: "batch/v1",
		kind: "Job",
		metadata: { name: "migrate" },
		spec: { template: { spec: { restartPolicy: "Never", containers: [{ name: "m", image: "example.invalid/m:1" }] } } },
	});
	assert.equal(job.status, 201, JSON.stringify(job.body));
	const node = await kube.request("POST", "/api/v1/nodes", { apiVersion: "v1", kind: "Node", metadata: { name: "n1" } });
	assert.equal(node.status, 201, JSON.stringify(node.body));
	const bound = await kube.request("POST", "/api/v1/namespaces/prod/pods", {
		apiVersion: "v1",
		kind: "Pod",
		metadata: { name: "bound" },
		spec: { nodeName: "n1", containers: [{ name: "b", image: "example.invalid/b:1" }] },
	});
	assert.equal(bound.status, 201, JSON.stringify(bound.body));
	const crd = await kube.request("POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", CRD);
	assert.equal(crd.status, 201, JSON.stringify(crd.body));
	for (let i = 0; ; i++) {
		const w = await kube.request("POST", "/apis/example.com/v1/namespaces/prod/widgets", { apiVersion: "example.com/v1", kind: "Widget", metadata: { name: "w1" } });
		if (w.status === 201) break;
		assert.ok(i < 100, `widgets never served: ${JSON.stringify(w.body)}`);
		await new Promise((r) => setTimeout(r, 100));
	}
	const cert = await issueCert(kube.ca, { cn: "drawbridge-gateway", ips: ["127.0.0.1"], dns: ["localhost"], name: "gateway-kube-implicit" });
	const store = storeWith(
		makeBundle(issuer, {
			connections: [kubeConnection(kube)],
			grants: [userGrant("ops", { namespaces: ["*"], verbs: ["*"], resources: ["*"] })],
			guardrailPolicies: [
				{
					key: "ops/kube-prod",
					selector: { matchLabels: { env: "prod" } },
					rules: [
						{
							name: "prod-deletes",
							action: "block",
							message: "nothing in prod is deleted by an agent",
							kubernetes: { verbs: ["delete"], resources: ["configmaps", "pods", "jobs.batch", "widgets.example.com"], namespaces: ["prod"] },
						},
						{
							name: "held-deletes",
							action: "requireApproval",
							kubernetes: { verbs: ["delete"], resources: ["configmaps"], namespaces: ["held"] },
							approval: { approvers: [{ kind: "User", name: "sam" }], minApprovals: 1, timeoutSeconds: 60 },
						},
					],
				},
			],
			credentials: kubeCredentials(kube),
		}),
	);
	gw = await startKubeListener({ store, recorder, approvals, tls: { certPem: cert.certPem, keyPem: cert.keyPem }, sessionIdleMs: 500 });
});

after(async () => {
	await gw?.close();
	await kube?.stop();
	rmSync(dir, { recursive: true, force: true });
});

describe("deletes by another name are the guarded delete", () => {
	test("control: the rule holds for a plain delete, and staging is not protected", async () => {
		refused(await send("DELETE", CM), "delete");
		const r = await send("DELETE", "/api/v1/namespaces/staging/configmaps/other");
		assert.equal(r.status, 200, r.text);
	});

	test("deletecollection (kubectl delete --all, label selectors, all namespaces) is a delete", async () => {
		for (const p of [
			"/api/v1/namespaces/prod/configmaps",
			"/api/v1/namespaces/prod/configmaps?labelSelector=app%3Dx",
			"/api/v1/namespaces/prod/configmaps?fieldSelector=metadata.name%3Dflags",
			"/api/v1/configmaps",
			"/api/v1/namespaces/prod/pods",
		]) {
			refused(await send("DELETE", p), p);
		}
		assert.ok(await exists(CM));
		assert.ok(await exists("/api/v1/namespaces/prod/pods/api"));
	});

	test("evicting a pod deletes it (pods/eviction, kubectl drain)", async () => {
		const body = JSON.stringify({ apiVersion: "policy/v1", kind: "Eviction", metadata: { name: "api", namespace: "prod" } });
		refused(await send("POST", "/api/v1/namespaces/prod/pods/api/eviction", body, "application/json"), "eviction");
		assert.ok(await exists("/api/v1/namespaces/prod/pods/api"));
		// Control: staging's pod is evicted (deleted) through the gateway.
		const ok = await send("POST", "/api/v1/namespaces/staging/pods/api/eviction", body.replace('"prod"', '"staging"'), "application/json");
		assert.equal(ok.status, 201, ok.text);
	});

	test("deleting the CustomResourceDefinition deletes prod's widgets", async () => {
		for (const p of ["/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"]) {
			refused(await send("DELETE", p), p);
		}
		assert.ok(await exists("/apis/example.com/v1/namespaces/prod/widgets/w1"));
		assert.ok(await exists("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"));
	});

	test("deleting the Namespace deletes everything in it", async () => {
		refused(await send("DELETE", "/api/v1/namespaces/prod"), "namespace");
		assert.ok(await exists("/api/v1/namespaces/prod"));
		const staging = await send("GET", "/api/v1/namespaces/staging");
		assert.equal(staging.status, 200, staging.text);
	});

	test("deleting a Node deletes the pods bound to it (PodGC)", async () => {
		refused(await send("DELETE", "/api/v1/nodes/n1"), "node");
		assert.ok(await exists("/api/v1/nodes/n1"));
	});

	test("adding ownerReferences hands the object to the garbage collector", async () => {
		const ref = { apiVersion: "v1", kind: "Namespace", name: "staging", uid: "00000000-0000-0000-0000-000000000001" };
		const forms: [string, string, string][] = [
			["PATCH", JSON.stringify({ metadata: { ownerReferences: [ref] } }), "application/merge-patch+json"],
			["PATCH", JSON.stringify({ metadata: { ownerReferences: [ref] } }), "application/strategic-merge-patch+json"],
			["PATCH", JSON.stringify([{ op: "add", path: "/metadata/ownerReferences", value: [ref] }]), "application/json-patch+json"],
			// A JSON escape in the key: the apiserver decodes it to ownerReferences.
			["PATCH", `{"metadata":{"owner\\u0052eferences":${JSON.stringify([ref])}}}`, "application/merge-patch+json"],
			["PATCH", `[{"op":"add","path":"/metadata/owner\\u0052eferences","value":${JSON.stringify([ref])}}]`, "application/json-patch+json"],
		];
		for (const [method, body, type] of forms) {
			const r = await send(method, CM, body, type);
			refused(r, `${type} ${body}`);
			assert.equal(await ownerRefs(CM), undefined, body);
		}
		const apply = `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\n  ownerReferences:\n  - apiVersion: v1\n    kind: Namespace\n    name: staging\n    uid: 00000000-0000-0000-0000-000000000001\n`;
		refused(await send("PATCH", `${CM}?fieldManager=agent&force=true`, apply, "application/apply-patch+yaml"), "apply");
		// YAML 1.1 !!binary: the key is base64 in the text; Go's YAML decoder gives "ownerReferences".
		const binary = apply.replace("  ownerReferences:", `  ? !!binary ${Buffer.from("ownerReferences").toString("base64")}\n  :`);
		refused(await send("PATCH", `${CM}?fieldManager=agent&force=true`, binary, "application/apply-patch+yaml"), "apply !!binary");
		assert.equal(await ownerRefs(CM), undefined);
		const binaryPut = `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\n  namespace: prod\n  !!binary ${Buffer.from("ownerReferences").toString("base64")}:\n  - apiVersion: v1\n    kind: Namespace\n    name: staging\n    uid: 00000000-0000-0000-0000-000000000001\n`;
		refused(await send("PUT", CM, binaryPut, "application/yaml"), "update yaml !!binary");
		assert.equal(await ownerRefs(CM), undefined);
		const current = await kube.request<Record<string, unknown> & { metadata: Record<string, unknown> }>("GET", CM);
		const put = JSON.stringify({ ...current.body, metadata: { ...current.body.metadata, ownerReferences: [ref] } });
		refused(await send("PUT", CM, put, "application/json"), "update");
		assert.equal(await ownerRefs(CM), undefined);
	});

	test("ownerReferences on the Namespace or the CRD hand all their contents to the garbage collector", async () => {
		const ref = { apiVersion: "v1", kind: "ConfigMap", name: "gone", uid: "00000000-0000-0000-0000-000000000002" };
		const body = JSON.stringify({ metadata: { ownerReferences: [ref] } });
		refused(await send("PATCH", "/api/v1/namespaces/prod", body), "namespace");
		assert.equal(await ownerRefs("/api/v1/namespaces/prod"), undefined);
		refused(await send("PATCH", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com", body), "crd");
		assert.equal(await ownerRefs("/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"), undefined);
		const label = await send("PATCH", "/api/v1/namespaces/staging", JSON.stringify({ metadata: { labels: { team: "a" } } }));
		assert.equal(label.status, 200, label.text);
	});

	test("under a requireApproval delete rule the hand-over is held, shown with its body, and forwarded as approved", async () => {
		const ref = { apiVersion: "v1", kind: "Namespace", name: "staging", uid: "00000000-0000-0000-0000-000000000003" };
		const pending = send("PATCH", "/api/v1/namespaces/held/configmaps/flags", JSON.stringify({ metadata: { ownerReferences: [ref] } }));
		let id: string | undefined;
		let command = "";
		await waitUntil("a pending approval for held-deletes", () => {
			void approvals.list({ phase: "Pending" }).then((l) => {
				const a = l.find((x) => x.rule === "held-deletes");
				if (a) [id, command] = [a.id, a.command];
			});
			return id !== undefined;
		});
		assert.match(command, /ownerReferences/);
		await approvals.decide(id!, approver("sam"), "approve");
		const r = await pending;
		assert.equal(r.status, 200, r.text);
		assert.deepEqual((await ownerRefs("/api/v1/namespaces/held/configmaps/flags")) as unknown[], [{ ...ref }]);
	});

	test("ttlSecondsAfterFinished hands a Job to the TTL controller", async () => {
		refused(await send("PATCH", "/apis/batch/v1/namespaces/prod/jobs/migrate", JSON.stringify({ spec: { ttlSecondsAfterFinished: 0 } })), "ttl");
	});

	test("a NoExecute taint on a Node makes the taint manager delete its pods; cordon does not", async () => {
		const taint = JSON.stringify({ spec: { taints: [{ key: "gone", effect: "NoExecute" }] } });
		refused(await send("PATCH", "/api/v1/nodes/n1", taint, "application/strategic-merge-patch+json"), "taint");
		const cordon = await send("PATCH", "/api/v1/nodes/n1", JSON.stringify({ spec: { unschedulable: true } }), "application/strategic-merge-patch+json");
		assert.equal(cordon.status, 200, cordon.text);
	});

	test("kubectl: delete --all, delete namespace, drain and replace --force are refused in prod", async () => {
		for (const args of [
			["delete", "configmaps", "--all", "-n", "prod"],
			["delete", "configmaps", "-l", "app=x", "-n", "prod"],
			["delete", "namespace", "prod"],
			["drain", "n1", "--ignore-daemonsets", "--force", "--timeout=20s"],
		]) {
			const r = await kubectl(args);
			assert.notEqual(r.code, 0, `${args.join(" ")}: ${r.stdout}`);
			assert.match(r.stderr, /prod-deletes/, args.join(" "));
		}
		assert.ok(await exists(CM));
		assert.ok(await exists("/api/v1/namespaces/prod/pods/bound"));
		const manifest = join(dir, "cm.yaml");
		writeFileSync(manifest, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\n  namespace: prod\ndata:\n  a: '9'\n");
		const replace = await kubectl(["replace", "--force", "-f", manifest]);
		assert.notEqual(replace.code, 0, replace.stdout);
		assert.match(replace.stderr, /prod-deletes/);
		assert.ok(await exists(CM));
	});

	test("false positives: ordinary patches, apply and updates in prod still work", async () => {
		const label = await send("PATCH", CM, JSON.stringify({ metadata: { labels: { tier: "web" } }, data: { a: "2" } }));
		assert.equal(label.status, 200, label.text);
		const apply = `apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: flags\ndata:\n  b: "3"\n`;
		const a = await send("PATCH", `${CM}?fieldManager=agent&force=true`, apply, "application/apply-patch+yaml");
		assert.equal(a.status, 200, a.text);
		const current = await kube.request<Record<string, unknown>>("GET", CM);
		const put = await send("PUT", CM, JSON.stringify(current.body), "application/json");
		assert.equal(put.status, 200, put.text);
		// A count that is not zero (parallelism 0 is a delete of the Job's pods since round 10: issue-deletes-by-count).
		const scale = await send("PATCH", "/apis/batch/v1/namespaces/prod/jobs/migrate", JSON.stringify({ spec: { parallelism: 1 } }));
		assert.equal(scale.status, 200, scale.text);
		// Patches that do not reach a guarded delete are never read: a staging object may get an owner.
		const ref = { apiVersion: "v1", kind: "Namespace", name: "staging", uid: "00000000-0000-0000-0000-000000000001" };
		const st = await send("PATCH", "/api/v1/namespaces/staging/configmaps/flags", JSON.stringify({ metadata: { ownerReferences: [ref] } }));
		assert.equal(st.status, 200, st.text);
	});
});

describe("classification (no apiserver needed)", () => {
	const rules = [
		{ name: "no-proxy", action: "block" as const, kubernetes: { resources: ["pods/proxy"] } },
		{ name: "prod-deletes", action: "requireApproval" as const, kubernetes: { verbs: ["delete"], resources: ["configmaps", "pods", "widgets.example.com"], namespaces: ["prod"] } },
	];
	const grant = userGrant("ops", { namespaces: ["*"], verbs: ["*"], resources: ["*"] });
	const decide = (method: string, url: string, handsOver = false) => {
		const req = { ...parseKubeRequest(method, url), ...(handsOver ? { handsOver } : {}) };
		const v = decideKubeRequest(req, [grant], rules).verdict;
		return v.action === "allow" ? "allow" : `${v.action} ${v.rule}`;
	};

	test("implied deletes match the delete rule, and only it", () => {
		const held = "requireApproval prod-deletes";
		assert.equal(decide("DELETE", "/api/v1/namespaces/prod/configmaps?labelSelector=a%3Db"), held);
		assert.equal(decide("DELETE", "/api/v1/namespaces/staging/configmaps"), "allow");
		assert.equal(decide("POST", "/api/v1/namespaces/prod/pods/api/eviction"), held);
		assert.equal(decide("POST", "/api/v1/namespaces/staging/pods/api/eviction"), "allow");
		assert.equal(decide("GET", "/api/v1/namespaces/prod/pods/api/eviction"), "allow");
		assert.equal(decide("DELETE", "/api/v1/namespaces/prod"), held);
		assert.equal(decide("DELETE", "/api/v1/namespaces/staging"), "allow", "a rule on pods/proxy only is not about deleting objects");
		assert.equal(decide("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"), held);
		assert.equal(decide("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.example.com"), "allow");
		assert.equal(decide("DELETE", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"), held);
		assert.equal(decide("DELETE", "/api/v1/nodes/n1"), held);
		assert.equal(decide("PATCH", "/api/v1/namespaces/prod/configmaps/flags", true), held);
		assert.equal(decide("PATCH", "/api/v1/namespaces/prod/configmaps/flags"), "allow");
		assert.equal(decide("PUT", "/api/v1/namespaces/prod/configmaps/flags", true), held);
		assert.equal(decide("PATCH", "/api/v1/namespaces/staging/configmaps/flags", true), "allow");
		assert.equal(decide("PATCH", "/api/v1/nodes/n1", true), held);
		assert.equal(decide("PATCH", "/api/v1/namespaces/prod", true), held);
		assert.equal(decide("PATCH", "/api/v1/namespaces/staging", true), "allow");
		assert.equal(decide("PUT", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com", true), held);
		// Reading is never a delete.
		assert.equal(decide("GET", "/api/v1/namespaces/prod/configmaps"), "allow");
	});

	test("bodyHandsOver: every spelling of ownerReferences / ttlSecondsAfterFinished, and anything unreadable", () => {
		const yes: [string, string][] = [
			['{"metadata":{"ownerReferences":[]}}', "application/merge-patch+json"],
			['{"metadata":{"OWNERREFERENCES":[]}}', "application/merge-patch+json"],
			['{"metadata":{"owner\\u0052eferences":[]}}', "application/merge-patch+json"],
			['{"metadata":{"ownerReferences":[{"uid":"x"}]},"metadata":{"labels":{}}}', "application/json"],
			['[{"op":"add","path":"/metadata/ownerReferences","value":[]}]', "application/json-patch+json"],
			['[{"op":"replace","path":"/metadata","value":{"ownerReferences":[]}}]', "application/json-patch+json"],
			['{"spec":{"ttlSecondsAfterFinished":0}}', "application/strategic-merge-patch+json"],
			["metadata:\n  ownerReferences: []\n", "application/apply-patch+yaml"],
			['metadata:\n  "owner\\x52eferences": []\n', "application/apply-patch+yaml"],
			['metadata:\n  "owner\\\n  References": []\n', "application/apply-patch+yaml"],
			["a: 1\na: 2\n", "application/apply-patch+yaml"],
			[`metadata:\n  !!binary ${Buffer.from("ownerReferences").toString("base64")}: []\n`, "application/apply-patch+yaml"],
			['{"metadata":{"ownerReferenceſ":[]}}', "application/merge-patch+json"],
			["{not json", "application/json"],
			["k8s\u0000protobuf", "application/vnd.kubernetes.protobuf"],
			["\u00a1", "application/cbor"],
		];
		for (const [body, type] of yes) assert.equal(bodyHandsOver(Buffer.from(body), type, undefined), true, `${type} ${body}`);
		assert.equal(bodyHandsOver(Buffer.from("{}"), "application/json", "gzip"), true);
		assert.equal(bodyHandsOver(Buffer.from('{"spec":{"taints":[{"effect":"NoExecute"}]}}'), "application/json", undefined, "nodes"), true);
		const no: [string, string][] = [
			['{"metadata":{"labels":{"a":"b"}},"data":{"x":"1"}}', "application/merge-patch+json"],
			['[{"op":"remove","path":"/metadata/labels/a"}]', "application/json-patch+json"],
			['{"spec":{"replicas":0}}', "application/merge-patch+json"],
			["metadata:\n  name: flags\ndata:\n  b: '3'\n", "application/apply-patch+yaml"],
		];
		for (const [body, type] of no) assert.equal(bodyHandsOver(Buffer.from(body), type, undefined), false, `${type} ${body}`);
		assert.equal(bodyHandsOver(Buffer.alloc(0), "application/json", undefined), false);
		assert.equal(bodyHandsOver(Buffer.from('{"spec":{"unschedulable":true}}'), "application/json", undefined, "nodes"), false);
	});
});
