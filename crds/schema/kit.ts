/**
 * Building blocks for the Drawbridge API schemas.
 *
 * Every schema is written ONCE here with TypeBox. From it we derive:
 * - the TypeScript types (`Static<>`),
 * - the structural OpenAPI v3 schema in the CRD YAML (crds/openapi.ts, crds/generate.ts),
 * - the offline validator (crds/validate.ts).
 *
 * Cross-field rules are `Rule`s attached to a schema node under the `x-drawbridge-rules` key: each
 * carries its CEL expression (emitted as `x-kubernetes-validations`) and the TypeScript predicate the
 * offline validator runs. The two are kept in agreement by the invalid-manifest corpus in
 * test/api/, which runs every case through both the real kube-apiserver and the offline validator.
 *
 * Only a subset of JSON Schema is used, the one that is valid in a structural CRD schema: objects
 * with properties, maps (records), arrays, strings (enum, pattern, format, length), integers,
 * booleans. No unions other than string enums.
 */
import { type Static, type TSchema, Type } from "@sinclair/typebox";

export const RULES_KEY = "x-drawbridge-rules" as const;

/**
 * What a rule's TypeScript predicate receives: the schema-valid node with defaults applied (rules only
 * run when the node passed structural validation, so predicates may trust the declared shape).
 */
// biome-ignore lint/suspicious/noExplicitAny: predicates read the validated node like CEL's `self`.
export type RuleSelf = any;

/** A cross-field validation rule: a CEL expression for the apiserver and its TypeScript twin. */
export interface Rule {
	/** CEL, evaluated with `self` bound to the node the rule is attached to. */
	cel: string;
	/** Human message, shown by both the apiserver and `drawbridge validate`. */
	message: string;
	/** Relative path (`.expiresAt`) the error is reported at; the node itself when absent. */
	fieldPath?: string;
	/** Kubernetes error reason (defaults to FieldValueInvalid). */
	reason?: "FieldValueRequired" | "FieldValueForbidden" | "FieldValueInvalid" | "FieldValueDuplicate";
	/** TypeScript predicate: true when the node is valid. Receives the node with defaults applied. */
	check: (self: RuleSelf) => boolean;
	/** Transition rule: also receives the previous value; skipped offline (no previous object). */
	transition?: boolean;
}

/** Attach rules to a schema node. */
export function withRules<T extends TSchema>(schema: T, rules: Rule[]): T {
	(schema as Record<string, unknown>)[RULES_KEY] = rules;
	return schema;
}

export function rulesOf(schema: TSchema): Rule[] {
	return ((schema as Record<string, unknown>)[RULES_KEY] as Rule[] | undefined) ?? [];
}

/** `has(self.x)` in CEL terms: the field is present (null counts as absent after defaulting). */
export function has(obj: unknown, key: string): boolean {
	return typeof obj === "object" && obj !== null && (obj as Record<string, unknown>)[key] !== undefined && (obj as Record<string, unknown>)[key] !== null;
}

/** A string enum; emitted as `type: string, enum: [...]`. */
export function StringEnum<const T extends readonly string[]>(values: T, options: { description: string; default?: T[number] }) {
	return Type.Unsafe<T[number]>({ ...Type.String(), enum: [...values], ...options });
}

export const DNS_LABEL = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$";
export const DNS_SUBDOMAIN = "^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$";

/** A duration such as `30m`, `2h`, `7d`: one positive integer and one unit (s, m, h, d). */
export const DURATION_PATTERN = "^[1-9][0-9]{0,6}(s|m|h|d)$";

/** Name of an object in the same namespace (DNS-1123 subdomain, like Kubernetes object names). */
export function ObjectName(description: string) {
	return Type.String({ description, minLength: 1, maxLength: 253, pattern: DNS_SUBDOMAIN });
}

export function Duration(description: string, options: { default?: string } = {}) {
	return Type.String({ description, pattern: DURATION_PATTERN, maxLength: 8, ...options });
}

export function Timestamp(description: string) {
	return Type.String({ description, format: "date-time", maxLength: 64 });
}

export function StringList(description: string, item: { description: string; minLength?: number; maxLength?: number; pattern?: string }, options: { minItems?: number; maxItems?: number } = {}) {
	return Type.Array(Type.String({ maxLength: 256, ...item }), { description, maxItems: 64, ...options });
}

export function StringMap(description: string) {
	return Type.Record(Type.String(), Type.String({ maxLength: 256 }), { description, maxProperties: 64 });
}

/** Reference to a key of a Secret in the resource's namespace. */
export function SecretKeyRef(description: string, defaultKey: string) {
	return Type.Object(
		{
			name: ObjectName("Name of the Secret, in the same namespace as this resource."),
			key: Type.Optional(
				Type.String({
					description: `Key inside the Secret (default \`${defaultKey}\`).`,
					default: defaultKey,
					minLength: 1,
					maxLength: 253,
					pattern: "^[-._a-zA-Z0-9]+$",
				}),
			),
		},
		{ description },
	);
}
export type SecretKeyRef = Static<ReturnType<typeof SecretKeyRef>>;

// ---------------------------------------------------------------------------------------------
// Subjects

export const SUBJECT_KINDS = ["User", "Group", "ServiceAccount", "Claims"] as const;

export const Subject = withRules(
	Type.Object(
		{
			kind: StringEnum(SUBJECT_KINDS, {
				description:
					"What the subject matches: a `User` name, a `Group` name, a Kubernetes `ServiceAccount` (namespace and name), or token `Claims` from one issuer.",
			}),
			name: Type.Optional(
				Type.String({
					description: "User name, group name or service-account name. Required unless kind is Claims.",
					minLength: 1,
					maxLength: 253,
				}),
			),
			namespace: Type.Optional(
				Type.String({
					description: "Namespace of the service account. Only for kind ServiceAccount, where it is required.",
					minLength: 1,
					maxLength: 63,
					pattern: DNS_LABEL,
				}),
			),
			issuer: Type.Optional(
				Type.String({
					description: "Exact `iss` of the tokens whose claims are matched. Only for kind Claims, where it is required.",
					minLength: 1,
					maxLength: 512,
				}),
			),
			claims: Type.Optional(
				Type.Record(Type.String(), Type.String({ maxLength: 256 }), {
					description:
						"Claims that must all match: a string claim must equal the value, an array claim must contain it. Only for kind Claims, where it is required.",
					minProperties: 1,
					maxProperties: 16,
				}),
			),
		},
		{ description: "A subject: who a grant or approver rule applies to." },
	),
	[
		{
			cel: "self.kind == 'Claims' || has(self.name)",
			message: "name is required for User, Group and ServiceAccount subjects",
			fieldPath: ".name",
			reason: "FieldValueRequired",
			check: (s) => s.kind === "Claims" || has(s, "name"),
		},
		{
			cel: "self.kind != 'Claims' || !has(self.name)",
			message: "name is not allowed for Claims subjects",
			fieldPath: ".name",
			reason: "FieldValueForbidden",
			check: (s) => s.kind !== "Claims" || !has(s, "name"),
		},
		{
			// Matching is exact (gateway/identity/grants.ts): a name Kubernetes would refuse (`Deployer`,
			// `ci_bot`) could never match any token, so it is an error, not a grant that silently never applies.
			cel: `self.kind != 'ServiceAccount' || !has(self.name) || self.name.matches('${DNS_SUBDOMAIN.replaceAll("\\", "\\\\")}')`,
			message: "a ServiceAccount name must be a DNS subdomain (lower-case letters, digits, '-' and '.'), as Kubernetes names are",
			fieldPath: ".name",
			check: (s) => s.kind !== "ServiceAccount" || !has(s, "name") || new RegExp(DNS_SUBDOMAIN).test(String(s.name)),
		},
		{
			cel: "self.kind == 'ServiceAccount' ? has(self.__namespace__) : !has(self.__namespace__)",
			message: "namespace is required for ServiceAccount subjects and not allowed for others",
			fieldPath: ".namespace",
			check: (s) => (s.kind === "ServiceAccount" ? has(s, "namespace") : !has(s, "namespace")),
		},
		{
			cel: "self.kind == 'Claims' ? has(self.issuer) : !has(self.issuer)",
			message: "issuer is required for Claims subjects and not allowed for others",
			fieldPath: ".issuer",
			check: (s) => (s.kind === "Claims" ? has(s, "issuer") : !has(s, "issuer")),
		},
		{
			cel: "self.kind == 'Claims' ? has(self.claims) : !has(self.claims)",
			message: "claims are required for Claims subjects and not allowed for others",
			fieldPath: ".claims",
			check: (s) => (s.kind === "Claims" ? has(s, "claims") : !has(s, "claims")),
		},
	],
);
export type Subject = Static<typeof Subject>;

export function SubjectList(description: string, options: { minItems?: number } = {}) {
	return Type.Array(Subject, { description, maxItems: 32, ...options });
}

// ---------------------------------------------------------------------------------------------
// Selectors, conditions

export const LabelSelector = Type.Object(
	{
		matchLabels: Type.Optional(
			Type.Record(Type.String(), Type.String({ maxLength: 63 }), {
				description: "Labels a Connection must all carry to be selected. Empty or absent selects every Connection in the namespace.",
				maxProperties: 16,
			}),
		),
	},
	{ description: "Which Connections (by their metadata.labels) the policy applies to." },
);
export type LabelSelector = Static<typeof LabelSelector>;

export const Condition = Type.Object(
	{
		type: Type.String({ description: "Condition type in CamelCase, e.g. `Ready`, `Active`, `Synced`.", minLength: 1, maxLength: 316 }),
		status: StringEnum(["True", "False", "Unknown"] as const, { description: "Status of the condition." }),
		observedGeneration: Type.Optional(
			Type.Integer({ description: "metadata.generation the condition was computed from.", minimum: 0 }),
		),
		lastTransitionTime: Timestamp("When the condition last changed status."),
		reason: Type.String({ description: "Machine-readable CamelCase reason for the last transition.", minLength: 1, maxLength: 1024 }),
		message: Type.String({ description: "Human-readable details about the last transition.", maxLength: 32768 }),
	},
	{ description: "A standard Kubernetes status condition." },
);
export type Condition = Static<typeof Condition>;

export function Conditions() {
	return Type.Array(Condition, {
		description: "Current state, as standard conditions keyed by type.",
		maxItems: 16,
		"x-kubernetes-list-type": "map",
		"x-kubernetes-list-map-keys": ["type"],
	});
}

export function ObservedGeneration() {
	return Type.Integer({ description: "metadata.generation of the spec the status describes.", minimum: 0 });
}
