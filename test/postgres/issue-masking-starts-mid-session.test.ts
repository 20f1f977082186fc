// Regression (red-team round 11: masking). Policies follow the bundle: a session reads the current
// one at every statement, so masking merged while a session runs applies to its next statement.
// What the session did before it applied stayed in force: a temporary view shadowing a table and
// `SET search_path` are refused only while masking applies, and the catalog (another connection)
// sees neither. A read-write grant's `CREATE TEMP VIEW orders AS SELECT id, phone AS status FROM
// customers`, made before a MaskingPolicy was merged, then showed `SELECT status || '' FROM orders`
// raw under it (the plan read public.orders). A session that ran such a statement (DDL, SET/RESET,
// set_config, DO/CALL) while masking did not apply now ends (57P01) when masking starts to apply (a
// new policy, or an exemption removed); other sessions go on under the new masks at once.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import { assertNoneOf, DEFAULT_GRANTS, type Fixture, startFixture } from "./fixture.ts";

let fx: Fixture;
const phones: string[] = [];
before(async () => {
	fx = await startFixture({});
	phones.push(...(await fx.pg.query("SELECT phone FROM customers ORDER BY id")).rows.map((r) => r.phone as string));
});
after(async () => {
	await fx?.stop();
});

test("a session started without masking ends when masking starts to apply", async () => {
	const c = await fx.connect("alice");
	const ended = new Promise<pg.DatabaseError>((resolve) => c.on("error", (e) => resolve(e as pg.DatabaseError)));
	try {
		await c.query("CREATE TEMP VIEW orders AS SELECT id, phone AS status FROM customers");
		fx.store.update(fx.makeBundle(2, DEFAULT_GRANTS, { maskRules: CORPUS_MASK_RULES }));
		const rows = await c.query("SELECT status || '' AS v FROM orders ORDER BY id").then(
			(r) => r.rows,
			(e: Error) => e,
		);
		if (Array.isArray(rows)) assertNoneOf(phones, rows);
		// the FATAL reaches the client as the read's error or, between statements, as its error event
		const e = (rows instanceof Error ? rows : await ended) as pg.DatabaseError;
		assert.equal(e.code, "57P01", e.message);
		assert.match(e.message, /masking now applies/);
	} finally {
		await c.end().catch(() => undefined);
	}
	// A new session works under masking (its temporary view is gone with the old one).
	const d = await fx.connect("alice");
	try {
		const r = await d.query("SELECT status || '' AS v, phone FROM orders JOIN customers c ON c.id = orders.customer_id ORDER BY orders.id LIMIT 3");
		assert.equal(r.rows.length, 3);
		assertNoneOf(phones, r.rows);
	} finally {
		await d.end();
	}
});

test("a session that only read goes on under the new masks", async () => {
	fx.store.update(fx.makeBundle(10, DEFAULT_GRANTS));
	const c = await fx.connect("bob");
	try {
		assert.equal((await c.query("SELECT count(*)::int AS n FROM orders")).rows[0].n, 400);
		fx.store.update(fx.makeBundle(11, DEFAULT_GRANTS, { maskRules: CORPUS_MASK_RULES }));
		const r = await c.query("SELECT phone || '' AS v FROM customers WHERE id = 1");
		assert.equal(r.rows.length, 1);
		assertNoneOf(phones, r.rows);
	} finally {
		await c.end();
	}
});

test("sessions started under masking go on when the policy changes", async () => {
	const c = await fx.connect("bob");
	try {
		fx.store.update(fx.makeBundle(12, DEFAULT_GRANTS, { maskRules: CORPUS_MASK_RULES.slice(1) }));
		const r = await c.query("SELECT phone FROM customers WHERE id = 1");
		assert.equal(r.rows.length, 1);
		assertNoneOf(phones, r.rows);
	} finally {
		await c.end();
	}
});
