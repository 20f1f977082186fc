// Regression (red-team round 10 on access levels: privileges by another name). GRANT and REVOKE are
// reserved for admin grants (`privilege`), but a read-write grant handed objects to another role with
// OWNER TO, a plain write to the classifier: `ALTER TABLE accounts OWNER TO reporting` (the new owner
// holds every privilege on the table, may grant them, drop it, and reads past row security),
// `ALTER SCHEMA app OWNER TO reporting` (a schema's owner may drop every object in it), `ALTER
// FUNCTION ... OWNER TO` (a SECURITY DEFINER function then runs as the new owner), `ALTER SEQUENCE
// ... OWNER TO`, `CREATE SCHEMA ... AUTHORIZATION reporting`. These are `privilege` now; owning an
// object oneself (`OWNER TO CURRENT_USER`) stays allowed.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { fixtureWithClients, refusedByRule } from "./fixture.ts";

describe("handing an object to another role is a privilege change", () => {
	const c = fixtureWithClients({}, async (fx) => {
		for (const sql of [
			"CREATE ROLE reporting NOLOGIN",
			"CREATE TABLE accounts (id serial PRIMARY KEY, balance int NOT NULL)",
			"CREATE VIEW account_ids AS SELECT id FROM accounts",
			"CREATE SEQUENCE invoice_numbers",
			"CREATE SCHEMA app",
			"CREATE FUNCTION app.total() RETURNS bigint LANGUAGE sql SECURITY DEFINER AS 'SELECT sum(balance) FROM public.accounts'",
		]) {
			await fx.pg.query(sql);
		}
	});
	const owners = async (): Promise<string[]> =>
		(
			await c.fx.pg.query(
				`SELECT pg_get_userbyid(relowner) AS o FROM pg_class WHERE relname IN ('accounts', 'account_ids', 'invoice_numbers')
				 UNION ALL SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname IN ('app', 'rep')
				 UNION ALL SELECT pg_get_userbyid(proowner) FROM pg_proc WHERE proname = 'total'`,
			)
		).rows.map((r) => r.o as string);

	test("OWNER TO another role, or AUTHORIZATION, is refused below admin", async () => {
		for (const sql of [
			"ALTER TABLE accounts OWNER TO reporting",
			"ALTER VIEW account_ids OWNER TO reporting",
			"ALTER SEQUENCE invoice_numbers OWNER TO reporting",
			"ALTER SCHEMA app OWNER TO reporting",
			"ALTER FUNCTION app.total() OWNER TO reporting",
			"CREATE SCHEMA rep AUTHORIZATION reporting",
		]) {
			await assert.rejects(c.rw.query(sql), refusedByRule("builtin:privilege"), sql);
		}
		assert.ok(!(await owners()).includes("reporting"), JSON.stringify(await owners()));
	});

	test("owning an object oneself, and admin grants, stay allowed", async () => {
		await c.rw.query("CREATE TABLE scratch (id int)");
		await c.rw.query("ALTER TABLE scratch OWNER TO CURRENT_USER");
		await c.admin.query("BEGIN");
		try {
			await c.admin.query("ALTER TABLE accounts OWNER TO reporting");
		} finally {
			await c.admin.query("ROLLBACK");
		}
	});
});
