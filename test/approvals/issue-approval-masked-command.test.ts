/**
 * Red-team regression (approvals): a PostgreSQL approval was bound to the statement as approvers see
 * it, that is with content detectors applied. Two different statements can read the same once masked
 * (`DELETE FROM contacts WHERE email = '[masked]'` for any address), and a reuse window compares the
 * shown command: an approval to delete one customer's row released the deletion of another's, without
 * asking. The command of a masked statement now carries a keyed digest of its exact text (as a Bind's
 * parameters already did). Real PostgreSQL through the gateway, the approvals component's real service.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import type { StoreApprovalService } from "../../gateway/approvals/service.ts";
import type { ApprovalRequestRecord } from "../../gateway/approvals/types.ts";
import { APPROVER_SAM, type Fixture, localApprovals, startFixture } from "../postgres/fixture.ts";

let fx: Fixture;
let approvals: StoreApprovalService;
const sam = APPROVER_SAM;
const EMAILS = ["ann@example.com", "bob@example.com", "cat@example.com", "dan@example.com"];

before(async () => {
	approvals = localApprovals();
	fx = await startFixture({
		approvals,
		maskRules: [{ name: "emails", detectors: ["email"], strategy: { type: "redact", replacement: "[masked]" } }],
		guardrails: [
			{
				name: "approve-contact-deletes",
				action: "requireApproval",
				sql: { statementKinds: ["DELETE"], tables: ["contacts"] },
				approval: { approvers: [{ kind: "Group", name: "dba" }], minApprovals: 1, timeoutSeconds: 30, reuseWindowSeconds: 600 },
			},
		],
	});
	await fx.pg.query("create table if not exists contacts (id int primary key, email text not null)");
	await fx.pg.query("delete from contacts");
	await fx.pg.query(`insert into contacts values ${EMAILS.map((e, i) => `(${i + 1}, '${e}')`).join(", ")}`);
});
after(async () => {
	await fx?.stop();
	await approvals?.close();
});

async function emails(): Promise<string[]> {
	return (await fx.pg.query("select email from contacts order by id")).rows.map((r) => (r as { email: string }).email);
}

/** The next Pending request not in `seen`, or undefined once `settled` (the query finished unheld). */
async function nextPending(seen: Set<string>, settled: () => boolean): Promise<ApprovalRequestRecord | undefined> {
	const end = Date.now() + 15_000;
	while (Date.now() < end) {
		const hit = (await approvals.list({ phase: "Pending" })).find((r) => !seen.has(r.id));
		if (hit) {
			seen.add(hit.id);
			return hit;
		}
		if (settled()) return undefined;
		await new Promise((r) => setTimeout(r, 50));
	}
	throw new Error("neither held nor finished");
}

/** Run `q` and approve (or deny) the request it raises; undefined when it ran without asking. */
async function run(c: pg.Client, q: pg.QueryConfig, seen: Set<string>, decision: "approve" | "deny"): Promise<{ held?: ApprovalRequestRecord; result: Promise<pg.QueryResult> }> {
	let done = false;
	const result = c.query(q);
	result.then(
		() => (done = true),
		() => (done = true),
	);
	const held = await nextPending(seen, () => done);
	if (held) await approvals.decide(held.id, sam, decision);
	return { ...(held ? { held } : {}), result };
}

test("an approval (and its reuse window) covers the masked statement it was given for, not another that reads the same", async () => {
	const seen = new Set<string>();
	const c = await fx.connect("alice");
	try {
		// ann's row: approved; approvers see the address masked, and a digest that binds the exact text
		const first = await run(c, { text: "DELETE FROM contacts WHERE email = 'ann@example.com'" }, seen, "approve");
		assert.ok(first.held, "the first DELETE is held");
		assert.ok(!first.held.command.includes("ann@example.com"), `the approver sees the address masked: ${first.held.command}`);
		assert.match(first.held.command, /\[masked\]/);
		assert.match(first.held.command, /hmac-sha256 [0-9a-f]{64}/);
		assert.equal((await first.result).rowCount, 1);

		// bob's row reads the same once masked: before, the reuse window released it unasked
		const second = await run(c, { text: "DELETE FROM contacts WHERE email = 'bob@example.com'" }, seen, "deny");
		assert.ok(second.held, "a DELETE of another row is held, not run on ann's approval");
		assert.notEqual(second.held.command, first.held.command);
		await assert.rejects(second.result, (e: pg.DatabaseError) => e.code === "42501" && /denied/.test(e.message));

		// the same over the extended protocol (a named statement without parameters)
		const third = await run(c, { name: "del-cat", text: "DELETE FROM contacts WHERE email = 'cat@example.com'" }, seen, "deny");
		assert.ok(third.held, "an extended-protocol DELETE of another row is held too");
		await assert.rejects(third.result, (e: pg.DatabaseError) => e.code === "42501");

		assert.deepEqual(await emails(), ["bob@example.com", "cat@example.com", "dan@example.com"]);

		// the exact statement approved before is still reused inside its window (nothing to ask)
		await fx.pg.query("insert into contacts values (1, 'ann@example.com')");
		const again = await run(c, { text: "DELETE FROM contacts WHERE email = 'ann@example.com'" }, seen, "deny");
		assert.equal(again.held, undefined, "the same statement reuses its approval");
		assert.equal((await again.result).rowCount, 1);
	} finally {
		await c.end();
	}
});
