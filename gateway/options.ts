/**
 * Gateway configuration: parsed once from flags and environment, validated, frozen and passed down
 * (STYLE 8). Nothing else in gateway/ reads process.env. Every flag has an env twin
 * (DRAWBRIDGE_<FLAG_IN_CAPS>); flags win. Units are in the names.
 */
import { parseArgs } from "node:util";
import { highWaterConfigMapName } from "./config/highwater.ts";

export interface ListenAddress {
	host: string;
	port: number;
}

export interface GatewayOptions {
	/** Where the config bundle comes from. */
	bundle: { kind: "file"; path: string } | { kind: "secret"; namespace: string; name: string };
	/**
	 * Where the bundle high-water mark lives (gateway/config/highwater.ts): default a ConfigMap
	 * `<secret>-highwater` next to the bundle Secret, or `<spoolDir>/bundle-state.json` with a bundle file.
	 */
	bundleState: { kind: "configmap"; namespace: string; name: string } | { kind: "file"; path: string };
	postgresListen?: ListenAddress;
	/** Concurrent PostgreSQL client connections at most; more get FATAL 53300 (default 1000, also when absent). */
	postgresMaxConnections?: number;
	sshListen?: ListenAddress;
	/**
	 * Concurrent SSH client connections at most; more get SSH_MSG_DISCONNECT (too many connections)
	 * before key exchange (default 1000, also when absent).
	 */
	sshMaxConnections?: number;
	/** Session channels open at once per SSH connection (default 10, OpenSSH's MaxSessions). */
	sshMaxSessions?: number;
	/** Failed authentication requests per SSH connection before it is disconnected (default 6, MaxAuthTries). */
	sshMaxAuthTries?: number;
	/** Approval requests one SSH connection may have pending at once (default 3). */
	sshMaxPendingApprovals?: number;
	kubeListen?: ListenAddress;
	adminListen: ListenAddress;
	/** PEM files for the client-facing TLS of the PostgreSQL and Kubernetes listeners. */
	tlsCertFile?: string;
	tlsKeyFile?: string;
	sshHostKeyFile?: string;
	/** authorized_keys-style file of SSH CA public keys whose user certificates agents may present. */
	sshUserCaFile?: string;
	/** Allow token-as-password on a connection without TLS (local development only). */
	allowInsecurePassword: boolean;
	recordings:
		| { kind: "dir"; path: string }
		| {
				kind: "s3";
				endpoint: string;
				bucket: string;
				accessKey: string;
				secretKey: string;
				region: string;
				/** `GOVERNANCE:DAYS` or `COMPLIANCE:DAYS`: WORM retention on a bucket created with object lock. */
				objectLock?: string;
		  };
	spoolDir: string;
	spoolMaxBytes: number;
	spoolFullPolicy: "failClosed" | "failOpen";
	/** Key file (JWK, private) signing recording manifests; generated in spoolDir when absent. */
	recordingKeyFile?: string;
	/**
	 * Public JWK/JWKS of the other recording keys to trust (earlier keys, other replicas'). When set, the
	 * viewer and /api/v1/recordings/keys pin to this gateway's key plus these, never a key found only in
	 * the bucket; when absent they trust the keys published in the bucket.
	 */
	recordingTrustedKeysFile?: string;
	approvals: { kind: "kubernetes"; namespace: string } | { kind: "local"; dir: string };
	/** YAML/JSON list of approval webhooks ({name, url, secretFile | secret, format, events}). */
	approvalWebhooksFile?: string;
	/** Public URL of the admin server, used in "approve here" messages. */
	publicUrl: string;
	/** Group whose members may use the recordings viewer. */
	auditorGroup: string;
	/** Live sessions get this long to finish on SIGTERM, ms. */
	shutdownGraceMs: number;
	/** Replica name in recordings and ApprovalRequests. */
	instance: string;
	logLevel: "debug" | "info" | "warn" | "error";
}

export const GATEWAY_HELP = `Usage: drawbridge gateway [options]

Runs the gateway: PostgreSQL, SSH and Kubernetes listeners plus the admin server (health, metrics,
approvals API, recordings viewer). Every option can also be set as DRAWBRIDGE_<NAME> (e.g.
--postgres-listen -> DRAWBRIDGE_POSTGRES_LISTEN).

Config bundle (one of):
  --bundle-file PATH          JSON bundle written by \`drawbridge dev\` or mounted from a Secret
  --bundle-secret NS/NAME     Secret holding bundle.json, watched through the Kubernetes API
  --bundle-state LOC          where the newest accepted bundle version is kept, so a restarted
                              gateway refuses an older bundle: configmap:NS/NAME or file:PATH
                              (default configmap:NS/NAME-highwater next to --bundle-secret,
                              file:<spool-dir>/bundle-state.json with --bundle-file)

Listeners (host:port; a listener without an address is off, admin defaults to 127.0.0.1:8080):
  --postgres-listen ADDR      PostgreSQL wire protocol
  --postgres-max-connections N  concurrent PostgreSQL connections at most; more are refused with
                              FATAL 53300 (default 1000)
  --ssh-listen ADDR           SSH
  --ssh-max-connections N     concurrent SSH connections at most; more are disconnected before key
                              exchange with "connection limit was reached" (default 1000)
  --ssh-max-sessions N        session channels open at once per SSH connection; more are refused
                              with "resource shortage" (default 10, like OpenSSH's MaxSessions)
  --ssh-max-auth-tries N      failed authentication requests per SSH connection; the next one is
                              disconnected (default 6, like OpenSSH's MaxAuthTries)
  --ssh-max-pending-approvals N
                              approval requests one SSH connection may have pending at once; more
                              commands needing approval are refused (default 3)
  --kube-listen ADDR          Kubernetes API (HTTPS)
  --admin-listen ADDR         /healthz /readyz /metrics, approvals API, recordings viewer
  --tls-cert-file FILE        client-facing TLS certificate (PEM)
  --tls-key-file FILE         client-facing TLS key (PEM)
  --ssh-host-key-file FILE    SSH host key (OpenSSH or PEM)
  --ssh-user-ca-file FILE     SSH CA public keys trusted for agents' user certificates
  --allow-insecure-password   accept tokens on non-TLS PostgreSQL connections (local dev only)

Recordings:
  --recordings-dir DIR        store recordings in a local directory (standalone)
  --s3-endpoint URL           or in S3/MinIO (also: --s3-bucket, AWS_ACCESS_KEY_ID,
  --s3-bucket NAME              AWS_SECRET_ACCESS_KEY, AWS_REGION)
  --s3-object-lock MODE:DAYS  WORM retention (GOVERNANCE or COMPLIANCE) on a new bucket
  --spool-dir DIR             local spool (default /var/spool/drawbridge)
  --spool-max-bytes N         spool cap (default 1073741824)
  --spool-full-policy P       failClosed (default: refuse new sessions) or failOpen
  --recording-key-file FILE   private JWK signing manifests (generated when absent)
  --recording-trusted-keys-file FILE
                              public JWK/JWKS of other recording keys to trust (earlier keys, other
                              replicas'): the viewer and /api/v1/recordings/keys then pin to this
                              gateway's key plus these, never a key found only in the bucket

Approvals:
  --approvals kubernetes|local:DIR   where ApprovalRequests live (default kubernetes)
  --namespace NS              namespace for ApprovalRequests (default drawbridge-system)
  --approval-webhooks-file F  YAML list of notification webhooks (name, url, secretFile, format
                              drawbridge|slack, events); see docs/approvals.md
  --public-url URL            admin URL shown to clients waiting for approval
  --auditor-group NAME        group allowed into the recordings viewer (default auditors)

Process:
  --shutdown-grace-ms N       drain time for live sessions on SIGTERM (default 30000); meanwhile new
                              PostgreSQL connections get FATAL 57P03, new SSH connections a
                              "shutting down" disconnect, new Kubernetes requests 503 + Retry-After
  --instance NAME             replica name (default $POD_NAME or hostname)
  --log-level LEVEL           debug|info|warn|error (default info)
  -h, --help                  show this help
`;

function parseListen(value: string | undefined, flag: string): ListenAddress | undefined {
	if (value === undefined || value === "") return undefined;
	const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(value);
	if (!m) throw new OptionsError(`${flag}: expected host:port, got ${JSON.stringify(value)}`);
	const port = Number(m[3]);
	if (port > 65535) throw new OptionsError(`${flag}: port ${port} out of range`);
	return { host: m[1] ?? (m[2] || "0.0.0.0"), port };
}

function parseBundleState(value: string | undefined, bundle: GatewayOptions["bundle"], spoolDir: string): GatewayOptions["bundleState"] {
	if (value === undefined || value === "") {
		return bundle.kind === "secret"
			? { kind: "configmap", namespace: bundle.namespace, name: highWaterConfigMapName(bundle.name) }
			: { kind: "file", path: `${spoolDir.replace(/\/+$/, "")}/bundle-state.json` };
	}
	if (value.startsWith("file:") && value.length > 5) return { kind: "file", path: value.slice(5) };
	if (value.startsWith("configmap:")) {
		const [namespace, name, extra] = value.slice(10).split("/");
		if (namespace && name && extra === undefined) return { kind: "configmap", namespace, name };
	}
	throw new OptionsError(`--bundle-state: expected configmap:NAMESPACE/NAME or file:PATH, got ${value}`);
}

export class OptionsError extends Error {
	override readonly name = "OptionsError";
}

const FLAGS = {
	"bundle-file": { type: "string" },
	"bundle-secret": { type: "string" },
	"bundle-state": { type: "string" },
	"postgres-listen": { type: "string" },
	"postgres-max-connections": { type: "string" },
	"ssh-listen": { type: "string" },
	"ssh-max-connections": { type: "string" },
	"ssh-max-sessions": { type: "string" },
	"ssh-max-auth-tries": { type: "string" },
	"ssh-max-pending-approvals": { type: "string" },
	"kube-listen": { type: "string" },
	"admin-listen": { type: "string" },
	"tls-cert-file": { type: "string" },
	"tls-key-file": { type: "string" },
	"ssh-host-key-file": { type: "string" },
	"ssh-user-ca-file": { type: "string" },
	"allow-insecure-password": { type: "boolean" },
	"recordings-dir": { type: "string" },
	"s3-endpoint": { type: "string" },
	"s3-bucket": { type: "string" },
	"s3-object-lock": { type: "string" },
	"spool-dir": { type: "string" },
	"spool-max-bytes": { type: "string" },
	"spool-full-policy": { type: "string" },
	"recording-key-file": { type: "string" },
	"recording-trusted-keys-file": { type: "string" },
	approvals: { type: "string" },
	"approval-webhooks-file": { type: "string" },
	namespace: { type: "string" },
	"public-url": { type: "string" },
	"auditor-group": { type: "string" },
	"shutdown-grace-ms": { type: "string" },
	instance: { type: "string" },
	"log-level": { type: "string" },
	help: { type: "boolean", short: "h" },
} as const;

export function parseGatewayOptions(
	argv: string[],
	env: NodeJS.ProcessEnv,
	hostname: string,
): GatewayOptions | "help" {
	const { values } = parseArgs({ args: argv, options: FLAGS, allowPositionals: false, strict: true });
	if (values.help) return "help";
	const get = (name: keyof typeof FLAGS): string | undefined => {
		const v = values[name];
		if (typeof v === "string") return v;
		return env[`DRAWBRIDGE_${name.toUpperCase().replaceAll("-", "_")}`];
	};
	const bool = (name: keyof typeof FLAGS): boolean => {
		if (values[name] === true) return true;
		const v = env[`DRAWBRIDGE_${name.toUpperCase().replaceAll("-", "_")}`];
		return v === "1" || v === "true";
	};
	const int = (name: keyof typeof FLAGS, fallback: number): number => {
		const v = get(name);
		if (v === undefined) return fallback;
		const n = Number(v);
		if (!Number.isSafeInteger(n) || n < 0) throw new OptionsError(`--${name}: expected a non-negative integer, got ${v}`);
		return n;
	};

	const bundleFile = get("bundle-file");
	const bundleSecret = get("bundle-secret");
	if (!bundleFile === !bundleSecret) throw new OptionsError("exactly one of --bundle-file or --bundle-secret is required");
	let bundle: GatewayOptions["bundle"];
	if (bundleFile) bundle = { kind: "file", path: bundleFile };
	else {
		const [namespace, name, extra] = (bundleSecret as string).split("/");
		if (!namespace || !name || extra !== undefined) throw new OptionsError("--bundle-secret: expected NAMESPACE/NAME");
		bundle = { kind: "secret", namespace, name };
	}

	const recordingsDir = get("recordings-dir");
	const s3Endpoint = get("s3-endpoint");
	let recordings: GatewayOptions["recordings"];
	if (s3Endpoint) {
		const accessKey = env.AWS_ACCESS_KEY_ID;
		const secretKey = env.AWS_SECRET_ACCESS_KEY;
		const bucket = get("s3-bucket");
		if (!accessKey || !secretKey) throw new OptionsError("--s3-endpoint needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
		if (!bucket) throw new OptionsError("--s3-endpoint needs --s3-bucket");
		const objectLock = get("s3-object-lock");
		recordings = {
			kind: "s3",
			endpoint: s3Endpoint,
			bucket,
			accessKey,
			secretKey,
			region: env.AWS_REGION ?? "us-east-1",
			...(objectLock ? { objectLock } : {}),
		};
	} else if (recordingsDir) {
		recordings = { kind: "dir", path: recordingsDir };
	} else {
		throw new OptionsError("recordings need a home: --recordings-dir DIR or --s3-endpoint URL (every session is recorded)");
	}

	const spoolFullPolicy = get("spool-full-policy") ?? "failClosed";
	if (spoolFullPolicy !== "failClosed" && spoolFullPolicy !== "failOpen") {
		throw new OptionsError(`--spool-full-policy: expected failClosed or failOpen, got ${spoolFullPolicy}`);
	}
	const approvalsRaw = get("approvals") ?? "kubernetes";
	const namespace = get("namespace") ?? "drawbridge-system";
	let approvals: GatewayOptions["approvals"];
	if (approvalsRaw === "kubernetes") approvals = { kind: "kubernetes", namespace };
	else if (approvalsRaw.startsWith("local:") && approvalsRaw.length > 6) approvals = { kind: "local", dir: approvalsRaw.slice(6) };
	else throw new OptionsError(`--approvals: expected kubernetes or local:DIR, got ${approvalsRaw}`);

	const logLevel = get("log-level") ?? "info";
	if (!["debug", "info", "warn", "error"].includes(logLevel)) throw new OptionsError(`--log-level: unknown level ${logLevel}`);
	const adminListen = parseListen(get("admin-listen") ?? "127.0.0.1:8080", "--admin-listen") as ListenAddress;

	const options: GatewayOptions = {
		bundle,
		bundleState: parseBundleState(get("bundle-state"), bundle, get("spool-dir") ?? "/var/spool/drawbridge"),
		postgresListen: parseListen(get("postgres-listen"), "--postgres-listen"),
		postgresMaxConnections: int("postgres-max-connections", 1000),
		sshListen: parseListen(get("ssh-listen"), "--ssh-listen"),
		sshMaxConnections: int("ssh-max-connections", 1000),
		sshMaxSessions: int("ssh-max-sessions", 10),
		sshMaxAuthTries: int("ssh-max-auth-tries", 6),
		sshMaxPendingApprovals: int("ssh-max-pending-approvals", 3),
		kubeListen: parseListen(get("kube-listen"), "--kube-listen"),
		adminListen,
		tlsCertFile: get("tls-cert-file"),
		tlsKeyFile: get("tls-key-file"),
		sshHostKeyFile: get("ssh-host-key-file"),
		sshUserCaFile: get("ssh-user-ca-file"),
		allowInsecurePassword: bool("allow-insecure-password"),
		recordings,
		spoolDir: get("spool-dir") ?? "/var/spool/drawbridge",
		spoolMaxBytes: int("spool-max-bytes", 1024 ** 3),
		spoolFullPolicy,
		recordingKeyFile: get("recording-key-file"),
		recordingTrustedKeysFile: get("recording-trusted-keys-file"),
		approvals,
		approvalWebhooksFile: get("approval-webhooks-file"),
		publicUrl: get("public-url") ?? `http://${adminListen.host === "0.0.0.0" ? "127.0.0.1" : adminListen.host}:${adminListen.port}`,
		auditorGroup: get("auditor-group") ?? "auditors",
		shutdownGraceMs: int("shutdown-grace-ms", 30_000),
		instance: get("instance") ?? env.POD_NAME ?? hostname,
		logLevel: logLevel as GatewayOptions["logLevel"],
	};
	if ((options.postgresListen || options.kubeListen) && !(options.tlsCertFile && options.tlsKeyFile) && !options.allowInsecurePassword) {
		throw new OptionsError("the PostgreSQL and Kubernetes listeners need --tls-cert-file and --tls-key-file");
	}
	if ((options.postgresMaxConnections ?? 1) < 1) throw new OptionsError("--postgres-max-connections: expected at least 1");
	if ((options.sshMaxConnections ?? 1) < 1) throw new OptionsError("--ssh-max-connections: expected at least 1");
	if ((options.sshMaxSessions ?? 1) < 1) throw new OptionsError("--ssh-max-sessions: expected at least 1");
	if ((options.sshMaxAuthTries ?? 1) < 1) throw new OptionsError("--ssh-max-auth-tries: expected at least 1");
	if ((options.sshMaxPendingApprovals ?? 1) < 1) throw new OptionsError("--ssh-max-pending-approvals: expected at least 1");
	if (options.sshListen && !options.sshHostKeyFile) throw new OptionsError("the SSH listener needs --ssh-host-key-file");
	return Object.freeze(options);
}
