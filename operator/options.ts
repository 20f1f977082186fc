/**
 * Operator configuration: parsed once from flags and environment (flags win), validated, frozen and
 * passed down. Nothing else in operator/ reads process.env.
 */

import { hostname } from "node:os";
import { randomBytes } from "node:crypto";
import { parseArgs } from "node:util";
import { parseDuration } from "../crds/index.ts";

export interface OperatorOptions {
	/** Path to a kubeconfig; undefined: in-cluster service account, else ~/.kube/config. */
	kubeconfig?: string;
	/** Namespace of the operator: Lease, signing keys, bundle and role Secrets live here. */
	namespace: string;
	/** This replica's identity in the Lease. */
	identity: string;
	listenHost: string;
	listenPort: number;
	/** `iss` of operator tokens; also where the JWKS is served (`<issuer>/.well-known/jwks.json`). */
	issuer: string;
	tokenAudiences: string[];
	tokenTtlMs: number;
	keyRotationIntervalMs: number;
	keyOverlapMs: number;
	/** Kubernetes service-account token issuer for grants whose subjects are service accounts. */
	kubeIssuer?: string;
	kubeJwksUri?: string;
	kubeAudiences: string[];
	/** PEM file of the CA to fetch kubeJwksUri with. */
	kubeCaFile?: string;
	/** Extra token issuers (JSON array of IssuerConfig) added to the bundle as is. */
	extraIssuersFile?: string;
	gitCacheDir: string;
	/** Deadline of one git fetch (every HTTP request of it); a stalled server fails that sync only. */
	gitFetchTimeoutMs: number;
	/** Most bytes one git fetch may download (refs and pack); a larger answer fails that sync. */
	gitMaxFetchBytes: number;
	/**
	 * Most bytes of file content one sync reads out of the fetched repository (the manifests, and the
	 * older versions the approving-commit walk parses); a pack is compressed, so the fetch cap does not
	 * bound it. Over it, the sync fails with `FetchTooLarge` and the last synced state stays.
	 */
	gitMaxReadBytes: number;
	/**
	 * Let GitSources fetch from link-local and cloud metadata addresses (169.254.0.0/16, fe80::/10,
	 * fd00:ec2::254, metadata.google.internal, ...). Off by default: whoever may create a GitSource names
	 * its URL. Redirects are never followed either way.
	 */
	gitAllowLinkLocal: boolean;
	leaseName: string;
	leaseDurationMs: number;
	renewDeadlineMs: number;
	retryPeriodMs: number;
	/**
	 * On SIGTERM, how long reconciles already running may go on before they are aborted (their API
	 * requests, git fetches and PostgreSQL connections torn down); the Lease is released right after.
	 */
	shutdownGraceMs: number;
	bundleSecretName: string;
	signingKeysSecretName: string;
	maskingKeySecretName: string;
	sshCaSecretName: string;
	/** Secret with the gateways' shared recording signing key (`recording-key.jwk`). */
	recordingKeySecretName: string;
	/** ConfigMap with the public recording keys auditors and the viewer pin (`keys.json`). */
	recordingTrustedKeysConfigMapName: string;
	/** Schemas a dynamic PostgreSQL role is granted on. */
	postgresSchemas: string[];
	concurrency: number;
	logLevel: "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";
}

export const HELP = `drawbridge operator — sync grants from git, mint credentials, compile the gateway bundle

Usage: drawbridge operator [flags]

Flags (environment variable in brackets; flags win):
  --kubeconfig PATH             kubeconfig file [KUBECONFIG]; default: in-cluster, then ~/.kube/config
  --namespace NS                operator namespace [DRAWBRIDGE_NAMESPACE] (default drawbridge-system)
  --identity ID                 leader-election identity [POD_NAME] (default hostname-random)
  --listen HOST:PORT            health, metrics, JWKS, webhooks [DRAWBRIDGE_OPERATOR_LISTEN] (default 0.0.0.0:8081)
  --issuer URL                  iss of operator tokens [DRAWBRIDGE_ISSUER]
                                (default http://drawbridge-operator.<namespace>.svc:8081)
  --token-audience AUD          audience of operator tokens, repeatable [DRAWBRIDGE_TOKEN_AUDIENCE] (default drawbridge-gateway)
  --token-ttl DURATION          token lifetime before the cap at the grant's end (default 1h)
  --key-rotation DURATION       signing key rotation interval (default 24h)
  --key-overlap DURATION        how long a replaced key stays published (default 2 x token-ttl)
  --kube-issuer URL             service-account token issuer to trust [DRAWBRIDGE_KUBE_ISSUER]
  --kube-jwks-uri URL           its JWKS [DRAWBRIDGE_KUBE_JWKS_URI] (default <kube-issuer>/openid/v1/jwks)
  --kube-audience AUD           audience agents request for projected tokens, repeatable (default drawbridge-gateway)
  --kube-ca-file PATH           CA to fetch that JWKS with [DRAWBRIDGE_KUBE_CA_FILE]
  --issuers-file PATH           JSON array of extra IssuerConfig (OIDC) [DRAWBRIDGE_ISSUERS_FILE]
  --git-cache DIR               where repositories are fetched [DRAWBRIDGE_GIT_CACHE] (default /tmp/drawbridge-git)
  --git-timeout DURATION        deadline of one git fetch (default 60s)
  --git-max-fetch-size SIZE     most bytes one git fetch may download, e.g. 64Mi (default 256Mi)
  --git-max-read-size SIZE      most bytes of files one sync reads out of the repository, history
                                walked for approvals included (default 64Mi)
  --git-allow-link-local        let GitSources fetch from link-local and cloud metadata addresses
                                (169.254.0.0/16, fe80::/10, fd00:ec2::254, metadata.google.internal;
                                refused by default; redirects are never followed)
  --lease-name NAME             leader-election Lease (default drawbridge-operator)
  --lease-duration DURATION     (default 15s); --renew-deadline (default 10s); --retry-period (default 2s)
  --shutdown-grace DURATION     on SIGTERM, running reconciles get this long before they are aborted and
                                the Lease is released (default 2s)
  --bundle-secret NAME          Secret holding bundle.json for gateways (default drawbridge-gateway-bundle)
  --postgres-schemas LIST       comma-separated schemas dynamic roles are granted on (default public)
  --concurrency N               reconcile workers per kind (default 4)
  --log-level LEVEL             fatal|error|warn|info|debug|trace|silent [DRAWBRIDGE_LOG_LEVEL] (default info)
  -h, --help                    this text
`;

export class OptionsError extends Error {
	readonly code = "INVALID_OPTION" as const;
	constructor(message: string) {
		super(message);
		this.name = "OptionsError";
	}
}

function duration(name: string, text: string | undefined, fallback: number): number {
	if (text === undefined) return fallback;
	const ms = parseDuration(text);
	if (ms === undefined) throw new OptionsError(`--${name}: invalid duration ${JSON.stringify(text)} (e.g. 30s, 15m, 1h30m)`);
	return ms;
}

/** A byte count: plain, or with a binary suffix Ki, Mi, Gi. */
function size(name: string, text: string | undefined, fallback: number): number {
	if (text === undefined) return fallback;
	const m = /^(\d+)(Ki|Mi|Gi)?$/.exec(text);
	const n = m ? Number(m[1]) * { "": 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3 }[m[2] ?? ""]! : Number.NaN;
	if (!Number.isSafeInteger(n) || n < 1) throw new OptionsError(`--${name}: invalid size ${JSON.stringify(text)} (e.g. 1048576, 64Mi, 1Gi)`);
	return n;
}

/** Parses flags and env. Returns "help" when --help was asked for. */
export function parseOptions(argv: string[], env: Record<string, string | undefined>): OperatorOptions | "help" {
	const { values } = parseArgs({
		args: argv,
		allowPositionals: false,
		strict: true,
		options: {
			help: { type: "boolean", short: "h" },
			kubeconfig: { type: "string" },
			namespace: { type: "string" },
			identity: { type: "string" },
			listen: { type: "string" },
			issuer: { type: "string" },
			"token-audience": { type: "string", multiple: true },
			"token-ttl": { type: "string" },
			"key-rotation": { type: "string" },
			"key-overlap": { type: "string" },
			"kube-issuer": { type: "string" },
			"kube-jwks-uri": { type: "string" },
			"kube-audience": { type: "string", multiple: true },
			"kube-ca-file": { type: "string" },
			"issuers-file": { type: "string" },
			"git-cache": { type: "string" },
			"git-timeout": { type: "string" },
			"git-max-fetch-size": { type: "string" },
			"git-max-read-size": { type: "string" },
			"git-allow-link-local": { type: "boolean" },
			"lease-name": { type: "string" },
			"lease-duration": { type: "string" },
			"renew-deadline": { type: "string" },
			"retry-period": { type: "string" },
			"shutdown-grace": { type: "string" },
			"bundle-secret": { type: "string" },
			"postgres-schemas": { type: "string" },
			concurrency: { type: "string" },
			"log-level": { type: "string" },
		},
	});
	if (values.help) return "help";
	const namespace = values.namespace ?? env.DRAWBRIDGE_NAMESPACE ?? "drawbridge-system";
	const listen = values.listen ?? env.DRAWBRIDGE_OPERATOR_LISTEN ?? "0.0.0.0:8081";
	const m = /^(.*):(\d+)$/.exec(listen);
	if (!m) throw new OptionsError(`--listen: expected HOST:PORT, got ${JSON.stringify(listen)}`);
	const listenPort = Number(m[2]);
	if (listenPort > 65535) throw new OptionsError("--listen: port out of range");
	const tokenTtlMs = duration("token-ttl", values["token-ttl"], 3_600_000);
	const kubeIssuer = values["kube-issuer"] ?? env.DRAWBRIDGE_KUBE_ISSUER;
	const logLevel = (values["log-level"] ?? env.DRAWBRIDGE_LOG_LEVEL ?? "info") as OperatorOptions["logLevel"];
	if (!["fatal", "error", "warn", "info", "debug", "trace", "silent"].includes(logLevel)) throw new OptionsError(`--log-level: unknown level ${logLevel}`);
	const concurrency = Number(values.concurrency ?? "4");
	if (!Number.isInteger(concurrency) || concurrency < 1 || concurrency > 64) throw new OptionsError("--concurrency: 1..64");
	const kubeconfig = values.kubeconfig ?? env.KUBECONFIG;
	const kubeJwksUri = values["kube-jwks-uri"] ?? env.DRAWBRIDGE_KUBE_JWKS_URI ?? (kubeIssuer ? `${kubeIssuer.replace(/\/+$/, "")}/openid/v1/jwks` : undefined);
	const kubeCaFile = values["kube-ca-file"] ?? env.DRAWBRIDGE_KUBE_CA_FILE;
	const extraIssuersFile = values["issuers-file"] ?? env.DRAWBRIDGE_ISSUERS_FILE;
	const opts: OperatorOptions = {
		...(kubeconfig ? { kubeconfig } : {}),
		namespace,
		identity: values.identity ?? env.POD_NAME ?? `${hostname()}-${randomBytes(4).toString("hex")}`,
		listenHost: m[1] || "0.0.0.0",
		listenPort,
		issuer: values.issuer ?? env.DRAWBRIDGE_ISSUER ?? `http://drawbridge-operator.${namespace}.svc:8081`,
		tokenAudiences: values["token-audience"] ?? (env.DRAWBRIDGE_TOKEN_AUDIENCE ? env.DRAWBRIDGE_TOKEN_AUDIENCE.split(",") : ["drawbridge-gateway"]),
		tokenTtlMs,
		keyRotationIntervalMs: duration("key-rotation", values["key-rotation"], 24 * 3_600_000),
		keyOverlapMs: duration("key-overlap", values["key-overlap"], 2 * tokenTtlMs),
		...(kubeIssuer ? { kubeIssuer } : {}),
		...(kubeJwksUri ? { kubeJwksUri } : {}),
		kubeAudiences: values["kube-audience"] ?? ["drawbridge-gateway"],
		...(kubeCaFile ? { kubeCaFile } : {}),
		...(extraIssuersFile ? { extraIssuersFile } : {}),
		gitCacheDir: values["git-cache"] ?? env.DRAWBRIDGE_GIT_CACHE ?? "/tmp/drawbridge-git",
		gitFetchTimeoutMs: duration("git-timeout", values["git-timeout"], 60_000),
		gitMaxFetchBytes: size("git-max-fetch-size", values["git-max-fetch-size"], 256 * 1024 ** 2),
		gitMaxReadBytes: size("git-max-read-size", values["git-max-read-size"], 64 * 1024 ** 2),
		gitAllowLinkLocal: values["git-allow-link-local"] === true,
		leaseName: values["lease-name"] ?? "drawbridge-operator",
		leaseDurationMs: duration("lease-duration", values["lease-duration"], 15_000),
		renewDeadlineMs: duration("renew-deadline", values["renew-deadline"], 10_000),
		retryPeriodMs: duration("retry-period", values["retry-period"], 2_000),
		shutdownGraceMs: duration("shutdown-grace", values["shutdown-grace"], 2_000),
		bundleSecretName: values["bundle-secret"] ?? "drawbridge-gateway-bundle",
		signingKeysSecretName: "drawbridge-signing-keys",
		maskingKeySecretName: "drawbridge-masking-key",
		sshCaSecretName: "drawbridge-ssh-ca",
		recordingKeySecretName: "drawbridge-recording-key",
		recordingTrustedKeysConfigMapName: "drawbridge-recording-trusted-keys",
		postgresSchemas: (values["postgres-schemas"] ?? "public").split(",").map((s) => s.trim()).filter(Boolean),
		concurrency,
		logLevel,
	};
	if (opts.keyOverlapMs < opts.tokenTtlMs) throw new OptionsError("--key-overlap must be at least --token-ttl (tokens must keep verifying after a rotation)");
	if (opts.gitFetchTimeoutMs < 1000) throw new OptionsError("--git-timeout must be at least 1s");
	if (opts.shutdownGraceMs >= opts.leaseDurationMs) throw new OptionsError("--shutdown-grace must be shorter than --lease-duration (a standby would take over by expiry first)");
	if (opts.renewDeadlineMs >= opts.leaseDurationMs) throw new OptionsError("--renew-deadline must be shorter than --lease-duration");
	return Object.freeze(opts);
}
