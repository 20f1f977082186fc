/**
 * Whether a write's body hands the object to a controller that deletes it: `ownerReferences` (the
 * garbage collector deletes a dependent whose owners are all absent: a made-up uid, an owner in another
 * namespace, or one deleted next) or `ttlSecondsAfterFinished` (the TTL controller deletes a finished
 * Job); on a Node, a `NoExecute` taint (the taint manager deletes its pods); on a StatefulSet, a
 * `persistentVolumeClaimRetentionPolicy` that says `Delete` (the StatefulSet controller deletes its
 * claims); on workloads, a count set to zero or a history trimmed to nothing (`replicas: 0`, a Job's
 * `suspend`, a CronJob's history limits: COUNT_FIELDS), whose controller then deletes the pods, Jobs
 * or revisions it keeps. The policy engine then matches the write as the deletes it leads to
 * (gateway/policy/kube.ts deleteEquivalents); the kube data path asks only when that changes the decision.
 *
 * Two looks, either one is enough, and anything the gateway cannot read counts as a hand-over (fail
 * closed): every key of the parsed JSON/YAML document (YAML merge keys merged as Go's YAML does; a YAML
 * body with any explicit tag, `!!binary` included, is unreadable: see mask.ts parseYamlBody) and every JSON-patch `path`/`from`, compared
 * without case (the parser has decoded `\u0052`-style escapes and YAML's own); and the raw text with
 * JSON `\uXXXX` escapes decoded, so a key the parser dropped (a duplicate JSON key: the last one wins
 * in JSON.parse, while Go decodes both into the same struct) is still seen. A value that merely
 * contains the word (a ConfigMap holding a manifest) also counts: over-matching a denylist is the safe side.
 */
import { TOKEN_SECRET_WORDS } from "../policy/kube.ts";
import { parseYamlBody } from "./mask.ts";

const WORDS = ["ownerreferences", "ttlsecondsafterfinished"];
/** On a Node, a `NoExecute` taint makes the taint manager evict (delete) every pod on it that does not tolerate it. */
const NODE_WORDS = [...WORDS, "noexecute"];

/** On a StatefulSet: `whenDeleted`/`whenScaled: Delete` has the StatefulSet controller delete its claims. */
const RETENTION = "persistentvolumeclaimretentionpolicy";

/**
 * Per resource, fields whose value makes the workload's controller delete what it runs or keeps
 * (gateway/policy/kube.ts controllerDeletes): `zero` when set to 0, `set` whatever the value (a
 * Job's deadline), `true` when set to true (a Job's suspend). Keys are compared folded.
 */
const COUNT_FIELDS: Record<string, { zero?: readonly string[]; set?: readonly string[]; true?: readonly string[] }> = {
	deployments: { zero: ["replicas", "revisionhistorylimit"] },
	replicasets: { zero: ["replicas"] },
	statefulsets: { zero: ["replicas", "revisionhistorylimit"] },
	replicationcontrollers: { zero: ["replicas"] },
	daemonsets: { zero: ["revisionhistorylimit"] },
	jobs: { zero: ["parallelism"], set: ["activedeadlineseconds"], true: ["suspend"] },
	cronjobs: { zero: ["successfuljobshistorylimit", "failedjobshistorylimit"] },
};

/** A value the apiserver decodes as the integer 0 (or that JavaScript reads so: `0.0`, `-0`, `"0"`). */
function isZero(v: unknown): boolean {
	return v === 0 || (typeof v === "string" && /^\s*[-+]?0+(?:\.0*)?\s*$/.test(v));
}

function fold(s: string): string {
	// NFKC as well: U+017F (long s) and U+212A (Kelvin) fold to s and k in Go's case-insensitive
	// matching (the apiserver's decoders are case-sensitive today; this costs nothing).
	return s.normalize("NFKC").toLowerCase();
}

export function bodyHandsOver(body: Buffer, contentType: string | undefined, contentEncoding: string | undefined, resource = ""): boolean {
	const words = resource === "nodes" ? NODE_WORDS : WORDS;
	const sts = resource === "statefulsets";
	const mentions = (s: string): boolean => {
		const l = fold(s);
		return words.some((w) => l.includes(w));
	};
	// StatefulSets: the retention policy is named (a key, or a JSON-patch path/from), and either some
	// string value is `Delete` (any case), or a JSON-patch copy/move takes its value from elsewhere in
	// the object.
	// A policy that is Retain throughout (every StatefulSet has one since 1.27, so `kubectl replace`
	// sends it) does not count.
	let retention = false;
	let saysDelete = false;
	let copied = false;
	const counts = Object.hasOwn(COUNT_FIELDS, resource) ? COUNT_FIELDS[resource]! : {};
	/** Whether folded key `f` with value `x` makes the controller delete (see COUNT_FIELDS). */
	const countDeletes = (f: string, x: unknown): boolean =>
		(counts.zero?.includes(f) === true && isZero(x)) || counts.set?.includes(f) === true || (counts.true?.includes(f) === true && (x === true || (typeof x === "string" && fold(x) === "true")));
	const walk = (v: unknown, depth: number): boolean => {
		if (depth > 200) return true;
		if (typeof v === "string") {
			if (sts && fold(v) === "delete") saysDelete = true;
			return false;
		}
		if (Array.isArray(v)) return v.some((x) => walk(x, depth + 1));
		if (v && typeof v === "object") {
			const o = v as Record<string, unknown>;
			const op = o["op"];
			for (const [k, x] of Object.entries(o)) {
				if (mentions(k)) return true;
				if ((k === "path" || k === "from" || k === "effect") && typeof x === "string" && mentions(x)) return true;
				if (countDeletes(fold(k), x)) return true;
				// A JSON patch naming such a field: its value, or one copied or moved from elsewhere (unseen).
				if ((k === "path" || k === "from") && typeof x === "string") {
					const last = fold(x.slice(x.lastIndexOf("/") + 1));
					const named = counts.zero?.includes(last) || counts.set?.includes(last) || counts.true?.includes(last);
					if (named && (k === "from" || (typeof op === "string" && /^(copy|move)$/i.test(op)) || countDeletes(last, o["value"]))) return true;
				}
				if (sts) {
					if (fold(k).includes(RETENTION)) retention = true;
					if ((k === "path" || k === "from") && typeof x === "string" && fold(x).includes(RETENTION)) {
						retention = true;
						if (typeof op === "string" && /^(copy|move)$/i.test(op)) copied = true;
					}
				}
				if (walk(x, depth + 1)) return true;
			}
		}
		return false;
	};
	if (body.length === 0) return false;
	if (contentEncoding && contentEncoding.toLowerCase() !== "identity") return true;
	const type = (contentType ?? "").toLowerCase();
	const yaml = type.includes("yaml");
	if (!yaml && !type.includes("json")) return true; // protobuf, CBOR, anything else: unread
	const text = body.toString("utf8");
	const unescaped = text.replace(/\\u([0-9a-fA-F]{4})/g, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16)));
	if (mentions(unescaped)) return true;
	// Raw text too, for keys a parser drops (duplicate JSON keys: Go decodes both into one struct).
	if (sts && fold(unescaped).includes(RETENTION) && fold(unescaped).includes('"delete"')) return true;
	try {
		if (walk(yaml ? parseYamlBody(text) : JSON.parse(text), 0)) return true;
	} catch {
		return true;
	}
	return retention && (saysDelete || copied);
}

/**
 * Whether a write's body mentions one of `words` (gateway/policy/kube.ts `mintingWrite`: the token
 * Secret type or its service-account annotations, the kubelet client signer): anywhere in the raw text
 * (JSON `\uXXXX` escapes decoded) or in the parsed document's keys and values (YAML escapes decoded),
 * compared without case. A body the gateway cannot read counts (fail closed); so does one that merely
 * mentions the words.
 */
export function bodyMentions(body: Buffer, contentType: string | undefined, contentEncoding: string | undefined, words: readonly string[]): boolean {
	const mentions = (s: string): boolean => {
		const l = fold(s);
		return words.some((w) => l.includes(w));
	};
	const walk = (v: unknown, depth: number): boolean => {
		if (depth > 200) return true;
		if (typeof v === "string") return mentions(v);
		if (Array.isArray(v)) return v.some((x) => walk(x, depth + 1));
		if (v && typeof v === "object") {
			for (const [k, x] of Object.entries(v as Record<string, unknown>)) if (mentions(k) || walk(x, depth + 1)) return true;
		}
		return false;
	};
	if (body.length === 0) return false;
	if (contentEncoding && contentEncoding.toLowerCase() !== "identity") return true;
	const type = (contentType ?? "").toLowerCase();
	const yaml = type.includes("yaml");
	if (!yaml && !type.includes("json")) return true;
	const text = body.toString("utf8");
	if (mentions(text.replace(/\\u([0-9a-fA-F]{4})/g, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16))))) return true;
	try {
		return walk(yaml ? parseYamlBody(text) : JSON.parse(text), 0);
	} catch {
		return true;
	}
}

/** Whether a Secret write's body may make it a `kubernetes.io/service-account-token` Secret. */
export function bodyMintsToken(body: Buffer, contentType: string | undefined, contentEncoding: string | undefined): boolean {
	return bodyMentions(body, contentType, contentEncoding, TOKEN_SECRET_WORDS);
}

/**
 * Pod spec fields that reach the node when true (compared folded), and the one that does whatever its
 * value. `hostProcess` (Windows): the container is a process on the node itself.
 */
const NODE_FLAGS = ["hostpid", "hostipc", "hostnetwork", "privileged", "hostprocess"];
const HOST_PATH = "hostpath";

/**
 * Capabilities that reach the node from an unprivileged container (compared folded, with or without
 * `CAP_`; the runtimes upper-case and prefix them): `ALL`; `SYS_ADMIN` (mount, cgroup v1
 * `release_agent`, and most of what privileged adds); `SYS_MODULE` (load a kernel module);
 * `SYS_RAWIO` (raw device and port I/O); `SYS_BOOT` (`kexec_load` starts another kernel);
 * `DAC_READ_SEARCH` (`open_by_handle_at` opens any file of the node's filesystem by its handle);
 * `BPF` and `PERFMON` (kernel programs and kernel memory through perf); `MAC_ADMIN`, `MAC_OVERRIDE`
 * (the node's AppArmor or SELinux policy). Not counted, because they reach the pod's own processes,
 * network namespace or files only, and debugging needs them: `SYS_PTRACE` (`kubectl debug
 * --profile=general`), `NET_ADMIN`, `NET_RAW` (`--profile=netadmin`), and the runtime's defaults.
 */
const NODE_CAPS = new Set(["all", "sys_admin", "sys_module", "sys_rawio", "sys_boot", "dac_read_search", "bpf", "perfmon", "mac_admin", "mac_override"]);

function nodeCap(v: unknown): boolean {
	return typeof v === "string" && NODE_CAPS.has(fold(v).trim().replace(/^cap_/, ""));
}

/** Whether a value given to a `capabilities.add` list (the list, or one element) names a NODE_CAPS capability. */
function addsNodeCap(v: unknown): boolean {
	return Array.isArray(v) ? v.some(nodeCap) : nodeCap(v);
}

/**
 * Whether a write's body gives a pod (or a template, or an ephemeral container) the node's PID, IPC
 * or network namespace (`hostPID`, `hostIPC`, `hostNetwork: true`), a privileged container
 * (`privileged: true`), a Windows `hostProcess` container, a capability that reaches the node
 * (`capabilities.add`: NODE_CAPS), an unmasked `/proc` (`procMount: Unmasked`: the node's
 * `/proc/sys`, `/proc/sysrq-trigger`, `core_pattern`) or a `hostPath` volume (gateway/policy/kube.ts
 * nodeReach), or, for `resource` persistentvolumes, a `hostPath` or `local` source (the node's
 * files in whatever pod mounts its claim). Not counted (they reach nothing of the node's by themselves, and are defaults in many
 * clusters): seccomp or AppArmor `Unconfined`, `allowPrivilegeEscalation`, `hostPort` (a port on the
 * node's address, no more), `hostUsers` (false is a user namespace: less reach). Keys and JSON-patch
 * paths are compared folded; a JSON-patch `copy`/`move` into such a field counts (its value is not
 * seen); a body the gateway cannot read counts (fail closed).
 */
export function bodyReachesNode(body: Buffer, contentType: string | undefined, contentEncoding: string | undefined, resource = ""): boolean {
	// A PersistentVolume's `local` source is a path on the node, like hostPath.
	const hostPath = (f: string): boolean => f === HOST_PATH || (resource === "persistentvolumes" && f === "local");
	const truthy = (x: unknown): boolean => x === true || (typeof x === "string" && fold(x) === "true");
	const unmasked = (x: unknown): boolean => typeof x === "string" && fold(x).trim() === "unmasked";
	/** `capabilities` objects: their `add` list. */
	const capsObject = (v: unknown): boolean =>
		!!v && typeof v === "object" && Object.entries(v as Record<string, unknown>).some(([k, x]) => fold(k) === "add" && addsNodeCap(x));
	const walk = (v: unknown, depth: number): boolean => {
		if (depth > 200) return true;
		if (Array.isArray(v)) return v.some((x) => walk(x, depth + 1));
		if (v && typeof v === "object") {
			const o = v as Record<string, unknown>;
			const op = o["op"];
			const copies = typeof op === "string" && /^(copy|move)$/i.test(op);
			for (const [k, x] of Object.entries(o)) {
				const f = fold(k);
				if (hostPath(f) || (NODE_FLAGS.includes(f) && truthy(x))) return true;
				if (f === "capabilities" && capsObject(x)) return true;
				if (f === "procmount" && unmasked(x)) return true;
				if ((k === "path" || k === "from") && typeof x === "string") {
					const segs = fold(x).split("/");
					const last = segs[segs.length - 1] ?? "";
					const onHost = segs.some(hostPath);
					const named = onHost || NODE_FLAGS.includes(last) || last === "procmount" || segs.includes("capabilities");
					if (named && (k === "from" || onHost || copies || truthy(o["value"]) || unmasked(o["value"]))) return true;
					// A JSON patch into a capabilities object, its `add` list or one element of it.
					const caps = segs.lastIndexOf("capabilities");
					if (caps >= 0) {
						const rest = segs.slice(caps + 1);
						const value = o["value"];
						if (rest.length === 0 && capsObject(value)) return true;
						if (rest[0] === "add" && addsNodeCap(value)) return true;
					}
				}
				if (walk(x, depth + 1)) return true;
			}
		}
		return false;
	};
	if (body.length === 0) return false;
	if (contentEncoding && contentEncoding.toLowerCase() !== "identity") return true;
	const type = (contentType ?? "").toLowerCase();
	const yaml = type.includes("yaml");
	if (!yaml && !type.includes("json")) return true;
	const text = body.toString("utf8");
	// Raw text too (JSON escapes decoded), for keys a parser drops (a duplicate key: JSON.parse keeps
	// the last, Go decodes both into one struct): any mention of a host path counts, so does `Unmasked`
	// beside `procMount`, and a JSON `"add": [...]` list naming a NODE_CAPS capability.
	const raw = fold(text.replace(/\\u([0-9a-fA-F]{4})/g, (_, h: string) => String.fromCharCode(Number.parseInt(h, 16))));
	if (raw.includes(HOST_PATH) || (raw.includes("procmount") && raw.includes("unmasked"))) return true;
	if (resource === "persistentvolumes" && raw.includes("local")) return true;
	if (raw.includes("capabilities")) {
		for (const m of raw.matchAll(/"add"\s*:\s*\[([^\]]*)\]/g)) {
			if ([...m[1]!.matchAll(/"([^"]*)"/g)].some((q) => nodeCap(q[1]))) return true;
		}
	}
	try {
		return walk(yaml ? parseYamlBody(text) : JSON.parse(text), 0);
	} catch {
		return true;
	}
}
