// Regression (red-team round 9 on guardrails, the lead "code run at Bind time"). Within one extended
// segment the server reports a changed setting only at Sync, so the gateway refuses a text holding a
// backslash or a non-ASCII character after an Execute that "may change settings". That was decided
// from the function names in the statement's text only, while stored code runs behind other names.
// Under a rule blocking DELETE on accounts, a read-write grant (with a DBA's helper app_set(k, v)
// calling set_config) turned standard_conforming_strings off with nothing the gateway counted, then,
// before Sync, sent `SELECT 'a\' , ' ; DELETE FROM accounts ; -- '` as a Query: one SELECT of two
// strings to the gateway, a SELECT and a DELETE to the server; every account was deleted by
//  - a Bind alone (no Execute) of `SELECT $1::scs` with 'off', scs a domain whose CHECK calls
//    app_set('standard_conforming_strings', VALUE) (the server runs the CHECK converting the
//    parameter), or of `SELECT $1` with scs declared as the parameter's type at Parse;
//  - an Execute of `SELECT 'off'::scs`, of an operator over app_set, of `SELECT * FROM v` (a view
//    calling it), of an INSERT filling a column DEFAULT calling it;
//  - an Execute of `SELECT upper('off')` after `SET search_path = public, pg_catalog`, with the
//    agent's own public.upper(text) calling app_set (upper was trusted as a built-in by name);
//  - and, with the first fix, an Execute of pg_catalog.query_to_xml('SELECT app_set(...)', ...): the
//    call in the SQL text was not in the parse tree the check walked.
import assert from "node:assert/strict";
import { after, before, describe, test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import type { ServerMessage } from "../../gateway/postgres/protocol.ts";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { CONNECTION, type Fixture, startFixture } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

const GUARDRAILS: GuardrailRule[] = [
	{ name: "keep-accounts", action: "block", sql: { statementKinds: ["DELETE", "UPDATE", "TRUNCATE", "DROP"], tables: ["public.accounts"] } },
];
/** Read by the server as a SELECT and a DELETE when standard_conforming_strings is off. */
const SCS_SMUGGLE = "SELECT 'a\\' , ' ; DELETE FROM accounts ; -- '";
const SEND_SYNC_FIRST = /send Sync first/;

describe("code the text does not show may change settings before the server reports them", () => {
	let fx: Fixture;
	let scsOid = 0;
	const accounts = async (): Promise<number> => (await fx.pg.query("SELECT count(*)::int AS n FROM accounts")).rows[0]!.n;
	before(async () => {
		fx = await startFixture({ guardrails: GUARDRAILS });
		await fx.pg.query("CREATE TABLE accounts (id int PRIMARY KEY, balance int NOT NULL)");
		await fx.pg.query("INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 5) g");
		// A DBA's helper that already exists: the gateway never saw its creation.
		await fx.pg.query("CREATE FUNCTION app_set(k text, v text) RETURNS text LANGUAGE sql AS $$ SELECT set_config(k, v, false) $$");
		// The agent's own definitions over it, each allowed to a read-write grant.
		const c = await fx.connect("alice");
		for (const sql of [
			"CREATE DOMAIN scs AS text CHECK (app_set('standard_conforming_strings', VALUE) IS NOT NULL)",
			"CREATE OPERATOR ### (function = app_set, leftarg = text, rightarg = text)",
			"CREATE VIEW v AS SELECT app_set('standard_conforming_strings', 'off') AS x",
			"CREATE TABLE t (a text DEFAULT app_set('standard_conforming_strings', 'off'), b int)",
		]) {
			await c.query(sql);
		}
		await c.end();
		// A function named like a built-in is refused to the grant since red-team round 10 (it may capture
		// other sessions' calls: issue-look-alike-names.test.ts); one that exists all the same (a DBA's)
		// is what the session's search_path may still find first.
		await fx.pg.query("CREATE FUNCTION public.upper(text) RETURNS text LANGUAGE sql AS $$ SELECT app_set('standard_conforming_strings', $1) $$");
		scsOid = (await fx.pg.query("SELECT 'scs'::regtype::oid::int AS oid")).rows[0]!.oid;
	});
	after(async () => {
		await fx?.stop();
	});
	printLogsOnFailure(() => [["postgres", fx?.pg]]);

	/** `first` then the smuggling Query, with no Sync between them; what the client got. */
	async function pipeline(first: Buffer[], setup?: string): Promise<ServerMessage[]> {
		await fx.pg.query("INSERT INTO accounts SELECT g, 100 FROM generate_series(1, 5) g ON CONFLICT DO NOTHING");
		const raw = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("alice"));
		if (setup) {
			raw.send(clientMessages.query(setup));
			await raw.until("readyForQuery");
		}
		raw.send(...first, clientMessages.query(SCS_SMUGGLE));
		// up to the Query's ReadyForQuery, or the end of a session the server's report ended
		const ms: ServerMessage[] = [];
		for (;;) {
			const m = await raw.next().catch(() => undefined);
			if (!m) break;
			ms.push(m);
			if (m.type === "readyForQuery") break;
		}
		raw.end();
		return ms;
	}

	const cases: [string, () => Buffer[], string?][] = [
		["a Bind alone of a domain-typed parameter", () => [clientMessages.parse("", "SELECT $1::scs"), clientMessages.bind("", "", [Buffer.from("off")])]],
		[
			"a Bind alone of a parameter declared of the domain's type at Parse",
			() => [clientMessages.parse("", "SELECT $1", [scsOid]), clientMessages.bind("", "", [Buffer.from("off")])],
		],
		["an Execute of a cast to the domain", () => [clientMessages.parse("", "SELECT 'off'::scs"), clientMessages.bind("", ""), clientMessages.execute("")]],
		[
			"an Execute of an operator over the function",
			() => [clientMessages.parse("", "SELECT 'standard_conforming_strings' ### 'off'"), clientMessages.bind("", ""), clientMessages.execute("")],
		],
		["an Execute reading a view that calls it", () => [clientMessages.parse("", "SELECT * FROM v"), clientMessages.bind("", ""), clientMessages.execute("")]],
		[
			"an Execute filling a column default that calls it",
			() => [clientMessages.parse("", "INSERT INTO t (b) VALUES (1)"), clientMessages.bind("", ""), clientMessages.execute("")],
		],
		[
			"an Execute of a qualified built-in running SQL text that calls it",
			() => [
				clientMessages.parse("", "SELECT pg_catalog.query_to_xml('SELECT app_set(''standard_conforming_strings'', ''off'')', true, true, '')"),
				clientMessages.bind("", ""),
				clientMessages.execute(""),
			],
		],
		[
			"an Execute of a built-in's name the session's search_path gives to its own function",
			() => [clientMessages.parse("", "SELECT upper('off')"), clientMessages.bind("", ""), clientMessages.execute("")],
			"SET search_path = public, pg_catalog",
		],
	];
	for (const [name, first, setup] of cases) {
		test(`after ${name}, a text with a backslash before Sync is refused`, async () => {
			const ms = await pipeline(first(), setup);
			assert.ok(!ms.some((m) => m.type === "commandComplete" && m.tag.startsWith("DELETE")), JSON.stringify(ms));
			assert.ok(ms.some((m) => m.type === "errorResponse" && m.fields.C === "42501" && SEND_SYNC_FIRST.test(m.fields.M ?? "")), JSON.stringify(ms));
			assert.equal(await accounts(), 5);
		});
	}

	test("a Parse of such a text after a domain-typed Bind is refused too", async () => {
		const raw = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("alice"));
		raw.send(
			clientMessages.parse("", "SELECT $1::scs"),
			clientMessages.bind("", "", [Buffer.from("off")]),
			clientMessages.parse("s2", "SELECT 'a\\' , ' , 1 -- '"),
			clientMessages.sync(),
		);
		const ms = await raw.until("readyForQuery");
		raw.end();
		const e = ms.find((m) => m.type === "errorResponse");
		assert.ok(e?.type === "errorResponse" && e.fields.C === "42501" && SEND_SYNC_FIRST.test(e.fields.M ?? ""), JSON.stringify(ms));
	});

	test("built-in code, parameters of built-in types and texts after a Sync still run", async () => {
		const raw = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("alice"));
		raw.send(
			// parameters of an undeclared (inferred) and a declared built-in type, qualified built-in calls
			clientMessages.parse("", "SELECT $1::pg_catalog.int4, pg_catalog.length($2), pg_catalog.now()", [0, 25]),
			clientMessages.bind("", "", [Buffer.from("7"), Buffer.from("abc")]),
			clientMessages.execute(""),
			clientMessages.parse("", "SELECT 'x\\y' AS v, 'café' AS w"),
			clientMessages.bind("", ""),
			clientMessages.execute(""),
			clientMessages.sync(),
		);
		const ms = await raw.until("readyForQuery");
		assert.equal(
			ms.find((m) => m.type === "errorResponse"),
			undefined,
			JSON.stringify(ms),
		);
		assert.equal(ms.filter((m) => m.type === "commandComplete").length, 2);
		// a view read, then Sync: the next segment waits for the server's report and runs
		raw.send(clientMessages.parse("", "SELECT count(*) FROM accounts"), clientMessages.bind("", ""), clientMessages.execute(""), clientMessages.sync());
		await raw.until("readyForQuery");
		raw.send(clientMessages.query("SELECT 'x\\y' AS v"));
		const after = await raw.until("readyForQuery");
		assert.equal(after.find((m) => m.type === "errorResponse"), undefined, JSON.stringify(after));
		raw.end();
		assert.equal(await accounts(), 5);
	});
});
