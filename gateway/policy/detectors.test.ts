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

// Red-team round: values that got past the content detectors (each case failed on the old code).
const ALL = compileDetector(["creditCard", "email", "phone", "iban", "nationalId"], [], REDACT, Buffer.alloc(32));
const masked = (text: string): string => ALL(text) ?? text;

test("issue-detector-bypass: card numbers with any separator, Unicode digits or invisible characters", () => {
	for (const card of [
		"4111.1111.1111.1111",
		"4111/1111/1111/1111",
		"4111_1111_1111_1111",
		"4111 -1111--1111 . 1111",
		"4111  1111  1111  1111",
		"4111\u00a01111\u20091111\u30001111",
		"4111\u20131111\u20141111\u22121111",
		"\uff14\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11\uff11",
		"\u0664\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661\u0661",
		"\u096a\u0967\u0967\u0967 \u0967\u0967\u0967\u0967 \u0967\u0967\u0967\u0967 \u0967\u0967\u0967\u0967",
		"4111\u200b1111\u200c1111\u200d1111",
		"4\u200b1\u20601\ufeff1\u00ad111111111111",
		"3782 822463 10005",
	]) {
		assert.equal(masked(`card ${card} end`), "card **** end", JSON.stringify(card));
	}
});

test("issue-detector-bypass: card numbers touching letters, other numbers, JSON, URLs and COPY rows", () => {
	assert.equal(masked("pan4111111111111111"), "pan****");
	assert.equal(masked("pan_4111111111111111"), "pan_****");
	assert.equal(masked("id-4111111111111111"), "id-****");
	assert.equal(masked("4111111111111111abc"), "****abc");
	assert.equal(masked("4111-1111-1111-1111-"), "****-");
	// whole groups around a card: the longest Luhn-valid run is masked, never none
	for (const text of ["ref 42 4111 1111 1111 1111", "ref 43 4111 1111 1111 1111", "4111 1111 1111 1111 7", "1 2 3 4111-1111-1111-1111 5 6"]) {
		assert.ok(!masked(text).includes("4111 1111 1111 1111") && !masked(text).includes("4111-1111-1111-1111"), `${text} -> ${masked(text)}`);
	}
	assert.equal(masked("42\t4111111111111111\t2024-01-15\n"), "42\t****\t2024-01-15\n", "a COPY row");
	assert.equal(masked('{"pan":"4111 1111 1111 1111"}'), '{"pan":"****"}');
	assert.equal(masked("https://pay.example/c?pan=4111111111111111&x=1"), "https://pay.example/c?pan=****&x=1");
	assert.equal(masked("\uff50\uff41\uff4e\uff1a\uff14\uff11\uff11\uff11 1111 1111 1111"), "\uff50\uff41\uff4e\uff1a****");
	const partial = compileDetector(["creditCard"], [], { type: "partial", keepLast: 4 }, Buffer.alloc(32));
	const math = "\u{1d7d2}" + "\u{1d7cf}".repeat(15);
	assert.equal(partial(`x ${math} y`), `x ${"*".repeat(12)}${"\u{1d7cf}".repeat(4)} y`, "astral digits: the original span is masked");
	assert.equal(partial("\u200e4111111111111111\u200f"), `\u200e${"*".repeat(12)}1111\u200f`, "invisible characters around stay outside");
});

test("issue-detector-bypass: emails with Unicode, punycode, quoted local parts, fullwidth @, zero-width characters", () => {
	for (const email of [
		"user@b\u00fccher.de",
		"j\u00f6s\u00e9@example.com",
		"user@example.xn--p1ai",
		"user@xn--bcher-kva.de",
		'"john doe"@example.com',
		"alice\uff20example.com",
		"alice\u200b@example.com",
		"alice+tag@mail.sub.example.co.uk",
	]) {
		assert.equal(masked(`mail ${email} end`), "mail **** end", JSON.stringify(email));
	}
	assert.equal(masked("alice@example.com-"), "****-");
});

test("issue-detector-bypass: IBANs in lower case, with dashes, double or no-break spaces", () => {
	for (const iban of [
		"de89370400440532013000",
		"de89 3704 0044 0532 0130 00",
		"DE89-3704-0044-0532-0130-00",
		"DE89  3704  0044  0532  0130  00",
		"DE89\u00a03704\u00a00044\u00a00532\u00a00130\u00a000",
		"gb82 west 1234 5698 7654 32",
	]) {
		assert.equal(masked(`iban ${iban} end`), "iban **** end", JSON.stringify(iban));
	}
});

test("issue-detector-bypass: national phone numbers with a trunk 0, 00-prefixed and fullwidth numbers", () => {
	for (const phone of ["030 12345678", "01 23 45 67 89", "0044 20 7946 0958", "\uff0b\uff11 415 555 2671", "+1\u00a0415\u00a0555\u00a02671"]) {
		assert.equal(masked(`call ${phone} end`), "call **** end", JSON.stringify(phone));
	}
});

test("detectors: no false positives on ids, times, decimals, UUIDs and dates", () => {
	for (const text of [
		"order 2024011512345678",
		"ts 2024-01-15T10:00:00.123456Z",
		"at 2024-01-15 10:00:00.123456+00",
		"uuid 550e8400-e29b-41d4-a716-446655440000 and 123e4567-e89b-12d3-a456-426614174000",
		"epoch 1700000000000",
		"ratio 0.30000000000000004",
		"ver 10.0.19045.3693",
		"ip 10.0.0.1 and 192.168.100.200",
		"amount 1,234,567.89",
		"am 01.02.2024 10:00",
		"date 15/01/2024 10:00",
		"isbn 978-3-16-148410-0",
		"tracking 1Z999AA10123456784",
		"sha e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
	]) {
		assert.equal(ALL(text), undefined, text);
	}
});

test("detectors are linear on 1 MB of adversarial digits and separators", () => {
	const N = 1 << 20;
	for (const [name, text] of Object.entries({
		digits: "1".repeat(N),
		"digit-space": "1 ".repeat(N / 2),
		"digit-dash": "1-".repeat(N / 2),
		mixed: "1.1-1/1_1 ".repeat(N / 10),
		plus: "+1 (1) ".repeat(N / 7),
		trunk: "0 12 ".repeat(N / 5),
		fullwidth: "\uff11 ".repeat(N / 2),
		"zero-width": "1\u200b".repeat(N / 2),
		email: `${"a.".repeat(N / 4)}@${"a-".repeat(N / 4)}`,
		quoted: `"${"a".repeat(60)}"@`.repeat(N / 63),
	})) {
		const t = performance.now();
		ALL(text);
		const ms = performance.now() - t;
		assert.ok(ms < 2000, `${name}: ${ms.toFixed(0)} ms`);
	}
});
