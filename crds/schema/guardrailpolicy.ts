import { type Static, Type } from "@sinclair/typebox";
import { parseDuration } from "../duration.ts";
import { DNS_LABEL, Duration, has, LabelSelector, StringEnum, StringList, SubjectList, withRules } from "./kit.ts";

export const GUARDRAIL_ACTIONS = ["block", "requireApproval", "audit"] as const;
export const MAX_APPROVAL_TIMEOUT_MS = 24 * 3600 * 1000;

const SqlMatch = withRules(
	Type.Object(
		{
			statementKinds: Type.Optional(
				StringList(
					"Statement kinds in upper case: `DROP`, `TRUNCATE`, `DELETE`, `UPDATE`, `INSERT`, `ALTER`, `ALTER SYSTEM`, `GRANT`, `CREATE ROLE`, `COPY`...",
					{ description: "A statement kind.", maxLength: 64, pattern: "^[A-Z]+( [A-Z]+)*$" },
					{ minItems: 1, maxItems: 32 },
				),
			),
			tables: Type.Optional(
				StringList("Tables touched by the statement, `schema.table` or `table` globs.", { description: "A table glob.", maxLength: 128, pattern: "^[A-Za-z0-9_*?$]+(\\.[A-Za-z0-9_*?$]+)?$" }, { minItems: 1 }),
			),
			functions: Type.Optional(
				StringList("Functions called anywhere in the statement (`pg_terminate_backend`, `pg_read_file`).", { description: "A function name glob.", maxLength: 128, pattern: "^[A-Za-z0-9_*?$.]+$" }, { minItems: 1 }),
			),
			withoutWhere: Type.Optional(Type.Boolean({ description: "Only match DELETE/UPDATE statements without a WHERE clause." })),
		},
		{ description: "Match SQL statements (PostgreSQL Connections). All given fields must match." },
	),
	[
		{
			cel: "has(self.statementKinds) || has(self.tables) || has(self.functions)",
			message: "an sql match needs at least one of statementKinds, tables or functions",
			check: (s) => has(s, "statementKinds") || has(s, "tables") || has(s, "functions"),
		},
	],
);

const KubeMatch = withRules(
	Type.Object(
		{
			verbs: Type.Optional(StringList("Request verbs (`delete`, `create`...).", { description: "A verb or `*`.", maxLength: 32, pattern: "^(\\*|[a-z]+)$" }, { minItems: 1, maxItems: 16 })),
			resources: Type.Optional(
				StringList("Resources (`namespaces`, `pods/exec`, `secrets`, `deployments.apps`).", { description: "A resource or `*`.", maxLength: 253, pattern: "^(\\*|[a-z0-9.-]+(/[a-z0-9]+)?)$" }, { minItems: 1, maxItems: 32 }),
			),
			namespaces: Type.Optional(StringList("Namespaces of the request.", { description: "A namespace or `*`.", maxLength: 63, pattern: "^(\\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$" }, { minItems: 1, maxItems: 32 })),
		},
		{ description: "Match Kubernetes API requests. All given fields must match." },
	),
	[
		{
			cel: "has(self.verbs) || has(self.resources) || has(self.namespaces)",
			message: "a kubernetes match needs at least one of verbs, resources or namespaces",
			check: (s) => has(s, "verbs") || has(s, "resources") || has(s, "namespaces"),
		},
	],
);

const SshMatch = Type.Object(
	{
		commands: StringList("Command globs matched against exec commands and shell input lines (`rm -rf *`, `sudo *`).", { description: "A command glob.", minLength: 1, maxLength: 1024 }, { minItems: 1 }),
	},
	{ description: "Match SSH commands." },
);

const Approval = withRules(
	Type.Object(
		{
			approvers: Type.Optional(SubjectList("Who may approve; when absent, the approvers of the grant in use.", { minItems: 1 })),
			minApprovals: Type.Optional(Type.Integer({ description: "Distinct approvals needed (default 1, or the grant's).", minimum: 1, maximum: 10 })),
			timeout: Type.Optional(
				withRules(Duration("How long a request waits for a decision before it expires (default 15m, at most 24h).", { default: "15m" }), [
					{
						cel: "int(self.substring(0, self.size() - 1)) * (self.endsWith('d') ? 86400 : self.endsWith('h') ? 3600 : self.endsWith('m') ? 60 : 1) <= 86400",
						message: "timeout cannot exceed 24h",
						check: (s: string) => (parseDuration(s) ?? Number.POSITIVE_INFINITY) <= MAX_APPROVAL_TIMEOUT_MS,
					},
				]),
			),
			reuseWindow: Type.Optional(Duration("Once approved, the same command by the same identity may run again within this window.")),
		},
		{ description: "Approval settings for `requireApproval` rules." },
	),
	[
		{
			cel: "!has(self.approvers) || !has(self.minApprovals) || self.minApprovals <= size(self.approvers)",
			message: "minApprovals cannot exceed the number of approvers",
			fieldPath: ".minApprovals",
			check: (s) => !has(s, "approvers") || !has(s, "minApprovals") || s.minApprovals <= s.approvers.length,
		},
	],
);

export const GuardrailRule = withRules(
	Type.Object(
		{
			name: Type.String({ description: "Rule name, unique in the policy; shown to the client and in recordings.", minLength: 1, maxLength: 63, pattern: DNS_LABEL }),
			action: StringEnum(GUARDRAIL_ACTIONS, {
				description: "`block` (refuse), `requireApproval` (hold until approved), `audit` (allow, flag in the recording).",
			}),
			message: Type.Optional(Type.String({ description: "Shown to the client together with the rule name.", maxLength: 1024 })),
			sql: Type.Optional(SqlMatch),
			kubernetes: Type.Optional(KubeMatch),
			ssh: Type.Optional(SshMatch),
			approval: Type.Optional(Approval),
		},
		{ description: "One guardrail: a match for one protocol and an action." },
	),
	[
		{
			cel: "(has(self.sql) ? 1 : 0) + (has(self.kubernetes) ? 1 : 0) + (has(self.ssh) ? 1 : 0) == 1",
			message: "exactly one of sql, kubernetes or ssh must be set",
			check: (s) => [has(s, "sql"), has(s, "kubernetes"), has(s, "ssh")].filter(Boolean).length === 1,
		},
		{
			cel: "self.action == 'requireApproval' || !has(self.approval)",
			message: "approval settings are only allowed with action requireApproval",
			fieldPath: ".approval",
			reason: "FieldValueForbidden",
			check: (s) => s.action === "requireApproval" || !has(s, "approval"),
		},
	],
);
export type GuardrailRule = Static<typeof GuardrailRule>;

export const GuardrailPolicySpec = Type.Object(
	{
		selector: LabelSelector,
		rules: Type.Array(GuardrailRule, {
			description: "Guardrail rules; the strictest matching action wins (block over requireApproval over audit).",
			minItems: 1,
			maxItems: 128,
			"x-kubernetes-list-type": "map",
			"x-kubernetes-list-map-keys": ["name"],
		}),
	},
	{ description: "Commands that are blocked, held for approval or flagged on the selected Connections." },
);
export type GuardrailPolicySpec = Static<typeof GuardrailPolicySpec>;
