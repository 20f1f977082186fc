// detectorText: the text the content detectors scan for a wire value. In binary format integers and
// numeric must read as numeric_out/int8out would write them (a card number kept in a bigint is a run
// of digits only in its text form), strings embedded in other binary forms as they are, and types
// holding no text not at all (red-team round 8, test/postgres/issue-binary-detectors.test.ts).
import assert from "node:assert/strict";
import { test } from "node:test";
import { binaryScannable, detectorText, TypeOid } from "./maskvalue.ts";

/** numeric's binary form from its fields (ndigits is the digit count). */
function numeric(weight: number, sign: number, dscale: number, digits: number[]): Buffer {
	const b = Buffer.alloc(8 + 2 * digits.length);
	b.writeInt16BE(digits.length, 0);
	b.writeInt16BE(weight, 2);
	b.writeUInt16BE(sign, 4);
	b.writeUInt16BE(dscale, 6);
	for (const [i, d] of digits.entries()) b.writeUInt16BE(d, 8 + 2 * i);
	return b;
}
const text = (b: Buffer, format: 0 | 1, oid: number) => detectorText(b, 0, b.length, format, oid);

test("binary integers and numeric read as their text form", () => {
	const i8 = Buffer.alloc(8);
	i8.writeBigInt64BE(4111111111111111n);
	assert.equal(text(i8, 1, TypeOid.Int8), "4111111111111111");
	i8.writeBigInt64BE(-42n);
	assert.equal(text(i8, 1, TypeOid.Int8), "-42");
	const i4 = Buffer.alloc(4);
	i4.writeInt32BE(-123456);
	assert.equal(text(i4, 1, TypeOid.Int4), "-123456");
	assert.equal(text(Buffer.from([0xff, 0xfe]), 1, TypeOid.Int2), "-2");
	assert.equal(text(Buffer.from([0xff, 0xff, 0xff, 0xff]), 1, TypeOid.Oid), "4294967295");
	// numeric_out spellings
	assert.equal(text(numeric(3, 0, 2, [4111, 1111, 1111, 1111]), 1, TypeOid.Numeric), "4111111111111111.00");
	assert.equal(text(numeric(0, 0, 2, [42, 5000]), 1, TypeOid.Numeric), "42.50");
	assert.equal(text(numeric(0, 0, 0, []), 1, TypeOid.Numeric), "0");
	assert.equal(text(numeric(-1, 0, 4, [1]), 1, TypeOid.Numeric), "0.0001");
	assert.equal(text(numeric(-2, 0, 8, [1]), 1, TypeOid.Numeric), "0.00000001");
	assert.equal(text(numeric(1, 0x4000, 1, [1, 2]), 1, TypeOid.Numeric), "-10002.0");
	assert.equal(text(numeric(2, 0, 0, [7]), 1, TypeOid.Numeric), "700000000");
	assert.equal(text(numeric(0, 0xc000, 0, []), 1, TypeOid.Numeric), undefined, "NaN holds no digits");
	assert.equal(text(Buffer.from([0, 1]), 1, TypeOid.Numeric), undefined, "malformed");
	assert.equal(text(Buffer.from([1, 2, 3]), 1, TypeOid.Int4), undefined, "wrong length");
});

test("other binary forms are read as UTF-8; types holding no text are not read", () => {
	assert.equal(text(Buffer.from('\u0001"mail a@b.example"'), 1, TypeOid.Jsonb), '"mail a@b.example"');
	const arr = Buffer.concat([Buffer.from([0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 25]), Buffer.from("4111 1111 1111 1111")]);
	assert.ok(text(arr, 1, 1009)?.includes("4111 1111 1111 1111"));
	assert.equal(text(Buffer.from("user type"), 1, 16500), "user type");
	for (const oid of [TypeOid.Bool, TypeOid.Float8, TypeOid.Timestamptz, TypeOid.Uuid, TypeOid.Date]) {
		assert.equal(binaryScannable(oid), false);
		assert.equal(text(Buffer.alloc(8, 0x34), 1, oid), undefined);
	}
	// text format: the value as it is, whatever the type
	assert.equal(text(Buffer.from("4111111111111111"), 0, TypeOid.Int8), "4111111111111111");
});
