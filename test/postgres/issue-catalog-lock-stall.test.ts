// Regression (red-team round: guardrails). Table rules ask the catalog on the gateway's own catalog
// connection, one per Connection, shared by every session, with queries serialised. The look-up of a
// view runs pg_get_viewdef, which waits for the view's lock. A read-write agent ran BEGIN; LOCK TABLE
// reporting.acct_v IN ACCESS EXCLUSIVE MODE; CREATE TEMP TABLE zz () (any DDL empties the catalog
// cache); DELETE FROM reporting.acct_v WHERE id > 0: the look-up waited on the agent's own lock with
// no timeout, and every other session's statement that needed a look-up (a read-only grant's SELECT
// count(*) FROM other) hung behind it until the agent disconnected. A timeout alone would have made
// it a bypass: a failed look-up was taken as "no such relation" and the DELETE matched its names
// only. Now the catalog connection has lock_timeout 2 s and statement_timeout 10 s, and a failed
// look-up refuses the statement (rule `catalog`).
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { type Fixture, startFixture } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [
	{ name: "keep-accounts", action: "block", sql: { statementKinds: ["DELETE", "UPDATE"], tables: ["public.accounts"] } },
];

function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
	let timer: NodeJS.Timeout | undefined;
	const late = new Promise<never>((_, reject) => {
		timer = setTimeout(() => reject(new Error(`${what}: no answer within ${ms} ms`)), ms);
	});
	return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

describe("a lock held by one session does not stall the catalog look-ups of all", () => {
	let fx: Fixture;
	before(async () => {
		fx = await startFixture({ guardrails: GUARDRAILS });
		for (const s of [
			"CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)",
			"INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 5) g",
			"CREATE SCHEMA reporting",
			"CREATE VIEW reporting.acct_v AS SELECT * FROM public.accounts",
			"CREATE TABLE other (id int)",
		]) {
			await fx.pg.query(s);
		}
	});
	after(async () => {
		await fx?.stop();
	});
	printLogsOnFailure(() => [["postgres", fx?.pg]]);

	test("the locked view's look-up fails closed, other sessions go on", async () => {
		const alice = await fx.connect("alice");
		const bob = await fx.connect("bob");
		alice.on("error", () => undefined);
		bob.on("error", () => undefined);
		try {
			await alice.query("BEGIN");
			await alice.query("LOCK TABLE reporting.acct_v IN ACCESS EXCLUSIVE MODE");
			await alice.query("CREATE TEMP TABLE zz ()");
			const del = alice.query("DELETE FROM reporting.acct_v WHERE id > 0");
			del.catch(() => undefined);
			// bob's statement needs a look-up of its own (other) while alice's is pending
			await new Promise((r) => setTimeout(r, 200));
			const r = await within(bob.query("SELECT count(*)::int AS n FROM other"), 8000, "bob's SELECT");
			assert.equal(r.rows[0].n, 0);
			await assert.rejects(within(del, 8000, "alice's DELETE"), (e: { code?: string; message: string }) => {
				assert.equal(e.code, "42501", e.message);
				assert.match(e.message, /could not resolve the tables/);
				return true;
			});
			await alice.query("ROLLBACK");
		} finally {
			await alice.end().catch(() => undefined);
			await bob.end().catch(() => undefined);
		}
		assert.equal((await fx.pg.query("SELECT count(*)::int AS n FROM accounts")).rows[0]!.n, 5);
		// once the lock is gone the view is resolved and the rule applies as before
		const c = await fx.connect("alice");
		try {
			await assert.rejects(c.query("DELETE FROM reporting.acct_v WHERE id > 0"), /keep-accounts/);
		} finally {
			await c.end();
		}
	});
});
