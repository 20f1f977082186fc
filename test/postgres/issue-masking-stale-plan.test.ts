// Regression (red-team round: masking). The policy's plan cache was keyed by statement text and
// result origins only. In one session of a read-write grant: `CREATE TABLE mytab4 (x text)`,
// `SELECT x || '' AS y FROM mytab4` (planned: clean), `DROP TABLE mytab4`, `CREATE VIEW mytab4 AS
// SELECT phone AS x FROM customers`, and the same `SELECT x || '' AS y FROM mytab4` reused the clean
// plan: raw phones. The gateway already dropped its catalog cache after the DDL; the plan made from
// it stayed. Likewise when the DDL ran outside the gateway (a DBA, another replica): the cached
// look-ups expired after catalogCacheTtlMs, the plans made from them never did.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { type Fixture, startFixture } from "./fixture.ts";

let fx: Fixture;
let phones: string[];

before(async () => {
	fx = await startFixture({
		maskRules: CORPUS_MASK_RULES,
		grants: [{ name: "rw", user: "rw", access: "read-write" }],
		catalogCacheTtlMs: 1000,
	});
	phones = (await fx.pg.query("select phone from customers order by id")).rows.map((r) => r.phone as string);
});
after(async () => {
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

test("a plan made before the session's DDL is not reused after it", async () => {
	const c = await fx.connect("rw");
	try {
		await c.query("CREATE TABLE mytab4 (x text)");
		await c.query("INSERT INTO mytab4 VALUES ('a')");
		assert.deepEqual((await c.query("SELECT x || '' AS y FROM mytab4")).rows, [{ y: "a" }]);
		const ext = { text: "SELECT x || '' AS y FROM mytab4 WHERE $1::int > 0", values: [1] };
		assert.deepEqual((await c.query(ext)).rows, [{ y: "a" }]);
		await c.query("DROP TABLE mytab4");
		await c.query("CREATE VIEW mytab4 AS SELECT phone AS x FROM customers WHERE id < 4");
		const r = await c.query("SELECT x || '' AS y FROM mytab4");
		assert.equal(r.rows.length, 3);
		const text = JSON.stringify(r.rows);
		for (const p of phones) assert.ok(!text.includes(p), `raw phone ${p} in ${text}`);
		// extended protocol, same text (node-postgres parses it again: an unnamed statement)
		const e = await c.query(ext);
		assert.equal(e.rows.length, 3);
		for (const p of phones) assert.ok(!JSON.stringify(e.rows).includes(p), JSON.stringify(e.rows));
	} finally {
		await c.end();
	}
});

test("a plan is not reused past the catalog cache's lifetime when the DDL ran outside the gateway", async () => {
	const c = await fx.connect("rw");
	try {
		await c.query("CREATE TABLE mytab5 (x text)");
		await c.query("INSERT INTO mytab5 VALUES ('a')");
		assert.deepEqual((await c.query("SELECT x || '' AS y FROM mytab5")).rows, [{ y: "a" }]);
		await fx.pg.query("DROP TABLE mytab5");
		await fx.pg.query("CREATE VIEW mytab5 AS SELECT phone AS x FROM customers WHERE id < 4");
		await new Promise((r) => setTimeout(r, 2100)); // twice catalogCacheTtlMs, and a little
		const r = await c.query("SELECT x || '' AS y FROM mytab5");
		assert.equal(r.rows.length, 3);
		for (const p of phones) assert.ok(!JSON.stringify(r.rows).includes(p), `raw phone ${p} in ${JSON.stringify(r.rows)}`);
	} finally {
		await c.end();
	}
});
