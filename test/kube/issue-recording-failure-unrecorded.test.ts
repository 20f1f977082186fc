/**
 * Regression (recordings red-team round 10, unrecorded actions): the Kubernetes twin of
 * test/postgres/issue-recording-failure-unrecorded.test.ts. When the spool stopped taking a recording
 * session's events (its folder gone, a disk failure), no data path was told (none passed
 * `onFailure`): through the real gateway (real recorder) to a real kube-apiserver, an open watch kept
 * streaming and later requests of the same token were served into a recording that dropped them. Now
 * the recording session ends with its streams; the next request opens a new recording (or is
 * refused when the spool cannot take one).
 */
import assert from "node:assert/strict";
import { mkdtemp, readdir, rm } from "node:fs/promises";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { type KubeListener, startKubeListener } from "../../gateway/kube/listener.ts";
import { generateRecordingKey } from "../../gateway/recording/keys.ts";
import { DiskRecorder } from "../../gateway/recording/recorder.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { issueCert, type KubeHandle, startKube } from "../env/index.ts";
import { approvalService, makeBundle, storeWith, type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";
import { kubeConnection, kubeCredentials, userGrant } from "./fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
let rec: DiskRecorder;
let spool: string;

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	await kube.createNamespace("prod");
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	spool = await mkdtemp(join(tmpdir(), "drawbridge-kube-recfail-spool-"));
	const store = new DirStore(await mkdtemp(join(tmpdir(), "drawbridge-kube-recfail-store-")));
	await store.init();
	rec = new DiskRecorder({ spoolDir: spool, store, key: (await generateRecordingKey()).key, flushIntervalMs: 20, logger: { info() {}, warn() {}, error() {} } });
	await rec.start();
	const cert = await issueCert(kube.ca, { cn: "drawbridge-gateway", ips: ["127.0.0.1"], dns: ["localhost"], name: "gateway-kube-recfail" });
	gw = await startKubeListener({
		store: storeWith(
			makeBundle(issuer, {
				connections: [kubeConnection(kube)],
				grants: [userGrant("admin", { namespaces: ["*"], verbs: ["*"], resources: ["*"] })],
				credentials: kubeCredentials(kube),
			}),
		),
		recorder: rec,
		approvals: approvalService(),
		tls: { certPem: cert.certPem, keyPem: cert.keyPem },
		sessionIdleMs: 60_000,
	});
});

after(async () => {
	await gw?.close();
	await rec?.stop();
	await kube?.stop();
});

function get(path: string, token: string, onResponse: (res: import("node:http").IncomingMessage) => void): import("node:http").ClientRequest {
	return https.get(`https://127.0.0.1:${gw.address.port}/k8s/cluster-prod${path}`, { ca: kube.caPem, agent: false, headers: { authorization: `Bearer ${token}` } }, onResponse);
}

test("a watch whose recording fails is ended, not streamed unrecorded", async () => {
	const token = await issuer.token("admin", { groups: ["agents"] });
	let ended = false;
	let text = "";
	const watchEnded = new Promise<void>((resolve) => {
		const end = () => {
			ended = true;
			resolve();
		};
		const req = get("/api/v1/namespaces/prod/configmaps?watch=1", token, (res) => {
			res.setEncoding("utf8");
			res.on("data", (c: string) => (text += c));
			res.on("end", end);
			res.on("close", end);
		});
		req.on("error", end);
	});
	// the watch's recording session is open: its spool folder disappears under the recorder
	let sessions: string[] = [];
	for (let i = 0; i < 600 && sessions.length === 0; i++) {
		sessions = await readdir(join(spool, "sessions")).catch(() => []);
		if (sessions.length === 0) await new Promise((r) => setTimeout(r, 100));
	}
	assert.equal(sessions.length, 1, JSON.stringify(sessions));
	await rm(join(spool, "sessions", sessions[0]!), { recursive: true, force: true });
	// a request of the same token is recorded into that session: the spool refuses it
	const status = await new Promise<number>((resolve, reject) => get("/api/v1/namespaces/prod/configmaps", token, (res) => {
		res.resume();
		res.on("end", () => resolve(res.statusCode ?? 0));
	}).on("error", reject));
	assert.equal(status, 200);
	const timeout = new Promise<void>((resolve) => setTimeout(resolve, 60_000).unref());
	await Promise.race([watchEnded, timeout]);
	assert.equal(ended, true, `the watch went on unrecorded: ${text.slice(-300)}`);
	assert.match(text, /recording failed/);
});
