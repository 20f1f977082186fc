// deploy/ and the Tiltfile against a real kube-apiserver: every overlay passes a server-side dry run
// (admission, schema and RBAC validation by the apiserver itself), the workloads meet the
// `restricted` Pod Security Standard, and every file the Tiltfile references exists and is valid.
import assert from "node:assert/strict";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { parseAllDocuments } from "yaml";
import { type KubeHandle, makeTempDir, printLogsOnFailure, startKube } from "../env/index.ts";

const ROOT = join(import.meta.dirname, "..", "..");
let kube: KubeHandle;

// A stand-in for the Prometheus Operator's CRD (not installable here): only its group/kind/version,
// so the production overlay's ServiceMonitors can be dry-run. Named as what it is.
const SERVICEMONITOR_CRD_STANDIN = {
	apiVersion: "apiextensions.k8s.io/v1",
	kind: "CustomResourceDefinition",
	metadata: { name: "servicemonitors.monitoring.coreos.com" },
	spec: {
		group: "monitoring.coreos.com",
		names: { kind: "ServiceMonitor", plural: "servicemonitors", singular: "servicemonitor", listKind: "ServiceMonitorList" },
		scope: "Namespaced",
		versions: [{ name: "v1", served: true, storage: true, schema: { openAPIV3Schema: { type: "object", "x-kubernetes-preserve-unknown-fields": true } } }],
	},
};

before(async () => {
	kube = await startKube();
});
after(async () => {
	await kube?.stop();
});
printLogsOnFailure(() => [["kube-apiserver", kube]]);

async function kubectl(args: string[]): Promise<string> {
	const r = await kube.kubectl(args);
	assert.equal(r.code, 0, `kubectl ${args.join(" ")} failed:\n${r.stdout}\n${r.stderr}`);
	return r.stdout;
}

test("the dev and production overlays pass a server-side dry run", async () => {
	// Dry-run objects need their namespace and CRDs to exist for real.
	await kubectl(["apply", "--server-side", "-f", join(ROOT, "deploy/base/namespace.yaml")]);
	await kubectl(["apply", "--server-side", "-k", join(ROOT, "crds")]);
	const dir = makeTempDir("servicemonitor-crd");
	writeFileSync(join(dir, "crd.json"), JSON.stringify(SERVICEMONITOR_CRD_STANDIN));
	await kubectl(["apply", "-f", join(dir, "crd.json")]);
	await kubectl(["wait", "--for=condition=Established", "--timeout=60s", "crd/servicemonitors.monitoring.coreos.com", "crd/accessgrants.access.drawbridge.dev"]);
	for (const overlay of ["dev", "production"]) {
		const out = await kubectl(["apply", "--server-side", "--dry-run=server", "-k", join(ROOT, "deploy/overlays", overlay)]);
		assert.match(out, /deployment\.apps\/drawbridge-gateway serverside-applied \(server dry run\)/);
		assert.match(out, /deployment\.apps\/drawbridge-operator serverside-applied \(server dry run\)/);
		assert.match(out, /poddisruptionbudget\.policy\/drawbridge-gateway/);
		assert.match(out, /networkpolicy\.networking\.k8s\.io\/drawbridge-gateway/);
	}
});

test("workloads meet the restricted Pod Security Standard and the gateway runs at least 2 replicas", async () => {
	const rendered = await kubectl(["kustomize", join(ROOT, "deploy/overlays/production")]);
	// biome-ignore lint/suspicious/noExplicitAny: rendered manifests are walked structurally and asserted field by field
	const docs = parseAllDocuments(rendered).map((d) => d.toJSON() as Record<string, any>);
	const deployments = docs.filter((d) => d.kind === "Deployment");
	assert.deepEqual(deployments.map((d) => d.metadata.name).sort(), ["drawbridge-gateway", "drawbridge-operator"]);
	for (const d of deployments) {
		const pod = d.spec.template.spec;
		assert.equal(pod.securityContext.runAsNonRoot, true, d.metadata.name);
		assert.equal(pod.securityContext.seccompProfile.type, "RuntimeDefault", d.metadata.name);
		for (const c of pod.containers) {
			assert.equal(c.securityContext.allowPrivilegeEscalation, false);
			assert.equal(c.securityContext.readOnlyRootFilesystem, true);
			assert.deepEqual(c.securityContext.capabilities.drop, ["ALL"]);
			assert.ok(c.readinessProbe && c.livenessProbe, `${d.metadata.name} has probes`);
		}
	}
	const gateway = deployments.find((d) => d.metadata.name === "drawbridge-gateway")!;
	assert.ok(gateway.spec.replicas >= 2);
	const ns = docs.find((d) => d.kind === "Namespace")!;
	assert.equal(ns.metadata.labels["pod-security.kubernetes.io/enforce"], "restricted");
	// The namespace label makes the apiserver enforce it: a real (not dry-run) privileged pod is refused.
	const bad = await kube.kubectl([
		"run", "privileged-probe", "-n", "drawbridge-system", "--image=busybox", "--restart=Never",
		"--overrides", JSON.stringify({ spec: { containers: [{ name: "p", image: "busybox", securityContext: { privileged: true } }] } }),
	]);
	assert.notEqual(bad.code, 0);
	assert.match(bad.stderr, /violates PodSecurity "restricted/);
});

test("Dockerfiles build non-root Node 24 images with a healthcheck and a signal-forwarding init", () => {
	for (const name of ["Dockerfile.gateway", "Dockerfile.operator"]) {
		const text = readFileSync(join(ROOT, "deploy/images", name), "utf8");
		assert.match(text, /^FROM node:24-slim AS deps$/m, name);
		assert.equal((text.match(/^FROM /gm) ?? []).length, 2, `${name} is multi-stage`);
		assert.match(text, /^USER 10001:10001$/m, name);
		assert.match(text, /^HEALTHCHECK /m, name);
		assert.match(text, /ENTRYPOINT \["\/usr\/bin\/tini", "--"/, name);
		for (const m of text.matchAll(/^COPY (?!--from)(.+) \.\/?\S*$/gm)) {
			for (const src of (m[1] as string).split(" ")) assert.ok(existsSync(join(ROOT, src)), `${name}: COPY source ${src} exists`);
		}
	}
});

test("the Tiltfile references existing files, and its extra YAML passes a server-side dry run", async () => {
	const tilt = readFileSync(join(ROOT, "Tiltfile"), "utf8");
	const dockerfiles = [...tilt.matchAll(/dockerfile='([^']+)'/g)].map((m) => m[1] as string);
	assert.deepEqual(dockerfiles.sort(), ["deploy/images/Dockerfile.gateway", "deploy/images/Dockerfile.operator"]);
	const kustomizations = [...tilt.matchAll(/kustomize\('([^']+)'\)/g)].map((m) => m[1] as string);
	assert.deepEqual(kustomizations, ["deploy/overlays/dev"]);
	const yamls = [...tilt.matchAll(/k8s_yaml\('([^']+)'\)/g)].map((m) => m[1] as string);
	assert.ok(yamls.length > 0);
	for (const f of [...dockerfiles, ...yamls]) assert.ok(existsSync(join(ROOT, f)), `${f} exists`);
	const synced = [...tilt.matchAll(/sync\('([^']+)'/g)].map((m) => m[1] as string);
	for (const f of synced) assert.ok(existsSync(join(ROOT, f)), `live_update source ${f} exists`);
	await kubectl(["apply", "--server-side", "-f", join(ROOT, "deploy/base/namespace.yaml")]);
	for (const f of yamls) {
		const out = await kubectl(["apply", "--server-side", "--dry-run=server", "-f", join(ROOT, f)]);
		assert.match(out, /server dry run/);
	}
	// Every resource the Tiltfile port-forwards is a workload it deploys.
	const rendered = await kubectl(["kustomize", join(ROOT, "deploy/overlays/dev")]);
	const names = new Set(
		[...parseAllDocuments(rendered), ...yamls.flatMap((f) => parseAllDocuments(readFileSync(join(ROOT, f), "utf8")))]
			.map((d) => d.toJSON() as { kind?: string; metadata?: { name?: string } })
			.filter((d) => d?.kind === "Deployment")
			.map((d) => d.metadata?.name),
	);
	for (const m of tilt.matchAll(/k8s_resource\('([^']+)'/g)) assert.ok(names.has(m[1]), `${m[1]} is deployed`);
});

test("the gateway pins recording keys the operator makes, and may keep the bundle high-water mark", async () => {
	const rendered = await kubectl(["kustomize", join(ROOT, "deploy/overlays/production")]);
	// biome-ignore lint/suspicious/noExplicitAny: rendered manifests are walked structurally and asserted field by field
	const docs = parseAllDocuments(rendered).map((d) => d.toJSON() as Record<string, any>);
	const pod = docs.find((d) => d.kind === "Deployment" && d.metadata.name === "drawbridge-gateway")!.spec.template.spec;
	const c = pod.containers[0];
	const env = Object.fromEntries(c.env.map((e: { name: string; value?: string }) => [e.name, e.value]));
	// A file path in a mounted volume, and that volume's source.
	const sourceOf = (file: string) => {
		const mount = c.volumeMounts.find((m: { mountPath: string }) => file.startsWith(`${m.mountPath}/`));
		assert.ok(mount, `${file} is in a mounted volume`);
		return { key: file.slice(mount.mountPath.length + 1), volume: pod.volumes.find((v: { name: string }) => v.name === mount.name) };
	};
	// Without --recording-trusted-keys-file the viewer trusts keys found in the bucket itself.
	const trusted = sourceOf(env.DRAWBRIDGE_RECORDING_TRUSTED_KEYS_FILE);
	assert.deepEqual([trusted.volume.configMap?.name, trusted.key], ["drawbridge-recording-trusted-keys", "keys.json"]);
	const key = sourceOf(env.DRAWBRIDGE_RECORDING_KEY_FILE);
	assert.deepEqual([key.volume.secret?.secretName, key.key], ["drawbridge-recording-key", "recording-key.jwk"]);
	assert.equal(trusted.volume.configMap.optional, undefined, "a pod never starts unpinned");

	// RBAC, applied for real and asked of the apiserver.
	await kubectl(["apply", "--server-side", "-f", join(ROOT, "deploy/base/namespace.yaml")]);
	const rbac = docs.filter((d) => ["ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"].includes(d.kind));
	const dir = makeTempDir("deploy-rbac");
	writeFileSync(join(dir, "rbac.json"), JSON.stringify({ apiVersion: "v1", kind: "List", items: rbac }));
	await kubectl(["apply", "-f", join(dir, "rbac.json")]);
	const can = async (sa: string, ...args: string[]) =>
		(await kube.kubectl(["auth", "can-i", ...args, "-n", "drawbridge-system", `--as=system:serviceaccount:drawbridge-system:${sa}`])).stdout.trim();
	assert.equal(await can("drawbridge-gateway", "update", "configmaps/drawbridge-gateway-bundle-highwater"), "yes");
	assert.equal(await can("drawbridge-gateway", "update", "configmaps/drawbridge-recording-trusted-keys"), "no", "gateways cannot widen the pinned set");
	assert.equal(await can("drawbridge-gateway", "get", "secrets/drawbridge-recording-key"), "no", "the key reaches the gateway as a volume, not through its token");
	assert.equal(await can("drawbridge-operator", "update", "configmaps/drawbridge-recording-trusted-keys"), "yes");
	assert.equal(await can("drawbridge-operator", "get", "configmaps/drawbridge-gateway-bundle-highwater"), "yes");
});
