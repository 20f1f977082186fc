/**
 * Repository checks: what `drawbridge validate` runs on a grants repository, beyond what the
 * apiserver can check one object at a time.
 *
 * 1. Every file and document passes what the operator checks before it syncs one (crds/gitops.ts, the
 *    same code): positioned YAML errors, `validateResource` (same rules as the CRDs), file size and
 *    encoding, kinds git cannot declare, operator metadata, invisible characters, namespaces.
 * 2. References: a grant's Connection exists in the repository, its access block matches the
 *    Connection's type, and where a GuardrailPolicy with a `requireApproval` rule (without its own
 *    approvers) selects the grant's Connection, the grant names approvers. No duplicate resources.
 * 3. Organisation lints from `.drawbridge.yaml`: maximum grant duration per Connection label
 *    selector, tickets required (and their format) for grants on selected Connections.
 */
import { type Static, Type } from "@sinclair/typebox";
import { checkManifestFile, type Diagnostic, type NamespaceRule, positioned, type Severity } from "./gitops.ts";
import { grantLengthMs, parseDuration } from "./duration.ts";
import { loadManifests, type Manifest } from "./load.ts";
import { StringEnum } from "./schema/kit.ts";
import { applyDefaults, type FieldError, formatPath, type PathSegment, validateSchema } from "./validate.ts";

export type { Diagnostic, Severity } from "./gitops.ts";

export interface RepoResource {
	file: string;
	line: number;
	kind: string;
	name: string;
	namespace?: string;
	valid: boolean;
}

export interface RepoReport {
	diagnostics: Diagnostic[];
	resources: RepoResource[];
	files: number;
}

// ---------------------------------------------------------------------------------------------
// Lint configuration (.drawbridge.yaml)

const Selector = Type.Record(Type.String(), Type.String({ maxLength: 63 }), {
	description: "Connection labels that must all match for the lint to apply (empty: every Connection).",
});

export const LintConfig = Type.Object(
	{
		maxDuration: Type.Optional(
			Type.Array(
				Type.Object(
					{
						selector: Selector,
						max: Type.String({ description: "Longest grant allowed on matching Connections (`8h`, `7d`).", pattern: "^([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?$", minLength: 2 }),
					},
					{ description: "A duration cap for grants on Connections matching the selector." },
				),
				{ description: "Duration caps; every matching cap applies (the smallest wins)." },
			),
		),
		requireTicket: Type.Optional(
			Type.Array(Type.Object({ selector: Selector }, { description: "Grants on Connections matching the selector need spec.ticket." }), {
				description: "Where grants need a ticket.",
			}),
		),
		requireJustification: Type.Optional(
			Type.Array(Type.Object({ selector: Selector }, { description: "Grants on Connections matching the selector need spec.justification." }), {
				description: "Where grants need a justification.",
			}),
		),
		ticketPattern: Type.Optional(Type.String({ description: "Regular expression every spec.ticket must match (e.g. `^[A-Z]+-[0-9]+$`).", minLength: 1 })),
		exclude: Type.Optional(Type.Array(Type.String({ description: "A path prefix." }), { description: "Paths (files or directories, relative to the directory of `.drawbridge.yaml`) not validated." })),
		warnings: Type.Optional(StringEnum(["allow", "error"] as const, { description: "`error` turns warnings into errors.", default: "allow" })),
		gitSource: Type.Optional(
			Type.Object(
				{
					namespace: Type.String({ description: "Namespace of the GitSource that syncs this repository: where resources without metadata.namespace land.", minLength: 1, maxLength: 63 }),
					operatorNamespace: Type.Optional(
						Type.String({ description: "The operator's namespace; a GitSource there may place resources in any namespace.", default: "drawbridge-system", minLength: 1, maxLength: 63 }),
					),
				},
				{ description: "Where the repository is synced from, for the operator's namespace rule. Without it, every metadata.namespace is an error (the operator may skip it)." },
			),
		),
	},
	{ description: "Organisation lints for `drawbridge validate`, read from `.drawbridge.yaml` at the repository root." },
);
export type LintConfig = Static<typeof LintConfig>;

export const LINT_CONFIG_FILE = ".drawbridge.yaml";

/** Parse `.drawbridge.yaml`; problems come back as diagnostics for that file. */
export function parseLintConfig(text: string, file: string): { config: LintConfig; diagnostics: Diagnostic[] } {
	const diagnostics: Diagnostic[] = [];
	const { manifests, errors } = loadManifests(text, file);
	for (const e of errors) diagnostics.push({ file, line: e.line, col: e.col, severity: "error", field: "", code: e.code, message: e.message });
	if (manifests.length > 1) diagnostics.push({ file, line: manifests[1]!.line, col: 1, severity: "error", field: "", code: "CONFIG", message: "expected a single document" });
	const m = manifests[0];
	if (!m) return { config: {}, diagnostics };
	const value = applyDefaults(LintConfig, m.object);
	const fieldErrors: FieldError[] = [];
	validateSchema(LintConfig, value, [], fieldErrors);
	for (const e of fieldErrors) diagnostics.push(positioned(m, e, "CONFIG", "error"));
	const cfg = value as LintConfig;
	if (fieldErrors.length === 0) {
		cfg.maxDuration?.forEach((d, i) => {
			if (parseDuration(d.max) === undefined) diagnostics.push(positioned(m, fe(["maxDuration", i, "max"], `invalid duration ${JSON.stringify(d.max)}`), "CONFIG", "error"));
		});
		if (cfg.ticketPattern !== undefined) {
			try {
				new RegExp(cfg.ticketPattern, "u");
			} catch (e) {
				diagnostics.push(positioned(m, fe(["ticketPattern"], `invalid regular expression: ${(e as Error).message}`), "CONFIG", "error"));
			}
		}
	}
	return { config: diagnostics.length === 0 ? cfg : {}, diagnostics };
}

// ---------------------------------------------------------------------------------------------

function fe(path: PathSegment[], message: string): FieldError {
	return { path, field: formatPath(path), type: "Invalid", message };
}

interface Loaded {
	m: Manifest;
	kind: string;
	name: string;
	namespace: string;
	// biome-ignore lint/suspicious/noExplicitAny: validated resource with defaults applied.
	obj: any;
}

function selects(selector: Record<string, string> | undefined, labels: Record<string, string> | undefined): boolean {
	for (const [k, v] of Object.entries(selector ?? {})) if (labels?.[k] !== v) return false;
	return true;
}

const ACCESS_OF: Record<string, "postgres" | "ssh" | "kubernetes"> = { postgres: "postgres", ssh: "ssh", kubernetes: "kubernetes" };
const RULE_PROTOCOL = { sql: "postgres", kubernetes: "kubernetes", ssh: "ssh" } as const;

/** The operator's namespace rule for this repository, from `.drawbridge.yaml` `gitSource`. */
export function namespaceRule(config: LintConfig): NamespaceRule {
	const gs = config.gitSource;
	if (!gs) return { namespaces: [] };
	return { defaultNamespace: gs.namespace, namespaces: gs.namespace === (gs.operatorNamespace ?? "drawbridge-system") ? "any" : [] };
}

/**
 * Validate a whole repository's files (paths as they should appear in messages; `text` is the file's
 * bytes, or its text when already decoded).
 */
export function validateRepository(files: { file: string; text: string | Uint8Array }[], config: LintConfig = {}, now: Date = new Date()): RepoReport {
	const diagnostics: Diagnostic[] = [];
	const resources: RepoResource[] = [];
	const loaded: Loaded[] = [];
	const seen = new Map<string, Manifest>();
	const rule = namespaceRule(config);
	for (const { file, text } of files) {
		// What the operator checks, by the operator's own code.
		const checked = checkManifestFile(file, text, rule);
		for (const d of checked.diagnostics) diagnostics.push(d); // not push(...): a file may hold 100 000 documents
		const syncable = new Map(checked.resources.map((r) => [r.manifest, r]));
		for (const doc of checked.documents) {
			const m = doc.manifest;
			resources.push({ file: m.file, line: m.line, kind: doc.kind, name: doc.name, ...(doc.namespace ? { namespace: doc.namespace } : {}), valid: doc.valid });
			// Duplicates by where the operator places them (the GitSource's namespace when none is written).
			const namespace = doc.namespace || rule.defaultNamespace || "";
			if (doc.def && doc.name) {
				const key = `${doc.kind}/${namespace}/${doc.name}`;
				const prev = seen.get(key);
				if (prev) {
					const p = m.positionOf(["metadata", "name"]);
					diagnostics.push({ file: m.file, line: p.line, col: p.col, severity: "error", field: "metadata.name", code: "DUPLICATE", message: `${doc.kind} ${JSON.stringify(doc.name)} is already defined at ${prev.file}:${prev.line}` });
					continue;
				}
				seen.set(key, m);
			}
			const r = syncable.get(m);
			if (r) loaded.push({ m, kind: r.def.kind, name: doc.name, namespace, obj: r.object });
		}
	}
	checkReferences(loaded, diagnostics);
	lint(loaded, config, diagnostics);
	for (const l of loaded) {
		if (l.kind === "AccessGrant" && l.obj.spec.expiresAt !== undefined && Date.parse(l.obj.spec.expiresAt) <= now.getTime()) {
			diagnostics.push(ref(l, ["spec", "expiresAt"], `the grant already expired (${l.obj.spec.expiresAt}); remove the file instead`, "EXPIRED", "warning"));
		}
	}
	if (config.warnings === "error") for (const d of diagnostics) d.severity = "error";
	diagnostics.sort((a, b) => a.file.localeCompare(b.file) || a.line - b.line || a.col - b.col);
	return { diagnostics, resources, files: files.length };
}

function ref(l: Loaded, path: PathSegment[], message: string, code = "REFERENCE", severity: Severity = "error"): Diagnostic {
	return positioned(l.m, fe(path, message), code, severity);
}

function checkReferences(loaded: Loaded[], out: Diagnostic[]): void {
	const connections = new Map<string, Loaded>();
	for (const l of loaded) if (l.kind === "Connection") connections.set(`${l.namespace}/${l.name}`, l);
	const guardrails = loaded.filter((l) => l.kind === "GuardrailPolicy");
	for (const l of loaded) {
		if (l.kind === "AccessGrant") {
			const spec = l.obj.spec;
			const conn = connections.get(`${l.namespace}/${spec.connection}`);
			if (!conn) {
				out.push(ref(l, ["spec", "connection"], `Connection ${JSON.stringify(spec.connection)} not found in the repository${l.namespace ? ` (namespace ${l.namespace})` : ""}`));
				continue;
			}
			const type = conn.obj.spec.type as string;
			for (const block of ["postgres", "ssh", "kubernetes"] as const) {
				if (spec[block] !== undefined && ACCESS_OF[type] !== block) {
					out.push(ref(l, ["spec", block], `Connection ${JSON.stringify(spec.connection)} is type ${type}; use spec.${type} instead of spec.${block}`));
				}
			}
			if (spec.approvers === undefined) {
				const labels = (conn.obj.metadata?.labels ?? {}) as Record<string, string>;
				for (const g of guardrails) {
					if (g.namespace !== l.namespace || !selects(g.obj.spec.selector?.matchLabels, labels)) continue;
					for (const rule of g.obj.spec.rules) {
						if (rule.action !== "requireApproval" || rule.approval?.approvers !== undefined) continue;
						const proto = (["sql", "kubernetes", "ssh"] as const).find((k) => rule[k] !== undefined);
						if (!proto || RULE_PROTOCOL[proto] !== type) continue;
						out.push(
							ref(l, ["spec"], `spec.approvers is required: GuardrailPolicy ${JSON.stringify(g.name)} rule ${JSON.stringify(rule.name)} requires approval on Connection ${JSON.stringify(spec.connection)} and names no approvers of its own (${g.m.file}:${g.m.line})`),
						);
					}
				}
			}
		}
		if (l.kind === "MaskingPolicy" || l.kind === "GuardrailPolicy") {
			const matching = [...connections.values()].filter((c) => c.namespace === l.namespace && selects(l.obj.spec.selector?.matchLabels, c.obj.metadata?.labels));
			if (matching.length === 0) out.push(ref(l, ["spec", "selector"], "selects no Connection in the repository", "REFERENCE", "warning"));
		}
		if (l.kind === "MaskingPolicy") {
			l.obj.spec.rules.forEach((rule: { patterns?: string[] }, i: number) => {
				rule.patterns?.forEach((p, j) => {
					try {
						new RegExp(p, "u");
					} catch (e) {
						out.push(ref(l, ["spec", "rules", i, "patterns", j], `invalid regular expression: ${(e as Error).message}`, "SCHEMA"));
					}
				});
			});
		}
	}
}

function lint(loaded: Loaded[], config: LintConfig, out: Diagnostic[]): void {
	const connections = new Map<string, Loaded>();
	for (const l of loaded) if (l.kind === "Connection") connections.set(`${l.namespace}/${l.name}`, l);
	const ticketRe = config.ticketPattern !== undefined ? new RegExp(config.ticketPattern, "u") : undefined;
	for (const l of loaded) {
		if (l.kind !== "AccessGrant") continue;
		const spec = l.obj.spec;
		const conn = connections.get(`${l.namespace}/${spec.connection}`);
		if (!conn) continue;
		const labels = (conn.obj.metadata?.labels ?? {}) as Record<string, string>;
		const what = (sel: Record<string, string>) => (Object.keys(sel).length === 0 ? "every Connection" : `Connections with ${Object.entries(sel).map(([k, v]) => `${k}=${v}`).join(",")}`);
		const length = grantLengthMs(spec);
		for (const cap of config.maxDuration ?? []) {
			if (!selects(cap.selector, labels)) continue;
			const max = parseDuration(cap.max);
			if (max === undefined || length === undefined || length <= max) continue;
			const field = spec.duration !== undefined ? "duration" : "expiresAt";
			out.push(ref(l, ["spec", field], `grant lasts longer than ${cap.max}, the maximum on ${what(cap.selector)} (.drawbridge.yaml maxDuration)`, "LINT"));
		}
		for (const req of config.requireTicket ?? []) {
			if (selects(req.selector, labels) && spec.ticket === undefined) {
				out.push(ref(l, ["spec"], `spec.ticket is required for grants on ${what(req.selector)} (.drawbridge.yaml requireTicket)`, "LINT"));
				break;
			}
		}
		for (const req of config.requireJustification ?? []) {
			if (selects(req.selector, labels) && spec.justification === undefined) {
				out.push(ref(l, ["spec"], `spec.justification is required for grants on ${what(req.selector)} (.drawbridge.yaml requireJustification)`, "LINT"));
				break;
			}
		}
		if (ticketRe && spec.ticket !== undefined && !ticketRe.test(spec.ticket)) {
			out.push(ref(l, ["spec", "ticket"], `ticket ${JSON.stringify(spec.ticket)} does not match ${config.ticketPattern} (.drawbridge.yaml ticketPattern)`, "LINT"));
		}
	}
}
