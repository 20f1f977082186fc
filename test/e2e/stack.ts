/**
 * The pieces of a Drawbridge installation, wired the way a cluster runs them, for end-to-end
 * journeys: a real kube-apiserver with the CRDs and the RBAC of deploy/base, the operator and the
 * gateway as separate `drawbridge operator` / `drawbridge gateway` processes (each with a
 * kubeconfig for its own ServiceAccount, so the shipped RBAC is what lets them work), a git server
 * whose pushes reach the operator's webhook, PostgreSQL, and optionally MinIO and an OIDC provider.
 *
 * Nothing here is mocked. Each journey file calls `startStack()` in before() and `stack.stop()` in
 * after(); every child process runs under the harness watchdog, so a killed test leaves nothing.
 */
import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseAllDocuments } from "yaml";
import {
	freePort,
	type GitServerHandle,
	issueCert,
	type KubeHandle,
	makeTempDir,
	type MinioHandle,
	type OidcHandle,
	type PostgresHandle,
	run,
	type RunResult,
	startGitServer,
	startKube,
	startMinio,
	startOidc,
	startPostgres,
} from "../env/index.ts";
import { ManagedProcess } from "../env/process.ts";

export const ROOT = join(import.meta.dirname, "..", "..");
const DRAWBRIDGE = join(ROOT, "bin", "drawbridge.mjs");
/** Where the operator keeps its state and the gateways' bundle (deploy/base). */
export const SYSTEM_NS = "drawbridge-system";
/** The GitSource and the resources it syncs live here. */
export const GRANTS_NS = "platform";
export const BUNDLE_SECRET = "drawbridge-gateway-bundle";
export const RECORDINGS_BUCKET = "drawbridge-recordings";
/** The name agents use for the gateway; its serving certificate carries it (verify-full). */
export const GATEWAY_HOST = "drawbridge-gateway";
const WEBHOOK_SECRET = "e2e-webhook-secret";
const PSQL = "/usr/bin/psql";

export interface StackOptions {
	minio?: boolean;
	oidc?: boolean;
	/** Extra flags for `drawbridge operator`. */
	operatorArgs?: string[];
}

export interface Stack {
	kube: KubeHandle;
	pg: PostgresHandle;
	git: GitServerHandle;
	minio: MinioHandle | undefined;
	oidc: OidcHandle | undefined;
	dir: string;
	operator: ManagedProcess;
	operatorPort: number;
	gateway: ManagedProcess | undefined;
	/** Bound ports of the gateway (after startGateway()). */
	gatewayPorts: { postgres: number; kube: number; ssh: number; admin: number };
	/** `[127.0.0.1]:PORT ssh-ed25519 …` for the gateway's SSH host key (after startGateway()). */
	gatewayKnownHosts: string;
	/** CA that signed the gateway's serving certificate (agents pass it as sslrootcert). */
	gatewayCaFile: string;
	/** Admin kubectl. */
	kubectl(args: string[], input?: string): Promise<string>;
	/** Applies the GitSource for the grants repository (as an admin does once, by hand). */
	applyGitSource(interval?: string): Promise<void>;
	/**
	 * Starts a gateway replica (`gateway-0` first; the first one is `stack.gateway`). Replicas share
	 * the TLS and SSH host keys and the recordings store, each has its own spool, like a Deployment.
	 */
	startGateway(instance?: string): Promise<{ process: ManagedProcess; ports: { postgres: number; kube: number; ssh: number; admin: number } }>;
	/** Environment for the recordings CLI against MinIO. */
	recordingsEnv(): Record<string, string>;
	logs(): { name: string; text: string }[];
	stop(): Promise<void>;
}

export async function waitFor<T>(what: string, fn: () => Promise<T | undefined | false>, timeoutMs = 60_000, everyMs = 200): Promise<T> {
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
	throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ""}`);
}

/** Only the RBAC objects of a deploy/base manifest (no Deployments: nothing would run them here). */
function rbacOnly(file: string): string {
	const kinds = new Set(["ServiceAccount", "Role", "RoleBinding", "ClusterRole", "ClusterRoleBinding"]);
	const items = parseAllDocuments(readFileSync(join(ROOT, file), "utf8"))
		.map((d) => d.toJS() as { kind?: string } | null)
		.filter((o): o is { kind: string } => !!o && kinds.has(o.kind ?? ""));
	return JSON.stringify({ apiVersion: "v1", kind: "List", items });
}

/** A kubeconfig whose user is a ServiceAccount's TokenRequest token: the process gets exactly that SA's RBAC. */
async function serviceAccountKubeconfig(kube: KubeHandle, dir: string, sa: string): Promise<string> {
	const token = await kube.serviceAccountToken(SYSTEM_NS, sa, { expirationSeconds: 7200 });
	const path = join(dir, `${sa}.kubeconfig`);
	writeFileSync(
		path,
		JSON.stringify({
			apiVersion: "v1",
			kind: "Config",
			clusters: [{ name: "e2e", cluster: { server: kube.url, "certificate-authority": kube.caFile } }],
			users: [{ name: sa, user: { token } }],
			contexts: [{ name: "e2e", context: { cluster: "e2e", user: sa } }],
			"current-context": "e2e",
		}),
		{ mode: 0o600 },
	);
	return path;
}

async function waitHttp(proc: ManagedProcess, name: string, url: string, timeoutMs = 90_000): Promise<void> {
	await waitFor(`${name} at ${url}`, async () => {
		if (!proc.running) throw new Error(`${name} exited:\n${proc.logs.text()}`);
		const r = await fetch(url).catch(() => undefined);
		return r?.status === 200;
	}, timeoutMs, 250).catch((e: Error) => {
		throw new Error(`${e.message}\n--- ${name} log ---\n${proc.logs.text()}`);
	});
}

export async function startStack(opts: StackOptions = {}): Promise<Stack> {
	const dir = makeTempDir("e2e");
	// Servers in parallel; each fails loudly with its log if it cannot start.
	const [kube, pg, git, minio, oidc] = await Promise.all([
		startKube(),
		startPostgres(),
		startGitServer({ repos: ["grants"], authRead: true }),
		opts.minio ? startMinio({ buckets: [{ name: RECORDINGS_BUCKET, objectLock: false }] }) : Promise.resolve(undefined),
		opts.oidc ? startOidc() : Promise.resolve(undefined),
	]);
	const kubectl = async (args: string[], input?: string) => {
		const r = await kube.kubectl(args, input === undefined ? {} : { input });
		assert.equal(r.code, 0, `kubectl ${args.join(" ")} failed:\n${r.stderr}`);
		return r.stdout;
	};

	// Cluster setup an administrator does once: CRDs, namespaces, RBAC, Secrets.
	await kubectl(["apply", "-k", join(ROOT, "crds")]);
	await kubectl(["wait", "--for=condition=Established", "crd", "-l", "app.kubernetes.io/part-of=drawbridge", "--timeout=60s"]);
	for (const ns of [SYSTEM_NS, GRANTS_NS]) await kube.createNamespace(ns);
	await kubectl(["apply", "-f", "-"], rbacOnly("deploy/base/operator-rbac.yaml"));
	await kubectl(["apply", "-f", "-"], rbacOnly("deploy/base/gateway.yaml"));
	const secret = (name: string, data: Record<string, string>) => ({ apiVersion: "v1", kind: "Secret", metadata: { name, namespace: GRANTS_NS }, stringData: data });
	await kubectl(
		["apply", "-f", "-"],
		JSON.stringify({
			apiVersion: "v1",
			kind: "List",
			items: [
				secret("orders-prod-admin", { username: pg.superuser, password: pg.password }),
				secret("orders-prod-ca", { "ca.crt": pg.caPem }),
				secret("tickets-prod-admin", { username: pg.superuser, password: pg.password }),
				secret("tickets-prod-ca", { "ca.crt": pg.caPem }),
				secret("grants-repo-token", { token: git.token }),
				secret("grants-webhook", { secret: WEBHOOK_SECRET }),
			],
		}),
	);
	const [operatorKubeconfig, gatewayKubeconfig] = await Promise.all([
		serviceAccountKubeconfig(kube, dir, "drawbridge-operator"),
		serviceAccountKubeconfig(kube, dir, "drawbridge-gateway"),
	]);

	// The gateway's serving certificate, for the name agents use (psql sslmode=verify-full).
	const cert = await issueCert(pg.ca, { cn: GATEWAY_HOST, name: "e2e-gateway", dns: [GATEWAY_HOST, "localhost"], ips: ["127.0.0.1"] });
	writeFileSync(join(dir, "tls.crt"), cert.certPem);
	writeFileSync(join(dir, "tls.key"), cert.keyPem, { mode: 0o600 });

	let issuersFile: string[] = [];
	if (oidc) {
		// Approvers and auditors log in with the company's OIDC provider.
		const path = join(dir, "issuers.json");
		writeFileSync(
			path,
			JSON.stringify([{ name: "corp-oidc", kind: "oidc", issuer: oidc.issuer, audiences: ["drawbridge"], jwksUri: oidc.jwksUri, algorithms: ["RS256"] }]),
		);
		issuersFile = ["--issuers-file", path];
	}

	const operatorPort = await freePort();
	const operator = new ManagedProcess({
		name: "operator",
		command: process.execPath,
		args: [
			DRAWBRIDGE,
			"operator",
			"--kubeconfig", operatorKubeconfig,
			"--namespace", SYSTEM_NS,
			"--identity", "operator-0",
			"--listen", `127.0.0.1:${operatorPort}`,
			"--issuer", `http://127.0.0.1:${operatorPort}`,
			"--kube-issuer", kube.serviceAccountIssuer,
			"--kube-ca-file", kube.caFile,
			"--git-cache", join(dir, "git-cache"),
			"--lease-duration", "6s",
			"--renew-deadline", "4s",
			"--retry-period", "1s",
			"--log-level", "info",
			...issuersFile,
			...(opts.operatorArgs ?? []),
		],
		cwd: ROOT,
		env: { ...process.env, KUBECONFIG: operatorKubeconfig },
	});
	await waitHttp(operator, "operator", `http://127.0.0.1:${operatorPort}/readyz`);

	// The git host calls the operator's push webhook after every push (GitHub-style HMAC).
	git.onPush(({ repo }) => {
		if (repo !== "grants") return;
		const body = JSON.stringify({ ref: "refs/heads/main", after: "0".repeat(40) });
		const signature = `sha256=${createHmac("sha256", WEBHOOK_SECRET).update(body).digest("hex")}`;
		void fetch(`http://127.0.0.1:${operatorPort}/webhook/${GRANTS_NS}/grants`, {
			method: "POST",
			headers: { "content-type": "application/json", "x-github-event": "push", "x-hub-signature-256": signature },
			body,
		}).catch(() => undefined);
	});

	const replicas: ManagedProcess[] = [];
	const stack: Stack = {
		kube,
		pg,
		git,
		minio,
		oidc,
		dir,
		operator,
		operatorPort,
		gateway: undefined,
		gatewayPorts: { postgres: 0, kube: 0, ssh: 0, admin: 0 },
		gatewayKnownHosts: "",
		gatewayCaFile: pg.caFile,
		kubectl,
		async applyGitSource(interval = "1h") {
			await kubectl(
				["apply", "-n", GRANTS_NS, "-f", "-"],
				readFileSync(join(ROOT, "examples/cluster/gitsource.yaml"), "utf8")
					.replace(/url: .*/, `url: ${git.repoUrl("grants")}`)
					.replace(/interval: .*/, `interval: ${interval}`),
			);
		},
		async startGateway(instance = "gateway-0") {
			// The gateway reads the operator's bundle Secret at start: wait until the operator wrote it.
			await waitFor("bundle Secret", async () => (await kube.request("GET", `/api/v1/namespaces/${SYSTEM_NS}/secrets/${BUNDLE_SECRET}`)).status === 200);
			const [postgres, kubePort, sshPort, admin] = [await freePort(), await freePort(), await freePort(), await freePort()];
			const hostKey = join(dir, "ssh_host_ed25519_key");
			if (!existsSync(hostKey)) {
				const keygen = await run("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "drawbridge-gateway", "-f", hostKey]);
				assert.equal(keygen.code, 0, keygen.stderr);
			}
			const env: Record<string, string> = {
				...(process.env as Record<string, string>),
				KUBECONFIG: gatewayKubeconfig,
				DRAWBRIDGE_BUNDLE_SECRET: `${SYSTEM_NS}/${BUNDLE_SECRET}`,
				DRAWBRIDGE_POSTGRES_LISTEN: `127.0.0.1:${postgres}`,
				DRAWBRIDGE_KUBE_LISTEN: `127.0.0.1:${kubePort}`,
				DRAWBRIDGE_SSH_LISTEN: `127.0.0.1:${sshPort}`,
				DRAWBRIDGE_SSH_HOST_KEY_FILE: hostKey,
				DRAWBRIDGE_ADMIN_LISTEN: `127.0.0.1:${admin}`,
				DRAWBRIDGE_TLS_CERT_FILE: join(dir, "tls.crt"),
				DRAWBRIDGE_TLS_KEY_FILE: join(dir, "tls.key"),
				DRAWBRIDGE_SPOOL_DIR: join(dir, `spool-${instance}`),
				DRAWBRIDGE_APPROVALS: "kubernetes",
				DRAWBRIDGE_NAMESPACE: SYSTEM_NS,
				DRAWBRIDGE_PUBLIC_URL: `http://127.0.0.1:${admin}`,
				DRAWBRIDGE_INSTANCE: instance,
				DRAWBRIDGE_LOG_LEVEL: "info",
			};
			if (minio) {
				Object.assign(env, {
					DRAWBRIDGE_S3_ENDPOINT: minio.endpoint,
					DRAWBRIDGE_S3_BUCKET: RECORDINGS_BUCKET,
					AWS_ACCESS_KEY_ID: minio.accessKey,
					AWS_SECRET_ACCESS_KEY: minio.secretKey,
					AWS_REGION: minio.region,
				});
			} else {
				env.DRAWBRIDGE_RECORDINGS_DIR = join(dir, "recordings");
			}
			const gateway = new ManagedProcess({ name: instance, command: process.execPath, args: [DRAWBRIDGE, "gateway"], cwd: ROOT, env });
			replicas.push(gateway);
			const ports = { postgres, kube: kubePort, ssh: sshPort, admin };
			if (!stack.gateway) {
				stack.gateway = gateway;
				stack.gatewayPorts = ports;
				const [type, key] = readFileSync(`${hostKey}.pub`, "utf8").trim().split(/\s+/);
				stack.gatewayKnownHosts = `[127.0.0.1]:${sshPort} ${type} ${key}`;
			}
			await waitHttp(gateway, instance, `http://127.0.0.1:${admin}/readyz`);
			return { process: gateway, ports };
		},
		recordingsEnv() {
			assert.ok(minio, "startStack({ minio: true })");
			return {
				DRAWBRIDGE_S3_ENDPOINT: minio.endpoint,
				DRAWBRIDGE_S3_BUCKET: RECORDINGS_BUCKET,
				AWS_ACCESS_KEY_ID: minio.accessKey,
				AWS_SECRET_ACCESS_KEY: minio.secretKey,
				AWS_REGION: minio.region,
			};
		},
		logs() {
			return [
				{ name: "operator", text: operator.logs.text() },
				...(replicas.length ? replicas.map((r) => ({ name: r.opts.name, text: r.logs.text() })) : [{ name: "gateway", text: "(not started)" }]),
			];
		},
		async stop() {
			await Promise.allSettled([...replicas.map((r) => r.stop()), operator.stop()]);
			// E2E_LOGS=1 prints the operator and gateway logs even when everything passed (timing work).
			if (process.env.E2E_LOGS) for (const l of stack.logs()) process.stderr.write(`----- ${l.name} -----\n${l.text}\n`);
			await Promise.allSettled([kube.stop(), pg.stop(), git.stop(), minio?.destroy(), oidc?.stop()]);
		},
	};
	return stack;
}

/** `psql` the way an agent runs it: a conninfo string, the token as password, verify-full against the gateway's name. */
export function psql(stack: Stack, opts: { dbname: string; user: string; password: string; args: string[]; input?: string; timeoutMs?: number }): Promise<RunResult> {
	const conninfo = [
		`host=${GATEWAY_HOST}`,
		"hostaddr=127.0.0.1",
		`port=${stack.gatewayPorts.postgres}`,
		`dbname=${opts.dbname}`,
		`user=${opts.user}`,
		`password=${opts.password}`,
		"sslmode=verify-full",
		`sslrootcert=${stack.gatewayCaFile}`,
		"connect_timeout=20",
	].join(" ");
	const env = { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: stack.dir, PGAPPNAME: "e2e" };
	return run(PSQL, ["-X", "-v", "VERBOSITY=verbose", "-v", "ON_ERROR_STOP=1", "-At", ...opts.args, conninfo], {
		env,
		...(opts.input === undefined ? {} : { input: opts.input }),
	});
}

/** `drawbridge <args>` as a process (the CLI users run). */
export function drawbridge(args: string[], env: Record<string, string> = {}): Promise<RunResult> {
	return run(process.execPath, [DRAWBRIDGE, ...args], { cwd: ROOT, env: { PATH: process.env.PATH ?? "", HOME: "/nonexistent", ...env } });
}

export function logsOf(stack: Stack | undefined): [string, { logs(): string }][] {
	if (!stack) return [];
	return [
		["kube", stack.kube],
		["postgres", stack.pg],
		["git", stack.git],
		...(stack.minio ? ([["minio", stack.minio]] as [string, { logs(): string }][]) : []),
		["operator", { logs: () => stack.operator.logs.text() }],
		["gateways", { logs: () => stack.logs().filter((l) => l.name !== "operator").map((l) => `[${l.name}]\n${l.text}`).join("\n") }],
	];
}
