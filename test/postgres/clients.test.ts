/** Real clients through the gateway: psql, pgbench (simple and prepared), psycopg2, cancel. */
import assert from "node:assert/strict";
import { connect } from "node:net";
import { after, before, test } from "node:test";
import type pg from "pg";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { run } from "../env/index.ts";
import { CONNECTION, type Fixture, startFixture } from "./fixture.ts";

let fx: Fixture;
before(async () => {
	fx = await startFixture({ maskRules: [{ name: "emails", columns: ["customers.email"], strategy: { type: "redact" } }] });
	const init = await run("/usr/lib/postgresql/15/bin/pgbench", ["-i", "-s", "1", "-q", fx.pg.connectionString()], {});
	assert.equal(init.code, 0, init.stderr);
});
after(async () => {
	await fx?.stop();
});

function libpqEnv(token: string): Record<string, string> {
	return {
		...(process.env as Record<string, string>),
		PGHOST: "localhost",
		PGPORT: String(fx.port),
		PGDATABASE: CONNECTION,
		PGUSER: "agent",
		PGPASSWORD: token,
		PGSSLMODE: "verify-full",
		PGSSLROOTCERT: fx.caFile,
	};
}

test("psql: queries, masking, a blocked write for a read-only grant, \\d meta-commands", async () => {
	const env = libpqEnv(await fx.token("bob"));
	const r = await run("/usr/bin/psql", ["-X", "-A", "-t", "-c", "select email from customers where id = 1", "-c", "select count(*) from orders"], { env });
	assert.equal(r.code, 0, r.stderr);
	assert.deepEqual(r.stdout.trim().split("\n"), ["****", "400"]);
	const w = await run("/usr/bin/psql", ["-X", "-c", "delete from orders where id = 1"], { env });
	assert.notEqual(w.code, 0);
	assert.match(w.stderr, /read-only/);
	const d = await run("/usr/bin/psql", ["-X", "-c", "\\d customers"], { env });
	assert.equal(d.code, 0, d.stderr);
	assert.match(d.stdout, /card_number/);
});

test("pgbench -S through the gateway, simple and prepared", async () => {
	const env = libpqEnv(await fx.token("alice"));
	for (const mode of ["simple", "extended", "prepared"]) {
		const r = await run("/usr/lib/postgresql/15/bin/pgbench", ["-n", "-S", "-c", "4", "-j", "2", "-t", "200", "-M", mode], { env });
		assert.equal(r.code, 0, `${mode}: ${r.stderr}`);
		assert.match(r.stdout, /number of transactions actually processed: 800\/800/);
	}
});

test("psycopg2 (Debian python3-psycopg2) through the gateway: parameters, transactions, masking, blocking", async () => {
	const script = `
import psycopg2
conn = psycopg2.connect("")
cur = conn.cursor()
cur.execute("select email, name from customers where id = %s", (2,))
email, name = cur.fetchone()
assert email == "****", email
assert name and name != "****", name
try:
    cur.execute("update customers set name = %s where id = %s", ("x", 2))
    raise SystemExit("write was not blocked")
except psycopg2.Error as e:
    assert e.pgcode == "42501", e.pgcode
conn.rollback()
cur.execute("select count(*) from orders where amount > %s", (0,))
print(cur.fetchone()[0])
conn.close()
`;
	const r = await run("/usr/bin/python3", ["-c", script], { env: libpqEnv(await fx.token("bob")) });
	assert.equal(r.code, 0, r.stderr);
	assert.equal(r.stdout.trim(), "400");
});

test("Ctrl-C in psql cancels the running query through the gateway", async () => {
	const { spawn } = await import("node:child_process");
	const env = libpqEnv(await fx.token("alice"));
	const started = Date.now();
	const child = spawn("/usr/bin/psql", ["-X", "-c", "select pg_sleep(30)"], { env });
	let stderr = "";
	child.stderr.on("data", (d: Buffer) => {
		stderr += d.toString();
	});
	await new Promise((r) => setTimeout(r, 1500));
	child.kill("SIGINT");
	const code = await new Promise<number | null>((resolve) => child.on("exit", resolve));
	assert.notEqual(code, 0);
	assert.match(stderr, /canceling statement due to user request/);
	assert.ok(Date.now() - started < 15_000);
});

test("cancel: a CancelRequest with the gateway's key cancels the upstream query", async () => {
	const c = await fx.connect("alice");
	try {
		const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
		const started = Date.now();
		const q = c.query("select pg_sleep(20)");
		await new Promise((r) => setTimeout(r, 300));
		const key = Buffer.alloc(4);
		key.writeInt32BE(secretKey);
		await new Promise<void>((resolve) => {
			const s = connect(fx.port, "127.0.0.1", () => s.end(clientMessages.cancelRequest(processID, key)));
			s.on("close", () => resolve());
		});
		await assert.rejects(q, (e: pg.DatabaseError) => e.code === "57014");
		assert.ok(Date.now() - started < 10_000);
		assert.equal((await c.query("select 1 as x")).rows[0].x, 1);
	} finally {
		await c.end();
	}
});
