import assert from "node:assert/strict";
import { test } from "node:test";
import type { GuardrailRule } from "../config/bundle.ts";
import { evaluateSqlGuardrails } from "./guardrails.ts";
import { SessionSqlState } from "./session.ts";
import { analyzeSql, relationNameText, statementCacheKey, statementTree, unseenCode, withTables } from "./sql.ts";
import type { SqlStatementInfo } from "./types.ts";

function one(sql: string): SqlStatementInfo {
	const a = analyzeSql(sql);
	assert.ok(a.ok, `does not parse: ${sql}`);
	assert.equal(a.statements.length, 1);
	return a.statements[0]!;
}

// [sql, kind, kinds that must be present, readOnly]
const CLASSIFICATION: [string, string, string[], boolean][] = [
	["SELECT 1", "SELECT", [], true],
	["select * from orders where id = 1", "SELECT", [], true],
	["VALUES (1), (2)", "VALUES", [], true],
	["TABLE orders", "SELECT", [], true],
	["WITH x AS (SELECT 1) SELECT * FROM x", "SELECT", [], true],
	["SHOW search_path", "SHOW", [], true],
	["SET search_path = public", "SET", [], true],
	["SET statement_timeout TO 1000", "SET", [], true],
	["SET default_transaction_read_only = on", "SET", [], true],
	["RESET statement_timeout", "RESET", [], true],
	["BEGIN", "BEGIN", ["TRANSACTION"], true],
	["BEGIN READ ONLY", "BEGIN", [], true],
	["START TRANSACTION ISOLATION LEVEL REPEATABLE READ", "START TRANSACTION", [], true],
	["COMMIT", "COMMIT", [], true],
	["ROLLBACK", "ROLLBACK", [], true],
	["SAVEPOINT s", "SAVEPOINT", [], true],
	["RELEASE SAVEPOINT s", "RELEASE", [], true],
	["ROLLBACK TO SAVEPOINT s", "ROLLBACK TO", [], true],
	["EXPLAIN SELECT * FROM orders", "EXPLAIN", [], true],
	["EXPLAIN DELETE FROM orders", "EXPLAIN", ["DELETE"], true],
	["EXPLAIN (ANALYZE false) DELETE FROM orders", "EXPLAIN", ["DELETE"], true],
	["EXPLAIN ANALYZE SELECT 1", "EXPLAIN ANALYZE", ["EXPLAIN"], true],
	["EXPLAIN ANALYZE DELETE FROM orders", "EXPLAIN ANALYZE", ["EXPLAIN", "DELETE"], false],
	["PREPARE p AS SELECT 1", "PREPARE", ["SELECT"], true],
	["PREPARE p AS INSERT INTO orders VALUES (1)", "PREPARE", ["INSERT"], false],
	["DEALLOCATE p", "DEALLOCATE", [], true],
	["DEALLOCATE ALL", "DEALLOCATE", [], true],
	["DECLARE c CURSOR FOR SELECT 1", "DECLARE", ["SELECT"], true],
	["FETCH 10 FROM c", "FETCH", [], true],
	["MOVE NEXT IN c", "MOVE", [], true],
	["CLOSE c", "CLOSE", [], true],
	["LISTEN ch", "LISTEN", [], true],
	["UNLISTEN *", "UNLISTEN", [], true],
	["NOTIFY ch", "NOTIFY", [], false],
	["DISCARD PLANS", "DISCARD PLANS", ["DISCARD"], true],
	["DISCARD ALL", "DISCARD ALL", ["DISCARD"], false],
	["SET CONSTRAINTS ALL DEFERRED", "SET CONSTRAINTS", [], true],
	["INSERT INTO orders VALUES (1)", "INSERT", [], false],
	["UPDATE orders SET status = 'x' WHERE id = 1", "UPDATE", [], false],
	["DELETE FROM orders WHERE id = 1", "DELETE", [], false],
	["MERGE INTO orders o USING orders s ON o.id = s.id WHEN MATCHED THEN DELETE", "MERGE", [], false],
	["DROP TABLE orders", "DROP TABLE", ["DROP"], false],
	["DROP VIEW v", "DROP VIEW", ["DROP"], false],
	["DROP FUNCTION f(int)", "DROP FUNCTION", ["DROP"], false],
	["DROP DATABASE d", "DROP DATABASE", ["DROP"], false],
	["DROP ROLE r", "DROP ROLE", ["DROP"], false],
	["DROP SCHEMA s CASCADE", "DROP SCHEMA", ["DROP"], false],
	["TRUNCATE orders", "TRUNCATE", [], false],
	["ALTER SYSTEM SET work_mem = '1GB'", "ALTER SYSTEM", ["ALTER"], false],
	["GRANT SELECT ON orders TO r", "GRANT", [], false],
	["REVOKE SELECT ON orders FROM r", "REVOKE", [], false],
	["GRANT r TO s", "GRANT", ["GRANT ROLE"], false],
	["CREATE ROLE r", "CREATE ROLE", ["CREATE"], false],
	["CREATE USER u", "CREATE ROLE", [], false],
	["ALTER ROLE r NOSUPERUSER", "ALTER ROLE", ["ALTER"], false],
	["ALTER ROLE r RENAME TO s", "ALTER ROLE", ["RENAME"], false],
	["COPY orders TO STDOUT", "COPY", ["COPY TO"], true],
	["COPY (SELECT 1) TO STDOUT", "COPY", ["COPY TO", "SELECT"], true],
	["COPY orders FROM STDIN", "COPY", ["COPY FROM"], false],
	["COPY orders TO '/tmp/x'", "COPY", ["COPY FILE"], false],
	["COPY orders TO PROGRAM 'gzip > /tmp/x'", "COPY", ["COPY PROGRAM"], false],
	["DO $$ BEGIN END $$", "DO", [], false],
	["CALL p()", "CALL", [], false],
	["SET ROLE r", "SET ROLE", ["SET"], false],
	["SET SESSION AUTHORIZATION r", "SET SESSION AUTHORIZATION", ["SET"], false],
	["RESET ROLE", "RESET ROLE", ["RESET"], false],
	["RESET SESSION AUTHORIZATION", "RESET SESSION AUTHORIZATION", ["RESET"], false],
	["RESET ALL", "RESET ALL", ["RESET"], false],
	["SELECT * INTO t FROM orders", "SELECT INTO", ["CREATE TABLE AS"], false],
	["CREATE TABLE t AS SELECT 1", "CREATE TABLE AS", ["CREATE", "SELECT"], false],
	["CREATE MATERIALIZED VIEW mv AS SELECT 1", "CREATE MATERIALIZED VIEW", [], false],
	["CREATE TABLE t (x int)", "CREATE TABLE", ["CREATE"], false],
	["CREATE INDEX i ON orders (id)", "CREATE INDEX", [], false],
	["LOCK orders", "LOCK", [], false],
	["VACUUM FULL orders", "VACUUM", [], false],
	["ANALYZE orders", "ANALYZE", [], false],
	["CHECKPOINT", "CHECKPOINT", [], false],
	["LOAD 'x'", "LOAD", [], false],
	["CREATE EXTENSION pgcrypto", "CREATE EXTENSION", ["CREATE"], false],
	["SELECT * FROM orders FOR UPDATE", "SELECT FOR UPDATE", ["SELECT"], false],
	["WITH d AS (DELETE FROM orders RETURNING *) SELECT * FROM d", "SELECT", ["DELETE"], false],
	["SELECT pg_read_file('x')", "SELECT", [], false],
	["SELECT lower('X'), now(), count(*) FROM orders", "SELECT", [], true],
	["SELECT my_function(1)", "SELECT", [], true],
];

for (const [sql, kind, kinds, readOnly] of CLASSIFICATION) {
	test(`classify: ${sql}`, () => {
		const s = one(sql);
		assert.equal(s.kind, kind);
		assert.equal(s.kinds[0], kind, "top kind comes first");
		for (const k of kinds) assert.ok(s.kinds.includes(k), `missing kind ${k} in ${JSON.stringify(s.kinds)}`);
		assert.equal(s.readOnly, readOnly, JSON.stringify(s.risks));
		assert.equal(s.readOnly, (s.risks ?? []).length === 0);
	});
}

test("tables and functions are collected anywhere in the tree", () => {
	const s = one(
		"WITH a AS (SELECT * FROM s1.t1) SELECT f1(x), (SELECT max(y) FROM t2 WHERE g(y)) FROM a JOIN t3 ON h(t3.id) WHERE EXISTS (SELECT 1 FROM pg_catalog.pg_class)",
	);
	for (const t of ["s1.t1", "t2", "t3", "pg_catalog.pg_class", "a"]) assert.ok(s.tables.includes(t), t);
	for (const f of ["f1", "max", "g", "h"]) assert.ok(s.functions.includes(f), f);
	const d = one("CREATE TABLE t (x text DEFAULT pg_catalog.pg_read_file('/x'))");
	assert.ok(d.functions.includes("pg_catalog.pg_read_file"));
	const drop = one("DROP TABLE public.a, b");
	assert.deepEqual(drop.tables, ["public.a", "b"]);
});

test("hasWhere for UPDATE/DELETE/MERGE, constant conditions count as none", () => {
	assert.equal(one("DELETE FROM t WHERE id = 1").hasWhere, true);
	assert.equal(one("DELETE FROM t").hasWhere, false);
	assert.equal(one("DELETE FROM t WHERE true").hasWhere, false);
	assert.equal(one("UPDATE t SET a = 1 WHERE 1 = 1").hasWhere, false);
	assert.equal(one("UPDATE t SET a = 1 WHERE id = $1").hasWhere, true);
	assert.equal(one("WITH d AS (DELETE FROM t) SELECT 1").hasWhere, false);
	assert.equal(one("SELECT 1").hasWhere, undefined);
	assert.equal(one("DELETE FROM t WHERE CURRENT OF c").hasWhere, true, "CURRENT OF names one row");
});

test("statement text comes from parser locations, multi-byte safe", () => {
	const a = analyzeSql("SELECT 'é' ;  SELECT 'ü→' AS x; DELETE FROM t WHERE a = 'ø'");
	assert.ok(a.ok);
	assert.deepEqual(
		a.statements.map((s) => s.text),
		["SELECT 'é'", "SELECT 'ü→' AS x", "DELETE FROM t WHERE a = 'ø'"],
	);
});

test("results are cached by text and frozen", () => {
	const a = analyzeSql("SELECT 'forty-two'");
	assert.equal(analyzeSql("SELECT 'forty-two'"), a);
	assert.ok(Object.isFrozen(a));
	assert.ok(a.ok && Object.isFrozen(a.statements[0]!.kinds));
});

test("texts differing only in numbers share one analysis: same kinds, tree and cache key, their own text", () => {
	const first = analyzeSql("SELECT * FROM accounts WHERE aid = 48213");
	const second = analyzeSql("SELECT * FROM accounts WHERE aid = 7");
	assert.ok(first.ok && second.ok);
	const [a, b] = [first.statements[0]!, second.statements[0]!];
	assert.equal(b.text, "SELECT * FROM accounts WHERE aid = 7");
	assert.deepEqual({ ...b, text: "" }, { ...a, text: "" });
	assert.ok(Object.isFrozen(second) && Object.isFrozen(b));
	assert.equal(statementTree(b), statementTree(a));
	assert.ok(statementTree(b), "the template's parse tree");
	assert.equal(statementCacheKey(b), statementCacheKey(a));
	assert.equal(statementCacheKey(withTables(b, ["public.other"])), statementCacheKey(a), "a copy keeps the identity");
	assert.equal(statementTree(withTables(b, ["public.other"])), statementTree(a), "and the tree");
	const other = analyzeSql("SELECT * FROM accounts WHERE bid = 7");
	assert.ok(other.ok);
	assert.notEqual(statementCacheKey(other.statements[0]!), statementCacheKey(a));
	assert.deepEqual(Object.keys(b), Object.keys(a), "no extra enumerable property on derived statements");
});

test("parse failures carry the error and position", () => {
	const a = analyzeSql("SELECT * FROM");
	assert.equal(a.ok, false);
	assert.ok(!a.ok && a.error.length > 0 && typeof a.position === "number");
	assert.equal(analyzeSql("").ok, true, "empty query is valid (EmptyQueryResponse)");
	assert.equal(analyzeSql("  \n ").ok, true);
	const c = analyzeSql("-- only a comment");
	assert.ok(c.ok && c.statements.length === 0);
});

// ---------------------------------------------------------------------------------------------
// Guardrails

const RULES: GuardrailRule[] = [
	{ name: "audit-orders", action: "audit", sql: { tables: ["public.orders"] } },
	{ name: "approve-delete", action: "requireApproval", sql: { statementKinds: ["DELETE"] }, approval: { minApprovals: 2 } },
	{ name: "no-drop", action: "block", message: "ask the DBA", sql: { statementKinds: ["DROP*", "TRUNCATE"] } },
	{ name: "no-unbounded", action: "block", sql: { withoutWhere: true } },
	{ name: "no-dblink", action: "block", sql: { functions: ["pg_catalog.dblink*"] } },
	{ name: "kube-only", action: "block", kubernetes: { verbs: ["delete"] } },
];

test("read-only grant: writes are refused with 42501 naming the grant", () => {
	const v = evaluateSqlGuardrails({ analysis: analyzeSql("UPDATE orders SET a = 1 WHERE id = 1"), access: "read-only", rules: [], grant: "ci/deployer-ro" });
	assert.equal(v.action, "block");
	assert.equal(v.rule, "grant:read-only");
	assert.equal(v.sqlstate, "42501");
	assert.match(v.message!, /ci\/deployer-ro/);
	assert.match(v.message!, /read-only/);
	assert.equal(v.statementIndex, 0);
});

test("read-only grant: reads are allowed (control)", () => {
	for (const sql of ["SELECT * FROM orders", "BEGIN; SELECT 1; COMMIT", "SHOW ALL", "EXPLAIN SELECT 1", "SET application_name = 'x'"]) {
		assert.equal(evaluateSqlGuardrails({ analysis: analyzeSql(sql), access: "read-only", rules: [] }).action, "allow", sql);
	}
});

test("parse failure: blocked with 42601", () => {
	const v = evaluateSqlGuardrails({ analysis: analyzeSql("SELEC 1"), access: "admin", rules: [] });
	assert.deepEqual([v.action, v.rule, v.sqlstate], ["block", "parse", "42601"]);
});

test("rule precedence: block > requireApproval > audit > allow, across statements", () => {
	const ev = (sql: string) => evaluateSqlGuardrails({ analysis: analyzeSql(sql), access: "read-write", rules: RULES });
	assert.equal(ev("SELECT * FROM orders").action, "audit");
	assert.equal(ev("SELECT * FROM orders").rule, "audit-orders");
	assert.equal(ev("SELECT * FROM other").action, "allow");
	const approval = ev("SELECT * FROM orders; DELETE FROM x WHERE id = 1");
	assert.equal(approval.action, "requireApproval");
	assert.equal(approval.statementIndex, 1);
	assert.deepEqual(approval.approval, { minApprovals: 2 });
	const block = ev("DELETE FROM x WHERE id = 1; DROP INDEX i; SELECT 1");
	assert.deepEqual([block.action, block.rule, block.statementIndex, block.sqlstate], ["block", "no-drop", 1, "42501"]);
	assert.match(block.message!, /ask the DBA/);
	assert.equal(ev("DELETE FROM x").rule, "no-unbounded");
	const admin = evaluateSqlGuardrails({ analysis: analyzeSql("SELECT dblink_connect('a')"), access: "admin", rules: RULES });
	assert.equal(admin.rule, "no-dblink", "unqualified call matches a pg_catalog-qualified rule");
	// dblink('a', 'b') runs SQL the classifier does not see: it meets every rule (the first block wins)
	const remote = evaluateSqlGuardrails({ analysis: analyzeSql("SELECT dblink('a', 'b')"), access: "admin", rules: RULES });
	assert.deepEqual([remote.action, remote.rule], ["block", "no-drop"]);
	assert.equal(ev("UPDATE orders SET a = 1 WHERE id = 2").action, "audit", "orders matches public.orders (search_path)");
});

test("read-write grants: built-in blocks; admin grants: only rules", () => {
	for (const sql of ["SET ROLE postgres", "COPY t TO PROGRAM 'x'", "DO $$ BEGIN END $$", "ALTER SYSTEM SET a = 1", "CREATE ROLE x"]) {
		const rw = evaluateSqlGuardrails({ analysis: analyzeSql(sql), access: "read-write", rules: [] });
		assert.equal(rw.action, "block", sql);
		assert.match(rw.rule!, /^builtin:/);
		const admin = evaluateSqlGuardrails({ analysis: analyzeSql(sql), access: "admin", rules: [] });
		assert.equal(admin.action, "allow", sql);
	}
	assert.equal(evaluateSqlGuardrails({ analysis: analyzeSql("INSERT INTO t VALUES (1)"), access: "read-write", rules: [] }).action, "allow");
});

// ---------------------------------------------------------------------------------------------
// Session state

test("session: EXECUTE is classified as its PREPAREd body; DEALLOCATE forgets it", () => {
	const st = new SessionSqlState();
	const rw = (sql: string) => {
		const a = st.resolve(analyzeSql(sql));
		const v = evaluateSqlGuardrails({ analysis: a, access: "read-only", rules: [] });
		if (v.action !== "block") st.record(a);
		return { a, v };
	};
	assert.equal(rw("PREPARE q AS SELECT * FROM orders WHERE id = $1").v.action, "allow");
	const ex = rw("EXECUTE q(1)");
	assert.equal(ex.v.action, "allow");
	assert.ok(ex.a.ok && ex.a.statements[0]!.kinds.includes("SELECT"));
	assert.equal(rw("PREPARE w AS DELETE FROM orders WHERE id = $1").v.action, "block");
	assert.equal(rw("EXECUTE w(1)").v.rule, "session:unknown-prepared", "a blocked PREPARE never exists");
	rw("DEALLOCATE q");
	assert.equal(rw("EXECUTE q(1)").v.rule, "session:unknown-prepared");
	rw("PREPARE a AS SELECT 1");
	rw("DEALLOCATE ALL");
	assert.equal(rw("EXECUTE a").v.rule, "session:unknown-prepared");
});

test("session: a PREPARE earlier in the same string resolves a later EXECUTE", () => {
	const st = new SessionSqlState();
	const a = st.resolve(analyzeSql("PREPARE z AS UPDATE orders SET a = 1 WHERE id = 1; EXECUTE z"));
	assert.ok(a.ok);
	assert.equal(a.statements[1]!.readOnly, false);
	assert.ok(a.statements[1]!.kinds.includes("UPDATE"));
	const v = evaluateSqlGuardrails({ analysis: a, access: "read-write", rules: RULES });
	assert.equal(v.action, "audit", "the EXECUTE touches orders through its body");
	assert.equal(v.statementIndex, 0);
});

test("session: FETCH resolves to the DECLAREd query; CLOSE forgets it", () => {
	const st = new SessionSqlState();
	st.record(st.resolve(analyzeSql("DECLARE c CURSOR FOR SELECT email FROM customers")));
	const f = st.resolve(analyzeSql("FETCH 5 FROM c"));
	assert.ok(f.ok && f.statements[0]!.uses?.statement?.tables.includes("customers"));
	st.record(analyzeSql("CLOSE c"));
	const g = st.resolve(analyzeSql("FETCH 5 FROM c"));
	assert.ok(g.ok && g.statements[0]!.uses?.statement === undefined);
});

test("globs: literal punctuation, wildcards, case-insensitive, dotted names from the right", async () => {
	const { compileGlob, compileQualified } = await import("./glob.ts");
	assert.equal(compileGlob("team-*")("team-a"), true);
	assert.equal(compileGlob("a.b/c(d)[e]+f?")("A.B/C(D)[E]+Fx"), true);
	assert.equal(compileGlob("a.b")("axb"), false);
	assert.equal(compileGlob("DROP*")("drop table"), true);
	assert.equal(compileQualified("public.orders")(["orders"]), true, "unqualified name may be on the search_path");
	assert.equal(compileQualified("public.orders")(["billing", "orders"]), false);
	assert.equal(compileQualified("orders")(["billing", "orders"]), true);
	assert.equal(compileQualified("*.ord*")(["x", "orders"]), true);
});

test("literal-insensitive cache: statements differing only in numbers share an analysis, safely", () => {
	const a = analyzeSql("SELECT abalance FROM pgbench_accounts WHERE aid = 101;");
	const b = analyzeSql("SELECT abalance FROM pgbench_accounts WHERE aid = 202;");
	assert.ok(a.ok && b.ok);
	assert.equal(b.statements[0]!.text, "SELECT abalance FROM pgbench_accounts WHERE aid = 202");
	assert.deepEqual(b.statements[0]!.kinds, a.statements[0]!.kinds);
	assert.deepEqual(b.statements[0]!.tables, ["pgbench_accounts"]);
	// Settings are never shared: a number changes their meaning.
	assert.equal(one("SET LOCAL transaction_read_only = 1").readOnly, true);
	assert.equal(one("SET LOCAL transaction_read_only = 0").readOnly, false);
	// Identifiers with digits are not numbers.
	assert.deepEqual(one("DELETE FROM t1 WHERE a = 1").tables, ["t1"]);
	assert.deepEqual(one("DELETE FROM t2 WHERE a = 1").tables, ["t2"]);
	// A constant condition and a column condition never share a key.
	assert.equal(one("DELETE FROM t WHERE a = 5").hasWhere, true);
	assert.equal(one("DELETE FROM t WHERE 5 = 5").hasWhere, false);
	// Non-ASCII whitespace is an identifier character in PostgreSQL: no sharing across it.
	assert.deepEqual(one("DELETE FROM t\u00a01 WHERE a = 1").tables, ["t\u00a01"]);
	assert.deepEqual(one("DELETE FROM t\u00a02 WHERE a = 1").tables, ["t\u00a02"]);
	// Texts that contain a string, comment or cast take the normal path.
	assert.equal(one("SELECT pg_read_file('x') FROM t WHERE a = 1").readOnly, false);
	assert.equal(one("SELECT 1 FROM t WHERE a = 1").readOnly, true);
	assert.equal(one("SELECT 2 FROM t WHERE a = 1 FOR UPDATE").readOnly, false);
	assert.equal(one("SELECT 3 FROM t WHERE a = 1 FOR UPDATE").kind, "SELECT FOR UPDATE");
});

test("DO and PL/pgSQL bodies: static SQL inside is classified (best effort)", () => {
	const d = one("DO $$ BEGIN PERFORM pg_read_file('/etc/passwd'); DELETE FROM orders WHERE id = 1; IF (SELECT count(*) FROM customers) > 0 THEN RAISE NOTICE 'x'; END IF; END $$");
	assert.equal(d.kind, "DO");
	assert.ok(d.kinds.includes("DELETE"));
	assert.ok(d.functions.includes("pg_read_file"));
	assert.ok(d.tables.includes("orders") && d.tables.includes("customers"));
	assert.ok((d.risks ?? []).some((r) => r.kind === "opaque-code"));
	const dyn = one("DO $x$ BEGIN EXECUTE 'DROP TABLE ' || 'orders'; END $x$");
	assert.ok((dyn.risks ?? []).some((r) => r.kind === "dynamic-sql"));
	const rules: GuardrailRule[] = [{ name: "no-file", action: "block", sql: { functions: ["pg_read_file"] } }];
	const v = evaluateSqlGuardrails({ analysis: analyzeSql("DO $$BEGIN PERFORM pg_read_file('x'); END$$"), access: "admin", rules });
	assert.equal(v.rule, "no-file", "admin DO blocks still meet function rules");
	const f = one("CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN TRUNCATE orders; END $$");
	assert.ok(f.kinds.includes("TRUNCATE"));
	assert.ok(one("DO LANGUAGE plpgsql 'BEGIN NOT VALID PLPGSQL; END'").risks!.some((r) => r.kind === "unknown" || r.kind === "opaque-code"));
});

test("session: a PREPARE that fails upstream cannot hide the body that holds the name", () => {
	// (1) p is a DELETE (forwarded, e.g. after approval); (2) PREPARE p AS SELECT is forwarded but
	// PostgreSQL refuses the duplicate name; (3) EXECUTE p still runs the DELETE.
	const st = new SessionSqlState();
	st.record(st.resolve(analyzeSql("PREPARE p AS DELETE FROM orders WHERE id = 1")));
	st.record(st.resolve(analyzeSql("PREPARE p AS SELECT 1")));
	const ex = st.resolve(analyzeSql("EXECUTE p"));
	assert.ok(ex.ok);
	const s = ex.statements[0]!;
	assert.equal(s.readOnly, false);
	assert.ok(s.kinds.includes("DELETE") && s.kinds.includes("SELECT"), JSON.stringify(s.kinds));
	assert.equal(evaluateSqlGuardrails({ analysis: ex, access: "read-write", rules: RULES }).action, "requireApproval");
	assert.equal(st.preparedStatement("p").length, 2);
	st.record(analyzeSql("DEALLOCATE p"));
	assert.equal(st.preparedStatement("p").length, 0);
});

test("verdict messages carry no control characters from attacker-chosen identifiers", () => {
	const e = evaluateSqlGuardrails({ analysis: analyzeSql('EXECUTE "a\nb\u001b[31m"'), access: "read-only", rules: [] });
	assert.match(e.message!, /EXECUTE a\?b\?\[31m/);
	const p = evaluateSqlGuardrails({ analysis: analyzeSql("SELECT \"x\u001b[2J"), access: "admin", rules: [] });
	assert.equal(p.rule, "parse");
	for (const m of [e.message!, p.message!]) assert.doesNotMatch(m, /[\u0000-\u001f]/);
});

// Red-team round 7: whole-schema and cascading statements reach tables they do not name.
test("cascading, schema-wide and owned-by statements match table rules (deny by default)", () => {
	const rules: GuardrailRule[] = [
		{ name: "keep-orders", action: "block", sql: { statementKinds: ["DROP", "TRUNCATE", "ALTER"], tables: ["public.orders"] } },
		{ name: "no-drop-table-orders", action: "requireApproval", sql: { statementKinds: ["DROP TABLE"], tables: ["public.orders"] } },
	];
	const verdict = (sql: string) => evaluateSqlGuardrails({ analysis: analyzeSql(sql), access: "admin", rules });
	for (const sql of [
		"DROP SCHEMA public CASCADE",
		"DROP SCHEMA sales CASCADE",
		"ALTER SCHEMA public RENAME TO x",
		"DROP TYPE mood CASCADE",
		"DROP FUNCTION f(int) CASCADE",
		"DROP EXTENSION citext",
		"DROP DOMAIN d CASCADE",
		"DROP SEQUENCE s CASCADE",
		"DROP VIEW v CASCADE",
		"DROP TABLE customers CASCADE",
		"DROP OWNED BY shop_owner",
		"REASSIGN OWNED BY shop_owner TO admin",
		"ALTER TABLE customers DROP COLUMN id CASCADE",
		"ALTER TABLE customers DROP CONSTRAINT customers_pkey CASCADE",
		"ALTER TYPE t DROP ATTRIBUTE a CASCADE",
		"ALTER DOMAIN d DROP CONSTRAINT c CASCADE",
		"TRUNCATE customers CASCADE",
	]) {
		const v = verdict(sql);
		assert.equal(v.action, "block", sql);
		assert.equal(v.rule, "keep-orders", sql);
	}
	// A rule on DROP TABLE only: a cascading drop may drop tables; an owner change does not.
	const dropTableOnly = [rules[1]!];
	assert.equal(evaluateSqlGuardrails({ analysis: analyzeSql("DROP SCHEMA public CASCADE"), access: "admin", rules: dropTableOnly }).action, "requireApproval");
	assert.equal(evaluateSqlGuardrails({ analysis: analyzeSql("REASSIGN OWNED BY a TO b"), access: "admin", rules: dropTableOnly }).action, "allow");
	for (const sql of [
		"DROP TABLE unrelated",
		"DROP TYPE mood",
		"DROP SCHEMA empty_schema",
		"DROP SCHEMA s RESTRICT",
		"ALTER SCHEMA other RENAME TO other2",
		"ALTER TABLE customers DROP COLUMN note",
		"TRUNCATE unrelated",
		"ALTER SCHEMA public OWNER TO admin",
	]) {
		assert.equal(verdict(sql).action, "allow", sql);
	}
	// A rule whose kinds match neither the statement nor what it may do stays out.
	const truncateOnly: GuardrailRule[] = [{ name: "t", action: "block", sql: { statementKinds: ["TRUNCATE"], tables: ["public.orders"] } }];
	assert.equal(evaluateSqlGuardrails({ analysis: analyzeSql("DROP TYPE mood CASCADE"), access: "admin", rules: truncateOnly }).action, "allow");
	assert.equal(evaluateSqlGuardrails({ analysis: analyzeSql("TRUNCATE customers CASCADE"), access: "admin", rules: truncateOnly }).action, "block");
	// Kind-only rules see the statement's own kinds, as before.
	const alterOnly: GuardrailRule[] = [{ name: "a", action: "block", sql: { statementKinds: ["ALTER"] } }];
	assert.equal(evaluateSqlGuardrails({ analysis: analyzeSql("DROP TYPE mood CASCADE"), access: "admin", rules: alterOnly }).action, "allow");
	// Schema renames: an unqualified table pattern can live in any schema.
	const unqualified: GuardrailRule[] = [{ name: "u", action: "block", sql: { statementKinds: ["DROP"], tables: ["orders"] } }];
	assert.equal(evaluateSqlGuardrails({ analysis: analyzeSql("ALTER SCHEMA other RENAME TO o2"), access: "admin", rules: unqualified }).action, "block");
	assert.deepEqual(one("ALTER SCHEMA public RENAME TO x").schemaEscapes, ["public"]);
	// a function named with empty parentheses is listed (red-team round 8), and definitions meet
	// function rules whatever their statement kinds
	for (const sql of ["ALTER FUNCTION purge() RENAME TO tidy", "ALTER ROUTINE public.purge() SET SCHEMA x", "DROP FUNCTION purge()"]) {
		assert.ok(one(sql).functions.some((f) => f.endsWith("purge")), sql);
	}
	const onSelect: GuardrailRule[] = [{ name: "f", action: "block", sql: { statementKinds: ["SELECT"], functions: ["purge"] } }];
	for (const sql of ["CREATE OPERATOR ### (rightarg = int, function = purge)", "ALTER TABLE t ALTER COLUMN c SET DEFAULT purge()", "ALTER FUNCTION purge() RENAME TO tidy"]) {
		assert.equal(evaluateSqlGuardrails({ analysis: analyzeSql(sql), access: "admin", rules: onSelect }).action, "block", sql);
	}
	assert.equal(evaluateSqlGuardrails({ analysis: analyzeSql("DROP FUNCTION purge()"), access: "admin", rules: onSelect }).action, "allow");
	// large-object writes carry their kinds (red-team round 8), contrib lo's trigger function too
	for (const [sql, kind] of [
		["SELECT lo_unlink(16400)", "DELETE"],
		["SELECT (16400::oid).lo_unlink", "DELETE"],
		["SELECT lo_put(16400, 0, 'x')", "UPDATE"],
		["SELECT lo_from_bytea(0, 'x')", "INSERT"],
		["SELECT pg_notify('jobs', 'x')", "NOTIFY"],
		["CREATE TRIGGER t BEFORE UPDATE OR DELETE ON docs FOR EACH ROW EXECUTE FUNCTION lo_manage(blob)", "DELETE"],
	] as const) {
		assert.ok(one(sql).kinds.includes(kind), `${sql}: ${kind}`);
	}
	assert.ok(one("SELECT lo_get(16400)").tables.includes("pg_catalog.pg_largeobject"));
	// publications, logical decoding and WAL block images read every table (red-team round 8)
	for (const sql of [
		"CREATE PUBLICATION p FOR TABLE secrets",
		"CREATE PUBLICATION p FOR ALL TABLES",
		"ALTER PUBLICATION p ADD TABLES IN SCHEMA public",
		"SELECT data FROM pg_logical_slot_peek_changes('s', NULL, NULL)",
		"SELECT block_data FROM pg_get_wal_block_info('0/0', '0/FFFFFFFF')",
	]) {
		const onSecrets: GuardrailRule[] = [{ name: "s", action: "block", sql: { statementKinds: ["SELECT"], tables: ["public.secrets"] } }];
		assert.equal(evaluateSqlGuardrails({ analysis: analyzeSql(sql), access: "admin", rules: onSecrets }).action, "block", sql);
	}
	// PostgreSQL 17's event_triggers = off skips a DBA's DDL guard in the session (red-team round 8)
	for (const sql of ["SET event_triggers = off", "SET LOCAL event_triggers TO false", "SELECT set_config('event_triggers', 'off', false)"]) {
		assert.equal(evaluateSqlGuardrails({ analysis: analyzeSql(sql), access: "read-write", rules: [] }).rule, "builtin:system", sql);
	}
	// the statistics catalogs hold sample values of every table (red-team round 8)
	for (const sql of ["SELECT most_common_vals FROM pg_stats", "SELECT stavalues1 FROM pg_catalog.pg_statistic", "SELECT * FROM pg_stats_ext_exprs"]) {
		assert.deepEqual(one(sql).unnamedReach, ["SELECT"], sql);
	}
	assert.equal(one("SELECT * FROM stats.pg_stats").unnamedReach, undefined, "another schema's relation");
	const secrets: GuardrailRule[] = [{ name: "s", action: "block", sql: { statementKinds: ["SELECT"], tables: ["public.secrets"] } }];
	assert.equal(evaluateSqlGuardrails({ analysis: analyzeSql("SELECT histogram_bounds FROM pg_stats"), access: "read-only", rules: secrets }).action, "block");
	assert.equal(evaluateSqlGuardrails({ analysis: analyzeSql("SELECT histogram_bounds FROM pg_stats"), access: "read-only", rules: dropTableOnly }).action, "allow");
	assert.equal(one("DROP TABLE t").unnamedReach, undefined);
});

test("deferred and implicit execution: the binding statement carries the action (red-team round)", () => {
	const rules: GuardrailRule[] = [{ name: "keep-accounts", action: "block", sql: { statementKinds: ["DELETE", "UPDATE"], tables: ["public.accounts"] } }];
	const decide = (sql: string) => evaluateSqlGuardrails({ analysis: analyzeSql(sql), access: "read-write", rules }).action;
	// other verbs running DELETE/UPDATE
	assert.deepEqual(one("MERGE INTO accounts a USING t ON a.id = t.id WHEN MATCHED THEN DELETE WHEN NOT MATCHED THEN INSERT VALUES (1)").kinds.toSorted(), ["DELETE", "INSERT", "MERGE", "SELECT"]); // SELECT: it reads t
	assert.ok(one("INSERT INTO accounts VALUES (1) ON CONFLICT (id) DO UPDATE SET b = 0").kinds.includes("UPDATE"));
	assert.ok(!one("INSERT INTO accounts VALUES (1) ON CONFLICT DO NOTHING").kinds.includes("UPDATE"));
	assert.ok(one("ALTER TABLE accounts ALTER COLUMN b TYPE int USING b * 0").kinds.includes("UPDATE"));
	assert.equal(one("ALTER TABLE accounts ALTER COLUMN b TYPE int USING 0").hasWhere, false);
	// without USING the cast rewrites every value too (numeric(12,2) -> numeric(12,0) rounds them):
	// an UPDATE of the table, but not an unbounded one
	assert.ok(one("ALTER TABLE accounts ALTER COLUMN b TYPE bigint").kinds.includes("UPDATE"));
	assert.equal(one("ALTER TABLE accounts ALTER COLUMN b TYPE numeric(12,0)").hasWhere, true);
	// bound for later
	assert.deepEqual(one("ALTER TABLE accounts ADD COLUMN k int REFERENCES src(id) ON DELETE CASCADE").binds, [{ kinds: ["DELETE"], tables: ["accounts"] }]);
	// (and, as an added constraint, the writes it may make fail: red-team round 10)
	assert.deepEqual(one("ALTER TABLE accounts ADD FOREIGN KEY (k) REFERENCES src(id) ON UPDATE SET NULL").binds, [
		{ kinds: ["UPDATE"], tables: ["accounts"] },
		{ kinds: ["INSERT", "UPDATE", "MERGE"], tables: ["accounts"] },
	]);
	assert.equal(one("ALTER TABLE accounts ADD COLUMN k int REFERENCES src(id)").binds, undefined);
	for (const sql of [
		"ALTER TABLE accounts ADD COLUMN k int REFERENCES src(id) ON DELETE CASCADE",
		"CREATE VIEW va AS SELECT * FROM accounts",
		"CREATE OR REPLACE TEMP VIEW va AS SELECT id FROM public.accounts WHERE id > 0",
		"CREATE VIEW va AS TABLE accounts",
		'CREATE RULE "_RETURN" AS ON SELECT TO tv DO INSTEAD SELECT * FROM accounts',
		"ALTER TABLE accounts INHERIT px",
		"ALTER TABLE pp ATTACH PARTITION accounts FOR VALUES FROM (0) TO (10)",
	]) {
		assert.equal(decide(sql), "block", sql);
	}
	for (const sql of [
		"ALTER TABLE src ADD COLUMN a int REFERENCES accounts(id) ON DELETE CASCADE",
		"CREATE VIEW n AS SELECT count(*) FROM accounts",
		"CREATE VIEW n AS SELECT id, sum(b) FROM accounts GROUP BY id",
		"CREATE VIEW n AS SELECT * FROM accounts UNION ALL SELECT * FROM accounts",
		"CREATE VIEW n AS SELECT * FROM accounts a JOIN t ON a.id = t.id",
		"CREATE VIEW n AS SELECT DISTINCT id FROM accounts",
		"CREATE VIEW n AS SELECT * FROM accounts LIMIT 5",
		"CREATE TABLE child (a int REFERENCES accounts(id) ON DELETE CASCADE)",
	]) {
		assert.equal(decide(sql), "allow", sql);
	}
	// without WHERE
	for (const w of ["true", "1 = 1", "id = 5 OR 1 = 1", "id = id", "a.id IS NOT DISTINCT FROM a.id", "(id = 1 OR true) AND 2 > 1"]) {
		assert.equal(one(`DELETE FROM t a WHERE ${w}`).hasWhere, false, w);
	}
	for (const w of ["id = 5", "id = 5 AND true", "id = 5 OR id = 6", "id > 0", "a.id = b.id"]) {
		assert.equal(one(`DELETE FROM t a WHERE ${w}`).hasWhere, true, w);
	}
	// red-team round 10: conditions that read no column of the target, and complementary arms
	for (const sql of [
		"DELETE FROM t WHERE x IS NULL OR x IS NOT NULL",
		"DELETE FROM t WHERE NOT (id = 1) OR id = 1",
		"DELETE FROM t WHERE (SELECT true)",
		"DELETE FROM t WHERE now() IS NOT NULL",
		"DELETE FROM t WHERE $1",
		"DELETE FROM t WHERE EXISTS (SELECT 1 FROM u WHERE u.id = 1)",
		"DELETE FROM public.t USING u WHERE u.id = 1",
		"UPDATE t SET v = 0 FROM u WHERE u.id = 1",
		"MERGE INTO t USING u ON u.id = 1 WHEN MATCHED THEN DELETE",
		"MERGE INTO t USING (SELECT 1 AS id WHERE false) s ON t.id = s.id WHEN NOT MATCHED BY SOURCE THEN DELETE",
		"INSERT INTO t SELECT id, '' FROM t ON CONFLICT (id) DO UPDATE SET v = excluded.v",
		"INSERT INTO t SELECT g FROM generate_series(1, 9) g UNION SELECT 1 ON CONFLICT (id) DO UPDATE SET v = 0",
	]) {
		assert.equal(one(sql).hasWhere, false, sql);
	}
	for (const sql of [
		"DELETE FROM t WHERE id = $1",
		"DELETE FROM public.t WHERE public.t.id = 1",
		"DELETE FROM t USING u WHERE u.id = t.id",
		"DELETE FROM t a WHERE EXISTS (SELECT 1 FROM u WHERE u.id = a.id)",
		"UPDATE t SET v = 0 FROM u WHERE u.tid = t.id AND u.id = 1",
		"MERGE INTO t USING u ON t.id = u.id WHEN MATCHED THEN DELETE",
		"MERGE INTO t USING u ON t.id = u.id WHEN NOT MATCHED BY SOURCE AND t.id > 5 THEN DELETE",
		"DELETE FROM t WHERE x IS NULL OR y IS NOT NULL",
		"INSERT INTO t VALUES (1, 'x') ON CONFLICT (id) DO UPDATE SET v = excluded.v",
		"INSERT INTO t SELECT id, '' FROM u WHERE u.id = 2 ON CONFLICT (id) DO UPDATE SET v = excluded.v",
		"INSERT INTO t SELECT id, '' FROM t ON CONFLICT (id) DO UPDATE SET v = '' WHERE t.id = 3",
	]) {
		assert.equal(one(sql).hasWhere, true, sql);
	}
	// functions reached without a call in the statement
	assert.ok(one("CREATE AGGREGATE rf(bigint, bigint) (sfunc1 = pg_read_file, stype1 = text)").functions.includes("pg_read_file"));
	assert.ok(one("DO $$ DECLARE t text; BEGIN t := pg_read_file('/x'); END $$").functions.includes("pg_read_file"));
	assert.ok(one("DO $$ DECLARE a int[]; BEGIN a[pg_terminate_backend(1)::int] = 1; END $$").functions.includes("pg_terminate_backend"));
	assert.ok(
		one("CREATE FUNCTION f() RETURNS SETOF int LANGUAGE plpgsql AS $$ BEGIN RETURN QUERY EXECUTE 'DELETE FROM x RETURNING 1'; END $$").risks?.some(
			(r) => r.kind === "unknown",
		),
	);
	// a PL/pgSQL function compiles with its own header (NEW, parameters, RETURN x)
	for (const sql of [
		"CREATE FUNCTION tf() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN NEW.x := upper(NEW.y); RETURN NEW; END $$",
		"CREATE FUNCTION g(a int, OUT b int) LANGUAGE plpgsql AS $$ BEGIN a := a + 1; b := upper('x'); END $$",
		"CREATE FUNCTION h(a int) RETURNS int LANGUAGE plpgsql AS $$ BEGIN RETURN upper(a::text)::int; END $$",
	]) {
		const f = one(sql);
		assert.ok(!f.risks?.some((r) => r.kind === "unknown"), `${sql}: ${JSON.stringify(f.risks)}`);
		assert.ok(f.functions.includes("upper"), sql);
	}
});

test("relations and SQL named in function arguments", () => {
	// read as regclass input reads them
	assert.equal(relationNameText("accounts"), "accounts");
	assert.equal(relationNameText(' Public . "Odd ""x"" Name" '), 'public.Odd "x" Name');
	assert.equal(relationNameText("db.s.t"), "db.s.t");
	for (const bad of ["16384", "a.b.c.d", "a..b", '""', "a b", "a;b", ""]) assert.equal(relationNameText(bad), undefined, bad);
	assert.deepEqual(one("SELECT table_to_xml('ACCOUNTS'::regclass, true, false, '')").tables, ["accounts"]);
	assert.deepEqual(one("SELECT table_to_xml(16384, true, false, '')").unnamedReach, ["SELECT"]);
	assert.deepEqual(one("SELECT schema_to_xml('public', true, false, '')").unnamedReach, ["SELECT"]);
	const kill = one("SELECT heap_force_kill('public.accounts', ARRAY['(0,1)']::tid[])");
	assert.ok(kill.kinds.includes("DELETE") && kill.tables.includes("public.accounts") && !kill.readOnly);
	// crosstab's SQL text is a nested statement; xpath_table's fragments are unanalysable
	const ct = one("SELECT * FROM crosstab('select a, b, c from r', 'select pg_read_file(''/x'')') AS t(a text)");
	assert.ok(ct.tables.includes("r") && ct.functions.includes("pg_read_file") && !ct.readOnly);
	assert.ok(one("SELECT * FROM crosstab('select a, b, c from r') AS t(a text)").readOnly);
	assert.ok((one("SELECT * FROM xpath_table('1', 'd', 'r', '/a', 'true') AS t(a int)").risks ?? []).some((r) => r.kind === "unknown"));
});

test("function calls in field notation", () => {
	const f = one("SELECT ('/etc/hostname'::text).pg_read_file");
	assert.ok(!f.readOnly && (f.risks ?? []).some((r) => r.kind === "server-access"));
	assert.deepEqual(one("SELECT x.purge FROM t x").fieldCalls, ["purge"]);
	assert.deepEqual(one("SELECT (c.card::bigint).pg_advisory_lock FROM c").functions, ["pg_advisory_lock"]);
	const plain = one("SELECT o.id, (r).note FROM orders o, rows r");
	assert.ok(plain.readOnly && plain.functions.length === 0);
	const rules: GuardrailRule[] = [{ name: "no-purge", action: "block", sql: { functions: ["purge"] } }];
	assert.equal(evaluateSqlGuardrails({ analysis: analyzeSql("SELECT (t).purge FROM t"), access: "admin", rules }).rule, "no-purge");
	assert.equal(evaluateSqlGuardrails({ analysis: analyzeSql("SELECT t.id FROM t"), access: "admin", rules }).action, "allow");
});

test("reads by another name carry SELECT", () => {
	for (const sql of [
		"COPY secrets TO STDOUT",
		"UPDATE t SET v = s.x FROM secrets s WHERE t.id = s.id",
		"DELETE FROM t USING secrets s WHERE t.id = s.id",
		"MERGE INTO t USING secrets s ON t.id = s.id WHEN MATCHED THEN DELETE",
		"DELETE FROM secrets WHERE id = 1 RETURNING *",
		"INSERT INTO secrets VALUES (1) RETURNING x",
	]) {
		assert.ok(one(sql).kinds.includes("SELECT"), sql);
	}
	for (const sql of ["COPY t FROM STDIN", "UPDATE t SET v = 1 WHERE id = 2", "DELETE FROM t WHERE id = 1", "INSERT INTO t VALUES (1)"]) {
		assert.ok(!one(sql).kinds.includes("SELECT"), sql);
	}
});

test("DROP COLUMN and SET EXPRESSION rewrite every row", () => {
	const d = one("ALTER TABLE t DROP COLUMN c");
	assert.ok(["DROP", "DROP COLUMN", "UPDATE"].every((k) => d.kinds.includes(k)) && d.hasWhere === false);
	assert.equal(one("ALTER TABLE t ALTER COLUMN g SET EXPRESSION AS (0)").hasWhere, false);
	assert.equal(one("ALTER TABLE t ALTER COLUMN g SET EXPRESSION AS (a + 1)").hasWhere, true);
	assert.ok(!one("ALTER TABLE t DROP CONSTRAINT k").kinds.includes("UPDATE"));
});

test("refint's check_foreign_key binds DELETE/UPDATE on the tables in its arguments", () => {
	const t = one("CREATE TRIGGER c BEFORE DELETE ON t FOR EACH ROW EXECUTE FUNCTION check_foreign_key(1, 'cascade', 'id', 'public.accounts', 'id')");
	assert.ok(t.binds?.some((b) => b.tables.includes("public.accounts") && b.kinds.includes("DELETE")));
	// another function's arguments are not tables; a BEFORE row trigger binds its own table's writes (round 9)
	assert.deepEqual(one("CREATE TRIGGER c BEFORE DELETE ON t FOR EACH ROW EXECUTE FUNCTION touch('accounts')").binds, [{ kinds: ["DELETE", "MERGE"], tables: ["t"] }]);
	assert.equal(one("CREATE TRIGGER c AFTER DELETE ON t FOR EACH ROW EXECUTE FUNCTION touch('accounts')").binds, undefined);
});

test("DDL on server-wide objects is system", () => {
	for (const sql of ["DROP EVENT TRIGGER e", "ALTER DATABASE d RENAME TO e", "ALTER SERVER s OWNER TO r", "DROP EXTENSION x", "ALTER EXTENSION x SET SCHEMA y", "DROP PUBLICATION p"]) {
		assert.ok((one(sql).risks ?? []).some((r) => r.kind === "system"), sql);
	}
	for (const sql of ["DROP TABLE t", "ALTER TABLE t RENAME TO u", "ALTER SCHEMA s OWNER TO r"]) {
		assert.ok(!(one(sql).risks ?? []).some((r) => r.kind === "system"), sql);
	}
});

test("rules with a wildcard function name do not meet every qualified column", () => {
	const rules: GuardrailRule[] = [{ name: "billing-fns", action: "block", sql: { functions: ["billing.*"] } }];
	const decide = (sql: string) => evaluateSqlGuardrails({ analysis: analyzeSql(sql), access: "admin", rules }).action;
	assert.equal(decide("SELECT o.id FROM orders o"), "allow");
	assert.equal(decide("SELECT billing.charge(1)"), "block");
	const named: GuardrailRule[] = [{ name: "no-charge", action: "block", sql: { functions: ["billing.charge"] } }];
	assert.equal(evaluateSqlGuardrails({ analysis: analyzeSql("SELECT o.charge FROM orders o"), access: "admin", rules: named }).action, "block");
});

test("unseenCode: with casts made of user functions, typed values converted count (red-team round 10)", () => {
	for (const sql of ["SELECT 1", "SELECT 'x\\y', pg_catalog.length('abc'), pg_catalog.now()", "SELECT 'x'::pg_catalog.text", "SELECT pg_catalog.coalesce(NULL, 'x')"]) {
		assert.equal(unseenCode(one(sql), { userCasts: true }), undefined, sql);
	}
	for (const sql of ["SELECT pg_catalog.length(1)", "SELECT 1::pg_catalog.text", "SELECT $1::pg_catalog.int4", "SELECT pg_catalog.length($1)", "SELECT pg_catalog.upper(pg_catalog.now()::pg_catalog.text)"]) {
		assert.notEqual(unseenCode(one(sql), { userCasts: true }), undefined, sql);
		if (sql !== "SELECT pg_catalog.upper(pg_catalog.now()::pg_catalog.text)") assert.equal(unseenCode(one(sql)), undefined, sql);
	}
});

test("unseenCode: only statements running built-in code alone are exempt (red-team round 9)", () => {
	for (const sql of [
		"SELECT 1",
		"SELECT $1::pg_catalog.int4, pg_catalog.length($2), pg_catalog.now()",
		"SELECT 'x\\y', 'café'",
		"SET application_name = 'x'",
		"BEGIN",
		"ROLLBACK",
		"SHOW work_mem",
	]) {
		assert.equal(unseenCode(one(sql)), undefined, sql);
	}
	for (const sql of [
		"SELECT * FROM v",
		"INSERT INTO t (b) VALUES (1)",
		"SELECT 'off'::scs",
		"SELECT $1::scs",
		"SELECT 'a' ### 'b'",
		"SELECT 1 + 1",
		"SELECT upper('x')",
		"SELECT now()",
		"SELECT CAST(1 + 0 AS pg_catalog.int4)",
		"SELECT pg_catalog.length(pg_catalog.textin(pg_catalog.unknownout('x')))::pg_catalog.int4",
		"SELECT ('x'::text).app_set",
		"SELECT pg_catalog.query_to_xml('SELECT app_set(1)', true, true, '')",
		"SELECT CASE 1 WHEN 1 THEN 2 END",
		"COMMIT",
		"SET CONSTRAINTS ALL IMMEDIATE",
		"CREATE SCHEMA s",
		"CALL p()",
		"EXECUTE q",
	]) {
		assert.notEqual(unseenCode(one(sql)), undefined, sql);
	}
});

test("renaming an enum value is an UPDATE without WHERE of every table (red-team round 9)", () => {
	const s = one("ALTER TYPE account_status RENAME VALUE 'active' TO 'closed'");
	assert.ok(s.kinds.includes("UPDATE"));
	assert.equal(s.hasWhere, false);
	assert.deepEqual(s.unnamedReach, ["UPDATE"]);
	const hold: GuardrailRule[] = [{ name: "hold", action: "requireApproval", sql: { statementKinds: ["UPDATE"], withoutWhere: true } }];
	assert.equal(evaluateSqlGuardrails({ analysis: analyzeSql("ALTER TYPE s RENAME VALUE 'a' TO 'b'"), access: "read-write", rules: hold }).action, "requireApproval");
	assert.equal(one("ALTER TYPE s ADD VALUE 'c'").kinds.includes("UPDATE"), false);
});
