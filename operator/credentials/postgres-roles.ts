/**
 * Dynamic PostgreSQL roles: one LOGIN role per (grant, connection), `VALID UNTIL` the grant's end, with
 * exactly the privileges the grant names; dropped when the grant ends.
 *
 * `planRole` / `planDrop` are pure (SQL text, tested with tables); `ensureRole` / `dropRole` run the plan
 * in one transaction under an advisory lock on the role name, so two operator replicas (or a restart
 * mid-way) converge to one role with one set of privileges. Re-running is always safe.
 *
 * Access levels (what "exactly the privileges" means):
 * - read-only:  CONNECT on the database; USAGE on each schema; SELECT on all its tables (and views) and
 *   sequences; `ALTER ROLE … SET default_transaction_read_only = on` (a role setting the client cannot
 *   escape by accident; the gateway blocks `SET` of it as well). No TEMPORARY.
 * - read-write: read-only minus the read-only setting, plus INSERT/UPDATE/DELETE on tables and
 *   USAGE/UPDATE on sequences. No TRUNCATE, REFERENCES, TRIGGER, DDL.
 * - admin: ALL on tables and sequences, USAGE+CREATE on schemas, CONNECT+TEMPORARY on the database.
 *   Never SUPERUSER, CREATEROLE, CREATEDB, REPLICATION or BYPASSRLS.
 * Every plan first revokes whatever the role held in those schemas, so a grant narrowed in git is
 * narrowed in the database. Privileges apply to tables existing at reconcile time; each reconcile (at
 * least on every sync) re-grants, so new tables are covered within one sync interval.
 */

import { createHash, randomBytes } from "node:crypto";
import type { ClientBase } from "pg";
import type { PostgresAccess } from "../../gateway/config/bundle.ts";

export type PgRoleErrorCode = "INVALID_IDENTIFIER" | "DB_ERROR";

export class PgRoleError extends Error {
	readonly code: PgRoleErrorCode;
	constructor(code: PgRoleErrorCode, message: string, options?: { cause?: unknown }) {
		super(message, options);
		this.name = "PgRoleError";
		this.code = code;
	}
}

/** Deterministic role name: `db_` + 24 hex of sha256(grant key + connection key). 27 chars < 63. */
export function roleNameFor(grantKey: string, connectionKey: string): string {
	return `db_${createHash("sha256").update(`${grantKey}\0${connectionKey}`).digest("hex").slice(0, 24)}`;
}

export function generatePassword(): string {
	return randomBytes(32).toString("base64url");
}

/** Quotes an identifier (always quoted: no keyword or case surprises). */
export function quoteIdent(name: string): string {
	if (name.length === 0 || name.length > 63 || name.includes("\0")) throw new PgRoleError("INVALID_IDENTIFIER", `invalid identifier ${JSON.stringify(name)}`);
	return `"${name.replaceAll('"', '""')}"`;
}

/** Quotes a string literal (standard_conforming_strings on, which is the default since 9.1). */
export function quoteLiteral(value: string): string {
	if (value.includes("\0")) throw new PgRoleError("INVALID_IDENTIFIER", "NUL in literal");
	return `'${value.replaceAll("'", "''")}'`;
}

export interface RoleSpec {
	role: string;
	password: string;
	/** The role stops authenticating after this instant (`VALID UNTIL`). */
	validUntil: Date;
	database: string;
	schemas: string[];
	access: PostgresAccess;
}

/** The statements that make the role exist with exactly `spec`'s privileges. `exists` from pg_roles. */
export function planRole(spec: RoleSpec, exists: boolean): string[] {
	const r = quoteIdent(spec.role);
	const db = quoteIdent(spec.database);
	const until = quoteLiteral(spec.validUntil.toISOString());
	const attrs = `LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT CONNECTION LIMIT -1 PASSWORD ${quoteLiteral(spec.password)} VALID UNTIL ${until}`;
	const out: string[] = [exists ? `ALTER ROLE ${r} WITH ${attrs}` : `CREATE ROLE ${r} WITH ${attrs}`];
	out.push(`REVOKE ALL ON DATABASE ${db} FROM ${r}`);
	out.push(spec.access === "admin" ? `GRANT CONNECT, TEMPORARY ON DATABASE ${db} TO ${r}` : `GRANT CONNECT ON DATABASE ${db} TO ${r}`);
	for (const schema of spec.schemas) {
		const s = quoteIdent(schema);
		out.push(`REVOKE ALL ON SCHEMA ${s} FROM ${r}`);
		out.push(`REVOKE ALL ON ALL TABLES IN SCHEMA ${s} FROM ${r}`);
		out.push(`REVOKE ALL ON ALL SEQUENCES IN SCHEMA ${s} FROM ${r}`);
		switch (spec.access) {
			case "read-only":
				out.push(`GRANT USAGE ON SCHEMA ${s} TO ${r}`);
				out.push(`GRANT SELECT ON ALL TABLES IN SCHEMA ${s} TO ${r}`);
				out.push(`GRANT SELECT ON ALL SEQUENCES IN SCHEMA ${s} TO ${r}`);
				break;
			case "read-write":
				out.push(`GRANT USAGE ON SCHEMA ${s} TO ${r}`);
				out.push(`GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA ${s} TO ${r}`);
				out.push(`GRANT SELECT, USAGE, UPDATE ON ALL SEQUENCES IN SCHEMA ${s} TO ${r}`);
				break;
			case "admin":
				out.push(`GRANT USAGE, CREATE ON SCHEMA ${s} TO ${r}`);
				out.push(`GRANT ALL ON ALL TABLES IN SCHEMA ${s} TO ${r}`);
				out.push(`GRANT ALL ON ALL SEQUENCES IN SCHEMA ${s} TO ${r}`);
				break;
		}
	}
	out.push(
		spec.access === "read-only"
			? `ALTER ROLE ${r} IN DATABASE ${db} SET default_transaction_read_only = on`
			: `ALTER ROLE ${r} IN DATABASE ${db} RESET default_transaction_read_only`,
	);
	return out;
}

/** Statements that end the role: no new logins, sessions killed, owned objects reassigned, role dropped. */
export function planDrop(role: string): string[] {
	const r = quoteIdent(role);
	return [
		`ALTER ROLE ${r} WITH NOLOGIN`,
		`SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = ${quoteLiteral(role)} AND pid <> pg_backend_pid()`,
		`REASSIGN OWNED BY ${r} TO CURRENT_USER`,
		`DROP OWNED BY ${r}`,
		`DROP ROLE ${r}`,
	];
}

/** 64-bit advisory lock key derived from the role name (same in every replica). */
function lockKey(role: string): string {
	return createHash("sha256").update(`drawbridge-role:${role}`).digest().readBigInt64BE(0).toString();
}

async function inTransaction<T>(client: ClientBase, role: string, fn: () => Promise<T>): Promise<T> {
	await client.query("BEGIN");
	try {
		await client.query("SELECT pg_advisory_xact_lock($1::bigint)", [lockKey(role)]);
		const out = await fn();
		await client.query("COMMIT");
		return out;
	} catch (e) {
		await client.query("ROLLBACK").catch(() => {});
		throw new PgRoleError("DB_ERROR", `role ${role}: ${(e as Error).message}`, { cause: e });
	}
}

export async function roleExists(client: ClientBase, role: string): Promise<boolean> {
	const res = await client.query("SELECT 1 FROM pg_roles WHERE rolname = $1", [role]);
	return (res.rowCount ?? 0) > 0;
}

/** Creates or updates the role. `client` must be connected to `spec.database` as a role with CREATEROLE and grant rights. */
export async function ensureRole(client: ClientBase, spec: RoleSpec): Promise<{ created: boolean }> {
	return inTransaction(client, spec.role, async () => {
		const exists = await roleExists(client, spec.role);
		for (const sql of planRole(spec, exists)) await client.query(sql);
		return { created: !exists };
	});
}

/**
 * Drops the role if it exists (after terminating its sessions). `client` must be connected to the
 * database where the role held privileges (REASSIGN/DROP OWNED act per database; shared objects such as
 * the database's CONNECT privilege are covered too). Returns the number of sessions terminated.
 */
export async function dropRole(client: ClientBase, role: string): Promise<{ dropped: boolean; terminated: number }> {
	const [nologin, terminate, ...drop] = planDrop(role);
	// NOLOGIN committed on its own first, so a killed session cannot log straight back in before the
	// drop; under the role's advisory lock like every other change to it: two replicas altering the
	// same pg_authid row at once make one of them fail with "tuple concurrently updated".
	const present = await inTransaction(client, role, async () => {
		if (!(await roleExists(client, role))) return false; // another replica won
		await client.query(nologin!);
		return true;
	});
	if (!present) return { dropped: false, terminated: 0 };
	let terminated = (await client.query(terminate!)).rowCount ?? 0;
	const dropped = await inTransaction(client, role, async () => {
		if (!(await roleExists(client, role))) return false;
		for (const sql of drop) await client.query(sql);
		return true;
	});
	terminated += (await client.query(terminate!)).rowCount ?? 0;
	return { dropped, terminated };
}

/** Roles this operator created (prefix `db_` + 24 hex) that exist in the server: for garbage collection. */
export async function listManagedRoles(client: ClientBase): Promise<string[]> {
	const res = await client.query<{ rolname: string }>("SELECT rolname FROM pg_roles WHERE rolname ~ '^db_[0-9a-f]{24}$' ORDER BY rolname");
	return res.rows.map((r) => r.rolname);
}
