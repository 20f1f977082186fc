// Regression (red-team round 9: masking). A subquery's columns are looked up by the names
// PostgreSQL gives them. Without AS, masking named only column references and function calls, and
// called every other expression `?column?`; PostgreSQL names `coalesce(...)` "coalesce", `CASE`
// "case", `ROW(...)` "row", `ARRAY(...)` "array", `greatest`, `nullif`, `xmlelement`, a cast by its
// operand or type... A read-only grant read every phone raw with `SELECT s.coalesce FROM (SELECT
// coalesce(phone, '') FROM customers) s`: the plan had no column of that name (clean), and an
// expression has no column origin. Output names now follow PostgreSQL's rules, and a name missing
// from an item whose columns the plan knows takes the item's whole row instead of nothing.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { assertNoneOf, maskedPhonesFixture, noRawPhones } from "./fixture.ts";

describe("implicit output column names of subqueries", () => {
	const f = maskedPhonesFixture();
	const { c, phones } = f;

	const cases = [
		"SELECT s.coalesce FROM (SELECT coalesce(phone, '') FROM customers) s",
		"SELECT s.case FROM (SELECT CASE WHEN true THEN phone END FROM customers) s",
		"SELECT s.row::text FROM (SELECT ROW(phone) FROM customers) s",
		"SELECT s.array::text FROM (SELECT ARRAY(SELECT c.phone) FROM customers c) s",
		"SELECT s.array::text FROM (SELECT ARRAY[phone] FROM customers) s",
		"SELECT s.greatest FROM (SELECT greatest(phone, '') FROM customers) s",
		"SELECT s.least FROM (SELECT least(phone, 'z') FROM customers) s",
		"SELECT s.nullif FROM (SELECT nullif(phone, '') FROM customers) s",
		"SELECT s.xmlelement::text FROM (SELECT xmlelement(name a, phone) FROM customers) s",
		"SELECT coalesce FROM (SELECT coalesce(phone, '') FROM customers) s",
		"WITH w AS (SELECT coalesce(phone, '') FROM customers) SELECT coalesce FROM w",
	];
	noRawPhones(f, cases, "all");

	test("clean implicit names stay readable next to masked ones", async () => {
		const r = await c.ro.query("SELECT s.coalesce, s.nullif FROM (SELECT coalesce(name, ''), nullif(phone, '') FROM customers WHERE id = 1) s");
		assert.match(r.rows[0].coalesce, /^[A-Z][a-z]+ [A-Z][a-z]+$/);
		assertNoneOf(phones, r.rows);
	});
});
