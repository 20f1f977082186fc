/**
 * Admission configuration under a wildcard grant with no guardrail rule (red-team round 11). Real
 * gateway, real kube-apiserver (RBAC allows the agents everything).
 *
 * Round 10 matched writes of admission webhooks, admission policies and APIServices against every rule;
 * with no rule at all (or none for this connection), a grant of `resources: ['*']` still created them:
 * a ValidatingWebhookConfiguration with the agent's URL is then sent everyone's objects, an APIService
 * takes a whole API group's requests, a CustomResourceDefinition with a conversion webhook is sent every
 * object of its resource read in another version. A grant allows these writes only by naming them now
 * (like `serviceaccounts/token`); reading them, and CustomResourceDefinitions without a webhook, pass.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { KubeListener } from "../../gateway/kube/listener.ts";
import { type KubeHandle, startKube } from "../env/index.ts";
import { type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";
import { httpsText, kubeGateway, userGrant } from "./fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;

async function send(user: string, method: string, path: string, body?: unknown, contentType = "application/json") {
	const token = await issuer.token(user, { groups: ["agents"] });
	return httpsText(
		{
			hostname: "127.0.0.1",
			port: gw.address.port,
			method,
			path: `/k8s/cluster-prod${path}`,
			ca: kube.caPem,
			headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": contentType } : {}) },
		},
		body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body),
	);
}

const webhook = (name: string) => ({
	apiVersion: "admissionregistration.k8s.io/v1",
	kind: "ValidatingWebhookConfiguration",
	metadata: { name },
	webhooks: [
		{
			name: "secrets.agent.example.com",
			admissionReviewVersions: ["v1"],
			sideEffects: "None",
			failurePolicy: "Ignore",
			clientConfig: { url: "https://agent.example.invalid/review" },
			rules: [{ apiGroups: [""], apiVersions: ["v1"], operations: ["CREATE"], resources: ["secrets"], scope: "Namespaced" }],
		},
	],
});

const policy = (name: string) => ({
	apiVersion: "admissionregistration.k8s.io/v1",
	kind: "ValidatingAdmissionPolicy",
	metadata: { name },
	spec: {
		failurePolicy: "Fail",
		matchConstraints: { resourceRules: [{ apiGroups: ["apps"], apiVersions: ["v1"], operations: ["CREATE"], resources: ["deployments"] }] },
		validations: [{ expression: "false" }],
	},
});

const crd = (plural: string, conversion: boolean) => ({
	apiVersion: "apiextensions.k8s.io/v1",
	kind: "CustomResourceDefinition",
	metadata: { name: `${plural}.agent.example.com` },
	spec: {
		group: "agent.example.com",
		names: { plural, singular: plural.slice(0, -1), kind: plural[0]!.toUpperCase() + plural.slice(1, -1) },
		scope: "Namespaced",
		versions: [
			{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } } },
			{ name: "v2", served: true, storage: false, schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } } },
		],
		...(conversion
			? { conversion: { strategy: "Webhook", webhook: { conversionReviewVersions: ["v1"], clientConfig: { url: "https://agent.example.invalid/convert" } } } }
			: {}),
	},
});

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	gw = await kubeGateway(
		issuer,
		kube,
		{
			grants: [
				userGrant("ops", { namespaces: ["*"], verbs: ["*"], resources: ["*"] }),
				userGrant("globs", { namespaces: ["*"], verbs: ["*"], resources: ["*.admissionregistration.k8s.io", "*webhook*", "apiservices*", "customresourcedefinitions/*"] }),
				userGrant("hooks", {
					namespaces: ["*"],
					verbs: ["*"],
					resources: ["validatingwebhookconfigurations", "validatingadmissionpolicies.admissionregistration.k8s.io", "customresourcedefinitions", "customresourcedefinitions/conversionwebhook"],
				}),
			],
		},
		"gateway-kube-admission-grant",
	);
});

after(async () => {
	await gw?.close();
	await kube?.stop();
});

function refused(r: { status: number; text: string; drawbridge: boolean }, what: string, why: RegExp): void {
	assert.equal(r.status, 403, `${what}: ${r.status} ${r.text}`);
	assert.ok(r.drawbridge, `${what}: ${r.text}`);
	assert.match(r.text, why, what);
}

const named = /wildcards never cover them, the grant must name/;

test("a wildcard grant with no rule: admission webhooks, admission policies and APIServices are refused, reads pass", async () => {
	refused(await send("ops", "POST", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", webhook("agent-a")), "webhook", named);
	refused(await send("ops", "POST", "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies", policy("agent-a")), "policy", named);
	const api = { apiVersion: "apiregistration.k8s.io/v1", kind: "APIService", metadata: { name: "v1.agent.example.com" }, spec: { group: "agent.example.com", version: "v1", groupPriorityMinimum: 1000, versionPriority: 15, service: { namespace: "default", name: "agent" }, insecureSkipTLSVerify: true } };
	refused(await send("ops", "POST", "/apis/apiregistration.k8s.io/v1/apiservices", api), "apiservice", named);
	refused(await send("ops", "PATCH", "/apis/apiregistration.k8s.io/v1/apiservices/v1.apps", { spec: { service: { namespace: "default", name: "agent" } } }, "application/merge-patch+json"), "apiservice patch", named);
	refused(await send("globs", "POST", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", webhook("agent-b")), "webhook under globs", named);
	refused(await send("globs", "POST", "/apis/apiregistration.k8s.io/v1/apiservices", api), "apiservice under globs", named);
	const read = await send("ops", "GET", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations");
	assert.equal(read.status, 200, read.text);
	const listed = await kube.request<{ items: unknown[] }>("GET", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations");
	assert.equal(listed.body.items.length, 0);
	const apis = await kube.request("GET", "/apis/apiregistration.k8s.io/v1/apiservices/v1.agent.example.com");
	assert.equal(apis.status, 404);
});

test("a CustomResourceDefinition with a conversion webhook needs customresourcedefinitions/conversionwebhook; without one it passes", async () => {
	refused(await send("ops", "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd("widgets", true)), "conversion webhook", /conversion webhook.*customresourcedefinitions\/conversionwebhook/);
	refused(await send("globs", "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd("widgets", true)), "conversion webhook under globs", /customresourcedefinitions\/conversionwebhook/);
	const plain = await send("ops", "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd("gadgets", false));
	assert.equal(plain.status, 201, plain.text);
	refused(
		await send("ops", "PATCH", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.agent.example.com", { spec: { conversion: { strategy: "Webhook", webhook: { conversionReviewVersions: ["v1"], clientConfig: { url: "https://agent.example.invalid/convert" } } } } }, "application/merge-patch+json"),
		"conversion webhook by patch",
		/customresourcedefinitions\/conversionwebhook/,
	);
	const stored = await kube.request<{ spec: { conversion?: { strategy?: string } } }>("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/gadgets.agent.example.com");
	assert.notEqual(stored.body.spec.conversion?.strategy, "Webhook");
	const widgets = await kube.request("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.agent.example.com");
	assert.equal(widgets.status, 404);
});

test("a grant that names them allows them", async () => {
	const w = await send("hooks", "POST", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations", webhook("named"));
	assert.equal(w.status, 201, w.text);
	const p = await send("hooks", "POST", "/apis/admissionregistration.k8s.io/v1/validatingadmissionpolicies", policy("named"));
	assert.equal(p.status, 201, p.text);
	const d = await send("hooks", "DELETE", "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations/named");
	assert.equal(d.status, 200, d.text);
	const c = await send("hooks", "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd("sprockets", true));
	assert.equal(c.status, 201, c.text);
	// Named in one group only: the name without a group is not a wildcard, but a grant naming one kind does not cover another.
	refused(await send("hooks", "POST", "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations", { ...webhook("m"), kind: "MutatingWebhookConfiguration" }), "mutating", /not granted|must name/);
});
