import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { issueCert, type PostgresHandle, printLogsOnFailure, SEED_CUSTOMERS, SEED_ORDERS, startPostgres, luhnValid } from "../env/index.ts";

let pg: PostgresHandle;
before(async () => {
	pg = await startPostgres({ hba: ["hostssl all certuser 127.0.0.1/32 cert"] });
});
after(async () => {
	await pg?.stop();
});
printLogsOnFailure(() => [["postgres", pg]]);

test("psql over TLS (verify-full, scram) reads the seeded customers", async () => {
	const r = await pg.psql(["-At", "-c", "SELECT count(*), ssl FROM customers, pg_stat_ssl WHERE pid = pg_backend_pid() GROUP BY ssl"]);
	assert.equal(r.code, 0, r.stderr);
	assert.equal(r.stdout.trim(), `${SEED_CUSTOMERS}|t`);
});

test("psql with a wrong password is refused with scram", async () => {
	const r = await pg.psql(["-c", "select 1"], { password: "wrong" });
	assert.notEqual(r.code, 0);
	assert.match(r.stderr, /password authentication failed/);
});

test("plaintext TCP is rejected", async () => {
	const r = await pg.psql(["-c", "select 1"], { env: { PGSSLMODE: "disable" } });
	assert.notEqual(r.code, 0);
	assert.match(r.stderr, /no encryption|pg_hba\.conf rejects/);
});

test("node-postgres over TLS queries orders joined to customers and the view", async () => {
	const c = await pg.connect();
	try {
		const ssl = await c.query("SELECT ssl, version FROM pg_stat_ssl WHERE pid = pg_backend_pid()");
		assert.equal(ssl.rows[0].ssl, true);
		const n = await c.query("SELECT count(*)::int AS n FROM orders");
		assert.equal(n.rows[0].n, SEED_ORDERS);
		const cards = await c.query<{ card_number: string }>("SELECT card_number FROM customers");
		assert.ok(cards.rows.every((r) => luhnValid(r.card_number)));
		const v = await c.query("SELECT email FROM customer_contacts WHERE id = 1");
		assert.match(v.rows[0].email, /@example\.com$/);
		const auth = await c.query("SELECT rolpassword LIKE 'SCRAM-SHA-256$%' AS scram FROM pg_authid WHERE rolname = current_user");
		assert.equal(auth.rows[0].scram, true);
	} finally {
		await c.end();
	}
});

test("node-postgres refuses a server certificate from another CA", async () => {
	const { default: pgmod } = await import("pg");
	const other = new pgmod.Client({ ...pg.clientConfig(), ssl: { ca: "-----BEGIN CERTIFICATE-----\nMIIBAA==\n-----END CERTIFICATE-----\n" } });
	await assert.rejects(other.connect());
});

test("createRole + restart keeps data", async () => {
	await pg.createRole("reader", { password: "reader-pw", grants: ["GRANT SELECT ON customers TO $role"] });
	await pg.restart();
	const r = await pg.query("SELECT count(*)::int AS n FROM customers", [], { user: "reader", password: "reader-pw" });
	assert.equal(r.rows[0]?.n, SEED_CUSTOMERS);
	await assert.rejects(pg.query("SELECT * FROM orders", [], { user: "reader", password: "reader-pw" }), /permission denied/);
});

test("client-certificate auth through an extra pg_hba line", async () => {
	await pg.createRole("certuser", { grants: ["GRANT SELECT ON customer_contacts TO $role"] });
	const cert = await issueCert(pg.ca, { cn: "certuser", usage: "client", name: "certuser" });
	const { default: pgmod } = await import("pg");
	const c = new pgmod.Client({ ...pg.clientConfig({ user: "certuser" }), ssl: { ca: pg.caPem, cert: cert.certPem, key: cert.keyPem } });
	await c.connect();
	try {
		const r = await c.query("SELECT current_user AS u, count(*)::int AS n FROM customer_contacts");
		assert.deepEqual(r.rows[0], { u: "certuser", n: SEED_CUSTOMERS });
	} finally {
		await c.end();
	}
	// Without the certificate the same user is refused (no password fallback on that hba line).
	await assert.rejects(pg.query("SELECT 1", [], { user: "certuser", password: "x" }), /certificate/);
});
