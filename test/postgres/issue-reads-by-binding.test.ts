// Regression (red-team round 8: guardrails). A rule or a row trigger created on a table hands every
// row later written to it to code that can copy it elsewhere; the statement carried CREATE RULE or
// CREATE TRIGGER, not SELECT. Through the real gateway to a real PostgreSQL, under a rule blocking
// SELECT of secrets, a read-write grant
//  - ran CREATE RULE leak AS ON UPDATE TO secrets DO ALSO INSERT INTO scratch VALUES (NEW.secret);
//  - ran CREATE TRIGGER leak AFTER UPDATE ON secrets FOR EACH ROW EXECUTE FUNCTION audit_row() (a
//    DBA's generic audit function, writing row_to_json(NEW) into audit_log);
// and read the secrets from scratch and audit_log after the application's next UPDATE. Creating a
// rule with actions or a row trigger on a relation now also reads it (kind SELECT), the binding
// statement being matched as if it ran what it binds.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { fixtureWithClients, refusedByRule } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [{ name: "no-reading-secrets", action: "block", sql: { statementKinds: ["SELECT"], tables: ["public.secrets"] } }];

describe("rules and row triggers read the rows of their table", () => {
	const c = fixtureWithClients({ guardrails: GUARDRAILS }, async (fx) => {
		for (const s of [
			"CREATE TABLE secrets (id int PRIMARY KEY, secret text NOT NULL)",
			"INSERT INTO secrets SELECT g, 'topsecret-' || g FROM generate_series(1, 3) g",
			"CREATE TABLE scratch (v text)",
			"CREATE TABLE audit_log (row_data text)",
			"CREATE FUNCTION audit_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN INSERT INTO audit_log VALUES (row_to_json(NEW)::text); RETURN NEW; END $$",
		]) {
			await fx.pg.query(s);
		}
	});
	const copied = async (): Promise<number> =>
		(await c.fx.pg.query("SELECT (SELECT count(*) FROM scratch) + (SELECT count(*) FROM audit_log) AS n")).rows[0]!.n as number;

	test("CREATE RULE and CREATE TRIGGER on the ruled table are refused", async () => {
		for (const sql of [
			"CREATE RULE leak AS ON UPDATE TO secrets DO ALSO INSERT INTO scratch VALUES (NEW.secret)",
			"CREATE RULE leak2 AS ON INSERT TO public.secrets DO ALSO INSERT INTO scratch SELECT NEW.secret",
			"CREATE TRIGGER leak AFTER UPDATE ON secrets FOR EACH ROW EXECUTE FUNCTION audit_row()",
		]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("no-reading-secrets"), sql);
		}
		// the application's next write copies nothing
		await c.fx.pg.query("UPDATE secrets SET id = id");
		assert.equal(Number(await copied()), 0);
	});

	test("rules and triggers on other tables stay allowed", async () => {
		await c.rw.query("BEGIN");
		try {
			await c.rw.query("CREATE RULE r AS ON UPDATE TO scratch DO ALSO INSERT INTO audit_log VALUES (NEW.v)");
			await c.rw.query("CREATE TRIGGER t AFTER UPDATE ON scratch FOR EACH ROW EXECUTE FUNCTION audit_row()");
		} finally {
			await c.rw.query("ROLLBACK");
		}
	});
});
