// Regression (red-team round 9: masking). The masking catalog reads relations on the gateway's own
// connection, which sees the session's DDL only after COMMIT. In an open transaction a read-write
// grant added a column to a clean table of its own (`ALTER TABLE t1 ADD COLUMN b int`); the
// catalog still listed one column for t1, so `t1.*` was expanded one column short and the outputs
// after it moved: `SELECT s.z FROM (SELECT t1.*, c.phone || '' AS p FROM t1, customers c) s(q, r,
// z)` was planned as a missing column (clean) and showed every phone raw (an expression has no
// column origin). Until the transaction ends, tables' column lists now count as of unknown
// length, views as opaque.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { assertNoneOf, maskedPhonesFixture } from "./fixture.ts";

describe("relations changed by the open transaction's DDL", () => {
	const f = maskedPhonesFixture();
	const { c, phones } = f;

	const shifted = (t: string) => `SELECT s.z FROM (SELECT ${t}.*, c.phone || '' AS p FROM ${t}, customers c) s(q, r, z)`;

	test("explicit transaction: ALTER TABLE ... ADD COLUMN, then a star expansion", async () => {
		await c.rw.query("CREATE TABLE t1 (a int)");
		await c.rw.query("INSERT INTO t1 VALUES (1)");
		await c.rw.query("BEGIN");
		try {
			await c.rw.query("ALTER TABLE t1 ADD COLUMN b int");
			const r = await c.rw.query(shifted("t1"));
			assert.equal(r.rows.length, phones.length);
			assertNoneOf(phones, r.rows);
			const u = await c.rw.query("SELECT z FROM (SELECT t1.*, c.phone || '' AS p FROM t1, customers c) s(q, r, z)");
			assertNoneOf(phones, u.rows);
			const e = await c.rw.query({ text: shifted("t1"), values: [] });
			assertNoneOf(phones, e.rows);
			// clean relations stay readable in the window
			assert.deepEqual((await c.rw.query("SELECT * FROM t1")).rows, [{ a: 1, b: null }]);
			assert.match((await c.rw.query("SELECT status FROM orders WHERE id = 1")).rows[0].status, /^[a-z]+$/);
		} finally {
			await c.rw.query("ROLLBACK");
		}
	});
});
