/**
 * Red-team regression (approvals): the per-requester limits (5 pending, 20 a minute) were read from
 * the store and then the request was created, with nothing in between keeping two requests apart. An
 * agent holding a statement in 40 sessions at the same moment got 40 requests created, and approvers
 * paged 40 times: every call had listed the store before any had written. `request()` now takes one
 * caller at a time per gateway process (replicas can still race; docs/approvals.md). The standalone
 * store on a real directory, where every list and create is file I/O.
 */
import assert from "node:assert/strict";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { ApprovalError } from "../../gateway/approvals/errors.ts";
import { LocalApprovalStore } from "../../gateway/approvals/local-store.ts";
import { type ApprovalEvent, StoreApprovalService } from "../../gateway/approvals/service.ts";
import { input } from "./fixtures.ts";

const dir = mkdtempSync(join(tmpdir(), "drawbridge-approval-flood-"));
const announced: ApprovalEvent[] = [];
const service = new StoreApprovalService({
	store: new LocalApprovalStore({ directory: dir }),
	notifier: { notify: (e) => void announced.push(e) },
	sweepIntervalMs: 0,
});
after(async () => {
	await service.close();
	rmSync(dir, { recursive: true, force: true });
});

test("40 sessions of one agent asking at the same moment page approvers at most 5 times", async () => {
	const outcomes = await Promise.allSettled(
		Array.from({ length: 40 }, (_, i) => service.request(input({ sessionId: `sess-${i}`, command: `DELETE FROM tickets WHERE id = ${i}` }))),
	);
	const created = outcomes.filter((o) => o.status === "fulfilled");
	const refused = outcomes.flatMap((o) => (o.status === "rejected" ? [o.reason as unknown] : []));
	assert.equal(created.length, 5, `${created.length} requests created`);
	assert.equal(refused.length, 35);
	for (const e of refused) assert.ok(e instanceof ApprovalError && e.code === "rate-limited", String(e));
	assert.equal((await service.list({ phase: "Pending" })).length, 5);
	assert.equal(announced.filter((e) => e.type === "approval.requested").length, 5, "approvers were paged 5 times");
	// a refused caller does not block the line: the next request after a slot frees is created
	const first = (created[0] as PromiseFulfilledResult<{ id: string }>).value;
	await service.decide(first.id, { issuer: "https://oidc.test", issuerKind: "oidc", subject: "lead", username: "lead", groups: ["support-leads"], tokenExpiresAt: new Date(Date.now() + 60_000), claims: {} }, "deny");
	const next = await service.request(input({ sessionId: "sess-next", command: "DELETE FROM tickets WHERE id = 100" }));
	assert.equal(next.phase, "Pending");
});
