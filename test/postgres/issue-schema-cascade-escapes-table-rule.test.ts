// Regression (red-team round 7): whole-schema and cascading statements escaped table-scoped rules.
// Under a GuardrailPolicy rule blocking DROP/TRUNCATE/ALTER on `public.orders`, `DROP SCHEMA public
// CASCADE` dropped orders, `ALTER SCHEMA public RENAME TO x` took it away from the rule's name (then
// `DROP TABLE x.orders` ran), `DROP TYPE|DOMAIN|FUNCTION|SEQUENCE|EXTENSION ... CASCADE` dropped its
// columns or defaults, `ALTER TABLE customers DROP COLUMN id CASCADE` / `DROP TABLE customers
// CASCADE` dropped its foreign key, `TRUNCATE customers CASCADE` emptied it, `DROP VIEW v CASCADE`
// dropped a column typed with the view's row type, and (admin grant) `DROP OWNED BY` its owner
// dropped it and `REASSIGN OWNED` changed its owner. None of them names orders.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type pg from "pg";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { type Fixture, refusedMatching, startFixture } from "./fixture.ts";

const GUARDRAILS: GuardrailRule[] = [
	{ name: "keep-orders", action: "block", sql: { statementKinds: ["DROP", "TRUNCATE", "ALTER"], tables: ["public.orders"] } },
];

// public.orders and public.customers come from the seed (orders.customer_id references customers).
const SETUP = [
	"create role shop_owner",
	"create type mood as enum ('ok', 'sad')",
	"create domain positive as int check (value > 0)",
	"create function twice(int) returns int language sql immutable as 'select $1 * 2'",
	"create sequence order_ids",
	"create view customer_codes as select id, email from customers",
	"alter table orders add column m mood, add column qty positive, add column doubled int generated always as (twice(id)) stored, add column snap customer_codes, add column seq int default nextval('order_ids')",
	"alter table orders owner to shop_owner",
	"create table unrelated (id int)",
	"create type unused as enum ('x')",
	"create schema other",
	"create table other.t (id int)",
	"create schema empty_schema",
];

/** Rows, live columns, constraints and defaults of public.orders, and its owner. */
const SHAPE = `SELECT (SELECT count(*) FROM public.orders)::int AS rows,
	(SELECT count(*) FROM pg_attribute WHERE attrelid = 'public.orders'::regclass AND attnum > 0 AND NOT attisdropped)::int AS cols,
	(SELECT count(*) FROM pg_constraint WHERE conrelid = 'public.orders'::regclass)::int AS cons,
	(SELECT count(*) FROM pg_attrdef WHERE adrelid = 'public.orders'::regclass)::int AS defs,
	(SELECT relowner::regrole::text FROM pg_class WHERE oid = 'public.orders'::regclass) AS owner`;

const refusedBy = refusedMatching;

async function inRolledBack<T>(c: pg.Client, run: () => Promise<T>): Promise<T> {
	await c.query("begin");
	try {
		return await run();
	} finally {
		await c.query("rollback");
	}
}

describe("whole-schema and cascading statements under a table rule", () => {
	let fx: Fixture;
	let citext = false;
	let shape: unknown;
	before(async () => {
		fx = await startFixture({ guardrails: GUARDRAILS });
		for (const s of SETUP) await fx.pg.query(s);
		citext = (await fx.pg.query("SELECT 1 FROM pg_available_extensions WHERE name = 'citext'")).rowCount === 1;
		if (citext) {
			await fx.pg.query("create extension citext");
			await fx.pg.query("alter table orders add column nick citext");
		}
		shape = (await fx.pg.query(SHAPE)).rows[0];
		assert.equal((shape as { owner: string }).owner, "shop_owner");
	});
	after(async () => {
		await fx?.stop();
	});
	printLogsOnFailure(() => [["postgres", fx?.pg]]);

	for (const [user, sql] of [
		["alice", "DROP SCHEMA public CASCADE"],
		["alice", "ALTER SCHEMA public RENAME TO shop"],
		["alice", "ALTER SCHEMA public RENAME TO shop; DROP TABLE shop.orders"],
		["alice", "DROP TYPE mood CASCADE"],
		["alice", "DROP DOMAIN positive CASCADE"],
		["alice", "DROP FUNCTION twice(int) CASCADE"],
		["alice", "DROP SEQUENCE order_ids CASCADE"],
		["alice", "DROP EXTENSION citext CASCADE"],
		["alice", "DROP VIEW customer_codes CASCADE"],
		["alice", "DROP TABLE customers CASCADE"],
		["alice", "ALTER TABLE customers DROP COLUMN id CASCADE"],
		["alice", "TRUNCATE customers CASCADE"],
		["root", "DROP OWNED BY shop_owner"],
		["root", "REASSIGN OWNED BY shop_owner TO CURRENT_USER"],
	] as const) {
		test(`refused (${user}): ${sql}`, async (t) => {
			if (sql.includes("citext") && !citext) return t.skip("citext not available");
			const c = await fx.connect(user);
			try {
				// DROP EXTENSION is also server-wide DDL (issue-server-wide-ddl), refused before rules
				const rule = sql.includes("EXTENSION") ? /keep-orders|server-wide object/ : /keep-orders/;
				await inRolledBack(c, () => assert.rejects(c.query(sql), refusedBy(rule)));
				assert.deepEqual((await c.query(SHAPE)).rows[0], shape);
			} finally {
				await c.end();
			}
		});
	}

	test("statements that cannot reach orders still run", async () => {
		const c = await fx.connect("alice");
		try {
			for (const sql of [
				"DROP TABLE unrelated",
				"TRUNCATE unrelated",
				"DROP TYPE unused",
				"DROP SCHEMA empty_schema",
				"ALTER SCHEMA other RENAME TO other2",
				"ALTER TABLE customers DROP COLUMN iban",
				"DROP TABLE other.t RESTRICT",
			]) {
				await inRolledBack(c, () => c.query(sql));
			}
			assert.deepEqual((await c.query(SHAPE)).rows[0], shape);
		} finally {
			await c.end();
		}
	});
});
