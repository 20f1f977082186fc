// Regression (red-team round 11: masking). Unqualified names are analysed with the session's own
// search_path, read from the upstream session at connect with "$user" replaced by the session's
// role; but a search_path the client sent at startup (the gateway forwards it) was taken verbatim,
// and the catalog connection, which runs as the Connection's role, read its "$user" as that role.
// Under a grant's dynamic role (dyn_reader, no schema of its name) a schema named after the
// Connection's role holding a clean `customers` then stood for `customers` in the plan while
// PostgreSQL read public.customers: `SELECT phone || '' FROM customers` showed every phone raw to
// a read-only grant whose client asked for `"$user", public` (the default, spelled out). The
// search_path is now read from the upstream session in every case.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { assertNoneOf, DEFAULT_GRANTS, fixtureWithClients } from "./fixture.ts";

describe('a client\'s startup search_path holding "$user"', () => {
	const phones: string[] = [];
	const c = fixtureWithClients(
		{
			maskRules: [{ name: "phone", columns: ["public.customers.phone"], strategy: { type: "redact" } }],
			grants: [...DEFAULT_GRANTS, { name: "dyn", user: "dora", access: "read-only", credential: { username: "dyn_reader", password: "dyn-secret-11" } }],
		},
		async (fx) => {
			phones.push(...(await fx.pg.query("SELECT phone FROM customers ORDER BY id")).rows.map((r) => r.phone as string));
			await fx.pg.createRole("dyn_reader", { password: "dyn-secret-11", grants: ["GRANT SELECT ON customers TO $role"] });
			// the schema "$user" names for the Connection's own role, holding a clean customers
			await fx.pg.query(`CREATE SCHEMA "${fx.pg.superuser}"`);
			await fx.pg.query(`CREATE TABLE "${fx.pg.superuser}".customers (id int, phone text)`);
		},
	);

	let dora: pg.Client;
	before(async () => {
		dora = new pg.Client(c.fx.clientConfig("dora", await c.fx.token("dora")));
		const withPath = dora as unknown as { getStartupConf(): Record<string, string> };
		const base = withPath.getStartupConf.bind(dora);
		withPath.getStartupConf = () => ({ ...base(), search_path: '"$user", public' });
		// the fixture's own `after` stops the gateway first: its goodbye is no failure
		dora.on("error", () => undefined);
		await dora.connect();
	});
	after(async () => {
		await dora?.end().catch(() => undefined);
	});

	test("unqualified names are analysed with the session's role as $user", async () => {
		assert.equal((await dora.query("SELECT current_user AS u")).rows[0].u, "dyn_reader");
		const r = await dora.query("SELECT phone || '' AS v FROM customers ORDER BY id");
		assert.equal(r.rows.length, phones.length);
		assertNoneOf(phones, r.rows);
		const e = await dora.query({ text: "SELECT phone || '' AS v FROM customers ORDER BY id", values: [] });
		assertNoneOf(phones, e.rows);
	});

	test("clean columns stay readable", async () => {
		const r = await dora.query("SELECT id, name FROM customers WHERE id = 1");
		assert.match(r.rows[0].name, /^[A-Z][a-z]+ [A-Z][a-z]+$/);
	});
});
