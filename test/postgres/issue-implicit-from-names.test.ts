// Regression (red-team round 11: masking). A FROM item written without an alias still has a name:
// PostgreSQL names a function in FROM as it names an output column after its first function
// (`FROM CAST(c.phone AS text)` is `phone`, `FROM coalesce(...)` is `coalesce`), and XMLTABLE
// `xmltable`. Masking named only plain function calls, so `phone.phone` inside the subquery found
// no item there and was looked up at the outer level: in `SELECT (SELECT phone.phone || '' FROM
// CAST(c.phone AS text)) FROM customers c, (SELECT 'x' AS phone) phone` the plan read the outer
// clean phone while PostgreSQL read the inner item, the customer's phone, and a read-only grant got
// every phone raw. FROM items are now named as PostgreSQL names them.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { assertNoneOf, maskedPhonesFixture, noRawPhones } from "./fixture.ts";

describe("implicit names of FROM items", () => {
	const f = maskedPhonesFixture();
	const { c, phones } = f;

	noRawPhones(
		f,
		[
			"SELECT (SELECT phone.phone || '' FROM CAST(c.phone AS text)) AS v FROM customers c, (SELECT 'x' AS phone) phone",
			"SELECT (SELECT coalesce.coalesce || '' FROM coalesce(c.phone, '')) AS v FROM customers c, (SELECT 'x' AS coalesce) coalesce",
			"SELECT (SELECT xmltable.x || '' FROM XMLTABLE('/r' PASSING xmlelement(name r, xmlelement(name x, c.phone)) COLUMNS x text)) AS v FROM customers c, (SELECT 'y' AS x) xmltable",
		],
		"all",
	);

	test("the server reads the inner item", async () => {
		const r = await c.fx.pg.query("SELECT (SELECT phone.phone FROM CAST(c.phone AS text)) AS v FROM customers c, (SELECT 'x' AS phone) phone ORDER BY c.id");
		assert.deepEqual(
			r.rows.map((x) => x.v),
			phones,
		);
	});

	test("clean items named so stay readable", async () => {
		const r = await c.ro.query("SELECT (SELECT name.name FROM CAST(c.name AS text)) AS v, c.phone FROM customers c, (SELECT 'x' AS name) name WHERE c.id = 1");
		assert.match(r.rows[0].v, /^[A-Z][a-z]+ [A-Z][a-z]+$/);
		assertNoneOf(phones, r.rows);
	});
});
