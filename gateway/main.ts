/**
 * `drawbridge gateway`: wires the config bundle, recorder, approvals, the three listeners and the
 * admin server into one process. The only place in gateway/ that reads process.env (STYLE 8).
 *
 * Shutdown (SIGTERM/SIGINT): readiness turns false at once so load balancers stop sending new
 * agents, and every listener drains: a client that still reaches this replica while its endpoint is
 * being removed is refused with its protocol's own "shutting down" (PostgreSQL FATAL 57P03, an SSH
 * disconnect, a Kubernetes 503 Status with Retry-After) and retries elsewhere. Live PostgreSQL
 * sessions, SSH connections and Kubernetes requests (watches, streams) get `shutdownGraceMs` to
 * finish, then every listener closes (remaining sessions end with a clear message), recordings are
 * finalised and the spool flushed as far as the store allows (the rest uploads on next start).
 */
import { readFileSync } from "node:fs";
import { hostname } from "node:os";
import { join } from "node:path";
import type { FastifyInstance } from "fastify";
import pino from "pino";
import { parse as parseYaml } from "yaml";
import { Counter, Gauge, Registry } from "prom-client";
import { DataPathMetrics } from "./admin/metrics.ts";
import { buildAdminServer } from "./admin/server.ts";
import { registerViewer } from "./admin/viewer.ts";
import { createApprovalService, registerApprovalRoutes, verifierAuthenticator, type WebhookTarget } from "./approvals/index.ts";
import { parseWebhookTargets } from "./approvals/webhook.ts";
import { type BundleMark, ConfigMapHighWater, FileHighWater, type HighWaterStore } from "./config/highwater.ts";
import { BundleError, BundleStore } from "./config/store.ts";
import { type BundleSource, FileBundleSource, KubeSecretBundleSource } from "./config/sources.ts";
import { GATEWAY_HELP, type GatewayOptions, OptionsError, parseGatewayOptions } from "./options.ts";
import { startPostgresListener } from "./postgres/listener.ts";
import { loadStoreKeys } from "./recording/catalog.ts";
import { loadRecordingKey, publicKeySet, readPublicJwksFile, viewerRecordingKeys } from "./recording/keys.ts";
import { DiskRecorder } from "./recording/recorder.ts";
import { DirStore, parseEndpoint, parseObjectLock, type RecordingStore, S3Store } from "./recording/store.ts";

export interface RunningGateway {
	options: GatewayOptions;
	store: BundleStore;
	admin: FastifyInstance;
	/** Bound addresses of the listeners that are on. */
	addresses: { postgres?: number; ssh?: number; kube?: number; admin: number };
	/** Wait until live PostgreSQL sessions have ended and every recording reached the store. */
	flushRecordings(timeoutMs?: number): Promise<void>;
	/** Graceful shutdown; resolves when everything is closed. */
	shutdown(reason: string): Promise<void>;
}

/**
 * The stored mark, waiting while its store cannot be read (an API server not reachable yet): starting
 * without it would accept any older bundle. A mark that is there but unreadable stops the start.
 */
async function readHighWater(store: HighWaterStore, log: pino.Logger): Promise<BundleMark | undefined> {
	for (let attempt = 1; ; attempt++) {
		try {
			return await store.read();
		} catch (err) {
			if (/bundle high-water mark/.test(String(err)) || attempt >= 30) throw err;
			log.warn({ err: String(err), location: store.location }, "bundle high-water mark not readable yet; retrying");
			await new Promise((r) => setTimeout(r, 2000));
		}
	}
}

/** Start every component; used by `main()` and by `drawbridge dev`. */
export async function startGateway(options: GatewayOptions): Promise<RunningGateway> {
	const log = pino({ level: options.logLevel, base: { component: "gateway", instance: options.instance } });
	const registry = new Registry();
	// The newest bundle accepted before this start: an older one (a stale Secret, a restored backup)
	// is refused, so a restart cannot bring back revoked grants (docs/security-model.md, "Revocation").
	const highWater: HighWaterStore =
		options.bundleState.kind === "file" ? new FileHighWater(options.bundleState.path) : new ConfigMapHighWater(options.bundleState.namespace, options.bundleState.name);
	const mark = await readHighWater(highWater, log);
	const bundlesRefused = new Counter({
		name: "drawbridge_gateway_bundles_refused_total",
		help: "Config bundles refused, by reason (rollback: older than the high-water mark; invalid; hash-mismatch).",
		labelNames: ["reason"],
		registers: [registry],
	});
	const highWaterVersion = new Gauge({
		name: "drawbridge_gateway_bundle_highwater_version",
		help: "Newest config bundle version accepted, kept across restarts (0: none yet).",
		registers: [registry],
	});
	highWaterVersion.set(mark?.version ?? 0);
	if (mark) log.info({ version: mark.version, hash: mark.hash, location: highWater.location }, "bundle high-water mark loaded; older bundles are refused");
	const store = new BundleStore({ ...(mark ? { highWater: mark } : {}), highWaterLocation: highWater.location });
	let raising = Promise.resolve();
	store.on("change", (next, prev) => {
		log.info({ version: next.version, hash: next.bundle.hash, previous: prev?.version, grants: next.bundle.grants.length }, "config bundle loaded");
		const accepted = store.highWater;
		if (!accepted) return;
		highWaterVersion.set(accepted.version);
		raising = raising
			.then(() => highWater.raise(accepted))
			.catch((err) => log.error({ err: String(err), location: highWater.location, version: accepted.version }, "bundle high-water mark not saved; a restart may accept an older bundle"));
	});
	store.on("refused", (err, bundle) => {
		bundlesRefused.inc({ reason: err.code });
		log.error({ err: err.message, version: bundle.version, hash: bundle.hash, highWater: store.highWater?.version, location: highWater.location }, "config bundle refused: rollback");
	});
	const countRefusal = (err: unknown) => {
		if (err instanceof BundleError && err.code !== "rollback") bundlesRefused.inc({ reason: err.code });
	};

	let source: BundleSource;
	if (options.bundle.kind === "file") {
		source = new FileBundleSource(store, {
			path: options.bundle.path,
			onError: (err) => {
				countRefusal(err);
				log.warn({ err: String(err) }, "config bundle not loaded; keeping the current one");
			},
		});
	} else {
		source = new KubeSecretBundleSource(store, {
			namespace: options.bundle.namespace,
			name: options.bundle.name,
			onError: (err) => {
				countRefusal(err);
				log.warn({ err: String(err) }, "config bundle watch error; keeping the current one");
			},
		});
	}
	let recordingStore: RecordingStore;
	if (options.recordings.kind === "dir") {
		recordingStore = new DirStore(options.recordings.path);
	} else {
		const s3 = new S3Store({
			...parseEndpoint(options.recordings.endpoint),
			accessKey: options.recordings.accessKey,
			secretKey: options.recordings.secretKey,
			bucket: options.recordings.bucket,
			region: options.recordings.region,
			objectLock: parseObjectLock(options.recordings.objectLock),
		});
		// MinIO may be down at start: the recorder spools and uploads once it is back.
		await s3.init().catch((err) => log.warn({ err: String(err) }, "recording store not reachable yet; spooling"));
		recordingStore = s3;
	}
	const recordingKey = await loadRecordingKey(options.recordingKeyFile ?? join(options.spoolDir, "recording-key.jwk"), true);
	// Pinned recording keys (this gateway's and the listed ones), or undefined: trust the bucket's.
	const pinnedRecordingKeys = options.recordingTrustedKeysFile
		? await viewerRecordingKeys(recordingKey, await readPublicJwksFile(options.recordingTrustedKeysFile), async () => [])
		: undefined;
	const pinnedRecordingKeySet = pinnedRecordingKeys ? await publicKeySet(pinnedRecordingKeys) : undefined;
	if (!pinnedRecordingKeySet) {
		log.warn(
			{ kid: recordingKey.kid },
			"recording keys are not pinned (no --recording-trusted-keys-file): the viewer verifies recordings against keys found in the bucket itself, so whoever can write the bucket can forge a recording that shows verified",
		);
	}
	const recorder = new DiskRecorder({
		spoolDir: options.spoolDir,
		store: recordingStore,
		key: recordingKey,
		maxSpoolBytes: options.spoolMaxBytes,
		onSpoolFull: options.spoolFullPolicy,
		registry,
		logger: {
			info: (obj, msg) => log.info(obj, `recording: ${msg}`),
			warn: (obj, msg) => log.warn(obj, `recording: ${msg}`),
			error: (obj, msg) => log.error(obj, `recording: ${msg}`),
		},
	});
	await recorder.start();
	// Every data path gets the recorder through the metrics view of it: one event model, counted once.
	const metrics = new DataPathMetrics(registry);
	const recorded = metrics.wrap(recorder);

	let approvalsStore: Parameters<typeof createApprovalService>[0]["store"];
	if (options.approvals.kind === "local") {
		approvalsStore = { kind: "local", dir: options.approvals.dir };
	} else {
		const k8s = await import("@kubernetes/client-node");
		const kubeConfig = new k8s.KubeConfig();
		kubeConfig.loadFromDefault();
		approvalsStore = { kind: "kubernetes", namespace: options.approvals.namespace, kubeConfig };
	}
	const approvals = createApprovalService({
		store: approvalsStore,
		webBaseUrl: options.publicUrl,
		registry,
		webhooks: options.approvalWebhooksFile ? loadWebhooks(options.approvalWebhooksFile) : [],
		onError: (message) => log.warn({}, `approvals: ${message}`),
	});

	let shuttingDown = false;
	const authenticate = async (request: Parameters<ReturnType<typeof verifierAuthenticator>>[0]) =>
		verifierAuthenticator(store.current.verifier)(request);
	const admin = await buildAdminServer({
		store,
		registry,
		readinessChecks: [() => (shuttingDown ? "shutting down" : undefined)],
		plugins: [
			(app) => registerApprovalRoutes(app, { service: approvals.service, authenticate }),
			(app) =>
				registerViewer(app, {
					store: recordingStore,
					auditorGroup: options.auditorGroup,
					// Pinned: only this gateway's key and --recording-trusted-keys-file, for the badge and the
					// published JWKS alike. Otherwise the keys published in the store (older ones too), and this
					// replica's key even while the store is down.
					...(pinnedRecordingKeySet ? { publicKeys: async () => pinnedRecordingKeySet } : {}),
					publishedJwks: async () =>
						viewerRecordingKeys(recordingKey, pinnedRecordingKeys, async () => (await loadStoreKeys(recordingStore)).jwks),
					authenticate: async (request) => {
						try {
							return await authenticate(request);
						} catch {
							return undefined;
						}
					},
				}),
		],
	});
	// Admin first: /healthz answers and /readyz says why not while the first bundle is awaited.
	await admin.listen({ host: options.adminListen.host, port: options.adminListen.port });
	const adminAddress = admin.server.address();
	const adminPort = typeof adminAddress === "object" && adminAddress ? adminAddress.port : options.adminListen.port;
	await source.start();

	const tls =
		options.tlsCertFile && options.tlsKeyFile
			? { certPem: readFileSync(options.tlsCertFile, "utf8"), keyPem: readFileSync(options.tlsKeyFile, "utf8") }
			: undefined;
	const addresses: RunningGateway["addresses"] = { admin: adminPort };
	const closers: (() => Promise<void>)[] = [];
	/** Per listener: refuse new clients from now on, and how much live work it still has. */
	const drainers: { drain(): void; live(): number }[] = [];

	const postgres = options.postgresListen
		? startPostgresListener({
				store,
				...(tls ? { tls } : {}),
				allowInsecure: options.allowInsecurePassword,
				recorder: recorded,
				approvals: approvals.service,
				gatewayName: options.instance,
				maxConnections: options.postgresMaxConnections,
				onRefused: (reason) => metrics.connectionsRefused.inc({ protocol: "postgres", reason }),
				log: {
					info: (fields, msg) => log.info(fields, `postgres: ${msg}`),
					warn: (fields, msg) => log.warn(fields, `postgres: ${msg}`),
				},
			})
		: undefined;
	if (postgres && options.postgresListen) {
		addresses.postgres = (await postgres.listen(options.postgresListen.port, options.postgresListen.host)).port;
		closers.push(() => postgres.close());
		drainers.push({ drain: () => postgres.drain(), live: () => postgres.sessionCount });
	}

	if (options.sshListen && options.sshHostKeyFile) {
		const { startSshListener } = await import("./ssh/listener.ts");
		const ssh = await startSshListener({
			store,
			recorder: recorded,
			approvals: approvals.service,
			hostKeyPem: readFileSync(options.sshHostKeyFile, "utf8"),
			trustedUserCAKeys: options.sshUserCaFile ? readLines(options.sshUserCaFile) : [],
			host: options.sshListen.host,
			port: options.sshListen.port,
			gatewayName: options.instance,
			maxConnections: options.sshMaxConnections,
			maxSessions: options.sshMaxSessions,
			maxAuthTries: options.sshMaxAuthTries,
			maxPendingApprovals: options.sshMaxPendingApprovals,
			onRefused: (reason) => metrics.connectionsRefused.inc({ protocol: "ssh", reason }),
			onLimited: (reason) => metrics.limitRefusals.inc({ protocol: "ssh", reason }),
		});
		addresses.ssh = ssh.address.port;
		log.info({ fingerprint: ssh.hostKeyFingerprint }, "ssh host key");
		closers.push(() => ssh.close());
		drainers.push({ drain: () => ssh.drain(), live: () => ssh.sessionCount });
	}

	if (options.kubeListen && tls) {
		const { startKubeListener } = await import("./kube/listener.ts");
		const kube = await startKubeListener({
			store,
			recorder: recorded,
			approvals: approvals.service,
			tls,
			host: options.kubeListen.host,
			port: options.kubeListen.port,
			gatewayName: options.instance,
			onRefused: (reason) => metrics.connectionsRefused.inc({ protocol: "kubernetes", reason }),
		});
		addresses.kube = kube.address.port;
		closers.push(() => kube.close());
		drainers.push({ drain: () => kube.drain(), live: () => kube.activeRequests });
	}

	// wasmTier: "liftoff" when node runs with --liftoff-only (bin/drawbridge.mjs re-execs with it).
	const wasmTier = process.execArgv.includes("--liftoff-only") ? "liftoff" : "default";
	log.info({ addresses, bundleVersion: store.current.version, node: process.version, wasmTier }, "gateway ready");

	return {
		options,
		store,
		admin,
		addresses,
		async flushRecordings(timeoutMs = 10_000) {
			const deadline = Date.now() + timeoutMs;
			while (postgres && postgres.sessionCount > 0 && Date.now() < deadline) {
				await new Promise((r) => setTimeout(r, 50));
			}
			await recorder.drain(Math.max(100, deadline - Date.now()));
		},
		async shutdown(reason: string) {
			if (shuttingDown) return;
			shuttingDown = true;
			for (const d of drainers) d.drain();
			log.info({ reason, graceMs: options.shutdownGraceMs }, "shutting down: draining live sessions");
			const deadline = Date.now() + options.shutdownGraceMs;
			while (drainers.some((d) => d.live() > 0) && Date.now() < deadline) {
				await new Promise((r) => setTimeout(r, 200));
			}
			await Promise.allSettled(closers.map((c) => c()));
			await approvals.close().catch(() => {});
			await recorder.drain(Math.max(1000, deadline - Date.now())).catch(() => {});
			await recorder.stop().catch(() => {});
			await source.stop();
			await admin.close();
			log.info({}, "gateway stopped");
		},
	};
}

/** Webhook targets from a YAML/JSON file; `secretFile` entries are resolved so secrets never sit in the list. */
function loadWebhooks(path: string): WebhookTarget[] {
	const raw = parseYaml(readFileSync(path, "utf8")) as unknown;
	if (!Array.isArray(raw)) throw new OptionsError(`${path}: expected a list of webhooks`);
	const resolved = raw.map((entry: Record<string, unknown>) => {
		if (entry && typeof entry.secretFile === "string") {
			const { secretFile, ...rest } = entry;
			return { ...rest, secret: readFileSync(secretFile as string, "utf8").trim() };
		}
		return entry;
	});
	return parseWebhookTargets(resolved);
}

function readLines(path: string): string[] {
	return readFileSync(path, "utf8")
		.split("\n")
		.map((l) => l.trim())
		.filter((l) => l !== "" && !l.startsWith("#"));
}

export async function main(argv: string[]): Promise<number> {
	let options: GatewayOptions | "help";
	try {
		options = parseGatewayOptions(argv, process.env, hostname());
	} catch (err) {
		if (err instanceof OptionsError || (err instanceof Error && "code" in err && String(err.code).startsWith("ERR_PARSE_ARGS"))) {
			process.stderr.write(`drawbridge gateway: ${err.message}\n\nRun \`drawbridge gateway --help\` for usage.\n`);
			return 2;
		}
		throw err;
	}
	if (options === "help") {
		process.stdout.write(GATEWAY_HELP);
		return 0;
	}
	const gateway = await startGateway(options);
	return new Promise<number>((resolve) => {
		const stop = (signal: string) => {
			void gateway.shutdown(signal).then(() => resolve(0));
		};
		process.once("SIGTERM", () => stop("SIGTERM"));
		process.once("SIGINT", () => stop("SIGINT"));
	});
}
