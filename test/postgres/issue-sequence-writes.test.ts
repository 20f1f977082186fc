// Regression (red-team round 10 on guardrails: the values later INSERTs write). Under a rule blocking
// INSERT, UPDATE and DELETE of accounts, ledger and purchases, a read-write grant turned the
// application's next INSERTs into duplicate-key failures without naming a table: `SELECT
// setval('accounts_id_seq', 1)` (the serial column's sequence), `ALTER SEQUENCE accounts_id_seq
// RESTART`, setval of an identity column's sequence and of a sequence a column DEFAULT draws from.
// A sequence is the value later INSERTs write, like a column's default (round 9 bound SET DEFAULT
// on the table): setval and ALTER SEQUENCE bind INSERT/UPDATE/MERGE on the sequence now, and the
// catalog leads from a sequence to the tables drawing from it (pg_depend).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { fixtureWithClients, refusedByRule } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [
	{
		name: "keep-books",
		action: "block",
		sql: { statementKinds: ["INSERT", "UPDATE", "DELETE"], tables: ["public.accounts", "public.ledger", "public.purchases"] },
	},
];

describe("sequences that give a ruled table its values", () => {
	const c = fixtureWithClients({ guardrails: GUARDRAILS }, async (fx) => {
		await fx.pg.query("CREATE TABLE accounts (id serial PRIMARY KEY, balance int NOT NULL DEFAULT 100)");
		await fx.pg.query("CREATE TABLE ledger (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, note text)");
		await fx.pg.query("CREATE SEQUENCE order_numbers");
		await fx.pg.query("CREATE TABLE purchases (id int PRIMARY KEY DEFAULT nextval('order_numbers'), note text)");
		for (const t of ["accounts (balance) VALUES (1), (2), (3)", "ledger (note) VALUES ('a'), ('b')", "purchases (note) VALUES ('a'), ('b')"]) {
			await fx.pg.query(`INSERT INTO ${t}`);
		}
	});

	/** The application's own inserts, straight to PostgreSQL: undefined when all succeed. */
	async function applicationInserts(): Promise<string | undefined> {
		try {
			await c.fx.pg.query("INSERT INTO accounts (balance) VALUES (5)");
			await c.fx.pg.query("INSERT INTO ledger (note) VALUES ('c')");
			await c.fx.pg.query("INSERT INTO purchases (note) VALUES ('c')");
			return undefined;
		} catch (e) {
			return (e as Error).message;
		}
	}

	test("resetting a ruled table's sequence is refused", async () => {
		for (const sql of [
			"SELECT setval('accounts_id_seq', 1)",
			"SELECT pg_catalog.setval('public.accounts_id_seq'::regclass, 1, false)",
			"ALTER SEQUENCE accounts_id_seq RESTART WITH 1",
			"ALTER SEQUENCE public.accounts_id_seq INCREMENT BY -1 MINVALUE -10",
			"SELECT setval('ledger_id_seq', 1)",
			"SELECT setval('order_numbers', 1)",
			"ALTER SEQUENCE order_numbers RESTART",
		]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("keep-books"), sql);
		}
		// a sequence named by an expression may be any table's
		await assert.rejects(c.rw.query("SELECT setval(pg_get_serial_sequence('accounts', 'id'), 1)"), refusedByRule("keep-books"));
		assert.equal(await applicationInserts(), undefined);
	});

	test("the grant's own sequences, and drawing values, stay allowed", async () => {
		await c.rw.query("CREATE SEQUENCE agent_seq");
		await c.rw.query("SELECT setval('agent_seq', 10)");
		await c.rw.query("ALTER SEQUENCE agent_seq RESTART WITH 5");
		assert.deepEqual((await c.rw.query("SELECT nextval('agent_seq')::int AS v")).rows, [{ v: 5 }]);
		await c.rw.query("SELECT nextval('accounts_id_seq')");
		assert.equal(await applicationInserts(), undefined);
	});
});
