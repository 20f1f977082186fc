// Regression (red-team round 9 on guardrails: rules and triggers that fire later, for other sessions).
// Under a rule blocking DELETE and UPDATE of accounts, a read-write grant decided what the
// application's later writes to accounts do: `CREATE RULE stop_updates AS ON UPDATE TO accounts DO INSTEAD
// NOTHING` (a CREATE RULE naming no other table: it carried CREATE RULE only) made every UPDATE of
// accounts do nothing, and a BEFORE row trigger on a DBA's generic trigger function returning NULL
// (`skip_row`, kept for archive tables) did the same to DELETEs. Such a rule or trigger binds the
// writes it intercepts on its relation now, and meets the rules on them. So do dropping, enabling or
// disabling a table's rules and triggers, and row-level security: `DROP RULE soft_delete ON
// accounts` (a DBA's `ON DELETE DO INSTEAD UPDATE ... SET deleted = true`) turned the application's
// next DELETE into a real one, and `ALTER TABLE accounts FORCE ROW LEVEL SECURITY` or a restrictive
// policy `USING (false)` makes an owner's writes match no row; and `ALTER TABLE members ALTER COLUMN
// deleted SET DEFAULT true` (under a rule blocking INSERT) marked every member the application added
// next as deleted; so did `ALTER DOMAIN` of a domain's default, and an admin grant's `CREATE OR
// REPLACE FUNCTION touch() RETURNS trigger ... NEW.balance := 0` (a DBA's BEFORE UPDATE trigger
// function on accounts) zeroed the application's next updates.
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { fixtureWithClients, refusedByRule, refusedMatching } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [
	{ name: "keep-accounts", action: "block", sql: { statementKinds: ["DELETE", "UPDATE"], tables: ["public.accounts"] } },
	{ name: "keep-members", action: "block", sql: { statementKinds: ["DELETE", "INSERT"], tables: ["public.members"] } },
];

describe("rules and triggers that intercept later writes to a ruled table", () => {
	const c = fixtureWithClients({ guardrails: GUARDRAILS }, async (fx) => {
		await fx.pg.query("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)");
		await fx.pg.query("CREATE TABLE scratch (id int PRIMARY KEY, balance int NOT NULL)");
		await fx.pg.query("CREATE FUNCTION skip_row() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$");
		// a DBA's soft delete on a table of its own
		await fx.pg.query("CREATE DOMAIN member_flag AS boolean DEFAULT false");
		await fx.pg.query("CREATE TABLE members (id int PRIMARY KEY, deleted boolean NOT NULL DEFAULT false, vip member_flag)");
		// a DBA's trigger keeping a change stamp on accounts
		await fx.pg.query("ALTER TABLE accounts ADD COLUMN changed timestamptz");
		await fx.pg.query("CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.changed := now(); RETURN NEW; END $$");
		await fx.pg.query("CREATE TRIGGER touch BEFORE UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION touch()");
		await fx.pg.query("INSERT INTO members SELECT g FROM generate_series(1, 3) g");
	});
	before(async () => {
		await c.fx.pg.query("INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 5) g");
	});

	/** The application's own writes, straight to PostgreSQL, after what the agent did. */
	async function applicationWrites(): Promise<{ updated: number; deleted: number }> {
		const u = await c.fx.pg.query("UPDATE accounts SET balance = balance + 1 WHERE id = 1");
		const d = await c.fx.pg.query("DELETE FROM accounts WHERE id = 5");
		await c.fx.pg.query("INSERT INTO accounts SELECT 5, 100 WHERE NOT EXISTS (SELECT 1 FROM accounts WHERE id = 5)");
		return { updated: u.rowCount ?? 0, deleted: d.rowCount ?? 0 };
	}

	test("a DO INSTEAD rule or a BEFORE row trigger on the ruled table is refused", async () => {
		for (const sql of [
			"CREATE RULE stop_updates AS ON UPDATE TO accounts DO INSTEAD NOTHING",
			"CREATE RULE keep AS ON DELETE TO public.accounts DO INSTEAD NOTHING",
			"CREATE RULE redirect AS ON UPDATE TO accounts DO INSTEAD UPDATE scratch SET balance = NEW.balance WHERE id = OLD.id",
			"CREATE TRIGGER keep BEFORE DELETE ON accounts FOR EACH ROW EXECUTE FUNCTION skip_row()",
			"CREATE TRIGGER halt BEFORE INSERT OR UPDATE ON accounts FOR EACH ROW EXECUTE FUNCTION skip_row()",
		]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("keep-accounts"), sql);
		}
		assert.deepEqual(await applicationWrites(), { updated: 1, deleted: 1 });
	});

	test("dropping or switching a table's rules, triggers or row security is refused", async () => {
		await c.fx.pg.query("CREATE RULE soft_delete AS ON DELETE TO members DO INSTEAD UPDATE members SET deleted = true WHERE id = OLD.id");
		for (const sql of ["DROP RULE soft_delete ON members", "ALTER TABLE members DISABLE RULE soft_delete"]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("keep-members"), sql);
		}
		// the application's delete is still a soft one
		await c.fx.pg.query("DELETE FROM members WHERE id = 1");
		assert.equal((await c.fx.pg.query("SELECT count(*)::int AS n FROM members")).rows[0]!.n, 3);
		for (const sql of [
			"ALTER TABLE accounts FORCE ROW LEVEL SECURITY",
			"ALTER TABLE accounts ENABLE ROW LEVEL SECURITY",
			"CREATE POLICY nothing ON accounts AS RESTRICTIVE FOR UPDATE USING (false)",
			"ALTER TABLE accounts DISABLE TRIGGER ALL",
			"DROP TRIGGER IF EXISTS audit ON accounts",
		]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("keep-accounts"), sql);
		}
	});

	test("changing the default later INSERTs write is refused", async () => {
		for (const sql of ["ALTER TABLE members ALTER COLUMN deleted SET DEFAULT true", "ALTER TABLE members ALTER COLUMN deleted DROP DEFAULT"]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("keep-members"), sql);
		}
		await c.fx.pg.query("INSERT INTO members (id) VALUES (10)");
		assert.deepEqual((await c.fx.pg.query("SELECT deleted FROM members WHERE id = 10")).rows, [{ deleted: false }]);
		// the classifier does not know which tables use the domain: it reaches every table (the first rule)
		await assert.rejects(c.rw.query("ALTER DOMAIN member_flag SET DEFAULT true"), refusedMatching(/keep-(accounts|members)/));
		// an admin grant replacing the DBA's trigger function on accounts
		await assert.rejects(
			c.admin.query("CREATE OR REPLACE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.balance := 0; RETURN NEW; END $$"),
			refusedByRule("keep-accounts"),
		);
		await c.fx.pg.query("UPDATE accounts SET balance = 100 WHERE id = 2");
		assert.deepEqual((await c.fx.pg.query("SELECT balance FROM accounts WHERE id = 2")).rows, [{ balance: 100 }]);
		// a default on a table no rule names is the grant's to change
		await c.rw.query("ALTER TABLE scratch ALTER COLUMN balance SET DEFAULT 0");
	});

	test("on other tables, and rules or triggers that change no write, they stay allowed", async () => {
		await c.rw.query("CREATE RULE quiet AS ON DELETE TO scratch DO INSTEAD NOTHING");
		await c.rw.query("CREATE TRIGGER skip BEFORE UPDATE ON scratch FOR EACH ROW EXECUTE FUNCTION skip_row()");
		await c.rw.query("CREATE RULE tell AS ON UPDATE TO accounts DO ALSO NOTIFY accounts_changed");
		await c.rw.query("CREATE TRIGGER later AFTER UPDATE ON accounts FOR EACH STATEMENT EXECUTE FUNCTION skip_row()");
		await c.rw.query("ALTER TABLE scratch DISABLE TRIGGER skip");
		await c.rw.query("DROP RULE quiet ON scratch");
		assert.deepEqual(await applicationWrites(), { updated: 1, deleted: 1 });
	});
});
