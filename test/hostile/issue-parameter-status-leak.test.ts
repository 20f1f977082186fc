/**
 * Regression (found by the end-to-end bypass corpus, case x-param-status-app-name):
 * `SELECT set_config('application_name', (SELECT email FROM customers WHERE id = 1), false)` made
 * PostgreSQL report the new application_name in a ParameterStatus message, which the gateway relayed
 * untouched: a masked email reached the client outside any DataRow. ParameterStatus values now pass
 * through the masking policy's content detectors like notices and notifications do.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { MaskRule } from "../../gateway/config/bundle.ts";
import { seedRows } from "../env/index.ts";
import { type GatewayFixture, startGatewayFixture } from "../faults/fixture.ts";

const RULES: MaskRule[] = [
	{ name: "email", columns: ["customers.email"], strategy: { type: "redact" } },
	{ name: "card", columns: ["customers.card_number"], strategy: { type: "partial", keepLast: 4 } },
	{ name: "content", detectors: ["email", "creditCard"], strategy: { type: "redact" } },
];

let f: GatewayFixture;
before(async () => {
	f = await startGatewayFixture({ maskRules: RULES });
});
after(async () => {
	await f?.stop();
});

test("issue parameter-status-leak: a masked value set as application_name never shows in ParameterStatus", async () => {
	// A user function hides the set_config from the statement's parse tree; its output column is
	// tainted (masked), but PostgreSQL also reports the new application_name in a ParameterStatus.
	await f.pg.query(
		"CREATE OR REPLACE FUNCTION leak_app_name(i int) RETURNS text LANGUAGE sql AS $$ SELECT set_config('application_name', (SELECT email || ' ' || card_number FROM customers WHERE id = i), false) $$",
	);
	const [c1] = seedRows().customers;
	const c = await f.connect("alice");
	const reported: string[] = [];
	(c as unknown as { connection: { on(ev: string, fn: (m: { parameterName: string; parameterValue: string }) => void): void } }).connection.on(
		"parameterStatus",
		(m) => reported.push(`${m.parameterName}=${m.parameterValue}`),
	);
	try {
		const r = await c.query("SELECT leak_app_name(1) AS v").catch((e: Error) => e);
		const seen = JSON.stringify({ reported, r: r instanceof Error ? r.message : r.rows });
		assert.ok(reported.some((x) => x.startsWith("application_name=")), `the change was reported: ${seen}`);
		assert.ok(!seen.includes(c1!.email), seen);
		assert.ok(!seen.includes(c1!.card_number), seen);
		// Ordinary SET application_name still reports its value.
		await c.query("SET application_name = 'report-job'");
		assert.ok(reported.includes("application_name=report-job"), JSON.stringify(reported));
	} finally {
		await c.end();
	}
});
