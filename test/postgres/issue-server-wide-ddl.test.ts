// Regression (red-team round: access levels). Creating or altering server-wide objects (databases,
// tablespaces, event triggers, extensions, foreign servers, publications...) is `system`, reserved
// for admin grants; dropping, renaming, re-owning or moving them went through other statement types
// and was a plain write. Through the real gateway to a real PostgreSQL, a read-write grant:
//  - DROP EVENT TRIGGER guard_ddl removed the DBA's DDL guard (CREATE/ALTER EVENT TRIGGER are refused);
//  - ALTER DATABASE other RENAME TO other2 renamed another application's database;
//  - DROP EXTENSION tablefunc dropped an extension (CREATE EXTENSION is refused).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { refusedByRule, fixtureWithClients } from "./fixture.ts";

describe("DDL on server-wide objects is reserved for admin grants", () => {
	const c = fixtureWithClients({}, async (fx) => {
		await fx.pg.query("CREATE DATABASE other");
		await fx.pg.query("CREATE FUNCTION guard_fn() RETURNS event_trigger LANGUAGE plpgsql AS $$ BEGIN END $$");
		await fx.pg.query("CREATE EVENT TRIGGER guard_ddl ON ddl_command_start EXECUTE FUNCTION guard_fn()");
		await fx.pg.query("CREATE EXTENSION tablefunc");
		await fx.pg.query("CREATE TABLE scratch (id int)");
	});

	test("drop, rename and owner changes of server-wide objects are refused", async () => {
		for (const sql of [
			"DROP EVENT TRIGGER guard_ddl",
			"ALTER EVENT TRIGGER guard_ddl RENAME TO unguarded",
			"ALTER EVENT TRIGGER guard_ddl DISABLE",
			"ALTER DATABASE other RENAME TO other2",
			"ALTER DATABASE other OWNER TO CURRENT_USER",
			"DROP EXTENSION tablefunc",
			"ALTER EXTENSION tablefunc SET SCHEMA pg_catalog",
		]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("builtin:system"), sql);
		}
		const q = async (sql: string) => (await c.fx.pg.query(sql)).rows[0]!.n as number;
		assert.equal(await q("SELECT count(*)::int AS n FROM pg_event_trigger WHERE evtname = 'guard_ddl' AND evtenabled = 'O'"), 1);
		assert.equal(await q("SELECT count(*)::int AS n FROM pg_database WHERE datname = 'other'"), 1);
		assert.equal(await q("SELECT count(*)::int AS n FROM pg_extension WHERE extname = 'tablefunc'"), 1);
	});

	test("DDL on the grant's own tables stays allowed", async () => {
		await c.rw.query("BEGIN");
		try {
			await c.rw.query("ALTER TABLE scratch RENAME TO scratch2");
			await c.rw.query("ALTER TABLE scratch2 OWNER TO CURRENT_USER");
		} finally {
			await c.rw.query("ROLLBACK");
		}
	});
});
