/**
 * Regression (found while extending the bypass corpus with NOTICE leaks): a user function that
 * RAISEs NOTICE / WARNING / EXCEPTION with a column value printed it to the agent. Errors and
 * notices were scrubbed by the content detectors and by hiding quoted values, which catches emails,
 * card numbers and IBANs, but not a value masked by column rule only (here the phone number, masked
 * with the `hash` strategy, for which no detector exists). Text raised by a function (routine
 * `exec_stmt_raise`) is now hidden whole while masking is active.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import { seedRows } from "../env/index.ts";
import { type GatewayFixture, startGatewayFixture } from "../faults/fixture.ts";

let f: GatewayFixture;
before(async () => {
	f = await startGatewayFixture({ maskRules: CORPUS_MASK_RULES });
	await f.pg.query(`CREATE FUNCTION leak_raise(i int, how text) RETURNS int LANGUAGE plpgsql AS $$
		DECLARE r record;
		BEGIN
			SELECT * INTO r FROM customers WHERE id = i;
			IF how = 'notice' THEN RAISE NOTICE 'row % % % %', r.phone, r.email, r.card_number, r.iban USING HINT = r.phone, DETAIL = r.phone; END IF;
			IF how = 'warning' THEN RAISE WARNING 'w %', r.phone; END IF;
			IF how = 'exception' THEN RAISE EXCEPTION 'x %', r.phone USING HINT = r.phone; END IF;
			RETURN 1;
		END $$`);
});
after(async () => {
	await f?.stop();
});

test("issue raise-notice-leak: RAISE NOTICE / WARNING / EXCEPTION text from a function never shows masked values", async () => {
	const c = await f.connect("bob");
	const seen: string[] = [];
	c.on("notice", (n) => seen.push(JSON.stringify(n)));
	try {
		for (const [i, how] of [[5, "notice"], [6, "warning"], [7, "exception"]] as const) {
			await c.query("SELECT leak_raise($1, $2)", [i, how]).catch((e: Error) => seen.push(JSON.stringify({ ...e, message: e.message })));
		}
		// The session stays usable after the scrubbed error.
		assert.equal((await c.query("SELECT 1 AS one")).rows[0]!.one, 1);
	} finally {
		await c.end();
	}
	assert.equal(seen.length, 3, seen.join("\n"));
	const text = seen.join("\n");
	for (const cust of seedRows().customers.slice(4, 7)) {
		for (const v of [cust.phone, cust.email, cust.card_number, cust.iban]) assert.ok(!text.includes(v), `${v} leaked: ${text}`);
	}
	assert.match(text, /hidden by the Drawbridge masking policy/);
});
