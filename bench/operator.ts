/**
 * Operator latency benchmark (real kube-apiserver, git over HTTP, PostgreSQL; one operator in-process):
 *
 *   1. git push (PR merged) → grant usable, with a push webhook: until the dynamic role logs in.
 *   2. the same with polling only (GitSource interval 2s): bounded by the interval.
 *   3. grant end → credential refused: until the role is dropped and its open session is terminated
 *      (PostgreSQL itself refuses new password logins at VALID UNTIL; this measures the operator's part).
 *   4. optional: N grants (static Connection, token per grant) from one commit until all are Active.
 *
 * Usage: ./node_modules/.bin/node --import tsx bench/operator.ts [--runs 5] [--grants 0]
 * Prints a table: median / p90 seconds and the ratio to the targets (webhook < 2 s, expiry < 1 s).
 * `--runs`: repetitions of 1-3; `--grants N`: also measure 4 with N grants (0, the default, skips it).
 */
import type pg from "pg";
import type { Operator } from "../operator/operator.ts";
import {
	type Env,
	NS,
	connectionYaml,
	getGrant,
	gitSourceYaml,
	grantYaml,
	kubectlOk,
	pushWebhook,
	roleCount,
	startEnv,
	startOperator,
	stopEnv,
	waitFor,
} from "../test/operator/helpers.ts";
import { benchArgs } from "./args.ts";

const { values } = benchArgs(import.meta.url, { options: { runs: { type: "string", default: "5" }, grants: { type: "string", default: "0" } } });
const RUNS = Number(values.runs);
const BULK = Number(values.grants);

const quantile = (xs: number[], q: number) => {
	const s = [...xs].sort((a, b) => a - b);
	return s[Math.min(s.length - 1, Math.floor(q * s.length))] ?? Number.NaN;
};

async function loginWorks(env: Env, user: string, password: string): Promise<boolean> {
	try {
		const c = await env.pg.connect({ user, password });
		await c.end();
		return true;
	} catch {
		return false;
	}
}

async function roleSecret(env: Env, name: string): Promise<{ user: string; password: string } | undefined> {
	const g = await getGrant(env, name);
	const cred = g?.status?.credential;
	if (g?.status?.phase !== "Active" || !cred?.secretName) return undefined;
	const r = await env.kube.request<{ data: Record<string, string> }>("GET", `/api/v1/namespaces/${cred.secretNamespace}/secrets/${cred.secretName}`);
	if (r.status !== 200) return undefined;
	return { user: Buffer.from(r.body.data.username!, "base64").toString(), password: Buffer.from(r.body.data.password!, "base64").toString() };
}

async function pushToUsable(env: Env, op: Operator, name: string, pr: number, webhook: boolean): Promise<number> {
	const { sha } = await env.git.mergePullRequest("grants", { number: pr, branch: name, title: `grant ${name}`, files: { [`grants/${name}.yaml`]: grantYaml(name) } });
	const t0 = performance.now();
	if (webhook) await pushWebhook(op.port, "grants", sha);
	await waitFor(`${name} usable`, async () => {
		const s = await roleSecret(env, name);
		return s ? loginWorks(env, s.user, s.password) : false;
	}, 60_000, 20);
	return (performance.now() - t0) / 1000;
}

async function endToRefused(env: Env, op: Operator, admin: pg.Client, name: string, pr: number): Promise<{ dropped: number; terminated: number }> {
	const end = new Date(Math.ceil((Date.now() + 5_000) / 1000) * 1000);
	const { sha } = await env.git.mergePullRequest("grants", {
		number: pr,
		branch: name,
		title: `short ${name}`,
		files: { [`grants/${name}.yaml`]: grantYaml(name, { expiresAt: end.toISOString().replace(/\.\d{3}Z$/, "Z") }) },
	});
	await pushWebhook(op.port, "grants", sha);
	const s = await waitFor(`${name} active`, () => roleSecret(env, name), 30_000, 20);
	const session = await env.pg.connect({ user: s.user, password: s.password });
	let terminatedAt = 0;
	session.on("error", () => {
		terminatedAt ||= Date.now();
	});
	session.on("end", () => {
		terminatedAt ||= Date.now();
	});
	const droppedAt = await waitFor("role dropped", async () => ((await roleCount(admin, s.user)).length === 0 ? Date.now() : undefined), 30_000, 10);
	await waitFor("session ended", async () => terminatedAt > 0, 5_000, 10);
	await session.end().catch(() => {});
	return { dropped: (droppedAt - end.getTime()) / 1000, terminated: (terminatedAt - end.getTime()) / 1000 };
}

const env = await startEnv();
const admin = await env.pg.connect();
let op: Operator | undefined;
try {
	op = await startOperator(env, "bench");
	await waitFor("leader", async () => op!.isLeader(), 15_000);
	await env.git.mergePullRequest("grants", { number: 1, branch: "conn", title: "connection", files: { "grants/connection.yaml": connectionYaml(env) } });
	await kubectlOk(env.kube, ["apply", "-f", "-"], gitSourceYaml(env, "grants", "1h"));
	await waitFor("connection synced", async () => (await env.kube.request("GET", `/apis/access.drawbridge.dev/v1alpha1/namespaces/${NS}/connections/orders`)).status === 200, 30_000);

	const webhook: number[] = [];
	for (let i = 0; i < RUNS; i++) webhook.push(await pushToUsable(env, op, `wh${i}`, 100 + i, true));

	await kubectlOk(env.kube, ["apply", "-f", "-"], gitSourceYaml(env, "grants", "2s"));
	const poll: number[] = [];
	for (let i = 0; i < RUNS; i++) poll.push(await pushToUsable(env, op, `poll${i}`, 200 + i, false));
	await kubectlOk(env.kube, ["apply", "-f", "-"], gitSourceYaml(env, "grants", "1h"));

	const dropped: number[] = [];
	const terminated: number[] = [];
	for (let i = 0; i < Math.min(RUNS, 3); i++) {
		const r = await endToRefused(env, op, admin, `end${i}`, 300 + i);
		dropped.push(r.dropped);
		terminated.push(r.terminated);
	}

	const rows: [string, number[], number][] = [
		["git push → grant usable (webhook)", webhook, 2],
		["git push → grant usable (poll, interval 2s)", poll, 4],
		["grant end → role dropped", dropped, 1],
		["grant end → open session terminated", terminated, 1],
	];
	if (BULK > 0) {
		const files: Record<string, string> = {};
		const staticConn = connectionYaml(env, "static-orders").replace("credentialMode: dynamic", "credentialMode: static");
		files["grants/bulk/connection.yaml"] = staticConn;
		for (let i = 0; i < BULK; i++) files[`grants/bulk/b${i}.yaml`] = grantYaml(`bulk-${i}`, { subject: `agent${i}`, connection: "static-orders" });
		const { sha } = await env.git.mergePullRequest("grants", { number: 999, branch: "bulk", title: `${BULK} grants`, files });
		const t0 = performance.now();
		await pushWebhook(op.port, "grants", sha);
		// One in-process list every 2 s (spawning kubectl for 1000 objects would eat the CPU being measured).
		await waitFor(`${BULK} grants Active`, async () => {
			const r = await env.kube.request<{ items: { status?: { phase?: string } }[] }>("GET", `/apis/access.drawbridge.dev/v1alpha1/namespaces/${NS}/accessgrants`);
			return r.body.items.filter((g) => g.status?.phase === "Active").length >= BULK;
		}, 1_200_000, 2000);
		rows.push([`${BULK} grants in one commit → all Active`, [(performance.now() - t0) / 1000], Number.NaN]);
	}
	console.log("\nDrawbridge operator latency (seconds; real kube-apiserver, git over HTTP, PostgreSQL 15)\n");
	console.log(`${"measure".padEnd(48)} ${"runs".padStart(4)} ${"median".padStart(8)} ${"p90".padStart(8)} ${"target".padStart(8)} ${"median/target".padStart(14)}`);
	for (const [name, xs, target] of rows) {
		const med = quantile(xs, 0.5);
		console.log(
			`${name.padEnd(48)} ${String(xs.length).padStart(4)} ${med.toFixed(3).padStart(8)} ${quantile(xs, 0.9).toFixed(3).padStart(8)} ${(Number.isNaN(target) ? "-" : target.toFixed(1)).padStart(8)} ${(Number.isNaN(target) ? "-" : (med / target).toFixed(2)).padStart(14)}`,
		);
	}
} finally {
	await op?.stop();
	await admin.end();
	await stopEnv(env);
}
