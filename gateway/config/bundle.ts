/**
 * The gateway config bundle: everything a gateway replica needs to decide who may do what, compiled
 * into one versioned, hashed, immutable document. The operator (in a cluster) and `drawbridge dev`
 * (standalone) both produce it; the gateway does not care which (DESIGN.md "Boundaries").
 *
 * This file is the contract between operator/ and gateway/. The operator imports this type; the
 * gateway never imports the operator (STYLE 12).
 *
 * Conventions:
 * - Keys are `namespace/name` strings (`ResourceKey`).
 * - Times are RFC 3339 strings in UTC; the gateway parses them once when a bundle is loaded.
 * - Secrets (backend passwords, SSH keys) sit in `credentials`, so the bundle is stored as a
 *   Kubernetes Secret readable only by the gateway's and operator's service accounts.
 */

export const BUNDLE_API_VERSION = "drawbridge.dev/bundle/v1" as const;

/** `namespace/name` of a resource. */
export type ResourceKey = string;

export type Protocol = "postgres" | "ssh" | "kubernetes";

export interface ConfigBundle {
	apiVersion: typeof BUNDLE_API_VERSION;
	/** Monotonic version: gateways ignore a bundle whose version is not newer than the one they run. */
	version: number;
	/** SHA-256 (hex) of the canonical JSON of every field but `hash` itself. */
	hash: string;
	generatedAt: string;
	/** Token issuers the gateway accepts. Deny by default: a token from any other issuer is refused. */
	issuers: IssuerConfig[];
	connections: BundleConnection[];
	/** Only grants that exist in the source of truth; the gateway still checks notBefore/expiresAt itself. */
	grants: BundleGrant[];
	maskingPolicies: BundleMaskingPolicy[];
	guardrailPolicies: BundleGuardrailPolicy[];
	/** Backend secrets, keyed by an opaque id that connections and grants refer to. */
	credentials: Record<string, BackendCredential>;
	/** Key (base64, >= 32 bytes) for the `hash` masking strategy, so pseudonyms are stable and joinable. */
	maskingKey: string;
	/** SSH certificate authorities managed by the operator (absent: no operator CA configured). */
	ssh?: BundleSshCas;
}

/** The operator's SSH CAs (operator/credentials, certificate codec in crds/ssh-certificate.ts). */
export interface BundleSshCas {
	/**
	 * CA public keys (`authorized_keys` lines) whose user certificates agents present to the gateway.
	 * Certificates carry key id `sub=<subject>;grant=<namespace/name>` and principals = the grant's logins.
	 */
	userCaKeys: string[];
	/**
	 * For Connections with `ssh.auth: certificate`: the credential id (type `sshKey`, `privateKeyPem` =
	 * the upstream CA's Ed25519 key) the gateway signs short-lived per-session certificates with; targets
	 * trust `upstreamCaPublicKey` in sshd's TrustedUserCAKeys. A different key from the user CA.
	 */
	upstreamCaCredentialRef?: string;
	upstreamCaPublicKey?: string;
}

// ---------------------------------------------------------------------------------------------
// Identity

export type IssuerKind =
	/** Tokens minted by the Drawbridge operator (EdDSA/ES256), `grant` claim names the grant. */
	| "drawbridge"
	/** Kubernetes projected service-account tokens (`kubernetes.io` claim). */
	| "kubernetes"
	/** Any OIDC provider for humans and CI systems (GitHub Actions, Dex, Keycloak...). */
	| "oidc";

export interface IssuerConfig {
	name: string;
	kind: IssuerKind;
	/** Exact `iss` claim value. */
	issuer: string;
	/** At least one must appear in `aud`. */
	audiences: string[];
	/** Where to fetch the JWKS (cached and refreshed). Either this or `jwks`. */
	jwksUri?: string;
	/** Inline JWKS (standalone mode, tests). */
	jwks?: { keys: Record<string, unknown>[] };
	/** PEM CA to trust when fetching `jwksUri` over HTTPS (e.g. a kube-apiserver's CA). */
	caPem?: string;
	/** Allowed JWS algorithms; `none` and HMAC algorithms are never accepted. */
	algorithms: string[];
	/** Claim holding the user name (default `sub`; `email` or `preferred_username` for OIDC). */
	usernameClaim?: string;
	/** Claim holding group names (default `groups`). */
	groupsClaim?: string;
	/**
	 * OIDC only: prepended to the user name and to every group name of this issuer's tokens (default
	 * none), as the apiserver's `--oidc-username-prefix` / `--oidc-groups-prefix`. `User` and `Group`
	 * subjects match names from every configured issuer; with a prefix such as `gitlab:`, a provider
	 * where people choose their own names or groups matches only subjects written with that prefix.
	 * Must not start with `system:`.
	 */
	usernamePrefix?: string;
	groupsPrefix?: string;
	/** Allowed clock skew, seconds (default 30, at most 300). */
	clockToleranceSec?: number;
	/**
	 * Longest token lifetime accepted, seconds: `exp - iat`, or `exp - now` when `iat` is absent
	 * (default 86400 for every kind; the operator sets its own issuer's from `--token-ttl`). A token
	 * valid for longer is refused (`lifetime-too-long`) even while unexpired: a leaked long-lived
	 * token must not stay usable for years.
	 */
	maxTokenLifetimeSec?: number;
}

/** Who is on the other end of a connection, after token verification. */
export interface Identity {
	issuer: string;
	issuerKind: IssuerKind;
	/** `sub` claim. */
	subject: string;
	/** Display / matching name: `user:alice@example.com`-style names are built from this. */
	username: string;
	groups: string[];
	/** Set for Kubernetes service-account tokens. */
	serviceAccount?: { namespace: string; name: string };
	/** Set for operator-issued tokens: the grant the token was minted for (`namespace/name`). */
	grant?: ResourceKey;
	/**
	 * Set with `grant`: the digest of the grant's subjects when the credential was minted
	 * (`grantSubjectsDigest`); the credential opens the grant only while its subjects are still those.
	 */
	grantSubjects?: string;
	/** Token id (`jti`) when present. */
	tokenId?: string;
	tokenExpiresAt: Date;
	claims: Record<string, unknown>;
}

/** A subject of a grant or an approver rule. */
export type SubjectMatcher =
	| { kind: "User"; name: string }
	| { kind: "Group"; name: string }
	| { kind: "ServiceAccount"; namespace: string; name: string }
	/** Every listed claim must equal the given value (strings) or contain it (arrays). */
	| { kind: "Claims"; issuer: string; claims: Record<string, string> };

// ---------------------------------------------------------------------------------------------
// Connections

export interface BundleConnection {
	key: ResourceKey;
	/** Name agents use: the PostgreSQL database name in the startup message, the SSH target, the kube context. */
	name: string;
	namespace: string;
	type: Protocol;
	labels: Record<string, string>;
	host: string;
	port: number;
	/** Credential id in `ConfigBundle.credentials` used when the grant has no dynamic credential. */
	credentialRef?: string;
	postgres?: {
		/** Database on the upstream server (agents may name the Connection differently). */
		database: string;
		credentialMode: "static" | "dynamic";
		sslmode: "disable" | "require" | "verify-ca" | "verify-full";
		caPem?: string;
		serverName?: string;
	};
	ssh?: {
		/** Host public keys the target may present, OpenSSH `authorized_keys` format. No TOFU. */
		hostKeys: string[];
		/** Upstream auth: the gateway key in `credentialRef`, or a per-session certificate from the SSH CA. */
		auth: "key" | "certificate";
	};
	kubernetes?: {
		/** `https://host:port` of the kube-apiserver. */
		server: string;
		caPem?: string;
	};
}

export type BackendCredential =
	| { type: "password"; username: string; password: string }
	| { type: "sshKey"; username: string; privateKeyPem: string; certificate?: string }
	| { type: "kubernetes"; token?: string; clientCertPem?: string; clientKeyPem?: string };

// ---------------------------------------------------------------------------------------------
// Grants

export type PostgresAccess = "read-only" | "read-write" | "admin";

export interface BundleGrant {
	key: ResourceKey;
	name: string;
	namespace: string;
	/** Connection name (`BundleConnection.name`, same namespace). */
	connection: string;
	subjects: SubjectMatcher[];
	notBefore: string;
	expiresAt: string;
	postgres?: {
		access: PostgresAccess;
		/** Dynamic role credential minted by the operator for this grant (`credentials` id). */
		credentialRef?: string;
	};
	ssh?: {
		/** Remote login users the grant allows. */
		logins: string[];
		/** If set, only these exec commands (glob) are allowed; shells need `allowShell`. */
		allowedCommands?: string[];
		allowShell: boolean;
		allowSftp: boolean;
		allowPortForwarding: boolean;
		/**
		 * `host:port` destinations direct-tcpip may open from the target (host exact, case ignored, or `*`;
		 * port or `*`). Absent: none, whatever `allowPortForwarding` says.
		 */
		allowedForwards?: string[];
		allowAgentForwarding: boolean;
	};
	kubernetes?: {
		namespaces: string[];
		verbs: string[];
		/** `pods`, `pods/log`, `deployments.apps`, `*`. */
		resources: string[];
		/** Groups the gateway impersonates in addition to the user (narrowed by RBAC, never widened). */
		impersonateGroups?: string[];
	};
	approvers: ApproverRule;
	/** The git change that approved the grant ("merge is the approval"). */
	origin: GrantOrigin;
	ticket?: string;
	justification?: string;
}

export interface ApproverRule {
	subjects: SubjectMatcher[];
	/** Approvals needed for a just-in-time request (default 1). */
	minApprovals: number;
}

export interface GrantOrigin {
	repository?: string;
	path?: string;
	commit?: string;
	author?: string;
	committer?: string;
	committedAt?: string;
	pullRequest?: number;
	/** Web link to the pull request or commit, for auditors. */
	url?: string;
}

// ---------------------------------------------------------------------------------------------
// Policies

export interface LabelSelector {
	matchLabels?: Record<string, string>;
}

export type MaskStrategy =
	| { type: "redact"; replacement?: string }
	/** Keep the last (and optionally first) characters, replace the rest with `*`. */
	| { type: "partial"; keepLast: number; keepFirst?: number }
	/** HMAC-SHA-256 with the bundle's masking key, hex prefix: joinable pseudonyms. */
	| { type: "hash"; length?: number }
	| { type: "null" };

export type ContentDetector = "creditCard" | "email" | "phone" | "iban" | "nationalId";

export interface MaskRule {
	name: string;
	/** `schema.table.column` globs (`*` wildcards); `table.column` means any schema. */
	columns?: string[];
	/** Content detectors applied to every text value not already masked. */
	detectors?: ContentDetector[];
	/** Custom regular expressions (JavaScript syntax) treated as detectors. */
	patterns?: string[];
	strategy: MaskStrategy;
}

export interface BundleMaskingPolicy {
	key: ResourceKey;
	selector: LabelSelector;
	rules: MaskRule[];
	/** Subjects exempt from this policy (e.g. a break-glass group). */
	exempt?: SubjectMatcher[];
}

export type GuardrailAction = "block" | "requireApproval" | "audit";

export interface GuardrailRule {
	name: string;
	action: GuardrailAction;
	/** Shown to the client together with the rule name. */
	message?: string;
	sql?: {
		/** Statement kinds such as `DROP`, `TRUNCATE`, `DELETE`, `UPDATE`, `ALTER SYSTEM`, `GRANT`, `CREATE ROLE`, `COPY`. */
		statementKinds?: string[];
		/** Tables (`schema.table` globs) touched by the statement. */
		tables?: string[];
		/** Functions called anywhere in the statement. */
		functions?: string[];
		/** Only DELETE/UPDATE without a WHERE clause. */
		withoutWhere?: boolean;
	};
	kubernetes?: {
		verbs?: string[];
		resources?: string[];
		namespaces?: string[];
	};
	ssh?: {
		/** Command globs matched against exec commands and shell input lines. */
		commands?: string[];
	};
	approval?: {
		approvers?: SubjectMatcher[];
		minApprovals?: number;
		timeoutSeconds?: number;
		/** Once approved, the same statement by the same identity may run again within this window. */
		reuseWindowSeconds?: number;
	};
}

export interface BundleGuardrailPolicy {
	key: ResourceKey;
	selector: LabelSelector;
	rules: GuardrailRule[];
}
