import assert from "node:assert/strict";
import { createHmac } from "node:crypto";
import { test } from "node:test";
import type { MaskRule } from "../config/bundle.ts";
import { DataCatalog, DEMO_RELATIONS, demoContext } from "./corpus/catalog.ts";
import { checkMaskedWrites, planMasks } from "./mask.ts";
import { compileValueMasker, maskValue } from "./maskvalue.ts";
import { analyzeSql } from "./sql.ts";
import type { ResultField } from "./types.ts";

const KEY = Buffer.alloc(32, 7);
const T = (s: string) => Buffer.from(s, "utf8");

function fields(n: number, origin: [number, number][] = []): ResultField[] {
	return Array.from({ length: n }, (_, i) => ({
		name: `c${i}`,
		tableOid: origin[i]?.[0] ?? 0,
		columnAttr: origin[i]?.[1] ?? 0,
		typeOid: 25,
		format: 0 as const,
	}));
}

async function maskedIndexes(sql: string, n: number): Promise<number[]> {
	const plan = await planMasks(sql, fields(n), demoContext());
	return plan.columns.map((c) => c.index);
}

// ---------------------------------------------------------------------------------------------
// Values

test("maskValue: strategies on text values", () => {
	assert.equal(maskValue(T("alice@example.com"), 0, 25, { type: "redact" }, KEY)!.toString(), "****");
	assert.equal(maskValue(T("secret"), 0, 25, { type: "redact", replacement: "[hidden]" }, KEY)!.toString(), "[hidden]");
	assert.equal(maskValue(T("4111111111111111"), 0, 1043, { type: "partial", keepLast: 4 }, KEY)!.toString(), "************1111");
	assert.equal(maskValue(T("4111111111111111"), 0, 25, { type: "partial", keepLast: 4, keepFirst: 2 }, KEY)!.toString(), "41**********1111");
	assert.equal(maskValue(T("abc"), 0, 25, { type: "partial", keepLast: 4 }, KEY)!.toString(), "***", "short values are hidden whole");
	assert.equal(maskValue(T("ünï→code"), 0, 25, { type: "partial", keepLast: 2 }, KEY)!.toString(), "******de", "counts characters, not bytes");
	const h = createHmac("sha256", KEY).update("alice").digest("hex");
	assert.equal(maskValue(T("alice"), 0, 25, { type: "hash" }, KEY)!.toString(), h.slice(0, 16));
	assert.equal(maskValue(T("alice"), 0, 25, { type: "hash", length: 32 }, KEY)!.toString(), h.slice(0, 32));
	assert.notEqual(maskValue(T("alice"), 0, 25, { type: "hash" }, Buffer.alloc(32, 8))!.toString(), h.slice(0, 16), "keyed");
	assert.equal(maskValue(T("x"), 0, 25, { type: "null" }, KEY), null);
	assert.equal(maskValue(null, 0, 25, { type: "redact" }, KEY), null);
});

test("maskValue: binary format of text-like types is the same bytes", () => {
	assert.equal(maskValue(T("alice"), 1, 25, { type: "redact" }, KEY)!.toString(), "****");
	assert.equal(maskValue(T("4111111111111111"), 1, 1042, { type: "partial", keepLast: 4 }, KEY)!.toString(), "************1111");
});

test("maskValue: json and jsonb stay valid JSON", () => {
	const j = maskValue(T('"alice@example.com"'), 0, 114, { type: "partial", keepLast: 4 }, KEY)!;
	assert.equal(JSON.parse(j.toString()), "*************.com");
	const jb = maskValue(Buffer.concat([Buffer.from([1]), T('{"a":1}')]), 1, 3802, { type: "redact" }, KEY)!;
	assert.equal(jb[0], 1, "jsonb binary version byte");
	assert.equal(JSON.parse(jb.subarray(1).toString()), "****");
	assert.equal(JSON.parse(maskValue(T("{}"), 0, 3802, { type: "hash" }, KEY)!.toString()).length, 16);
});

test("maskValue: non-text types become NULL (valid for every type); user types in text format are masked as text", () => {
	for (const oid of [20, 21, 23, 700, 701, 1700, 1082, 1184, 2950, 16, 17]) {
		assert.equal(maskValue(T("42"), 0, oid, { type: "redact" }, KEY), null, `oid ${oid}`);
		assert.equal(maskValue(Buffer.alloc(4), 1, oid, { type: "hash" }, KEY), null, `binary oid ${oid}`);
	}
	assert.equal(maskValue(T("Alice@Example.com"), 0, 90000, { type: "redact" }, KEY)!.toString(), "****", "citext-like");
	assert.equal(maskValue(T("Alice"), 1, 90000, { type: "redact" }, KEY), null, "unknown binary layout");
});

test("compiled value maskers reuse constant buffers", () => {
	const m = compileValueMasker({ type: "redact" }, KEY);
	assert.equal(m(T("a"), 0, 25), m(T("b"), 0, 25));
});

// ---------------------------------------------------------------------------------------------
// Plans

test("plan: clean queries are not masked nor scrubbed (control)", async () => {
	for (const sql of ["SELECT id, name FROM customers", "SELECT * FROM orders", "SELECT id, total FROM customer_order_totals", "SELECT 1"]) {
		const n = sql.includes("*") ? 5 : sql === "SELECT 1" ? 1 : 2;
		const plan = await planMasks(sql, fields(n), demoContext());
		assert.deepEqual(plan.columns, [], sql);
		assert.equal(plan.scrubMessages, false, sql);
		assert.equal(plan.block, undefined);
	}
});

test("plan: WHERE-only references scrub messages but mask nothing", async () => {
	const plan = await planMasks("SELECT id FROM customers WHERE email LIKE 'a%'", fields(1), demoContext());
	assert.deepEqual(plan.columns, []);
	assert.equal(plan.scrubMessages, true);
});

test("plan: strategies, sources and partial -> redact for derived values", async () => {
	const plan = await planMasks("SELECT card_number, reverse(card_number), iban, phone, email FROM customers", fields(5), demoContext());
	const by = new Map(plan.columns.map((c) => [c.index, c]));
	assert.deepEqual(by.get(0)!.strategy, { type: "partial", keepLast: 4 });
	assert.deepEqual(by.get(0)!.sources, ["public.customers.card_number"]);
	assert.deepEqual(by.get(1)!.strategy, { type: "redact" }, "reverse() would expose the first digits under partial");
	assert.equal(by.get(2)!.strategy.type, "null");
	assert.equal(by.get(3)!.rule, "phone");
	assert.equal(by.get(4)!.rule, "email");
	assert.equal(plan.detectors.length, 1);
});

test("plan: hash -> redact for derived values (a keyed hash of chosen text is a codebook)", async () => {
	const plan = await planMasks("SELECT c.phone, substr(c.phone, 1, 0) || '7', substr(c.phone, 9, 1), p.phone FROM customers c, customer_contacts p", fields(4), demoContext());
	const by = new Map(plan.columns.map((c) => [c.index, c]));
	assert.equal(by.get(0)!.strategy.type, "hash", "the column itself keeps its joinable pseudonym");
	assert.deepEqual(by.get(1)!.strategy, { type: "redact" });
	assert.deepEqual(by.get(2)!.strategy, { type: "redact" });
	assert.equal(by.get(3)!.strategy.type, "hash", "through a view, untransformed");
});

test("plan: column globs respect schemas", async () => {
	// billing.customers.email is masked by its own pattern; card rule is public-only.
	assert.deepEqual(await maskedIndexes("SELECT id, email, iban FROM billing.customers", 3), [1, 2]);
	const ctx = demoContext({ rules: [{ name: "only-billing", columns: ["billing.customers.email"], strategy: { type: "redact" } }] });
	const plan = await planMasks("SELECT email FROM customers", fields(1), ctx);
	assert.deepEqual(plan.columns, [], "public.customers.email is not billing.customers.email");
});

test("plan: RowDescription origin masks even when the parse tree is clean", async () => {
	// The text says nothing about customers (an unknown cursor), origin says customers.email.
	const plan = await planMasks("SELECT 1 AS x", fields(1, [[16401, 3]]), demoContext());
	assert.deepEqual(plan.columns.map((c) => [c.index, c.rule]), [[0, "email"]]);
	const view = await planMasks("SELECT 1 AS x", fields(1, [[16404, 3]]), demoContext());
	assert.equal(view.columns[0]?.rule, "email", "view origin is followed into the view definition");
	const clean = await planMasks("SELECT 1 AS x", fields(1, [[16401, 2]]), demoContext());
	assert.deepEqual(clean.columns, []);
	const unknown = await planMasks("SELECT 1 AS x", fields(1, [[99999, 1]]), demoContext());
	assert.equal(unknown.columns.length, 1, "unknown relation OID is not proven clean");
});

test("plan: unknown relations, user functions and misaligned outputs are conservative", async () => {
	assert.deepEqual(await maskedIndexes("SELECT * FROM temp_copy", 3), [0, 1, 2]);
	assert.deepEqual(await maskedIndexes("SELECT id, get_email(id) FROM orders", 2), [1]);
	assert.deepEqual(await maskedIndexes("SELECT lower(name), upper(status) FROM customers, orders", 2), []);
	assert.deepEqual(await maskedIndexes("SELECT * FROM customer_mv", 2), [1]);
	assert.deepEqual(await maskedIndexes("SELECT contact FROM contact_emails", 1), [0], "view over a view");
});

test("plan: multi-statement strings by statement index", async () => {
	const a = analyzeSql("SELECT id FROM customers; SELECT email FROM customers");
	assert.deepEqual((await planMasks(a, fields(1), demoContext(), { statementIndex: 0 })).columns, []);
	assert.equal((await planMasks(a, fields(1), demoContext(), { statementIndex: 1 })).columns.length, 1);
	assert.equal((await planMasks(a, fields(1), demoContext())).columns.length, 1, "without an index: union");
});

test("plan: writes that copy masked data are blocked; writes into masked columns are not", async () => {
	const ctx = demoContext();
	assert.equal((await checkMaskedWrites(analyzeSql("INSERT INTO audit_copy (id, note) SELECT id, email FROM customers"), ctx))?.rule, "mask:copy-masked-data");
	assert.equal(await checkMaskedWrites(analyzeSql("INSERT INTO audit_copy (id, note) SELECT id, name FROM customers"), ctx), undefined);
	assert.equal(await checkMaskedWrites(analyzeSql("UPDATE customers SET email = lower(email) WHERE id = 1"), ctx), undefined);
	assert.equal(await checkMaskedWrites(analyzeSql("INSERT INTO customers (id, name, email) SELECT id + 1, name, email FROM customers"), ctx), undefined);
	assert.ok(await checkMaskedWrites(analyzeSql("INSERT INTO customers (id, name, email) SELECT id + 1, email, email FROM customers"), ctx));
});

test("plan: no column rules -> detectors only, no analysis", async () => {
	const rules: MaskRule[] = [{ name: "cards", detectors: ["creditCard"], strategy: { type: "redact" } }];
	const plan = await planMasks("SELECT * FROM whatever", fields(3), demoContext({ rules }));
	assert.deepEqual(plan, { columns: [], detectors: rules, scrubMessages: false });
});

test("plan: plans are cached per text and fields", async () => {
	const ctx = demoContext();
	const a = planMasks("SELECT email FROM customers", fields(1), ctx);
	const b = planMasks("SELECT email FROM customers", fields(1), ctx);
	assert.equal(a, b);
	assert.notEqual(planMasks("SELECT email FROM customers", fields(1, [[16401, 3]]), ctx), a);
});

test("plan: catalog lookups that fail are treated as unknown relations", async () => {
	const broken = new DataCatalog(DEMO_RELATIONS);
	broken.relation = async () => {
		throw new Error("catalog down");
	};
	const plan = await planMasks("SELECT name FROM customers", fields(1), demoContext({ catalog: broken }));
	assert.equal(plan.columns.length, 1);
});

test("plan detectors compile once per rule set", async () => {
	const { compileDetectorRules } = await import("./detectors.ts");
	const ctx = demoContext();
	const p1 = await planMasks("SELECT name FROM customers", fields(1), ctx);
	const p2 = await planMasks("SELECT id FROM orders", fields(1), ctx);
	assert.equal(p1.detectors, p2.detectors, "same array for every plan");
	assert.equal(compileDetectorRules(p1.detectors, KEY), compileDetectorRules(p2.detectors, KEY));
	assert.equal(compileDetectorRules(p1.detectors, KEY)!("card 4111 1111 1111 1111"), "card ****");
});

test("plan: expressions too deep to analyse are masked, not passed", async () => {
	const sql = `SELECT ${"name || ".repeat(2400)}'x' FROM customers`;
	const a = analyzeSql(sql);
	assert.ok(a.ok, "the classifier still handles it");
	const plan = await planMasks(a, fields(1), demoContext());
	assert.equal(plan.columns.length, 1, "no masked column is referenced, but the analysis could not prove it");
	assert.equal(plan.scrubMessages, true);
});

test("plan: EXECUTE of a name with several candidate bodies masks every column", async () => {
	const { SessionSqlState } = await import("./session.ts");
	const st = new SessionSqlState();
	st.record(st.resolve(analyzeSql("PREPARE q AS SELECT id, name FROM customers")));
	st.record(st.resolve(analyzeSql("PREPARE q AS SELECT id, email FROM customers")));
	const plan = await planMasks(st.resolve(analyzeSql("EXECUTE q")), fields(2), demoContext());
	assert.deepEqual(plan.columns.map((c) => c.index), [0, 1]);
	const single = new SessionSqlState();
	single.record(single.resolve(analyzeSql("PREPARE r AS SELECT id, email FROM customers")));
	const p2 = await planMasks(single.resolve(analyzeSql("EXECUTE r")), fields(2), demoContext());
	assert.deepEqual(p2.columns.map((c) => c.index), [1]);
});

test("plan: SELECT * over a parenthesised join alias expands the joined tables once", async () => {
	assert.deepEqual(
		await maskedIndexes("SELECT * FROM (customers c JOIN orders o ON o.customer_id = c.id) AS j", 12),
		[2, 3, 4, 5],
	);
	// j stands for the join's columns (round 10): j.status is orders.status, j.email customers.email
	assert.deepEqual(await maskedIndexes("SELECT j.status FROM (customers c JOIN orders o ON o.customer_id = c.id) AS j", 1), [], "j.col: that column");
	assert.deepEqual(await maskedIndexes("SELECT j.email || '' FROM (customers c JOIN orders o ON o.customer_id = c.id) AS j", 1), [0], "j.col: that column");
	// and its column list renames them: no email is left inside j(...)
	assert.deepEqual(await maskedIndexes("SELECT j.x FROM (customers c JOIN orders o ON o.customer_id = c.id) AS j(a, b, x)", 1), [0]);
});

test("plan: USING and NATURAL joins align with PostgreSQL's column order", async () => {
	// customers(id, name, email, phone, card_number, iban, created) JOIN customer_contacts(id, name, email, phone)
	assert.deepEqual(await maskedIndexes("SELECT * FROM customers NATURAL JOIN customer_contacts", 7), [2, 3, 4, 5]);
	// USING (id): id, then customers' other 6, then contacts' name, email, phone
	assert.deepEqual(await maskedIndexes("SELECT * FROM customers JOIN customer_contacts USING (id)", 10), [2, 3, 4, 5, 8, 9]);
	assert.deepEqual(await maskedIndexes("SELECT * FROM orders JOIN customers USING (id)", 11), [6, 7, 8, 9]);
});

test("partitions and inheritance: a rule on the parent masks its children's rows, a rule on a child masks them through the parent", async () => {
	const relations = [
		...DEMO_RELATIONS,
		{ oid: 17001, schema: "public", name: "parted", kind: "partitioned" as const, columns: [{ name: "id", attnum: 1 }, { name: "email", attnum: 2 }], descendants: [{ schema: "public", name: "parted_1" }] },
		{ oid: 17002, schema: "public", name: "parted_1", kind: "table" as const, columns: [{ name: "id", attnum: 1 }, { name: "email", attnum: 2 }], ancestors: [{ schema: "public", name: "parted" }] },
		{ oid: 17003, schema: "public", name: "evil", kind: "table" as const, columns: [{ name: "email", attnum: 1 }] },
	];
	const rules: MaskRule[] = [{ name: "parted-email", columns: ["public.parted.email"], strategy: { type: "redact" } }];
	const ctx = demoContext({ rules, catalog: new DataCatalog(relations) });
	const origin = (oid: number, attnum: number): ResultField => ({ name: "email", tableOid: oid, columnAttr: attnum, typeOid: 25, format: 0 });
	// RowDescription of a partition read names the partition's OID, not the parent's.
	const byOrigin = await planMasks("SELECT email FROM parted_1", [origin(17002, 2)], ctx);
	assert.deepEqual(byOrigin.columns.map((c) => [c.index, c.rule]), [[0, "parted-email"]]);
	const derivedValue = await planMasks("SELECT email || '' FROM parted_1", [origin(0, 0)], ctx);
	assert.deepEqual(derivedValue.columns.map((c) => c.index), [0]);
	const childRule = demoContext({ rules: [{ name: "leaf", columns: ["parted_1.email"], strategy: { type: "redact" } }], catalog: new DataCatalog(relations) });
	const throughParent = await planMasks("SELECT email FROM parted", [origin(17001, 2)], childRule);
	assert.deepEqual(throughParent.columns.map((c) => c.index), [0], "the parent's rows include the child's");
	// The catalog that follows the hierarchy is cached on another connection: changing it is refused.
	for (const sql of ["ALTER TABLE evil ATTACH PARTITION parted_1 FOR VALUES IN (1)", "ALTER TABLE parted_1 INHERIT evil", "ALTER TABLE parted DETACH PARTITION parted_1", "ALTER TABLE parted_1 NO INHERIT parted"]) {
		assert.equal((await checkMaskedWrites(analyzeSql(sql), ctx))?.rule, "mask:rename-masked", sql);
	}
	assert.equal(await checkMaskedWrites(analyzeSql("ALTER TABLE parted ATTACH PARTITION evil FOR VALUES FROM (1) TO (2)"), ctx), undefined, "attaching a clean table");
});
