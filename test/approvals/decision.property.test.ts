/**
 * Properties of the approval rules over random decision sequences (fast-check): whatever order of
 * votes from whatever mix of identities, the requester never appears among the decisions, nobody is
 * counted twice, nothing is recorded after the request left Pending, and the phase is exactly what
 * the votes say.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { applyDecision, countApprovals, newRecord, samePrincipal } from "../../gateway/approvals/decision.ts";
import { ApprovalError } from "../../gateway/approvals/errors.ts";
import type { ApprovalRequestRecord } from "../../gateway/approvals/types.ts";
import type { Identity } from "../../gateway/config/bundle.ts";
import { human, input, serviceAccount } from "./fixtures.ts";

const T0 = new Date("2026-03-01T10:00:00.000Z");
const requesterHuman = human("ann@example.com", ["leads"]);
const people: Identity[] = [
	requesterHuman,
	human("ANN@example.com", ["leads"], { issuer: "https://other-idp", subject: "x-ann" }), // same person, other issuer
	human("sam@example.com", ["leads"]),
	human("kim@example.com", ["leads"]),
	human("lee@example.com", ["leads"]),
	human("eve@example.com", ["sales"]), // not an approver
	serviceAccount("ops", "approver-bot"),
	serviceAccount("ops", "approver-bot", { issuer: "https://other-cluster" }), // same SA, other cluster
];

test("random vote sequences respect every rule", () => {
	fc.assert(
		fc.property(
			fc.integer({ min: 1, max: 4 }),
			fc.array(fc.record({ who: fc.integer({ min: 0, max: people.length - 1 }), decision: fc.constantFrom("approve", "deny") as fc.Arbitrary<"approve" | "deny"> }), { maxLength: 12 }),
			(minApprovals, votes) => {
				let record: ApprovalRequestRecord = newRecord(
					input({
						requester: requesterHuman,
						minApprovals,
						approvers: [
							{ kind: "Group", name: "leads" },
							{ kind: "ServiceAccount", namespace: "ops", name: "approver-bot" },
						],
					}),
					"ar-00000000ff",
					T0,
					"hint",
				);
				let t = T0.getTime();
				for (const v of votes) {
					const before = record;
					t += 1000;
					try {
						record = applyDecision(record, people[v.who]!, v.decision, undefined, new Date(t));
					} catch (err) {
						assert.ok(err instanceof ApprovalError);
						assert.equal(record, before, "a refusal changes nothing");
						continue;
					}
					assert.equal(before.phase, "Pending", "only Pending requests accept decisions");
				}
				for (const d of record.decisions) {
					assert.ok(!samePrincipal(record.requester, { issuer: d.issuer ?? "", subject: d.subject ?? "", username: d.by.replace(/^user:/, ""), groups: [] }));
				}
				assert.ok(!record.decisions.some((d) => d.by === "user:eve@example.com"), "non-approvers never recorded");
				const bys = record.decisions.map((d) => d.by.toLowerCase());
				assert.equal(new Set(bys).size, bys.length, "one decision per person");
				const denied = record.decisions.some((d) => d.decision === "deny");
				const approvals = countApprovals(record.decisions);
				const expected = denied ? "Denied" : approvals >= minApprovals ? "Approved" : "Pending";
				assert.equal(record.phase, expected);
				if (denied) assert.equal(record.decisions.at(-1)?.decision, "deny", "nothing after a deny");
				if (record.phase === "Approved") assert.equal(approvals, minApprovals, "approved exactly when the count was reached");
			},
		),
		{ numRuns: 500 },
	);
});
