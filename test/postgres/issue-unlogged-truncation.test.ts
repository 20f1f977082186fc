// Regression (red-team round 9 on guardrails: writes by another name). Under a rule blocking
// TRUNCATE and DELETE of accounts, a read-write grant's `ALTER TABLE accounts SET UNLOGGED` (an ALTER
// TABLE only) passed: an unlogged table's rows are not written to the WAL, so PostgreSQL empties it
// at the next crash recovery and every standby (the one a failover promotes) holds it empty. It binds
// TRUNCATE and DELETE on the table now.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { fixtureWithClients, refusedByRule } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [{ name: "keep-accounts", action: "block", sql: { statementKinds: ["TRUNCATE", "DELETE"], tables: ["public.accounts"] } }];

describe("SET UNLOGGED is a TRUNCATE waiting for a crash or a failover", () => {
	const c = fixtureWithClients({ guardrails: GUARDRAILS }, async (fx) => {
		await fx.pg.query("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)");
		await fx.pg.query("CREATE TABLE scratch (id int PRIMARY KEY)");
	});
	const persistence = async (t: string): Promise<string> => (await c.fx.pg.query("SELECT relpersistence FROM pg_class WHERE oid = $1::regclass", [t])).rows[0]!.relpersistence;

	test("on the ruled table it is refused; elsewhere it stays the grant's", async () => {
		await assert.rejects(c.rw.query("ALTER TABLE accounts SET UNLOGGED"), refusedByRule("keep-accounts"));
		assert.equal(await persistence("accounts"), "p");
		await c.rw.query("ALTER TABLE scratch SET UNLOGGED");
		assert.equal(await persistence("scratch"), "u");
		await c.rw.query("ALTER TABLE accounts SET LOGGED");
	});
});
