/**
 * Regression (red-team round 8: masking, result formats). Content detectors (card numbers, emails,
 * IBANs, national ids) scanned text-format values of every type but binary-format values only of
 * text types. A driver that asks for binary results (pgx, JDBC, tokio-postgres, node-postgres with
 * `binary: true`) got, for a column no rule names, the same card number and email that text format
 * masked: inside `ARRAY[notes]`, `to_jsonb(notes)`, `ROW(notes)` (the strings are embedded in the
 * binary form as they are), and a card number kept in a bigint or numeric column (binary integers
 * are not digits). Binary values are scanned now (integers and numeric in their text form), and a
 * hit in a non-text type becomes NULL, as in text format.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { DEMO_RULES } from "../../gateway/policy/corpus/catalog.ts";
import type { ServerMessage } from "../../gateway/postgres/protocol.ts";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { printLogsOnFailure } from "../env/index.ts";
import { CONNECTION, type Fixture, startFixture } from "./fixture.ts";
import { RawClient } from "./raw-client.ts";

let fx: Fixture;
const CARD = "4111 1111 1111 1111";
const EMAIL = "jo.doe@example.com";

before(async () => {
	fx = await startFixture({ maskRules: DEMO_RULES, grants: [{ name: "ro", user: "ro", access: "read-only" }] });
	await fx.pg.query("CREATE TABLE detector_notes (id int PRIMARY KEY, t text, b bigint, n numeric)");
	await fx.pg.query("INSERT INTO detector_notes VALUES (1, $1, 4111111111111111, 4111111111111111.00), (2, 'hello', 42, 42.50)", [
		`pay with ${CARD} or mail ${EMAIL}`,
	]);
});
after(async () => {
	await fx?.pg.query("DROP TABLE IF EXISTS detector_notes").catch(() => undefined);
	await fx?.stop();
});
printLogsOnFailure(() => [["postgres", fx?.pg]]);

const SQL = "select t, array[t] as a, to_jsonb(t) as j, row(t) as r, b, n from detector_notes order by id";
const COLUMNS = ["t", "a", "j", "r", "b", "n"];

async function run(format: 0 | 1): Promise<(Buffer | null)[][]> {
	const c = await RawClient.login(fx.port, fx.caPem, CONNECTION, await fx.token("ro"));
	try {
		c.send(
			clientMessages.parse("", SQL),
			clientMessages.bind("", "", [], [format]),
			clientMessages.describe("P", ""),
			clientMessages.execute(""),
			clientMessages.sync(),
		);
		const ms: ServerMessage[] = await c.until("readyForQuery");
		assert.equal(
			ms.find((m) => m.type === "errorResponse"),
			undefined,
			JSON.stringify(ms.find((m) => m.type === "errorResponse")),
		);
		const desc = ms.find((m): m is Extract<ServerMessage, { type: "rowDescription" }> => m.type === "rowDescription");
		assert.deepEqual(
			desc?.fields.map((f) => f.format),
			COLUMNS.map(() => format),
		);
		return ms.filter((m): m is Extract<ServerMessage, { type: "dataRow" }> => m.type === "dataRow").map((m) => m.values);
	} finally {
		c.end();
	}
}

function assertNoSecret(rows: (Buffer | null)[][], label: string): void {
	for (const row of rows) {
		for (const [i, v] of row.entries()) {
			if (v === null) continue;
			const text = v.toString("latin1");
			for (const s of [CARD, CARD.replaceAll(" ", ""), EMAIL]) assert.ok(!text.includes(s), `${label}: ${s} in column ${COLUMNS[i]}: ${JSON.stringify(text)}`);
		}
	}
}

test("binary results: detector matches inside arrays, jsonb, records and numbers are masked as in text format", async () => {
	const text = await run(0);
	assertNoSecret(text, "text format");
	const binary = await run(1);
	assertNoSecret(binary, "binary format");
	// the row holding the card and the email: every non-text column NULL, in both formats
	for (const [label, rows] of [
		["text", text],
		["binary", binary],
	] as const) {
		const hit = rows[0]!;
		assert.ok(hit[0]?.toString("utf8").includes("pay with"), `${label}: the text column keeps its other words`);
		assert.deepEqual(
			hit.slice(1).map((v) => v === null),
			[true, true, true, true, true],
			`${label}: ${JSON.stringify(hit.map((v) => v?.toString("latin1") ?? null))}`,
		);
	}
	// a clean row is untouched in binary format
	const clean = binary[1]!;
	assert.equal(clean[0]?.toString("utf8"), "hello");
	assert.ok(
		clean.every((v) => v !== null),
		JSON.stringify(clean.map((v) => v?.toString("hex") ?? null)),
	);
	assert.equal(clean[4]!.readBigInt64BE(0), 42n);
});
