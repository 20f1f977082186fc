// Regression (red-team round: guardrails, parser differentials). The gateway reads every SQL text as
// UTF-8 with standard_conforming_strings on (libpg-query); the server reads it with the session's
// settings. Under a rule blocking DELETE on accounts, through the real gateway to a real PostgreSQL:
//  - SET standard_conforming_strings = off, then SELECT 'a\' , ' ; DELETE FROM accounts ; -- '
//    deleted every account: the gateway saw one SELECT of two strings, the server (a backslash
//    escapes the quote) a SELECT of "a' , " and a DELETE; the same through set_config(...) on an
//    admin grant, whose rules still bind it;
//  - SET client_encoding = 'SJIS', then SELECT E'<0x95 0x5C>'; DELETE FROM accounts; -- ' deleted
//    them too: 0x95 0x5C is one Shift_JIS character to the server, an invalid byte and a backslash
//    escaping the quote to the gateway; a StartupMessage client_encoding=SJIS got the same session;
//  - a function that already exists and calls set_config(name, value, false) (a DBA's helper) turned
//    the setting off with nothing the gateway could see; pipelined with the next text it deleted the
//    accounts before the server's ParameterStatus arrived.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import type { ErrorFields, ServerMessage } from "../../gateway/postgres/protocol.ts";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { printLogsOnFailure, run } from "../env/index.ts";
import { CONNECTION, type Fixture, startFixture } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

const GUARDRAILS: GuardrailRule[] = [
	{ name: "keep-accounts", action: "block", sql: { statementKinds: ["DELETE", "UPDATE", "TRUNCATE", "DROP"], tables: ["public.accounts"] } },
];

/** Read by the server as a SELECT and a DELETE when standard_conforming_strings is off. */
const SCS_SMUGGLE = "SELECT 'a\\' , ' ; DELETE FROM accounts ; -- '";
/** 表 in Shift_JIS: its second byte is a backslash. */
const SJIS_HYO = Buffer.from([0x95, 0x5c]);
const SJIS_SMUGGLE = Buffer.concat([Buffer.from("SELECT E'"), SJIS_HYO, Buffer.from("'; DELETE FROM accounts; -- '")]);

function query(bytes: Buffer): Buffer {
	const len = Buffer.alloc(4);
	len.writeInt32BE(bytes.length + 5);
	return Buffer.concat([Buffer.from("Q"), len, bytes, Buffer.from([0])]);
}

function errorOf(ms: ServerMessage[]): ErrorFields | undefined {
	const e = ms.find((m) => m.type === "errorResponse");
	return e?.type === "errorResponse" ? e.fields : undefined;
}

function refused(rule: RegExp) {
	return (e: { code?: string; message: string }) => {
		assert.equal(e.code, "42501", e.message);
		assert.match(e.message, rule);
		return true;
	};
}

describe("parser differentials: the server must read SQL as the gateway does", () => {
	let fx: Fixture;
	const accounts = async (): Promise<number> => (await fx.pg.query("SELECT count(*)::int AS n FROM accounts")).rows[0]!.n;
	before(async () => {
		fx = await startFixture({ guardrails: GUARDRAILS });
		await fx.pg.query("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)");
		await fx.pg.query("INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 5) g");
		// A DBA's helper that already exists: the gateway never saw its creation.
		await fx.pg.query("CREATE FUNCTION app_set(k text, v text) RETURNS text LANGUAGE sql AS $$ SELECT set_config(k, v, false) $$");
	});
	after(async () => {
		await fx?.stop();
	});
	printLogsOnFailure(() => [["postgres", fx?.pg]]);

	test("SET standard_conforming_strings = off is refused, for every access level", async () => {
		for (const user of ["alice", "bob", "root"]) {
			const c = await fx.connect(user);
			try {
				for (const sql of [
					"SET standard_conforming_strings = off",
					"SET LOCAL standard_conforming_strings TO 'of'",
					"SELECT set_config('standard_conforming_strings', 'off', false)",
					"SELECT set_config(current_setting('application_name'), 'off', false)",
				]) {
					await assert.rejects(c.query(sql), refused(/standard_conforming_strings|not a constant/), `${user}: ${sql}`);
				}
				await assert.rejects(c.query(SCS_SMUGGLE + "'"), /syntax|unterminated|does not parse/i);
				const r = await c.query({ text: SCS_SMUGGLE, rowMode: "array" });
				assert.deepEqual(r.rows[0], ["a\\", " ; DELETE FROM accounts ; -- "], "read with standard_conforming_strings on");
				assert.equal((await c.query("SHOW standard_conforming_strings")).rows[0].standard_conforming_strings, "on");
			} finally {
				await c.end();
			}
		}
		assert.equal(await accounts(), 5);
		const root = await fx.connect("root");
		try {
			for (const sql of [
				"CREATE FUNCTION f_scs() RETURNS int LANGUAGE sql SET standard_conforming_strings = off AS 'SELECT 1'",
				"ALTER ROLE CURRENT_USER SET standard_conforming_strings = off",
				"ALTER SYSTEM SET standard_conforming_strings = off",
				"UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings'",
				"DO $$ BEGIN SET standard_conforming_strings = off; END $$",
			]) {
				await assert.rejects(root.query(sql), refused(/standard_conforming_strings|pg_settings/), sql);
			}
			// what stays allowed
			await root.query("SET standard_conforming_strings = on");
			await root.query("RESET standard_conforming_strings");
			await root.query("SELECT set_config('application_name', 'x', false)");
		} finally {
			await root.end();
		}
	});

	test("a client-only client_encoding is refused, by SET and at startup", async () => {
		const c = await fx.connect("alice");
		try {
			for (const sql of ["SET client_encoding = 'SJIS'", "SET NAMES 'BIG5'", "SELECT set_config('client_encoding', 'GBK', false)"]) {
				await assert.rejects(c.query(sql), refused(/client_encoding/), sql);
			}
			await c.query("SET client_encoding = 'UTF-8'");
			await c.query("SET NAMES 'utf8'");
		} finally {
			await c.end();
		}
		// The attack's second step, had SET been allowed, is a text the server refuses as UTF-8.
		const raw = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("alice"));
		raw.send(query(SJIS_SMUGGLE));
		assert.equal(errorOf(await raw.until("readyForQuery"))?.C, "22021");
		raw.end();
		assert.equal(await accounts(), 5);

		// client_encoding in the StartupMessage is forwarded to the server: the session is refused.
		const s = await RawClient.open(fx.port, fx.caPem);
		s.send(clientMessages.startup({ user: "agent", database: CONNECTION, client_encoding: "SJIS" }));
		assert.equal((await s.next()).type, "authentication");
		s.send(clientMessages.password(await fx.token("alice")));
		const ms = await s.rest();
		const e = errorOf(ms);
		assert.equal(e?.C, "0A000", JSON.stringify(ms));
		assert.equal(e?.S, "FATAL");
		assert.match(e?.M ?? "", /client_encoding = SJIS/);
		assert.ok(!ms.some((m) => m.type === "readyForQuery"), "no session");
		// psql with PGCLIENTENCODING takes the same path
		const r = await run("/usr/bin/psql", ["-X", "-c", "SELECT 1", fx.dsn(await fx.token("alice"))], {
			env: { PATH: process.env.PATH ?? "", PGCLIENTENCODING: "BIG5" },
		});
		assert.notEqual(r.code, 0, r.stdout);
		assert.match(r.stderr, /client_encoding = BIG5/);
		assert.equal(await accounts(), 5);
	});

	test("sessions start with standard_conforming_strings on whatever the database default", async () => {
		await fx.pg.query(`ALTER DATABASE ${fx.pg.database} SET standard_conforming_strings = off`);
		try {
			const c = await fx.connect("alice");
			try {
				assert.equal((await c.query("SHOW standard_conforming_strings")).rows[0].standard_conforming_strings, "on");
				assert.equal((await c.query("SHOW client_encoding")).rows[0].client_encoding, "UTF8");
				const r = await c.query({ text: SCS_SMUGGLE, rowMode: "array" });
				assert.equal(r.rows.length, 1);
			} finally {
				await c.end();
			}
		} finally {
			await fx.pg.query(`ALTER DATABASE ${fx.pg.database} RESET standard_conforming_strings`);
		}
		assert.equal(await accounts(), 5);
	});

	test("a setting changed by a function the gateway cannot see ends the session", async () => {
		const c = await fx.connect("alice");
		const ended = new Promise<unknown>((resolve) => c.once("error", resolve));
		await assert.rejects(c.query("SELECT app_set('standard_conforming_strings', 'off')"), (e: { code?: string; message: string }) => {
			assert.equal(e.code, "0A000", e.message);
			assert.match(e.message, /standard_conforming_strings = off/);
			return true;
		});
		await ended.catch(() => undefined);
		await c.end().catch(() => undefined);
		assert.equal(await accounts(), 5);
	});

	test("pipelined behind such a function, a text with a backslash waits for the server's report", async () => {
		const raw = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("alice"));
		raw.send(clientMessages.query("SELECT app_set('standard_conforming_strings', 'off')"), clientMessages.query(SCS_SMUGGLE));
		const ms = await raw.rest();
		assert.equal(errorOf(ms)?.C, "0A000", JSON.stringify(ms));
		assert.ok(!ms.some((m) => m.type === "commandComplete" && m.tag.startsWith("DELETE")), JSON.stringify(ms));
		assert.equal(await accounts(), 5);
	});

	test("in one extended-protocol segment, a text with a backslash after such an Execute is refused", async () => {
		const raw = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("alice"));
		raw.send(
			clientMessages.parse("", "SELECT app_set('standard_conforming_strings', 'off')"),
			clientMessages.bind("", ""),
			clientMessages.execute(""),
			clientMessages.parse("", SCS_SMUGGLE),
			clientMessages.bind("", ""),
			clientMessages.execute(""),
			clientMessages.sync(),
		);
		// the refusal aborts the implicit transaction, set_config's change with it
		const ms = await raw.until("readyForQuery");
		raw.end();
		const e = ms.find((m) => m.type === "errorResponse" && m.fields.C === "42501");
		assert.ok(e?.type === "errorResponse", JSON.stringify(ms));
		assert.match(e.fields.M ?? "", /send Sync first/);
		assert.ok(!ms.some((m) => m.type === "commandComplete" && m.tag.startsWith("DELETE")), JSON.stringify(ms));
		assert.equal(await accounts(), 5);

		// a simple Query after such an Execute, with no Sync between them
		const q = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("alice"));
		q.send(
			clientMessages.parse("", "SELECT app_set('standard_conforming_strings', 'off')"),
			clientMessages.bind("", ""),
			clientMessages.execute(""),
			clientMessages.query(SCS_SMUGGLE),
		);
		const qs = await q.rest(3000);
		assert.ok(!qs.some((m) => m.type === "commandComplete" && m.tag.startsWith("DELETE")), JSON.stringify(qs));
		assert.ok(qs.some((m) => m.type === "errorResponse" && /send Sync first/.test(m.fields.M ?? "")), JSON.stringify(qs));
		assert.equal(await accounts(), 5);
	});

	test("texts with backslashes and non-ASCII characters still run, pipelined or not", async () => {
		const raw = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("alice"));
		raw.send(clientMessages.query("SELECT 1"), clientMessages.query("SELECT E'caf\\u00e9' AS a, 'C:\\dir' AS b, '表' AS c"));
		await raw.until("readyForQuery");
		const ms = await raw.until("readyForQuery");
		const row = ms.find((m) => m.type === "dataRow");
		assert.ok(row?.type === "dataRow", JSON.stringify(ms));
		assert.deepEqual(
			row.values.map((v) => v?.toString("utf8")),
			["café", "C:\\dir", "表"],
		);
		// extended protocol: a plain SELECT then a text with a backslash in the same segment
		raw.send(
			clientMessages.parse("", "SELECT 1"),
			clientMessages.bind("", ""),
			clientMessages.execute(""),
			clientMessages.parse("", "SELECT 'x\\y' AS v"),
			clientMessages.bind("", ""),
			clientMessages.execute(""),
			clientMessages.sync(),
		);
		const ext = await raw.until("readyForQuery");
		assert.equal(errorOf(ext), undefined, JSON.stringify(ext));
		assert.equal(ext.filter((m) => m.type === "commandComplete").length, 2);
		// built-in functions (set_config's checked arguments included) do not count as changing settings
		// when written pg_catalog-qualified: an unqualified name is whatever the session's search_path
		// finds first (test/postgres/issue-hidden-code-settings.test.ts)
		raw.send(
			clientMessages.parse(
				"",
				"SELECT pg_catalog.pg_try_advisory_lock(7), pg_catalog.set_config('application_name', 'x', false), pg_catalog.now()",
			),
			clientMessages.bind("", ""),
			clientMessages.execute(""),
			clientMessages.parse("", "SELECT 'café' AS v"),
			clientMessages.bind("", ""),
			clientMessages.execute(""),
			clientMessages.sync(),
		);
		const builtins = await raw.until("readyForQuery");
		assert.equal(errorOf(builtins), undefined, JSON.stringify(builtins));
		assert.equal(builtins.filter((m) => m.type === "commandComplete").length, 2);
		raw.end();
	});
});
