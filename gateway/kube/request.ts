/**
 * Kubernetes API request attributes from method + URL, the way the kube-apiserver's RequestInfo
 * resolver does it (k8s.io/apiserver pkg/endpoints/request/requestinfo.go, "API request
 * attributes" in the Kubernetes authorization docs):
 *
 *   /api/v1/namespaces/{ns}/{resource}/{name}/{subresource}
 *   /apis/{group}/{version}/namespaces/{ns}/{resource}/{name}/{subresource}
 *   /api/v1/{resource}[/{name}[/{subresource}]]        (cluster scope, or all namespaces for lists)
 *   /api/v1/namespaces/{name}[/{subresource}]          (the namespace object itself)
 *
 * Verbs: GET → get / list / watch (`?watch=1` on a collection only, or the legacy `/watch/` prefix), POST → create,
 * PUT → update, PATCH → patch, DELETE → delete / deletecollection. Anything else under /api or /apis
 * (discovery) and everything outside (/version, /openapi, /healthz) is a non-resource request.
 */

export interface KubeRequest {
	resourceRequest: boolean;
	/** Lower-case HTTP verb for non-resource requests; Kubernetes verb otherwise. */
	verb: string;
	/** API group, "" for the core group. */
	apiGroup: string;
	apiVersion: string;
	/** Plural resource, e.g. `pods`. */
	resource: string;
	subresource?: string;
	namespace?: string;
	name?: string;
	/** Path without query. */
	path: string;
	/** The body hands the object to a deleting controller (set by the listener; see gateway/kube/handover.ts). */
	handsOver?: boolean;
	/** An update or server-side apply, which creates a missing object (set by the listener; see mayCreate). */
	mayCreate?: boolean;
	/**
	 * The body gives a pod (or a workload's pod template) the node's PID, IPC or network namespace, a
	 * host path or a privileged container (set by the listener; see gateway/kube/handover.ts bodyReachesNode).
	 */
	reachesNode?: boolean;
}

/**
 * Whether the request creates its object when the object does not exist: an update (`PUT`; the
 * apiserver creates on update for the kinds whose strategy allows it, e.g. Roles, RoleBindings,
 * ClusterRoles, ClusterRoleBindings, Leases, Endpoints, Events) or a server-side apply (`PATCH` with
 * `application/apply-patch+yaml`, `+json` or `+cbor`: `kubectl apply --server-side`), of the object
 * itself. The apiserver then asks RBAC for `create`, so grants and rules must see a create too
 * (test/kube/issue-create-by-update.test.ts). Other patches (JSON, merge, strategic merge: kubectl
 * apply, edit, patch, label, scale) never create.
 */
export function mayCreate(req: Pick<KubeRequest, "resourceRequest" | "verb" | "name" | "subresource">, contentType: string | undefined): boolean {
	if (!req.resourceRequest || req.name === undefined || req.subresource !== undefined) return false;
	if (req.verb === "update") return true;
	return req.verb === "patch" && /^application\/apply-patch(?:[+;\s]|$)/i.test((contentType ?? "").trim());
}

/** Resource name as policies spell it: `pods`, `pods/log`, `deployments.apps`, `deployments.apps/scale`. */
export function qualifiedResource(r: Pick<KubeRequest, "resource" | "apiGroup" | "subresource">): string {
	const base = r.apiGroup ? `${r.resource}.${r.apiGroup}` : r.resource;
	return r.subresource ? `${base}/${r.subresource}` : base;
}

/**
 * A boolean query parameter as the apiserver decodes it (apimachinery `Convert_Slice_string_To_bool`,
 * first value): absent, `0` or `false` (any case) is false; **anything else is true**, including
 * `?watch`, `?watch=yes`, `?watch=on`, `?watch=2`. Reading only `1`/`true` made `?watch=on` a list to
 * the gateway and a watch to the apiserver.
 */
function isTrue(v: string | null): boolean {
	return v !== null && v !== "0" && v.toLowerCase() !== "false";
}

/**
 * Pod subresources that open a stream into a container (client-go's WebSocket executor uses `GET`, SPDY
 * uses `POST`). The apiserver (1.30+) also requires `create` for the GET form; the gateway always
 * classifies them as `create`, so a read-only grant or a rule on `create pods/exec` sees both.
 */
const POD_STREAM_SUBRESOURCES = new Set(["exec", "attach", "portforward"]);

/**
 * Undefined when the path is one we interpret exactly as the apiserver would; otherwise why not.
 * Refused: `.`/`..` segments, empty segments (`//`), and any percent-encoding — Kubernetes names never
 * need it, and an encoded `/` or `..` is the classic way to make a proxy and its backend disagree about
 * which object a request addresses.
 */
export function unsafePathReason(path: string): string | undefined {
	const p = path.split("?")[0] ?? "";
	if (!p.startsWith("/")) return "only origin-form request targets (/path) are accepted";
	if (p.includes("%")) return "percent-encoded characters are not accepted in API paths";
	if (p.includes("\\")) return "backslashes are not accepted in API paths";
	// URL parsing drops a fragment (and dot segments before it) that the apiserver would keep.
	if (path.includes("#")) return "fragments are not accepted in request targets";
	const segs = p.split("/").slice(1);
	for (let i = 0; i < segs.length; i++) {
		const s = segs[i]!;
		if (s === "." || s === "..") return "dot segments are not accepted in API paths";
		if (s === "" && i !== segs.length - 1) return "empty path segments are not accepted";
	}
	return undefined;
}

/** Subresources of the Namespace object itself (`/api/v1/namespaces/NAME/finalize`). */
const NAMESPACE_SUBRESOURCES = new Set(["status", "finalize"]);

export interface ParseOptions {
	/**
	 * The request asks for a protocol upgrade (WebSocket / SPDY). An upgraded `proxy` subresource
	 * (`pods/proxy`, `services/proxy`, `nodes/proxy`) is a two-way stream to the backend — through
	 * `nodes/proxy` that is the kubelet's `/exec` — so it is classified as `create`, whatever the method.
	 */
	upgrade?: boolean;
}

/** Parse one request. `url` is the request target (path + query), already stripped of any gateway prefix. */
export function parseKubeRequest(method: string, url: string, opts: ParseOptions = {}): KubeRequest {
	const u = new URL(url, "http://x");
	const path = u.pathname;
	const m = method.toUpperCase();
	const nonResource: KubeRequest = {
		resourceRequest: false,
		verb: m.toLowerCase(),
		apiGroup: "",
		apiVersion: "",
		resource: "",
		path,
	};
	const parts = path.split("/").filter((p) => p.length > 0).map(decodeURIComponent);
	let i: number;
	let apiGroup: string;
	let apiVersion: string;
	if (parts[0] === "api") {
		if (parts.length < 3) return nonResource; // /api, /api/v1 discovery
		apiGroup = "";
		apiVersion = parts[1]!;
		i = 2;
	} else if (parts[0] === "apis") {
		if (parts.length < 4) return nonResource; // /apis, /apis/g, /apis/g/v discovery
		apiGroup = parts[1]!;
		apiVersion = parts[2]!;
		i = 3;
	} else {
		return nonResource;
	}
	let rest = parts.slice(i);
	let watchPrefix = false;
	let proxyPrefix = false;
	// Deprecated `/watch/` prefix: GET /api/v1/watch/namespaces/ns/pods. The apiserver's other
	// "special verb", `/proxy/` (removed routes, still parsed), becomes the verb `proxy`.
	if (rest[0] === "watch" && rest.length >= 2) {
		watchPrefix = true;
		rest = rest.slice(1);
	} else if (rest[0] === "proxy" && rest.length >= 2) {
		proxyPrefix = true;
		rest = rest.slice(1);
	}
	let namespace: string | undefined;
	if (rest[0] === "namespaces") {
		if (rest.length >= 3 && !NAMESPACE_SUBRESOURCES.has(rest[2]!)) {
			// namespaces/{ns}/{resource}...
			namespace = rest[1]!;
			rest = rest.slice(2);
		} else {
			// namespaces or namespaces/{name}: the namespace object; its namespace is itself.
			if (rest.length === 2) namespace = rest[1]!;
		}
	}
	const resource = rest[0] ?? "";
	const name = rest[1];
	// Like the apiserver: the subresource is the one segment after the name; what follows it is the
	// subresource's own path (`pods/x/proxy/metrics` is `pods/proxy`), never part of its name, so a rule
	// on `pods/proxy` cannot be stepped around by appending a path. (`/proxy/...` has no subresource.)
	const subresource = rest.length > 2 && !proxyPrefix ? rest[2] : undefined;
	if (!resource) return nonResource;

	let verb: string;
	switch (m) {
		case "GET":
		case "HEAD":
			// As RequestInfo: `?watch` turns only a name-less GET into a watch. A named GET with `?watch=1`
			// is a plain get to the apiserver (it returns the object), so it must be `get` here too: read as
			// a watch it stepped around rules and grants that name `get` (README "Request forms ...").
			if (watchPrefix) verb = "watch";
			else if (name !== undefined) verb = "get";
			else verb = isTrue(u.searchParams.get("watch")) ? "watch" : "list";
			break;
		case "POST":
			verb = "create";
			break;
		case "PUT":
			verb = "update";
			break;
		case "PATCH":
			verb = "patch";
			break;
		case "DELETE":
			verb = name === undefined ? "deletecollection" : "delete";
			break;
		default:
			verb = m.toLowerCase();
	}
	if (proxyPrefix) verb = "proxy";
	else if (subresource !== undefined && resource === "pods" && apiGroup === "" && POD_STREAM_SUBRESOURCES.has(subresource)) verb = "create";
	else if (subresource === "proxy" && opts.upgrade) verb = "create";
	// A get of one object through a field selector watch (kubectl get -w NAME) is still a watch.
	const req: KubeRequest = { resourceRequest: true, verb, apiGroup, apiVersion, resource, path };
	if (namespace !== undefined) req.namespace = namespace;
	if (name !== undefined) req.name = name;
	if (subresource !== undefined) req.subresource = subresource;
	if (req.verb === "watch" && req.name === undefined) {
		const fs = u.searchParams.get("fieldSelector") ?? "";
		const hit = /(?:^|,)metadata\.name=([^,]+)/.exec(fs);
		if (hit) req.name = hit[1]!;
	}
	return req;
}

const READ_VERBS = new Set(["get", "list", "watch"]);

export function isMutation(verb: string): boolean {
	return !READ_VERBS.has(verb);
}
