// Regression (red-team round: masking). Where a logical replication slot exists (a CDC pipeline's),
// `SELECT data FROM pg_logical_slot_peek_changes('cdc', NULL, NULL)` returned every row written
// since, masked columns spelled out (`phone[text]:'+1-555-0101'`), to a read-only grant: the peek
// variants were missing from the list of functions reaching the server (only the consuming get
// variants were there), so they counted as pure built-ins. Real PostgreSQL with wal_level=logical.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import { type PostgresHandle, printLogsOnFailure, startPostgres } from "../env/index.ts";
import { type Fixture, startFixture } from "./fixture.ts";

let server: PostgresHandle;
let fx: Fixture;

before(async () => {
	// synchronous_commit: decoding reads only flushed WAL (test/env turns it off for speed)
	server = await startPostgres({ settings: { wal_level: "logical", max_replication_slots: 4, synchronous_commit: true } });
	fx = await startFixture({
		pg: server,
		maskRules: CORPUS_MASK_RULES,
		grants: [
			{ name: "ro", user: "ro", access: "read-only" },
			{ name: "rw", user: "rw", access: "read-write" },
		],
	});
	await server.query("select pg_create_logical_replication_slot('cdc', 'test_decoding')");
	// an application's write, decoded into the slot
	await server.query("update customers set phone = '+1-555-0199' where id = 1");
});
after(async () => {
	await fx?.stop();
	await server?.stop();
});
printLogsOnFailure(() => [["postgres", server]]);

test("logical decoding peek functions are refused like the consuming ones", async () => {
	const direct = await server.query("select count(*)::int as n from pg_logical_slot_peek_changes('cdc', null, null) where data like '%+1-555-0199%'");
	assert.equal(direct.rows[0]!.n, 1, "the slot holds the raw phone");
	for (const user of ["ro", "rw"]) {
		const c = await fx.connect(user);
		try {
			for (const sql of [
				"SELECT data FROM pg_logical_slot_peek_changes('cdc', NULL, NULL)",
				"SELECT data FROM pg_catalog.pg_logical_slot_peek_binary_changes('cdc', NULL, NULL)",
			]) {
				await assert.rejects(c.query(sql), (e: { code?: string; message: string }) => {
					assert.equal(e.code, "42501", e.message);
					assert.doesNotMatch(e.message, /555-0199/);
					return true;
				});
			}
		} finally {
			await c.end();
		}
	}
});
