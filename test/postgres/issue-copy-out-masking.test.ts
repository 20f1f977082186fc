// Regression (red-team round 10: masking). COPY ... TO STDOUT sends rows as CopyData, which masking
// does not rewrite column by column: the gateway refuses the COPY when its plan masks any column
// (`masking:copy-out`) and runs the content detectors over the rest. The plan of a COPY is made
// without a RowDescription, so its columns are the ones the analysis counts, and columns of
// unknown count (`(c).*`, `*` over a set-returning function or over a relation the catalog does not
// see yet) were counted as none: a plan with no masked column. A read-only grant got every phone
// raw (no detector matches a phone) with `COPY (SELECT (c).* FROM customers c) TO STDOUT`, and a
// read-write grant with a view it created in the same transaction. Such columns now take one
// position of the plan, masked when any of them may be.
// A COPY whose query writes (`COPY (UPDATE customers SET name = name RETURNING phone) TO STDOUT`, a
// writable CTE before `SELECT phone`) was not checked at all: only read-only COPYs were planned, so
// a read-write grant got every phone raw, and the content detectors never saw those rows either.
// Every COPY whose rows reach the client is planned now.
// A COPY the analysis could not handle (an expression nested deeper than it goes) was planned as
// "mask every column" over no columns, which read as nothing masked: it counts as one masked
// position now.
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { run } from "../env/index.ts";
import { maskedPhonesFixture } from "./fixture.ts";

describe("COPY TO STDOUT of columns of unknown count", () => {
	const f = maskedPhonesFixture();
	const { c, phones } = f;
	const env = { PATH: process.env.PATH ?? "" };
	/** psql as `user` through the gateway, each command in turn in one session. */
	const psql = async (user: string, ...commands: string[]) =>
		run("/usr/bin/psql", ["-X", "-q", "-v", "ON_ERROR_STOP=1", ...commands.flatMap((x) => ["-c", x]), c.fx.dsn(await c.fx.token(user))], { env });
	const noPhones = (text: string) => {
		for (const p of phones) assert.ok(!text.includes(p), `raw phone ${p} in ${text}`);
	};

	for (const sql of [
		"COPY (SELECT (c).* FROM customers c) TO STDOUT",
		"COPY (SELECT * FROM (SELECT (c).* FROM customers c) s) TO STDOUT",
		"COPY (SELECT * FROM jsonb_each_text(to_jsonb((SELECT c FROM customers c WHERE id = 1)))) TO STDOUT",
		"COPY (SELECT (c).* FROM customers c) TO STDOUT (FORMAT csv)",
	]) {
		test(`read-only: ${sql} is refused`, async () => {
			const r = await psql("bob", sql);
			noPhones(r.stdout);
			assert.notEqual(r.code, 0, r.stdout);
			assert.match(r.stderr, /masking:copy-out/);
		});
	}

	test("read-write: COPY of a view made in the same transaction is refused", async () => {
		const r = await psql("alice", "BEGIN", "CREATE VIEW copy_v AS SELECT id, phone FROM customers", "COPY (SELECT * FROM copy_v) TO STDOUT");
		noPhones(r.stdout);
		assert.notEqual(r.code, 0, r.stdout);
		assert.match(r.stderr, /masking:copy-out/);
		// nothing was committed
		assert.equal((await c.fx.pg.query("SELECT count(*)::int AS n FROM pg_class WHERE relname = 'copy_v'")).rows[0]!.n, 0);
	});

	// A COPY whose query writes was not read-only, so it was never planned (nor given the detectors).
	for (const sql of [
		"COPY (UPDATE customers SET name = name RETURNING phone) TO STDOUT",
		"COPY (UPDATE customers SET name = name RETURNING id, phone || '') TO STDOUT (FORMAT csv)",
		"COPY (WITH w AS (UPDATE orders SET status = status WHERE false RETURNING 1) SELECT phone FROM customers) TO STDOUT",
	]) {
		test(`read-write: ${sql} is refused`, async () => {
			const r = await psql("alice", sql);
			noPhones(r.stdout);
			assert.notEqual(r.code, 0, r.stdout);
			assert.match(r.stderr, /masking:copy-out/);
		});
	}

	test("read-write: the content detectors apply to the rows of a COPY that writes", async () => {
		const r = await psql("alice", "COPY (UPDATE orders SET status = status WHERE id = 1 RETURNING id, 'ann.lee@example.org' AS contact) TO STDOUT");
		assert.equal(r.code, 0, r.stderr);
		assert.match(r.stdout, /^1\t/);
		assert.doesNotMatch(r.stdout, /ann\.lee@example\.org/);
		const clean = await psql("alice", "COPY (UPDATE orders SET status = status WHERE id = 1 RETURNING id) TO STDOUT");
		assert.equal(clean.code, 0, clean.stderr);
		assert.equal(clean.stdout, "1\n");
	});

	// A COPY whose analysis fails (an expression nested too deep for it, which PostgreSQL runs) was
	// planned as masking every one of no columns.
	test("read-only: a COPY too deep to analyse is refused", async () => {
		const r = await psql("bob", `COPY (SELECT phone, ${"name || ".repeat(2000)}'x' FROM customers) TO STDOUT`);
		noPhones(r.stdout);
		assert.notEqual(r.code, 0, r.stdout.slice(0, 200));
		assert.match(r.stderr, /masking:copy-out|mask:unanalysable/);
	});

	test("clean columns of unknown count still copy", async () => {
		const r = await psql("bob", "COPY (SELECT * FROM generate_series(1, 3)) TO STDOUT", "COPY (SELECT (o).* FROM orders o WHERE id = 1) TO STDOUT (FORMAT csv)");
		assert.equal(r.code, 0, r.stderr);
		assert.match(r.stdout, /^1\n2\n3\n1,\d+,/);
	});
});
