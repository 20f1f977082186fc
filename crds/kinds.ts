/**
 * The Drawbridge API: every kind in group access.drawbridge.dev/v1alpha1, with its CRD metadata
 * (names, printer columns) and its schemas. crds/generate.ts turns this table into crds/*.yaml.
 */
import type { Static, TSchema } from "@sinclair/typebox";
import { AccessGrantSpec, AccessGrantStatus } from "./schema/accessgrant.ts";
import { ApprovalRequestSpec, ApprovalRequestStatus } from "./schema/approvalrequest.ts";
import { ConnectionSpec, ConnectionStatus } from "./schema/connection.ts";
import { GitSourceSpec, GitSourceStatus } from "./schema/gitsource.ts";
import { GuardrailPolicySpec } from "./schema/guardrailpolicy.ts";
import { MaskingPolicySpec, PolicyStatus } from "./schema/maskingpolicy.ts";

export const GROUP = "access.drawbridge.dev" as const;
export const VERSION = "v1alpha1" as const;
export const API_VERSION = `${GROUP}/${VERSION}` as const;
export const CATEGORY = "drawbridge" as const;

export interface PrinterColumn {
	name: string;
	type: "string" | "integer" | "date" | "boolean" | "number";
	jsonPath: string;
	description: string;
	priority?: number;
}

export interface KindDef {
	kind: string;
	plural: string;
	singular: string;
	shortNames: string[];
	description: string;
	spec: TSchema;
	status: TSchema;
	printerColumns: PrinterColumn[];
}

const age: PrinterColumn = { name: "Age", type: "date", jsonPath: ".metadata.creationTimestamp", description: "Time since creation." };

export const KINDS = [
	{
		kind: "Connection",
		plural: "connections",
		singular: "connection",
		shortNames: ["dbconn", "conn"],
		description: "A target agents reach through the Drawbridge gateway: a PostgreSQL database, an SSH host or a Kubernetes API server.",
		spec: ConnectionSpec,
		status: ConnectionStatus,
		printerColumns: [
			{ name: "Type", type: "string", jsonPath: ".spec.type", description: "Protocol." },
			{ name: "Host", type: "string", jsonPath: ".spec.host", description: "Target host." },
			{ name: "Port", type: "integer", jsonPath: ".spec.port", description: "Target port." },
			{ name: "Env", type: "string", jsonPath: ".metadata.labels.env", description: "The env label policies select on." },
			age,
		],
	},
	{
		kind: "AccessGrant",
		plural: "accessgrants",
		singular: "accessgrant",
		shortNames: ["ag", "grant"],
		description: "Time-limited access for subjects to one Connection. Merging the pull request that adds it is the approval.",
		spec: AccessGrantSpec,
		status: AccessGrantStatus,
		printerColumns: [
			{ name: "Subject", type: "string", jsonPath: ".spec.subjects[0].name", description: "First subject of the grant." },
			{ name: "Connection", type: "string", jsonPath: ".spec.connection", description: "Connection the grant opens." },
			{ name: "Access", type: "string", jsonPath: ".spec.postgres.access", description: "PostgreSQL access level.", priority: 1 },
			{ name: "Phase", type: "string", jsonPath: ".status.phase", description: "Lifecycle phase." },
			{ name: "Duration", type: "string", jsonPath: ".spec.duration", description: "Requested duration.", priority: 1 },
			{ name: "Expires", type: "string", jsonPath: ".status.expiresAt", description: "Effective end of the grant (RFC 3339; a date column would print <invalid> for future times)." },
			{ name: "Ticket", type: "string", jsonPath: ".spec.ticket", description: "Ticket.", priority: 1 },
			age,
		],
	},
	{
		kind: "MaskingPolicy",
		plural: "maskingpolicies",
		singular: "maskingpolicy",
		shortNames: ["mp", "mask"],
		description: "Masks columns and detected content in results on the Connections it selects.",
		spec: MaskingPolicySpec,
		status: PolicyStatus,
		printerColumns: [
			{ name: "Env", type: "string", jsonPath: ".spec.selector.matchLabels.env", description: "env label selected." },
			{ name: "Connections", type: "integer", jsonPath: ".status.selectedConnections", description: "Connections selected." },
			age,
		],
	},
	{
		kind: "GuardrailPolicy",
		plural: "guardrailpolicies",
		singular: "guardrailpolicy",
		shortNames: ["gp", "guardrail"],
		description: "Blocks, holds for approval, or flags commands on the Connections it selects.",
		spec: GuardrailPolicySpec,
		status: PolicyStatus,
		printerColumns: [
			{ name: "Env", type: "string", jsonPath: ".spec.selector.matchLabels.env", description: "env label selected." },
			{ name: "Connections", type: "integer", jsonPath: ".status.selectedConnections", description: "Connections selected." },
			age,
		],
	},
	{
		kind: "ApprovalRequest",
		plural: "approvalrequests",
		singular: "approvalrequest",
		shortNames: ["ar", "approval"],
		description: "A command held by a gateway until approvers decide. Created by the gateway; approvers decide via API, CLI or status.",
		spec: ApprovalRequestSpec,
		status: ApprovalRequestStatus,
		printerColumns: [
			{ name: "Requester", type: "string", jsonPath: ".spec.requester.username", description: "Who asked." },
			{ name: "Connection", type: "string", jsonPath: ".spec.connection", description: "Target connection." },
			{ name: "Command", type: "string", jsonPath: ".spec.command", description: "The held command (masked)." },
			{ name: "Phase", type: "string", jsonPath: ".status.phase", description: "Decision state." },
			{ name: "Rule", type: "string", jsonPath: ".spec.rule", description: "Guardrail rule that asked for approval." },
			{ name: "Expires", type: "string", jsonPath: ".spec.expiresAt", description: "When an undecided request expires (RFC 3339)." },
			{ name: "Decided", type: "string", jsonPath: ".status.decidedAt", description: "When the request left Pending (RFC 3339)." },
			age,
		],
	},
	{
		kind: "GitSource",
		plural: "gitsources",
		singular: "gitsource",
		shortNames: ["gs"],
		description: "A git repository of Drawbridge resources the operator keeps the cluster in sync with.",
		spec: GitSourceSpec,
		status: GitSourceStatus,
		printerColumns: [
			{ name: "URL", type: "string", jsonPath: ".spec.url", description: "Repository URL." },
			{ name: "Branch", type: "string", jsonPath: ".spec.branch", description: "Branch followed." },
			{ name: "Commit", type: "string", jsonPath: ".status.lastSyncedCommit", description: "Last synced commit." },
			{ name: "Ready", type: "string", jsonPath: '.status.conditions[?(@.type=="Ready")].status', description: "Ready condition." },
			age,
		],
	},
] as const satisfies readonly KindDef[];

export type KindName = (typeof KINDS)[number]["kind"];

export function kindDef(kind: string): KindDef | undefined {
	return (KINDS as readonly KindDef[]).find((k) => k.kind === kind);
}

/** The subset of Kubernetes ObjectMeta the API uses. */
export interface ObjectMeta {
	name: string;
	namespace?: string;
	labels?: Record<string, string>;
	annotations?: Record<string, string>;
	uid?: string;
	generation?: number;
	resourceVersion?: string;
	creationTimestamp?: string;
	deletionTimestamp?: string;
	finalizers?: string[];
	[key: string]: unknown;
}

interface Resource<K extends string, Spec, Status> {
	apiVersion: typeof API_VERSION;
	kind: K;
	metadata: ObjectMeta;
	spec: Spec;
	status?: Status;
}

export type Connection = Resource<"Connection", Static<typeof ConnectionSpec>, Static<typeof ConnectionStatus>>;
export type AccessGrant = Resource<"AccessGrant", Static<typeof AccessGrantSpec>, Static<typeof AccessGrantStatus>>;
export type MaskingPolicy = Resource<"MaskingPolicy", Static<typeof MaskingPolicySpec>, Static<typeof PolicyStatus>>;
export type GuardrailPolicy = Resource<"GuardrailPolicy", Static<typeof GuardrailPolicySpec>, Static<typeof PolicyStatus>>;
export type ApprovalRequest = Resource<"ApprovalRequest", Static<typeof ApprovalRequestSpec>, Static<typeof ApprovalRequestStatus>>;
export type GitSource = Resource<"GitSource", Static<typeof GitSourceSpec>, Static<typeof GitSourceStatus>>;

export type DrawbridgeResource = Connection | AccessGrant | MaskingPolicy | GuardrailPolicy | ApprovalRequest | GitSource;
