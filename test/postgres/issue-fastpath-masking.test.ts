// Regression (red-team round: results outside DataRow). Masking applies to admin grants too (unless
// the policy exempts the subject), but the fast-path FunctionCall message, allowed for admin grants,
// was relayed as it came: FunctionCall of query_to_xml by OID with 'select phone from customers'
// returned every phone (and email) raw in its FunctionCallResponse, where no column plan or
// detector ever looked. Now FunctionCall is refused for every grant while masking applies
// (`mask:function-call`); without masking rules admin grants keep it.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import type { ServerMessage } from "../../gateway/postgres/protocol.ts";
import { clientMessages, Writer } from "../../gateway/postgres/serializer.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { CONNECTION, type Fixture, startFixture } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

let fx: Fixture;
let queryToXml: number;
let phones: string[];

before(async () => {
	fx = await startFixture({ maskRules: CORPUS_MASK_RULES, grants: [{ name: "adm", user: "adm", access: "admin" }] });
	queryToXml = Number((await fx.pg.query("select 'pg_catalog.query_to_xml'::regproc::oid AS oid")).rows[0]!.oid);
	phones = (await fx.pg.query("select phone from customers where id <= 3")).rows.map((r) => String(r.phone));
});
after(async () => {
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

/** FunctionCall (F): oid, no argument format codes (all text), the arguments, text result. */
function functionCall(oid: number, args: string[]): Buffer {
	const w = new Writer().int32(oid).int16(0).int16(args.length);
	for (const a of args) {
		const b = Buffer.from(a, "utf8");
		w.int32(b.length).bytes(b);
	}
	return w.int16(0).message(0x46);
}

test("a fast-path FunctionCall cannot return masked columns to an admin grant", async () => {
	const c = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("adm"));
	try {
		// the same call as SQL is masked (control)
		c.send(clientMessages.query("select query_to_xml('select phone from customers where id <= 3', false, false, '')"));
		const sql = await c.until("readyForQuery");
		assert.ok(sql.some((m) => m.type === "dataRow"));

		c.send(functionCall(queryToXml, ["select phone from customers where id <= 3", "false", "false", ""]));
		const ms: ServerMessage[] = await c.until("readyForQuery");
		const text = JSON.stringify(ms, (_k, v) => (v?.type === "Buffer" ? Buffer.from(v.data).toString("utf8") : v));
		for (const p of phones) assert.ok(!text.includes(p), `${p} leaked: ${text}`);
		assert.ok(!ms.some((m) => m.type === "functionCallResponse"), text);
		const err = ms.find((m) => m.type === "errorResponse") as { fields: Record<string, string> } | undefined;
		assert.equal(err?.fields.C, "42501", text);
		assert.equal(err?.fields.D, "Drawbridge rule: mask:function-call", text);

		// the session goes on
		c.send(clientMessages.query("select 1"));
		assert.ok((await c.until("readyForQuery")).some((m) => m.type === "dataRow"));
	} finally {
		c.end();
	}
});
