/** createApprovalService (what gateway/main.ts wires): metrics, webhook target parsing. */
import assert from "node:assert/strict";
import { test } from "node:test";
import { Registry } from "prom-client";
import { createApprovalService, parseWebhookTargets } from "../../gateway/approvals/index.ts";
import { human, input } from "./fixtures.ts";

test("createApprovalService counts transitions on the admin registry", async (t) => {
	const registry = new Registry();
	const approvals = createApprovalService({ store: { kind: "local" }, registry, webBaseUrl: "https://gw.example" });
	t.after(() => approvals.close());
	const r = await approvals.service.request(input());
	assert.equal(r.approveHint, `drawbridge approvals approve ${r.id} or https://gw.example/approvals/${r.id}`);
	await approvals.service.decide(r.id, human("sam@example.com", ["support-leads"]), "approve");
	const text = await registry.metrics();
	assert.match(text, /drawbridge_gateway_approval_events_total\{type="approval.requested",protocol="postgres"\} 1/);
	assert.match(text, /drawbridge_gateway_approval_events_total\{type="approval.approved",protocol="postgres"\} 1/);
});

test("parseWebhookTargets validates configuration", () => {
	const ok = parseWebhookTargets([
		{ name: "ops", url: "https://hooks.example/x", secret: "0123456789abcdef" },
		{ name: "slack", url: "https://hooks.slack.example/T/B/X", secret: "0123456789abcdef", format: "slack", events: ["approval.requested"] },
	]);
	assert.equal(ok.length, 2);
	assert.ok(Object.isFrozen(ok[0]));
	assert.deepEqual(parseWebhookTargets(undefined), []);
	const bad: [unknown, RegExp][] = [
		[{}, /expected a list/],
		[[{ name: "x", url: "ftp://x", secret: "0123456789abcdef" }], /url/],
		[[{ name: "x", url: "https://x", secret: "short" }], /secret/],
		[[{ name: "x", url: "https://x", secret: "0123456789abcdef", format: "teams" }], /format/],
		[[{ name: "x", url: "https://x", secret: "0123456789abcdef", events: ["approval.whatever"] }], /events/],
		[[{ url: "https://x", secret: "0123456789abcdef" }], /name/],
	];
	for (const [value, message] of bad) assert.throws(() => parseWebhookTargets(value), message);
});
