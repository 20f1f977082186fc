import { type Static, Type } from "@sinclair/typebox";
import { CONNECTION_TYPES } from "./connection.ts";
import { Conditions, DNS_LABEL, Duration, ObjectName, StringEnum, SubjectList, Timestamp, withRules } from "./kit.ts";

export const APPROVAL_PHASES = ["Pending", "Approved", "Denied", "Expired", "Cancelled"] as const;

const Requester = Type.Object(
	{
		username: Type.String({ description: "Verified user name of the requester.", minLength: 1, maxLength: 512 }),
		issuer: Type.Optional(Type.String({ description: "Issuer of the requester's token.", maxLength: 512 })),
		subject: Type.Optional(Type.String({ description: "`sub` claim of the requester's token.", maxLength: 512 })),
		groups: Type.Optional(Type.Array(Type.String({ description: "A group name.", maxLength: 256 }), { description: "Groups of the requester.", maxItems: 64 })),
		serviceAccount: Type.Optional(
			Type.Object(
				{
					namespace: Type.String({ description: "Namespace of the service account.", minLength: 1, maxLength: 63, pattern: DNS_LABEL }),
					name: Type.String({ description: "Name of the service account.", minLength: 1, maxLength: 253 }),
				},
				{ description: "Set when the requester is a Kubernetes service account." },
			),
		),
		sharedBy: Type.Optional(
			SubjectList(
				"Set when the requester presented a grant's shared credential (the operator's token or SSH certificate of the grant): the grant's subjects, any of whom may hold it. None of them may decide the request.",
			),
		),
	},
	{ description: "Who asked (from a verified token)." },
);

export const ApprovalRequestSpec = withRules(
	Type.Object(
		{
			requester: Requester,
			grant: Type.String({ description: "The grant in use, `namespace/name`.", minLength: 3, maxLength: 317, pattern: "^[a-z0-9-]+/[a-z0-9.-]+$" }),
			connection: ObjectName("Connection the command was sent to."),
			protocol: StringEnum(CONNECTION_TYPES, { description: "Protocol of the data path that holds the command." }),
			sessionId: Type.String({ description: "Recording session id of the waiting session.", minLength: 1, maxLength: 128 }),
			command: Type.String({ description: "The command as sent, with masked values masked.", minLength: 1, maxLength: 16384 }),
			rule: Type.String({ description: "Name of the guardrail rule that asked for approval.", minLength: 1, maxLength: 63 }),
			policy: Type.Optional(Type.String({ description: "The GuardrailPolicy holding the rule, `namespace/name`.", maxLength: 317 })),
			approvers: SubjectList("Who may approve.", { minItems: 1 }),
			minApprovals: Type.Optional(Type.Integer({ description: "Distinct approvals needed; the requester never counts.", default: 1, minimum: 1, maximum: 10 })),
			expiresAt: Timestamp("When the request expires if undecided."),
			reuseWindow: Type.Optional(Duration("Once approved, the same command by the same identity may run again within this window.")),
		},
		{ description: "A held command waiting for approval. Created by a gateway; immutable once created." },
	),
	[
		{
			cel: "self.minApprovals <= size(self.approvers)",
			message: "minApprovals cannot exceed the number of approvers",
			fieldPath: ".minApprovals",
			check: (s) => (s.minApprovals ?? 1) <= s.approvers.length,
		},
		{
			cel: "self == oldSelf",
			message: "spec is immutable; decisions go in status",
			transition: true,
			check: () => true,
		},
	],
);
export type ApprovalRequestSpec = Static<typeof ApprovalRequestSpec>;

export const ApprovalDecision = Type.Object(
	{
		decision: StringEnum(["approve", "deny"] as const, { description: "The decision." }),
		by: Type.String({ description: "`user:<name>` of the approver, from a verified token.", minLength: 1, maxLength: 512 }),
		issuer: Type.Optional(Type.String({ description: "Issuer of the approver's token.", maxLength: 512 })),
		subject: Type.Optional(Type.String({ description: "`sub` claim of the approver's token.", maxLength: 512 })),
		at: Timestamp("When the decision was made."),
		comment: Type.Optional(Type.String({ description: "Approver's comment.", maxLength: 2048 })),
	},
	{ description: "One approver's decision." },
);

export const ApprovalRequestStatus = Type.Object(
	{
		phase: Type.Optional(StringEnum(APPROVAL_PHASES, { description: "Pending, Approved, Denied, Expired or Cancelled." })),
		decisions: Type.Optional(Type.Array(ApprovalDecision, { description: "Every decision, in order.", maxItems: 32 })),
		decidedAt: Type.Optional(Timestamp("When the request left Pending.")),
		conditions: Type.Optional(Conditions()),
	},
	{ description: "Decisions and phase of the request." },
);
export type ApprovalRequestStatus = Static<typeof ApprovalRequestStatus>;
