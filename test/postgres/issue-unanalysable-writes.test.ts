// Regression (red-team round 10: masking). Before a statement that is not a plain read is
// forwarded, the masking pre-check (`checkMaskedWrites`) refuses writes that would copy masked data
// where masking cannot follow. When the analysis itself failed (an expression nested deeper than it
// goes: `name || name || ...` 2000 deep, which PostgreSQL runs), the plan masked every column but
// carried no refusal, so the pre-check let the statement through: a read-write grant's `INSERT INTO
// scratch SELECT id, phone, name || ... FROM customers` copied every phone into a table it reads,
// and `set_config('application_name', phone || ..., false)` reported a phone in ParameterStatus.
// Such statements are refused now (`mask:unanalysable`); reads of them stay masked whole.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { assertNoneOf, maskedPhonesFixture, refusedByRule } from "./fixture.ts";

const DEEP = `${"name || ".repeat(2000)}'x'`;

describe("statements too deep for the masking analysis", () => {
	const f = maskedPhonesFixture();
	const { c, phones } = f;

	test("read-write: an INSERT ... SELECT copying masked columns is refused", async () => {
		await c.fx.pg.query("CREATE TABLE scratch (id int, a text, b text)");
		await assert.rejects(c.rw.query(`INSERT INTO scratch SELECT id, phone, ${DEEP} FROM customers`), refusedByRule("mask:unanalysable"));
		await assert.rejects(c.rw.query(`INSERT INTO scratch (id, a) SELECT id, phone || ${DEEP} FROM customers`), refusedByRule("mask:unanalysable"));
		const n = await c.fx.pg.query("SELECT count(*)::int AS n FROM scratch");
		assert.equal(n.rows[0]!.n, 0);
		const back = await c.rw.query("SELECT * FROM scratch");
		assertNoneOf(phones, back.rows);
	});

	test("read-write: set_config of a masked value is refused", async () => {
		await assert.rejects(
			c.rw.query(`SELECT set_config('application_name', phone || ${DEEP}, false) FROM customers WHERE id = 1`),
			refusedByRule("mask:unanalysable"),
		);
		const app = await c.rw.query("SHOW application_name");
		assertNoneOf(phones, app.rows);
	});

	test("read-only: a plain SELECT of it still runs, masked whole", async () => {
		const r = await c.ro.query(`SELECT id, phone, ${DEEP} AS v FROM customers ORDER BY id LIMIT 3`);
		assert.equal(r.rows.length, 3);
		assertNoneOf(phones, r.rows);
	});
});
