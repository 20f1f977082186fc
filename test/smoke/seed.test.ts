import assert from "node:assert/strict";
import { test } from "node:test";
import { luhnValid, SEED_CUSTOMERS, SEED_ORDERS, seedRows } from "../env/index.ts";

// Independent checks (BigInt mod 97, textbook Luhn) of the generated personal data.
const ibanOk = (iban: string) => {
	const r = `${iban.slice(4)}${iban.slice(0, 4)}`.replace(/[A-Z]/g, (c) => String(c.charCodeAt(0) - 55));
	return BigInt(r) % 97n === 1n;
};

test("seed rows are deterministic and their card numbers and IBANs are valid", () => {
	const a = seedRows();
	assert.deepEqual(a, seedRows());
	assert.equal(a.customers.length, SEED_CUSTOMERS);
	assert.equal(a.orders.length, SEED_ORDERS);
	assert.ok(a.customers.every((c) => luhnValid(c.card_number)));
	assert.ok(a.customers.every((c) => ibanOk(c.iban)), "IBAN checksums");
	assert.ok(a.customers.every((c) => /^[a-z.]+\.\d+@example\.com$/.test(c.email)));
	assert.equal(new Set(a.customers.map((c) => c.email)).size, SEED_CUSTOMERS);
	assert.equal(luhnValid("4111111111111112"), false);
	assert.ok(a.orders.every((o) => o.customer_id >= 1 && o.customer_id <= SEED_CUSTOMERS));
});
