// Regression (red-team round: guardrails, admin grants). A logical-replication subscription writes
// to local tables of the names a publisher publishes, by a background worker, with statements no
// one sends through the gateway: for an admin grant (whose GuardrailRules are its only guard) it is
// code the classifier cannot see, like dblink_exec or a loopback foreign table. Through the real
// gateway to a real PostgreSQL (wal_level logical), under an admin grant whose rule blocks DELETE of
// accounts: CREATE SUBSCRIPTION to a publication of another database's `accounts` (loopback), then
// a DELETE there, deleted the rows of shop's accounts. CREATE and ALTER SUBSCRIPTION now meet every
// rule (risk unknown), as IMPORT FOREIGN SCHEMA and ALTER SERVER do.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { printLogsOnFailure, startPostgres } from "../env/index.ts";
import { type Fixture, refusedByRule, startFixture } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [{ name: "keep-accounts", action: "block", sql: { statementKinds: ["DELETE", "UPDATE", "TRUNCATE"], tables: ["public.accounts"] } }];

describe("an admin grant's subscription meets its rules", () => {
	let fx: Fixture;
	before(async () => {
		const pgh = await startPostgres({ settings: { wal_level: "logical", max_replication_slots: 4, max_wal_senders: 4 } });
		fx = await startFixture({ pg: pgh, guardrails: GUARDRAILS });
		await fx.pg.query("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)");
		await fx.pg.query("INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 5) g");
		// the publisher: another database on the same server, holding a table of the same name
		await fx.pg.query("CREATE DATABASE other");
		await fx.pg.query("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)", [], { database: "other" });
		await fx.pg.query("INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 5) g", [], { database: "other" });
		await fx.pg.query("CREATE PUBLICATION pub FOR TABLE accounts", [], { database: "other" });
	});
	after(async () => {
		await fx?.pg.query("DROP SUBSCRIPTION IF EXISTS sub").catch(() => undefined);
		await fx?.stop();
		await fx?.pg.stop();
	});
	printLogsOnFailure(() => [["postgres", fx?.pg]]);

	test("CREATE SUBSCRIPTION is refused", async () => {
		const root = await fx.connect("root");
		try {
			// a slot made beforehand, as CREATE SUBSCRIPTION cannot make one on its own server in a
			// single transaction
			await fx.pg.query("SELECT pg_create_logical_replication_slot('sub', 'pgoutput')", [], { database: "other" });
			const conn = `host=${fx.pg.socketDir} port=${fx.pg.port} user=${fx.pg.superuser} dbname=other`;
			await assert.rejects(
				root.query(`CREATE SUBSCRIPTION sub CONNECTION '${conn}' PUBLICATION pub WITH (create_slot = false, copy_data = false)`),
				refusedByRule("keep-accounts"),
			);
			await assert.rejects(root.query("ALTER SUBSCRIPTION sub ENABLE"), refusedByRule("keep-accounts"));
		} finally {
			await root.end();
		}
		// what a subscription replays: the publisher's DELETE (the old code deleted shop's rows
		// within a few seconds; wait that long for it not to happen)
		await fx.pg.query("DELETE FROM accounts", [], { database: "other" });
		const count = async () => (await fx.pg.query("SELECT count(*)::int AS n FROM accounts")).rows[0]!.n as number;
		for (let i = 0; i < 20 && (await count()) === 5; i++) await new Promise((r) => setTimeout(r, 250));
		assert.equal(await count(), 5);
		assert.equal((await fx.pg.query("SELECT count(*)::int AS n FROM pg_subscription")).rows[0]!.n, 0);
	});
});
