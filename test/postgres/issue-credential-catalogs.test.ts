// Regression (red-team round: access levels). The security model says backend credentials never
// reach the agent, but a Connection's static credential is often a superuser, and a superuser
// session reads the catalogs that hold credentials. Through the real gateway to a real PostgreSQL
// (static superuser credential), a read-only grant read:
//  - SELECT rolname, rolpassword FROM pg_authid: the SCRAM verifier of the gateway's own backend
//    role (and pg_shadow the same);
//  - SELECT umoptions FROM pg_user_mappings: a postgres_fdw password in plain text;
// also through COPY and table_to_xml. Reading pg_authid, pg_shadow, pg_user_mapping(s) and
// pg_subscription is now `server-access` (refused for read-only and read-write grants; admin grants
// keep it, as they keep pg_read_file).
import assert from "node:assert/strict";
import { describe, test } from "node:test";
import { assertNoneOf, refusedByRule, fixtureWithClients } from "./fixture.ts";

describe("catalogs holding credentials are server access", () => {
	const c = fixtureWithClients({}, async (fx) => {
		await fx.pg.query("CREATE EXTENSION postgres_fdw");
		await fx.pg.query("CREATE SERVER other FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host 'db.example', dbname 'x')");
		await fx.pg.query(`CREATE USER MAPPING FOR ${fx.pg.superuser} SERVER other OPTIONS (user 'svc', password 'fdw-plaintext-pw')`);
	});

	const READS = [
		"SELECT rolname, rolpassword FROM pg_authid WHERE rolpassword IS NOT NULL",
		"SELECT usename, passwd FROM pg_catalog.pg_shadow",
		"SELECT srvname, umoptions FROM pg_user_mappings",
		"SELECT umoptions FROM pg_user_mapping",
		"SELECT subconninfo FROM pg_subscription",
		"SELECT table_to_xml('pg_catalog.pg_authid', true, false, '')",
	];

	test("read-only and read-write grants are refused", async () => {
		for (const sql of READS) {
			await assert.rejects(c.ro.query(sql), refusedByRule("grant:read-only"), sql);
			await assert.rejects(c.rw.query(sql), refusedByRule("builtin:server-access"), sql);
		}
		// pg_roles masks passwords: still readable
		const roles = await c.ro.query("SELECT rolname, rolpassword FROM pg_roles WHERE rolname = current_user");
		assert.equal(roles.rows[0].rolpassword, "********");
		assertNoneOf(["SCRAM-SHA-256$", "fdw-plaintext-pw"], roles.rows);
	});

	test("admin grants keep them (break glass, recorded)", async () => {
		const r = await c.admin.query("SELECT count(*)::int AS n FROM pg_user_mappings");
		assert.equal(r.rows[0].n, 1);
	});
});
