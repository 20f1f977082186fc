/**
 * What the operator syncs from a grants repository, and what it refuses or skips: the one code path
 * the operator's loader (operator/gitsync/load.ts) and `drawbridge validate` (crds/repo.ts) share, so a
 * pull request that passes the check is not then skipped by the operator with a problem nobody saw in
 * review. Per file: which paths are manifests, size, UTF-8, file names a reader cannot see; per
 * document: the schema and cross-field rules (`validateResource`), kinds that cannot come from git,
 * metadata the operator writes itself, characters a reviewer cannot see, and namespaces outside the
 * GitSource's. Pure: no Kubernetes, no file system.
 */
import { GROUP, type KindDef } from "./kinds.ts";
import { loadManifests, type Manifest } from "./load.ts";
import { HIDDEN_IN_TEXT, printable } from "./text.ts";
import { type FieldError, formatPath, type PathSegment, validateResource } from "./validate.ts";

export type Severity = "error" | "warning";

export interface Diagnostic {
	file: string;
	line: number;
	col: number;
	severity: Severity;
	/** Field path (`spec.duration`), empty for file-level problems. */
	field: string;
	/**
	 * Stable code: YAML codes (TAB_INDENT, DUPLICATE_KEY, SYNTAX...), SCHEMA, RULE, REFERENCE, LINT,
	 * DUPLICATE, CONFIG, EXPIRED, SKIPPED; the operator's own refusals FILE (name, size, encoding),
	 * NOT_SYNCED (a kind git cannot declare), RESERVED (operator metadata), INVISIBLE, NAMESPACE.
	 */
	code: string;
	message: string;
}

/** Kinds a grants repository may declare. GitSources are skipped silently; other Drawbridge kinds are refused. */
export const SYNCED_KINDS = Object.freeze(["Connection", "AccessGrant", "MaskingPolicy", "GuardrailPolicy"] as const);
export type SyncedKind = (typeof SYNCED_KINDS)[number];

/** Larger files are refused whole. */
export const MAX_MANIFEST_FILE_BYTES = 1 << 20;

/** Metadata prefix the operator writes itself (provenance annotations, ownership label): a manifest may not set it. */
export const RESERVED_PREFIX = `${GROUP}/`;

/**
 * Whether a path (relative to the repository, or to the directory validated) holds manifests: YAML
 * files (`.yaml`, `.yml`, any case) outside hidden directories, not hidden themselves (`.github/`,
 * `.drawbridge.yaml`). Nothing else is skipped: a file the operator syncs is a file the check reads.
 */
export function isManifestPath(path: string): boolean {
	return /\.ya?ml$/i.test(path) && !path.split("/").some((seg) => seg.startsWith("."));
}

/**
 * Where resources of a repository land. The operator: the GitSource's namespace by default, and other
 * namespaces only for a GitSource in the operator's namespace (`"any"`). `drawbridge validate` reads it
 * from `.drawbridge.yaml`; without it (`defaultNamespace` undefined) it cannot tell, and refuses every
 * `metadata.namespace` the operator might skip.
 */
export interface NamespaceRule {
	defaultNamespace?: string;
	namespaces: "any" | readonly string[];
}

/** A document the operator would apply: validated, defaults filled in, no status. */
export interface SyncableResource {
	manifest: Manifest;
	kind: SyncedKind;
	def: KindDef;
	// biome-ignore lint/suspicious/noExplicitAny: validated resource with defaults applied.
	object: any;
	/** `metadata.namespace`, or the rule's default namespace (undefined when neither is known). */
	namespace?: string;
}

/** Every Drawbridge document of a file (for the validate report), valid or not. */
export interface CheckedDocument {
	manifest: Manifest;
	kind: string;
	name: string;
	/** As written (empty when absent). */
	namespace: string;
	def?: KindDef;
	valid: boolean;
}

export interface CheckedFile {
	diagnostics: Diagnostic[];
	documents: CheckedDocument[];
	resources: SyncableResource[];
}

export function positioned(m: Manifest, e: FieldError, code: string, severity: Severity): Diagnostic {
	const p = m.positionOf(e.path, e.type === "UnknownField" ? "key" : "value");
	return { file: m.file, line: p.line, col: p.col, severity, field: e.field, code: e.rule && code === "SCHEMA" ? "RULE" : code, message: e.message };
}

/** How the operator words a diagnostic in a GitSource's status.errors and its Events. */
export function problemText(d: Diagnostic): string {
	if (d.field) return `${d.field}: ${d.message}`;
	return d.code === "FILE" ? d.message : `${d.code}: ${d.message}`;
}

/** The first string (value or key) in `v` carrying characters a reviewer cannot see. */
function findHiddenText(v: unknown, path: PathSegment[] = []): { path: PathSegment[]; found: string; inKey?: true } | undefined {
	if (typeof v === "string") {
		const m = HIDDEN_IN_TEXT.exec(v);
		return m ? { path, found: printable(m[0]) } : undefined;
	}
	if (Array.isArray(v)) {
		for (const [i, x] of v.entries()) {
			const r = findHiddenText(x, [...path, i]);
			if (r) return r;
		}
		return undefined;
	}
	if (v && typeof v === "object") {
		for (const [k, x] of Object.entries(v)) {
			const km = HIDDEN_IN_TEXT.exec(k);
			if (km) return { path: [...path, k], found: printable(km[0]), inKey: true };
			const r = findHiddenText(x, [...path, k]);
			if (r) return r;
		}
	}
	return undefined;
}

/**
 * Why the operator would skip a valid resource (`obj`, defaults applied): operator metadata, text a
 * reviewer cannot see, a namespace outside the GitSource's. The first reason only.
 */
function syncRefusal(m: Manifest, obj: { metadata: { namespace?: string; annotations?: Record<string, string>; labels?: Record<string, string> } }, rule: NamespaceRule): Diagnostic | undefined {
	const at = (path: PathSegment[], code: string, field: string, message: string, where: "key" | "value" = "value"): Diagnostic => {
		const p = m.positionOf(path, where);
		return { file: m.file, line: p.line, col: p.col, severity: "error", field, code, message };
	};
	const reserved = [
		...Object.keys(obj.metadata.annotations ?? {}).map((k) => ["annotations", k] as const),
		...Object.keys(obj.metadata.labels ?? {}).map((k) => ["labels", k] as const),
	].find(([, k]) => k.toLowerCase().startsWith(RESERVED_PREFIX));
	if (reserved) {
		// Provenance (commit, pull request, approval link) and ownership are the operator's to write:
		// a manifest naming PR #42 or another approval URL would forge the audit trail.
		const path = ["metadata", reserved[0], reserved[1]];
		return at(path, "RESERVED", formatPath(path), `the prefix ${RESERVED_PREFIX} is reserved for the operator; the resource is skipped`, "key");
	}
	const hidden = findHiddenText(obj);
	if (hidden) {
		// A reviewer reads `alice` where the grant says `alice\u{200b}`, or text reordered by a bidi override.
		return at(hidden.path, "INVISIBLE", printable(formatPath(hidden.path)), `contains control or invisible characters (${hidden.found}) a reviewer cannot see; the resource is skipped`, hidden.inKey ? "key" : "value");
	}
	const written = obj.metadata.namespace;
	if (written !== undefined && rule.namespaces !== "any" && written !== rule.defaultNamespace && !rule.namespaces.includes(written)) {
		const message =
			rule.defaultNamespace === undefined
				? `${JSON.stringify(written)}: the operator skips resources outside the namespace of the GitSource that syncs them unless that GitSource is in the operator's namespace, and .drawbridge.yaml does not say where it is (gitSource.namespace, gitSource.operatorNamespace). The resource would be skipped`
				: `${JSON.stringify(written)} is outside this GitSource's namespace ${JSON.stringify(rule.defaultNamespace)}; only a GitSource in the operator's namespace may place resources in other namespaces. The resource is skipped`;
		return at(["metadata", "namespace"], "NAMESPACE", "metadata.namespace", message);
	}
	return undefined;
}

/**
 * Checks one file as the operator reads it. `file` names it in diagnostics; `content` is its bytes
 * (or text already decoded, e.g. standard input).
 */
export function checkManifestFile(file: string, content: Uint8Array | string, rule: NamespaceRule): CheckedFile {
	const out: CheckedFile = { diagnostics: [], documents: [], resources: [] };
	const fileProblem = (message: string) => out.diagnostics.push({ file: printable(file), line: 1, col: 1, severity: "error", field: "", code: "FILE", message });
	if (printable(file) !== file) {
		// The path lands in annotations, status and Events: a name carrying ANSI escapes or newlines is refused.
		fileProblem("file name contains control or invisible characters; skipped");
		return out;
	}
	const size = typeof content === "string" ? Buffer.byteLength(content) : content.byteLength;
	if (size > MAX_MANIFEST_FILE_BYTES) {
		fileProblem(`file larger than ${MAX_MANIFEST_FILE_BYTES} bytes`);
		return out;
	}
	let text: string;
	if (typeof content === "string") text = content;
	else {
		try {
			text = new TextDecoder("utf-8", { fatal: true }).decode(content);
		} catch {
			fileProblem("file is not valid UTF-8");
			return out;
		}
	}
	const { manifests, errors } = loadManifests(text, file);
	for (const e of errors) out.diagnostics.push({ file, line: e.line, col: e.col, severity: "error", field: "", code: e.code, message: e.message });
	for (const m of manifests) {
		const apiVersion = m.object.apiVersion;
		if (typeof apiVersion === "string" && !apiVersion.startsWith(`${GROUP}/`)) {
			out.diagnostics.push({ file, line: m.line, col: m.col, severity: "warning", field: "apiVersion", code: "SKIPPED", message: `not a Drawbridge resource (${apiVersion}); not validated or synced` });
			continue;
		}
		const kind = typeof m.object.kind === "string" ? m.object.kind : "";
		const meta = (m.object.metadata ?? {}) as Record<string, unknown>;
		const doc: CheckedDocument = { manifest: m, kind, name: typeof meta.name === "string" ? meta.name : "", namespace: typeof meta.namespace === "string" ? meta.namespace : "", valid: false };
		out.documents.push(doc);
		const before = out.diagnostics.length;
		// A repository may keep the GitSource that follows it (applied once by hand): validated, not synced.
		const synced = (SYNCED_KINDS as readonly string[]).includes(kind);
		if (kind !== "" && !synced && kind !== "GitSource") {
			const p = m.positionOf(["kind"]);
			out.diagnostics.push({ file, line: p.line, col: p.col, severity: "error", field: "kind", code: "NOT_SYNCED", message: `${kind} cannot be synced from git` });
		}
		const r = validateResource(m.object);
		for (const e of r.errors) out.diagnostics.push(positioned(m, e, "SCHEMA", "error"));
		for (const w of r.warnings) out.diagnostics.push(positioned(m, w, "SCHEMA", "warning"));
		if (r.errors.length === 0 && r.kind && r.value) {
			const obj = structuredClone(r.value) as { metadata: { namespace?: string } };
			delete (obj as { status?: unknown }).status;
			if (synced) {
				const refusal = syncRefusal(m, obj as never, rule);
				if (refusal) out.diagnostics.push(refusal);
				else out.resources.push({ manifest: m, kind: kind as SyncedKind, def: r.kind, object: obj, ...((obj.metadata.namespace ?? rule.defaultNamespace) !== undefined ? { namespace: obj.metadata.namespace ?? rule.defaultNamespace } : {}) });
			}
		}
		if (r.kind) doc.def = r.kind;
		doc.valid = !out.diagnostics.slice(before).some((d) => d.severity === "error");
	}
	return out;
}
