// Regression (red-team round 8: guardrails). A Bind decides again when the guardrail rules changed
// since its statement's Parse (a GuardrailPolicy merged while a session holds prepared statements).
// But where the gateway cannot tell what a name holds at a Bind (an Execute earlier in the same
// Sync segment ran SQL PREPARE or DEALLOCATE, which may redefine it), the Bind was forwarded
// undecided whenever no rule required approval. Through the real gateway to a real PostgreSQL, a
// read-write grant parsed `DELETE FROM jobs WHERE id > 0` as s while no rule applied; after a rule
// blocking DELETE of jobs was merged, Parse/Bind/Execute of `PREPARE z AS SELECT 1` followed by
// Bind s and Execute, in one segment, deleted every job. Now such a Bind is refused when a
// definition of the name was decided under other rules than those in force (rule
// `guardrails:unknown-statement`: Sync, or Parse again, first).
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { DEFAULT_GRANTS, type Fixture, startFixture } from "./fixture.ts";
import { RawClient, types } from "./raw-client.ts";

let fx: Fixture;
let version = 1;
before(async () => {
	fx = await startFixture({ guardrails: [] });
	await fx.pg.query("CREATE TABLE jobs (id int PRIMARY KEY)");
	await fx.pg.query("INSERT INTO jobs SELECT g FROM generate_series(1, 10) g");
});
after(async () => {
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

const count = async (): Promise<number> => (await fx.pg.query("SELECT count(*)::int AS n FROM jobs")).rows[0]!.n as number;

test("a statement bound after a name-changing Execute in its segment meets rules merged since its Parse", async () => {
	const c = await RawClient.login(fx.port, fx.caPem, "shop-prod", await fx.token("alice"));
	try {
		c.send(clientMessages.parse("s", "DELETE FROM jobs WHERE id > 0"), clientMessages.sync());
		assert.deepEqual(types(await c.until("readyForQuery")), ["parseComplete", "readyForQuery"]);
		fx.store.update(fx.makeBundle(++version, DEFAULT_GRANTS, { guardrails: [{ name: "keep-jobs", action: "block", sql: { statementKinds: ["DELETE"], tables: ["jobs"] } }] }));
		c.send(
			clientMessages.parse("", "PREPARE z AS SELECT 1"),
			clientMessages.bind("", ""),
			clientMessages.execute(""),
			clientMessages.bind("p", "s"),
			clientMessages.execute("p"),
			clientMessages.sync(),
		);
		const got = await c.until("readyForQuery");
		const err = got.find((m) => m.type === "errorResponse");
		assert.ok(err, `refused: ${JSON.stringify(types(got))}`);
		assert.match(JSON.stringify(err), /guardrails:unknown-statement/);
		assert.match(JSON.stringify(err), /42501/);
		assert.equal(await count(), 10);
		// a statement parsed under the rules in force still runs in the same position
		c.send(clientMessages.parse("q", "SELECT count(*) FROM jobs"), clientMessages.sync());
		await c.until("readyForQuery");
		c.send(
			clientMessages.parse("", "PREPARE z2 AS SELECT 1"),
			clientMessages.bind("", ""),
			clientMessages.execute(""),
			clientMessages.bind("p2", "q"),
			clientMessages.execute("p2"),
			clientMessages.sync(),
		);
		const ok = await c.until("readyForQuery");
		assert.ok(!ok.some((m) => m.type === "errorResponse"), JSON.stringify(ok));
		assert.ok(types(ok).includes("dataRow"));
	} finally {
		c.end();
	}
});
