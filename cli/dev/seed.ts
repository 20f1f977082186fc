/**
 * Demo data for `drawbridge dev`: a shop database (customers with emails, phones and card numbers;
 * orders) and a support database (tickets). Deterministic, so the quickstart prints the same story
 * every time. All card numbers are test numbers that pass the Luhn check.
 */

const FIRST = ["Ada", "Grace", "Alan", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Margaret"];
const LAST = ["Lovelace", "Hopper", "Turing", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson", "Perlman", "Hamilton"];

/** Complete a 15-digit prefix with its Luhn check digit. */
export function withLuhnDigit(prefix: string): string {
	let sum = 0;
	for (let i = 0; i < prefix.length; i++) {
		let d = Number(prefix[prefix.length - 1 - i]);
		if (i % 2 === 0) {
			d *= 2;
			if (d > 9) d -= 9;
		}
		sum += d;
	}
	return prefix + String((10 - (sum % 10)) % 10);
}

const q = (s: string) => `'${s.replaceAll("'", "''")}'`;

export function shopSeedSql(customers = 50): string {
	const rows: string[] = [];
	for (let i = 1; i <= customers; i++) {
		const first = FIRST[i % FIRST.length] as string;
		const last = LAST[(i * 7) % LAST.length] as string;
		const email = `${first}.${last}${i}@example.com`.toLowerCase();
		const phone = `+1-555-${String(1000 + i).padStart(4, "0")}`;
		const card = withLuhnDigit(`4111${String(100000000000 + i * 7919).slice(-11)}`);
		rows.push(`(${i}, ${q(`${first} ${last}`)}, ${q(email)}, ${q(phone)}, ${q(card)})`);
	}
	const orders: string[] = [];
	for (let i = 1; i <= customers * 3; i++) {
		orders.push(`(${i}, ${((i * 13) % customers) + 1}, ${(((i * 37) % 500) + 5).toFixed(2)}, ${q(["paid", "shipped", "refunded"][i % 3] as string)})`);
	}
	return `
CREATE TABLE customers (
  id integer PRIMARY KEY,
  name text NOT NULL,
  email text NOT NULL,
  phone text,
  card_number text,
  created timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE orders (
  id integer PRIMARY KEY,
  customer_id integer NOT NULL REFERENCES customers(id),
  amount numeric(10,2) NOT NULL,
  status text NOT NULL,
  created timestamptz NOT NULL DEFAULT now()
);
INSERT INTO customers (id, name, email, phone, card_number) VALUES
${rows.join(",\n")};
INSERT INTO orders (id, customer_id, amount, status) VALUES
${orders.join(",\n")};
CREATE VIEW customer_contacts AS SELECT id, name, email, phone FROM customers;
`;
}

/** The demo tickets: half of them older than a year, the support bot's cleanup target. */
function ticketRows(tickets: number): string {
	const rows: string[] = [];
	for (let i = 1; i <= tickets; i++) {
		const ageDays = i % 2 === 0 ? 400 + i : i;
		rows.push(`(${i}, ${q(`Ticket ${i}: cannot log in`)}, ${q(`customer${i}@example.com`)}, now() - interval '${ageDays} days')`);
	}
	return rows.join(",\n");
}

export function ticketsSeedSql(tickets = 40): string {
	return `
CREATE TABLE tickets (
  id integer PRIMARY KEY,
  subject text NOT NULL,
  requester_email text NOT NULL,
  created timestamptz NOT NULL
);
INSERT INTO tickets (id, subject, requester_email, created) VALUES
${ticketRows(tickets)};
`;
}

/**
 * Puts back the demo tickets an earlier run's approved cleanup deleted (the quickstart's second run
 * would otherwise delete nothing); tickets the user added or changed are left alone.
 */
export function ticketsRestoreSql(tickets = 40): string {
	return `INSERT INTO tickets (id, subject, requester_email, created) VALUES
${ticketRows(tickets)}
ON CONFLICT (id) DO NOTHING;`;
}
