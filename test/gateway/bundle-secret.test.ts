// A gateway started before the operator has written its bundle Secret (a fresh install) stays alive
// and not ready, then becomes ready as soon as the Secret appears: no crash loop.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { BUNDLE_API_VERSION } from "../../gateway/config/bundle.ts";
import { sealBundle } from "../../gateway/config/canonical.ts";
import { freePort, type KubeHandle, makeTempDir, printLogsOnFailure, startKube } from "../env/index.ts";

const ROOT = join(import.meta.dirname, "..", "..");
let kube: KubeHandle;
let log = "";

before(async () => {
	kube = await startKube();
});
after(async () => {
	await kube?.stop();
});
printLogsOnFailure(() => [["kube", kube], ["gateway", { logs: () => log }]]);

async function readyz(port: number): Promise<{ status: number; body: { problems?: string[]; bundleVersion?: number } } | undefined> {
	try {
		const r = await fetch(`http://127.0.0.1:${port}/readyz`);
		return { status: r.status, body: (await r.json()) as never };
	} catch {
		return undefined;
	}
}

test("the gateway waits, alive and not ready, for a bundle Secret that does not exist yet", { timeout: 120_000 }, async () => {
	await kube.createNamespace("drawbridge-system");
	const dir = makeTempDir("gateway-bundle-secret");
	const adminPort = await freePort();
	const child = spawn(
		process.execPath,
		[join(ROOT, "bin", "drawbridge.mjs"), "gateway", "--bundle-secret", "drawbridge-system/drawbridge-gateway-bundle", "--recordings-dir", join(dir, "rec"), "--spool-dir", join(dir, "spool"), "--approvals", `local:${join(dir, "approvals")}`, "--admin-listen", `127.0.0.1:${adminPort}`],
		{ cwd: ROOT, env: { ...process.env, KUBECONFIG: kube.kubeconfigPath }, stdio: ["ignore", "pipe", "pipe"] },
	);
	child.stdout.on("data", (d: Buffer) => (log += d));
	child.stderr.on("data", (d: Buffer) => (log += d));
	try {
		let first: Awaited<ReturnType<typeof readyz>>;
		const deadline = Date.now() + 60_000;
		while (!(first = await readyz(adminPort))) {
			assert.equal(child.exitCode, null, `gateway exited:\n${log}`);
			assert.ok(Date.now() < deadline, `admin never answered:\n${log}`);
			await new Promise((r) => setTimeout(r, 200));
		}
		assert.equal(first.status, 503);
		assert.ok(first.body.problems?.some((p) => /no config bundle/.test(p)), JSON.stringify(first.body));
		assert.equal((await fetch(`http://127.0.0.1:${adminPort}/healthz`)).status, 200);
		await new Promise((r) => setTimeout(r, 3000));
		assert.equal(child.exitCode, null, `gateway must keep waiting, not exit:\n${log}`);

		const bundle = sealBundle({
			apiVersion: BUNDLE_API_VERSION, version: 5, generatedAt: new Date().toISOString(), issuers: [], connections: [], grants: [],
			maskingPolicies: [], guardrailPolicies: [], credentials: {}, maskingKey: Buffer.alloc(32, 1).toString("base64"),
		});
		const r = await kube.request("POST", "/api/v1/namespaces/drawbridge-system/secrets", {
			apiVersion: "v1", kind: "Secret", metadata: { name: "drawbridge-gateway-bundle" }, data: { "bundle.json": Buffer.from(JSON.stringify(bundle)).toString("base64") },
		});
		assert.equal(r.status, 201);
		const until = Date.now() + 30_000;
		for (;;) {
			const s = await readyz(adminPort);
			if (s?.status === 200) {
				assert.equal(s.body.bundleVersion, 5);
				break;
			}
			assert.ok(Date.now() < until, `not ready after the Secret appeared:\n${log}`);
			await new Promise((r) => setTimeout(r, 200));
		}
	} finally {
		child.kill("SIGKILL");
	}
});
