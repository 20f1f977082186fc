/**
 * Regression (red-team round 8, found with the masking case in issue-stale-execute-resolution): a
 * protocol statement holding SQL `EXECUTE s` was judged by the guardrails once, at Parse, with the
 * body s held then. Under a rule holding DELETEs for approval, `PREPARE s AS SELECT 1`, a named
 * statement `EXECUTE s` (node-postgres), `DEALLOCATE s; PREPARE s AS DELETE ...` (the PREPARE held
 * and approved), then the named statement again: node-postgres re-binds it without a Parse, and the
 * DELETE ran without the approval SQL `EXECUTE s` asks for. The Bind is judged on what s holds now.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import type { NoticeMessage } from "pg-protocol/dist/messages.js";
import type { StoreApprovalService } from "../../gateway/approvals/service.ts";
import { APPROVER_SAM, type Fixture, localApprovals, startFixture } from "./fixture.ts";

let fx: Fixture;
let approvals: StoreApprovalService;

before(async () => {
	approvals = localApprovals();
	fx = await startFixture({
		approvals,
		guardrails: [
			{
				name: "approve-deletes",
				action: "requireApproval",
				sql: { statementKinds: ["DELETE"] },
				approval: { approvers: [{ kind: "Group", name: "dba" }], minApprovals: 1, timeoutSeconds: 20 },
			},
		],
	});
	await fx.pg.query("create table if not exists xtickets (id int primary key)");
	await fx.pg.query("delete from xtickets; insert into xtickets select g from generate_series(1, 10) g");
});
after(async () => {
	await fx?.pg.query("drop table if exists xtickets").catch(() => undefined);
	await fx?.stop();
	await approvals?.close();
});

test("a re-bound protocol `EXECUTE s` is held when s now holds a DELETE", async () => {
	const c = await fx.connect("alice");
	try {
		await c.query("PREPARE s AS SELECT 1 AS one");
		assert.deepEqual((await c.query({ name: "q", text: "EXECUTE s" })).rows, [{ one: 1 }]);
		await c.query("DEALLOCATE s");
		// the PREPARE of a DELETE is held: approve it
		const held = new Promise<string>((resolve) => c.once("notice", (n: NoticeMessage) => resolve(n.message ?? "")));
		const prep = c.query("PREPARE s AS DELETE FROM xtickets WHERE id = 1");
		const prepId = /approval (\S+) pending/.exec(await held)?.[1];
		assert.ok(prepId, "the PREPARE is held");
		await approvals.decide(prepId, APPROVER_SAM, "approve");
		await prep;
		// the named statement again: held too, and denied, so the DELETE does not run
		const held2 = new Promise<string>((resolve) => c.once("notice", (n: NoticeMessage) => resolve(n.message ?? "")));
		const q = c.query({ name: "q", text: "EXECUTE s" });
		const outcome = await Promise.race([held2.then((msg) => ({ msg })), q.then(() => ({ ran: true }), (e: Error) => ({ err: e.message }))]);
		assert.ok("msg" in outcome, `the re-bound EXECUTE was not held: ${JSON.stringify(outcome)}`);
		const id = /approval (\S+) pending/.exec(outcome.msg)?.[1];
		assert.ok(id);
		assert.match((await approvals.get(id))?.command ?? "", /DELETE FROM xtickets/, "approvers see the body that runs");
		await approvals.decide(id, APPROVER_SAM, "deny");
		await assert.rejects(q, (e: pg.DatabaseError) => e.code === "42501" && /denied/.test(e.message));
		assert.equal((await fx.pg.query<{ n: number }>("select count(*)::int AS n from xtickets")).rows[0]?.n, 10);
	} finally {
		await c.end();
	}
});
