/** Shared fixtures for approvals tests: identities, inputs. Plain data, no servers. */
import type { Identity } from "../../gateway/config/bundle.ts";
import type { ApprovalRequestInput } from "../../gateway/approvals/types.ts";

export const OIDC = "https://oidc.test";

export function human(username: string, groups: string[] = [], extra: Partial<Identity> = {}): Identity {
	return {
		issuer: OIDC,
		issuerKind: "oidc",
		subject: `sub-${username}`,
		username,
		groups,
		tokenExpiresAt: new Date(Date.now() + 3600_000),
		claims: {},
		...extra,
	};
}

export function serviceAccount(namespace: string, name: string, extra: Partial<Identity> = {}): Identity {
	return {
		issuer: "https://kubernetes.default.svc",
		issuerKind: "kubernetes",
		subject: `system:serviceaccount:${namespace}:${name}`,
		username: `system:serviceaccount:${namespace}:${name}`,
		groups: ["system:serviceaccounts", `system:serviceaccounts:${namespace}`],
		serviceAccount: { namespace, name },
		tokenExpiresAt: new Date(Date.now() + 3600_000),
		claims: {},
		...extra,
	};
}

/** The support bot of SCENARIOS.md journey 2, as the requester. */
export const bot = serviceAccount("support", "bot");

export function input(overrides: Partial<ApprovalRequestInput> = {}): ApprovalRequestInput {
	return {
		sessionId: "sess-1",
		protocol: "postgres",
		connection: "tickets-prod",
		grant: "support/bot-tickets",
		requester: { issuer: bot.issuer, subject: bot.subject, username: bot.username, groups: bot.groups, serviceAccount: bot.serviceAccount },
		command: "DELETE FROM tickets WHERE created < now() - interval '1 year'",
		rule: "delete-needs-approval",
		approvers: [{ kind: "Group", name: "support-leads" }],
		minApprovals: 1,
		timeoutSeconds: 900,
		...overrides,
	};
}
