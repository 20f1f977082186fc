/**
 * The bundle high-water mark: the newest bundle (version + hash) a gateway has accepted, kept outside
 * the process so that a restarted gateway, or a new replica, refuses a bundle older than one already
 * in force (a stale Secret restored from a backup, re-applied by a GitOps tool, or written by a stale
 * writer): that older bundle may name grants that have since been revoked.
 *
 * Two places, chosen by `--bundle-state`:
 * - `configmap:NS/NAME` (default with `--bundle-secret`): shared by every replica, so a replica that
 *   starts after a rollback refuses it too. The operator reads the same ConfigMap and numbers its next
 *   bundle above it, so an operator restored from a backup (or a deleted bundle Secret) recovers alone.
 * - `file:PATH` (default with `--bundle-file`: `<spool-dir>/bundle-state.json`): one gateway.
 *
 * The mark only rises. It is raised after a bundle is accepted; a crash between the two leaves the
 * previous mark, which is never newer than what the gateway ran, so nothing legitimate is refused.
 */
import { mkdir, readFile, rename, writeFile } from "node:fs/promises";
import { dirname } from "node:path";
import type { CoreV1Api, KubeConfig } from "@kubernetes/client-node";

export interface BundleMark {
	version: number;
	hash: string;
	generatedAt: string;
	/** When this gateway (or one of the replicas sharing the mark) accepted it. */
	acceptedAt: string;
}

export interface HighWaterStore {
	/** Human-readable location, for logs and error messages (`file:/…`, `configmap:ns/name`). */
	readonly location: string;
	read(): Promise<BundleMark | undefined>;
	/** Store `mark` unless a mark of the same or a higher version is already there. */
	raise(mark: BundleMark): Promise<void>;
}

/** Data key of the ConfigMap (and the whole content of the file). */
export const HIGH_WATER_KEY = "highwater.json";

/** Default ConfigMap name for a bundle Secret name; the operator derives the same name. */
export function highWaterConfigMapName(bundleSecretName: string): string {
	return `${bundleSecretName}-highwater`;
}

/** Parse a stored mark; anything malformed is an error, never "no mark" (that would reopen rollback). */
export function parseMark(text: string, where: string): BundleMark {
	let m: Partial<BundleMark>;
	try {
		m = JSON.parse(text) as Partial<BundleMark>;
	} catch (err) {
		throw new Error(`${where}: bundle high-water mark is not JSON (${(err as Error).message}); remove it to start again from the next bundle (docs/operations.md, "Bundle rollback refused")`);
	}
	if (!m || typeof m !== "object" || typeof m.version !== "number" || !Number.isSafeInteger(m.version) || typeof m.hash !== "string") {
		throw new Error(`${where}: bundle high-water mark needs an integer version and a hash; remove it to start again from the next bundle (docs/operations.md, "Bundle rollback refused")`);
	}
	return { version: m.version, hash: m.hash, generatedAt: String(m.generatedAt ?? ""), acceptedAt: String(m.acceptedAt ?? "") };
}

export class FileHighWater implements HighWaterStore {
	readonly location: string;

	constructor(private readonly path: string) {
		this.location = `file:${path}`;
	}

	async read(): Promise<BundleMark | undefined> {
		let text: string;
		try {
			text = await readFile(this.path, "utf8");
		} catch (err) {
			if ((err as NodeJS.ErrnoException).code === "ENOENT") return undefined;
			throw err;
		}
		return parseMark(text, this.location);
	}

	async raise(mark: BundleMark): Promise<void> {
		const current = await this.read().catch(() => undefined);
		if (current && current.version >= mark.version) return;
		await mkdir(dirname(this.path), { recursive: true });
		const tmp = `${this.path}.${process.pid}.tmp`;
		await writeFile(tmp, `${JSON.stringify(mark)}\n`, { mode: 0o600 });
		await rename(tmp, this.path);
	}
}

interface ConfigMapLike {
	metadata?: { resourceVersion?: string };
	data?: Record<string, string>;
}

/**
 * A ConfigMap every replica reads and raises. Writes carry the resourceVersion read (compare and
 * swap), so two replicas raising at once never lower it.
 */
export class ConfigMapHighWater implements HighWaterStore {
	readonly location: string;

	constructor(
		private readonly namespace: string,
		private readonly name: string,
		private readonly kubeConfig?: KubeConfig,
	) {
		this.location = `configmap:${namespace}/${name}`;
	}

	async #client(): Promise<CoreV1Api> {
		const k8s = await import("@kubernetes/client-node");
		let kc = this.kubeConfig;
		if (!kc) {
			kc = new k8s.KubeConfig();
			kc.loadFromDefault();
		}
		return kc.makeApiClient(k8s.CoreV1Api);
	}

	async #get(core: CoreV1Api): Promise<ConfigMapLike | undefined> {
		try {
			return (await core.readNamespacedConfigMap({ namespace: this.namespace, name: this.name })) as ConfigMapLike;
		} catch (err) {
			if (statusOf(err) === 404) return undefined;
			throw err;
		}
	}

	async read(): Promise<BundleMark | undefined> {
		const cm = await this.#get(await this.#client());
		const text = cm?.data?.[HIGH_WATER_KEY];
		return text === undefined ? undefined : parseMark(text, this.location);
	}

	async raise(mark: BundleMark): Promise<void> {
		const core = await this.#client();
		for (let attempt = 0; ; attempt++) {
			const cm = await this.#get(core);
			const text = cm?.data?.[HIGH_WATER_KEY];
			let current: BundleMark | undefined;
			try {
				current = text === undefined ? undefined : parseMark(text, this.location);
			} catch {
				current = undefined; // a broken mark is replaced by a good one
			}
			if (current && current.version >= mark.version) return;
			const body = {
				apiVersion: "v1",
				kind: "ConfigMap",
				metadata: {
					name: this.name,
					namespace: this.namespace,
					labels: { "app.kubernetes.io/part-of": "drawbridge", "app.kubernetes.io/component": "gateway-bundle-highwater" },
					...(cm?.metadata?.resourceVersion ? { resourceVersion: cm.metadata.resourceVersion } : {}),
				},
				data: { [HIGH_WATER_KEY]: JSON.stringify(mark) },
			};
			try {
				if (cm) await core.replaceNamespacedConfigMap({ namespace: this.namespace, name: this.name, body });
				else await core.createNamespacedConfigMap({ namespace: this.namespace, body });
				return;
			} catch (err) {
				// 409: another replica wrote first (or created it); read again and compare.
				if (statusOf(err) !== 409 || attempt >= 5) throw err;
			}
		}
	}
}

function statusOf(err: unknown): number | undefined {
	const e = err as { code?: unknown; statusCode?: unknown; response?: { statusCode?: unknown } } | null;
	for (const v of [e?.code, e?.statusCode, e?.response?.statusCode]) if (typeof v === "number") return v;
	return undefined;
}
