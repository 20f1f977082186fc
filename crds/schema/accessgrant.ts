import { type Static, Type } from "@sinclair/typebox";
import { parseDuration } from "../duration.ts";
import {
	Conditions,
	DNS_SUBDOMAIN,
	Duration,
	has,
	ObjectName,
	ObservedGeneration,
	type RuleSelf,
	StringEnum,
	StringList,
	SubjectList,
	Timestamp,
	withRules,
} from "./kit.ts";

/** The longest a grant may last, whether given as `duration` or as `notBefore`..`expiresAt`. */
export const MAX_GRANT_DAYS = 90;
export const MAX_GRANT_MS = MAX_GRANT_DAYS * 24 * 3600 * 1000;

/**
 * `host:port` for `spec.ssh.allowedForwards`: `*`, a host name or IPv4 address, or an IPv6 address in
 * brackets; a port 1-99999 (above 65535 it matches nothing) or `*`. No globs inside names: `10.0.0.*`
 * would also match `10.0.0.1.example.net`, which DNS may point anywhere.
 */
export const FORWARD_DESTINATION_PATTERN = "^(\\*|[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\\[[0-9A-Fa-f:.]{2,45}\\]):(\\*|[1-9][0-9]{0,4})$";

export const POSTGRES_ACCESS = ["read-only", "read-write", "admin"] as const;
export const KUBERNETES_VERBS = ["get", "list", "watch", "create", "update", "patch", "delete", "deletecollection", "*"] as const;
export const GRANT_PHASES = ["Pending", "Active", "Expired", "Revoked", "Invalid"] as const;

export const ApproverRule = withRules(
	Type.Object(
		{
			subjects: SubjectList("Who may approve just-in-time requests (guardrail `requireApproval`) made under this grant.", {
				minItems: 1,
			}),
			minApprovals: Type.Optional(
				Type.Integer({
					description: "Distinct approvals a request needs. The requester never counts.",
					default: 1,
					minimum: 1,
					maximum: 10,
				}),
			),
		},
		{ description: "Approvers for just-in-time requests under this grant." },
	),
	[
		{
			cel: "self.minApprovals <= size(self.subjects)",
			message: "minApprovals cannot exceed the number of approver subjects",
			fieldPath: ".minApprovals",
			check: (s) => (s.minApprovals ?? 1) <= s.subjects.length,
		},
	],
);

const PostgresGrant = Type.Object(
	{
		access: StringEnum(POSTGRES_ACCESS, {
			description:
				"Privilege level: `read-only` (SELECT only; writes and unknown statements refused), `read-write` (DML), `admin` (DDL too). Guardrails still apply.",
		}),
	},
	{ description: "PostgreSQL access. Only for a postgres Connection." },
);

const SshGrant = withRules(
	Type.Object(
		{
			logins: StringList(
				"Remote login users the grant allows on the host.",
				{ description: "A remote login user name.", maxLength: 32, pattern: "^[a-z_][a-z0-9_.-]*$" },
				{ minItems: 1, maxItems: 16 },
			),
			allowedCommands: Type.Optional(
				StringList(
					"Exec commands allowed, as globs (`systemctl status *`). Absent: no exec commands unless allowShell.",
					{ description: "A command glob.", minLength: 1, maxLength: 1024 },
					{ minItems: 1 },
				),
			),
			allowShell: Type.Optional(Type.Boolean({ description: "Allow an interactive shell (every line is recorded).", default: false })),
			allowSftp: Type.Optional(Type.Boolean({ description: "Allow the sftp subsystem.", default: false })),
			allowPortForwarding: Type.Optional(
				Type.Boolean({
					description: "Allow local port forwarding (direct-tcpip) to the destinations in allowedForwards, which it requires.",
					default: false,
				}),
			),
			allowedForwards: Type.Optional(
				StringList(
					"Destinations port forwards may open from the target, as `host:port` like sshd's PermitOpen: host a name or address compared exactly (case ignored), `[v6]` in brackets, or `*`; port a number or `*`. `localhost:5432` is the target's own loopback. Needs allowPortForwarding.",
					{ description: "A `host:port` destination.", maxLength: 260, pattern: FORWARD_DESTINATION_PATTERN },
					{ minItems: 1, maxItems: 32 },
				),
			),
			allowAgentForwarding: Type.Optional(Type.Boolean({ description: "Allow SSH agent forwarding.", default: false })),
		},
		{ description: "SSH access. Only for an ssh Connection." },
	),
	[
		{
			cel: "self.allowShell || self.allowSftp || has(self.allowedCommands)",
			message: "an ssh grant must allow something: allowShell, allowSftp or allowedCommands",
			check: (s) => s.allowShell === true || s.allowSftp === true || has(s, "allowedCommands"),
		},
		{
			cel: "!self.allowPortForwarding || has(self.allowedForwards)",
			message: "allowPortForwarding needs allowedForwards: the host:port destinations forwards may reach from the target (`*:*` for any)",
			fieldPath: ".allowedForwards",
			check: (s) => s.allowPortForwarding !== true || has(s, "allowedForwards"),
		},
	],
);

const KubernetesGrant = Type.Object(
	{
		namespaces: StringList(
			"Namespaces the grant covers; `*` for all (cluster-scoped resources need `*`).",
			{ description: "A namespace name or `*`.", maxLength: 63, pattern: "^(\\*|[a-z0-9]([-a-z0-9]*[a-z0-9])?)$" },
			{ minItems: 1, maxItems: 32 },
		),
		verbs: Type.Array(StringEnum(KUBERNETES_VERBS, { description: "A Kubernetes API verb, or `*`." }), {
			description: "Verbs allowed. `create` on `pods/exec` is how exec is granted.",
			minItems: 1,
			maxItems: 9,
		}),
		resources: StringList(
			"Resources allowed: `pods`, `pods/log`, `deployments.apps`, or `*`.",
			{ description: "A resource[.group][/subresource] or `*`.", maxLength: 253, pattern: "^(\\*|[a-z0-9.-]+(/[a-z0-9]+)?)$" },
			{ minItems: 1, maxItems: 32 },
		),
		impersonateGroups: Type.Optional(
			StringList("Groups the gateway impersonates in addition to the user; RBAC may narrow but never widen the grant.", {
				description: "A Kubernetes group name.",
				minLength: 1,
			}),
		),
	},
	{ description: "Kubernetes API access. Only for a kubernetes Connection." },
);

const GRANT_RULES = [
	{
		cel: "has(self.duration) != has(self.expiresAt)",
		message: "exactly one of duration or expiresAt must be set",
		check: (s: RuleSelf) => has(s, "duration") !== has(s, "expiresAt"),
	},
	{
		cel: "!has(self.notBefore) || !has(self.expiresAt) || timestamp(self.expiresAt) > timestamp(self.notBefore)",
		message: "expiresAt must be after notBefore",
		fieldPath: ".expiresAt",
		check: (s: RuleSelf) => !has(s, "notBefore") || !has(s, "expiresAt") || Date.parse(s.expiresAt) > Date.parse(s.notBefore),
	},
	{
		cel: `!has(self.notBefore) || !has(self.expiresAt) || timestamp(self.expiresAt) - timestamp(self.notBefore) <= duration('${MAX_GRANT_DAYS * 24}h')`,
		message: `a grant cannot last longer than ${MAX_GRANT_DAYS} days (expiresAt - notBefore)`,
		fieldPath: ".expiresAt",
		check: (s: RuleSelf) =>
			!has(s, "notBefore") || !has(s, "expiresAt") || Date.parse(s.expiresAt) - Date.parse(s.notBefore) <= MAX_GRANT_MS,
	},
	{
		cel: "(has(self.postgres) ? 1 : 0) + (has(self.ssh) ? 1 : 0) + (has(self.kubernetes) ? 1 : 0) == 1",
		message: "exactly one of postgres, ssh or kubernetes access must be set (matching the Connection's type)",
		check: (s: RuleSelf) => [has(s, "postgres"), has(s, "ssh"), has(s, "kubernetes")].filter(Boolean).length === 1,
	},
];

/** CEL for the duration cap: the pattern guarantees one integer and one unit suffix. */
const DURATION_CAP_CEL = [
	`int(self.substring(0, self.size() - 1)) * (self.endsWith('d') ? 86400 : self.endsWith('h') ? 3600 : self.endsWith('m') ? 60 : 1)`,
	`<= ${MAX_GRANT_DAYS * 86400}`,
].join(" ");

export const AccessGrantSpec = withRules(
	Type.Object(
		{
			connection: ObjectName("Name of the Connection (same namespace) the grant opens."),
			subjects: SubjectList("Who the grant is for. A token matching any subject may use the grant.", { minItems: 1 }),
			postgres: Type.Optional(PostgresGrant),
			ssh: Type.Optional(SshGrant),
			kubernetes: Type.Optional(KubernetesGrant),
			duration: Type.Optional(
				withRules(
					Duration(
						`How long the grant lasts, counted from notBefore or else from the merge that introduced it: \`30m\`, \`2h\`, \`7d\`. At most ${MAX_GRANT_DAYS}d. Exactly one of duration or expiresAt.`,
					),
					[
						{
							cel: DURATION_CAP_CEL,
							message: `duration cannot exceed ${MAX_GRANT_DAYS}d`,
							check: (s: string) => {
								const ms = parseDuration(s);
								return ms !== undefined && ms <= MAX_GRANT_MS;
							},
						},
					],
				),
			),
			notBefore: Type.Optional(Timestamp("Start of the grant (RFC 3339). Default: the time of the merge that introduced it.")),
			expiresAt: Type.Optional(Timestamp("End of the grant (RFC 3339). Exactly one of duration or expiresAt.")),
			approvers: Type.Optional(ApproverRule),
			ticket: Type.Optional(
				Type.String({ description: "Change or incident ticket (`OPS-142`). Organisations can require it by lint.", minLength: 1, maxLength: 128 }),
			),
			justification: Type.Optional(Type.String({ description: "Why the access is needed, for reviewers and auditors.", minLength: 1, maxLength: 2048 })),
		},
		{ description: "Who may use which Connection, how, and for how long." },
	),
	GRANT_RULES,
);
export type AccessGrantSpec = Static<typeof AccessGrantSpec>;

export const GrantOrigin = Type.Object(
	{
		repository: Type.Optional(Type.String({ description: "Repository URL the grant came from.", maxLength: 2048 })),
		path: Type.Optional(Type.String({ description: "File path inside the repository.", maxLength: 4096 })),
		commit: Type.Optional(Type.String({ description: "SHA of the commit that introduced the current spec.", maxLength: 64 })),
		author: Type.Optional(Type.String({ description: "Author of that commit.", maxLength: 512 })),
		committer: Type.Optional(Type.String({ description: "Committer of that commit (who merged).", maxLength: 512 })),
		committedAt: Type.Optional(Timestamp("Committer time as written in the commit (whoever made the commit chose it).")),
		firstSeenAt: Type.Optional(
			Timestamp("When the operator first saw this commit; a grant without notBefore starts at the earlier of this and committedAt."),
		),
		pullRequest: Type.Optional(Type.Integer({ description: "Pull-request number parsed from the merge message.", minimum: 1 })),
		url: Type.Optional(Type.String({ description: "Web link to the pull request or commit.", maxLength: 2048 })),
	},
	{ description: "The git change that approved the grant (merge is the approval)." },
);

export const AccessGrantStatus = Type.Object(
	{
		phase: Type.Optional(StringEnum(GRANT_PHASES, { description: "Lifecycle phase: Pending, Active, Expired, Revoked or Invalid." })),
		notBefore: Type.Optional(Timestamp("Effective start of the grant.")),
		expiresAt: Type.Optional(Timestamp("Effective end of the grant.")),
		origin: Type.Optional(GrantOrigin),
		credential: Type.Optional(
			Type.Object(
				{
					type: StringEnum(["token", "postgresRole", "sshCertificate"] as const, { description: "What kind of credential was issued." }),
					secretName: Type.Optional(
						Type.String({ description: "Secret (same namespace unless secretNamespace) holding it.", maxLength: 253, pattern: DNS_SUBDOMAIN }),
					),
					secretNamespace: Type.Optional(Type.String({ description: "Namespace of that Secret, when not this one.", maxLength: 63 })),
					username: Type.Optional(Type.String({ description: "Backend user name (dynamic PostgreSQL role).", maxLength: 63 })),
					expiresAt: Type.Optional(Timestamp("When the credential stops working.")),
				},
				{ description: "The credential handed out for the grant (never the secret itself)." },
			),
		),
		conditions: Type.Optional(Conditions()),
		observedGeneration: Type.Optional(ObservedGeneration()),
	},
	{ description: "Observed state of the grant, written by the operator." },
);
export type AccessGrantStatus = Static<typeof AccessGrantStatus>;
