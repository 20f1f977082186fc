// kube-apiserver + etcd for tests, envtest-style: no controller-manager, no scheduler, no nodes.
// Test CA for serving and client certs, a service-account signing key and issuer (TokenRequest and
// /openid/v1/jwks work), RBAC authorization, an admin kubeconfig and a kubectl runner.
import { generateKeyPairSync } from "node:crypto";
import { existsSync, mkdirSync, writeFileSync } from "node:fs";
import { request } from "node:https";
import { join } from "node:path";
import {
	type ManagedProcess as ManagedProcessT,
	ManagedProcess,
	type RunOptions,
	type RunResult,
	depPaths,
	freePort,
	makeTempDir,
	removeTempDir,
	run,
	trackTempDir,
	waitFor,
} from "./process.ts";
import { type TestCa, createCa, issueCert } from "./tls.ts";

export const KUBECTL = "/usr/lib/google-cloud-sdk/bin/kubectl.1.33";

export interface KubeOptions {
	/** Extra kube-apiserver flags (e.g. "--feature-gates=…"). */
	apiserverArgs?: string[];
}

export interface KubeResponse<T = unknown> {
	status: number;
	body: T;
	text: string;
}

export interface KubeHandle {
	/** https://127.0.0.1:PORT */
	url: string;
	port: number;
	/** PEM of the CA that signed the serving cert and the admin client cert. */
	caPem: string;
	caFile: string;
	ca: TestCa;
	/** Admin kubeconfig (client certificate, O=system:masters). */
	kubeconfigPath: string;
	/** Bearer token of an admin user (token file row in group system:masters). */
	adminToken: string;
	/** Admin client certificate and key (PEM), CN=drawbridge-admin, O=system:masters. */
	adminCertPem: string;
	adminKeyPem: string;
	/** --service-account-issuer (the `iss` of service-account tokens), also the default API audience. */
	serviceAccountIssuer: string;
	/** URL of the service-account JWKS (anonymous GET allowed). */
	jwksUri: string;
	etcdUrl: string;
	dir: string;
	/** Runs kubectl 1.33 with the admin kubeconfig. */
	kubectl(args: string[], opts?: RunOptions): Promise<RunResult>;
	/** Raw API request with the admin token (JSON in/out). */
	request<T = unknown>(method: string, path: string, body?: unknown, opts?: { token?: string; contentType?: string; accept?: string }): Promise<KubeResponse<T>>;
	/** Creates a namespace if missing. */
	createNamespace(name: string): Promise<void>;
	/** Creates a namespace and service account if missing. */
	createServiceAccount(namespace: string, name: string): Promise<void>;
	/** TokenRequest for a service account (created if missing) with the given audiences and lifetime. */
	serviceAccountToken(
		namespace: string,
		name: string,
		opts?: { audiences?: string[]; expirationSeconds?: number },
	): Promise<string>;
	stop(): Promise<void>;
	logs(): string;
}

export async function startKube(options: KubeOptions = {}): Promise<KubeHandle> {
	const deps = depPaths();
	for (const b of [deps.ETCD, deps.KUBE_APISERVER]) {
		if (!existsSync(b)) throw new Error(`missing ${b}: run \`bash scripts/test-deps\``);
	}
	const dir = makeTempDir("kube");
	trackTempDir(dir);
	const pki = join(dir, "pki");
	mkdirSync(pki);
	const [etcdPort, peerPort, port] = await Promise.all([freePort(), freePort(), freePort()]);
	const etcdUrl = `http://127.0.0.1:${etcdPort}`;
	const url = `https://127.0.0.1:${port}`;
	const serviceAccountIssuer = url;
	let etcd: ManagedProcessT | undefined;
	let apiserver: ManagedProcessT | undefined;

	const logs = () =>
		`=== etcd ===\n${etcd?.logs.text() ?? ""}\n=== kube-apiserver ===\n${apiserver?.logs.text() ?? ""}`;
	const stopAll = async () => {
		await apiserver?.stop(15_000);
		await etcd?.stop(10_000);
	};

	try {
		etcd = new ManagedProcess({
			name: "etcd",
			command: deps.ETCD,
			args: [
				"--name=default",
				`--data-dir=${join(dir, "etcd")}`,
				`--listen-client-urls=${etcdUrl}`,
				`--advertise-client-urls=${etcdUrl}`,
				`--listen-peer-urls=http://127.0.0.1:${peerPort}`,
				`--initial-advertise-peer-urls=http://127.0.0.1:${peerPort}`,
				`--initial-cluster=default=http://127.0.0.1:${peerPort}`,
				"--unsafe-no-fsync",
				"--log-level=warn",
				"--quota-backend-bytes=1073741824",
			],
			cwd: dir,
			cleanupDir: dir,
		});

		// Certificates and keys while etcd starts.
		const ca = await createCa(pki, "Drawbridge kube test CA");
		const [serving, admin] = await Promise.all([
			issueCert(ca, {
				cn: "kube-apiserver",
				name: "apiserver",
				dns: ["localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"],
				ips: ["127.0.0.1", "10.0.0.1"],
			}),
			issueCert(ca, { cn: "drawbridge-admin", org: "system:masters", usage: "client", name: "admin" }),
		]);
		const sa = generateKeyPairSync("rsa", { modulusLength: 2048 });
		const saKey = join(pki, "sa.key");
		const saPub = join(pki, "sa.pub");
		writeFileSync(saKey, sa.privateKey.export({ type: "pkcs8", format: "pem" }), { mode: 0o600 });
		writeFileSync(saPub, sa.publicKey.export({ type: "spki", format: "pem" }));
		const adminToken = `admin-${crypto.randomUUID()}`;
		const tokenFile = join(pki, "tokens.csv");
		writeFileSync(tokenFile, `${adminToken},drawbridge-admin-token,drawbridge-admin-token,"system:masters"\n`, { mode: 0o600 });

		await waitFor(
			`etcd on port ${etcdPort}`,
			async () => {
				const r = await fetch(`${etcdUrl}/health`, { signal: AbortSignal.timeout(2000) });
				return r.status === 200 && ((await r.json()) as { health?: string }).health === "true";
			},
			{ proc: etcd, timeoutMs: 30_000 },
		);

		apiserver = new ManagedProcess({
			name: "kube-apiserver",
			command: deps.KUBE_APISERVER,
			args: [
				`--etcd-servers=${etcdUrl}`,
				`--secure-port=${port}`,
				"--bind-address=127.0.0.1",
				"--advertise-address=127.0.0.1",
				`--tls-cert-file=${serving.certFile}`,
				`--tls-private-key-file=${serving.keyFile}`,
				`--cert-dir=${join(dir, "cert-dir")}`,
				`--client-ca-file=${ca.certFile}`,
				`--token-auth-file=${tokenFile}`,
				"--anonymous-auth=true",
				"--authorization-mode=RBAC",
				"--service-cluster-ip-range=10.0.0.0/24",
				"--allow-privileged=true",
				"--disable-admission-plugins=ServiceAccount",
				`--service-account-issuer=${serviceAccountIssuer}`,
				`--service-account-key-file=${saPub}`,
				`--service-account-signing-key-file=${saKey}`,
				"--profiling=false",
				// No node can reach 127.0.0.1 as the "kubernetes" service endpoint: don't try.
				"--endpoint-reconciler-type=none",
				"--v=1",
				...(options.apiserverArgs ?? []),
			],
			cwd: dir,
			cleanupDir: dir,
		});

		const req = <T>(
			method: string,
			path: string,
			body?: unknown,
			o: { token?: string; contentType?: string; accept?: string } = {},
		): Promise<KubeResponse<T>> =>
			new Promise((resolve, reject) => {
				const data = body === undefined ? undefined : typeof body === "string" ? body : JSON.stringify(body);
				const headers: Record<string, string> = { accept: o.accept ?? "application/json" };
				const token = o.token === undefined ? adminToken : o.token;
				if (token) headers.authorization = `Bearer ${token}`;
				if (data !== undefined) {
					headers["content-type"] = o.contentType ?? "application/json";
					headers["content-length"] = String(Buffer.byteLength(data));
				}
				const r = request(
					{ host: "127.0.0.1", port, method, path, headers, ca: ca.certPem, timeout: 30_000 },
					(res) => {
						const chunks: Buffer[] = [];
						res.on("data", (c: Buffer) => chunks.push(c));
						res.on("end", () => {
							const text = Buffer.concat(chunks).toString("utf8");
							let parsed: unknown = text;
							try {
								parsed = JSON.parse(text);
							} catch {}
							resolve({ status: res.statusCode ?? 0, body: parsed as T, text });
						});
					},
				);
				r.on("timeout", () => r.destroy(new Error(`${method} ${path}: timeout`)));
				r.on("error", reject);
				r.end(data);
			});

		await waitFor(
			`kube-apiserver on port ${port}`,
			async () => {
				const r = await req("GET", "/readyz");
				return r.status === 200 && r.text.trim() === "ok";
			},
			{ proc: apiserver, timeoutMs: 120_000, intervalMs: 250 },
		);

		// Anonymous access to the issuer discovery document and JWKS, as clusters usually grant.
		const crb = await req("POST", "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings", {
			apiVersion: "rbac.authorization.k8s.io/v1",
			kind: "ClusterRoleBinding",
			metadata: { name: "drawbridge-test:service-account-issuer-discovery" },
			roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "ClusterRole", name: "system:service-account-issuer-discovery" },
			subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "system:unauthenticated" }],
		});
		if (crb.status !== 201) throw new Error(`creating the issuer-discovery binding: ${crb.status} ${crb.text}`);

		const b64 = (s: string) => Buffer.from(s).toString("base64");
		const kubeconfigPath = join(dir, "admin.kubeconfig");
		writeFileSync(
			kubeconfigPath,
			[
				"apiVersion: v1",
				"kind: Config",
				"clusters:",
				"- name: drawbridge-test",
				"  cluster:",
				`    server: ${url}`,
				`    certificate-authority-data: ${b64(ca.certPem)}`,
				"users:",
				"- name: drawbridge-admin",
				"  user:",
				`    client-certificate-data: ${b64(admin.certPem)}`,
				`    client-key-data: ${b64(admin.keyPem)}`,
				"contexts:",
				"- name: drawbridge-test",
				"  context:",
				"    cluster: drawbridge-test",
				"    user: drawbridge-admin",
				"    namespace: default",
				"current-context: drawbridge-test",
				"",
			].join("\n"),
			{ mode: 0o600 },
		);

		const createNamespace = async (name: string) => {
			const r = await req("POST", "/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name } });
			if (r.status !== 201 && r.status !== 409) throw new Error(`create namespace ${name}: ${r.status} ${r.text}`);
		};
		const createServiceAccount = async (namespace: string, name: string) => {
			await createNamespace(namespace);
			const r = await req("POST", `/api/v1/namespaces/${namespace}/serviceaccounts`, {
				apiVersion: "v1",
				kind: "ServiceAccount",
				metadata: { name, namespace },
			});
			if (r.status !== 201 && r.status !== 409) throw new Error(`create serviceaccount ${namespace}/${name}: ${r.status} ${r.text}`);
		};

		return {
			url,
			port,
			caPem: ca.certPem,
			caFile: ca.certFile,
			ca,
			kubeconfigPath,
			adminToken,
			adminCertPem: admin.certPem,
			adminKeyPem: admin.keyPem,
			serviceAccountIssuer,
			jwksUri: `${url}/openid/v1/jwks`,
			etcdUrl,
			dir,
			async kubectl(args, o = {}) {
				const once = () =>
					run(KUBECTL, [`--kubeconfig=${kubeconfigPath}`, ...args], {
						timeoutMs: 120_000,
						...o,
						env: { ...process.env, KUBECONFIG: kubeconfigPath, HOME: dir, ...o.env },
					});
				// kubectl 1.33's `wait --for=condition=…` fails at once (".status.conditions accessor error:
				// <nil>") instead of waiting when the object has no conditions yet, e.g. a CRD created a
				// moment ago on a loaded machine: that case is retried, for at most a minute.
				const deadline = Date.now() + 60_000;
				for (;;) {
					const r = await once();
					if (args[0] !== "wait" || r.code === 0 || !/status\.conditions accessor error/.test(r.stderr) || Date.now() > deadline) return r;
					await new Promise((resolve) => setTimeout(resolve, 250));
				}
			},
			request: req,
			createNamespace,
			createServiceAccount,
			async serviceAccountToken(namespace, name, o = {}) {
				await createServiceAccount(namespace, name);
				const r = await req<{ status?: { token?: string } }>(
					"POST",
					`/api/v1/namespaces/${namespace}/serviceaccounts/${name}/token`,
					{
						apiVersion: "authentication.k8s.io/v1",
						kind: "TokenRequest",
						spec: {
							audiences: o.audiences ?? [serviceAccountIssuer],
							expirationSeconds: o.expirationSeconds ?? 3600,
						},
					},
				);
				const token = r.body.status?.token;
				if (r.status !== 201 || !token) throw new Error(`TokenRequest ${namespace}/${name}: ${r.status} ${r.text}`);
				return token;
			},
			async stop() {
				await stopAll();
				removeTempDir(dir);
			},
			logs,
		};
	} catch (err) {
		const log = logs();
		await stopAll();
		removeTempDir(dir);
		if (err instanceof Error && !err.message.includes("process exited")) err.message += `\n${log.slice(-8000)}`;
		throw err;
	}
}
