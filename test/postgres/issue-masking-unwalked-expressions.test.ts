// Regression (red-team round: expressions the masking analysis never looked at). Through the real
// gateway against a real PostgreSQL with the demo masking rules (phone hashed) and a SQL function
// lf(id) returning customers.phone, made outside the gateway (its own calls are masked as opaque):
// - EXECUTE's own parameters: over `PREPARE s(text) AS SELECT $1`, `EXECUTE s(lf(1))` returned a raw
//   phone to a read-only grant ($1 was clean), and the guardrails kept only the body's functions
//   and risks, so `EXECUTE s(pg_read_file('/etc/hostname'))` read a server file and `EXECUTE
//   s(query_to_xml('select phone from customers', ...))` returned raw phones, read-only;
// - expressions PostgreSQL runs on every row later: a trigger's WHEN, a domain's CHECK (on every
//   value cast to it), a new table's CHECK (a child of customers takes its rows), a row security
//   policy, CALL's arguments and a function parameter's DEFAULT, each giving
//   `pg_try_advisory_lock(n, ascii(substr(phone, k, 1)))` a masked value: the lock keys, which
//   pg_locks lists to any session, spelled phones out.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { assertNoneOf, type Fixture, refusedByRule, startFixture } from "./fixture.ts";

let fx: Fixture;
let phones: string[];

before(async () => {
	fx = await startFixture({
		maskRules: CORPUS_MASK_RULES,
		grants: [
			{ name: "ro", user: "ro", access: "read-only" },
			{ name: "rw", user: "rw", access: "read-write" },
		],
	});
	phones = (await fx.pg.query("select phone from customers order by id")).rows.map((r) => r.phone as string);
	await fx.pg.query("create function lf(int) returns text language sql as 'select phone from customers where id = $1'");
	await fx.pg.query("create procedure noop(x int) language sql as ''");
});
after(async () => {
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

const assertNoPhone = (value: unknown) => assertNoneOf(phones, value);
const refusedBy = refusedByRule;

test("EXECUTE's own parameters are classified and their values masked", async () => {
	const ro = await fx.connect("ro");
	const rw = await fx.connect("rw");
	try {
		await ro.query("PREPARE s(text) AS SELECT $1 AS v");
		const r = await ro.query("EXECUTE s(lf(1))");
		assertNoPhone(r.rows);
		assert.equal(r.rows[0]!.v, null); // opaque: the strongest rule (iban, null)
		await assert.rejects(ro.query("EXECUTE s(pg_read_file('/etc/hostname'))"), refusedBy("grant:read-only"));
		await assert.rejects(ro.query("EXECUTE s(query_to_xml('select phone from customers', true, true, ''))"), refusedBy("grant:read-only"));
		assert.deepEqual((await ro.query("EXECUTE s(upper('abc'))")).rows, [{ v: "ABC" }]);

		await rw.query("PREPARE s(text) AS SELECT $1 AS v");
		assertNoPhone((await rw.query("EXECUTE s(query_to_xml('select phone from customers where id < 4', true, true, ''))")).rows);
		await rw.query("PREPARE w(text) AS INSERT INTO orders (id, customer_id, amount, status) VALUES (5000, 1, 1, $1)");
		await assert.rejects(rw.query("EXECUTE w(lf(1))"), refusedBy("mask:copy-masked-data"));
		await rw.query("EXECUTE w('paid')");
		await rw.query("PREPARE k(int) AS SELECT $1");
		await assert.rejects(rw.query("EXECUTE k(pg_try_advisory_lock(1, ascii(substr(lf(1), 1, 1)))::int)"), refusedBy("mask:copy-masked-data"));
	} finally {
		await ro.end();
		await rw.end();
	}
});

test("triggers' WHEN, domain and table CHECKs, row security policies and CALL arguments cannot hand masked values to state functions", async () => {
	const rw = await fx.connect("rw");
	const other = await fx.connect("ro");
	rw.on("error", () => undefined);
	try {
		for (const sql of [
			"CREATE TRIGGER tw BEFORE UPDATE ON customers FOR EACH ROW WHEN (pg_try_advisory_lock(2, ascii(substr(NEW.phone, 2, 1)))) EXECUTE FUNCTION suppress_redundant_updates_trigger()",
			"CREATE DOMAIN dphone AS text CHECK (pg_try_advisory_lock(3, ascii(substr(VALUE, 3, 1))))",
			"CREATE TABLE child (CHECK (pg_try_advisory_lock(5, ascii(substr(phone, 5, 1))))) INHERITS (customers)",
			"CREATE POLICY pol ON customers USING (pg_try_advisory_lock(6, ascii(substr(phone, 6, 1))))",
			"CALL noop(pg_try_advisory_lock(4, ascii(substr(lf(1), 4, 1)))::int)",
			"CREATE FUNCTION fd2(a bool DEFAULT pg_try_advisory_lock(9, ascii(substr(lf(1), 2, 1)))) RETURNS int LANGUAGE sql AS 'select a::int'",
		]) {
			await assert.rejects(rw.query(sql), refusedBy("mask:copy-masked-data"), sql);
		}
		await rw.query("CREATE DOMAIN dok AS text CHECK (VALUE ~ '^[a-z]+$')");
		await assert.rejects(rw.query("ALTER DOMAIN dok ADD CONSTRAINT c2 CHECK (pg_try_advisory_lock(3, ascii(VALUE)))"), refusedBy("mask:copy-masked-data"));
		// what would have followed: nothing took a lock
		await rw.query("UPDATE customers SET name = name WHERE id = 1");
		await rw.query("SELECT phone::dphone FROM customers WHERE id = 1").catch(() => undefined);
		await rw.query("SELECT fd2()").catch(() => undefined);
		assert.deepEqual((await other.query("SELECT objid FROM pg_locks WHERE locktype = 'advisory'")).rows, []);
		// the same statements over clean values still work
		await rw.query(
			"CREATE TRIGGER tw2 BEFORE UPDATE ON customers FOR EACH ROW WHEN (NEW.name IS DISTINCT FROM OLD.name) EXECUTE FUNCTION suppress_redundant_updates_trigger()",
		);
		await rw.query("CREATE TABLE okt (a int CHECK (a > 0), b text, CHECK (b <> ''))");
		await rw.query("CALL noop(1)");
		await rw.query("CREATE FUNCTION fd3(a int DEFAULT 2) RETURNS int LANGUAGE sql AS 'select a'");
		assert.deepEqual((await rw.query("SELECT fd3() IS NOT NULL AS ok")).rows.length, 1);
	} finally {
		await rw.end();
		await other.end();
	}
});
