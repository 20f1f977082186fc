// The shipped deployment verified recordings against keys found in the bucket itself: deploy/base set
// no --recording-trusted-keys-file and every gateway pod generated a key of its own. Now the operator
// (as its ServiceAccount, exactly deploy/base/operator-rbac.yaml) makes one recording key for all
// replicas (Secret drawbridge-recording-key) and the public set to pin (ConfigMap
// drawbridge-recording-trusted-keys, keys only added, so a rotated-out key keeps verifying), and a real
// gateway given the two files, as deploy/base mounts them, signs with that key and pins to that set.
// Real kube-apiserver; real gateway process.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { parseAllDocuments } from "yaml";
import { BUNDLE_API_VERSION } from "../../gateway/config/bundle.ts";
import { sealBundle } from "../../gateway/config/canonical.ts";
import { readPublicJwksFile, recordingKeyFromJwk } from "../../gateway/recording/keys.ts";
import { KubeClient } from "../../operator/kube/client.ts";
import { parseOptions } from "../../operator/options.ts";
import { ensureRecordingKeys } from "../../operator/reconcile/stores.ts";
import { freePort, type KubeHandle, makeTempDir, printLogsOnFailure, startKube } from "../env/index.ts";

const ROOT = join(import.meta.dirname, "..", "..");
const NS = "drawbridge-system";
let kube: KubeHandle;
let dir: string;
let log = "";

before(async () => {
	kube = await startKube();
	dir = makeTempDir("recording-keys");
});
after(async () => {
	await kube?.stop();
});
printLogsOnFailure(() => [["kube", kube], ["gateway", { logs: () => log }]]);

async function operatorClient(): Promise<KubeClient> {
	await kube.createNamespace(NS);
	const kinds = new Set(["ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"]);
	const items = parseAllDocuments(readFileSync(join(ROOT, "deploy/base/operator-rbac.yaml"), "utf8"))
		.map((d) => d.toJS() as { kind?: string } | null)
		.filter((o) => !!o && kinds.has(o.kind ?? ""));
	const r = await kube.kubectl(["apply", "-f", "-"], { input: JSON.stringify({ apiVersion: "v1", kind: "List", items }) });
	assert.equal(r.code, 0, r.stderr);
	const token = await kube.serviceAccountToken(NS, "drawbridge-operator", { expirationSeconds: 3600 });
	const path = join(dir, "operator.kubeconfig");
	writeFileSync(path, JSON.stringify({
		apiVersion: "v1", kind: "Config",
		clusters: [{ name: "t", cluster: { server: kube.url, "certificate-authority": kube.caFile } }],
		users: [{ name: "op", user: { token } }],
		contexts: [{ name: "t", context: { cluster: "t", user: "op" } }],
		"current-context": "t",
	}));
	return KubeClient.create(path);
}

async function read(kind: "secrets" | "configmaps", name: string): Promise<Record<string, string>> {
	const r = await kube.request<{ data: Record<string, string> }>("GET", `/api/v1/namespaces/${NS}/${kind}/${name}`);
	assert.equal(r.status, 200, `${kind}/${name}`);
	return kind === "secrets" ? Object.fromEntries(Object.entries(r.body.data).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")])) : r.body.data;
}

test("the operator makes one recording key and the public set gateways and auditors pin; a gateway given both pins to it", { timeout: 180_000 }, async () => {
	const opts = parseOptions(["--namespace", NS], {});
	assert.notEqual(opts, "help");
	const { recordingKeySecretName: secretName, recordingTrustedKeysConfigMapName: cmName } = opts as Exclude<typeof opts, "help">;
	// The names deploy/base/gateway.yaml mounts are the operator's.
	const gatewayYaml = readFileSync(join(ROOT, "deploy/base/gateway.yaml"), "utf8");
	assert.match(gatewayYaml, new RegExp(`secretName: ${secretName}\\b`));
	assert.match(gatewayYaml, new RegExp(`configMap: \\{ name: ${cmName} \\}`));

	const client = await operatorClient();
	const first = await ensureRecordingKeys(client, NS, secretName, cmName);
	assert.deepEqual(await ensureRecordingKeys(client, NS, secretName, cmName), first, "idempotent");
	const key1 = await recordingKeyFromJwk(JSON.parse((await read("secrets", secretName))["recording-key.jwk"]!));
	assert.equal(key1.kid, first.kid);

	// Rotation: the Secret deleted, a new key made; the old one stays in the pinned set.
	assert.equal((await kube.request("DELETE", `/api/v1/namespaces/${NS}/secrets/${secretName}`)).status, 200);
	const second = await ensureRecordingKeys(client, NS, secretName, cmName);
	assert.notEqual(second.kid, first.kid);
	const keyFile = join(dir, "recording-key.jwk");
	const trustedFile = join(dir, "keys.json");
	writeFileSync(keyFile, (await read("secrets", secretName))["recording-key.jwk"]!);
	writeFileSync(trustedFile, (await read("configmaps", cmName))["keys.json"]!);
	assert.deepEqual((await readPublicJwksFile(trustedFile)).map((k) => k.kid), [first.kid, second.kid], "the gateway reads the set as a valid, honestly named JWKS");

	// A real gateway with both files (as the Deployment mounts them): pinned, no warning, serves exactly the set.
	const bundleFile = join(dir, "bundle.json");
	writeFileSync(bundleFile, JSON.stringify(sealBundle({
		apiVersion: BUNDLE_API_VERSION, version: 1, generatedAt: new Date().toISOString(), issuers: [], connections: [], grants: [],
		maskingPolicies: [], guardrailPolicies: [], credentials: {}, maskingKey: Buffer.alloc(32, 2).toString("base64"),
	})));
	const admin = await freePort();
	const child = spawn(process.execPath, [join(ROOT, "bin", "drawbridge.mjs"), "gateway", "--bundle-file", bundleFile, "--recordings-dir", join(dir, "rec"), "--spool-dir", join(dir, "spool"), "--approvals", `local:${join(dir, "approvals")}`, "--admin-listen", `127.0.0.1:${admin}`], {
		cwd: ROOT,
		env: { ...process.env, DRAWBRIDGE_RECORDING_KEY_FILE: keyFile, DRAWBRIDGE_RECORDING_TRUSTED_KEYS_FILE: trustedFile },
		stdio: ["ignore", "pipe", "pipe"],
	});
	child.stdout.on("data", (d: Buffer) => (log += d));
	child.stderr.on("data", (d: Buffer) => (log += d));
	try {
		const deadline = Date.now() + 60_000;
		let keys: { keys: { kid: string; d?: string }[] } | undefined;
		while (!keys) {
			assert.equal(child.exitCode, null, log);
			assert.ok(Date.now() < deadline, `gateway never answered:\n${log}`);
			try {
				const r = await fetch(`http://127.0.0.1:${admin}/api/v1/recordings/keys`);
				if (r.ok) keys = (await r.json()) as never;
			} catch {
				await new Promise((r) => setTimeout(r, 200));
			}
		}
		assert.deepEqual(keys.keys.map((k) => k.kid).sort(), [first.kid, second.kid].sort());
		assert.ok(keys.keys.every((k) => k.d === undefined));
		assert.doesNotMatch(log, /recording keys are not pinned/);
	} finally {
		child.kill("SIGKILL");
	}

	// Without the pin (what deploy/base did before): the gateway says so loudly at start.
	log = "";
	const unpinned = spawn(process.execPath, [join(ROOT, "bin", "drawbridge.mjs"), "gateway", "--bundle-file", bundleFile, "--recordings-dir", join(dir, "rec2"), "--spool-dir", join(dir, "spool2"), "--approvals", `local:${join(dir, "approvals2")}`, "--admin-listen", `127.0.0.1:${await freePort()}`], {
		cwd: ROOT,
		stdio: ["ignore", "pipe", "pipe"],
	});
	unpinned.stdout.on("data", (d: Buffer) => (log += d));
	unpinned.stderr.on("data", (d: Buffer) => (log += d));
	try {
		const deadline = Date.now() + 60_000;
		while (!/recording keys are not pinned/.test(log)) {
			assert.equal(unpinned.exitCode, null, log);
			assert.ok(Date.now() < deadline, `no warning:\n${log}`);
			await new Promise((r) => setTimeout(r, 200));
		}
		assert.match(log, /"level":40.*whoever can write the bucket can forge a recording that shows verified/);
	} finally {
		unpinned.kill("SIGKILL");
	}
});
