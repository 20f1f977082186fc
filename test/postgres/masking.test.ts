/** Masking end to end: many statement forms, text and binary formats, detectors, COPY, errors, recordings. */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import { seedRows } from "../env/index.ts";
import { DEFAULT_GRANTS, type Fixture, startFixture } from "./fixture.ts";

const { customers } = seedRows();
const c1 = customers[0]!;
let fx: Fixture;
let c: pg.Client;

before(async () => {
	fx = await startFixture({
		maskRules: [
			{ name: "email", columns: ["public.customers.email"], strategy: { type: "redact" } },
			{ name: "card", columns: ["customers.card_number"], strategy: { type: "partial", keepLast: 4 } },
			{ name: "phone", columns: ["customers.phone"], strategy: { type: "hash", length: 12 } },
			{ name: "content", detectors: ["creditCard", "email"], strategy: { type: "redact", replacement: "[masked]" } },
		],
	});
	c = await fx.connect("alice");
});
after(async () => {
	await c?.end();
	await fx?.stop();
});

const one = async (sql: string, params: unknown[] = []) => (await c.query(sql, params)).rows[0];
const leaks = (v: unknown) => JSON.stringify(v).includes(c1.email) || JSON.stringify(v).includes(c1.card_number);

test("plain columns: redact, partial (last four), hash (stable pseudonym)", async () => {
	const r = await one("select name, email, card_number, phone from customers where id = 1");
	assert.equal(r.name, c1.name);
	assert.equal(r.email, "****");
	assert.equal(r.card_number, `${"*".repeat(c1.card_number.length - 4)}${c1.card_number.slice(-4)}`);
	assert.match(r.phone, /^[0-9a-f]{12}$/);
	const again = await one("select phone from customers where id = 1");
	assert.equal(again.phone, r.phone);
});

test("derived forms are masked: expressions, casts, functions, aggregates, CTE, subquery, view, union, row_to_json", async () => {
	const forms = [
		"select upper(email) as x from customers where id = 1",
		"select email || '' as x from customers where id = 1",
		"select email::varchar(200) as x from customers where id = 1",
		"select (select email from customers where id = 1) as x",
		"with t as (select email as e from customers) select e as x from t limit 1",
		"select x from (select email as x from customers where id = 1) s",
		"select email as x from customer_contacts where id = 1",
		"select row_to_json(c)::text as x from customers c where id = 1",
		"select string_agg(email, ',') as x from customers where id <= 2",
		"select 'n' as x union all select email from customers where id = 1",
		"select coalesce(null, email) as x from customers where id = 1",
		"select lower(reverse(card_number)) as x from customers where id = 1",
	];
	for (const sql of forms) {
		const { rows } = await c.query(sql);
		assert.ok(rows.length > 0, sql);
		assert.ok(!leaks(rows), `${sql} leaked: ${JSON.stringify(rows)}`);
	}
});

test("extended protocol: parameters, binary result format, prepared statement reuse", async () => {
	const r = await c.query({ text: "select id, email, card_number from customers where id = $1", values: [1], binary: true } as pg.QueryConfig);
	assert.ok(!leaks(r.rows), JSON.stringify(r.rows));
	for (let i = 0; i < 3; i++) {
		const p = await c.query({ name: "mask-prep", text: "select email, upper(email) as u from customers where id = $1", values: [1 + i] });
		assert.equal(p.rows[0].email, "****");
		assert.equal(p.rows[0].u, "****");
	}
});

test("content detectors catch what column rules miss", async () => {
	const r = await one("select 'write to someone@example.org or pay with 4111 1111 1111 1111' as note, 'plain text' as p");
	assert.doesNotMatch(r.note, /someone@example\.org|4111 1111 1111 1111/);
	assert.match(r.note, /\[masked\]/);
	assert.equal(r.p, "plain text");
});

test("COPY TO STDOUT of masked data is blocked; the session stays usable", async () => {
	await assert.rejects(c.query("copy customers to stdout"), (e: pg.DatabaseError) => e.code === "42501" && /COPY/.test(e.message));
	await assert.rejects(c.query("copy (select email from customers) to stdout"), (e: pg.DatabaseError) => e.code === "42501");
	assert.equal((await one("select 1 as ok")).ok, 1);
});

test("writes that copy masked data elsewhere are refused", async () => {
	await assert.rejects(c.query("create table leak as select email from customers"), (e: pg.DatabaseError) => e.code === "42501");
	await assert.rejects(
		c.query("create temp table t2 (x text); insert into t2 select email from customers"),
		(e: pg.DatabaseError) => e.code === "42501",
	);
});

test("errors that would print a masked value are scrubbed", async () => {
	await assert.rejects(c.query("select email::int from customers where id = 1"), (e: pg.DatabaseError) => {
		assert.equal(e.code, "22P02");
		assert.ok(!e.message.includes(c1.email), e.message);
		return true;
	});
	await assert.rejects(c.query("insert into customers(id, name, email) values (9999, 'x', $1)", [c1.email]), (e: pg.DatabaseError) => {
		assert.equal(e.code, "23505");
		assert.ok(!JSON.stringify({ m: e.message, d: e.detail }).includes(c1.email));
		return true;
	});
});

test("a SQL-level PREPARE executed through a protocol-level Bind is masked and recorded with its text", async () => {
	const { RawClient } = await import("./raw-client.ts");
	const { clientMessages } = await import("../../gateway/postgres/serializer.ts");
	const { CONNECTION } = await import("./fixture.ts");
	const r = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("alice"));
	r.send(clientMessages.query("prepare sqlprep as select id, upper(email) as e from customers where id = 1"));
	await r.until("readyForQuery");
	r.send(clientMessages.bind("", "sqlprep"), clientMessages.execute(""), clientMessages.sync());
	const ms = await r.until("readyForQuery");
	const row = ms.find((m) => m.type === "dataRow") as { values: (Buffer | null)[] } | undefined;
	assert.ok(row, JSON.stringify(ms.map((m) => m.type)));
	assert.equal(row.values[0]?.toString(), "1");
	assert.notEqual(row.values[1]?.toString(), c1.email.toUpperCase());
	assert.ok(fx.recorder.statements().some((e) => e.sql.includes("upper(email)") && e.rows === 1));
	r.end();
});

test("recordings hold masked SQL and parameters", async () => {
	await c.query("select id from customers where email = $1", [c1.email]);
	await c.query(`select id from customers where email = '${c1.email}'`);
	const events = fx.recorder.statements();
	assert.ok(events.length > 5);
	assert.ok(!JSON.stringify(events).includes(c1.email), "recording leaked an email");
	assert.ok(events.some((e) => e.maskedColumns?.some((m) => m.includes("customers.email"))));
});

test("a new masking rule applies at once to statements the session already ran (simple and prepared plans are not reused across bundles)", async () => {
	const prepared = { name: "name-prep", text: "select name from customers where id = $1" };
	const simple = "select name from customers where id = 1";
	// Plans for both now exist in the session; names are not masked yet.
	for (let i = 0; i < 2; i++) {
		assert.equal((await c.query({ ...prepared, values: [1] })).rows[0].name, c1.name);
		assert.equal((await c.query(simple)).rows[0].name, c1.name);
	}
	const rules = fx.bundle.maskingPolicies[0]!.rules;
	fx.store.update(fx.makeBundle(fx.bundle.version + 1, DEFAULT_GRANTS, { maskRules: [...rules, { name: "names", columns: ["customers.name"], strategy: { type: "redact" } }] }));
	// The same live session, the same statements: masked from the next execution on.
	assert.equal((await c.query({ ...prepared, values: [1] })).rows[0].name, "****");
	assert.equal((await c.query(simple)).rows[0].name, "****");
});
