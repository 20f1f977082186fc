// Regression (red-team round 8: guardrails). A rule or a row trigger created on a table hands every
// row later written to it to code that can copy it elsewhere; the statement carried CREATE RULE or
// CREATE TRIGGER, not SELECT. Through the real gateway to a real PostgreSQL, under a rule blocking
// SELECT of secrets, a read-write grant
//  - ran CREATE RULE leak AS ON UPDATE TO secrets DO ALSO INSERT INTO scratch VALUES (NEW.secret);
//  - ran CREATE TRIGGER leak AFTER UPDATE ON secrets FOR EACH ROW EXECUTE FUNCTION audit_row() (a
//    DBA's generic audit function, writing row_to_json(NEW) into audit_log);
// and read the secrets from scratch and audit_log after the application's next UPDATE; and with its
// own SQL function leak(text) inserting its argument into scratch,
//  - ALTER TABLE secrets ADD CONSTRAINT c CHECK (leak(secret)) copied every secret at once (the
//    constraint is checked on every row), as did an operator over such a function, an index or a
//    generated column over one marked IMMUTABLE.
// Creating a rule with actions or a row trigger on a relation now also reads it (kind SELECT), and
// so does an ALTER TABLE, CREATE INDEX, CREATE/ALTER POLICY or CREATE STATISTICS whose expressions
// use a column: the binding statement is matched as if it ran what it binds.
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

	test("definitions evaluating expressions over the ruled table's rows are refused", async () => {
		// the grant's own SQL functions and operator, copying what they are given into scratch
		await c.rw.query("CREATE FUNCTION leak(text) RETURNS bool LANGUAGE sql AS 'INSERT INTO scratch VALUES ($1) RETURNING true'");
		await c.rw.query("CREATE FUNCTION leak_i(text) RETURNS bool LANGUAGE sql IMMUTABLE AS 'INSERT INTO scratch VALUES ($1) RETURNING true'");
		await c.rw.query("CREATE FUNCTION leak2(text, text) RETURNS bool LANGUAGE sql AS 'INSERT INTO scratch VALUES ($1) RETURNING true'");
		await c.rw.query("CREATE OPERATOR ### (leftarg = text, rightarg = text, function = leak2)");
		for (const sql of [
			"ALTER TABLE secrets ADD CONSTRAINT c CHECK (leak(secret))",
			"ALTER TABLE secrets ADD CONSTRAINT c2 CHECK (secret ### 'x')",
			"CREATE INDEX ON secrets ((leak_i(secret)))",
			"ALTER TABLE secrets ADD COLUMN g bool GENERATED ALWAYS AS (leak_i(secret)) STORED",
		]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("no-reading-secrets"), sql);
		}
		assert.equal(Number(await copied()), 0);
	});

	test("rules and triggers on other tables stay allowed", async () => {
		await c.rw.query("BEGIN");
		try {
			await c.rw.query("CREATE RULE r AS ON UPDATE TO scratch DO ALSO INSERT INTO audit_log VALUES (NEW.v)");
			await c.rw.query("CREATE TRIGGER t AFTER UPDATE ON scratch FOR EACH ROW EXECUTE FUNCTION audit_row()");
			await c.rw.query("ALTER TABLE scratch ADD CONSTRAINT v_len CHECK (length(v) < 100)");
			await c.rw.query("CREATE INDEX ON secrets (secret)");
		} finally {
			await c.rw.query("ROLLBACK");
		}
	});
});
