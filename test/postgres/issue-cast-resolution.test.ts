// Regression (red-team round 10 on guardrails, the lead "CREATE CAST ... AS IMPLICIT"). Over a superuser
// static credential, under a rule blocking DELETE on accounts, a read-write grant created
// `agent_off(int)` (a SQL function calling a DBA's app_set(k, v), which calls set_config) and `CREATE
// CAST (int4 AS text) WITH FUNCTION agent_off(int4) AS IMPLICIT`, both plain writes. Then, in one
// extended segment, an Execute of `SELECT pg_catalog.length(1)` (a qualified built-in of a constant:
// code the data path counts as unable to change settings) ran agent_off through the implicit cast and
// turned standard_conforming_strings off, and the Query behind it, `SELECT 'a\' , ' ; DELETE FROM
// accounts ; -- '`, deleted every account. A cast also changes how the application's expressions
// resolve. Creating or dropping a cast with a function or WITH INOUT is `system` now (reserved for
// admin grants, like a cast WITHOUT FUNCTION). And while the database has any cast with a user
// function (an admin grant's, a DBA's), a call or cast converting a typed value counts as code that
// may change settings in a pipeline (the catalog is asked, cached).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import type { ServerMessage } from "../../gateway/postgres/protocol.ts";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { CONNECTION, fixtureWithClients, refusedByRule } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

const GUARDRAILS: GuardrailRule[] = [{ name: "keep-accounts", action: "block", sql: { statementKinds: ["DELETE", "UPDATE"], tables: ["public.accounts"] } }];

/** Read by the server as a SELECT and a DELETE when standard_conforming_strings is off. */
const SCS_SMUGGLE = "SELECT 'a\\' , ' ; DELETE FROM accounts ; -- '";

describe("casts change how every later expression resolves", () => {
	const c = fixtureWithClients({ guardrails: GUARDRAILS }, async (fx) => {
		await fx.pg.query("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)");
		await fx.pg.query("INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 5) g");
		// a DBA's helper that already exists
		await fx.pg.query("CREATE FUNCTION app_set(k text, v text) RETURNS text LANGUAGE sql AS $$ SELECT set_config(k, v, false) $$");
	});
	const userCasts = async (): Promise<number> => (await c.fx.pg.query("SELECT count(*)::int AS n FROM pg_cast WHERE oid >= 16384")).rows[0]!.n;

	test("a read-write grant may not create or drop a cast", async () => {
		await c.rw.query("CREATE FUNCTION agent_off(int) RETURNS text LANGUAGE sql AS $$ SELECT app_set('standard_conforming_strings', 'off') $$");
		for (const sql of [
			"CREATE CAST (int4 AS text) WITH FUNCTION agent_off(int4) AS IMPLICIT",
			"CREATE CAST (int4 AS text) WITH FUNCTION agent_off(int4) AS ASSIGNMENT",
			"CREATE CAST (int4 AS text) WITH FUNCTION agent_off(int4)",
			"CREATE CAST (int4 AS text) WITH INOUT AS IMPLICIT",
			"DROP CAST IF EXISTS (int4 AS text)",
		]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("builtin:system"), sql);
		}
		assert.equal(await userCasts(), 0);
	});

	test("with a cast made by an admin grant or a DBA, a qualified built-in call of a typed value may change settings", async () => {
		await c.admin.query("CREATE CAST (int4 AS text) WITH FUNCTION agent_off(int4) AS IMPLICIT");
		try {
			const raw = await RawClient.login(c.fx.port, c.fx.caPem, CONNECTION, await c.fx.token("alice"));
			raw.send(clientMessages.parse("", "SELECT pg_catalog.length(1)"), clientMessages.bind("", ""), clientMessages.execute(""), clientMessages.query(SCS_SMUGGLE));
			const ms: ServerMessage[] = [];
			for (;;) {
				const m = await raw.next().catch(() => undefined);
				if (!m) break;
				ms.push(m);
				if (m.type === "readyForQuery") break;
			}
			raw.end();
			assert.ok(!ms.some((m) => m.type === "commandComplete" && m.tag.startsWith("DELETE")), JSON.stringify(ms));
			assert.ok(ms.some((m) => m.type === "errorResponse" && m.fields.C === "42501" && /send Sync first/.test(m.fields.M ?? "")), JSON.stringify(ms));
			assert.equal((await c.fx.pg.query("SELECT count(*)::int AS n FROM accounts")).rows[0]!.n, 5);
		} finally {
			await c.fx.pg.query("DROP CAST IF EXISTS (int4 AS text)");
		}
	});

	test("an admin grant keeps casts (break glass)", async () => {
		await c.admin.query("BEGIN");
		try {
			await c.admin.query("CREATE TYPE mood AS ENUM ('ok', 'sad')");
			await c.admin.query("CREATE CAST (mood AS text) WITH INOUT");
		} finally {
			await c.admin.query("ROLLBACK");
		}
	});
});
