/**
 * YAML the apiserver reads differently from the gateway (red-team round 7, through the real gateway to
 * a real kube-apiserver whose RBAC gives the agents cluster-admin).
 *
 * The body checks (hand-over to a deleting controller, kubelet client CSRs, token Secrets) and the
 * recording's Secret masking parse YAML bodies with the `yaml` package; the apiserver parses them with
 * Go's YAML 1.1 decoder (sigs.k8s.io/yaml). Two places where the two disagreed:
 * 1. an explicit `!!binary` tag: Go decodes the base64 and the field holds the decoded text; the gateway
 *    saw a byte array (or, for other tag spellings, the base64 text), never the word it looks for. So
 *    `whenScaled: !!binary RGVsZXRl` (Delete) set a StatefulSet's claim retention past a rule on deleting
 *    prod's claims, `effect: !!binary Tm9FeGVjdXRl` put a NoExecute taint on a Node past a rule on
 *    deleting pods, and `signerName: !!binary …` created a kubelet client CSR under a grant that does not
 *    name certificatesigningrequests/nodeclient;
 * 2. merge keys (`<<`): Go merges them into the map; the gateway kept a key `<<`, so a Secret written as
 *    `<<: {data: {password: …}}` was recorded with its value in the clear.
 * Now a YAML body with any explicit tag counts as unreadable (fail closed: kubectl and client-go never
 * send tags), and YAML is parsed with merge keys as Go does.
 */
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import { bodyHandsOver, bodyMentions } from "../../gateway/kube/handover.ts";
import { recordableBody } from "../../gateway/kube/mask.ts";
import { type KubeListener, startKubeListener } from "../../gateway/kube/listener.ts";
import { NODE_CLIENT_CSR_WORDS } from "../../gateway/policy/kube.ts";
import { issueCert, type KubeHandle, run, startKube } from "../env/index.ts";
import { approvalService, makeBundle, MemoryRecorder, storeWith, type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";
import { httpsText, kubeConnection, kubeCredentials, userGrant } from "./fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
const recorder = new MemoryRecorder();

const b64 = (s: string) => Buffer.from(s).toString("base64");

/** One request as `admin` through the gateway, or with the apiserver's admin token straight to it. */
async function send(method: string, path: string, body: string, contentType: string, direct = false): Promise<{ status: number; text: string }> {
	const token = direct ? kube.adminToken : await issuer.token("admin", { groups: ["agents"] });
	return httpsText(
		{
			hostname: "127.0.0.1",
			port: direct ? kube.port : gw.address.port,
			method,
			path: direct ? path : `/k8s/cluster-prod${path}`,
			ca: kube.caPem,
			headers: { authorization: `Bearer ${token}`, "content-type": contentType },
		},
		body,
		20_000,
	);
}

const STATEFULSET = {
	apiVersion: "apps/v1",
	kind: "StatefulSet",
	metadata: { name: "db" },
	spec: {
		serviceName: "db",
		replicas: 1,
		selector: { matchLabels: { app: "db" } },
		template: { metadata: { labels: { app: "db" } }, spec: { containers: [{ name: "db", image: "example.invalid/db:1" }] } },
		volumeClaimTemplates: [{ metadata: { name: "data" }, spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } } }],
	},
};

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	for (const ns of ["payments", "prod"]) await kube.createNamespace(ns);
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	for (const ns of ["prod", "payments"]) {
		const sts = await kube.request("POST", `/apis/apps/v1/namespaces/${ns}/statefulsets`, STATEFULSET);
		assert.equal(sts.status, 201, sts.text);
	}
	for (const name of ["n1", "n2"]) {
		const node = await kube.request("POST", "/api/v1/nodes", { apiVersion: "v1", kind: "Node", metadata: { name } });
		assert.equal(node.status, 201, node.text);
	}
	const cert = await issueCert(kube.ca, { cn: "drawbridge-gateway", ips: ["127.0.0.1"], dns: ["localhost"], name: "gateway-kube-yaml-tags" });
	const store = storeWith(
		makeBundle(issuer, {
			connections: [kubeConnection(kube)],
			grants: [userGrant("admin", { namespaces: ["*"], verbs: ["*"], resources: ["*"] })],
			guardrailPolicies: [
				{
					key: "ops/kube-prod",
					selector: { matchLabels: { env: "prod" } },
					rules: [
						{ name: "keep-prod-data", action: "block", kubernetes: { verbs: ["delete"], resources: ["persistentvolumeclaims"], namespaces: ["prod"] } },
						{ name: "keep-prod-pods", action: "block", kubernetes: { verbs: ["delete"], resources: ["pods"], namespaces: ["prod"] } },
					],
				},
			],
			credentials: kubeCredentials(kube),
		}),
	);
	gw = await startKubeListener({ store, recorder, approvals: approvalService(), tls: { certPem: cert.certPem, keyPem: cert.keyPem }, sessionIdleMs: 500 });
});

after(async () => {
	await gw?.close();
	await kube?.stop();
});

const APPLY = "application/apply-patch+yaml";

describe("found and fixed: !!binary values", () => {
	test("a StatefulSet's claim retention spelled !!binary RGVsZXRl is Delete to the apiserver, and matched as deleting its claims", async () => {
		const apply = (ns: string) =>
			`apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db, namespace: ${ns}}\nspec:\n  persistentVolumeClaimRetentionPolicy:\n    whenScaled: !!binary ${b64("Delete")}\n`;
		// The apiserver decodes the tag: the StatefulSet now deletes its claims on scale-down.
		const direct = await send("PATCH", "/apis/apps/v1/namespaces/payments/statefulsets/db?fieldManager=agent&force=true", apply("payments"), APPLY, true);
		assert.equal(direct.status, 200, direct.text);
		assert.match(direct.text, /"whenScaled":"Delete"/);
		// On the old code: 200 and the same policy in prod, past keep-prod-data.
		const r = await send("PATCH", "/apis/apps/v1/namespaces/prod/statefulsets/db?fieldManager=agent&force=true", apply("prod"), APPLY);
		assert.equal(r.status, 403, r.text);
		assert.match(r.text, /"kind":"drawbridge"/);
		assert.match(r.text, /delete persistentvolumeclaims.*keep-prod-data/);
		const sts = await kube.request<{ spec: { persistentVolumeClaimRetentionPolicy?: Record<string, string> } }>("GET", "/apis/apps/v1/namespaces/prod/statefulsets/db");
		assert.notEqual(sts.body.spec.persistentVolumeClaimRetentionPolicy?.["whenScaled"], "Delete");
	});

	test("a Node taint with effect !!binary Tm9FeGVjdXRl is NoExecute to the apiserver, and matched as deleting the node's pods", async () => {
		const apply = (name: string) =>
			`apiVersion: v1\nkind: Node\nmetadata: {name: ${name}}\nspec:\n  taints:\n  - key: gone\n    effect: !!binary ${b64("NoExecute")}\n`;
		const direct = await send("PATCH", "/api/v1/nodes/n2?fieldManager=agent&force=true", apply("n2"), APPLY, true);
		assert.equal(direct.status, 200, direct.text);
		assert.match(direct.text, /"effect":"NoExecute"/);
		// On the old code: 200, the taint manager would then evict every pod on n1, prod's included.
		const r = await send("PATCH", "/api/v1/nodes/n1?fieldManager=agent&force=true", apply("n1"), APPLY);
		assert.equal(r.status, 403, r.text);
		assert.match(r.text, /delete the node's pods.*keep-prod-pods/);
		const node = await kube.request<{ spec: { taints?: { effect: string }[] } }>("GET", "/api/v1/nodes/n1");
		assert.ok(!(node.body.spec.taints ?? []).some((t) => t.effect === "NoExecute"), JSON.stringify(node.body.spec.taints));
	});

	test("a CSR whose signerName is !!binary of the kubelet client signer needs certificatesigningrequests/nodeclient", async () => {
		const pem = await run("openssl", ["req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", "/dev/null", "-subj", "/O=system:nodes/CN=system:node:evil"]);
		assert.equal(pem.code, 0, pem.stderr);
		const csr = (name: string) =>
			`apiVersion: certificates.k8s.io/v1\nkind: CertificateSigningRequest\nmetadata: {name: ${name}}\nspec:\n  request: ${b64(pem.stdout)}\n  signerName: !!binary ${b64("kubernetes.io/kube-apiserver-client-kubelet")}\n  usages: [digital signature, client auth]\n`;
		const path = "/apis/certificates.k8s.io/v1/certificatesigningrequests";
		const direct = await send("POST", path, csr("node-direct"), "application/yaml", true);
		assert.equal(direct.status, 201, direct.text);
		assert.match(direct.text, /"signerName":"kubernetes.io\/kube-apiserver-client-kubelet"/);
		// On the old code: 201 under the wildcard grant (the controller manager approves such a request by itself).
		const r = await send("POST", path, csr("node-evil"), "application/yaml");
		assert.equal(r.status, 403, r.text);
		assert.match(r.text, /certificatesigningrequests\/nodeclient/);
		assert.equal((await kube.request("GET", `${path}/node-evil`)).status, 404);
	});

	test("untagged YAML still goes through (kubectl and client-go send no tags)", async () => {
		const r = await send(
			"PATCH",
			"/apis/apps/v1/namespaces/prod/statefulsets/db?fieldManager=agent&force=true",
			"apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: db, namespace: prod}\nspec:\n  persistentVolumeClaimRetentionPolicy: {whenScaled: Retain}\n",
			APPLY,
		);
		assert.equal(r.status, 200, r.text);
	});
});

describe("found and fixed: merge keys", () => {
	test("a Secret whose data is merged in with << is recorded with its value masked", async () => {
		const value = b64("merge-canary-5e1");
		const body = `apiVersion: v1\nkind: Secret\nmetadata: {name: merged, namespace: prod}\n<<: {data: {password: ${value}}}\n`;
		// Go merges the key: the Secret holds the value.
		const direct = await send("PATCH", "/api/v1/namespaces/payments/secrets/merged?fieldManager=agent", body.replace("prod", "payments"), APPLY, true);
		assert.equal(direct.status, 201, direct.text);
		assert.match(direct.text, new RegExp(`"password":"${value}"`));
		const r = await send("PATCH", "/api/v1/namespaces/prod/secrets/merged?fieldManager=agent", body, APPLY);
		assert.equal(r.status, 201, r.text);
		const rec = recorder.events("kube.request").find((e) => e.resource === "secrets" && e.name === "merged");
		assert.ok(rec, "the write is recorded");
		// On the old code: {"<<":{"data":{"password":"<value>"}}} in the recording (only data and stringData were masked).
		assert.doesNotMatch(JSON.stringify(rec), new RegExp(value));
		assert.match(JSON.stringify(rec.body), /"password":"<masked>"/);
	});
});

test("bodyHandsOver / bodyMentions: any explicit YAML tag is unreadable; merge keys are merged", () => {
	const tagged = [
		`spec: {persistentVolumeClaimRetentionPolicy: {whenScaled: !!binary ${b64("Delete")}}}`,
		`spec: {persistentVolumeClaimRetentionPolicy: {whenScaled: !<tag:yaml.org,2002:binary> ${b64("Delete")}}}`,
		`%TAG !g! tag:yaml.org,2002:\n---\nspec: {persistentVolumeClaimRetentionPolicy: {whenScaled: !g!binary ${b64("Delete")}}}`,
		`spec: {persistentVolumeClaimRetentionPolicy: {whenScaled: !binary ${b64("Delete")}}}`,
		"spec: {persistentVolumeClaimRetentionPolicy: {whenScaled: !!str Retain}}",
	];
	for (const t of tagged) {
		assert.equal(bodyHandsOver(Buffer.from(t), APPLY, undefined, "statefulsets"), true, t);
		assert.equal(bodyMentions(Buffer.from(t), "application/yaml", undefined, NODE_CLIENT_CSR_WORDS), true, t);
	}
	// Untagged: decided on what it says, as before.
	const retain = "spec: {persistentVolumeClaimRetentionPolicy: {whenScaled: Retain, whenDeleted: Retain}}";
	assert.equal(bodyHandsOver(Buffer.from(retain), APPLY, undefined, "statefulsets"), false);
	assert.equal(bodyMentions(Buffer.from("spec: {signerName: kubernetes.io/kube-apiserver-client}"), "application/yaml", undefined, NODE_CLIENT_CSR_WORDS), false);
	// A `!` inside a quoted or plain scalar is not a tag.
	assert.equal(bodyMentions(Buffer.from("metadata: {annotations: {note: \"!!binary\", other: a!b}}"), "application/yaml", undefined, NODE_CLIENT_CSR_WORDS), false);
	// Merge keys, as Go merges them: a retention policy merged in from an anchor.
	const merged = "x: &p {whenScaled: Delete}\nspec:\n  persistentVolumeClaimRetentionPolicy:\n    <<: *p\n";
	assert.equal(bodyHandsOver(Buffer.from(merged), APPLY, undefined, "statefulsets"), true);
	const secret = recordableBody(Buffer.from("kind: Secret\n<<: {data: {password: c2VjcmV0}}\n"), APPLY, "secrets");
	assert.deepEqual(secret, { kind: "Secret", data: { password: "<masked>" } });
});
