/**
 * State the operator keeps in Kubernetes Secrets (never only in memory): the signing key ring, the
 * masking key, per-grant token Secrets and per-grant dynamic-role Secrets, plus the backend secrets
 * Connections refer to. Creation races between replicas resolve on the apiserver (409 → re-read).
 */

import { createHash, generateKeyPairSync, randomBytes } from "node:crypto";
import { isIP } from "node:net";
import type { ClientConfig } from "pg";
import type { Connection } from "../../crds/index.ts";
import { generateEd25519Pem } from "../../crds/ssh-certificate.ts";
import type { BackendCredential } from "../../gateway/config/bundle.ts";
import { type KeyRing, type RotationPolicy, parseKeyRing, rotateKeyRing, serializeKeyRing } from "../credentials/jwt.ts";
import { CONFIGMAPS, KubeError, type KubeClient, type KubeObject, SECRETS } from "../kube/client.ts";
import { FIELD_MANAGER, LABELS, MANAGED_BY_VALUE } from "./labels.ts";

export interface Secret extends KubeObject {
	type?: string;
	data?: Record<string, string>;
	stringData?: Record<string, string>;
}

export function secretValue(s: Secret | undefined, key: string): string | undefined {
	const v = s?.data?.[key];
	return v === undefined ? undefined : Buffer.from(v, "base64").toString("utf8");
}

export function encodeData(values: Record<string, string>): Record<string, string> {
	return Object.fromEntries(Object.entries(values).map(([k, v]) => [k, Buffer.from(v, "utf8").toString("base64")]));
}

/** Creates a Secret unless it exists; returns whichever copy the apiserver holds. */
export async function createOrGetSecret(kube: KubeClient, secret: Secret): Promise<{ secret: Secret; created: boolean }> {
	try {
		return { secret: await kube.create<Secret>(SECRETS, secret, FIELD_MANAGER), created: true };
	} catch (e) {
		if (!(e instanceof KubeError && e.code === "CONFLICT")) throw e;
		const existing = await kube.get<Secret>(SECRETS, secret.metadata.namespace, secret.metadata.name);
		if (!existing) throw e;
		return { secret: existing, created: false };
	}
}

/** Creates or overwrites a Secret (last writer wins; used for values that are regenerated anyway). */
export async function putSecret(kube: KubeClient, secret: Secret): Promise<Secret> {
	const existing = await kube.get<Secret>(SECRETS, secret.metadata.namespace, secret.metadata.name);
	if (!existing) {
		try {
			return await kube.create<Secret>(SECRETS, secret, FIELD_MANAGER);
		} catch (e) {
			if (!(e instanceof KubeError && e.code === "CONFLICT")) throw e;
			return putSecret(kube, secret);
		}
	}
	return kube.replace<Secret>(SECRETS, { ...secret, metadata: { ...secret.metadata, resourceVersion: existing.metadata.resourceVersion } });
}

export function managedLabels(extra: Record<string, string> = {}): Record<string, string> {
	return { [LABELS.managedBy]: MANAGED_BY_VALUE, ...extra };
}

// ---------------------------------------------------------------------------------------------
// Signing keys

/**
 * Reads the key ring, rotates it if due and writes it back with optimistic concurrency (a replica that
 * loses the race re-reads the winner's ring). Returns the ring in force and when to look again.
 */
export async function loadAndRotateKeyRing(kube: KubeClient, namespace: string, name: string, policy: RotationPolicy, now = new Date()): Promise<{ ring: KeyRing; changed: boolean; nextCheck: Date }> {
	for (let attempt = 0; attempt < 5; attempt++) {
		const existing = await kube.get<Secret>(SECRETS, namespace, name);
		const current = parseKeyRing(secretValue(existing, "keys.json"));
		const { ring, changed } = rotateKeyRing(current, now, policy);
		const signer = ring.keys[0]!;
		const nextRotation = Date.parse(signer.createdAt) + policy.rotationIntervalMs;
		const oldest = ring.keys.length > 1 ? Date.parse(ring.keys[ring.keys.length - 2]!.createdAt) + policy.overlapMs : Number.POSITIVE_INFINITY;
		const nextCheck = new Date(Math.min(nextRotation, oldest));
		if (!changed) return { ring, changed: false, nextCheck };
		const body: Secret = {
			apiVersion: "v1",
			kind: "Secret",
			type: "Opaque",
			metadata: { name, namespace, labels: managedLabels(), ...(existing ? { resourceVersion: existing.metadata.resourceVersion } : {}) },
			data: encodeData({ "keys.json": serializeKeyRing(ring) }),
		};
		try {
			if (existing) await kube.replace(SECRETS, body);
			else await kube.create(SECRETS, body, FIELD_MANAGER);
			return { ring, changed: true, nextCheck };
		} catch (e) {
			if (!(e instanceof KubeError && e.code === "CONFLICT")) throw e;
		}
	}
	throw new Error("signing key ring: too many concurrent updates");
}

/** The bundle's masking key: 32 random bytes generated once and kept in a Secret. */
export async function loadMaskingKey(kube: KubeClient, namespace: string, name: string): Promise<string> {
	const { secret } = await createOrGetSecret(kube, {
		apiVersion: "v1",
		kind: "Secret",
		type: "Opaque",
		metadata: { name, namespace, labels: managedLabels() },
		data: encodeData({ key: randomBytes(32).toString("base64") }),
	});
	const key = secretValue(secret, "key");
	if (!key) throw new Error(`Secret ${namespace}/${name} has no key`);
	return key;
}

// ---------------------------------------------------------------------------------------------
// Recording signing key

/** Key of the Secret holding the gateways' private recording JWK (mounted as --recording-key-file). */
export const RECORDING_KEY_FILE = "recording-key.jwk";
/** Key of the ConfigMap holding the public JWKS auditors pin (mounted as --recording-trusted-keys-file). */
export const RECORDING_TRUSTED_KEYS_FILE = "keys.json";

interface PublicRecordingJwk {
	kty: "OKP";
	crv: "Ed25519";
	x: string;
	kid: string;
	alg: "EdDSA";
	use: "sig";
}

/** The public half of an Ed25519 JWK, `kid` = its RFC 7638 thumbprint (what gateway/recording/keys.ts requires). */
export function recordingPublicJwk(jwk: { kty?: string; crv?: string; x?: string }): PublicRecordingJwk {
	if (jwk.kty !== "OKP" || jwk.crv !== "Ed25519" || typeof jwk.x !== "string") throw new Error("recording key must be an Ed25519 JWK");
	const kid = createHash("sha256").update(JSON.stringify({ crv: jwk.crv, kty: jwk.kty, x: jwk.x })).digest("base64url");
	return { kty: "OKP", crv: "Ed25519", x: jwk.x, kid, alg: "EdDSA", use: "sig" };
}

/**
 * One recording signing key for every gateway replica, and the public key set auditors pin. The
 * private JWK is generated once into Secret `secretName`; its public half is added to the JWKS in
 * ConfigMap `configMapName` (keys are only ever added, so recordings signed by a retired key keep
 * verifying after a rotation: delete the Secret, the next key setup makes a new one). Gateways mount
 * both (deploy/base/gateway.yaml), so the viewer and `recordings verify --key` never need to trust a
 * key found in the bucket.
 */
export async function ensureRecordingKeys(kube: KubeClient, namespace: string, secretName: string, configMapName: string): Promise<{ kid: string; keys: number }> {
	const { privateKey } = generateKeyPairSync("ed25519");
	const { secret } = await createOrGetSecret(kube, {
		apiVersion: "v1",
		kind: "Secret",
		type: "Opaque",
		metadata: { name: secretName, namespace, labels: managedLabels() },
		data: encodeData({ [RECORDING_KEY_FILE]: `${JSON.stringify(privateKey.export({ format: "jwk" }))}\n` }),
	});
	const text = secretValue(secret, RECORDING_KEY_FILE);
	if (!text) throw new Error(`Secret ${namespace}/${secretName} has no ${RECORDING_KEY_FILE}`);
	const pub = recordingPublicJwk(JSON.parse(text) as { kty?: string; crv?: string; x?: string });
	for (let attempt = 0; attempt < 5; attempt++) {
		const cm = await kube.get<KubeObject & { data?: Record<string, string> }>(CONFIGMAPS, namespace, configMapName);
		let keys: { kid?: string }[] = [];
		const stored = cm?.data?.[RECORDING_TRUSTED_KEYS_FILE];
		if (stored !== undefined) {
			const parsed = JSON.parse(stored) as { keys?: unknown };
			if (!Array.isArray(parsed.keys)) throw new Error(`ConfigMap ${namespace}/${configMapName}: ${RECORDING_TRUSTED_KEYS_FILE} is not a JWKS`);
			keys = parsed.keys as { kid?: string }[];
		}
		if (keys.some((k) => k.kid === pub.kid)) return { kid: pub.kid, keys: keys.length };
		const body = {
			apiVersion: "v1",
			kind: "ConfigMap",
			metadata: { name: configMapName, namespace, labels: managedLabels(), ...(cm ? { resourceVersion: cm.metadata.resourceVersion } : {}) },
			data: { [RECORDING_TRUSTED_KEYS_FILE]: `${JSON.stringify({ keys: [...keys, pub] }, null, 2)}\n` },
		};
		try {
			if (cm) await kube.replace(CONFIGMAPS, body);
			else await kube.create(CONFIGMAPS, body, FIELD_MANAGER);
			return { kid: pub.kid, keys: keys.length + 1 };
		} catch (e) {
			if (!(e instanceof KubeError && e.code === "CONFLICT")) throw e;
		}
	}
	throw new Error("recording trusted keys: too many concurrent updates");
}

// ---------------------------------------------------------------------------------------------
// SSH certificate authorities

export interface SshCaKey {
	privateKeyPem: string;
	publicKeyLine: string;
}

export interface SshCas {
	/** Signs agents' user certificates; the gateway trusts it. */
	user: SshCaKey;
	/** Signs the gateway's per-session upstream certificates; target hosts trust it. */
	upstream: SshCaKey;
}

/** Both SSH CA keys (Ed25519), generated once and kept in one Secret. */
export async function loadSshCas(kube: KubeClient, namespace: string, name: string): Promise<SshCas> {
	const user = generateEd25519Pem();
	const upstream = generateEd25519Pem();
	const { secret } = await createOrGetSecret(kube, {
		apiVersion: "v1",
		kind: "Secret",
		type: "Opaque",
		metadata: { name, namespace, labels: managedLabels() },
		data: encodeData({
			"user-ca": user.privateKeyPem,
			"user-ca.pub": `${user.publicKeyLine} drawbridge-user-ca`,
			"upstream-ca": upstream.privateKeyPem,
			"upstream-ca.pub": `${upstream.publicKeyLine} drawbridge-upstream-ca`,
		}),
	});
	const read = (k: string): SshCaKey => {
		const privateKeyPem = secretValue(secret, k);
		const publicKeyLine = secretValue(secret, `${k}.pub`);
		if (!privateKeyPem || !publicKeyLine) throw new Error(`Secret ${namespace}/${name} lacks ${k}`);
		return { privateKeyPem, publicKeyLine };
	};
	return { user: read("user-ca"), upstream: read("upstream-ca") };
}

// ---------------------------------------------------------------------------------------------
// Connection backend secrets

export interface ConnectionSecrets {
	credential?: BackendCredential;
	caPem?: string;
}

/** Reads a Connection's backend credential and CA from its Secrets (same namespace). */
export async function readConnectionSecrets(kube: KubeClient, c: Connection): Promise<ConnectionSecrets> {
	const ns = c.metadata.namespace ?? "default";
	const out: ConnectionSecrets = {};
	if (c.spec.credentialSecretRef) {
		const s = await kube.get<Secret>(SECRETS, ns, c.spec.credentialSecretRef.name);
		if (s) {
			const username = secretValue(s, "username") ?? "";
			if (c.spec.type === "postgres") {
				const password = secretValue(s, "password");
				if (password !== undefined) out.credential = { type: "password", username, password };
			} else if (c.spec.type === "ssh") {
				const privateKeyPem = secretValue(s, "privateKey") ?? secretValue(s, "ssh-privatekey");
				const certificate = secretValue(s, "certificate");
				if (privateKeyPem) out.credential = { type: "sshKey", username, privateKeyPem, ...(certificate ? { certificate } : {}) };
			} else {
				const token = secretValue(s, "token");
				const clientCertPem = secretValue(s, "tls.crt");
				const clientKeyPem = secretValue(s, "tls.key");
				out.credential = { type: "kubernetes", ...(token ? { token } : {}), ...(clientCertPem ? { clientCertPem } : {}), ...(clientKeyPem ? { clientKeyPem } : {}) };
			}
		}
	}
	const caRef = c.spec.tls?.caSecretRef;
	if (caRef) {
		const s = await kube.get<Secret>(SECRETS, ns, caRef.name);
		const pem = secretValue(s, caRef.key ?? "ca.crt");
		if (pem) out.caPem = pem;
	}
	return out;
}

/** node-postgres settings for the operator's own admin session to a dynamic Connection. */
export function adminClientConfig(c: Connection, secrets: ConnectionSecrets): ClientConfig {
	if (secrets.credential?.type !== "password") throw new Error(`Connection ${c.metadata.namespace}/${c.metadata.name}: credential Secret needs username and password`);
	const mode = c.spec.tls?.mode ?? "verify-full";
	const ssl: ClientConfig["ssl"] =
		mode === "disable"
			? false
			: mode === "require"
				? { rejectUnauthorized: false }
				: mode === "verify-ca"
					? { ...(secrets.caPem ? { ca: secrets.caPem } : {}), rejectUnauthorized: true, checkServerIdentity: () => undefined }
					: {
						...(secrets.caPem ? { ca: secrets.caPem } : {}),
						rejectUnauthorized: true,
						// SNI never carries an IP address; node checks IP SANs against the host itself.
						...(c.spec.tls?.serverName ? { servername: c.spec.tls.serverName } : isIP(c.spec.host) ? {} : { servername: c.spec.host }),
					};
	return {
		host: c.spec.host,
		port: c.spec.port,
		database: c.spec.postgres!.database,
		user: secrets.credential.username,
		password: secrets.credential.password,
		ssl,
		connectionTimeoutMillis: 10_000,
		application_name: "drawbridge-operator",
	};
}
