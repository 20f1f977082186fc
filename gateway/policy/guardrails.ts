/**
 * SQL guardrails: decide allow / audit / requireApproval / block for an analysed statement string.
 *
 * Order of checks for every statement of the string (the whole string is decided before any of it
 * is forwarded):
 *   1. parse failure                      -> block, rule `parse`, SQLSTATE 42601
 *   2. unresolved EXECUTE                  -> block, rule `session:unknown-prepared`, SQLSTATE 26000
 *   3. changes how the server reads SQL    -> block, rule `builtin:parser-state`, SQLSTATE 42501 (any access)
 *   4. read-only grant, not read-only      -> block, rule `grant:read-only`, SQLSTATE 42501
 *   5. built-in rules (non-admin grants)   -> block, rule `builtin:<risk>`, SQLSTATE 42501
 *   6. GuardrailRules (sql section)        -> the rule's action
 * Across statements and rules the strongest action wins: block > requireApproval > audit > allow;
 * ties go to the first statement, then the first rule.
 */
import type { GuardrailAction, GuardrailRule, PostgresAccess } from "../config/bundle.ts";
import { compileGlob, compileGlobs, compileQualifiedList, type GlobMatcher, printable, type QualifiedMatcher, splitName } from "./glob.ts";
import type { GuardrailVerdict, SqlGuardrailInput, SqlRiskKind, SqlStatementInfo } from "./types.ts";

export const SQLSTATE_INSUFFICIENT_PRIVILEGE = "42501";
export const SQLSTATE_SYNTAX_ERROR = "42601";
export const SQLSTATE_INVALID_SQL_STATEMENT_NAME = "26000";

/** Risks blocked for `read-write` grants (admin grants only get their GuardrailRules). */
export const BUILTIN_BLOCKED_RISKS: ReadonlyMap<SqlRiskKind, string> = new Map<SqlRiskKind, string>([
	["server-access", "server file, program, network or process access is reserved for admin grants"],
	["identity-switch", "switching role or session authorization is reserved for admin grants"],
	["privilege", "role and privilege management is reserved for admin grants"],
	["system", "server-wide configuration is reserved for admin grants"],
	["opaque-code", "DO blocks and non-SQL function bodies are reserved for admin grants"],
	["unknown", "statement kind not classified (deny by default)"],
]);

const RANK: Record<GuardrailVerdict["action"], number> = { allow: 0, audit: 1, requireApproval: 2, block: 3 };

interface CompiledSqlRule {
	rule: GuardrailRule;
	kinds?: GlobMatcher;
	tables?: QualifiedMatcher;
	/** Whether a `tables` pattern can name a table in a schema (an unqualified pattern always can). */
	schemas?: GlobMatcher;
	functions?: QualifiedMatcher;
	/**
	 * The `functions` patterns whose last segment names one function (no `*`/`?`), matched against
	 * names in field notation (`t.name`): a wildcard there would match every qualified column.
	 */
	fieldFunctions?: QualifiedMatcher;
	withoutWhere: boolean;
}

const compiledCache = new WeakMap<readonly GuardrailRule[], CompiledSqlRule[]>();

/** Compiles the SQL part of a rule set once (cached by array identity; bundles are frozen). */
export function compileSqlRules(rules: readonly GuardrailRule[]): CompiledSqlRule[] {
	const hit = compiledCache.get(rules);
	if (hit) return hit;
	const out: CompiledSqlRule[] = [];
	for (const rule of rules) {
		if (!rule.sql) continue;
		const c: CompiledSqlRule = { rule, withoutWhere: rule.sql.withoutWhere === true };
		const kinds = compileGlobs(rule.sql.statementKinds);
		const tables = compileQualifiedList(rule.sql.tables);
		const functions = compileQualifiedList(rule.sql.functions);
		if (kinds) c.kinds = kinds;
		if (tables) {
			c.tables = tables;
			c.schemas = schemaMatcher(rule.sql.tables!);
		}
		if (functions) {
			c.functions = functions;
			const named = rule.sql.functions!.filter((p) => !/[*?]/.test(splitName(p).at(-1) ?? "*"));
			const field = compileQualifiedList(named);
			if (field) c.fieldFunctions = field;
		}
		out.push(c);
	}
	compiledCache.set(rules, out);
	return out;
}

/** Matches a schema name when one of the table patterns can name a table in it. */
function schemaMatcher(patterns: readonly string[]): GlobMatcher {
	const ms = patterns.map((p) => {
		const segs = splitName(p);
		return segs.length < 2 ? () => true : compileGlob(segs[segs.length - 2]!);
	});
	return (schema) => ms.some((m) => m(schema));
}

/**
 * Every criterion a rule sets must hold; a `sql: {}` rule matches every statement. A statement
 * holding code the classifier cannot see (risk `unknown`: SQL built at run time in PL/pgSQL, a DO
 * block or function body in another language) may run anything: it matches every rule (deny by
 * default). This matters for admin grants, which skip the built-ins but keep their rules: `DO $$
 * BEGIN EXECUTE 'DROP TABLE ' || 'orders'; END $$` passed a rule blocking DROP.
 */
function ruleMatches(c: CompiledSqlRule, s: SqlStatementInfo): boolean {
	if (s.risks?.some((r) => r.kind === "unknown")) return true;
	// Renaming or moving a ruled table, or detaching a child from it, takes rows away from the rule
	// for good: it matches whatever the rule's statement kinds (`ALTER TABLE parted RENAME TO x` then
	// `DROP TABLE x` passed a rule blocking DROP on parted).
	// Renaming a schema does the same to every table in it.
	const escapes =
		c.tables !== undefined &&
		(s.escapes?.some((t) => c.tables!(splitName(t))) === true || s.schemaEscapes?.some((n) => c.schemas!(n)) === true);
	// A statement that may act on tables it does not name (CASCADE, DROP EXTENSION, DROP/REASSIGN
	// OWNED) is taken to name every table, with the kinds of what it may do to them: `DROP SCHEMA
	// public CASCADE` or `DROP TYPE t CASCADE` (dropping orders' column of type t) passed a rule
	// blocking DROP/ALTER on public.orders.
	const unnamed = c.tables !== undefined && s.unnamedReach !== undefined;
	// A write the statement binds for later (a cascading foreign key, an updatable view) on a ruled
	// table: the later statement will not name the table (gateway/policy/README.md, "Deferred and
	// implicit execution").
	if (!escapes && c.tables && s.binds?.some((b) => b.tables.some((t) => c.tables!(splitName(t))) && (!c.kinds || b.kinds.some((k) => c.kinds!(k))))) {
		return !c.functions || callsMatch(c, s);
	}
	// A definition naming a ruled function (an operator, cast or aggregate over it, a column DEFAULT,
	// CHECK, index expression or policy calling it, a rename or move of it) hands it to later
	// statements that name nothing the rule sees: `CREATE OPERATOR ### (function = purge_one)` then
	// `SELECT ### 1` passed a rule on SELECT calling purge_one. It meets the rule by its functions,
	// whatever the rule's statement kinds.
	const binding = c.functions !== undefined && DEFINITION_KIND.test(s.kind) && callsMatch(c, s, false);
	if (!escapes && !binding && c.kinds && !s.kinds.some((k) => c.kinds!(k)) && !(unnamed && s.unnamedReach!.some((k) => c.kinds!(k)))) return false;
	if (!escapes && !unnamed && c.tables && !s.tables.some((t) => c.tables!(splitName(t)))) return false;
	if (c.functions && !callsMatch(c, s)) return false;
	if (!escapes && c.withoutWhere && s.hasWhere !== false) return false;
	return true;
}

/** Statements that define or change objects, which may call a function later (see ruleMatches). */
const DEFINITION_KIND = /^(CREATE|ALTER) /;

/**
 * The statement calls a function the rule names: in call syntax, maybe in field notation (`(x).f`,
 * `t.f`) when the rule names the function without a wildcard in its last segment, or (`stored`)
 * through stored code it runs (`storedCalls`: a view, a written table's defaults, CHECKs, triggers,
 * a routine's body). A definition binds only what it names itself.
 */
function callsMatch(c: CompiledSqlRule, s: SqlStatementInfo, stored = true): boolean {
	if (s.functions.some((f) => c.functions!(splitName(f)))) return true;
	if (stored && s.storedCalls?.some((f) => c.functions!(splitName(f))) === true) return true;
	return c.fieldFunctions !== undefined && s.fieldCalls?.some((f) => c.fieldFunctions!([f])) === true;
}

function ruleMessage(rule: GuardrailRule, s: SqlStatementInfo): string {
	const what = rule.action === "requireApproval" ? "requires approval" : rule.action === "block" ? "blocked" : "audited";
	return `${s.kind} ${what} by guardrail rule "${rule.name}"${rule.message ? `: ${rule.message}` : ""}`;
}

/** Decides one analysed statement string. Pure; safe to call for every Query/Parse message. */
export function evaluateSqlGuardrails(input: SqlGuardrailInput): GuardrailVerdict {
	const { analysis, access } = input;
	if (!analysis.ok) {
		return {
			action: "block",
			rule: "parse",
			sqlstate: SQLSTATE_SYNTAX_ERROR,
			message: `statement blocked: it does not parse (${printable(analysis.error)})`,
		};
	}
	const rules = compileSqlRules(input.rules);
	let best: GuardrailVerdict = { action: "allow" };
	const consider = (v: GuardrailVerdict): void => {
		if (RANK[v.action] > RANK[best.action]) best = v;
	};
	analysis.statements.forEach((s, index) => {
		if (best.action === "block") return;
		const fixed = builtinVerdict(s, access, input.grant);
		if (fixed) {
			consider({ ...fixed, statementIndex: index });
			return;
		}
		for (const c of rules) {
			if (RANK[c.rule.action] <= RANK[best.action]) continue;
			if (!ruleMatches(c, s)) continue;
			const v: GuardrailVerdict = {
				action: c.rule.action,
				rule: c.rule.name,
				message: ruleMessage(c.rule, s),
				statementIndex: index,
			};
			if (c.rule.action === "block") v.sqlstate = SQLSTATE_INSUFFICIENT_PRIVILEGE;
			if (c.rule.action === "requireApproval" && c.rule.approval) v.approval = c.rule.approval;
			consider(v);
		}
	});
	return best;
}

function builtinVerdict(s: SqlStatementInfo, access: PostgresAccess, grant: string | undefined): GuardrailVerdict | undefined {
	if (s.uses?.type === "prepared" && !s.uses.statement) {
		return {
			action: "block",
			rule: "session:unknown-prepared",
			sqlstate: SQLSTATE_INVALID_SQL_STATEMENT_NAME,
			message: `EXECUTE ${printable(s.uses.name)}: no prepared statement of that name was seen in this session (or it holds EXECUTE or FETCH, which the gateway does not follow a second time), so it cannot be classified`,
		};
	}
	const risks = s.risks ?? [];
	// Not a privilege: after such a statement the gateway would misread what it forwards, so no grant,
	// admin included, may make it (its rules would stop meaning anything).
	const parser = risks.find((r) => r.kind === "parser-state");
	if (parser) {
		return {
			action: "block",
			rule: "builtin:parser-state",
			sqlstate: SQLSTATE_INSUFFICIENT_PRIVILEGE,
			message: `permission denied: ${printable(parser.detail)}`,
		};
	}
	if (access === "read-only" && !s.readOnly) {
		const why = printable(risks[0]?.detail ?? s.kind);
		return {
			action: "block",
			rule: "grant:read-only",
			sqlstate: SQLSTATE_INSUFFICIENT_PRIVILEGE,
			message: `permission denied: the grant${grant ? ` "${grant}"` : ""} is read-only and ${s.kind} is not a read-only statement (${why})`,
		};
	}
	if (access !== "admin") {
		for (const r of risks) {
			const reason = BUILTIN_BLOCKED_RISKS.get(r.kind);
			if (reason) {
				return {
					action: "block",
					rule: `builtin:${r.kind}`,
					sqlstate: SQLSTATE_INSUFFICIENT_PRIVILEGE,
					message: `permission denied: ${printable(r.detail)}: ${reason}`,
				};
			}
		}
	}
	return undefined;
}

export function actionRank(action: GuardrailVerdict["action"] | GuardrailAction): number {
	return RANK[action];
}
