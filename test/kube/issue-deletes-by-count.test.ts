/**
 * Deletes by another name, round 10 (lead 3): writes that set a workload's count to zero or trim its
 * history to nothing, under a rule blocking deletes of pods, Jobs, ReplicaSets and ControllerRevisions
 * in prod and a cluster-wide grant. Real gateway, real kube-apiserver whose RBAC allows everything.
 *
 * On the old code each was forwarded: `kubectl scale --replicas=0` (the `scale` subresource), a patch
 * or update setting `replicas: 0` (merge, JSON patch), a Job's `suspend: true` or `parallelism: 0`, a
 * CronJob's `successfulJobsHistoryLimit: 0`, a Deployment's `revisionHistoryLimit: 0`. Their controllers
 * then delete every pod of the workload, the running pods of the Job, the CronJob's finished Jobs, the
 * old ReplicaSets (a Job's `ttlSecondsAfterFinished` was already a delete of the Job). The test control
 * plane has no controller-manager: the test asserts the write is refused and the object unchanged.
 * Scaling to a non-zero count, and the same writes in staging, still pass. See gateway/kube/README.md,
 * "Deletes by another name".
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { bodyHandsOver } from "../../gateway/kube/handover.ts";
import { generateKubeconfig } from "../../gateway/kube/kubeconfig.ts";
import type { KubeListener } from "../../gateway/kube/listener.ts";
import { KUBECTL, type KubeHandle, run, startKube } from "../env/index.ts";
import { type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";
import { httpsText, kubeGateway, userGrant } from "./fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
const dir = mkdtempSync(join(tmpdir(), "kube-count-deletes-"));

async function send(method: string, path: string, body?: string, contentType = "application/merge-patch+json") {
	const token = await issuer.token("ops", { groups: ["agents"] });
	return httpsText(
		{
			hostname: "127.0.0.1",
			port: gw.address.port,
			method,
			path: `/k8s/cluster-prod${path}`,
			ca: kube.caPem,
			headers: { authorization: `Bearer ${token}`, ...(body !== undefined ? { "content-type": contentType } : {}) },
		},
		body,
	);
}

function refused(r: { status: number; text: string; drawbridge: boolean }, what: string, why: RegExp): void {
	assert.equal(r.status, 403, `${what}: ${r.status} ${r.text}`);
	assert.ok(r.drawbridge, `${what}: ${r.text}`);
	assert.match(r.text, /prod-deletes/, what);
	assert.match(r.text, why, what);
}

async function field(path: string, pick: (o: Record<string, unknown>) => unknown): Promise<unknown> {
	const r = await kube.request<Record<string, unknown>>("GET", path);
	assert.equal(r.status, 200, JSON.stringify(r.body));
	return pick(r.body);
}

const spec = (o: Record<string, unknown>) => o["spec"] as Record<string, unknown>;
const template = { metadata: { labels: { app: "web" } }, spec: { containers: [{ name: "web", image: "example.invalid/web:1" }] } };

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	for (const ns of ["prod", "staging"]) {
		await kube.createNamespace(ns);
		const objects: [string, Record<string, unknown>][] = [
			["/apis/apps/v1/namespaces/NS/deployments", { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "web" }, spec: { replicas: 3, selector: { matchLabels: { app: "web" } }, template } }],
			[
				"/apis/apps/v1/namespaces/NS/statefulsets",
				{ apiVersion: "apps/v1", kind: "StatefulSet", metadata: { name: "db" }, spec: { replicas: 2, serviceName: "db", selector: { matchLabels: { app: "web" } }, template } },
			],
			[
				"/apis/batch/v1/namespaces/NS/jobs",
				{
					apiVersion: "batch/v1",
					kind: "Job",
					metadata: { name: "migrate" },
					spec: { parallelism: 2, template: { spec: { restartPolicy: "Never", containers: [{ name: "m", image: "example.invalid/m:1" }] } } },
				},
			],
			[
				"/apis/batch/v1/namespaces/NS/cronjobs",
				{
					apiVersion: "batch/v1",
					kind: "CronJob",
					metadata: { name: "nightly" },
					spec: { schedule: "0 3 * * *", jobTemplate: { spec: { template: { spec: { restartPolicy: "Never", containers: [{ name: "n", image: "example.invalid/n:1" }] } } } } },
				},
			],
		];
		for (const [path, body] of objects) {
			const r = await kube.request("POST", path.replace("NS", ns), body);
			assert.equal(r.status, 201, JSON.stringify(r.body));
		}
	}
	gw = await kubeGateway(
		issuer,
		kube,
		{
			grants: [userGrant("ops", { namespaces: ["*"], verbs: ["*"], resources: ["*"] })],
			guardrailPolicies: [
				{
					key: "ops/kube-prod",
					selector: { matchLabels: { env: "prod" } },
					rules: [
						{
							name: "prod-deletes",
							action: "block",
							kubernetes: { verbs: ["delete"], resources: ["pods", "jobs.batch", "replicasets.apps", "controllerrevisions.apps"], namespaces: ["prod"] },
						},
					],
				},
			],
		},
		"gateway-kube-count-deletes",
	);
});

after(async () => {
	await gw?.close();
	await kube?.stop();
	rmSync(dir, { recursive: true, force: true });
});

const DEPLOY = "/apis/apps/v1/namespaces/prod/deployments/web";

test("control: scaling prod to a non-zero count passes; staging scales to zero", async () => {
	const r = await send("PATCH", `${DEPLOY}/scale`, JSON.stringify({ spec: { replicas: 2 } }));
	assert.equal(r.status, 200, r.text);
	assert.equal(await field(DEPLOY, (o) => spec(o)["replicas"]), 2);
	const s = await send("PATCH", "/apis/apps/v1/namespaces/staging/deployments/web/scale", JSON.stringify({ spec: { replicas: 0 } }));
	assert.equal(s.status, 200, s.text);
});

test("replicas 0 through the scale subresource, a merge patch, a JSON patch or an update is a delete of the pods", async () => {
	const pods = /replicas 0 makes its controller delete every pod of it/;
	refused(await send("PATCH", `${DEPLOY}/scale`, JSON.stringify({ spec: { replicas: 0 } })), "scale patch", pods);
	refused(await send("PATCH", DEPLOY, JSON.stringify({ spec: { replicas: 0 } })), "merge patch", pods);
	refused(await send("PATCH", DEPLOY, JSON.stringify([{ op: "replace", path: "/spec/replicas", value: 0 }]), "application/json-patch+json"), "json patch", pods);
	refused(await send("PATCH", DEPLOY, JSON.stringify([{ op: "copy", from: "/spec/minReadySeconds", path: "/spec/replicas" }]), "application/json-patch+json"), "json patch copy", pods);
	const current = (await kube.request<Record<string, unknown>>("GET", DEPLOY)).body;
	refused(await send("PUT", DEPLOY, JSON.stringify({ ...current, spec: { ...spec(current), replicas: 0 } }), "application/json"), "update", pods);
	const scale = { apiVersion: "autoscaling/v1", kind: "Scale", metadata: { name: "db", namespace: "prod" }, spec: { replicas: 0 } };
	refused(await send("PUT", "/apis/apps/v1/namespaces/prod/statefulsets/db/scale", JSON.stringify(scale), "application/json"), "statefulset scale", pods);
	assert.equal(await field(DEPLOY, (o) => spec(o)["replicas"]), 2);
	assert.equal(await field("/apis/apps/v1/namespaces/prod/statefulsets/db", (o) => spec(o)["replicas"]), 2);
});

test("kubectl scale --replicas=0 is refused naming the rule", async () => {
	const file = join(dir, "kubeconfig");
	writeFileSync(file, generateKubeconfig({ gatewayUrl: gw.url, connection: "cluster-prod", caPem: kube.caPem, token: await issuer.token("ops", { groups: ["agents"] }), namespace: "prod" }));
	const r = await run(KUBECTL, [`--kubeconfig=${file}`, "scale", "deployment/web", "--replicas=0"], { env: { ...process.env, HOME: dir }, timeoutMs: 60_000 });
	assert.notEqual(r.code, 0, r.stdout);
	assert.match(r.stderr, /prod-deletes/);
	assert.equal(await field(DEPLOY, (o) => spec(o)["replicas"]), 2);
});

test("a Job's suspend or parallelism 0, a CronJob's history limit 0, revisionHistoryLimit 0 are deletes", async () => {
	const job = "/apis/batch/v1/namespaces/prod/jobs/migrate";
	refused(await send("PATCH", job, JSON.stringify({ spec: { suspend: true } })), "suspend", /Job controller delete its running pods/);
	refused(await send("PATCH", job, JSON.stringify({ spec: { parallelism: 0 } })), "parallelism", /Job controller delete its running pods/);
	const cron = "/apis/batch/v1/namespaces/prod/cronjobs/nightly";
	refused(await send("PATCH", cron, JSON.stringify({ spec: { successfulJobsHistoryLimit: 0 } })), "successful history", /delete its finished Jobs/);
	refused(await send("PATCH", cron, "spec:\n  failedJobsHistoryLimit: 0\n", "application/apply-patch+yaml"), "failed history (apply)", /delete its finished Jobs/);
	// The body's one look (does it hand anything over?) does not say which field: the refusal names the
	// first delete the rule covers (here the pods, before the old ReplicaSets).
	refused(await send("PATCH", DEPLOY, JSON.stringify({ spec: { revisionHistoryLimit: 0 } })), "revisionHistoryLimit", /like delete (?:pods|replicasets)/);
	assert.equal(await field(job, (o) => spec(o)["suspend"]), false);
	assert.equal(await field(job, (o) => spec(o)["parallelism"]), 2);
	assert.equal(await field(cron, (o) => spec(o)["successfulJobsHistoryLimit"]), 3);
	// Fewer but not none passes; so do the same writes in staging.
	assert.equal((await send("PATCH", cron, JSON.stringify({ spec: { successfulJobsHistoryLimit: 1 } }))).status, 200);
	assert.equal((await send("PATCH", "/apis/batch/v1/namespaces/staging/jobs/migrate", JSON.stringify({ spec: { suspend: true } }))).status, 200);
});

test("bodyHandsOver: counts set to zero, per resource", () => {
	const j = (o: unknown) => Buffer.from(JSON.stringify(o));
	const json = "application/json";
	assert.ok(bodyHandsOver(j({ spec: { replicas: 0 } }), json, undefined, "deployments"));
	assert.ok(bodyHandsOver(j({ spec: { Replicas: "0" } }), json, undefined, "replicasets"));
	assert.ok(bodyHandsOver(j([{ op: "add", path: "/spec/replicas", value: 0 }]), json, undefined, "statefulsets"));
	assert.ok(bodyHandsOver(j([{ op: "move", from: "/spec/x", path: "/spec/replicas" }]), json, undefined, "deployments"));
	assert.ok(bodyHandsOver(j({ spec: { activeDeadlineSeconds: 600 } }), json, undefined, "jobs"));
	assert.ok(bodyHandsOver(Buffer.from("spec:\n  replicas: 0\n"), "application/yaml", undefined, "deployments"));
	assert.ok(!bodyHandsOver(j({ spec: { replicas: 1 } }), json, undefined, "deployments"));
	assert.ok(!bodyHandsOver(j({ spec: { suspend: false } }), json, undefined, "jobs"));
	assert.ok(!bodyHandsOver(j({ data: { replicas: 0 } }), json, undefined, "configmaps"));
	assert.ok(!bodyHandsOver(j({ spec: { suspend: true } }), json, undefined, "cronjobs"));
});
