// Regression (red-team round 10 on guardrails: functions run by code the statement does not show).
// Under a rule blocking pg_notify, a read-write grant made the server call it through a DBA's stored
// code, naming only a table, a view or another function: an INSERT into a table whose CHECK, column
// DEFAULT, domain CHECK or AFTER INSERT trigger calls it (directly or through the DBA's routine
// `announce(text)`), a SELECT from a view calling `announce`, and `SELECT announce('x')` itself. Rules
// on functions matched the names in the statement's text only (tables were followed through views
// for table rules, never functions). The gateway now follows, through the catalog, the stored code a
// statement runs (a view's definition; a written table's defaults, CHECKs, its columns' domains,
// triggers, rules, policies, index expressions) and the bodies of the user routines called, and
// rules on functions meet those calls.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { fixtureWithClients, refusedByRule } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [{ name: "no-notify", action: "block", sql: { functions: ["pg_notify"] } }];

describe("functions a statement runs through stored code", () => {
	const c = fixtureWithClients({ guardrails: GUARDRAILS }, async (fx) => {
		for (const sql of [
			"CREATE TABLE announced (note text)",
			// the DBA's routine: records what it announces, then notifies the workers
			"CREATE FUNCTION announce(t text) RETURNS boolean LANGUAGE plpgsql AS $$ BEGIN INSERT INTO announced VALUES (t); PERFORM pg_notify('jobs', t); RETURN true; END $$",
			"CREATE FUNCTION announce_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM announce(NEW.note); RETURN NEW; END $$",
			"CREATE FUNCTION tell(t text) RETURNS boolean LANGUAGE sql AS $$ SELECT announce(t) $$",
			"CREATE TABLE jobs (id int PRIMARY KEY, note text CHECK (tell(note)))",
			"CREATE TABLE tickets (id int PRIMARY KEY, note text, sent boolean DEFAULT announce('ticket'))",
			"CREATE TABLE queue (id int PRIMARY KEY, note text)",
			"CREATE TRIGGER queued AFTER INSERT ON queue FOR EACH ROW EXECUTE FUNCTION announce_row()",
			"CREATE DOMAIN announced_text AS text CHECK (announce(VALUE))",
			"CREATE TABLE memos (id int PRIMARY KEY, body announced_text)",
			"CREATE TABLE notes_src (id int PRIMARY KEY, note text)",
			"INSERT INTO notes_src VALUES (1, 'hello')",
			"CREATE VIEW announcements AS SELECT id, announce(note) AS sent FROM notes_src",
			"CREATE TABLE plain (id int PRIMARY KEY, note text)",
		]) {
			await fx.pg.query(sql);
		}
	});

	test("a statement whose stored code calls the ruled function is refused", async () => {
		for (const sql of [
			"INSERT INTO jobs VALUES (1, 'check')",
			"INSERT INTO tickets (id) VALUES (1)",
			"INSERT INTO queue VALUES (1, 'trigger')",
			"INSERT INTO memos VALUES (1, 'domain')",
			"SELECT * FROM announcements",
			"SELECT announce('direct')",
			"SELECT public.tell('nested')",
		]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("no-notify"), sql);
			await assert.rejects(c.rw.query({ text: sql, values: [] }), refusedByRule("no-notify"), sql);
		}
		assert.deepEqual((await c.fx.pg.query("SELECT note FROM announced")).rows, []);
	});

	test("statements that run none of it stay allowed", async () => {
		await c.rw.query("INSERT INTO plain VALUES (1, 'x')");
		await c.rw.query("UPDATE plain SET note = 'y' WHERE id = 1");
		for (const t of ["jobs", "tickets", "queue", "memos", "notes_src"]) await c.rw.query(`SELECT count(*) FROM ${t}`);
		await c.rw.query("SELECT upper(note) FROM plain");
		assert.deepEqual((await c.fx.pg.query("SELECT note FROM announced")).rows, []);
	});
});
