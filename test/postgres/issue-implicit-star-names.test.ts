// Regression (red-team round 11: masking). Output columns without AS are named as PostgreSQL names
// them (round 9), but two forms were named otherwise: an expression over `t.*` (`zz.*::text`) is
// named after t (the last name before the `*`), where masking took the cast's type, `text`; and a
// call is named as written (`"Ident"(x)` is `Ident`), where masking took the lower-cased name it
// uses to recognise built-ins. The name was then missing from the subquery and found at an outer
// level: `SELECT (SELECT zz || '' FROM (SELECT zz.*::text FROM customers zz WHERE zz.id = c.id) s)
// FROM customers c, (SELECT 'x' AS zz) o` read o's clean zz in the plan and s's row text (phone
// included) in PostgreSQL, raw to a read-only grant; so did a DBA's identity function `"Ident"`
// in a select list or in FROM.
import assert from "node:assert/strict";
import { before, describe, test } from "node:test";
import { assertNoneOf, maskedPhonesFixture, noRawPhones } from "./fixture.ts";

describe("output names of t.* expressions and quoted calls", () => {
	const f = maskedPhonesFixture();
	const { c, phones } = f;

	before(async () => {
		await c.fx.pg.query(`CREATE FUNCTION "Ident"(text) RETURNS text LANGUAGE sql IMMUTABLE AS 'SELECT $1'`);
	});

	noRawPhones(
		f,
		[
			"SELECT (SELECT zz || '' FROM (SELECT zz.*::text FROM customers zz WHERE zz.id = c.id) s) AS v FROM customers c, (SELECT 'x' AS zz) o",
			"SELECT (SELECT s.zz || '' FROM (SELECT zz.*::text FROM customers zz WHERE zz.id = c.id) s) AS v FROM customers c, (SELECT 'x' AS zz) o",
			`SELECT (SELECT "Ident" || '' FROM (SELECT "Ident"(c.phone)) s) AS v FROM customers c, (SELECT 'x' AS "Ident") o`,
			`SELECT (SELECT "Ident"."Ident" || '' FROM "Ident"(c.phone)) AS v FROM customers c, (SELECT 'x' AS "Ident") "Ident"`,
		],
		"all",
	);

	test("the server names them so (the inner column is the one read)", async () => {
		const r = await c.fx.pg.query("SELECT (SELECT zz FROM (SELECT zz.*::text FROM customers zz WHERE zz.id = c.id) s) AS v FROM customers c, (SELECT 'x' AS zz) o ORDER BY c.id");
		assert.equal(r.rows.length, phones.length);
		for (const [i, x] of r.rows.entries()) assert.ok(String(x.v).includes(phones[i]!), String(x.v));
	});

	test("clean columns named so stay readable", async () => {
		const r = await c.ro.query("SELECT (SELECT zz FROM (SELECT zz.*::text FROM orders zz ORDER BY zz.id LIMIT 1) s) AS v, c.phone FROM customers c WHERE c.id = 1");
		assert.match(r.rows[0].v, /^\(\d+,\d+,/);
		assertNoneOf(phones, r.rows);
	});
});
