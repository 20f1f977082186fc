// Regression (red-team round 9: masking). The masking pre-check of a write runs before the write
// is forwarded, on the catalog's connection: DDL sent with it (earlier in the same multi-statement
// Query, or earlier in an extended-protocol pipeline and not answered yet) had not run, so the
// catalog answered as before it. A read-write grant copied every phone into a clean table of its
// own with `CREATE FUNCTION g(text) ... AS 'SELECT string_agg(phone, ...) FROM customers'; INSERT
// INTO dst SELECT ('a'::text).g` (`.g` was no routine yet when checked), then read it raw. DDL in
// the same text, or forwarded and not answered, now counts as run: names it creates are calls, and
// relations count as changed.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import { CONNECTION, fixtureWithClients, refusedByRule } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

describe("DDL sent with a write counts for its masking pre-check", () => {
	const c = fixtureWithClients({ maskRules: CORPUS_MASK_RULES }, async (fx) => {
		await fx.pg.query("CREATE TABLE dst (v text)");
	});
	const copied = async (): Promise<number> => (await c.fx.pg.query("SELECT count(*)::int AS n FROM dst")).rows[0]?.n;

	test("multi-statement Query: a function created in the same text, called in field notation", async () => {
		await assert.rejects(
			c.rw.query(
				"CREATE FUNCTION g20(text) RETURNS text LANGUAGE sql AS $$ SELECT string_agg(phone, ',') FROM customers $$; INSERT INTO dst SELECT ('a'::text).g20",
			),
			refusedByRule("mask:copy-masked-data"),
		);
		assert.equal(await copied(), 0);
	});

	test("extended-protocol pipeline: the INSERT parsed before the CREATE FUNCTION was answered", async () => {
		const raw = await RawClient.login(c.fx.port, c.fx.caPem, CONNECTION, await c.fx.token("alice"));
		try {
			raw.send(
				clientMessages.parse("", "CREATE FUNCTION g21(text) RETURNS text LANGUAGE sql AS $$ SELECT string_agg(phone, ',') FROM customers $$"),
				clientMessages.bind("", ""),
				clientMessages.execute(""),
				clientMessages.parse("", "INSERT INTO dst SELECT ('a'::text).g21"),
				clientMessages.bind("", ""),
				clientMessages.execute(""),
				clientMessages.sync(),
			);
			const answer = await raw.until("readyForQuery");
			const err = answer.find((m) => m.type === "errorResponse");
			assert.ok(err, JSON.stringify(answer));
		} finally {
			raw.end();
		}
		assert.equal(await copied(), 0);
	});
});
