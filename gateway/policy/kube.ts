/**
 * Kubernetes request decisions: first the grant's scope (namespaces, verbs, resources), then the
 * GuardrailRules' `kubernetes` sections. Pure; the kube data path turns a block into a 403 Status.
 */
import type { BundleGrant, GuardrailRule } from "../config/bundle.ts";
import { compileGlob, type GlobMatcher, printable } from "./glob.ts";
import type { KubeRequest, KubeVerdict } from "./types.ts";

type KubeGrant = NonNullable<BundleGrant["kubernetes"]>;

const RANK = { allow: 0, audit: 1, requireApproval: 2, block: 3 } as const;

/**
 * A resource pattern: `pods` (no subresource), `pods/log`, `pods/*` (any subresource), `*`
 * (everything), `deployments.apps` (group-qualified), `*.apps`. A pattern without a group matches
 * the resource in any API group; a pattern without `/sub` never matches a subresource, so `pods`
 * does not grant `pods/exec`.
 */
export type ResourceMatcher = (resource: string, subresource: string | undefined, group: string | undefined) => boolean;

export function compileResource(pattern: string): ResourceMatcher {
	if (pattern === "*") return () => true;
	const slash = pattern.indexOf("/");
	const base = slash >= 0 ? pattern.slice(0, slash) : pattern;
	const sub = slash >= 0 ? pattern.slice(slash + 1) : undefined;
	const dot = base.indexOf(".");
	const res = compileGlob(dot >= 0 ? base.slice(0, dot) : base);
	const group = dot >= 0 ? compileGlob(base.slice(dot + 1)) : undefined;
	const subM = sub !== undefined ? compileGlob(sub) : undefined;
	return (resource, subresource, apiGroup) => {
		if (!res(resource)) return false;
		if (group && !group(apiGroup ?? "")) return false;
		if (subresource) return subM?.(subresource) === true;
		return subM === undefined || sub === "*";
	};
}

/**
 * Subresources that mint a credential usable without the gateway, valid after the grant ends and never
 * recorded: a TokenRequest for any service account of the namespace (with that account's RBAC, not the
 * agent's), and approving a CertificateSigningRequest (a client certificate). A grant gets them only by
 * naming them (`serviceaccounts/token`); no wildcard (`*`, `serviceaccounts/*`, `*\/token`) covers them.
 */
const NAMED_ONLY = new Set([
	"serviceaccounts/token",
	"certificatesigningrequests/approval",
	"certificatesigningrequests/nodeclient",
	// Virtual, like nodeclient: a CustomResourceDefinition with a conversion webhook (see mintingWrite).
	"customresourcedefinitions/conversionwebhook",
]);

/** compileResource for grants: like the rule matcher, but NAMED_ONLY subresources need a pattern that spells them out. */
export function compileGrantResource(pattern: string): ResourceMatcher {
	const m = compileResource(pattern);
	const literal = !/[*?[]/.test(pattern);
	return (resource, subresource, group) => {
		if (subresource && NAMED_ONLY.has(`${resource}/${subresource}`) && !literal) return false;
		return m(resource, subresource, group);
	};
}

/** A write whose body may mint a credential; what the grant must name to allow it, and how to tell from the body. */
export interface MintingWrite<T extends KubeRequest> {
	/** The request it amounts to, for grant scope only (a NAMED_ONLY subresource). */
	alias: T;
	/** The body mints when it mentions one of these (case ignored; gateway/kube/handover.ts `bodyMentions`). */
	words: readonly string[];
	/** For the refusal: what the write would be, and why it is a credential. */
	what: string;
	/**
	 * Each credential the write may amount to, with its own words and refusal text (`words` and `what`
	 * above are their union and the first one's text): the refusal names the one the body mentions.
	 */
	kinds: readonly { words: readonly string[]; what: string }[];
}

/** `kubernetes.io/service-account-token` Secrets: the type and the annotations naming the account. */
export const TOKEN_SECRET_WORDS = ["service-account-token", "service-account.name", "service-account.uid"] as const;
/** Bootstrap token Secrets (in kube-system): the type the apiserver's bootstrap token authenticator reads. */
export const BOOTSTRAP_TOKEN_WORDS = ["bootstrap.kubernetes.io/token"] as const;
/** CustomResourceDefinitions: `spec.conversion.strategy: Webhook` and its `webhook` (any mention counts). */
export const CONVERSION_WEBHOOK_WORDS = ["webhook"] as const;
/** Kubelet client certificate requests: the signer the controller manager approves by itself. */
export const NODE_CLIENT_CSR_WORDS = ["kube-apiserver-client-kubelet"] as const;

/**
 * Writes that may mint a credential usable without the gateway, valid after the grant ends, depending
 * on their body (create, and patch/update: server-side apply creates a missing object):
 * - a core Secret of type `kubernetes.io/service-account-token`: the tokens controller fills it with a
 *   token of the service account its `kubernetes.io/service-account.name` annotation names, with that
 *   account's RBAC, valid until the Secret is deleted: `serviceaccounts/token` by another name;
 * - a Secret of type `bootstrap.kubernetes.io/token` in `kube-system`: where bootstrap token
 *   authentication is on (`--enable-bootstrap-token-auth`, every kubeadm cluster) the apiserver itself
 *   accepts `<token-id>.<token-secret>` from its data as a bearer token (user `system:bootstrap:<id>`,
 *   groups `system:bootstrappers` plus its `auth-extra-groups`; kubeadm lets
 *   `system:bootstrappers:kubeadm:default-node-token` obtain node client certificates), valid until the
 *   Secret goes or its `expiration`: a credential the agent chose, by the same alias;
 * - a CertificateSigningRequest for signer `kubernetes.io/kube-apiserver-client-kubelet`: the controller
 *   manager approves a `system:node:…` client certificate by itself when the requester (the impersonated
 *   agent) has `create certificatesigningrequests/nodeclient` in RBAC; the grant must name that same
 *   (virtual) subresource.
 * - a CustomResourceDefinition whose body mentions a webhook (`spec.conversion.strategy: Webhook`):
 *   not a credential but the same reach as an admission webhook (namedOnlyWrite): every object of
 *   that resource anyone reads or writes in another version goes to a URL the agent chose, which
 *   answers what is stored or returned; the grant must name `customresourcedefinitions/conversionwebhook`
 *   (virtual) (test/kube/issue-admission-grant.test.ts).
 * The aliases are NAMED_ONLY: no wildcard grants them.
 */
export function mintingWrite<T extends KubeRequest>(req: T): MintingWrite<T> | undefined {
	const verb = req.verb.toLowerCase();
	if (req.subresource || !(verb === "create" || verb === "patch" || verb === "update")) return undefined;
	const group = req.apiGroup ?? "";
	if (req.resource === "secrets" && group === "") {
		const alias: T = { ...req, verb: "create", resource: "serviceaccounts", subresource: "token", apiGroup: "" };
		delete alias.name;
		delete alias.handsOver;
		delete alias.mayCreate;
		const kinds: { words: readonly string[]; what: string }[] = [
			{
				words: TOKEN_SECRET_WORDS,
				what: "a Secret of type kubernetes.io/service-account-token: the tokens controller fills it with a token of the service account it names, which never expires and works without the gateway, like serviceaccounts/token (which a grant must name to allow this)",
			},
		];
		// The bootstrap token authenticator reads kube-system's Secrets only.
		if (req.namespace === "kube-system") {
			kinds.push({
				words: BOOTSTRAP_TOKEN_WORDS,
				what: "a Secret of type bootstrap.kubernetes.io/token: with bootstrap token authentication on (kubeadm clusters) the apiserver accepts its token-id.token-secret as a bearer token by itself, as system:bootstrap:<id> with the groups it lists, until the Secret is deleted: a credential that works without the gateway, like serviceaccounts/token (which a grant must name to allow this)",
			});
		}
		return { alias, words: kinds.flatMap((k) => k.words), what: kinds[0]!.what, kinds };
	}
	if (req.resource === "customresourcedefinitions" && group === "apiextensions.k8s.io") {
		const alias: T = { ...req, verb: "create", subresource: "conversionwebhook" };
		delete alias.name;
		delete alias.handsOver;
		delete alias.mayCreate;
		const what =
			"a CustomResourceDefinition with a conversion webhook: the apiserver sends it every object of that resource read or written in another version, in every namespace and whoever asks, and stores or returns what it answers, like an admission webhook (a grant must name customresourcedefinitions/conversionwebhook to allow this)";
		return { alias, words: CONVERSION_WEBHOOK_WORDS, what, kinds: [{ words: CONVERSION_WEBHOOK_WORDS, what }] };
	}
	if (req.resource === "certificatesigningrequests" && group === "certificates.k8s.io") {
		const alias: T = { ...req, verb: "create", subresource: "nodeclient" };
		delete alias.name;
		delete alias.handsOver;
		delete alias.mayCreate;
		const what =
			"a CertificateSigningRequest for signer kubernetes.io/kube-apiserver-client-kubelet: the controller manager approves such a node client certificate by itself when RBAC allows certificatesigningrequests/nodeclient, and it works without the gateway after the grant ends (a grant must name certificatesigningrequests/nodeclient to allow this)";
		return { alias, words: NODE_CLIENT_CSR_WORDS, what, kinds: [{ words: NODE_CLIENT_CSR_WORDS, what }] };
	}
	return undefined;
}

function anyOf<T extends unknown[]>(ms: ((...a: T) => boolean)[]): (...a: T) => boolean {
	return (...a) => ms.some((m) => m(...a));
}

interface CompiledKubeGrant {
	namespaces: GlobMatcher;
	allNamespaces: boolean;
	verbs: GlobMatcher;
	resources: ResourceMatcher;
	/** The grant's resource patterns without a wildcard (`*`, `?`, `[`): what it names (see namedOnlyWrite). */
	named: ResourceMatcher;
}

interface CompiledKubeRule {
	rule: GuardrailRule;
	verbs?: GlobMatcher;
	resources?: ResourceMatcher;
	namespaces?: GlobMatcher;
	/** The rule can match an object itself, not only subresources (`pods/proxy`): see ImpliedRequest.anyResource. */
	objects: boolean;
}

const grantCache = new WeakMap<KubeGrant, CompiledKubeGrant>();
const rulesCache = new WeakMap<readonly GuardrailRule[], CompiledKubeRule[]>();

function compileGrant(g: KubeGrant): CompiledKubeGrant {
	const hit = grantCache.get(g);
	if (hit) return hit;
	const c: CompiledKubeGrant = {
		namespaces: anyOf(g.namespaces.map(compileGlob)),
		allNamespaces: g.namespaces.includes("*"),
		verbs: anyOf(g.verbs.map(compileGlob)),
		resources: anyOf(g.resources.map(compileGrantResource)),
		named: anyOf(g.resources.filter((r) => !/[*?[]/.test(r)).map(compileResource)),
	};
	grantCache.set(g, c);
	return c;
}

export function compileKubeRules(rules: readonly GuardrailRule[]): CompiledKubeRule[] {
	const hit = rulesCache.get(rules);
	if (hit) return hit;
	const out: CompiledKubeRule[] = [];
	for (const rule of rules) {
		const k = rule.kubernetes;
		if (!k) continue;
		const c: CompiledKubeRule = { rule, objects: !k.resources?.length || k.resources.some((r) => !r.includes("/") || r.endsWith("/*")) };
		if (k.verbs?.length) c.verbs = anyOf(k.verbs.map(compileGlob));
		if (k.resources?.length) c.resources = anyOf(k.resources.map(compileResource));
		if (k.namespaces?.length) c.namespaces = anyOf(k.namespaces.map(compileGlob));
		out.push(c);
	}
	rulesCache.set(rules, out);
	return out;
}

/**
 * Non-resource URLs every grant may read: API discovery, version, OpenAPI (kubectl needs them), health
 * and the service-account issuer's public documents. Everything else outside /api and /apis
 * (`/metrics`, `/debug/pprof`, `/logs`, `/configz`, ...) is server internals, readable only by a grant
 * that already spans the whole cluster (`namespaces: ['*']` and `resources: ['*']`).
 */
const DISCOVERY_PATH =
	/^\/(?:api(?:\/[^/]+)?|apis(?:\/[^/]+){0,2}|version|openapi\/v[23](?:\/.*)?|(?:healthz|livez|readyz)(?:\/[^/]+)?|\.well-known\/openid-configuration|openid\/v1\/jwks)\/?$/;

export function isDiscoveryPath(path: string): boolean {
	return DISCOVERY_PATH.test(path);
}

/** The core `namespaces` resource: the Namespace object is cluster-scoped even though its request namespace is its own name. */
function isNamespaceObject(req: KubeRequest): boolean {
	return req.resource === "namespaces" && (req.apiGroup ?? "") === "";
}

/**
 * Requests that run a command in a container, or reach inside a workload, without being `create
 * pods/exec`, as the `create pods/exec` request a guardrail rule is matched against as well (the request
 * itself is matched first):
 * - `pods/attach` (any verb): the container's main process, a shell under `kubectl run -it` and the
 *   second half of `kubectl debug -it`;
 * - writing `pods/ephemeralcontainers` (patch/update): adds a container with any image and command to a
 *   running pod (`kubectl debug`);
 * - `nodes/proxy` (any verb, any path: the kubelet API has `/run`, `/exec`, `/attach`, `/portForward`,
 *   `/cri/...`, and its routing is not ours to second-guess), and the legacy `/api/v1/proxy/nodes/...`;
 * - `pods/portforward` (any verb): a TCP stream into the pod's network namespace, its loopback-only
 *   listeners included (admin and debug ports, sidecars' admin APIs), past every NetworkPolicy;
 * - `pods/proxy` and `services/proxy` (any verb, any path; also the legacy `/api/v1/proxy/...`): HTTP from
 *   the apiserver's own network position to the Pod's `status.podIPs` (for a Service, an Endpoints
 *   address that a Pod of the Service's namespace lists there), past every NetworkPolicy. That status
 *   is whatever was written to it: the kubelet's for a pod it runs, anyone's with `patch pods/status`
 *   for a pod no kubelet runs (an unbound pod, or one bound to a node that does not exist), so a
 *   sandbox Pod can name a prod pod's IP and the request reaches the prod workload. The alias has no
 *   namespace: a rule limited to `prod` matches them in any namespace
 *   (test/kube/issue-workload-reach.test.ts).
 * So a rule written as "no exec" (`resources: [pods/exec]`, with or without `verbs: [create]`) covers
 * them; rules naming them directly still work. Grants are not widened by this: a grant must list each.
 */
export function execEquivalent(req: KubeRequest): KubeRequest | undefined {
	if ((req.apiGroup ?? "") !== "") return undefined;
	const verb = req.verb.toLowerCase();
	let hit = false;
	if (req.resource === "pods") {
		hit =
			req.subresource === "attach" ||
			req.subresource === "portforward" ||
			isProxyRequest(req) ||
			(req.subresource === "ephemeralcontainers" && verb !== "get" && verb !== "list" && verb !== "watch");
	} else if (req.resource === "nodes" || req.resource === "services") {
		hit = isProxyRequest(req);
	}
	if (!hit) return undefined;
	const alias: KubeRequest = { ...req, verb: "create", resource: "pods", subresource: "exec" };
	// A node runs every namespace's pods, and a proxied Pod or Service reaches whatever address its
	// namespace's Pod statuses say: the alias has no namespace, so it matches every rule namespace.
	if (req.resource === "nodes" || isProxyRequest(req)) {
		delete alias.namespace;
		delete alias.name;
	}
	return alias;
}

/**
 * What `nodes/proxy` (any verb, any path; the legacy `/api/v1/proxy/nodes/...` too) is besides exec: the
 * kubelet API behind it answers for every pod on the node, in any namespace. `/pods` and `/runningpods`
 * list them whole (env values included), `/containerLogs/NS/POD/CONTAINER` and `/logs/pods/...` are
 * their logs, `/attach`, `/portForward` the other streams. Each alias has no namespace, so a rule
 * limited to `prod` on `get pods`, `pods/log`, `pods/attach` or `pods/portforward` matches it
 * (test/kube/issue-node-proxy-reads.test.ts).
 */
function nodeProxyEquivalents(req: KubeRequest): ImpliedRequest[] {
	if ((req.apiGroup ?? "") !== "" || req.resource !== "nodes" || !isProxyRequest(req)) return [];
	const alias = (verb: string, subresource?: string): KubeRequest => {
		const a: KubeRequest = { ...req, verb, resource: "pods" };
		if (subresource) a.subresource = subresource;
		else delete a.subresource;
		delete a.namespace;
		delete a.name;
		delete a.handsOver;
		delete a.mayCreate;
		return a;
	};
	const why = "the kubelet API behind nodes/proxy answers for every pod on the node";
	return [
		{ req: alias("get"), why: `${why}: /pods lists them whole, like get pods` },
		{ req: alias("list"), why: `${why}: /pods lists them whole, like list pods` },
		{ req: alias("get", "log"), why: `${why}: /containerLogs reads their logs, like pods/log` },
		{ req: alias("create", "attach"), why: `${why}: /attach, like pods/attach` },
		{ req: alias("create", "portforward"), why: `${why}: /portForward, like pods/portforward` },
	];
}

/** `pods/proxy`, `services/proxy`, `nodes/proxy`, or the legacy `/api/v1/proxy/...` form of them (verb `proxy`). */
function isProxyRequest(req: KubeRequest): boolean {
	return req.subresource === "proxy" || req.verb.toLowerCase() === "proxy";
}

/**
 * `pods/proxy` and `services/proxy` without their namespace, for rules that name them (or `pods/*`,
 * `services/*`) in some namespaces: the address they reach is a Pod's `status.podIPs`, which need not
 * be in the request's namespace (a sandbox Pod whose status was written to name a prod pod's IP, and a
 * sandbox Service whose Endpoints name that Pod, reach prod's pod).
 */
function proxyAnywhere(req: KubeRequest): KubeRequest | undefined {
	if ((req.apiGroup ?? "") !== "" || !(req.resource === "pods" || req.resource === "services") || !isProxyRequest(req)) return undefined;
	if (req.namespace === undefined) return undefined;
	const alias: KubeRequest = { ...req, subresource: "proxy" };
	delete alias.namespace;
	delete alias.name;
	return alias;
}

/** A request matched against the rules as if it were another one (the request itself is matched first). */
export interface ImpliedRequest {
	req: KubeRequest;
	/** Shown in the refusal: `(… like pods/exec)`. */
	why: string;
	/**
	 * Matches rules whatever their `resources` (deleting a Namespace deletes every resource in it), except
	 * rules that name only subresources (`pods/proxy`, `pods/exec`): no object of those is deleted.
	 */
	anyResource?: boolean;
	/** Matches every rule, whatever its verbs, resources and namespaces (see admissionReach). */
	everything?: boolean;
}

/** Admission configuration (group → resources): what decides, changes or serves everyone's later requests. */
const ADMISSION: Record<string, ReadonlySet<string>> = {
	"admissionregistration.k8s.io": new Set([
		"mutatingwebhookconfigurations",
		"validatingwebhookconfigurations",
		"mutatingadmissionpolicies",
		"mutatingadmissionpolicybindings",
		"validatingadmissionpolicies",
		"validatingadmissionpolicybindings",
	]),
	"apiregistration.k8s.io": new Set(["apiservices"]),
};

/**
 * A write (any verb but a read) of admission webhooks, admission policies or APIServices: it changes
 * what happens to every later request of the resources it names, in every namespace, whoever sends
 * them. A validating webhook is sent each object written (a Secret's data included) to any URL the
 * agent chose; a mutating one or a mutating policy rewrites them (a prod Pod's command, a Deployment's
 * replicas, ownerReferences); an APIService sends a whole API group's requests, `apps/v1` included, to
 * a Service the agent runs; deleting a webhook lifts what it enforced. So it is matched by every rule,
 * whatever its verbs, resources and namespaces: "no reading prod's Secrets" or "no exec in prod"
 * covers installing the webhook that would do it later, as others' requests
 * (test/kube/issue-admission-reach.test.ts). Grants allow them only by naming them (namedOnlyWrite).
 */
export function admissionReach(req: KubeRequest): ImpliedRequest | undefined {
	if (!namedOnlyWrite(req)) return undefined;
	return {
		req,
		why: "admission webhooks, admission policies and APIServices act on every later request of what they name, in every namespace, whoever sends it",
		everything: true,
	};
}

/**
 * A write (any verb but a read, any subresource) of admission configuration (ADMISSION). Grants allow
 * it only by naming the resource in `resources` without a wildcard (`validatingwebhookconfigurations`,
 * `apiservices.apiregistration.k8s.io`; `apiservices/status` for that subresource): `*`, `*.apiregistration.k8s.io`
 * or `*webhook*` never cover it, like NAMED_ONLY subresources, since such a write acts on everyone's
 * requests, not the agent's (test/kube/issue-admission-grant.test.ts). Reads are not affected.
 */
export function namedOnlyWrite(req: KubeRequest): boolean {
	return !!req.resource && !READS.has(req.verb.toLowerCase()) && ADMISSION[req.apiGroup ?? ""]?.has(req.resource) === true;
}

const DELETE_VERBS = new Set(["delete", "deletecollection"]);

/**
 * Requests that make the cluster delete objects without being their `delete`, as the `delete` a
 * guardrail rule is matched against as well:
 * - `deletecollection` deletes every object the selectors match: the `delete` of the same resource in
 *   the same namespace (`DELETE /api/v1/namespaces/prod/configmaps`, `kubectl delete --all`);
 * - `pods/eviction` (any verb but reads): the pod's `delete` (`kubectl drain`; the apiserver deletes
 *   the pod itself when no PodDisruptionBudget stands in the way);
 * - deleting a Namespace (or the collection): the namespace controller deletes everything in it, so
 *   it is a `delete` of every resource in that namespace, whatever the rule's `resources`;
 * - deleting a CustomResourceDefinition `PLURAL.GROUP`: the apiserver deletes every object of it in
 *   every namespace (no namespace: matches every rule namespace); the collection matches any resource;
 * - deleting a Node (or the collection): PodGC deletes every pod bound to it, in any namespace;
 * - a write whose body sets `ownerReferences` or `ttlSecondsAfterFinished` (`handsOver`, decided by the
 *   data path from the body): the garbage collector deletes an object whose owners are absent (a
 *   bogus uid, an owner in another namespace, or one the agent deletes next), the TTL controller a
 *   finished Job: the object's `delete`; on a Node, a `NoExecute` taint: the `delete` of every pod;
 *   on a StatefulSet (created, patched or updated), a `persistentVolumeClaimRetentionPolicy` of
 *   `Delete`: the `delete` of persistentvolumeclaims in its namespace; on workloads, a count set to
 *   zero or a history trimmed to nothing: see controllerDeletes.
 * Grants are not widened or narrowed by this; only guardrail rules see the implied request.
 */
export function deleteEquivalents(req: KubeRequest): ImpliedRequest[] {
	if (!req.resource) return [];
	const verb = req.verb.toLowerCase();
	const group = req.apiGroup ?? "";
	const out: ImpliedRequest[] = [];
	const del = DELETE_VERBS.has(verb) && !req.subresource;
	if (verb === "deletecollection") {
		out.push({ req: { ...req, verb: "delete" }, why: "deletes every matching object like delete" });
	}
	if (group === "" && req.resource === "pods" && req.subresource === "eviction" && !READS.has(verb)) {
		const alias: KubeRequest = { ...req, verb: "delete" };
		delete alias.subresource;
		out.push({ req: alias, why: "evicting a pod deletes it like delete pods" });
	}
	if (del && group === "" && req.resource === "namespaces") {
		const alias: KubeRequest = { ...req, verb: "delete", resource: "*" };
		delete alias.name;
		if (req.name !== undefined) alias.namespace = req.name;
		else delete alias.namespace;
		out.push({ req: alias, why: "deleting a namespace deletes everything in it", anyResource: true });
	}
	if (del && group === "apiextensions.k8s.io" && req.resource === "customresourcedefinitions") {
		const dot = req.name?.indexOf(".") ?? -1;
		const alias: KubeRequest = { ...req, verb: "delete" };
		delete alias.name;
		delete alias.namespace;
		if (req.name !== undefined && dot > 0) {
			out.push({
				req: { ...alias, resource: req.name.slice(0, dot), apiGroup: req.name.slice(dot + 1) },
				why: "deleting a CustomResourceDefinition deletes every object of it in every namespace",
			});
		} else {
			out.push({ req: { ...alias, resource: "*" }, why: "deleting CustomResourceDefinitions deletes every object of them", anyResource: true });
		}
	}
	if (del && group === "" && req.resource === "nodes") {
		const alias: KubeRequest = { ...req, verb: "delete", resource: "pods" };
		delete alias.name;
		delete alias.namespace;
		out.push({ req: alias, why: "deleting a node deletes the pods bound to it (PodGC)" });
	}
	if (req.handsOver && isStatefulSet(req) && (verb === "create" || verb === "patch" || verb === "update")) {
		// A persistentVolumeClaimRetentionPolicy of Delete: the StatefulSet controller deletes the claims of
		// removed replicas on scale-down (whenScaled) and all of them with the StatefulSet (whenDeleted),
		// including claims of the same names it adopts; and with them volumes whose reclaim policy is Delete.
		const claims: KubeRequest = { ...req, verb: "delete", resource: "persistentvolumeclaims", apiGroup: "" };
		delete claims.subresource;
		delete claims.name;
		delete claims.handsOver;
		out.push({ req: claims, why: "its persistentVolumeClaimRetentionPolicy Delete makes the StatefulSet controller delete its claims like delete persistentvolumeclaims" });
	}
	if (req.handsOver && (verb === "patch" || verb === "update")) out.push(...controllerDeletes(req));
	// A Scale's body sets replicas only (its metadata is not the workload's): no hand-over of the object itself.
	if (req.handsOver && (verb === "patch" || verb === "update") && req.subresource !== "scale") {
		const alias: KubeRequest = { ...req, verb: "delete" };
		delete alias.subresource;
		delete alias.handsOver;
		out.push({ req: alias, why: "its ownerReferences or ttlSecondsAfterFinished let a controller delete it like delete" });
		if (group === "" && req.resource === "nodes") {
			const pods: KubeRequest = { ...alias, resource: "pods" };
			delete pods.name;
			delete pods.namespace;
			out.push({ req: pods, why: "a NoExecute taint makes the taint manager delete the node's pods" });
		}
		// The delete it leads to leads further: a Namespace handed to the garbage collector takes its
		// contents along, a CustomResourceDefinition its objects, a Node its pods.
		for (const i of deleteEquivalents(alias)) out.push({ ...i, why: `its ownerReferences let the garbage collector delete it, and ${i.why}` });
	}
	return out;
}

/**
 * What a workload's controller deletes when a patch or update sets a count to zero or trims its history
 * (`handsOver`, decided by the data path from the body: gateway/kube/handover.ts), in the workload's
 * namespace. Decided to be deletes (round 10): the controller removes every object of the kind and
 * nothing brings them back but another write (deleting one pod of a Deployment, by contrast, is
 * replaced at once):
 * - `replicas: 0` on a Deployment, ReplicaSet, StatefulSet, ReplicationController or their `scale`
 *   (`kubectl scale --replicas=0`): every pod of it;
 * - a Job's `suspend: true`, `parallelism: 0` or `activeDeadlineSeconds`: its running pods;
 * - a CronJob's `successfulJobsHistoryLimit: 0` / `failedJobsHistoryLimit: 0`: its finished Jobs
 *   (and their pods, logs with them), as a Job's `ttlSecondsAfterFinished` already counts;
 * - `revisionHistoryLimit: 0`: a Deployment's old ReplicaSets, a StatefulSet's or DaemonSet's
 *   ControllerRevisions.
 * Scaling to a smaller non-zero count, rolling updates and a DaemonSet's node selector are not
 * counted: the workload keeps running (gateway/kube/README.md "Deletes by another name").
 */
function controllerDeletes(req: KubeRequest): ImpliedRequest[] {
	const group = req.apiGroup ?? "";
	const sub = req.subresource;
	if (sub !== undefined && sub !== "scale") return [];
	const kinds: { resource: string; apiGroup: string; why: string }[] = [];
	const workload = (group === "apps" && ["deployments", "replicasets", "statefulsets"].includes(req.resource)) || (group === "" && req.resource === "replicationcontrollers");
	if (workload) kinds.push({ resource: "pods", apiGroup: "", why: "replicas 0 makes its controller delete every pod of it, like delete pods" });
	if (sub === undefined && group === "batch" && req.resource === "jobs") {
		kinds.push({ resource: "pods", apiGroup: "", why: "suspend, parallelism 0 or activeDeadlineSeconds makes the Job controller delete its running pods, like delete pods" });
	}
	if (sub === undefined && group === "batch" && req.resource === "cronjobs") {
		const why = "a history limit of 0 makes the CronJob controller delete its finished Jobs (and the garbage collector their pods)";
		kinds.push({ resource: "jobs", apiGroup: "batch", why: `${why}, like delete jobs` }, { resource: "pods", apiGroup: "", why: `${why}, like delete pods` });
	}
	if (sub === undefined && group === "apps" && req.resource === "deployments") {
		kinds.push({ resource: "replicasets", apiGroup: "apps", why: "revisionHistoryLimit 0 makes the Deployment controller delete its old ReplicaSets, like delete replicasets" });
	}
	if (sub === undefined && group === "apps" && (req.resource === "statefulsets" || req.resource === "daemonsets")) {
		kinds.push({ resource: "controllerrevisions", apiGroup: "apps", why: "revisionHistoryLimit 0 makes its controller delete its old ControllerRevisions, like delete controllerrevisions" });
	}
	return kinds.map((k) => {
		const alias: KubeRequest = { ...req, verb: "delete", resource: k.resource, apiGroup: k.apiGroup };
		delete alias.subresource;
		delete alias.name;
		delete alias.handsOver;
		delete alias.mayCreate;
		return { req: alias, why: k.why };
	});
}

/**
 * Reads that return the objects a `get` returns: a `list` answers every object it matches, whole, and a
 * `watch` returns them whole too (an ADDED event for each at the start when it names no
 * resourceVersion, then every object that changes). So a rule written as "no reading Secrets in
 * prod" with `verbs: [get]` (or `[get, list]`) matches the list (and the watch) too. So do a `patch`
 * (its answer is the whole object after it: `PATCH {}` or a dry run returns a Secret's data as
 * stored) and a `deletecollection` (its answer lists every object it deleted, whole, also with
 * `dryRun=All`). Grants keep the verbs as written (the apiserver's RBAC does the same).
 */
export function readEquivalents(req: KubeRequest): ImpliedRequest[] {
	if (!req.resource) return [];
	const verb = req.verb.toLowerCase();
	if (answersWithParent(req) && (verb === "get" || verb === "update")) {
		// `GET pods/NAME/status` is the whole Pod, spec and env values included; so is the answer to a
		// `PUT` of it (the stored spec with the status sent), and to patches (below)
		// (test/kube/issue-subresource-reads.test.ts).
		const alias: KubeRequest = { ...req, verb: "get" };
		delete alias.subresource;
		delete alias.handsOver;
		delete alias.mayCreate;
		return [{ req: alias, why: `${req.resource}/${req.subresource} returns the whole object like get` }];
	}
	if (verb === "list") return [{ req: { ...req, verb: "get" }, why: "a list returns every object it matches like get" }];
	if (verb === "patch") {
		// The answer to a patch is the whole object after it (a patch that changes nothing, `{}`, or a
		// dry run returns it as stored), and a JSON-patch `test` op confirms a guessed value. A patch of
		// `status`, `ephemeralcontainers`, … answers with the whole object too (answersWithParent).
		const alias: KubeRequest = { ...req, verb: "get" };
		if (answersWithParent(alias)) delete alias.subresource;
		delete alias.handsOver;
		return [{ req: alias, why: "a patch returns the whole object like get" }];
	}
	if (verb === "deletecollection") {
		// The answer is the list of every object it deleted (with dryRun=All: deleted nothing), whole.
		return [
			{ req: { ...req, verb: "list" }, why: "a deletecollection returns every object it deletes like list" },
			{ req: { ...req, verb: "get" }, why: "a deletecollection returns every object it deletes like get" },
		];
	}
	if (verb !== "watch") return [];
	return [
		{ req: { ...req, verb: "list" }, why: "a watch returns the objects it matches like list" },
		{ req: { ...req, verb: "get" }, why: "a watch returns the objects it matches like get" },
	];
}

/**
 * Subresources whose answer is the whole parent object, not a part of it: `status` (of anything), a
 * Pod's `ephemeralcontainers` and `resize`, a CertificateSigningRequest's `approval`, a Namespace's
 * `finalize`. Reading or writing them reads the object (`scale`, `log`, `exec`, `token`, `eviction`,
 * `binding`, `proxy` answer something else).
 */
function answersWithParent(req: KubeRequest): boolean {
	const group = req.apiGroup ?? "";
	switch (req.subresource) {
		case "status":
			return true;
		case "ephemeralcontainers":
		case "resize":
			return group === "" && req.resource === "pods";
		case "approval":
			return group === "certificates.k8s.io" && req.resource === "certificatesigningrequests";
		case "finalize":
			return group === "" && req.resource === "namespaces";
		default:
			return false;
	}
}

/**
 * A named `delete` answers with the whole object, not a Status, when the object is not removed at
 * once: a Pod (graceful deletion), or anything with finalizers, also with `dryRun=All` (then nothing is
 * deleted): `DELETE …/secrets/db?dryRun=All` returned a Secret's data. The `get` that answer amounts
 * to, for the data path to withhold the answer when a rule keeps that get from the agent (the delete
 * itself is decided as a delete; test/kube/issue-delete-answers.test.ts).
 */
export function deleteAnswerRead(req: KubeRequest): KubeRequest | undefined {
	if (req.verb.toLowerCase() !== "delete" || req.name === undefined || req.subresource !== undefined || !req.resource) return undefined;
	const alias: KubeRequest = { ...req, verb: "get" };
	delete alias.handsOver;
	delete alias.mayCreate;
	return alias;
}

/** Kinds whose body holds a pod spec, the pod's own or a template's, by API group. */
const POD_SPEC_KINDS: Record<string, ReadonlySet<string>> = {
	"": new Set(["pods", "replicationcontrollers", "podtemplates"]),
	apps: new Set(["deployments", "replicasets", "statefulsets", "daemonsets"]),
	batch: new Set(["jobs", "cronjobs"]),
};

/**
 * A stream into a named Pod (any verb: kubectl sends POST for SPDY and GET for WebSocket): `exec`,
 * `attach`, `portforward`. What it reaches depends on the Pod: one that reaches its node (host
 * namespaces, a host path, privileges) for exec and attach, one on its node's network
 * (`hostNetwork`) for a port-forward; the data path looks the Pod up (`reachesNode`).
 */
export function podStream(req: KubeRequest): "exec" | "attach" | "portforward" | undefined {
	if ((req.apiGroup ?? "") !== "" || req.resource !== "pods" || req.name === undefined) return undefined;
	return req.subresource === "exec" || req.subresource === "attach" || req.subresource === "portforward" ? req.subresource : undefined;
}

/**
 * Whether matching `req` would look at `reachesNode` at all: a create, update or patch of an object
 * holding a pod spec, or of a Pod's `ephemeralcontainers` (a debug container may be privileged:
 * `kubectl debug --profile=sysadmin`), or of a PersistentVolume (a `hostPath` or `local` one puts
 * the node's files in whatever pod mounts its claim, with no host path in the pod's own spec); an exec, attach or port-forward (podStream: into a Pod that
 * reaches its node, they reach it too: the data path looks the Pod up).
 */
export function mayReachNode(req: KubeRequest): boolean {
	if (podStream(req)) return true;
	const verb = req.verb.toLowerCase();
	if (!(verb === "create" || verb === "update" || verb === "patch")) return false;
	if (req.subresource !== undefined) return req.subresource === "ephemeralcontainers" && req.resource === "pods" && (req.apiGroup ?? "") === "";
	return POD_SPEC_KINDS[req.apiGroup ?? ""]?.has(req.resource) === true || isPersistentVolume(req);
}

/** The core `persistentvolumes` resource (a volume any pod can mount through a claim). */
function isPersistentVolume(req: KubeRequest): boolean {
	return req.resource === "persistentvolumes" && (req.apiGroup ?? "") === "" && req.subresource === undefined;
}

/**
 * A pod (or a workload's template) given the node's PID, IPC or network namespace, a host path, a
 * privileged container, or a capability or an unmasked `/proc` that reach the node (`reachesNode`,
 * decided by the data path from the body: gateway/kube/handover.ts bodyReachesNode): from it, `nsenter`
 * enters any container on the node, the host's `/` holds every pod's files, the kubelet's credentials
 * and the container runtime's socket. `kubectl debug node/NAME` makes exactly such a pod, in the
 * agent's own namespace. So it is matched as `create pods/exec` with no namespace: a rule "no exec in
 * prod" covers a privileged pod in sandbox (test/kube/issue-node-reach.test.ts). So is a port-forward
 * to a `hostNetwork` Pod (the node's loopback-only ports, the kubelet's and a control-plane node's
 * etcd among them), and an exec or attach into a Pod that reaches its node (a node agent's, say):
 * `reachesNode` set by the data path after looking the Pod up with its own credential. Grants are not widened or narrowed by this; PodSecurity admission is what keeps such pods
 * out of a namespace.
 */
function nodeReach(req: KubeRequest): ImpliedRequest | undefined {
	if (!req.reachesNode || !mayReachNode(req)) return undefined;
	const alias: KubeRequest = { ...req, verb: "create", resource: "pods", subresource: "exec", apiGroup: "" };
	delete alias.namespace;
	delete alias.name;
	delete alias.reachesNode;
	delete alias.handsOver;
	delete alias.mayCreate;
	if (isPersistentVolume(req)) {
		return {
			req: alias,
			why: "a PersistentVolume on a host path (hostPath, local) gives any pod whose claim binds it the node's files: from there it reaches every container on its node, like pods/exec in any namespace",
		};
	}
	const stream = podStream(req);
	if (stream === "portforward") {
		return {
			req: alias,
			why: "a port-forward to a pod on its node's network (hostNetwork, or a pod the gateway could not look up) reaches the node's own loopback ports, which reach every container on its node, like pods/exec in any namespace",
		};
	}
	if (stream) {
		return {
			req: alias,
			why: `${stream === "exec" ? "an exec" : "an attach"} into a pod that reaches its node (host namespaces, a host path, privileges, or a pod the gateway could not look up) reaches every container on its node, like pods/exec in any namespace`,
		};
	}
	return { req: alias, why: "a pod with the node's namespaces, a host path or privileges reaches every container on its node, like pods/exec in any namespace" };
}

/** Every request `req` is matched as besides itself: exec equivalents, delete equivalents, read equivalents. */
export function impliedRequests(req: KubeRequest): ImpliedRequest[] {
	const exec = execEquivalent(req);
	const out = deleteEquivalents(req);
	if (exec) {
		out.unshift({
			req: exec,
			why:
				req.subresource === "attach" || req.subresource === "ephemeralcontainers" || req.resource === "nodes"
					? "runs commands in containers like pods/exec"
					: "reaches inside a workload like pods/exec",
		});
	}
	const reach = nodeReach(req);
	if (reach) out.unshift(reach);
	out.push(...nodeProxyEquivalents(req));
	const admission = admissionReach(req);
	if (admission) out.push(admission);
	const anywhere = proxyAnywhere(req);
	if (anywhere) {
		out.push({ req: anywhere, why: "it reaches the address a Pod's status names, which may be another namespace's workload" });
	}
	if (req.mayCreate) {
		// An update or a server-side apply creates a missing object, authorized by the apiserver as create.
		const alias: KubeRequest = { ...req, verb: "create" };
		delete alias.mayCreate;
		delete alias.handsOver;
		out.push({ req: alias, why: "an update or server-side apply creates the object when it is missing, like create" });
	}
	out.push(...readEquivalents(req));
	return out;
}

function isStatefulSet(req: KubeRequest): boolean {
	return req.resource === "statefulsets" && (req.apiGroup ?? "") === "apps" && !req.subresource;
}

/**
 * Whether matching `req` would look at `handsOver` at all (a write of a named object or of its
 * subresource, a workload's `scale` among them; creating a StatefulSet).
 */
export function mayHandOver(req: KubeRequest): boolean {
	const verb = req.verb.toLowerCase();
	if (verb === "create" && isStatefulSet(req) && req.name === undefined) return true;
	return !!req.resource && req.name !== undefined && (verb === "patch" || verb === "update");
}

const READS = new Set(["get", "list", "watch"]);

function describe(req: KubeRequest): string {
	const res = req.resource ? `${req.resource}${req.subresource ? `/${req.subresource}` : ""}` : "non-resource URL";
	const where = req.namespace ? ` in namespace ${req.namespace}` : " (cluster-scoped)";
	return printable(`${req.verb} ${res}${req.name ? ` ${req.name}` : ""}${where}`);
}

/**
 * Whether a rule's `namespaces` covers the request. A request without a namespace that is not about
 * one named Namespace reaches objects in every namespace (`GET /api/v1/secrets` lists prod's secrets
 * too; `DELETE /api/v1/namespaces` would delete prod): it matches every namespace rule. Cluster-scoped
 * resources (nodes, clusterroles) also have no namespace; without discovery the gateway cannot tell
 * them apart, so namespace rules apply to them as well (a rule is a denylist: over-matching is safe).
 */
function ruleNamespaceMatches(m: GlobMatcher, req: KubeRequest): boolean {
	if (isNamespaceObject(req) && req.name !== undefined) return m(req.name);
	if (!req.namespace) return true;
	return m(req.namespace);
}

function ruleMatches(c: CompiledKubeRule, req: KubeRequest, verb: string, anyResource = false): boolean {
	if (c.verbs && !c.verbs(verb)) return false;
	if (anyResource) {
		if (!c.objects) return false;
	} else if (c.resources && !(req.resource && c.resources(req.resource, req.subresource, req.apiGroup))) return false;
	if (c.namespaces && !ruleNamespaceMatches(c.namespaces, req)) return false;
	return true;
}

/**
 * Grant scope, then guardrails. Scope rules (deny by default):
 * - namespaced requests need the namespace in `grant.namespaces` (globs);
 * - cluster-scoped requests need `*` in `grant.namespaces`, except reading the `namespaces`
 *   resource for a namespace the grant names (`kubectl get ns payments`); the Namespace object
 *   counts as cluster-scoped although its request namespace is its own name;
 * - non-resource requests (`resource` empty) are allowed for `get` only, and only on discovery paths
 *   (isDiscoveryPath: /api, /apis, /version, /openapi, health) unless the grant has
 *   `namespaces: ['*']` and `resources: ['*']`;
 * - the verb must match `grant.verbs`, the resource `grant.resources` (see compileResource).
 */
export function evaluateKubeRequest(
	req: KubeRequest,
	grant: KubeGrant | undefined,
	rules: readonly GuardrailRule[],
	grantKey?: string,
): KubeVerdict {
	const who = grantKey ? `grant "${grantKey}"` : "the grant";
	const deny = (why: string): KubeVerdict => ({
		action: "block",
		rule: `grant:${grantKey ?? "scope"}`,
		status: 403,
		message: `${who} does not allow ${describe(req)}: ${why}`,
	});
	if (!grant) return deny("it has no Kubernetes access");
	const g = compileGrant(grant);
	const verb = req.verb.toLowerCase();
	if (!req.resource) {
		if (verb !== "get") return deny("only discovery reads (get) are allowed on non-resource URLs");
		const everything = g.allNamespaces && grant.resources.includes("*");
		if (!everything && (req.path === undefined || !isDiscoveryPath(req.path))) {
			return deny(`non-resource URL ${printable(req.path ?? "(unknown)")} is not discovery; it needs namespaces: ['*'] and resources: ['*'] in the grant`);
		}
	} else {
		// The Namespace object is cluster-scoped: a grant on the namespace's contents may read it, never
		// change or delete it (the apiserver, like RBAC, gives `/api/v1/namespaces/NAME` the namespace NAME).
		if (req.namespace && !isNamespaceObject(req)) {
			if (!g.namespaces(req.namespace)) return deny(`namespace ${printable(req.namespace)} is not granted`);
		} else if (!g.allNamespaces) {
			const readNs =
				req.resource === "namespaces" &&
				!req.subresource &&
				(req.apiGroup ?? "") === "" &&
				(verb === "get" || verb === "watch") &&
				req.name !== undefined &&
				g.namespaces(req.name);
			if (!readNs) return deny("cluster-scoped requests need namespaces: ['*'] in the grant");
		}
		if (!g.verbs(verb)) return deny(`verb ${printable(verb)} is not granted`);
		if (req.mayCreate && !g.verbs("create")) {
			return deny(
				`verb create is not granted, and ${verb === "update" ? "an update" : "a server-side apply"} creates the object when it does not exist (the apiserver authorizes that as create); change existing objects with a JSON, merge or strategic-merge patch (kubectl apply without --server-side, kubectl patch, kubectl edit)`,
			);
		}
		if (!g.resources(req.resource, req.subresource, req.apiGroup)) {
			const named = req.subresource !== undefined && NAMED_ONLY.has(`${req.resource}/${req.subresource}`);
			return deny(
				`resource ${printable(`${req.resource}${req.subresource ? `/${req.subresource}` : ""}`)} is not granted${named ? " (it mints a credential usable without the gateway after the grant ends: wildcards never cover it, the grant must name it)" : ""}`,
			);
		}
		if (namedOnlyWrite(req) && !g.named(req.resource, req.subresource, req.apiGroup)) {
			const res = `${req.resource}${req.subresource ? `/${req.subresource}` : ""}`;
			return deny(
				`writes of ${printable(res)} change what happens to every later request of what they name, in every namespace, whoever sends it (admission webhooks and policies are sent or rewrite others' objects, an APIService takes over an API group): wildcards never cover them, the grant must name ${printable(res)} in resources`,
			);
		}
	}
	return guardrailVerdict(req, rules);
}

/** The GuardrailRules' verdict on `req` (and the requests it implies), grant scope aside. */
export function guardrailVerdict(req: KubeRequest, rules: readonly GuardrailRule[]): KubeVerdict {
	const verb = req.verb.toLowerCase();
	let best: KubeVerdict = { action: "allow" };
	const implied = impliedRequests(req);
	for (const c of compileKubeRules(rules)) {
		if (RANK[c.rule.action] <= RANK[best.action]) continue;
		const direct = ruleMatches(c, req, verb);
		const via = direct ? undefined : implied.find((i) => i.everything === true || ruleMatches(c, i.req, i.req.verb, i.anyResource));
		if (!direct && !via) continue;
		const v: KubeVerdict = {
			action: c.rule.action,
			rule: c.rule.name,
			message: `${describe(req)}${via ? ` (${via.why})` : ""}: ${c.rule.action === "block" ? "blocked" : c.rule.action === "requireApproval" ? "requires approval" : "audited"} by guardrail rule "${c.rule.name}"${c.rule.message ? `: ${c.rule.message}` : ""}`,
		};
		if (c.rule.action === "block") v.status = 403;
		if (c.rule.action === "requireApproval" && c.rule.approval) v.approval = c.rule.approval;
		best = v;
	}
	return best;
}
