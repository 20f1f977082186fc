/**
 * The only module that talks to the Kubernetes API. @kubernetes/client-node loads the kubeconfig (file,
 * in-cluster service account) and supplies TLS material and auth headers; requests are plain HTTPS
 * with JSON so server-side apply, status patches and watches stay explicit and easy to read.
 */

import * as https from "node:https";
import * as http from "node:http";
import { KubeConfig } from "@kubernetes/client-node";

export type KubeErrorCode = "NOT_FOUND" | "CONFLICT" | "FORBIDDEN" | "UNAUTHORIZED" | "INVALID" | "GONE" | "SERVER" | "NETWORK" | "ABORTED";

export class KubeError extends Error {
	readonly code: KubeErrorCode;
	readonly status: number;
	readonly body: unknown;
	constructor(code: KubeErrorCode, status: number, message: string, body?: unknown) {
		super(message);
		this.name = "KubeError";
		this.code = code;
		this.status = status;
		this.body = body;
	}
}

function codeFor(status: number): KubeErrorCode {
	if (status === 404) return "NOT_FOUND";
	if (status === 409) return "CONFLICT";
	if (status === 403) return "FORBIDDEN";
	if (status === 401) return "UNAUTHORIZED";
	if (status === 410) return "GONE";
	if (status === 422 || status === 400) return "INVALID";
	return "SERVER";
}

export interface KubeObject {
	apiVersion: string;
	kind: string;
	metadata: {
		name: string;
		namespace?: string;
		labels?: Record<string, string>;
		annotations?: Record<string, string>;
		uid?: string;
		generation?: number;
		resourceVersion?: string;
		creationTimestamp?: string;
		deletionTimestamp?: string;
		finalizers?: string[];
		[k: string]: unknown;
	};
}

/** A request body: any object shape with apiVersion, kind and metadata (spec, data, status...). */
export type KubeBody = KubeObject & Record<string, unknown>;

export interface ResourceType {
	/** "" for the core group. */
	group: string;
	version: string;
	plural: string;
	kind: string;
	namespaced: boolean;
}

export const SECRETS: ResourceType = { group: "", version: "v1", plural: "secrets", kind: "Secret", namespaced: true };
export const CONFIGMAPS: ResourceType = { group: "", version: "v1", plural: "configmaps", kind: "ConfigMap", namespaced: true };
export const EVENTS: ResourceType = { group: "", version: "v1", plural: "events", kind: "Event", namespaced: true };
export const LEASES: ResourceType = { group: "coordination.k8s.io", version: "v1", plural: "leases", kind: "Lease", namespaced: true };
export const NAMESPACES: ResourceType = { group: "", version: "v1", plural: "namespaces", kind: "Namespace", namespaced: false };

export function drawbridgeType(kind: string, plural: string): ResourceType {
	return { group: "access.drawbridge.dev", version: "v1alpha1", plural, kind, namespaced: true };
}

export interface WatchEvent<T> {
	type: "ADDED" | "MODIFIED" | "DELETED" | "BOOKMARK" | "ERROR";
	object: T;
}

export interface ListOptions {
	labelSelector?: string;
	fieldSelector?: string;
}

export class KubeClient {
	readonly server: string;
	private constructor(
		private readonly kc: KubeConfig,
		private readonly opts: https.RequestOptions,
		/** Aborts this client's requests (see `withSignal`). */
		private readonly signal: () => AbortSignal | undefined = () => undefined,
	) {
		const cluster = kc.getCurrentCluster();
		if (!cluster) throw new TypeError("kubeconfig has no current cluster");
		this.server = cluster.server.replace(/\/+$/, "");
	}

	/** From a kubeconfig file, or in-cluster when `kubeconfigPath` is undefined and the SA token exists, else the default locations. */
	static async create(kubeconfigPath?: string): Promise<KubeClient> {
		const kc = new KubeConfig();
		if (kubeconfigPath) kc.loadFromFile(kubeconfigPath);
		else kc.loadFromDefault();
		const opts: https.RequestOptions = {};
		await kc.applyToHTTPSOptions(opts);
		return new KubeClient(kc, opts);
	}

	/**
	 * The same API access, with every request tied to `signal()` (read per request): once it is aborted,
	 * requests in flight are torn down and new ones fail at once with `ABORTED`. The operator gives its
	 * reconcilers one of these per leadership term, so a shutdown or a lost Lease stops their writes
	 * without touching the informers' watches.
	 */
	withSignal(signal: () => AbortSignal | undefined): KubeClient {
		return new KubeClient(this.kc, this.opts, signal);
	}

	path(t: ResourceType, namespace?: string, name?: string, sub?: string): string {
		const base = t.group ? `/apis/${t.group}/${t.version}` : `/api/${t.version}`;
		const ns = t.namespaced && namespace ? `/namespaces/${encodeURIComponent(namespace)}` : "";
		return `${base}${ns}/${t.plural}${name ? `/${encodeURIComponent(name)}` : ""}${sub ? `/${sub}` : ""}`;
	}

	private async options(method: string, path: string, headers: Record<string, string>): Promise<https.RequestOptions> {
		// Refresh auth (exec plugins, rotated in-cluster tokens) per request.
		const o: https.RequestOptions = { ...this.opts, headers: { ...(this.opts.headers ?? {}) } };
		await this.kc.applyToHTTPSOptions(o);
		const u = new URL(this.server + path);
		return { ...o, method, protocol: u.protocol, hostname: u.hostname, port: u.port, path: u.pathname + u.search, headers: { ...(o.headers as Record<string, string>), ...headers } };
	}

	async request<T = unknown>(method: string, path: string, body?: unknown, contentType = "application/json", accept = "application/json"): Promise<T> {
		const payload = body === undefined ? undefined : Buffer.from(typeof body === "string" ? body : JSON.stringify(body));
		const headers: Record<string, string> = { accept };
		if (payload) {
			headers["content-type"] = contentType;
			headers["content-length"] = String(payload.length);
		}
		const signal = this.signal();
		const aborted = () => new KubeError("ABORTED", 0, `${method} ${path}: aborted (${String(signal?.reason?.message ?? signal?.reason ?? "")})`);
		if (signal?.aborted) throw aborted();
		const o = await this.options(method, path, headers);
		const lib = o.protocol === "http:" ? http : https;
		return new Promise<T>((resolve, reject) => {
			if (signal?.aborted) return reject(aborted());
			const req = lib.request(o, (res) => {
				const chunks: Buffer[] = [];
				res.on("data", (c: Buffer) => chunks.push(c));
				res.on("end", () => {
					const text = Buffer.concat(chunks).toString("utf8");
					let parsed: unknown = text;
					try {
						parsed = text ? JSON.parse(text) : undefined;
					} catch {
						// keep text
					}
					const status = res.statusCode ?? 0;
					if (status >= 200 && status < 300) resolve(parsed as T);
					else {
						const msg = (parsed as { message?: string } | undefined)?.message ?? text.slice(0, 500);
						reject(new KubeError(codeFor(status), status, `${method} ${path}: ${status} ${msg}`, parsed));
					}
				});
				res.on("error", (e) => reject(signal?.aborted ? aborted() : new KubeError("NETWORK", 0, `${method} ${path}: ${e.message}`)));
			});
			req.on("error", (e) => reject(signal?.aborted ? aborted() : new KubeError("NETWORK", 0, `${method} ${path}: ${e.message}`)));
			req.setTimeout(30_000, () => req.destroy(new Error("request timed out")));
			if (signal) {
				const onAbort = () => req.destroy();
				signal.addEventListener("abort", onAbort, { once: true });
				req.once("close", () => signal.removeEventListener("abort", onAbort));
			}
			if (payload) req.write(payload);
			req.end();
		});
	}

	async get<T extends KubeObject = KubeObject>(t: ResourceType, namespace: string | undefined, name: string): Promise<T | undefined> {
		try {
			return await this.request<T>("GET", this.path(t, namespace, name));
		} catch (e) {
			if (e instanceof KubeError && e.code === "NOT_FOUND") return undefined;
			throw e;
		}
	}

	async list<T extends KubeObject = KubeObject>(t: ResourceType, namespace?: string, opts: ListOptions = {}): Promise<{ items: T[]; resourceVersion: string }> {
		const q = new URLSearchParams();
		if (opts.labelSelector) q.set("labelSelector", opts.labelSelector);
		if (opts.fieldSelector) q.set("fieldSelector", opts.fieldSelector);
		const qs = q.toString();
		const res = await this.request<{ items: T[]; metadata: { resourceVersion: string } }>("GET", `${this.path(t, namespace)}${qs ? `?${qs}` : ""}`);
		for (const item of res.items) {
			item.apiVersion ??= t.group ? `${t.group}/${t.version}` : t.version;
			item.kind ??= t.kind;
		}
		return { items: res.items, resourceVersion: res.metadata.resourceVersion };
	}

	/** Server-side apply (`force` takes over fields from other managers: git is the source of truth). */
	async apply<T extends KubeObject = KubeObject>(t: ResourceType, obj: KubeObject | KubeBody, fieldManager: string, force = true, sub?: string): Promise<T> {
		const q = new URLSearchParams({ fieldManager, force: String(force) });
		return this.request<T>("PATCH", `${this.path(t, obj.metadata.namespace, obj.metadata.name, sub)}?${q}`, obj, "application/apply-patch+yaml");
	}

	async create<T extends KubeObject = KubeObject>(t: ResourceType, obj: KubeObject | KubeBody, fieldManager?: string): Promise<T> {
		const q = fieldManager ? `?fieldManager=${encodeURIComponent(fieldManager)}` : "";
		return this.request<T>("POST", `${this.path(t, obj.metadata.namespace)}${q}`, obj);
	}

	async replace<T extends KubeObject = KubeObject>(t: ResourceType, obj: KubeObject | KubeBody, sub?: string): Promise<T> {
		return this.request<T>("PUT", this.path(t, obj.metadata.namespace, obj.metadata.name, sub), obj);
	}

	async mergePatch<T extends KubeObject = KubeObject>(t: ResourceType, namespace: string | undefined, name: string, patch: unknown, sub?: string): Promise<T> {
		return this.request<T>("PATCH", this.path(t, namespace, name, sub), patch, "application/merge-patch+json");
	}

	async jsonPatch<T extends KubeObject = KubeObject>(t: ResourceType, namespace: string | undefined, name: string, ops: unknown[], sub?: string): Promise<T> {
		return this.request<T>("PATCH", this.path(t, namespace, name, sub), ops, "application/json-patch+json");
	}

	/** Deletes; a missing object is not an error. `uid` makes the delete conditional (preconditions). */
	async delete(t: ResourceType, namespace: string | undefined, name: string, uid?: string): Promise<boolean> {
		try {
			await this.request("DELETE", this.path(t, namespace, name), uid ? { kind: "DeleteOptions", apiVersion: "v1", preconditions: { uid } } : undefined);
			return true;
		} catch (e) {
			if (e instanceof KubeError && (e.code === "NOT_FOUND" || e.code === "CONFLICT")) return false;
			throw e;
		}
	}

	/**
	 * Watches from `resourceVersion`; calls `onEvent` per event until the stream ends (the caller
	 * re-lists and re-watches). Returns an abort function via `signal`.
	 */
	async watch<T extends KubeObject>(t: ResourceType, namespace: string | undefined, resourceVersion: string, onEvent: (e: WatchEvent<T>) => void, signal: AbortSignal, opts: ListOptions = {}): Promise<void> {
		const q = new URLSearchParams({ watch: "1", resourceVersion, allowWatchBookmarks: "true", timeoutSeconds: "300" });
		if (opts.labelSelector) q.set("labelSelector", opts.labelSelector);
		if (opts.fieldSelector) q.set("fieldSelector", opts.fieldSelector);
		const o = await this.options("GET", `${this.path(t, namespace)}?${q}`, { accept: "application/json" });
		const lib = o.protocol === "http:" ? http : https;
		await new Promise<void>((resolve, reject) => {
			if (signal.aborted) return resolve();
			const req = lib.request(o, (res) => {
				if ((res.statusCode ?? 0) >= 300) {
					res.resume();
					reject(new KubeError(codeFor(res.statusCode ?? 0), res.statusCode ?? 0, `watch ${t.plural}: ${res.statusCode}`));
					return;
				}
				let buf = "";
				res.setEncoding("utf8");
				res.on("data", (chunk: string) => {
					buf += chunk;
					let nl = buf.indexOf("\n");
					while (nl >= 0) {
						const line = buf.slice(0, nl).trim();
						buf = buf.slice(nl + 1);
						if (line) {
							try {
								onEvent(JSON.parse(line) as WatchEvent<T>);
							} catch (e) {
								req.destroy(e as Error);
							}
						}
						nl = buf.indexOf("\n");
					}
				});
				res.on("end", () => resolve());
				res.on("error", () => resolve());
			});
			req.on("error", (e) => (signal.aborted ? resolve() : reject(new KubeError("NETWORK", 0, `watch ${t.plural}: ${e.message}`))));
			signal.addEventListener("abort", () => req.destroy(), { once: true });
			req.end();
		});
	}
}
