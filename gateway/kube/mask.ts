/**
 * Request bodies for the recording: mutations are recorded, with Secret values replaced. kubectl apply
 * also copies the whole object into the `kubectl.kubernetes.io/last-applied-configuration`
 * annotation, so that annotation is masked on Secrets too.
 */
import { parseDocument, visit } from "yaml";

export const MASKED = "<masked>";
const LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration";
/**
 * Bodies larger than this are recorded as a size only: the kube-apiserver's own default limit
 * (`--max-request-bytes`, 3 MiB), so every body it takes by default is recorded whole. It was 256 KiB:
 * a Deployment or RoleBinding padded past it (a 300 KiB annotation) was recorded as its size alone,
 * what it changed nowhere in the recording (test/kube/issue-padded-body-unrecorded.test.ts).
 */
export const MAX_RECORDED_BODY = 3 * 1024 * 1024;

function maskSecret(obj: Record<string, unknown>): void {
	for (const field of ["data", "stringData"]) {
		const v = obj[field];
		if (v && typeof v === "object") {
			for (const k of Object.keys(v)) (v as Record<string, unknown>)[k] = MASKED;
		}
	}
	const md = obj["metadata"] as { annotations?: Record<string, unknown> } | undefined;
	if (md?.annotations && LAST_APPLIED in md.annotations) md.annotations[LAST_APPLIED] = MASKED;
}

function walk(value: unknown): void {
	if (!value || typeof value !== "object") return;
	if (Array.isArray(value)) {
		for (const v of value) walk(v);
		return;
	}
	const obj = value as Record<string, unknown>;
	if (obj["kind"] === "Secret") maskSecret(obj);
	if (Array.isArray(obj["items"])) {
		// A SecretList's items usually carry no `kind` of their own.
		if (obj["kind"] === "SecretList") for (const item of obj["items"]) maskSecretBody(item);
		else walk(obj["items"]);
	}
}

/**
 * Secrets endpoint: whatever the body shape (object, merge patch, JSON patch, a List of Secrets the
 * apiserver will refuse — the body is recorded all the same), no value survives.
 */
function maskSecretBody(value: unknown): void {
	if (Array.isArray(value)) {
		// JSON patch: [{op, path, value}]; anything else in an array is masked as a Secret too.
		for (const op of value) {
			if (op && typeof op === "object" && "value" in op) (op as Record<string, unknown>)["value"] = MASKED;
			maskSecretBody(op);
		}
		return;
	}
	if (value && typeof value === "object") {
		const obj = value as Record<string, unknown>;
		maskSecret(obj);
		if (Array.isArray(obj["items"])) maskSecretBody(obj["items"]);
	}
}

/**
 * A YAML body read the way the apiserver's decoder (Go, YAML 1.1 via sigs.k8s.io/yaml) reads it, as far
 * as the gateway's checks depend on it: merge keys (`<<`) are merged into their map. Throws when the
 * document does not parse cleanly (duplicate keys, several documents, syntax errors, alias bombs) or
 * carries any explicit tag: Go decodes `!!binary` base64 into the text it encodes (in any of the tag's
 * spellings: `!!binary`, `!<tag:yaml.org,2002:binary>`, a `%TAG` handle), which the `yaml` package
 * leaves as bytes or as the base64 text, so `whenScaled: !!binary RGVsZXRl` read as anything but
 * `Delete` here. kubectl and client-go never send tags; callers treat such a body as unreadable.
 */
export function parseYamlBody(text: string): unknown {
	const doc = parseDocument(text, { logLevel: "silent", merge: true });
	if (doc.errors.length > 0) throw doc.errors[0];
	visit(doc, {
		Node(_key, node) {
			if ((node as { tag?: string }).tag) throw new SyntaxError("explicit YAML tags are not read");
		},
	});
	return doc.toJS();
}

/** Parse a mutation body (JSON, YAML apply patches) and mask secret material. */
export function recordableBody(body: Buffer, contentType: string | undefined, resource: string): unknown {
	if (body.length === 0) return undefined;
	if (body.length > MAX_RECORDED_BODY) return { truncated: true, bytes: body.length, contentType };
	const isSecret = resource === "secrets";
	let parsed: unknown;
	try {
		const text = body.toString("utf8");
		parsed = (contentType ?? "").includes("yaml") ? parseYamlBody(text) : JSON.parse(text);
	} catch {
		// Unparseable secrets are never recorded verbatim. Other bodies the gateway does not read
		// (protobuf, which the apiserver takes for creates and updates of built-in kinds; CBOR; YAML
		// with tags) are recorded as their bytes: a size alone let a RoleBinding or a Deployment
		// written in protobuf leave nothing of what it wrote (test/kube/issue-padded-body-unrecorded.test.ts).
		if (isSecret) return { unparsed: true, bytes: body.length, contentType };
		return { unparsed: true, bytes: body.length, contentType, base64: body.toString("base64") };
	}
	if (isSecret) maskSecretBody(parsed);
	else walk(parsed);
	return parsed;
}
