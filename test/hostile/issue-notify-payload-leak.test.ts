/**
 * Regression (found with the RAISE finding): a user function calling pg_notify() with a column value
 * delivered it to a LISTENing agent. Direct pg_notify(masked column) is refused by the policy, but a
 * function hides the call; payloads were only passed through the content detectors, which do not
 * know a hash-masked phone number. While masking is active, notification payloads are now withheld
 * (the channel still arrives, so LISTEN-based wake-ups keep working).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import { seedRows } from "../env/index.ts";
import { type GatewayFixture, startGatewayFixture, waitFor } from "../faults/fixture.ts";

let f: GatewayFixture;
before(async () => {
	f = await startGatewayFixture({ maskRules: CORPUS_MASK_RULES });
	await f.pg.query("CREATE FUNCTION leak_notify(i int) RETURNS int LANGUAGE sql AS $$ SELECT pg_notify('ch', (SELECT phone || ' ' || email FROM customers WHERE id = i)); SELECT 1 $$");
});
after(async () => {
	await f?.stop();
});

test("issue notify-payload-leak: a function's pg_notify never delivers masked values to a listener", async () => {
	const listener = await f.connect("bob");
	const sender = await f.connect("alice");
	const got: { channel: string; payload?: string }[] = [];
	listener.on("notification", (n) => got.push({ channel: n.channel, ...(n.payload !== undefined ? { payload: n.payload } : {}) }));
	try {
		await listener.query("LISTEN ch");
		await sender.query("SELECT leak_notify(4)");
		await listener.query("SELECT leak_notify(5)");
		await waitFor("both notifications", () => got.length >= 2);
	} finally {
		await listener.end();
		await sender.end();
	}
	const text = JSON.stringify(got);
	for (const c of seedRows().customers.slice(3, 5)) {
		assert.ok(!text.includes(c.phone) && !text.includes(c.email), text);
	}
	assert.ok(got.every((n) => n.channel === "ch"), text);
});
