import assert from "node:assert/strict";
import { test } from "node:test";
import { compileDetector, compileDetectorRules, DetectorPatternError, detectAndMask, ibanValid, luhnValid, ssnValid } from "./detectors.ts";

const REDACT = { type: "redact" } as const;

test("Luhn: valid and invalid card numbers", () => {
	for (const n of ["4111111111111111", "5500005555555559", "378282246310005", "6011111111111117", "4012888888881881"]) {
		assert.equal(luhnValid(n), true, n);
	}
	for (const n of ["4111111111111112", "1234567812345678", "0000000000000001", "", "41111111111a1111"]) {
		assert.equal(luhnValid(n), false, n);
	}
});

test("IBAN: mod-97 check", () => {
	for (const n of ["DE89370400440532013000", "GB82 WEST 1234 5698 7654 32", "FR1420041010050500013M02606", "NL91ABNA0417164300"]) {
		assert.equal(ibanValid(n), true, n);
	}
	for (const n of ["DE89370400440532013001", "GB82WEST12345698765433", "XX00", "DE8937040044053201300"]) {
		assert.equal(ibanValid(n), false, n);
	}
});

test("US SSN format and ranges", () => {
	assert.equal(ssnValid("123-45-6789"), true);
	for (const n of ["000-12-3456", "666-12-3456", "912-34-5678", "123-00-4567", "123-45-0000", "123456789"]) assert.equal(ssnValid(n), false, n);
});

test("detectAndMask: cards only when Luhn-valid, in any grouping", () => {
	assert.equal(detectAndMask("pay with 4111 1111 1111 1111 now", ["creditCard"], [], REDACT), "pay with **** now");
	assert.equal(detectAndMask("card 4111-1111-1111-1111.", ["creditCard"], [], REDACT), "card ****.");
	assert.equal(detectAndMask("order 4111111111111112", ["creditCard"], [], REDACT), "order 4111111111111112", "fails Luhn");
	assert.equal(detectAndMask("id 12345", ["creditCard"], [], REDACT), "id 12345");
	assert.equal(
		detectAndMask("4111111111111111", ["creditCard"], [], { type: "partial", keepLast: 4 }),
		"************1111",
	);
});

test("detectAndMask: emails, phones, IBANs, national ids", () => {
	assert.equal(detectAndMask("contact Alice.B+x@mail.example.co.uk today", ["email"], [], REDACT), "contact **** today");
	assert.equal(detectAndMask("no email@here", ["email"], [], REDACT), "no email@here");
	assert.equal(detectAndMask("call +1-555-0100 or (555) 123-4567", ["phone"], [], REDACT), "call **** or ****");
	assert.equal(detectAndMask("call +44 20 7946 0958", ["phone"], [], REDACT), "call ****");
	assert.equal(detectAndMask("year 2024 and 3.14", ["phone"], [], REDACT), "year 2024 and 3.14");
	assert.equal(detectAndMask("host 192.168.100.200 up", ["phone"], [], REDACT), "host 192.168.100.200 up", "IPv4 is not a phone");
	assert.equal(detectAndMask("at 2024-01-15 10:00:00", ["phone", "creditCard", "nationalId"], [], REDACT), "at 2024-01-15 10:00:00");
	assert.equal(detectAndMask("call 030 1234 5678.", ["phone"], [], REDACT), "call ****.");
	assert.equal(detectAndMask("iban DE89 3704 0044 0532 0130 00 ok", ["iban"], [], REDACT), "iban **** ok");
	assert.equal(detectAndMask("iban DE89 3704 0044 0532 0130 01 ok", ["iban"], [], REDACT), "iban DE89 3704 0044 0532 0130 01 ok");
	assert.equal(detectAndMask("ssn 123-45-6789", ["nationalId"], [], REDACT), "ssn ****");
	assert.equal(detectAndMask("ssn 000-45-6789", ["nationalId"], [], REDACT), "ssn 000-45-6789");
	assert.throws(() => detectAndMask("a@b.io", ["email"], [], { type: "hash" }), /masking key/, "hash needs a real key");
	assert.equal(detectAndMask("a@b.io", ["email"], [], { type: "hash", length: 8 }, Buffer.alloc(32, 1)).length, 8);
});

test("detectAndMask: custom patterns and several detectors in one text", () => {
	assert.equal(detectAndMask("token sk_live_abc123 here", [], ["sk_live_[A-Za-z0-9]+"], REDACT), "token **** here");
	const all = detectAndMask("a@b.io 4111111111111111 DE89370400440532013000", ["email", "creditCard", "iban"], [], REDACT);
	assert.equal(all, "**** **** ****");
});

test("compiled detectors return undefined when nothing matched", () => {
	const d = compileDetector(["creditCard", "email"], ["secret-\\d+"], REDACT, Buffer.alloc(32));
	assert.equal(d("nothing to see"), undefined);
	assert.equal(d("secret-42"), "****");
	assert.throws(() => compileDetector([], ["("], REDACT, Buffer.alloc(32)), DetectorPatternError);
	const rules = compileDetectorRules(
		[
			{ name: "a", detectors: ["email"], strategy: REDACT },
			{ name: "b", patterns: ["\\bACME-\\d+\\b"], strategy: { type: "redact", replacement: "[id]" } },
			{ name: "c", columns: ["x.y"], strategy: REDACT },
		],
		Buffer.alloc(32),
	)!;
	assert.equal(rules("mail x@y.org about ACME-12"), "mail **** about [id]");
	assert.equal(rules("plain"), undefined);
	assert.equal(compileDetectorRules([{ name: "c", columns: ["x.y"], strategy: REDACT }], Buffer.alloc(32)), undefined);
});

test("error catalogue: every PolicyError code is documented and raised with its code", async () => {
	const { POLICY_ERROR_CODES, PolicyError } = await import("./errors.ts");
	const { compileStringMasker } = await import("./maskvalue.ts");
	const { readFileSync } = await import("node:fs");
	const readme = readFileSync(new URL("./README.md", import.meta.url), "utf8");
	for (const code of POLICY_ERROR_CODES) assert.ok(readme.includes(`\`${code}\``), `README documents ${code}`);
	const e1 = (() => {
		try {
			compileDetector([], ["[unclosed"], REDACT, Buffer.alloc(32));
		} catch (e) {
			return e;
		}
	})();
	assert.ok(e1 instanceof PolicyError && e1.code === "invalid-pattern");
	assert.throws(() => compileStringMasker({ type: "hash" }, Buffer.alloc(4)), (e: unknown) => e instanceof PolicyError && e.code === "invalid-masking-key");
});

test("detectors find every seeded customer's email, phone, card and IBAN in free text (and nothing in names)", async () => {
	const { seedRows } = await import("../../test/env/seed.ts");
	const d = compileDetector(["creditCard", "email", "phone", "iban"], [], REDACT, Buffer.alloc(32));
	for (const c of seedRows().customers) {
		const text = `note for ${c.name}: mail ${c.email}, call ${c.phone}, card ${c.card_number}, iban ${c.iban}; created ${c.created}`;
		const out = d(text) ?? text;
		for (const v of [c.email, c.phone, c.card_number, c.iban]) assert.ok(!out.includes(v), `${v} survived: ${out}`);
		assert.ok(out.includes(c.name) && out.includes(c.created), `over-masked: ${out}`);
	}
});
