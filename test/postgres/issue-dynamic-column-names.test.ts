// Regression (red-team round 12: masking). Column names in a RowDescription were never masked. For
// a statement the gateway analysed they come from its text or the catalog, but rows of a query it
// never saw carry names made at run time: a DBA's generic helper `dyn(q text) RETURNS refcursor`
// (`OPEN c FOR EXECUTE q`), called by a read-only grant with `'SELECT 1 AS ' || quote_ident(phone)`,
// opened a cursor whose rows masking masked whole (unknown query), but `FETCH ALL FROM dync`
// described its column as `+1-555-0101`: a phone per call. Columns of rows from a query the gateway
// never saw are now named `column1`, `column2`..., and so is any column whose name a content
// detector matches (an email made into a name the same way).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import type { ServerMessage } from "../../gateway/postgres/protocol.ts";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { assertNoneOf, CONNECTION, fixtureWithClients } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

describe("column names of rows from a query the gateway never saw", () => {
	const phones: string[] = [];
	const emails: string[] = [];
	const c = fixtureWithClients({ maskRules: CORPUS_MASK_RULES }, async (fx) => {
		const r = await fx.pg.query("SELECT phone, email FROM customers ORDER BY id");
		phones.push(...r.rows.map((x) => x.phone as string));
		emails.push(...r.rows.map((x) => x.email as string));
		// a DBA's helper: any query as a cursor (existing code, whose results masking masks)
		await fx.pg.query("CREATE FUNCTION dyn(q text) RETURNS refcursor LANGUAGE plpgsql AS $$ DECLARE c refcursor := 'dync'; BEGIN OPEN c FOR EXECUTE q; RETURN c; END $$");
	});

	const names = (fields: { name: string }[]) => fields.map((f) => f.name);

	for (const extended of [false, true]) {
		test(`a phone made into a column name (${extended ? "extended" : "simple"} protocol)`, async () => {
			await c.ro.query("BEGIN");
			try {
				await c.ro.query("SELECT dyn('SELECT 1 AS ' || quote_ident(phone) || ', 2 AS ' || quote_ident(email)) FROM customers WHERE id = 1");
				const r = extended ? await c.ro.query({ text: "FETCH ALL FROM dync", values: [] }) : await c.ro.query("FETCH ALL FROM dync");
				assert.equal(r.rows.length, 1);
				assertNoneOf(phones, names(r.fields));
				assertNoneOf(emails, names(r.fields));
				assert.deepEqual(names(r.fields), ["column1", "column2"]);
			} finally {
				await c.ro.query("COMMIT");
			}
		});
	}

	test("the server names the column after the phone (what the gateway renames)", async () => {
		const d = await c.fx.pg.connect();
		try {
			await d.query("BEGIN");
			await d.query("SELECT dyn('SELECT 1 AS ' || quote_ident(phone)) FROM customers WHERE id = 1");
			const r = await d.query("FETCH ALL FROM dync");
			assert.deepEqual(names(r.fields), [phones[0]]);
			await d.query("COMMIT");
		} finally {
			await d.end();
		}
	});

	// The protocol reaches the same cursor by name, and a statement a helper PREPAREd: Describe
	// answered with the server's RowDescription as is (a statement Describe has no data).
	const described = (ms: ServerMessage[]) => ms.flatMap((m) => (m.type === "rowDescription" ? [m.fields.map((f) => f.name)] : []));
	test("Describe of a portal or statement that code made (extended protocol)", async () => {
		await c.fx.pg.query("CREATE FUNCTION dynp(q text) RETURNS void LANGUAGE plpgsql AS $$ BEGIN EXECUTE 'PREPARE dp AS ' || q; END $$");
		const r = await RawClient.login(c.fx.port, c.fx.caPem, CONNECTION, await c.fx.token("bob"));
		try {
			r.send(clientMessages.query("BEGIN; SELECT dyn('SELECT 1 AS ' || quote_ident(phone)) FROM customers WHERE id = 1"));
			await r.until("readyForQuery");
			r.send(clientMessages.describe("P", "dync"), clientMessages.execute("dync"), clientMessages.sync());
			const p = await r.until("readyForQuery");
			assert.equal(p.find((m) => m.type === "errorResponse"), undefined);
			assert.deepEqual(described(p), [["column1"]]);
			r.send(clientMessages.query("COMMIT; SELECT dynp('SELECT 1 AS ' || quote_ident(phone)) FROM customers WHERE id = 2"));
			await r.until("readyForQuery");
			r.send(clientMessages.describe("S", "dp"), clientMessages.sync());
			const st = await r.until("readyForQuery");
			assert.deepEqual(described(st), [["column1"]]);
			assertNoneOf(phones, described([...p, ...st]));
			// a statement the client parsed itself keeps its names
			r.send(clientMessages.parse("mine", "SELECT id, phone FROM customers"), clientMessages.describe("S", "mine"), clientMessages.sync());
			assert.deepEqual(described(await r.until("readyForQuery")), [["id", "phone"]]);
		} finally {
			r.socket.end();
		}
	});

	test("names of a cursor declared in SQL (its query known) are kept", async () => {
		await c.ro.query("BEGIN");
		try {
			await c.ro.query("DECLARE k CURSOR FOR SELECT id, name, phone FROM customers ORDER BY id");
			const r = await c.ro.query("FETCH 2 FROM k");
			assert.deepEqual(names(r.fields), ["id", "name", "phone"]);
			assertNoneOf(phones, r.rows);
		} finally {
			await c.ro.query("COMMIT");
		}
	});
});

describe("column names under content detectors alone", () => {
	const emails: string[] = [];
	const c = fixtureWithClients({ maskRules: CORPUS_MASK_RULES.filter((r) => r.detectors !== undefined) }, async (fx) => {
		emails.push(...(await fx.pg.query("SELECT email FROM customers ORDER BY id")).rows.map((x) => x.email as string));
		await fx.pg.query("CREATE FUNCTION dyn(q text) RETURNS refcursor LANGUAGE plpgsql AS $$ DECLARE c refcursor := 'dync'; BEGIN OPEN c FOR EXECUTE q; RETURN c; END $$");
	});

	test("a name a detector matches is renamed, the others kept", async () => {
		await c.ro.query("BEGIN");
		try {
			await c.ro.query("SELECT dyn('SELECT 1 AS id, 2 AS ' || quote_ident(email)) FROM customers WHERE id = 1");
			const r = await c.ro.query("FETCH ALL FROM dync");
			assert.deepEqual(
				r.fields.map((f) => f.name),
				["id", "column2"],
			);
			assertNoneOf(emails, r.fields.map((f) => f.name));
		} finally {
			await c.ro.query("COMMIT");
		}
	});
});
