// MaskerShape is a per-column shortcut the PostgreSQL data path takes instead of calling the masker
// per value (gateway/postgres/session.ts maskRow). It must never produce other bytes than the call:
// every strategy x wire format x type x value shape is compared here.
import assert from "node:assert/strict";
import { test } from "node:test";
import type { MaskStrategy } from "../config/bundle.ts";
import { compileValueMasker, TypeOid, writeAsciiPartial } from "./maskvalue.ts";

const KEY = Buffer.alloc(32, 7);
const STRATEGIES: MaskStrategy[] = [
	{ type: "null" },
	{ type: "redact" },
	{ type: "redact", replacement: "[hidden]" },
	{ type: "partial", keepLast: 4 },
	{ type: "partial", keepFirst: 2, keepLast: 3 },
	{ type: "partial", keepFirst: 0, keepLast: 0 },
	{ type: "hash" },
] as MaskStrategy[];
const TYPES = [TypeOid.Text, 1043 /* varchar */, 1042 /* bpchar */, 23 /* int4 */, 20 /* int8 */, 17 /* bytea */, TypeOid.Json, TypeOid.Jsonb, 705 /* unknown */, 16500 /* a user type */, 1700 /* numeric */];
const VALUES = ["4000123412341234", "ab", "", "x", "élan vital", "12345", '"a json string"', "{\"k\": 1}", "\u0001binary\u0000"].map((v) => Buffer.from(v, "utf8"));

test("a masker's shape gives the bytes its call gives, for every strategy, format, type and value", () => {
	let shortcuts = 0;
	for (const strategy of STRATEGIES) {
		const masker = compileValueMasker(strategy, KEY);
		for (const typeOid of TYPES) {
			for (const format of [0, 1] as const) {
				const shape = masker.shape?.(format, typeOid);
				for (const value of VALUES) {
					const expected = masker(value, format, typeOid);
					const what = `${JSON.stringify(strategy)} type ${typeOid} format ${format} value ${JSON.stringify(value.toString("latin1"))}`;
					if (shape?.kind === "constant") {
						shortcuts++;
						assert.deepEqual(shape.value, expected, what);
					} else if (shape?.kind === "ascii-partial") {
						const ascii = value.every((b) => b <= 0x7f);
						if (!ascii || value.length <= shape.first + shape.last) continue; // the data path calls the masker
						shortcuts++;
						const out = Buffer.alloc(value.length);
						assert.equal(writeAsciiPartial(value, 0, value.length, out, 0, shape.first, shape.last), value.length);
						assert.deepEqual(out, expected, what);
					}
				}
			}
		}
	}
	// The shortcut is taken for the common cases (redact, null, partial card numbers), not never.
	assert.ok(shortcuts > 200, `only ${shortcuts} shortcut cases`);
});

test("hash has no shape: its output depends on the value", () => {
	const masker = compileValueMasker({ type: "hash" } as MaskStrategy, KEY);
	assert.equal(masker.shape?.(0, TypeOid.Text), undefined);
});
