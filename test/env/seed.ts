// Deterministic sample data for the PostgreSQL test server: customers with personal data that the
// masking detectors must find (emails, phones, Luhn-valid card numbers, IBANs with valid checksums)
// and their orders. Same seed, same rows, every run.

export const SEED_CUSTOMERS = 200;
export const SEED_ORDERS = 400;

/** A small deterministic PRNG (mulberry32). */
function prng(seed: number): () => number {
	let a = seed >>> 0;
	return () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

/** Luhn check digit for a string of digits. */
export function luhnCheckDigit(body: string): number {
	let sum = 0;
	for (let i = 0; i < body.length; i++) {
		let d = Number(body[body.length - 1 - i]);
		if (i % 2 === 0) {
			d *= 2;
			if (d > 9) d -= 9;
		}
		sum += d;
	}
	return (10 - (sum % 10)) % 10;
}

export function luhnValid(digits: string): boolean {
	return /^\d+$/.test(digits) && luhnCheckDigit(digits.slice(0, -1)) === Number(digits.slice(-1));
}

/** ISO 13616 check digits (mod 97) for a country code and BBAN. */
export function ibanFor(country: string, bban: string): string {
	const rearranged = `${bban}${country}00`.replace(/[A-Z]/g, (c) => String(c.charCodeAt(0) - 55));
	let rem = 0;
	for (const ch of rearranged) rem = (rem * 10 + Number(ch)) % 97;
	const check = String(98 - rem).padStart(2, "0");
	return `${country}${check}${bban}`;
}

/** Well-known payment-network test numbers (they pass Luhn and charge nobody). */
const KNOWN_TEST_CARDS = [
	"4111111111111111",
	"4242424242424242",
	"4012888888881881",
	"5555555555554444",
	"5105105105105100",
	"378282246310005",
	"6011111111111117",
	"3530111333300000",
];

const FIRST = ["Ada", "Bram", "Chen", "Dana", "Emil", "Farah", "Goran", "Hana", "Ines", "Jonas", "Kai", "Lena", "Mateo", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sami", "Tove"];
const LAST = ["Andersen", "Bakker", "Costa", "Dubois", "Eriksen", "Fischer", "Garcia", "Horvat", "Ito", "Jansen", "Kowalski", "Lund", "Moreau", "Novak", "Okafor", "Petrov"];
const STATUSES = ["pending", "paid", "shipped", "delivered", "cancelled", "refunded"];

export interface SeedCustomer {
	id: number;
	name: string;
	email: string;
	phone: string;
	card_number: string;
	iban: string;
	created: string;
}

export interface SeedOrder {
	id: number;
	customer_id: number;
	amount: string;
	status: string;
	created: string;
}

export function seedRows(): { customers: SeedCustomer[]; orders: SeedOrder[] } {
	const rnd = prng(20260101);
	const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rnd() * xs.length)]!;
	const digits = (n: number) => Array.from({ length: n }, () => Math.floor(rnd() * 10)).join("");
	const base = Date.UTC(2025, 0, 1);
	const customers: SeedCustomer[] = [];
	for (let id = 1; id <= SEED_CUSTOMERS; id++) {
		const first = pick(FIRST);
		const last = pick(LAST);
		let card: string;
		if (id <= KNOWN_TEST_CARDS.length) card = KNOWN_TEST_CARDS[id - 1]!;
		else {
			const body = `4000${digits(11)}`;
			card = `${body}${luhnCheckDigit(body)}`;
		}
		const iban = id % 2 === 0 ? ibanFor("DE", digits(18)) : ibanFor("NL", `ABNA${digits(10)}`);
		customers.push({
			id,
			name: `${first} ${last}`,
			email: `${first}.${last}.${id}@example.com`.toLowerCase(),
			phone: `+1-555-01${String(id % 100).padStart(2, "0")}`,
			card_number: card,
			iban,
			created: new Date(base + id * 3_600_000 * 7).toISOString(),
		});
	}
	const orders: SeedOrder[] = [];
	for (let id = 1; id <= SEED_ORDERS; id++) {
		const customer = 1 + Math.floor(rnd() * SEED_CUSTOMERS);
		orders.push({
			id,
			customer_id: customer,
			amount: (Math.floor(rnd() * 50_000) / 100 + 1).toFixed(2),
			status: pick(STATUSES),
			created: new Date(base + 86_400_000 * 30 + id * 3_600_000 * 5).toISOString(),
		});
	}
	return { customers, orders };
}

const q = (s: string) => `'${s.replace(/'/g, "''")}'`;

/** SQL that creates and fills the sample schema (run inside the seeded database). */
export function seedSql(): string {
	const { customers, orders } = seedRows();
	const lines = [
		"BEGIN;",
		`CREATE TABLE customers (
  id          integer PRIMARY KEY,
  name        text NOT NULL,
  email       text NOT NULL UNIQUE,
  phone       text,
  card_number text,
  iban        text,
  created     timestamptz NOT NULL DEFAULT now()
);`,
		`CREATE TABLE orders (
  id          integer PRIMARY KEY,
  customer_id integer NOT NULL REFERENCES customers(id),
  amount      numeric(10,2) NOT NULL,
  status      text NOT NULL,
  created     timestamptz NOT NULL DEFAULT now()
);`,
		"CREATE INDEX orders_customer_id ON orders(customer_id);",
		`CREATE VIEW customer_contacts AS SELECT id, name, email, phone FROM customers;`,
		`CREATE VIEW customer_order_totals AS
  SELECT c.id, c.name, c.email, count(o.id) AS orders, coalesce(sum(o.amount), 0) AS total
  FROM customers c LEFT JOIN orders o ON o.customer_id = c.id GROUP BY c.id, c.name, c.email;`,
		"INSERT INTO customers (id, name, email, phone, card_number, iban, created) VALUES",
		customers
			.map((c) => `(${c.id}, ${q(c.name)}, ${q(c.email)}, ${q(c.phone)}, ${q(c.card_number)}, ${q(c.iban)}, ${q(c.created)})`)
			.join(",\n") + ";",
		"INSERT INTO orders (id, customer_id, amount, status, created) VALUES",
		orders.map((o) => `(${o.id}, ${o.customer_id}, ${o.amount}, ${q(o.status)}, ${q(o.created)})`).join(",\n") + ";",
		"COMMIT;",
		"ANALYZE;",
	];
	return `${lines.join("\n")}\n`;
}
