/**
 * Shared setup for operator integration tests and the operator bench: a real kube-apiserver with the
 * CRDs, a real PostgreSQL, a real git server, and operators started in-process (or as processes).
 */
import assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { pino } from "pino";
import type pg from "pg";
import { type GitServerHandle, type KubeHandle, type PostgresHandle, makeTempDir, startGitServer, startKube, startPostgres } from "../env/index.ts";
import { signGithub } from "../../operator/gitsync/webhook.ts";
import { KubeClient } from "../../operator/kube/client.ts";
import { Operator } from "../../operator/operator.ts";
import { type OperatorOptions, parseOptions } from "../../operator/options.ts";

export const NS = "team";
export const OP_NS = "drawbridge-system";
export const WEBHOOK_SECRET = "webhook-shared-secret";
const ROOT = new URL("../../", import.meta.url).pathname;

export interface Env {
	kube: KubeHandle;
	pg: PostgresHandle;
	git: GitServerHandle;
	cacheRoot: string;
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 20_000, everyMs = 100): Promise<T> {
	const end = Date.now() + timeoutMs;
	let last: unknown;
	while (Date.now() < end) {
		try {
			const v = await fn();
			if (v !== undefined && v !== false) return v as T;
		} catch (e) {
			last = e;
		}
		await new Promise((r) => setTimeout(r, everyMs));
	}
	throw new Error(`timed out waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
}

export async function kubectlOk(kube: KubeHandle, args: string[], input?: string): Promise<string> {
	const r = await kube.kubectl(args, input === undefined ? {} : { input });
	assert.equal(r.code, 0, `kubectl ${args.join(" ")} failed:\n${r.stderr}`);
	return r.stdout;
}

export async function startEnv(): Promise<Env> {
	const [kube, pgh, git] = await Promise.all([startKube(), startPostgres(), startGitServer({ repos: ["grants"], authRead: true })]);
	await kubectlOk(kube, ["apply", "-k", join(ROOT, "crds")]);
	await kubectlOk(kube, ["wait", "--for=condition=Established", "crd", "-l", "app.kubernetes.io/part-of=drawbridge", "--timeout=60s"]);
	await kube.createNamespace(NS);
	await kube.createNamespace(OP_NS);
	const secret = (name: string, data: Record<string, string>) => ({
		apiVersion: "v1",
		kind: "Secret",
		metadata: { name, namespace: NS },
		stringData: data,
	});
	await kubectlOk(kube, ["apply", "-f", "-"], JSON.stringify({ apiVersion: "v1", kind: "List", items: [
		secret("orders-admin", { username: pgh.superuser, password: pgh.password }),
		secret("orders-ca", { "ca.crt": pgh.caPem }),
		secret("git-webhook", { secret: WEBHOOK_SECRET }),
		secret("git-token", { token: git.token }),
	] }));
	return { kube, pg: pgh, git, cacheRoot: makeTempDir("opgit") };
}

export async function stopEnv(env: Env | undefined): Promise<void> {
	await Promise.all([env?.kube.stop(), env?.pg.stop(), env?.git.stop()]);
}

/**
 * A kubeconfig for the operator's ServiceAccount holding only deploy/base/operator-rbac.yaml's permissions, so every
 * test run with it proves the RBAC is sufficient (and the apiserver's RBAC authorizer enforces it).
 */
export async function leastPrivilegeKubeconfig(env: Env): Promise<string> {
	await kubectlOk(env.kube, ["apply", "-f", join(ROOT, "deploy/base/operator-rbac.yaml")]);
	const token = await env.kube.serviceAccountToken(OP_NS, "drawbridge-operator", { expirationSeconds: 7200 });
	const path = join(env.cacheRoot, "operator.kubeconfig");
	writeFileSync(
		path,
		JSON.stringify({
			apiVersion: "v1",
			kind: "Config",
			clusters: [{ name: "test", cluster: { server: env.kube.url, "certificate-authority": env.kube.caFile } }],
			users: [{ name: "operator", user: { token } }],
			contexts: [{ name: "test", context: { cluster: "test", user: "operator" } }],
			"current-context": "test",
		}),
		{ mode: 0o600 },
	);
	return path;
}

export function operatorOptions(env: Env, identity: string, extra: string[] = []): OperatorOptions {
	const o = parseOptions(
		[
			"--kubeconfig", env.kube.kubeconfigPath,
			"--namespace", OP_NS,
			"--identity", identity,
			"--listen", "127.0.0.1:0",
			"--issuer", "https://drawbridge-operator.test",
			"--git-cache", join(env.cacheRoot, identity),
			"--lease-duration", "8s",
			"--renew-deadline", "6s",
			"--retry-period", "1s",
			"--log-level", process.env.OPERATOR_TEST_LOG ?? "silent",
			...extra,
		],
		{},
	);
	if (o === "help") throw new Error("unreachable");
	return o;
}

export async function startOperator(env: Env, identity: string, extra: string[] = []): Promise<Operator> {
	const opts = operatorOptions(env, identity, extra);
	const op = new Operator(opts, await KubeClient.create(opts.kubeconfig), pino({ level: opts.logLevel }));
	await op.start();
	return op;
}

/** The operator as a separate process (for kill -9 tests). Resolves once it answers /readyz. */
export async function spawnOperator(env: Env, identity: string, port: number, extra: string[] = []): Promise<{ proc: ChildProcess; output: () => string }> {
	const opts = ["--kubeconfig", env.kube.kubeconfigPath, "--namespace", OP_NS, "--identity", identity, "--listen", `127.0.0.1:${port}`,
		"--issuer", "https://drawbridge-operator.test", "--git-cache", join(env.cacheRoot, identity), "--lease-duration", "8s", "--renew-deadline", "6s", "--retry-period", "1s", "--log-level", "info", ...extra];
	const proc = spawn(join(ROOT, "node_modules/.bin/node"), ["--import", "tsx", join(ROOT, "operator/main.ts"), ...opts], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
	let out = "";
	proc.stdout!.on("data", (d) => (out += d));
	proc.stderr!.on("data", (d) => (out += d));
	await waitFor(`operator ${identity} ready`, async () => (await fetch(`http://127.0.0.1:${port}/readyz`)).status === 200, 30_000, 200);
	return { proc, output: () => out };
}

export function connectionYaml(env: Env, name = "orders"): string {
	return `apiVersion: access.drawbridge.dev/v1alpha1
kind: Connection
metadata:
  name: ${name}
  labels:
    env: prod
spec:
  type: postgres
  host: 127.0.0.1
  port: ${env.pg.port}
  credentialSecretRef:
    name: orders-admin
  tls:
    mode: verify-full
    caSecretRef:
      name: orders-ca
  postgres:
    database: ${env.pg.database}
    credentialMode: dynamic
`;
}

export function grantYaml(name: string, opts: { access?: string; duration?: string; expiresAt?: string; subject?: string; connection?: string } = {}): string {
	const timing = opts.expiresAt ? `expiresAt: "${opts.expiresAt}"` : `duration: ${opts.duration ?? "2h"}`;
	return `apiVersion: access.drawbridge.dev/v1alpha1
kind: AccessGrant
metadata:
  name: ${name}
spec:
  connection: ${opts.connection ?? "orders"}
  subjects:
    - kind: User
      name: ${opts.subject ?? "alice"}
  postgres:
    access: ${opts.access ?? "read-only"}
  ${timing}
  ticket: OPS-142
`;
}

export function gitSourceYaml(env: Env, name = "grants", interval = "1h"): string {
	return `apiVersion: access.drawbridge.dev/v1alpha1
kind: GitSource
metadata:
  name: ${name}
  namespace: ${NS}
spec:
  url: ${env.git.repoUrl("grants")}
  branch: main
  path: grants
  interval: ${interval}
  secretRef:
    name: git-token
  webhookSecretRef:
    name: git-webhook
`;
}

/** Sends a GitHub-style push webhook for main to an operator. */
export async function pushWebhook(port: number, source = "grants", after = "0".repeat(40)): Promise<number> {
	const body = JSON.stringify({ ref: "refs/heads/main", after });
	const res = await fetch(`http://127.0.0.1:${port}/webhook/${NS}/${source}`, {
		method: "POST",
		headers: { "content-type": "application/json", "x-github-event": "push", "x-hub-signature-256": signGithub(WEBHOOK_SECRET, body) },
		body,
	});
	return res.status;
}

/**
 * pushWebhook for a GitSource just applied: the operator answers 404 until its watch has seen the
 * object, so a 404 is retried (up to `timeoutMs`); any other status is returned at once.
 */
export async function pushWebhookWhenKnown(port: number, source: string, timeoutMs = 15_000): Promise<number> {
	const end = Date.now() + timeoutMs;
	for (;;) {
		const status = await pushWebhook(port, source);
		if (status !== 404 || Date.now() > end) return status;
		await new Promise((r) => setTimeout(r, 100));
	}
}

export interface GrantObj {
	metadata: { name: string; uid: string; finalizers?: string[]; annotations?: Record<string, string> };
	spec: Record<string, unknown>;
	status?: {
		phase?: string;
		expiresAt?: string;
		origin?: { commit?: string; pullRequest?: number; path?: string; author?: string };
		credential?: { type: string; secretName?: string; secretNamespace?: string; username?: string };
		conditions?: { type: string; status: string; reason: string }[];
		observedGeneration?: number;
	};
}

export async function getGrant(env: Env, name: string): Promise<GrantObj | undefined> {
	const r = await env.kube.request<GrantObj>("GET", `/apis/access.drawbridge.dev/v1alpha1/namespaces/${NS}/accessgrants/${name}`);
	return r.status === 200 ? r.body : undefined;
}

export async function getSecret(env: Env, ns: string, name: string): Promise<Record<string, string> | undefined> {
	const r = await env.kube.request<{ data: Record<string, string> }>("GET", `/api/v1/namespaces/${ns}/secrets/${name}`);
	if (r.status !== 200) return undefined;
	return Object.fromEntries(Object.entries(r.body.data ?? {}).map(([k, v]) => [k, Buffer.from(v, "base64").toString("utf8")]));
}

export async function sqlstate(p: Promise<unknown>): Promise<string> {
	try {
		await p;
		return "ok";
	} catch (e) {
		return (e as { code?: string }).code ?? String(e);
	}
}

export async function roleCount(admin: pg.Client, like = "db\\_%"): Promise<string[]> {
	const r = await admin.query<{ rolname: string }>("SELECT rolname FROM pg_roles WHERE rolname LIKE $1 ORDER BY 1", [like]);
	return r.rows.map((x) => x.rolname);
}
