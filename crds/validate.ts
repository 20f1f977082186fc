/**
 * The offline validator: the same checks the kube-apiserver makes for our CRDs, run on plain objects.
 *
 * It interprets the TypeBox schemas (the single source of truth) with the apiserver's semantics:
 * defaults first, then structural validation (types, enums, patterns, formats, bounds, unknown fields
 * as under `kubectl apply --validate=strict`, list-map key uniqueness), then the cross-field rules'
 * TypeScript predicates (the twins of the CEL rules in the CRD). Errors carry a Kubernetes-style field
 * path (`spec.subjects[0].kind`) so they can be compared with the apiserver's and positioned in YAML.
 */
import type { TSchema } from "@sinclair/typebox";
import { isTimestamp } from "./duration.ts";
import { API_VERSION, GROUP, type KindDef, kindDef } from "./kinds.ts";
import { RULES_KEY, type Rule } from "./schema/kit.ts";

export type PathSegment = string | number;

export type FieldErrorType =
	| "Required"
	| "Invalid"
	| "TypeMismatch"
	| "Unsupported"
	| "TooLong"
	| "TooMany"
	| "Forbidden"
	| "Duplicate"
	| "UnknownField"
	| "Rule";

export interface FieldError {
	/** Path segments from the object root: ["spec", "subjects", 0, "kind"]. */
	path: PathSegment[];
	/** Kubernetes-style rendering of `path`. */
	field: string;
	type: FieldErrorType;
	message: string;
	/** Set when the error comes from a cross-field rule (a CEL rule in the CRD). */
	rule?: true;
}

/** `["spec","subjects",0,"kind"]` -> `spec.subjects[0].kind`; map keys with dots are bracketed. */
export function formatPath(path: readonly PathSegment[]): string {
	let out = "";
	for (const seg of path) {
		if (typeof seg === "number") out += `[${seg}]`;
		else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(seg)) out += out === "" ? seg : `.${seg}`;
		else out += `[${seg}]`;
	}
	return out;
}

function fieldError(path: PathSegment[], type: FieldErrorType, message: string): FieldError {
	return { path, field: formatPath(path), type, message };
}

function isPlainObject(v: unknown): v is Record<string, unknown> {
	return typeof v === "object" && v !== null && !Array.isArray(v);
}

function show(v: unknown): string {
	if (typeof v === "string") return JSON.stringify(v);
	if (Array.isArray(v)) return "array";
	if (isPlainObject(v)) return "object";
	return String(v);
}

function typeOf(v: unknown): string {
	if (v === null) return "null";
	if (Array.isArray(v)) return "array";
	if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
	return typeof v;
}

// ---------------------------------------------------------------------------------------------
// Defaults

/** Returns a deep copy of `value` with null fields dropped and schema defaults filled in where fields are absent. */
export function applyDefaults<T>(schema: TSchema, value: T): T {
	return fill(schema, structuredClone(value)) as T;
}

function fill(schema: TSchema, value: unknown): unknown {
	const s = schema as Record<string, unknown>;
	if (s.type === "object" && isPlainObject(value)) {
		// Like the apiserver, null for a (non-nullable) field is dropped before defaulting.
		for (const k of Object.keys(value)) if (value[k] === null) delete value[k];
		const props = s.properties as Record<string, TSchema> | undefined;
		if (props) {
			for (const [name, child] of Object.entries(props)) {
				const d = (child as Record<string, unknown>).default;
				if (value[name] === undefined && d !== undefined) value[name] = structuredClone(d);
				if (value[name] !== undefined) value[name] = fill(child, value[name]);
			}
		}
		const pattern = s.patternProperties as Record<string, TSchema> | undefined;
		if (pattern) {
			const child = Object.values(pattern)[0]!;
			for (const k of Object.keys(value)) value[k] = fill(child, value[k]);
		}
	} else if (s.type === "array" && Array.isArray(value)) {
		return value.map((v) => fill(s.items as TSchema, v));
	}
	return value;
}

// ---------------------------------------------------------------------------------------------
// Structural validation + rules

/**
 * Validate `value` (defaults already applied) against `schema`; appends to `errors`. Like the
 * apiserver, the cross-field rules (CEL) are only evaluated when the structural validation of the
 * whole value passed ("some validation rules were not checked because the object was invalid").
 */
export function validateSchema(schema: TSchema, value: unknown, path: PathSegment[], errors: FieldError[]): void {
	const structural: FieldError[] = [];
	walk(schema, value, path, structural, false);
	if (structural.length > 0) {
		errors.push(...structural);
		return;
	}
	walk(schema, value, path, errors, true);
}

function walk(schema: TSchema, value: unknown, path: PathSegment[], errors: FieldError[], rules: boolean): void {
	const s = schema as Record<string, unknown>;
	const before = errors.length;
	const type = s.type as string;
	const actual = typeOf(value);
	const ok = type === "number" ? actual === "number" || actual === "integer" : actual === type;
	if (!ok) {
		errors.push(fieldError(path, "TypeMismatch", `Invalid value: ${show(value)}: must be of type ${type}`));
		return;
	}
	switch (type) {
		case "string":
			checkString(s, value as string, path, errors);
			break;
		case "integer":
		case "number":
			checkNumber(s, value as number, path, errors);
			break;
		case "array":
			checkArray(s, value as unknown[], path, errors, rules);
			break;
		case "object":
			checkObject(s, value as Record<string, unknown>, path, errors, rules);
			break;
	}
	if (rules && errors.length === before) runRules(s, value, path, errors);
}

function checkString(s: Record<string, unknown>, v: string, path: PathSegment[], errors: FieldError[]): void {
	const en = s.enum as string[] | undefined;
	if (en && !en.includes(v)) {
		errors.push(fieldError(path, "Unsupported", `Unsupported value: ${JSON.stringify(v)}: supported values: ${en.map((e) => JSON.stringify(e)).join(", ")}`));
		return;
	}
	const len = Buffer.byteLength(v, "utf8");
	if (typeof s.maxLength === "number" && [...v].length > s.maxLength) {
		errors.push(fieldError(path, "TooLong", `Too long: may not be more than ${s.maxLength} characters (got ${len})`));
	}
	if (typeof s.minLength === "number" && [...v].length < s.minLength) {
		errors.push(fieldError(path, "Invalid", `Invalid value: ${JSON.stringify(v)}: should be at least ${s.minLength} chars long`));
	}
	if (typeof s.pattern === "string" && !new RegExp(s.pattern, "u").test(v)) {
		errors.push(fieldError(path, "Invalid", `Invalid value: ${JSON.stringify(v)}: should match '${s.pattern}'`));
	}
	if (s.format === "date-time" && !isTimestamp(v)) {
		errors.push(fieldError(path, "Invalid", `Invalid value: ${JSON.stringify(v)}: must be an RFC 3339 date-time (e.g. 2026-05-01T09:00:00Z)`));
	}
}

function checkNumber(s: Record<string, unknown>, v: number, path: PathSegment[], errors: FieldError[]): void {
	if (typeof s.minimum === "number" && v < s.minimum) {
		errors.push(fieldError(path, "Invalid", `Invalid value: ${v}: should be greater than or equal to ${s.minimum}`));
	}
	if (typeof s.maximum === "number" && v > s.maximum) {
		errors.push(fieldError(path, "Invalid", `Invalid value: ${v}: should be less than or equal to ${s.maximum}`));
	}
}

function checkArray(s: Record<string, unknown>, v: unknown[], path: PathSegment[], errors: FieldError[], rules: boolean): void {
	if (typeof s.maxItems === "number" && v.length > s.maxItems) {
		errors.push(fieldError(path, "TooMany", `Too many: ${v.length}: must have at most ${s.maxItems} items`));
		return;
	}
	if (typeof s.minItems === "number" && v.length < s.minItems) {
		errors.push(fieldError(path, "Invalid", `Invalid value: ${v.length}: should have at least ${s.minItems} items`));
	}
	for (const [i, item] of v.entries()) walk(s.items as TSchema, item, [...path, i], errors, rules);
	const listType = s["x-kubernetes-list-type"];
	if (listType === "map") {
		const keys = s["x-kubernetes-list-map-keys"] as string[];
		const seen = new Set<string>();
		v.forEach((item, i) => {
			if (!isPlainObject(item)) return;
			const k = JSON.stringify(keys.map((key) => item[key]));
			if (seen.has(k)) errors.push(fieldError([...path, i], "Duplicate", `Duplicate value: ${keys.map((key) => `${key}=${JSON.stringify(item[key])}`).join(", ")}`));
			seen.add(k);
		});
	} else if (listType === "set") {
		const seen = new Set<string>();
		v.forEach((item, i) => {
			const k = JSON.stringify(item);
			if (seen.has(k)) errors.push(fieldError([...path, i], "Duplicate", `Duplicate value: ${k}`));
			seen.add(k);
		});
	}
}

function checkObject(s: Record<string, unknown>, v: Record<string, unknown>, path: PathSegment[], errors: FieldError[], rules: boolean): void {
	const props = s.properties as Record<string, TSchema> | undefined;
	const pattern = s.patternProperties as Record<string, TSchema> | undefined;
	const count = Object.keys(v).length;
	if (typeof s.maxProperties === "number" && count > s.maxProperties) {
		errors.push(fieldError(path, "TooMany", `Too many: ${count}: must have at most ${s.maxProperties} items`));
	}
	if (typeof s.minProperties === "number" && count < s.minProperties) {
		errors.push(fieldError(path, "Invalid", `Invalid value: ${count}: should have at least ${s.minProperties} properties`));
	}
	if (props) {
		for (const name of (s.required as string[] | undefined) ?? []) {
			if (v[name] === undefined || v[name] === null) errors.push(fieldError([...path, name], "Required", "Required value"));
		}
		for (const [name, child] of Object.entries(v)) {
			const childSchema = props[name];
			if (!childSchema) {
				errors.push(fieldError([...path, name], "UnknownField", `unknown field ${JSON.stringify(formatPath([...path, name]))}`));
				continue;
			}
			if (child === null || child === undefined) continue; // null is dropped like an absent field
			walk(childSchema, child, [...path, name], errors, rules);
		}
	} else if (pattern) {
		const childSchema = Object.values(pattern)[0]!;
		for (const [name, child] of Object.entries(v)) walk(childSchema, child, [...path, name], errors, rules);
	}
}

function runRules(s: Record<string, unknown>, value: unknown, path: PathSegment[], errors: FieldError[]): void {
	const rules = s[RULES_KEY] as Rule[] | undefined;
	if (!rules) return;
	for (const rule of rules) {
		if (rule.transition) continue;
		let ok: boolean;
		try {
			ok = rule.check(value);
		} catch {
			ok = false;
		}
		if (ok) continue;
		const at = rule.fieldPath ? [...path, ...rule.fieldPath.slice(1).split(".")] : path;
		const type: FieldErrorType = rule.reason === "FieldValueRequired" ? "Required" : rule.reason === "FieldValueForbidden" ? "Forbidden" : "Rule";
		errors.push({ ...fieldError(at, type, rule.message), rule: true });
	}
}

// ---------------------------------------------------------------------------------------------
// Whole objects

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const DNS1123_LABEL = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/;
const LABEL_VALUE = /^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$/;
const LABEL_NAME = /^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$/;
const META_FIELDS = new Set([
	"name",
	"generateName",
	"namespace",
	"labels",
	"annotations",
	"uid",
	"resourceVersion",
	"generation",
	"creationTimestamp",
	"deletionTimestamp",
	"deletionGracePeriodSeconds",
	"finalizers",
	"ownerReferences",
	"managedFields",
	"selfLink",
]);

function validateMetadata(meta: unknown, errors: FieldError[]): void {
	const path = ["metadata"];
	if (meta === undefined || meta === null) {
		errors.push(fieldError(["metadata", "name"], "Required", "Required value: name is required"));
		return;
	}
	if (!isPlainObject(meta)) {
		errors.push(fieldError(path, "TypeMismatch", `Invalid value: ${show(meta)}: must be of type object`));
		return;
	}
	for (const key of Object.keys(meta)) {
		if (!META_FIELDS.has(key)) errors.push(fieldError([...path, key], "UnknownField", `unknown field "metadata.${key}"`));
	}
	const name = meta.name;
	if (name === undefined || name === null || name === "") {
		errors.push(fieldError([...path, "name"], "Required", "Required value: name is required"));
	} else if (typeof name !== "string") {
		errors.push(fieldError([...path, "name"], "TypeMismatch", `Invalid value: ${show(name)}: must be of type string`));
	} else if (name.length > 253 || !DNS1123_SUBDOMAIN.test(name)) {
		errors.push(
			fieldError([...path, "name"], "Invalid", `Invalid value: ${JSON.stringify(name)}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character`),
		);
	}
	const ns = meta.namespace;
	if (ns !== undefined && ns !== null) {
		if (typeof ns !== "string") errors.push(fieldError([...path, "namespace"], "TypeMismatch", `Invalid value: ${show(ns)}: must be of type string`));
		else if (ns.length > 63 || !DNS1123_LABEL.test(ns)) {
			errors.push(fieldError([...path, "namespace"], "Invalid", `Invalid value: ${JSON.stringify(ns)}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'`));
		}
	}
	for (const mapName of ["labels", "annotations"] as const) {
		const m = meta[mapName];
		if (m === undefined || m === null) continue;
		if (!isPlainObject(m)) {
			errors.push(fieldError([...path, mapName], "TypeMismatch", `Invalid value: ${show(m)}: must be of type object`));
			continue;
		}
		for (const [k, v] of Object.entries(m)) {
			if (typeof v !== "string") {
				errors.push(fieldError([...path, mapName, k], "TypeMismatch", `Invalid value: ${show(v)}: must be of type string`));
				continue;
			}
			if (mapName === "labels") {
				const [prefix, base] = k.includes("/") ? [k.slice(0, k.indexOf("/")), k.slice(k.indexOf("/") + 1)] : ["", k];
				if (base.length > 63 || !LABEL_NAME.test(base) || (prefix !== "" && (prefix.length > 253 || !DNS1123_SUBDOMAIN.test(prefix)))) {
					errors.push(fieldError([...path, mapName], "Invalid", `Invalid value: ${JSON.stringify(k)}: invalid label key`));
				}
				if (v.length > 63 || !LABEL_VALUE.test(v)) {
					errors.push(fieldError([...path, mapName], "Invalid", `Invalid value: ${JSON.stringify(v)}: a valid label must be 63 characters or less, alphanumeric, '-', '_' or '.', starting and ending with an alphanumeric character`));
				}
			}
		}
	}
}

export interface ValidationResult<T = unknown> {
	/** The object with defaults applied (when it had a known kind). */
	value?: T;
	errors: FieldError[];
	/** Problems that do not stop the apiserver from accepting the object. */
	warnings: FieldError[];
	kind?: KindDef;
}

/**
 * Validate one manifest object the way the apiserver would accept or reject it on `kubectl apply`
 * (status is ignored: it is a subresource, set by the operator, and dropped on create/update).
 */
export function validateResource(obj: unknown): ValidationResult {
	const errors: FieldError[] = [];
	const warnings: FieldError[] = [];
	if (!isPlainObject(obj)) {
		errors.push(fieldError([], "TypeMismatch", `Invalid value: ${show(obj)}: a manifest must be a mapping`));
		return { errors, warnings };
	}
	if (typeof obj.apiVersion !== "string" || obj.apiVersion === "") {
		errors.push(fieldError(["apiVersion"], "Required", "Required value: apiVersion is required"));
		return { errors, warnings };
	}
	if (typeof obj.kind !== "string" || obj.kind === "") {
		errors.push(fieldError(["kind"], "Required", "Required value: kind is required"));
		return { errors, warnings };
	}
	const def = kindDef(obj.kind);
	if (!obj.apiVersion.startsWith(`${GROUP}/`)) {
		errors.push(fieldError(["apiVersion"], "Unsupported", `Unsupported value: ${JSON.stringify(obj.apiVersion)}: not a Drawbridge resource (expected ${API_VERSION})`));
		return { errors, warnings };
	}
	if (obj.apiVersion !== API_VERSION) {
		errors.push(fieldError(["apiVersion"], "Unsupported", `Unsupported value: ${JSON.stringify(obj.apiVersion)}: supported values: ${JSON.stringify(API_VERSION)}`));
		return { errors, warnings };
	}
	if (!def) {
		errors.push(fieldError(["kind"], "Unsupported", `Unsupported value: ${JSON.stringify(obj.kind)}: no kind ${JSON.stringify(obj.kind)} in ${API_VERSION}`));
		return { errors, warnings };
	}
	for (const key of Object.keys(obj)) {
		if (!["apiVersion", "kind", "metadata", "spec", "status"].includes(key)) {
			errors.push(fieldError([key], "UnknownField", `unknown field ${JSON.stringify(key)}`));
		}
	}
	validateMetadata(obj.metadata, errors);
	const value = applyDefaults(def.spec, obj.spec);
	if (value === undefined || value === null) errors.push(fieldError(["spec"], "Required", "Required value"));
	else validateSchema(def.spec, value, ["spec"], errors);
	if (obj.status !== undefined) {
		warnings.push(fieldError(["status"], "Forbidden", "status is written by the operator; it is ignored when applied"));
	}
	const out: Record<string, unknown> = { ...obj, spec: value };
	return { value: out, errors, warnings, kind: def };
}

/** Validate a spec of a kind (e.g. an operator checking an object read from the cluster). */
export function validateSpec(kind: string, spec: unknown): FieldError[] {
	const def = kindDef(kind);
	if (!def) throw new TypeError(`unknown kind ${kind}`);
	const errors: FieldError[] = [];
	validateSchema(def.spec, applyDefaults(def.spec, spec), ["spec"], errors);
	return errors;
}
