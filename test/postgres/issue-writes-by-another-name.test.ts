// Regression (red-team round: guardrails, writes by another name). Rules name statement kinds; some
// statements insert or delete rows under another kind. Through the real gateway to a real
// PostgreSQL, under rules blocking INSERT into accounts, DELETE and UPDATE of ledger, and unbounded
// DELETEs and UPDATEs:
//  - COPY accounts FROM STDIN (psql) inserted rows: COPY carried COPY/COPY FROM, not INSERT;
//  - TRUNCATE ledger emptied it: TRUNCATE carried TRUNCATE only, while PostgreSQL documents it as
//    "the same effect as an unqualified DELETE on each table" (the no-unbounded-deletes rule missed
//    it too);
//  - ALTER TABLE ledger ALTER COLUMN price TYPE numeric(12,0) rounded every price under a rule on
//    UPDATE of ledger (a type change without USING carried no UPDATE; the cast rewrites every value:
//    numeric scale, int from numeric, date from timestamp);
//  - BEGIN; CREATE TABLE c () INHERITS (accounts); INSERT INTO c VALUES (...) put rows into accounts
//    (SELECT * FROM accounts reads them): inside the creating transaction the catalog's own
//    connection cannot see c, so the INSERT named an unknown table; same with PARTITION OF.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { printLogsOnFailure, run } from "../env/index.ts";
import { type Fixture, startFixture } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [
	{ name: "accounts-append-only-by-app", action: "block", sql: { statementKinds: ["INSERT"], tables: ["public.accounts", "public.parted"] } },
	{ name: "keep-ledger", action: "block", sql: { statementKinds: ["DELETE"], tables: ["public.ledger"] } },
	{ name: "no-unbounded-deletes", action: "requireApproval", sql: { statementKinds: ["DELETE"], withoutWhere: true } },
	{ name: "keep-ledger-values", action: "block", sql: { statementKinds: ["UPDATE"], tables: ["public.ledger"] } },
	{ name: "no-unbounded-updates", action: "block", sql: { statementKinds: ["UPDATE"], withoutWhere: true } },
];

function refused(rule: RegExp) {
	return (e: { code?: string; message: string }) => {
		assert.equal(e.code, "42501", e.message);
		assert.match(e.message, rule);
		return true;
	};
}

describe("writes by another name meet the rule on the write", () => {
	let fx: Fixture;
	const count = async (table: string): Promise<number> => (await fx.pg.query(`SELECT count(*)::int AS n FROM ${table}`)).rows[0]!.n;
	before(async () => {
		fx = await startFixture({ guardrails: GUARDRAILS });
		await fx.pg.query("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)");
		await fx.pg.query("INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 5) g");
		await fx.pg.query("CREATE TABLE ledger (id int, amount int, price numeric(12,2), at timestamp)");
		await fx.pg.query("INSERT INTO ledger SELECT g, 1, 1.15, '2024-01-01 12:34:56' FROM generate_series(1, 5) g");
		await fx.pg.query("CREATE TABLE scratch (id int)");
		await fx.pg.query("CREATE TABLE parted (id int, v int) PARTITION BY RANGE (id)");
		await fx.pg.query("CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (100)");
	});
	after(async () => {
		await fx?.stop();
	});
	printLogsOnFailure(() => [["postgres", fx?.pg]]);

	test("COPY ... FROM STDIN is an INSERT (psql)", async () => {
		const env = { PATH: process.env.PATH ?? "" };
		const r = await run("/usr/bin/psql", ["-X", "-v", "ON_ERROR_STOP=1", "-c", "COPY accounts FROM STDIN", fx.dsn(await fx.token("alice"))], {
			env,
			input: "90\t0\n91\t0\n",
		});
		assert.notEqual(r.code, 0, r.stdout);
		assert.match(r.stderr, /accounts-append-only-by-app/);
		assert.equal(await count("accounts"), 5);
		// COPY into a table no rule names still works
		const ok = await run("/usr/bin/psql", ["-X", "-v", "ON_ERROR_STOP=1", "-c", "COPY scratch FROM STDIN", fx.dsn(await fx.token("alice"))], {
			env,
			input: "1\n2\n",
		});
		assert.equal(ok.code, 0, ok.stderr);
		assert.equal(await count("scratch"), 2);
	});

	test("TRUNCATE is a DELETE without WHERE", async () => {
		const c = await fx.connect("alice");
		try {
			await assert.rejects(c.query("TRUNCATE ledger"), refused(/keep-ledger/));
			await assert.rejects(c.query("TRUNCATE TABLE ONLY public.ledger RESTART IDENTITY"), refused(/keep-ledger/));
			assert.equal(await count("ledger"), 5);
		} finally {
			await c.end();
		}
	});

	test("a column type change casts every value: an UPDATE of the table", async () => {
		const c = await fx.connect("alice");
		try {
			for (const sql of [
				"ALTER TABLE ledger ALTER COLUMN price TYPE numeric(12,0)",
				"ALTER TABLE ledger ALTER COLUMN price SET DATA TYPE int",
				"ALTER TABLE ledger ALTER COLUMN at TYPE date",
			]) {
				await assert.rejects(c.query(sql), refused(/keep-ledger-values/), sql);
			}
			// a table no UPDATE rule names: as before (and not an unbounded write)
			await c.query("ALTER TABLE scratch ALTER COLUMN id TYPE bigint");
		} finally {
			await c.end();
		}
		const r = await fx.pg.query("SELECT sum(price)::text AS p, min(at)::text AS at FROM ledger");
		assert.deepEqual(r.rows[0], { p: "5.75", at: "2024-01-01 12:34:56" });
	});

	// Red-team round (guardrails, access levels): DROP COLUMN erased every row's value of a column
	// under rules on UPDATE of ledger and on unbounded UPDATEs (it carried ALTER TABLE only).
	test("DROP COLUMN erases a value in every row: an UPDATE without WHERE, and a DROP", async () => {
		const c = await fx.connect("alice");
		try {
			for (const sql of ["ALTER TABLE ledger DROP COLUMN amount", "ALTER TABLE IF EXISTS public.ledger DROP amount CASCADE"]) {
				await assert.rejects(c.query(sql), refused(/keep-ledger-values/), sql);
			}
			await assert.rejects(c.query("ALTER TABLE scratch ADD COLUMN note text, DROP COLUMN note"), refused(/no-unbounded-updates/));
		} finally {
			await c.end();
		}
		assert.equal((await fx.pg.query("SELECT sum(amount)::int AS a FROM ledger")).rows[0]!.a, 5);
	});

	test("a child created in the open transaction binds INSERT on its parent", async () => {
		const c = await fx.connect("alice");
		try {
			for (const create of [
				"CREATE TABLE c_inh () INHERITS (accounts)",
				"CREATE TABLE c_part PARTITION OF parted FOR VALUES FROM (100) TO (200)",
			]) {
				await c.query("BEGIN");
				await assert.rejects(c.query(create), refused(/accounts-append-only-by-app/), create);
				await c.query("ROLLBACK");
			}
			// a child of a table no INSERT rule names is fine
			await c.query("BEGIN");
			await c.query("CREATE TABLE s_child () INHERITS (scratch)");
			await c.query("INSERT INTO s_child VALUES (7)");
			await c.query("ROLLBACK");
		} finally {
			await c.end();
		}
		assert.equal(await count("accounts"), 5);
		assert.equal(await count("parted"), 0);
	});
});
