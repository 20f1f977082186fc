/**
 * Large results through the gateway, row by row: DataRows are masked in place while they lie in one
 * received chunk, and frame by frame otherwise (rows straddling reads, rows larger than the arena).
 * Every row of a result built to hit both paths, their switches and the arena's refills is compared
 * with what the policy's own maskers make of the server's values.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import { compileValueMasker, TypeOid } from "../../gateway/policy/index.ts";
import { type Fixture, startFixture } from "./fixture.ts";

const ROWS = 30_000;
let fx: Fixture;
let c: pg.Client;

const card = { type: "partial", keepLast: 4 } as const;
before(async () => {
	fx = await startFixture({
		maskRules: [
			{ name: "email", columns: ["public.mix.email"], strategy: { type: "redact" } },
			{ name: "card", columns: ["mix.card"], strategy: card },
			{ name: "content", detectors: ["email"], strategy: { type: "redact", replacement: "[masked]" } },
		],
	});
	// Short rows, NULLs, empty and non-ASCII values (the general masker instead of the byte-level
	// shape), detector hits in the unmasked column, and every 997th row longer than a 64 KiB read.
	await fx.pg.query(`CREATE TABLE mix AS SELECT g AS id,
		CASE WHEN g % 13 = 0 THEN NULL ELSE 'user' || g || '@example.com' END AS email,
		CASE WHEN g % 17 = 0 THEN NULL WHEN g % 19 = 0 THEN '' WHEN g % 23 = 0 THEN 'é€' || g ELSE '4000' || lpad(g::text, 12, '0') END AS card,
		CASE WHEN g % 997 = 0 THEN repeat('x', 70000 + g % 7) WHEN g % 101 = 0 THEN 'write to n' || g || '@example.org' WHEN g % 7 = 0 THEN repeat('é', g % 50) ELSE 'note ' || g END AS note
		FROM generate_series(1, ${ROWS}) g`);
	c = await fx.connect("alice");
});
after(async () => {
	await c?.end();
	await fx?.stop();
});

async function check(rows: { id: number; email: string | null; card: string | null; note: string }[]): Promise<void> {
	const key = Buffer.from(fx.bundle.maskingKey, "base64");
	const maskEmail = compileValueMasker({ type: "redact" }, key);
	const maskCard = compileValueMasker(card, key);
	const text = (m: typeof maskEmail, v: string | null) => (v === null ? null : (m(Buffer.from(v), 0, TypeOid.Text)?.toString("utf8") ?? null));
	const direct = (await fx.pg.query<{ id: number; email: string | null; card: string | null; note: string }>("SELECT id, email, card, note FROM mix ORDER BY id")).rows;
	assert.equal(rows.length, ROWS);
	for (let i = 0; i < ROWS; i++) {
		const got = rows[i]!;
		const want = direct[i]!;
		assert.equal(got.id, want.id);
		assert.equal(got.email, text(maskEmail, want.email), `row ${want.id}: email`);
		assert.equal(got.card, text(maskCard, want.card), `row ${want.id}: card`);
		if (want.note.includes("@example.org")) assert.equal(got.note, "write to [masked]", `row ${want.id}: note`);
		else assert.equal(got.note, want.note, `row ${want.id}: note`);
	}
}

test("a large masked result: every row masked exactly as the policy's maskers say, simple protocol", { timeout: 120_000 }, async () => {
	const r = await c.query("SELECT id, email, card, note FROM mix ORDER BY id");
	await check(r.rows);
});

test("a large masked result: every row masked exactly as the policy's maskers say, extended protocol", { timeout: 120_000 }, async () => {
	const r = await c.query({ text: "SELECT id, email, card, note FROM mix WHERE id > $1 ORDER BY id", values: [0] });
	await check(r.rows);
});

test("an unmasked large result is relayed byte for byte", { timeout: 120_000 }, async () => {
	const r = await c.query("SELECT id, note FROM mix WHERE note NOT LIKE '%@%' ORDER BY id");
	const direct = await fx.pg.query("SELECT id, note FROM mix WHERE note NOT LIKE '%@%' ORDER BY id");
	assert.ok(r.rows.length > ROWS * 0.9);
	assert.deepEqual(r.rows, direct.rows);
});
