/**
 * Dynamic PostgreSQL roles against a real PostgreSQL 15 (test/env): exact privileges per access level,
 * idempotence, concurrency, VALID UNTIL, and drop terminating live sessions.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type pg from "pg";
import { type PostgresHandle, startPostgres } from "../env/index.ts";
import { dropRole, ensureRole, generatePassword, listManagedRoles, planRole, roleExists, roleNameFor } from "../../operator/credentials/postgres-roles.ts";

let pgh: PostgresHandle;
let admin: pg.Client;

before(async () => {
	pgh = await startPostgres();
	admin = await pgh.connect();
});
after(async () => {
	await admin?.end();
	await pgh?.stop();
});

async function sqlstate(p: Promise<unknown>): Promise<string> {
	try {
		await p;
		return "ok";
	} catch (e) {
		return (e as { code?: string }).code ?? String(e);
	}
}

test("planRole: names, quoting and levels (table)", () => {
	const role = roleNameFor("team/ci", "team/orders");
	assert.match(role, /^db_[0-9a-f]{24}$/);
	assert.equal(roleNameFor("team/ci", "team/orders"), role, "deterministic");
	assert.notEqual(roleNameFor("team/ci2", "team/orders"), role);
	const base = { role, password: "p'w", validUntil: new Date("2030-01-01T00:00:00Z"), database: "shop", schemas: ["public"] };
	const cases: [string, RegExp[], RegExp[]][] = [
		["read-only", [/GRANT SELECT ON ALL TABLES/, /SET default_transaction_read_only = on/, /PASSWORD 'p''w' VALID UNTIL '2030-01-01T00:00:00.000Z'/], [/INSERT/, /TEMPORARY/, /CREATE ON SCHEMA/]],
		["read-write", [/GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES/, /RESET default_transaction_read_only/], [/TRUNCATE/, /TEMPORARY/, /GRANT ALL/]],
		["admin", [/GRANT ALL ON ALL TABLES/, /GRANT USAGE, CREATE ON SCHEMA/, /CONNECT, TEMPORARY/], [/SUPERUSER(?<!NOSUPERUSER)/]],
	];
	for (const [access, must, mustNot] of cases) {
		const sql = planRole({ ...base, access: access as "read-only" }, false).join(";\n");
		for (const m of must) assert.match(sql, m, `${access} must match ${m}`);
		for (const m of mustNot) assert.doesNotMatch(sql.replaceAll("NOSUPERUSER", "").replaceAll("REVOKE ALL", ""), m, `${access} must not match ${m}`);
		assert.match(sql, /^CREATE ROLE "db_/);
		assert.match(planRole({ ...base, access: access as "read-only" }, true)[0]!, /^ALTER ROLE "db_/);
	}
});

test("read-only role: logs in, SELECT works, writes refused, SET cannot be escalated past privileges", async () => {
	const role = roleNameFor("t1/ro", "t1/shop");
	const password = generatePassword();
	const spec = { role, password, validUntil: new Date(Date.now() + 3_600_000), database: pgh.database, schemas: ["public"], access: "read-only" as const };
	assert.deepEqual(await ensureRole(admin, spec), { created: true });
	assert.deepEqual(await ensureRole(admin, spec), { created: false }, "second run updates, never duplicates");
	const c = await pgh.connect({ user: role, password });
	try {
		const r = await c.query("SELECT count(*)::int AS n FROM customers");
		assert.ok(r.rows[0].n > 0);
		assert.equal((await c.query("SHOW default_transaction_read_only")).rows[0].default_transaction_read_only, "on");
		assert.equal(await sqlstate(c.query("INSERT INTO orders (id, customer_id, amount, status) VALUES (99999, 1, 1, $$new$$)")), "25006");
		await c.query("SET default_transaction_read_only = off");
		assert.equal(await sqlstate(c.query("DELETE FROM orders")), "42501", "privileges, not just the setting, refuse writes");
		assert.equal(await sqlstate(c.query("CREATE TABLE x (a int)")), "42501");
		// TEMPORARY comes from PUBLIC's default database privilege unless the DBA revokes it (README);
		// the role itself holds no attribute beyond LOGIN.
		const attrs = await admin.query("SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls, rolcanlogin FROM pg_roles WHERE rolname = $1", [role]);
		assert.deepEqual(attrs.rows[0], { rolsuper: false, rolcreaterole: false, rolcreatedb: false, rolreplication: false, rolbypassrls: false, rolcanlogin: true });
	} finally {
		await c.end();
	}
	await dropRole(admin, role);
});

test("read-write narrowed to read-only in git is narrowed in the database", async () => {
	const role = roleNameFor("t2/rw", "t2/shop");
	const password = generatePassword();
	const spec = { role, password, validUntil: new Date(Date.now() + 3_600_000), database: pgh.database, schemas: ["public"], access: "read-write" as const };
	await ensureRole(admin, spec);
	let c = await pgh.connect({ user: role, password });
	assert.equal(await sqlstate(c.query("UPDATE customers SET name = name WHERE id = 1")), "ok");
	assert.equal(await sqlstate(c.query("TRUNCATE orders")), "42501");
	await c.end();
	await ensureRole(admin, { ...spec, access: "read-only" });
	c = await pgh.connect({ user: role, password });
	await c.query("SET default_transaction_read_only = off");
	assert.equal(await sqlstate(c.query("UPDATE customers SET name = name WHERE id = 1")), "42501");
	await c.end();
	await dropRole(admin, role);
});

test("concurrent ensureRole from two replicas converges on one role; VALID UNTIL refuses logins after the end", async () => {
	const role = roleNameFor("t3/race", "t3/shop");
	const password = generatePassword();
	const spec = { role, password, validUntil: new Date(Date.now() + 3_600_000), database: pgh.database, schemas: ["public"], access: "read-only" as const };
	const other = await pgh.connect();
	try {
		const results = await Promise.all([ensureRole(admin, spec), ensureRole(other, spec)]);
		assert.deepEqual(results.map((r) => r.created).sort(), [false, true]);
		const n = await admin.query("SELECT count(*)::int AS n FROM pg_roles WHERE rolname = $1", [role]);
		assert.equal(n.rows[0].n, 1);
		await ensureRole(admin, { ...spec, validUntil: new Date(Date.now() - 1000) });
		assert.equal(await sqlstate(pgh.connect({ user: role, password })), "28P01");
		await Promise.all([dropRole(admin, role), dropRole(other, role)]);
		assert.equal(await roleExists(admin, role), false);
	} finally {
		await other.end();
	}
});

test("regression: two replicas dropping the same role at once never fail (tuple concurrently updated), 25 rounds", async () => {
	const other = await pgh.connect();
	try {
		for (let i = 0; i < 25; i++) {
			const role = roleNameFor(`t3b/race-${i}`, "t3b/shop");
			const spec = { role, password: generatePassword(), validUntil: new Date(Date.now() + 3_600_000), database: pgh.database, schemas: ["public"], access: "read-only" as const };
			await ensureRole(admin, spec);
			const results = await Promise.all([dropRole(admin, role), dropRole(other, role)]);
			assert.deepEqual(results.map((r) => r.dropped).sort(), [false, true], `round ${i}`);
			assert.equal(await roleExists(admin, role), false);
		}
	} finally {
		await other.end();
	}
});

test("dropRole terminates live sessions and leaves nothing behind; re-running is a no-op", async () => {
	const role = roleNameFor("t4/drop", "t4/shop");
	const password = generatePassword();
	await ensureRole(admin, { role, password, validUntil: new Date(Date.now() + 3_600_000), database: pgh.database, schemas: ["public"], access: "admin" });
	const c = await pgh.connect({ user: role, password });
	c.on("error", () => {});
	await c.query("CREATE TABLE owned_by_dynamic (a int)");
	assert.ok((await listManagedRoles(admin)).includes(role));
	const res = await dropRole(admin, role);
	assert.equal(res.dropped, true);
	assert.ok(res.terminated >= 1);
	assert.notEqual(await sqlstate(c.query("SELECT 1")), "ok", "the session is gone");
	await c.end().catch(() => {});
	assert.equal(await roleExists(admin, role), false);
	const owner = await admin.query("SELECT tableowner FROM pg_tables WHERE tablename = 'owned_by_dynamic'");
	assert.equal(owner.rows[0].tableowner, pgh.superuser, "owned objects reassigned, not lost");
	assert.deepEqual(await dropRole(admin, role), { dropped: false, terminated: 0 });
	assert.equal(await sqlstate(pgh.connect({ user: role, password })), "28P01");
});
