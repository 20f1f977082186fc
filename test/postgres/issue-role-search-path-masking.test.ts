// Regression (red-team round: names resolved elsewhere). The catalog, on its own connection, resolved
// unqualified names with `"$user", public` (it sets its own search_path), while the session used what
// the server gave it: a DBA's `ALTER ROLE ... SET search_path = app, public`. With a view
// `app.orders AS SELECT id, phone AS status FROM customers`, a read-only grant's `SELECT status || ''
// FROM orders` was analysed as public.orders (clean) and showed raw phones (no column origin for an
// expression; no detector knows phones). Now the gateway reads the session's own search_path ("$user"
// expanded to its role) before relaying, unless the client set one at startup, and the catalog
// resolves with it.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { assertNoneOf, type Fixture, startFixture } from "./fixture.ts";

let fx: Fixture;
let phones: string[];

before(async () => {
	fx = await startFixture({ maskRules: CORPUS_MASK_RULES, grants: [{ name: "ro", user: "ro", access: "read-only" }] });
	await fx.pg.query("CREATE SCHEMA app");
	await fx.pg.query("CREATE VIEW app.orders AS SELECT id, phone AS status FROM public.customers");
	await fx.pg.query(`ALTER ROLE ${fx.pg.superuser} SET search_path = app, public`);
	phones = (await fx.pg.query("SELECT phone FROM public.customers")).rows.map((r) => String(r.phone));
});
after(async () => {
	await fx?.pg.query(`ALTER ROLE ${fx.pg.superuser} RESET search_path`).catch(() => undefined);
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

test("unqualified names are analysed with the search_path the server gives the session", async () => {
	const c = await fx.connect("ro");
	try {
		assert.equal((await c.query("SHOW search_path")).rows[0]!.search_path, "app, public");
		for (const sql of ["SELECT status || '' AS s FROM orders LIMIT 5", "SELECT status FROM orders LIMIT 5", "SELECT o.* FROM orders o LIMIT 5"]) {
			const r = await c.query(sql);
			assert.equal(r.rows.length, 5, sql);
			assertNoneOf(phones, r.rows);
		}
		// a qualified name still means what it says: public.orders is not masked
		const clean = await c.query("SELECT status FROM public.orders WHERE id = 1");
		assert.match(String(clean.rows[0]!.status), /^[a-z]+$/);
	} finally {
		await c.end();
	}
});
