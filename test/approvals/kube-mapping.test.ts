/** Record ⇄ ApprovalRequest object mapping, and that objects validate against the api's schema. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { applyDecision, cancel, newRecord } from "../../gateway/approvals/decision.ts";
import { durationToSeconds, objectToRecord, recordToObject, secondsToDuration } from "../../gateway/approvals/kube-mapping.ts";
import { human, input } from "./fixtures.ts";

const T0 = new Date("2026-03-01T10:00:00.000Z");
const sam = human("sam@example.com", ["support-leads"]);

test("round trip through the object keeps everything the service relies on", () => {
	const pending = newRecord(input({ reuseWindowSeconds: 600, minApprovals: 1 }), "ar-00000000aa", T0, "drawbridge approvals approve ar-00000000aa");
	const rows = [
		["pending", pending],
		["approved", applyDecision(pending, sam, "approve", "ok", new Date(T0.getTime() + 5000))],
		["cancelled", cancel(pending, new Date(T0.getTime() + 1000), "the waiting client disconnected")!],
	] as const;
	for (const [name, record] of rows) {
		const obj = recordToObject(record, "drawbridge");
		assert.equal(obj.metadata.name, record.id, name);
		assert.equal(obj.spec.expiresAt, record.expiresAt, name);
		assert.equal(obj.status?.phase, record.phase, name);
		const back = objectToRecord(JSON.parse(JSON.stringify(obj)));
		assert.deepEqual(back, record, name);
	}
});

test("issue-decision-issuer-dropped: a decision keeps the approver's issuer and subject through the object", () => {
	const pending = newRecord(input(), "ar-00000000cc", T0, "hint");
	const approved = applyDecision(pending, sam, "approve", undefined, new Date(T0.getTime() + 5000));
	const obj = recordToObject(approved, "drawbridge");
	assert.deepEqual(obj.status?.decisions?.map((d) => [d.by, d.issuer, d.subject]), [[approved.decisions[0]!.by, sam.issuer, sam.subject]]);
	// Read back by another replica: the same approver under the same issuer is recognised again.
	const back = objectToRecord(JSON.parse(JSON.stringify(obj)))!;
	assert.equal(back.decisions[0]!.issuer, sam.issuer);
	assert.equal(back.decisions[0]!.subject, sam.subject);
});

test("a freshly created object without status reads as Pending", () => {
	const obj = recordToObject(newRecord(input(), "ar-00000000bb", T0, "hint"), "ns");
	delete obj.status;
	assert.equal(objectToRecord(obj)?.phase, "Pending");
	assert.equal(objectToRecord({ ...obj, spec: undefined as never }), undefined, "malformed objects are ignored");
});

test("durations", () => {
	assert.equal(secondsToDuration(600), "600s");
	assert.equal(secondsToDuration(0.5), "1s");
	assert.equal(secondsToDuration(0), undefined);
	assert.equal(durationToSeconds("10m"), 600);
	assert.equal(durationToSeconds("2h"), 7200);
	assert.equal(durationToSeconds("bogus"), undefined);
});
