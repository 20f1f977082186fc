/**
 * Gathers compile inputs from the cluster, runs the pure compiler and writes the bundle Secret
 * (`bundle.json`) that gateways watch. The version only moves when the content changes (content hash
 * kept in an annotation); writes carry the resourceVersion read, so two writers can never produce the
 * same version with different content.
 */

import { readFileSync } from "node:fs";
import type { Logger } from "pino";
import type { AccessGrant, Connection, GuardrailPolicy, MaskingPolicy } from "../../crds/index.ts";
import type { BackendCredential, ConfigBundle, IssuerConfig } from "../../gateway/config/bundle.ts";
import { HIGH_WATER_KEY, highWaterConfigMapName, parseMark } from "../../gateway/config/highwater.ts";
import { type KeyRing, JWT_ALGORITHM, jwksOf } from "../credentials/jwt.ts";
import { CONFIGMAPS, type KubeClient, KubeError, SECRETS } from "../kube/client.ts";
import type { OperatorMetrics } from "../metrics.ts";
import type { OperatorOptions } from "../options.ts";
import { ANNOTATIONS, FIELD_MANAGER, LABELS } from "../reconcile/labels.ts";
import { type Secret, type SshCas, encodeData, managedLabels, readConnectionSecrets, secretValue } from "../reconcile/stores.ts";
import { compileBundle, compileBundleContent, contentHash, nextBundleChange, withoutDuplicateNames } from "./compile.ts";

export interface BundleSources {
	connections(): Connection[];
	grants(): AccessGrant[];
	maskingPolicies(): MaskingPolicy[];
	guardrailPolicies(): GuardrailPolicy[];
	keyRing(): KeyRing;
	maskingKey(): string;
	sshCas(): SshCas | undefined;
	/** The cluster's service-account issuer with its JWKS inlined, when discovered. */
	kubeIssuer(): IssuerConfig | undefined;
}

/**
 * The cluster's own service-account issuer, discovered through the API server the operator talks to:
 * `/.well-known/openid-configuration` for `iss`, `/openid/v1/jwks` for the keys, inlined into the
 * bundle so gateways need no API access to verify projected tokens. Refreshed on every resync.
 */
export async function discoverKubeIssuer(kube: KubeClient, audiences: readonly string[]): Promise<IssuerConfig> {
	const conf = await kube.request<{ issuer?: string }>("GET", "/.well-known/openid-configuration");
	if (!conf?.issuer) throw new Error("API server has no service-account issuer discovery document");
	const jwks = await kube.request<{ keys?: Record<string, unknown>[] }>("GET", "/openid/v1/jwks", undefined, "application/json", "application/jwk-set+json");
	if (!Array.isArray(jwks?.keys) || jwks.keys.length === 0) throw new Error("API server JWKS is empty");
	return { name: "kubernetes", kind: "kubernetes", issuer: conf.issuer, audiences: [...audiences], jwks: { keys: jwks.keys }, algorithms: ["RS256", "ES256"] };
}

/** Issuers the bundle trusts: the operator itself (inline JWKS), the cluster's service-account issuer, extra OIDC issuers. */
export function issuersFor(opts: OperatorOptions, ring: KeyRing, discoveredKube?: IssuerConfig): IssuerConfig[] {
	const out: IssuerConfig[] = [
		{
			name: "drawbridge-operator",
			kind: "drawbridge",
			issuer: opts.issuer,
			audiences: [...opts.tokenAudiences],
			jwks: jwksOf(ring),
			algorithms: [JWT_ALGORITHM],
			// the gateway refuses longer-lived tokens of this issuer (its default is one day)
			maxTokenLifetimeSec: Math.ceil(opts.tokenTtlMs / 1000),
		},
	];
	if (!opts.kubeIssuer && discoveredKube) out.push(discoveredKube);
	if (opts.kubeIssuer) {
		out.push({
			name: "kubernetes",
			kind: "kubernetes",
			issuer: opts.kubeIssuer,
			audiences: [...opts.kubeAudiences],
			...(opts.kubeJwksUri ? { jwksUri: opts.kubeJwksUri } : {}),
			...(opts.kubeCaFile ? { caPem: readFileSync(opts.kubeCaFile, "utf8") } : {}),
			algorithms: ["RS256", "ES256"],
		});
	}
	if (opts.extraIssuersFile) {
		const extra = JSON.parse(readFileSync(opts.extraIssuersFile, "utf8")) as IssuerConfig[];
		if (!Array.isArray(extra)) throw new Error(`${opts.extraIssuersFile}: expected a JSON array of issuers`);
		out.push(...extra);
	}
	// Gateways refuse a bundle naming one `iss` twice (which entry wins would decide its kind and keys).
	const seen = new Map<string, string>();
	for (const i of out) {
		const first = seen.get(i.issuer);
		if (first !== undefined) throw new Error(`issuers ${first} and ${i.name} both have iss ${JSON.stringify(i.issuer)}`);
		seen.set(i.issuer, i.name);
	}
	return out;
}

export class BundleWriter {
	private lastBundle: ConfigBundle | undefined;

	constructor(
		private readonly kube: KubeClient,
		private readonly opts: OperatorOptions,
		private readonly src: BundleSources,
		private readonly log: Logger,
		private readonly metrics: OperatorMetrics,
	) {}

	current(): ConfigBundle | undefined {
		return this.lastBundle;
	}

	/**
	 * The gateways' bundle high-water mark (0 when none yet). A mark that cannot be read (RBAC not
	 * updated yet, a damaged ConfigMap) must not stop bundle writes, or revocations would stop reaching
	 * gateways: it is logged and the Secret's own version counts, as before the mark existed.
	 */
	async #highWaterVersion(): Promise<number> {
		const name = highWaterConfigMapName(this.opts.bundleSecretName);
		try {
			const cm = await this.kube.get<{ data?: Record<string, string> } & Secret>(CONFIGMAPS, this.opts.namespace, name);
			const text = cm?.data?.[HIGH_WATER_KEY];
			return text === undefined ? 0 : parseMark(text, `configmap:${this.opts.namespace}/${name}`).version;
		} catch (e) {
			this.log.warn({ err: (e as Error).message, configMap: `${this.opts.namespace}/${name}` }, "gateways' bundle high-water mark not readable; numbering from the bundle Secret alone");
			return 0;
		}
	}

	/** Compiles and writes if changed. Returns when the bundle would next change on its own. */
	async sync(): Promise<{ requeueAt?: Date } | undefined> {
		const now = new Date();
		const connections = this.src.connections();
		const grants = this.src.grants();
		const connectionCredentials: Record<string, BackendCredential> = {};
		const connectionCaPem: Record<string, string> = {};
		for (const c of connections) {
			const key = `${c.metadata.namespace}/${c.metadata.name}`;
			const s = await readConnectionSecrets(this.kube, c);
			if (s.credential) connectionCredentials[key] = s.credential;
			if (s.caPem) connectionCaPem[key] = s.caPem;
		}
		const grantCredentials: Record<string, BackendCredential> = {};
		const roleSecrets = await this.kube.list<Secret>(SECRETS, this.opts.namespace, { labelSelector: `${LABELS.credential}=postgres-role` });
		for (const s of roleSecrets.items) {
			if (s.metadata.annotations?.["access.drawbridge.dev/role-ready"] !== "true") continue;
			const grantKey = s.metadata.annotations?.["access.drawbridge.dev/grant-key"];
			const username = secretValue(s, "username");
			const password = secretValue(s, "password");
			if (grantKey && username && password) grantCredentials[grantKey] = { type: "password", username, password };
		}
		const cas = this.src.sshCas();
		const inputs = {
			connections,
			grants,
			maskingPolicies: this.src.maskingPolicies(),
			guardrailPolicies: this.src.guardrailPolicies(),
			issuers: issuersFor(this.opts, this.src.keyRing(), this.src.kubeIssuer()),
			connectionCredentials,
			connectionCaPem,
			grantCredentials,
			maskingKey: this.src.maskingKey(),
			now,
			...(cas ? { ssh: { userCaPublicKey: cas.user.publicKeyLine, upstreamCa: cas.upstream } } : {}),
		};
		for (const c of withoutDuplicateNames(connections).dropped) {
			this.log.warn({ connection: `${c.metadata.namespace}/${c.metadata.name}` }, "Connection name already used in another namespace; left out of the bundle with its grants");
		}
		const hash = contentHash(compileBundleContent(inputs));
		const next = nextBundleChange(inputs, now);
		const res = next ? { requeueAt: next } : undefined;
		const existing = await this.kube.get<Secret>(SECRETS, this.opts.namespace, this.opts.bundleSecretName);
		const storedVersion = Number(existing?.metadata.annotations?.["access.drawbridge.dev/bundle-version"] ?? "0");
		const prevVersion = Number.isSafeInteger(storedVersion) ? storedVersion : 0;
		// Gateways refuse a bundle older than the newest they accepted (their high-water mark). After the
		// Secret was deleted, restored from a backup or overwritten with an old copy, it is numbered below
		// that mark: write the current content again above it, or no gateway (re)starts.
		const highWater = await this.#highWaterVersion();
		if (existing?.metadata.annotations?.[ANNOTATIONS.contentHash] === hash && prevVersion >= highWater) {
			if (!this.lastBundle) this.lastBundle = JSON.parse(secretValue(existing, "bundle.json") ?? "null") ?? undefined;
			return res;
		}
		if (highWater > prevVersion) this.log.warn({ secretVersion: prevVersion, highWater }, "bundle Secret is older than the gateways' high-water mark; writing the current bundle above it");
		const version = Math.max(prevVersion, highWater) + 1;
		const bundle = compileBundle(inputs, { version, generatedAt: now });
		const body: Secret = {
			apiVersion: "v1",
			kind: "Secret",
			type: "Opaque",
			metadata: {
				name: this.opts.bundleSecretName,
				namespace: this.opts.namespace,
				labels: managedLabels(),
				annotations: { [ANNOTATIONS.contentHash]: hash, "access.drawbridge.dev/bundle-version": String(version), "access.drawbridge.dev/bundle-hash": bundle.hash },
				...(existing ? { resourceVersion: existing.metadata.resourceVersion } : {}),
			},
			data: encodeData({ "bundle.json": JSON.stringify(bundle) }),
		};
		try {
			if (existing) await this.kube.replace(SECRETS, body);
			else await this.kube.create(SECRETS, body, FIELD_MANAGER);
		} catch (e) {
			if (e instanceof KubeError && e.code === "CONFLICT") throw new Error("bundle Secret changed concurrently; retrying");
			throw e;
		}
		this.lastBundle = bundle;
		this.metrics.bundleVersion.set(version);
		this.log.info({ version, hash: bundle.hash, grants: bundle.grants.length, connections: bundle.connections.length }, "gateway bundle written");
		return res;
	}
}
