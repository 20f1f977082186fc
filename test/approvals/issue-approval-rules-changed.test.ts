/**
 * Red-team regression (approvals): guardrail rules apply to open sessions at once, but a prepared
 * statement kept the verdict of its Parse. Drivers that cache prepared statements per connection
 * (pgx, JDBC, node-postgres' named queries) re-bind them without parsing again, so once a
 * GuardrailPolicy requiring approval (or blocking) was merged, the agent's long-lived connection kept
 * running the DELETE it had prepared before, unheld and unseen by approvers. A Bind now decides again
 * when the rules changed since the Parse. Real PostgreSQL through the gateway, a real bundle change.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import type { NoticeMessage } from "pg-protocol/dist/messages.js";
import type { StoreApprovalService } from "../../gateway/approvals/service.ts";
import { APPROVER_SAM, DEFAULT_GRANTS, type Fixture, localApprovals, startFixture } from "../postgres/fixture.ts";

let fx: Fixture;
let approvals: StoreApprovalService;
let version = 1;

before(async () => {
	approvals = localApprovals();
	fx = await startFixture({ approvals });
	await fx.pg.query("create table if not exists jobs (id int primary key)");
});
after(async () => {
	await fx?.stop();
	await approvals?.close();
});

async function reset(): Promise<void> {
	fx.store.update(fx.makeBundle(++version, DEFAULT_GRANTS, { guardrails: [] }));
	await fx.pg.query("delete from jobs");
	await fx.pg.query("insert into jobs select g from generate_series(1, 10) g");
}
async function count(): Promise<number> {
	return (await fx.pg.query("select count(*)::int as n from jobs")).rows[0]!.n as number;
}
const DELETE = { name: "purge-job", text: "delete from jobs where id = $1" };

test("a statement prepared before a requireApproval rule is held when bound after it", async () => {
	await reset();
	const c = await fx.connect("alice");
	try {
		assert.equal((await c.query({ ...DELETE, values: [1] })).rowCount, 1, "no rule yet: runs");
		fx.store.update(
			fx.makeBundle(++version, DEFAULT_GRANTS, {
				guardrails: [
					{
						name: "approve-job-deletes",
						action: "requireApproval",
						sql: { statementKinds: ["DELETE"], tables: ["jobs"] },
						approval: { approvers: [{ kind: "Group", name: "dba" }], minApprovals: 1, timeoutSeconds: 20 },
					},
				],
			}),
		);
		// node-postgres re-binds the named statement without a Parse, as pooled drivers do
		const held = new Promise<string>((resolve) => c.once("notice", (n: NoticeMessage) => resolve(n.message ?? "")));
		let settled = false;
		const q = c.query({ ...DELETE, values: [2] });
		q.then(
			() => (settled = true),
			() => (settled = true),
		);
		const first = await Promise.race([held, new Promise<undefined>((r) => setTimeout(() => r(undefined), 5_000))]);
		assert.ok(first && !settled, `the re-bound DELETE is held (ran unheld before): ${String(first)}`);
		const id = /approval (\S+) pending/.exec(first)?.[1];
		assert.ok(id);
		assert.match((await approvals.get(id))?.command ?? "", /\$1 = '2'/);
		await approvals.decide(id, APPROVER_SAM, "deny");
		await assert.rejects(q, (e: pg.DatabaseError) => e.code === "42501" && /denied/.test(e.message));
		assert.equal(await count(), 9);
	} finally {
		await c.end();
	}
});

test("a statement prepared before a block rule is refused when bound after it", async () => {
	await reset();
	const c = await fx.connect("alice");
	try {
		assert.equal((await c.query({ ...DELETE, values: [1] })).rowCount, 1);
		fx.store.update(
			fx.makeBundle(++version, DEFAULT_GRANTS, { guardrails: [{ name: "no-job-deletes", action: "block", sql: { statementKinds: ["DELETE"], tables: ["jobs"] } }] }),
		);
		await assert.rejects(c.query({ ...DELETE, values: [3] }), (e: pg.DatabaseError) => e.code === "42501" && /no-job-deletes/.test(e.message));
		assert.equal(await count(), 9);
		// the session is still usable
		assert.equal((await c.query("select count(*)::int as n from jobs")).rows[0].n, 9);
	} finally {
		await c.end();
	}
});

test("a block rule merged while a statement waits for approval wins over the approval", async () => {
	await reset();
	fx.store.update(
		fx.makeBundle(++version, DEFAULT_GRANTS, {
			guardrails: [
				{
					name: "approve-job-deletes",
					action: "requireApproval",
					sql: { statementKinds: ["DELETE"], tables: ["jobs"] },
					approval: { approvers: [{ kind: "Group", name: "dba" }], minApprovals: 1, timeoutSeconds: 20 },
				},
			],
		}),
	);
	const c = await fx.connect("alice");
	try {
		const held = new Promise<string>((resolve) => c.once("notice", (n: NoticeMessage) => resolve(n.message ?? "")));
		const q = c.query("delete from jobs");
		q.catch(() => undefined);
		const id = /approval (\S+) pending/.exec(await held)?.[1];
		assert.ok(id);
		// while it waits, a policy blocking it is merged; then an approver (who saw the old rules) approves
		fx.store.update(
			fx.makeBundle(++version, DEFAULT_GRANTS, { guardrails: [{ name: "no-job-deletes", action: "block", sql: { statementKinds: ["DELETE"], tables: ["jobs"] } }] }),
		);
		await approvals.decide(id, APPROVER_SAM, "approve");
		await assert.rejects(q, (e: pg.DatabaseError) => e.code === "42501" && /no-job-deletes/.test(e.message));
		assert.equal(await count(), 10, "nothing was deleted");
	} finally {
		await c.end();
	}
});
