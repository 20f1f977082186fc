// Regression (red-team round 12: masking). The masking checks made before a statement runs (writes
// that copy masked data where masking cannot follow, COPY TO STDOUT of masked columns, the content
// detectors over COPY rows) were made when the statement was parsed, under the policy then in
// force. A named protocol statement parsed while no masking applied ran unchecked when bound after
// a MaskingPolicy was merged: `COPY (SELECT phone ...) TO STDOUT` (or email) sent them raw, and a read-write grant's `INSERT INTO scratch12 SELECT id, phone FROM customers`
// copied every phone into a table it reads. A statement checked under another policy than the one
// in force is checked again at its Bind.
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import type { ServerMessage } from "../../gateway/postgres/protocol.ts";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { assertNoneOf, CONNECTION, DEFAULT_GRANTS, type Fixture, startFixture } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

let fx: Fixture;
const phones: string[] = [];
const emails: string[] = [];
before(async () => {
	fx = await startFixture({});
	const r = await fx.pg.query("SELECT phone, email FROM customers ORDER BY id");
	phones.push(...r.rows.map((x) => x.phone as string));
	emails.push(...r.rows.map((x) => x.email as string));
	await fx.pg.query("CREATE TABLE scratch12 (id int, v text)");
	await fx.pg.query("GRANT ALL ON scratch12 TO PUBLIC");
});
after(async () => {
	await fx?.stop();
});

const text = (ms: ServerMessage[]) =>
	ms.flatMap((m) => (m.type === "copyData" ? [Buffer.from(m.data).toString("utf8")] : m.type === "dataRow" ? m.values.map((v) => v?.toString("utf8") ?? "") : []));
const refusal = (ms: ServerMessage[]) => ms.find((m): m is Extract<ServerMessage, { type: "errorResponse" }> => m.type === "errorResponse");

async function runNamed(c: RawClient, name: string): Promise<ServerMessage[]> {
	c.send(clientMessages.bind("", name, [], []), clientMessages.describe("P", ""), clientMessages.execute("", 0), clientMessages.sync());
	return c.until("readyForQuery");
}

test("statements parsed before masking applied are checked when bound under it", async () => {
	const ro = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("bob"));
	const rw = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("alice"));
	try {
		ro.send(
			clientMessages.parse("cp", "COPY (SELECT phone FROM customers ORDER BY id LIMIT 3) TO STDOUT"),
			clientMessages.parse("ce", "COPY (SELECT email FROM customers ORDER BY id LIMIT 3) TO STDOUT"),
			clientMessages.sync(),
		);
		assert.equal(refusal(await ro.until("readyForQuery")), undefined);
		rw.send(clientMessages.parse("ins", "INSERT INTO scratch12 SELECT id, phone FROM customers"), clientMessages.sync());
		assert.equal(refusal(await rw.until("readyForQuery")), undefined);

		fx.store.update(fx.makeBundle(2, DEFAULT_GRANTS, { maskRules: CORPUS_MASK_RULES }));

		const cp = await runNamed(ro, "cp");
		assertNoneOf(phones, text(cp));
		const e1 = refusal(cp);
		assert.equal(e1?.fields.C, "42501", JSON.stringify(cp));
		assert.match(String(e1?.fields.D), /masking:copy-out/);
		const ce = await runNamed(ro, "ce");
		assertNoneOf(emails, text(ce));
		assert.match(String(refusal(ce)?.fields.D), /masking:copy-out/);
		// a COPY of clean columns goes on
		ro.send(clientMessages.parse("ok", "COPY (SELECT id FROM customers ORDER BY id LIMIT 2) TO STDOUT"), clientMessages.sync());
		await ro.until("readyForQuery");
		assert.deepEqual(text(await runNamed(ro, "ok")), ["1\n", "2\n"]);

		const ins = await runNamed(rw, "ins");
		assert.match(String(refusal(ins)?.fields.D), /mask:copy-masked-data/);
		assert.equal((await fx.pg.query("SELECT count(*)::int AS n FROM scratch12")).rows[0]!.n, 0);
		// refused again at the next Bind, as when parsed under masking
		assert.match(String(refusal(await runNamed(rw, "ins"))?.fields.D), /mask:copy-masked-data/);
	} finally {
		ro.socket.end();
		rw.socket.end();
	}
});
