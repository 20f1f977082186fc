/**
 * TypeBox schema -> structural OpenAPI v3 (as the apiextensions.k8s.io/v1 CRD `openAPIV3Schema`) and
 * the CRD objects themselves. Pure: crds/generate.ts serialises the result to YAML.
 */
import type { TSchema } from "@sinclair/typebox";
import { API_VERSION, CATEGORY, GROUP, KINDS, type KindDef, VERSION } from "./kinds.ts";
import { RULES_KEY, type Rule } from "./schema/kit.ts";

export type OpenAPISchema = Record<string, unknown>;

/** Keywords copied verbatim (all are allowed in structural schemas). */
const COPIED = [
	"format",
	"enum",
	"pattern",
	"minLength",
	"maxLength",
	"minimum",
	"maximum",
	"minItems",
	"maxItems",
	"minProperties",
	"maxProperties",
	"default",
	"x-kubernetes-list-type",
	"x-kubernetes-list-map-keys",
] as const;

export class SchemaError extends TypeError {}

/**
 * Convert one schema node. `field` is the dotted path for error messages; every named field must have
 * a description (map values and array items inherit the field's).
 */
export function toOpenAPI(schema: TSchema, field: string, requireDescription = true): OpenAPISchema {
	const s = schema as Record<string, unknown>;
	const out: OpenAPISchema = {};
	if (typeof s.description === "string" && s.description.length > 0) out.description = s.description;
	else if (requireDescription) throw new SchemaError(`${field}: every field needs a description`);
	const type = s.type;
	if (type !== "object" && type !== "array" && type !== "string" && type !== "integer" && type !== "boolean" && type !== "number") {
		throw new SchemaError(`${field}: unsupported schema (type ${String(type)}); use objects, maps, arrays, strings, integers, booleans`);
	}
	out.type = type;
	for (const key of COPIED) if (s[key] !== undefined) out[key] = s[key];
	if (type === "object") {
		const props = s.properties as Record<string, TSchema> | undefined;
		const pattern = s.patternProperties as Record<string, TSchema> | undefined;
		if (props && pattern) throw new SchemaError(`${field}: an object is either a struct or a map, not both`);
		if (props) {
			const properties: Record<string, OpenAPISchema> = {};
			for (const [name, child] of Object.entries(props)) properties[name] = toOpenAPI(child, `${field}.${name}`);
			out.properties = properties;
			const required = s.required as string[] | undefined;
			if (required && required.length > 0) out.required = [...required];
		} else if (pattern) {
			const values = Object.values(pattern);
			if (values.length !== 1) throw new SchemaError(`${field}: maps need exactly one value schema`);
			out.additionalProperties = toOpenAPI(values[0]!, `${field}[*]`, false);
		} else {
			throw new SchemaError(`${field}: object without properties`);
		}
	}
	if (type === "array") out.items = toOpenAPI(s.items as TSchema, `${field}[*]`, false);
	const rules = s[RULES_KEY] as Rule[] | undefined;
	if (rules && rules.length > 0) {
		out["x-kubernetes-validations"] = rules.map((r) => {
			const v: Record<string, string> = { rule: r.cel, message: r.message };
			if (r.fieldPath) v.fieldPath = r.fieldPath;
			if (r.reason) v.reason = r.reason;
			return v;
		});
	}
	return out;
}

export function rootSchema(def: KindDef): OpenAPISchema {
	return {
		description: def.description,
		type: "object",
		required: ["spec"],
		properties: {
			apiVersion: { description: `API version: \`${API_VERSION}\`.`, type: "string" },
			kind: { description: `Kind: \`${def.kind}\`.`, type: "string" },
			metadata: { type: "object" },
			spec: toOpenAPI(def.spec, `${def.kind}.spec`),
			status: toOpenAPI(def.status, `${def.kind}.status`),
		},
	};
}

export function crdFor(def: KindDef): Record<string, unknown> {
	return {
		apiVersion: "apiextensions.k8s.io/v1",
		kind: "CustomResourceDefinition",
		metadata: {
			name: `${def.plural}.${GROUP}`,
			labels: { "app.kubernetes.io/part-of": "drawbridge" },
		},
		spec: {
			group: GROUP,
			names: {
				kind: def.kind,
				listKind: `${def.kind}List`,
				plural: def.plural,
				singular: def.singular,
				shortNames: [...def.shortNames],
				categories: [CATEGORY],
			},
			scope: "Namespaced",
			versions: [
				{
					name: VERSION,
					served: true,
					storage: true,
					subresources: { status: {} },
					additionalPrinterColumns: def.printerColumns.map((c) => ({ ...c })),
					schema: { openAPIV3Schema: rootSchema(def) },
				},
			],
		},
	};
}

export function allCrds(): { file: string; crd: Record<string, unknown> }[] {
	return (KINDS as readonly KindDef[]).map((def) => ({ file: `${GROUP}_${def.plural}.yaml`, crd: crdFor(def) }));
}
