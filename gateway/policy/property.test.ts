/**
 * Property tests (fast-check): the analysis never throws, unparsable input is always blocked, and
 * metamorphic rewrites of corpus statements (random whitespace and comments between tokens, random
 * keyword case) never turn a blocked statement into an allowed one or unmask a masked column.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { scanSync } from "libpg-query";
import type { PostgresAccess } from "../config/bundle.ts";
import { demoContext } from "./corpus/catalog.ts";
import { CORPUS_GUARDRAILS, CORPUS_MASK_RULES, SQL_BYPASS_CORPUS } from "./corpus/sql-bypass.ts";
import { evaluateSqlGuardrails } from "./guardrails.ts";
import { checkMaskedWrites, planMasks } from "./mask.ts";
import { SessionSqlState } from "./session.ts";
import { analyzeSql } from "./sql.ts";

const ACCESS: PostgresAccess[] = ["read-only", "read-write", "admin"];

const SQL_ATOMS = [
	"SELECT", "select", "DELETE", "FROM", "WHERE", "UPDATE", "SET", "INSERT", "INTO", "VALUES", "WITH", "AS", "(", ")", ",", ";",
	"*", "=", "'x'", "$$y$$", "$1", "1", "orders", "customers", "email", "pg_read_file", "::", "text", "/*c*/", "--c\n", "\"Q\"",
	"U&\"\\0061\"", "E'\\n'", "EXPLAIN", "ANALYZE", "DROP", "TABLE", "COPY", "PROGRAM", "DO", "ROLE", "PREPARE", "EXECUTE", "RETURNING",
	"UNION", "LATERAL", "JOIN", "ON", "true", "null", " ", "\n", "\t", "[", "]", "||", "CASE", "WHEN", "THEN", "END", ".", "row_to_json",
];

test("property: analyzeSql never throws and always returns a well-formed analysis", () => {
	const arb = fc.oneof(
		fc.string({ maxLength: 200 }),
		fc.string({ unit: "grapheme", maxLength: 100 }),
		fc.array(fc.constantFrom(...SQL_ATOMS), { maxLength: 40 }).map((a) => a.join(" ")),
		fc.array(fc.constantFrom(...SQL_ATOMS), { maxLength: 40 }).map((a) => a.join("")),
	);
	fc.assert(
		fc.property(arb, (sql) => {
			const a = analyzeSql(sql);
			if (a.ok) {
				for (const s of a.statements) {
					assert.equal(typeof s.kind, "string");
					assert.equal(s.readOnly, (s.risks ?? []).length === 0);
				}
			} else {
				assert.equal(typeof a.error, "string");
			}
		}),
		{ numRuns: 1500 },
	);
});

test("property: unparsable input is blocked with 42601 under every access level", () => {
	const arb = fc.array(fc.constantFrom(...SQL_ATOMS), { minLength: 1, maxLength: 30 }).map((a) => a.join(" "));
	let unparsable = 0;
	fc.assert(
		fc.property(arb, fc.constantFrom(...ACCESS), (sql, access) => {
			const a = analyzeSql(sql);
			const v = evaluateSqlGuardrails({ analysis: a, access, rules: [] });
			if (!a.ok) {
				unparsable++;
				assert.equal(v.action, "block");
				assert.equal(v.sqlstate, "42601");
			}
			if (access === "read-only" && a.ok && a.statements.some((s) => !s.readOnly)) assert.equal(v.action, "block");
		}),
		{ numRuns: 1500 },
	);
	assert.ok(unparsable > 100, "the generator produces unparsable input");
});

test("property: deeply nested input is refused, not crashed on", () => {
	for (const depth of [100, 1000, 5000]) {
		const sql = `SELECT ${"(".repeat(depth)}1${")".repeat(depth)}`;
		const a = analyzeSql(sql);
		if (!a.ok) assert.equal(evaluateSqlGuardrails({ analysis: a, access: "admin", rules: [] }).action, "block");
	}
	assert.equal(analyzeSql("SELECT 1").ok, true, "parser still usable afterwards");
});

/** Re-spells a statement token by token: random separators/comments, random case of bare words. */
function respell(sql: string, seps: string[], cases: boolean[]): string {
	const bytes = Buffer.from(sql, "utf8");
	const tokens = scanSync(sql).tokens;
	let out = "";
	let afterLineComment = false;
	tokens.forEach((t, i) => {
		let text = bytes.subarray(t.start, t.end).toString("utf8");
		if (/^[A-Za-z_]+$/.test(text)) text = cases[i % cases.length] ? text.toUpperCase() : text.toLowerCase();
		// A line comment runs to the end of the line: the next separator must be a newline.
		out += (i === 0 ? "" : afterLineComment ? "\n" : seps[i % seps.length]!) + text;
		afterLineComment = text.startsWith("--");
	});
	return out;
}

const SEPARATORS = [" ", "  ", "\n", "\t", "/**/", " /* x; DROP */ ", "\n-- y\n", "/* /* nested */ */"];

test("property: re-spelled corpus statements stay blocked or masked", async () => {
	const cases = SQL_BYPASS_CORPUS.filter((c) => !c.setup && !c.sql.includes("\u0000") && !c.id.startsWith("parse-"));
	const ctx = demoContext({ rules: CORPUS_MASK_RULES });
	await fc.assert(
		fc.asyncProperty(
			fc.constantFrom(...cases),
			fc.array(fc.constantFrom(...SEPARATORS), { minLength: 1, maxLength: 8 }),
			fc.array(fc.boolean(), { minLength: 1, maxLength: 8 }),
			async (c, seps, cs) => {
				const sql = respell(c.sql, seps, cs);
				const analysis = new SessionSqlState().resolve(analyzeSql(sql));
				const verdict = evaluateSqlGuardrails({ analysis, access: c.access ?? "read-only", rules: CORPUS_GUARDRAILS });
				if (c.expect === "blocked") {
					const maskBlock = analysis.ok ? await checkMaskedWrites(analysis, ctx) : undefined;
					assert.ok(verdict.action === "block" || maskBlock, `${c.id} leaked as: ${sql}`);
				} else if (c.expect === "approval") {
					assert.ok(verdict.action === "requireApproval" || verdict.action === "block", `${c.id}: ${sql}`);
				} else if (analysis.ok) {
					const fields = Array.from({ length: c.width ?? 1 }, (_, i) => ({ name: `c${i}`, tableOid: 0, columnAttr: 0, typeOid: 25, format: 0 as const }));
					const plan = await planMasks(analysis, fields, ctx, { statementIndex: analysis.statements.length - 1 });
					const masked = new Set(plan.columns.map((x) => x.index));
					for (const i of c.masked ?? []) assert.ok(masked.has(i), `${c.id} column ${i} leaked as: ${sql}`);
				}
			},
		),
		{ numRuns: 400 },
	);
});

test("property: SSH command and Kubernetes request decisions never throw and deny by default", async () => {
	const { evaluateSshCommand } = await import("./ssh.ts");
	const { evaluateKubeRequest } = await import("./kube.ts");
	const sshGrant = { logins: ["x"], allowShell: false, allowSftp: false, allowPortForwarding: false, allowAgentForwarding: false, allowedCommands: ["uptime"] };
	const shellAtoms = ["uptime", " ", ";", "&&", "||", "|", "&", "'", '"', "\\", "$(", ")", "`", "(", "{", "}", "#", "\n", "sudo", "bash -c ", "rm -rf /", "<", ">", "$X"];
	fc.assert(
		fc.property(fc.oneof(fc.string({ maxLength: 80 }), fc.array(fc.constantFrom(...shellAtoms), { maxLength: 20 }).map((a) => a.join(""))), (cmd) => {
			const v = evaluateSshCommand(cmd, sshGrant, [{ name: "r", action: "block", ssh: { commands: ["rm -rf *"] } }]);
			// Only the exact allowed command (possibly with whitespace or harmless separators) may pass.
			if (v.action === "allow") {
				assert.ok(v.segments!.length > 0 && v.segments!.every((s) => s === "uptime"), `allowed: ${JSON.stringify(cmd)}`);
			}
		}),
		{ numRuns: 2000 },
	);
	const kubeGrant = { namespaces: ["payments"], verbs: ["get"], resources: ["pods"] };
	fc.assert(
		fc.property(
			fc.record({
				verb: fc.oneof(fc.constant("get"), fc.string({ maxLength: 8 })),
				resource: fc.oneof(fc.constant("pods"), fc.string({ maxLength: 8 })),
				namespace: fc.option(fc.oneof(fc.constant("payments"), fc.string({ maxLength: 12 })), { nil: undefined }),
				subresource: fc.option(fc.string({ maxLength: 6 }), { nil: undefined }),
				apiGroup: fc.option(fc.string({ maxLength: 6 }), { nil: undefined }),
			}),
			(req) => {
				const v = evaluateKubeRequest(req, kubeGrant, []);
				if (v.action === "allow" && req.resource !== "") {
					assert.equal(req.namespace, "payments");
					assert.equal(req.verb.toLowerCase(), "get");
					assert.equal(req.resource.toLowerCase(), "pods");
					assert.ok(!req.subresource);
				}
			},
		),
		{ numRuns: 2000 },
	);
});

test("property: planMasks never rejects, and a masked column named in the select list is masked", async () => {
	const ctx = demoContext({ rules: CORPUS_MASK_RULES });
	const exprAtoms = ["email", "name", "id", "c.email", "c", "lower(email)", "1", "'x'", "phone", "(SELECT email FROM customers LIMIT 1)", "row_to_json(c)", "coalesce(iban, '')"];
	const arb = fc.tuple(
		fc.array(fc.constantFrom(...exprAtoms), { minLength: 1, maxLength: 4 }),
		fc.constantFrom("customers c", "customers AS c", "public.customers c", "(SELECT * FROM customers) c", "customer_contacts c"),
		fc.constantFrom("", " WHERE email = 'a'", " ORDER BY 1", " UNION ALL SELECT email, email, email, email FROM customers"),
	);
	await fc.assert(
		fc.asyncProperty(arb, async ([exprs, from, tail]) => {
			const select = tail.startsWith(" UNION") ? exprs.concat(["1", "1", "1", "1"]).slice(0, 4) : exprs;
			const sql = `SELECT ${select.join(", ")} FROM ${from}${tail}`;
			const a = analyzeSql(sql);
			const fields = select.map((_, i) => ({ name: `c${i}`, tableOid: 0, columnAttr: 0, typeOid: 25, format: 0 as const }));
			const plan = await planMasks(a, fields, ctx);
			if (!a.ok) return;
			const masked = new Set(plan.columns.map((x) => x.index));
			select.forEach((e, i) => {
				const namesMasked = /email|phone|iban|row_to_json\(c\)/.test(e) && !(from.startsWith("customer_contacts") && /iban/.test(e));
				if (namesMasked || tail.startsWith(" UNION")) assert.ok(masked.has(i), `${sql}: column ${i} (${e}) not masked`);
			});
		}),
		{ numRuns: 300 },
	);
});
