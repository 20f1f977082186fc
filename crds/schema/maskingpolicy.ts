import { type Static, Type } from "@sinclair/typebox";
import { Conditions, DNS_LABEL, has, LabelSelector, ObservedGeneration, StringEnum, StringList, SubjectList, withRules } from "./kit.ts";

export const CONTENT_DETECTORS = ["creditCard", "email", "phone", "iban", "nationalId"] as const;
export const MASK_STRATEGIES = ["redact", "partial", "hash", "null"] as const;

/** `schema.table.column` or `table.column`, each part a glob of identifier characters, `*` and `?`. */
export const COLUMN_GLOB = "^[A-Za-z0-9_*?$]+\\.[A-Za-z0-9_*?$]+(\\.[A-Za-z0-9_*?$]+)?$";

const MaskStrategy = withRules(
	Type.Object(
		{
			type: StringEnum(MASK_STRATEGIES, {
				description:
					"`redact` (replace the value), `partial` (keep the last/first characters, `*` the rest), `hash` (keyed HMAC-SHA-256 prefix: stable, joinable pseudonyms), `null` (SQL NULL).",
			}),
			replacement: Type.Optional(Type.String({ description: "Replacement text for `redact` (default `****`).", maxLength: 64 })),
			keepLast: Type.Optional(Type.Integer({ description: "Characters kept at the end, for `partial` (required there).", minimum: 0, maximum: 32 })),
			keepFirst: Type.Optional(Type.Integer({ description: "Characters kept at the start, for `partial`.", minimum: 0, maximum: 32 })),
			length: Type.Optional(Type.Integer({ description: "Hex characters of the pseudonym, for `hash` (default 16).", minimum: 8, maximum: 64 })),
		},
		{ description: "How matched values are replaced." },
	),
	[
		{
			cel: "self.type != 'partial' || has(self.keepLast)",
			message: "partial masking needs keepLast",
			fieldPath: ".keepLast",
			reason: "FieldValueRequired",
			check: (s) => s.type !== "partial" || has(s, "keepLast"),
		},
		{
			cel: "self.type == 'partial' || (!has(self.keepLast) && !has(self.keepFirst))",
			message: "keepLast and keepFirst are only for partial masking",
			check: (s) => s.type === "partial" || (!has(s, "keepLast") && !has(s, "keepFirst")),
		},
		{
			cel: "self.type == 'hash' || !has(self.length)",
			message: "length is only for hash masking",
			fieldPath: ".length",
			reason: "FieldValueForbidden",
			check: (s) => s.type === "hash" || !has(s, "length"),
		},
		{
			cel: "self.type == 'redact' || !has(self.replacement)",
			message: "replacement is only for redact masking",
			fieldPath: ".replacement",
			reason: "FieldValueForbidden",
			check: (s) => s.type === "redact" || !has(s, "replacement"),
		},
	],
);

export const MaskRule = withRules(
	Type.Object(
		{
			name: Type.String({ description: "Rule name, unique in the policy; shown in recordings.", minLength: 1, maxLength: 63, pattern: DNS_LABEL }),
			columns: Type.Optional(
				StringList(
					"Columns to mask: `schema.table.column` or `table.column` (any schema) globs; masking follows the column through expressions.",
					{ description: "A column glob.", maxLength: 192, pattern: COLUMN_GLOB },
					{ minItems: 1 },
				),
			),
			detectors: Type.Optional(
				Type.Array(StringEnum(CONTENT_DETECTORS, { description: "A built-in content detector." }), {
					description:
						"Content detectors run on every text value not already masked: creditCard (Luhn-checked), email, phone, iban, nationalId.",
					minItems: 1,
					maxItems: 5,
				}),
			),
			patterns: Type.Optional(
				StringList(
					"Custom regular expressions (JavaScript syntax) used as detectors.",
					{ description: "A regular expression.", minLength: 1, maxLength: 512 },
					{ minItems: 1, maxItems: 16 },
				),
			),
			strategy: MaskStrategy,
		},
		{ description: "One masking rule: what to match and how to mask it." },
	),
	[
		{
			cel: "has(self.columns) || has(self.detectors) || has(self.patterns)",
			message: "a masking rule needs at least one of columns, detectors or patterns",
			check: (s) => has(s, "columns") || has(s, "detectors") || has(s, "patterns"),
		},
	],
);

export const MaskingPolicySpec = Type.Object(
	{
		selector: LabelSelector,
		rules: Type.Array(MaskRule, {
			description: "Masking rules, applied to every result row on the selected Connections.",
			minItems: 1,
			maxItems: 64,
			"x-kubernetes-list-type": "map",
			"x-kubernetes-list-map-keys": ["name"],
		}),
		exempt: Type.Optional(SubjectList("Subjects this policy does not apply to (e.g. a break-glass group).")),
	},
	{ description: "Which values are masked on which Connections." },
);
export type MaskingPolicySpec = Static<typeof MaskingPolicySpec>;

export const PolicyStatus = Type.Object(
	{
		conditions: Type.Optional(Conditions()),
		observedGeneration: Type.Optional(ObservedGeneration()),
		selectedConnections: Type.Optional(Type.Integer({ description: "Number of Connections the selector currently matches.", minimum: 0 })),
	},
	{ description: "Observed state of the policy, written by the operator." },
);
export type PolicyStatus = Static<typeof PolicyStatus>;
