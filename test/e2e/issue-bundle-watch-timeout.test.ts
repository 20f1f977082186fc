/**
 * Regression test for a bug found by the e2e journeys: the gateway logged "config bundle watch
 * error" at warn level every 30 seconds. client-node's Watch closes a watch that carried no event for
 * 30 s (TimeoutError), which is the normal state of a bundle Secret that changes only when grants
 * change; the source reported it as an error and waited a second before watching again. Now the
 * inactivity cutoff re-watches at once and quietly, and a change made afterwards still arrives.
 * Also covers the injectable KubeConfig (the source no longer needs KUBECONFIG in the environment).
 */
import assert from "node:assert/strict";
import { setTimeout as sleep } from "node:timers/promises";
import { after, before, test } from "node:test";
import { KubeConfig } from "@kubernetes/client-node";
import { exportJWK, generateKeyPair } from "jose";
import { BUNDLE_API_VERSION, type ConfigBundle } from "../../gateway/config/bundle.ts";
import { sealBundle } from "../../gateway/config/canonical.ts";
import { KubeSecretBundleSource } from "../../gateway/config/sources.ts";
import { BundleStore } from "../../gateway/config/store.ts";
import { type KubeHandle, printLogsOnFailure, startKube } from "../env/index.ts";

const NS = "drawbridge-system";
const NAME = "drawbridge-gateway-bundle";
let kube: KubeHandle;
let jwk: Record<string, unknown>;

before(async () => {
	kube = await startKube();
	await kube.createNamespace(NS);
	const { publicKey } = await generateKeyPair("EdDSA", { crv: "Ed25519" });
	jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "EdDSA" };
});
after(async () => {
	await kube?.stop();
});
printLogsOnFailure(() => [["kube", kube]]);

function bundle(version: number): ConfigBundle {
	return sealBundle({
		apiVersion: BUNDLE_API_VERSION,
		version,
		generatedAt: new Date().toISOString(),
		issuers: [{ name: "op", kind: "drawbridge", issuer: "https://op.test", audiences: ["drawbridge-gateway"], jwks: { keys: [jwk] }, algorithms: ["EdDSA"] }],
		connections: [],
		grants: [],
		maskingPolicies: [],
		guardrailPolicies: [],
		credentials: {},
		maskingKey: Buffer.alloc(32, 7).toString("base64"),
	});
}

async function writeSecret(version: number): Promise<void> {
	const secret = { apiVersion: "v1", kind: "Secret", metadata: { name: NAME, namespace: NS }, stringData: { "bundle.json": JSON.stringify(bundle(version)) } };
	const r = await kube.kubectl(["apply", "-f", "-"], { input: JSON.stringify(secret) });
	assert.equal(r.code, 0, r.stderr);
}

test("issue-bundle-watch-timeout: a quiet bundle Secret is no error; a change after the watch's inactivity cutoff still arrives", { timeout: 120_000 }, async () => {
	await writeSecret(1);
	const kc = new KubeConfig();
	kc.loadFromFile(kube.kubeconfigPath);
	const store = new BundleStore();
	const version = () => store.current.version;
	const errors: unknown[] = [];
	const source = new KubeSecretBundleSource(store, { namespace: NS, name: NAME, kubeConfig: kc, onError: (e) => errors.push(e) });
	await source.start();
	try {
		assert.equal(version(), 1);
		// client-node closes a watch after 30 s without an event; nothing to wait for but time.
		await sleep(34_000);
		assert.deepEqual(errors.map(String), [], "the inactivity cutoff is not reported as an error");
		await writeSecret(2);
		const deadline = Date.now() + 10_000;
		while (version() !== 2 && Date.now() < deadline) await sleep(100);
		assert.equal(version(), 2, "the change after the cutoff arrived");
	} finally {
		await source.stop();
	}
});
