/**
 * Red-team regression (approvals, round 10): a grant's shared credential counted, in the approvals
 * API and the per-requester limits, as the person its `sub` names.
 *
 * The operator mints one token per grant, shared through one Secret by every subject of the grant; its
 * `sub` is the grant's FIRST User subject and its `groups` are the grant's Group subjects. Any team's
 * repository may write a grant naming someone else first (here the ceo, then mallory, and the group
 * sre) on its own Connection, and mallory reads the token from her team's Secret. With it:
 * - `GET /api/v1/approvals` listed every request of the ceo's own (same user name under "any issuer",
 *   rule 4's test), on any connection and grant, commands included, and every request the group sre
 *   may approve;
 * - her requests filled the ceo's own per-requester limits: five of them, and the ceo's next statement
 *   held for approval was refused (`rate-limited`) wherever she worked.
 * A shared credential stands for its grant now: it sees only requests made with a credential of that
 * grant, and its requests count against that grant's credential only. Real PostgreSQL through the real
 * listener, the real approvals service and REST API (fastify, verified tokens).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import type pg from "pg";
import { buildAdminServer } from "../../gateway/admin/server.ts";
import { registerApprovalRoutes, verifierAuthenticator } from "../../gateway/approvals/routes.ts";
import type { StoreApprovalService } from "../../gateway/approvals/service.ts";
import type { ApprovalRequestRecord } from "../../gateway/approvals/types.ts";
import type { SubjectMatcher } from "../../gateway/config/bundle.ts";
import { grantSubjectsDigest } from "../../gateway/config/canonical.ts";
import { type GatewayFixture, pgError, startGatewayFixture } from "../faults/fixture.ts";
import { localApprovals } from "../postgres/fixture.ts";

/** Team A's grant on its own work: written with the ceo first, mallory second, and the sre group. */
const TEAM_A_SUBJECTS: SubjectMatcher[] = [
	{ kind: "User", name: "ceo" },
	{ kind: "User", name: "mallory" },
	{ kind: "Group", name: "sre" },
];

let fx: GatewayFixture;
let approvals: StoreApprovalService;
let admin: FastifyInstance;
const clients: pg.Client[] = [];

before(async () => {
	approvals = localApprovals();
	fx = await startGatewayFixture({
		grants: [
			{ name: "ceo-finance", user: "ceo", access: "read-write" },
			{ name: "team-a-batch", namespace: "team-a", user: "mallory", access: "read-write", subjects: TEAM_A_SUBJECTS },
		],
		guardrails: [
			{
				name: "approve-deletes",
				action: "requireApproval",
				sql: { statementKinds: ["DELETE"], tables: ["scope_jobs"] },
				approval: { approvers: [{ kind: "Group", name: "sre" }], minApprovals: 1, timeoutSeconds: 120 },
			},
		],
		listener: { approvals },
	});
	admin = await buildAdminServer({
		store: fx.store,
		plugins: [(app) => registerApprovalRoutes(app, { service: approvals, authenticate: verifierAuthenticator(() => fx.store.current.verifier), pages: false })],
	});
	await fx.pg.query("create table if not exists scope_jobs (id int primary key)");
});

after(async () => {
	for (const c of clients) await c.end().catch(() => {});
	await admin?.close();
	await fx?.stop();
	await approvals?.close();
});

async function client(password: string): Promise<pg.Client> {
	const { default: pgmod } = await import("pg");
	const c = new pgmod.Client(fx.clientConfig("agent", password));
	c.on("error", () => {});
	await c.connect();
	clients.push(c);
	return c;
}

/** Sends a DELETE that the rule holds; resolves with the new Pending request, or rejects with the refusal. */
async function hold(password: string, id: number): Promise<ApprovalRequestRecord> {
	const before = new Set((await approvals.list()).map((r) => r.id));
	const c = await client(password);
	let refused: unknown;
	c.query(`DELETE FROM scope_jobs WHERE id = ${id}`).catch((e: unknown) => {
		refused = e;
	});
	const end = Date.now() + 30_000;
	while (Date.now() < end) {
		if (refused !== undefined) throw refused;
		const hit = (await approvals.list({ phase: "Pending" })).find((r) => !before.has(r.id));
		if (hit) return hit;
		await new Promise((r) => setTimeout(r, 50));
	}
	throw new Error("the DELETE was neither held nor refused");
}

async function list(token: string): Promise<{ status: number; ids: string[] }> {
	const res = await admin.inject({ method: "GET", url: "/api/v1/approvals", headers: { authorization: `Bearer ${token}` } });
	const body = res.json() as { items?: ApprovalRequestRecord[] };
	return { status: res.statusCode, ids: (body.items ?? []).map((r) => r.id) };
}

const sharedToken = () =>
	fx.token("ceo", { issuer: "operator", claims: { grant: "team-a/team-a-batch", grantSubjects: grantSubjectsDigest(TEAM_A_SUBJECTS), groups: ["sre"] } });

test("issue approval-shared-credential-scope: a grant's shared token sees only the requests made with its grant's credential", async () => {
	const mine = await hold(await fx.token("ceo"), 1);
	assert.equal(mine.requester.sharedBy, undefined, "the ceo asked with her own token");
	const token = await sharedToken();

	// Before: the ceo's request was listed (same user name), and so was every request sre approves.
	const seen = await list(token);
	assert.equal(seen.status, 200);
	assert.ok(!seen.ids.includes(mine.id), `the shared token listed the ceo's own request ${mine.id}`);
	const one = await admin.inject({ method: "GET", url: `/api/v1/approvals/${mine.id}`, headers: { authorization: `Bearer ${token}` } });
	assert.equal(one.statusCode, 403, one.body);
	assert.doesNotMatch(one.body, /scope_jobs/);

	// What the shared token asked itself, it still sees; the ceo and the sre approvers see theirs.
	const shared = await hold(token, 2);
	assert.deepEqual(shared.requester.sharedBy, TEAM_A_SUBJECTS);
	assert.deepEqual((await list(token)).ids, [shared.id]);
	const ceoSees = (await list(await fx.token("ceo"))).ids;
	assert.ok(ceoSees.includes(mine.id), "the ceo sees her own request");
	const sreSees = (await list(await fx.token("sam", { claims: { groups: ["sre"] } }))).ids;
	assert.ok(sreSees.includes(mine.id) && sreSees.includes(shared.id), "an approver sees both");
});

test("issue approval-shared-credential-scope: a grant's shared token fills its own grant's limits, never the ceo's", async () => {
	const token = await sharedToken();
	// Up to 5 pending for the shared credential (one is pending from the test above).
	const pendingShared = () => approvals.list({ phase: "Pending" }).then((all) => all.filter((r) => r.requester.sharedBy !== undefined).length);
	for (let id = 10; (await pendingShared()) < 5; id++) await hold(token, id);
	await assert.rejects(hold(token, 20), (e: unknown) => {
		assert.match(pgError(e).message, /grant team-a\/team-a-batch's shared credential already has 5 approval requests pending/);
		return true;
	});
	// Before: the ceo (one request pending) counted the five shared ones as hers and was refused.
	const ceoNext = await hold(await fx.token("ceo"), 30);
	assert.equal(ceoNext.requester.username, "ceo");
	assert.equal(ceoNext.requester.sharedBy, undefined);
});
