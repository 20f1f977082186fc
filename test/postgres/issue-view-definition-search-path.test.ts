// Regression (red-team round 11: masking). The catalog reads view definitions with pg_get_viewdef on
// one connection shared by the Connection's sessions, which prints a name bare when the search_path
// in force finds it; the taint analysis then resolves the bare names with the reading session's own
// search_path (a client may send one at startup). Looked up schema-qualified (or by OID), a view was
// printed under whatever search_path the shared connection last had, and cached: `public.pv11` over
// public.customers came out as `... FROM customers`, and a session started with `search_path = s11,
// public` (s11 holding a clean `customers`) read `SELECT p || '' FROM public.pv11` as s11's table and
// got every phone raw. Definitions are now printed with pg_catalog alone in the search_path, so every
// other name in them is schema-qualified.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { assertNoneOf, fixtureWithClients } from "./fixture.ts";

describe("view definitions and the reading session's search_path", () => {
	const phones: string[] = [];
	const c = fixtureWithClients({ maskRules: [{ name: "phone", columns: ["public.customers.phone"], strategy: { type: "redact" } }] }, async (fx) => {
		phones.push(...(await fx.pg.query("SELECT phone FROM customers ORDER BY id")).rows.map((r) => r.phone as string));
		await fx.pg.query("CREATE SCHEMA s11");
		await fx.pg.query("CREATE TABLE s11.customers (id int, phone text)");
		await fx.pg.query("CREATE VIEW public.pv11 AS SELECT id, phone || '' AS p FROM public.customers");
	});

	// A read-only client whose startup packet carries its own search_path (the gateway forwards it).
	let other: pg.Client;
	before(async () => {
		other = new pg.Client(c.fx.clientConfig("bob", await c.fx.token("bob")));
		const withPath = other as unknown as { getStartupConf(): Record<string, string> };
		const base = withPath.getStartupConf.bind(other);
		withPath.getStartupConf = () => ({ ...base(), search_path: "s11, public" });
		// the fixture's own `after` stops the gateway first: its goodbye is no failure
		other.on("error", () => undefined);
		await other.connect();
	});
	after(async () => {
		await other?.end().catch(() => undefined);
	});

	test("a view read schema-qualified is analysed as the server reads it, whoever read it first", async () => {
		assert.equal((await other.query("SHOW search_path")).rows[0].search_path, "s11, public");
		// a session with the default search_path reads the view first: its definition is cached
		assertNoneOf(phones, (await c.ro.query("SELECT p FROM public.pv11 ORDER BY id")).rows);
		const r = await other.query("SELECT p || '' AS v FROM public.pv11 ORDER BY id");
		assert.equal(r.rows.length, phones.length);
		assertNoneOf(phones, r.rows);
		const e = await other.query({ text: "SELECT p || '' AS v FROM public.pv11 ORDER BY id", values: [] });
		assertNoneOf(phones, e.rows);
	});

	test("the server reads public.customers through the view", async () => {
		const r = await c.fx.pg.query("SELECT p FROM public.pv11 ORDER BY id");
		assert.deepEqual(
			r.rows.map((x) => x.p),
			phones,
		);
	});

	test("clean columns of the view stay readable from both sessions", async () => {
		const a = await other.query("SELECT id FROM public.pv11 ORDER BY id");
		const b = await c.ro.query("SELECT id FROM pv11 ORDER BY id");
		assert.equal(a.rows.length, phones.length);
		assert.deepEqual(a.rows, b.rows);
	});
});
