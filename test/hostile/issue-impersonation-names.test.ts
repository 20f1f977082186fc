/**
 * Regression (red-team of identity mapping on the Kubernetes path): the user name the gateway checks
 * was not the user name the apiserver impersonated. The gateway sends it as the `Impersonate-User`
 * header value, and
 * - HTTP trims spaces and tabs around a header value: an OIDC user who chose `preferred_username`
 *   ` alice` (or `alice\t`), holding only a group grant, was impersonated as alice, with alice's RBAC
 *   and alice in the audit log; ` system:serviceaccount:kube-system:fake-ctl` passed the gateway's
 *   `system:` check (it starts with a space) and became that service account;
 * - Node writes a string header as Latin-1 and Go reads the bytes as UTF-8: `mÃ¼ller` went out as the
 *   UTF-8 bytes of `müller` and was impersonated as müller, while müller himself went out as one byte
 *   0xFC that matches no RBAC subject.
 * Now OIDC user names with surrounding whitespace or control characters are refused at verification
 * (401; such groups are dropped), no impersonated name or group is ever padded, and the header values
 * are sent as UTF-8: each name reaches RBAC exactly as the gateway matched it.
 */
import assert from "node:assert/strict";
import https from "node:https";
import { after, before, describe, test } from "node:test";
import { type KubeListener, startKubeListener } from "../../gateway/kube/listener.ts";
import { issueCert, type KubeHandle, startKube } from "../env/index.ts";
import { kubeConnection, userGrant } from "../kube/fixtures.ts";
import { approvalService, makeBundle, MemoryRecorder, storeWith, type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;

async function get(sub: string, groups: string[]): Promise<{ status: number; text: string; drawbridge: boolean }> {
	const token = await issuer.token(sub, { groups });
	return new Promise((resolve, reject) => {
		https
			.get(
				{
					hostname: "127.0.0.1",
					port: gw.address.port,
					path: "/k8s/cluster-prod/api/v1/namespaces/payments/configmaps/billing",
					ca: kube.caPem,
					headers: { authorization: `Bearer ${token}` },
				},
				(res) => {
					let text = "";
					res.on("data", (c: Buffer) => (text += c.toString()));
					res.on("end", () => resolve({ status: res.statusCode ?? 0, text, drawbridge: /"kind":"drawbridge"/.test(text) }));
				},
			)
			.on("error", reject);
	});
}

async function kubectl(args: string[]): Promise<void> {
	const r = await kube.kubectl(args);
	assert.equal(r.code, 0, r.stderr);
}

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	await kube.createNamespace("payments");
	await kubectl(["-n", "payments", "create", "configmap", "billing", "--from-literal=k=billing-marker-42"]);
	// Who may read it in the cluster: alice, müller and one service account. mallory may not.
	await kubectl(["-n", "payments", "create", "role", "cm-reader", "--verb=get,list", "--resource=configmaps"]);
	await kubectl(["-n", "payments", "create", "rolebinding", "alice-cm", "--role=cm-reader", "--user=alice"]);
	await kubectl(["-n", "payments", "create", "rolebinding", "muller-cm", "--role=cm-reader", "--user=müller"]);
	await kubectl(["-n", "payments", "create", "rolebinding", "ctl-cm", "--role=cm-reader", "--serviceaccount=kube-system:fake-ctl"]);
	// RBAC reads bindings through an informer: wait until the apiserver itself says yes.
	for (const who of ["alice", "müller", "system:serviceaccount:kube-system:fake-ctl"]) {
		const deadline = Date.now() + 60_000;
		for (;;) {
			const r = await kube.kubectl(["auth", "can-i", "get", "configmaps", "-n", "payments", `--as=${who}`]);
			if (r.stdout.trim() === "yes") break;
			if (Date.now() > deadline) throw new Error(`RBAC for ${who} never became visible: ${r.stdout} ${r.stderr}`);
			await new Promise((res) => setTimeout(res, 200));
		}
	}
	const cert = await issueCert(kube.ca, { cn: "drawbridge-gateway", ips: ["127.0.0.1"], dns: ["localhost"], name: "gateway-impersonation-names" });
	const store = storeWith(
		makeBundle(issuer, {
			connections: [kubeConnection(kube)],
			grants: [
				{
					...userGrant("contractors", { namespaces: ["payments"], verbs: ["get", "list"], resources: ["configmaps"] }),
					subjects: [{ kind: "Group", name: "contractors" }],
				},
			],
			credentials: { "kube-gw": { type: "kubernetes", clientCertPem: kube.adminCertPem, clientKeyPem: kube.adminKeyPem } },
		}),
	);
	gw = await startKubeListener({
		store,
		recorder: new MemoryRecorder(),
		approvals: approvalService(),
		tls: { certPem: cert.certPem, keyPem: cert.keyPem },
		sessionIdleMs: 500,
	});
});

after(async () => {
	await gw?.close();
	await kube?.stop();
});

describe("issue impersonation-names: the apiserver impersonates exactly the name the gateway matched", () => {
	test("control: the grant lets contractors through, RBAC decides: mallory is forbidden by the apiserver, alice may read", async () => {
		const mallory = await get("mallory", ["contractors"]);
		assert.equal(mallory.status, 403, mallory.text);
		assert.ok(!mallory.drawbridge, "the apiserver, not the gateway, refuses mallory");
		const alice = await get("alice", ["contractors"]);
		assert.equal(alice.status, 200, alice.text);
		assert.match(alice.text, /billing-marker-42/);
	});

	test("a padded user name is refused, never impersonated as the trimmed one", async () => {
		for (const sub of [" alice", "alice ", "alice\t", "\talice", " system:serviceaccount:kube-system:fake-ctl", "alice\u0085"]) {
			const r = await get(sub, ["contractors"]);
			assert.equal(r.status, 401, `${JSON.stringify(sub)}: ${r.status} ${r.text}`);
			assert.doesNotMatch(r.text, /billing-marker-42/);
			assert.match(r.text, /whitespace or control characters/);
		}
	});

	test("non-ASCII names reach RBAC as written: müller reads, mÃ¼ller (his name's UTF-8 read as Latin-1) does not", async () => {
		const muller = await get("müller", ["contractors"]);
		assert.equal(muller.status, 200, muller.text);
		const mojibake = await get("mÃ¼ller", ["contractors"]);
		assert.equal(mojibake.status, 403, mojibake.text);
		assert.ok(!mojibake.drawbridge, "refused by RBAC for the user mÃ¼ller");
		assert.doesNotMatch(mojibake.text, /billing-marker-42/);
	});

	test("a padded group from the token is dropped (it matches no grant subject)", async () => {
		const r = await get("alice", [" contractors"]);
		assert.equal(r.status, 403, r.text);
		assert.ok(r.drawbridge, "refused by the gateway: no grant");
	});
});
