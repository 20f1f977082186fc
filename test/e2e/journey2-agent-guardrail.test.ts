/**
 * Journey 2 (SCENARIOS.md) through the whole chain: the support bot's grant, the tickets-prod
 * Connection and the prod-guardrails GuardrailPolicy come from git (examples/ files, merged as a
 * pull request) through the operator; the gateway process holds the bot's DELETE as an
 * ApprovalRequest in the real apiserver (with the gateway's deploy/base RBAC); the bot cannot approve
 * its own request, a developer outside support-leads cannot either; Sam approves with
 * `drawbridge approvals approve` and an ID token from the company's OIDC provider (trusted because
 * the operator put that issuer in the bundle); the bot gets its row count; `DROP TABLE` is blocked.
 *
 * What test/approvals/psql-e2e.test.ts does not cover and this does: approvers and rules coming from
 * git through the operator's bundle, the OIDC issuer configured on the operator, the gateway as a
 * process with its own ServiceAccount, the bot authenticating with a projected service-account
 * token, two gateway replicas (the bot's session on one, the approvals API used on the other),
 * `kubectl get approvalrequests` and the stored decision naming the approver's issuer.
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { printLogsOnFailure } from "../env/index.ts";
import { drawbridge, GRANTS_NS, logsOf, psql, ROOT, type Stack, startStack, SYSTEM_NS, waitFor } from "./stack.ts";

const GRANT = "support-bot-tickets-rw";
const DELETE_SQL = "DELETE FROM tickets WHERE created < now() - interval '1 year'";
let stack: Stack;
let botToken = "";
let admin = "";
let approvalId = "";

const example = (path: string) => readFileSync(join(ROOT, "examples", path), "utf8");

before(async () => {
	stack = await startStack({ oidc: true });
	// The support team's database: 4 tickets older than a year, 6 recent ones.
	await stack.pg.query("CREATE DATABASE tickets");
	await stack.pg.query(
		`CREATE TABLE tickets (id serial PRIMARY KEY, subject text NOT NULL, created timestamptz NOT NULL);
		 INSERT INTO tickets (subject, created) SELECT 'old ' || i, now() - interval '400 days' - i * interval '1 day' FROM generate_series(1, 4) i;
		 INSERT INTO tickets (subject, created) SELECT 'new ' || i, now() - i * interval '1 day' FROM generate_series(1, 6) i;`,
		undefined,
		{ database: "tickets" },
	);
	await stack.git.commit("grants", {
		message: "tickets-prod connection and production guardrails",
		files: {
			"connections/tickets-prod.yaml": example("connections/tickets-prod.yaml")
				.replace("host: tickets-db.prod.internal", "host: 127.0.0.1")
				.replace("port: 5432", `port: ${stack.pg.port}`),
			"policies/guardrails-prod.yaml": example("policies/guardrails-prod.yaml"),
		},
	});
	await stack.git.mergePullRequest("grants", {
		number: 310,
		branch: "support-bot",
		org: "platform",
		title: "Support bot: read-write on tickets-prod, deletes approved by support leads (SUP-310)",
		files: { "grants/bots/support-bot-tickets.yaml": example("grants/bots/support-bot-tickets.yaml") },
	});
	await stack.applyGitSource();
	await waitFor("grant Active", async () => {
		const r = await stack.kube.request<{ status?: { phase?: string } }>("GET", `/apis/access.drawbridge.dev/v1alpha1/namespaces/${GRANTS_NS}/accessgrants/${GRANT}`);
		return r.status === 200 && r.body.status?.phase === "Active";
	});
	await stack.startGateway("gateway-0");
	// A second replica: the bot's session is on gateway-0, the approvers talk to gateway-1. The
	// ApprovalRequest in the apiserver is all they share.
	const replicaB = await stack.startGateway("gateway-1");
	admin = `http://127.0.0.1:${replicaB.ports.admin}`;
	botToken = await stack.kube.serviceAccountToken("support", "support-bot", { audiences: ["drawbridge-gateway"], expirationSeconds: 3600 });
});
after(async () => {
	await stack?.stop();
});
printLogsOnFailure(() => [...logsOf(stack), ["oidc", stack?.oidc]]);

async function ticketCount(): Promise<number> {
	const r = await stack.pg.query<{ n: number }>("SELECT count(*)::int AS n FROM tickets", [], { database: "tickets" });
	return r.rows[0]!.n;
}
const asBot = (args: string[]) => psql(stack, { dbname: "tickets-prod", user: "support-bot", password: botToken, args });
const approvals = (args: string[], token: string) => drawbridge(["approvals", ...args, "--server", admin], { DRAWBRIDGE_TOKEN: token });

interface ApprovalObject {
	metadata: { name: string };
	spec: { command: string; rule: string; grant: string; requester: { username: string } };
	status?: { phase?: string; decidedAt?: string; decisions?: { decision: string; by: string; issuer?: string; subject?: string; comment?: string }[] };
}
async function approvalObjects(): Promise<ApprovalObject[]> {
	const r = await stack.kube.request<{ items: ApprovalObject[] }>("GET", `/apis/access.drawbridge.dev/v1alpha1/namespaces/${SYSTEM_NS}/approvalrequests`);
	assert.equal(r.status, 200);
	return r.body.items;
}

test("journey 2: the bot's DELETE waits for a support lead; self-approval and non-approvers refused; Sam approves; the bot gets its row count", { timeout: 240_000 }, async () => {
	const count = await waitFor("the bot reads tickets through the gateway", async () => {
		const r = await asBot(["-c", "SELECT count(*) FROM tickets"]);
		if (r.code !== 0) throw new Error(r.stderr);
		return r.stdout.trim();
	}, 60_000, 500);
	assert.equal(count, "10");

	const held = asBot(["-c", DELETE_SQL]);
	const obj = await waitFor("ApprovalRequest created by the gateway", async () => (await approvalObjects()).find((o) => o.spec.command === DELETE_SQL && o.status?.phase !== "Approved"), 60_000, 250);
	approvalId = obj.metadata.name;
	assert.equal(obj.spec.rule, "delete-needs-approval");
	assert.equal(obj.spec.grant, `${GRANTS_NS}/${GRANT}`);
	assert.equal(obj.spec.requester.username, "system:serviceaccount:support:support-bot");
	const table = await stack.kubectl(["get", "approvalrequests", "-n", SYSTEM_NS]);
	assert.match(table, /^NAME\s+REQUESTER\s+CONNECTION\s+COMMAND\s+PHASE\s+RULE\s+EXPIRES\s+DECIDED\s+AGE/);
	assert.match(table, new RegExp(`${approvalId}\\s+system:serviceaccount:support:support-bot\\s+tickets-prod\\s+DELETE FROM tickets.*Pending\\s+delete-needs-approval`));
	assert.equal(await ticketCount(), 10, "nothing deleted while held");

	// The bot approving its own request is refused; so is a developer who is not a support lead.
	const self = await approvals(["approve", approvalId], botToken);
	assert.equal(self.code, 1, self.stdout);
	assert.match(self.stderr, /403/);
	assert.match(self.stderr, new RegExp(`requested ${approvalId} and cannot decide it`), self.stderr);
	const bob = await approvals(["approve", approvalId], await stack.oidc!.idToken("bob"));
	assert.equal(bob.code, 1, bob.stdout);
	assert.match(bob.stderr, /403/);
	assert.match(bob.stderr, new RegExp(`is not an approver of ${approvalId}`), bob.stderr);

	// Sam (support-leads) signs in with the company's OIDC provider and approves.
	const samToken = await stack.oidc!.idToken("sam");
	const list = await approvals(["list"], samToken);
	assert.equal(list.code, 0, list.stderr);
	assert.match(list.stdout, new RegExp(`${approvalId}\\s+Pending`));
	const ok = await approvals(["approve", approvalId, "-m", "yearly cleanup"], samToken);
	assert.equal(ok.code, 0, ok.stderr);

	const r = await held;
	assert.equal(r.code, 0, r.stderr);
	assert.match(r.stderr, new RegExp(`NOTICE:.*approval ${approvalId} pending`), "the bot was told what it waits for");
	assert.match(r.stdout, /DELETE 4/, "the bot gets its row count");
	assert.equal(await ticketCount(), 6);

	const decided = (await approvalObjects()).find((o) => o.metadata.name === approvalId)!;
	assert.equal(decided.status?.phase, "Approved");
	assert.ok(decided.status?.decidedAt, "decidedAt set");
	assert.deepEqual(
		decided.status?.decisions?.map((d) => ({ decision: d.decision, by: d.by, issuer: d.issuer, subject: d.subject, comment: d.comment })),
		[{ decision: "approve", by: "user:sam", issuer: stack.oidc!.issuer, subject: "sam", comment: "yearly cleanup" }],
		"the stored decision names the approver's verified issuer and subject",
	);
	const after = await stack.kubectl(["get", "approvalrequests", "-n", SYSTEM_NS]);
	assert.match(after, new RegExp(`${approvalId}\\s.*Approved\\s+delete-needs-approval\\s+\\S+\\s+${decided.status!.decidedAt!.slice(0, 16)}`));
});

test("journey 2: DROP TABLE from the same bot is blocked outright, naming the rule; no approval is created", { timeout: 120_000 }, async () => {
	assert.ok(botToken);
	const before = (await approvalObjects()).length;
	const r = await asBot(["-c", "DROP TABLE tickets"]);
	assert.notEqual(r.code, 0);
	assert.match(r.stderr, /ERROR:\s+42501:.*no-drop-truncate/, r.stderr);
	assert.equal(await ticketCount(), 6, "table still there");
	assert.equal((await approvalObjects()).length, before);
});

test("journey 4 on this session: the recording shows the held DELETE, Sam's approval and the blocked DROP", { timeout: 120_000 }, async () => {
	assert.ok(approvalId);
	const env = { DRAWBRIDGE_RECORDINGS_DIR: join(stack.dir, "recordings") };
	const listed = await waitFor("sessions with approvals recorded", async () => {
		const r = await drawbridge(["recordings", "list", "--connection", "tickets-prod", "--approvals", "--json"], env);
		return r.code === 0 ? r.stdout.trim().split("\n").filter(Boolean).map((l) => JSON.parse(l) as { sessionId: string; pullRequest?: unknown }) : undefined;
	}, 60_000, 500);
	assert.equal(listed.length, 1);
	assert.equal(String(listed[0]!.pullRequest), "310");
	const show = await drawbridge(["recordings", "show", listed[0]!.sessionId], env);
	assert.equal(show.code, 0, show.stderr);
	assert.match(show.stdout, new RegExp(`APPROVAL.*${approvalId}.*by user:sam`));
	assert.match(show.stdout, /DELETE FROM tickets/);
	const blocked = await drawbridge(["recordings", "list", "--connection", "tickets-prod", "--blocked", "--json"], env);
	assert.equal(blocked.code, 0, blocked.stderr);
	const b = blocked.stdout.trim().split("\n").map((l) => JSON.parse(l) as { sessionId: string });
	assert.equal(b.length, 1);
	const verify = await drawbridge(["recordings", "verify", "--all", "--connection", "tickets-prod"], env);
	assert.equal(verify.code, 0, `${verify.stdout}\n${verify.stderr}`);
});

test("narrowing in git: a PR making the bot's grant read-only cuts its live session with a FATAL naming the change; reconnected, it can no longer write", { timeout: 240_000 }, async () => {
	assert.ok(botToken);
	const live = asBot(["-c", "SELECT pg_sleep(300)"]);
	await waitFor("the bot's statement running upstream", async () => {
		const r = await stack.pg.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE '%pg_sleep(300)%' AND pid <> pg_backend_pid()", [], { database: "tickets" });
		return r.rows[0]!.n === 1;
	}, 60_000, 250);
	const narrowed = example("grants/bots/support-bot-tickets.yaml").replace("access: read-write", "access: read-only");
	assert.notEqual(narrowed, example("grants/bots/support-bot-tickets.yaml"));
	await stack.git.mergePullRequest("grants", {
		number: 312,
		branch: "support-bot-read-only",
		org: "platform",
		title: "Support bot: read-only on tickets-prod",
		files: { "grants/bots/support-bot-tickets.yaml": narrowed },
	});
	const r = await live;
	assert.notEqual(r.code, 0);
	assert.match(r.stderr, /FATAL:\s+57P01: terminating connection: grant platform\/support-bot-tickets-rw changed \(access, credential or subjects\); reconnect/, r.stderr);
	// The next session runs under the new terms: reads work, a write is refused naming the read-only grant.
	const read = await asBot(["-At", "-c", "SELECT count(*) FROM tickets"]);
	assert.equal(read.code, 0, read.stderr);
	const write = await asBot(["-c", "UPDATE tickets SET subject = subject WHERE id = 1"]);
	assert.notEqual(write.code, 0);
	assert.match(write.stderr, /42501/, write.stderr);
	// The auditor sees why that session ended: end reason policy, with the message.
	const env = { DRAWBRIDGE_RECORDINGS_DIR: join(stack.dir, "recordings") };
	const cut = await waitFor("the cut session's recording, ended by the change", async () => {
		const l = await drawbridge(["recordings", "list", "--connection", "tickets-prod", "--json"], env);
		if (l.code !== 0) return undefined;
		const ids = l.stdout.trim().split("\n").filter(Boolean).map((x) => String((JSON.parse(x) as { sessionId: string }).sessionId));
		const shows = await Promise.all(ids.map((id) => drawbridge(["recordings", "show", id], env)));
		return shows.find((x) => /Ended\s+policy/.test(x.stdout) && /pg_sleep\(300\)/.test(x.stdout));
	}, 60_000, 1000);
	assert.match(cut.stdout, /support-bot-tickets-rw changed/, cut.stdout);
});

test("revoking in git: a PR removing the bot's grant cuts its live session with a FATAL, the grant and its role are gone, new connections refused", { timeout: 240_000 }, async () => {
	assert.ok(botToken);
	const roleOf = await stack.kube.request<{ status?: { credential?: { username?: string } } }>("GET", `/apis/access.drawbridge.dev/v1alpha1/namespaces/${GRANTS_NS}/accessgrants/${GRANT}`);
	const role = roleOf.body.status?.credential?.username;
	assert.ok(role, "the grant has a dynamic role");
	const live = asBot(["-c", "SELECT pg_sleep(300)"]);
	await waitFor("the bot's statement running upstream", async () => {
		const r = await stack.pg.query<{ n: number }>("SELECT count(*)::int AS n FROM pg_stat_activity WHERE usename = $1 AND query LIKE '%pg_sleep(300)%'", [role], { database: "tickets" });
		return r.rows[0]!.n === 1;
	}, 60_000, 250);
	await stack.git.mergePullRequest("grants", {
		number: 311,
		branch: "remove-support-bot",
		org: "platform",
		title: "Remove the support bot's write access",
		files: { "grants/bots/support-bot-tickets.yaml": null },
	});
	const r = await live;
	assert.notEqual(r.code, 0);
	// Cut at once with the gateway's own FATAL 57P01 naming the revoked grant: the operator writes the
	// bundle first and gives gateways REVOCATION_GRACE_MS before it drops the role (and PostgreSQL
	// would end what is left with "terminating connection due to administrator command").
	assert.match(r.stderr, /FATAL:\s+57P01: terminating connection: grant platform\/support-bot-tickets-rw was revoked/, r.stderr);
	await waitFor("grant pruned", async () => (await stack.kube.request("GET", `/apis/access.drawbridge.dev/v1alpha1/namespaces/${GRANTS_NS}/accessgrants/${GRANT}`)).status === 404, 60_000);
	await waitFor("role dropped", async () => (await stack.pg.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [role])).rows.length === 0, 60_000);
	const again = await asBot(["-c", "SELECT 1"]);
	assert.notEqual(again.code, 0, "a new connection is refused");
	assert.match(again.stderr, /FATAL:\s+access denied for serviceaccount:support\/support-bot .*on connection "tickets-prod": no grant matches/, again.stderr);
});
