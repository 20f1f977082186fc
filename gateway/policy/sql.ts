/**
 * SQL classification from PostgreSQL's own parser (libpg-query, PostgreSQL 18 grammar, WASM).
 * Every statement of a (multi-statement) string is classified from its parse tree, never from the
 * text. (The one regular expression over SQL text here builds a cache key for statements that
 * differ only in numbers; see "Literal-insensitive cache".) Results are cached by text (LRU) and
 * frozen: callers share them and must not mutate them.
 */
import { loadModule, parsePlPgSQLSync, parseSync } from "libpg-query";
import {
	ALL_TABLES_FUNCTIONS,
	PROGRAM_SETTINGS,
	SERVER_FILE_WRITERS,
	FUNCTION_STATEMENTS,
	functionRisk,
	RELATION_ARGUMENT_FUNCTIONS,
	SQL_FRAGMENT_FUNCTIONS,
	STATE_FUNCTIONS,
	sqlTextArguments,
	IDENTITY_SETTINGS, isSystemSetting, parserSettingChange, READ_ONLY_SETTINGS } from "./functions.ts";
import { Lru } from "./lru.ts";
import type { SqlAnalysis, SqlRisk, SqlRiskKind, SqlStatementInfo } from "./types.ts";

/** A parse-tree node as libpg-query returns it: `{ TypeName: { ...fields } }` or a bare field object. */
export type PgNode = Record<string, unknown>;

let loaded = false;

/** Loads the parser (WASM). Idempotent; importing this module already awaits it. */
export async function loadSqlParser(): Promise<void> {
	if (loaded) return;
	await loadModule();
	loaded = true;
}
await loadSqlParser();

/** Statements longer than this are analysed but not cached. */
const MAX_CACHED_SQL_LENGTH = 8 * 1024;
const cache = new Lru<string, SqlAnalysis>(2048);

/** Parse-tree node of each analysed statement (PREPARE/DECLARE bodies included), for masking. */
const trees = new WeakMap<SqlStatementInfo, PgNode>();

/**
 * A statement made from a template or a copy (fromTemplate, withTables) points at the statement it
 * came from with this non-enumerable property: its parse tree and cache identity are that one's. One
 * property instead of two WeakMap entries per statement: simple-query clients make a new statement
 * object per query, and ephemeron tables are costly for the garbage collector.
 */
const ORIGIN = Symbol("drawbridge.sql.origin");
const originOf = (info: SqlStatementInfo): SqlStatementInfo => (info as { [ORIGIN]?: SqlStatementInfo })[ORIGIN] ?? info;
function derived(base: SqlStatementInfo, fields: Partial<SqlStatementInfo>): SqlStatementInfo {
	const out = { ...base, ...fields };
	Object.defineProperty(out, ORIGIN, { value: originOf(base) });
	return Object.freeze(out);
}

/** The statement's parse tree (`{ SelectStmt: ... }`), when it came from `analyzeSql`. */
export function statementTree(info: SqlStatementInfo): PgNode | undefined {
	return trees.get(originOf(info));
}

export function clearSqlCache(): void {
	cache.clear();
	templates.clear();
}

/**
 * Classifies every statement of `sql`. Never throws: anything the parser or classifier cannot
 * handle becomes `{ ok: false }`, which the guardrails block (SQLSTATE 42601).
 */
export function analyzeSql(sql: string): SqlAnalysis {
	if (typeof sql !== "string") return Object.freeze({ ok: false, error: "statement text is not a string" });
	const cached = cache.get(sql);
	if (cached) return cached;
	const tkey = templateKey(sql);
	if (tkey !== undefined) {
		const t = templates.get(tkey);
		// Not put in the exact-text cache: texts that differ only in numbers rarely repeat exactly, and
		// each entry would keep an analysis alive (and old) until evicted; the template lookup is cheap.
		if (t) return fromTemplate(t, sql);
	}
	const analysis = analyzeUncached(sql);
	if (sql.length <= MAX_CACHED_SQL_LENGTH) cache.set(sql, analysis);
	if (tkey !== undefined && analysis.ok && analysis.statements.length === 1 && literalInsensitive(analysis.statements[0]!)) {
		templates.set(tkey, analysis.statements[0]!);
		templateKeys.set(analysis.statements[0]!, tkey);
	}
	return analysis;
}

// ---------------------------------------------------------------------------------------------
// Literal-insensitive cache. Clients in simple-query mode send the same statement with different
// numbers (`... WHERE aid = 48213`); a WASM parse costs ~100 µs, so such statements share one
// analysis. Safety rests on two restrictions:
//  - only texts made of ASCII letters, digits, ASCII whitespace and `_ . , ( ) = < > * + - ; % !`
//    (no quotes, `$`, `/`, `:`, `--`, backslashes or non-ASCII: no strings, comments, dollar
//    quotes, parameters or casts), where a number is unambiguous: a digit run not preceded by an
//    identifier character or `.`; two texts share a key only if they differ in such numbers;
//  - only single DML/SELECT statements are shared (their classification and taint never depend on
//    a number's value; SET, EXPLAIN options, FETCH counts, transactions are never shared).

const templates = new Lru<string, SqlStatementInfo>(1024);
const templateKeys = new WeakMap<SqlStatementInfo, string>();
const SIMPLE_TEXT = /^[A-Za-z0-9_ \t\n\r.,()=<>*+;%!-]*$/;
const NUMBER = /(?<![A-Za-z0-9_.])\d+(?:\.\d*)?(?:[eE][+-]?\d+)?(?![A-Za-z0-9_.])/g;
const SHAREABLE_KINDS = new Set(["SELECT", "VALUES", "INSERT", "UPDATE", "DELETE", "MERGE", "SELECT FOR UPDATE"]);

function templateKey(sql: string): string | undefined {
	if (sql.length > 4096 || !SIMPLE_TEXT.test(sql) || sql.includes("--")) return undefined;
	let replaced = false;
	const key = sql.replace(NUMBER, () => {
		replaced = true;
		return "?";
	});
	return replaced ? key : undefined;
}

function literalInsensitive(s: SqlStatementInfo): boolean {
	return s.kinds.every((k) => SHAREABLE_KINDS.has(k));
}

/** Trimmed by the template's alphabet: ASCII whitespace and `;` at either end. */
function isTrimChar(c: number): boolean {
	return c === 0x20 || c === 0x3b || (c >= 0x09 && c <= 0x0d);
}

function fromTemplate(t: SqlStatementInfo, sql: string): SqlAnalysis {
	const trimmed = sql.length > 0 && (isTrimChar(sql.charCodeAt(0)) || isTrimChar(sql.charCodeAt(sql.length - 1)));
	const text = trimmed ? sql.replace(/^[\s;]+|[\s;]+$/g, "") : sql;
	return Object.freeze({ ok: true, statements: Object.freeze([derived(t, { text })]) as unknown as SqlStatementInfo[] });
}

/** A copy of `info` with other tables (and escapes, binds), keeping its parse tree and cache identity. */
export function withTables(info: SqlStatementInfo, tables: string[], escapes?: string[], binds?: SqlStatementInfo["binds"]): SqlStatementInfo {
	const fields: Partial<SqlStatementInfo> = { tables: Object.freeze(tables) as unknown as string[] };
	if (escapes) fields.escapes = Object.freeze(escapes) as unknown as string[];
	if (binds) fields.binds = deepFreeze(binds);
	return derived(info, fields);
}

/**
 * A copy of `info` with other fields (and without those in `omit`), keeping its parse tree and cache
 * identity: EXECUTE resolved to its body still has its own parameters (`statementTree`).
 */
export function withFields(info: SqlStatementInfo, fields: Partial<SqlStatementInfo>, omit: (keyof SqlStatementInfo)[] = []): SqlStatementInfo {
	const out: Partial<SqlStatementInfo> = { ...info, ...fields };
	for (const k of omit) delete out[k];
	Object.defineProperty(out, ORIGIN, { value: originOf(info) });
	return Object.freeze(out) as SqlStatementInfo;
}

/** Identity of a statement for caches keyed by meaning: equal for statements sharing a template. */
export function statementCacheKey(info: SqlStatementInfo): string {
	return templateKeys.get(originOf(info)) ?? info.text;
}

function analyzeUncached(sql: string): SqlAnalysis {
	if (typeof sql !== "string") return Object.freeze({ ok: false, error: "statement text is not a string" });
	if (sql.includes("\0")) return Object.freeze({ ok: false, error: "statement contains a NUL byte" });
	// An empty (whitespace-only) query runs nothing: PostgreSQL answers EmptyQueryResponse.
	if (sql.trim() === "") return Object.freeze({ ok: true, statements: Object.freeze([]) as unknown as SqlStatementInfo[] });
	let parsed: { stmts?: { stmt?: PgNode; stmt_location?: number; stmt_len?: number }[] };
	try {
		parsed = parseSync(sql) as typeof parsed;
	} catch (err) {
		const details = (err as { sqlDetails?: { message?: string; cursorPosition?: number } }).sqlDetails;
		const message = details?.message ?? (err instanceof Error ? err.message : String(err));
		const out: SqlAnalysis = { ok: false, error: message };
		if (typeof details?.cursorPosition === "number") out.position = details.cursorPosition;
		return Object.freeze(out);
	}
	try {
		const bytes = isAscii(sql) ? undefined : Buffer.from(sql, "utf8");
		const statements: SqlStatementInfo[] = [];
		for (const raw of parsed.stmts ?? []) {
			if (!raw.stmt) continue;
			const start = raw.stmt_location ?? 0;
			const text = sliceText(sql, bytes, start, raw.stmt_len);
			statements.push(classifyStatement(raw.stmt, text));
		}
		return deepFreeze({ ok: true, statements });
	} catch (err) {
		// Deny by default: a tree we cannot walk (too deep, unexpected shape) is not passed.
		return Object.freeze({ ok: false, error: `cannot classify statement: ${(err as Error).message}` });
	}
}

function isAscii(s: string): boolean {
	for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) > 0x7f) return false;
	return true;
}

/** libpg-query locations are byte offsets into the UTF-8 text. */
function sliceText(sql: string, bytes: Buffer | undefined, start: number, len: number | undefined): string {
	if (!bytes) return (len === undefined ? sql.slice(start) : sql.slice(start, start + len)).trim();
	const end = len === undefined ? bytes.length : start + len;
	return bytes.subarray(start, end).toString("utf8").trim();
}

function deepFreeze<T>(value: T): T {
	if (value && typeof value === "object" && !Object.isFrozen(value)) {
		Object.freeze(value);
		for (const v of Object.values(value as object)) deepFreeze(v);
	}
	return value;
}

// ---------------------------------------------------------------------------------------------
// Classification

/** Accumulates what one top-level statement contains, nested statements included. */
class Collector {
	readonly kinds: string[] = [];
	readonly tables = new Set<string>();
	readonly functions = new Set<string>();
	/** Names that may be function calls in field notation (SqlStatementInfo.fieldCalls). */
	readonly fieldCalls = new Set<string>();
	/** Relations a RENAME/SET SCHEMA/DETACH PARTITION/NO INHERIT takes a name or rows away from. */
	readonly escapes = new Set<string>();
	/** Schemas an ALTER SCHEMA ... RENAME takes away from their name. */
	readonly schemaEscapes = new Set<string>();
	/** Writes bound for later on named relations (SqlStatementInfo.binds). */
	readonly binds: { kinds: string[]; tables: string[] }[] = [];
	/** Relations and routines the statement gives a name to (SqlStatementInfo.creates, createsRoutines). */
	readonly creates = new Set<string>();
	readonly createsRoutines = new Set<string>();
	/** Kinds of what a cascading / schema-wide / owned-by statement may do to relations it does not name. */
	readonly reach = new Set<string>();
	readonly risks: SqlRisk[] = [];
	/** UPDATE/DELETE/MERGE seen, and whether any lacked a (non-constant) WHERE. */
	sawFiltered = false;
	missingWhere = false;
	depth = 0;

	kind(k: string): void {
		if (!this.kinds.includes(k)) this.kinds.push(k);
	}
	risk(kind: SqlRiskKind, detail: string): void {
		if (!this.risks.some((r) => r.kind === kind && r.detail === detail)) this.risks.push({ kind, detail });
	}
}

const MAX_DEPTH = 5000;

const LATER_WRITES = ["INSERT", "UPDATE", "DELETE", "MERGE"];
/** ALTER TABLE subcommands that switch what later writes to the table run through. */
const INTERCEPTOR_SWITCHES: ReadonlySet<string> = new Set([
	"AT_EnableRowSecurity",
	"AT_DisableRowSecurity",
	"AT_ForceRowSecurity",
	"AT_NoForceRowSecurity",
	"AT_EnableTrig",
	"AT_EnableAlwaysTrig",
	"AT_EnableReplicaTrig",
	"AT_DisableTrig",
	"AT_EnableTrigAll",
	"AT_DisableTrigAll",
	"AT_EnableTrigUser",
	"AT_DisableTrigUser",
	"AT_EnableRule",
	"AT_EnableAlwaysRule",
	"AT_EnableReplicaRule",
	"AT_DisableRule",
]);
/** Writes that take a value from a sequence (a column DEFAULT or identity drawing from it). */
const SEQUENCE_WRITES = ["INSERT", "UPDATE", "MERGE"];
/**
 * ALTER TABLE subcommands that change which later writes succeed: a constraint added (`CHECK (false)
 * NOT VALID` fails every later INSERT and UPDATE), dropped or made deferrable, NOT NULL set or
 * dropped, a generated column turned into a plain one (later writes may set it).
 */
const CONSTRAINT_CHANGES: ReadonlySet<string> = new Set([
	"AT_AddConstraint",
	"AT_AddIndexConstraint",
	"AT_DropConstraint",
	"AT_AlterConstraint",
	"AT_SetNotNull",
	"AT_DropNotNull",
	"AT_DropExpression",
]);
/** ALTER TABLE subcommands that change the value later writes give a column they do not name. */
const DEFAULT_CHANGES: ReadonlySet<string> = new Set(["AT_ColumnDefault", "AT_CookedColumnDefault", "AT_AddIdentity", "AT_SetIdentity", "AT_DropIdentity"]);
const POLICY_COMMANDS: Record<string, string[]> = {
	all: LATER_WRITES,
	insert: ["INSERT", "MERGE"],
	update: ["UPDATE", "MERGE"],
	delete: ["DELETE", "MERGE"],
	// UPDATE and DELETE see only the rows SELECT policies let them read
	select: ["UPDATE", "DELETE", "MERGE"],
};

/**
 * Row-level security, and switching or dropping a table's rules and triggers, decide what later
 * writes to the table do, like a DO INSTEAD rule: `ALTER TABLE accounts FORCE ROW LEVEL SECURITY`
 * (no policy: the owner's writes match no row), a restrictive policy `USING (false)`, dropping a
 * DBA's soft-delete rule (`ON DELETE DO INSTEAD UPDATE ... SET deleted = true`: the application's
 * deletes become real), disabling or enabling a trigger. They bind those writes on the table.
 */
function interceptors(type: string, b: PgNode, c: Collector): void {
	if ((type === "CreatePolicyStmt" || type === "AlterPolicyStmt") && b.table && typeof b.table === "object") {
		const kinds = POLICY_COMMANDS[String(b.cmd_name ?? "all")] ?? LATER_WRITES;
		c.binds.push({ kinds, tables: [rangeVarName(b.table as PgNode)] });
	}
	if (type === "AlterTableStmt" && b.relation && typeof b.relation === "object" && Array.isArray(b.cmds)) {
		const subtypes = b.cmds.map((cmd) => String(unwrap(cmd)?.[1]?.subtype ?? ""));
		if (subtypes.some((t) => INTERCEPTOR_SWITCHES.has(t))) c.binds.push({ kinds: LATER_WRITES, tables: [rangeVarName(b.relation as PgNode)] });
		// An unlogged table is emptied by the next crash recovery and is empty on every standby (its
		// rows are not in the WAL): a TRUNCATE waiting for a failover (red-team round 9,
		// test/postgres/issue-unlogged-truncation.test.ts).
		if (subtypes.includes("AT_SetUnLogged")) c.binds.push({ kinds: ["TRUNCATE", "DELETE"], tables: [rangeVarName(b.relation as PgNode)] });
		// a column's default or identity is the value later INSERTs (and UPDATE ... SET c = DEFAULT)
		// write where they name none: `SET DEFAULT true` on members.deleted hid every new member
		if (subtypes.some((t) => DEFAULT_CHANGES.has(t))) c.binds.push({ kinds: ["INSERT", "UPDATE", "MERGE"], tables: [rangeVarName(b.relation as PgNode)] });
		// which later writes succeed: `ADD CONSTRAINT ... CHECK (false) NOT VALID` made every INSERT
		// and UPDATE of the application fail, `DROP CONSTRAINT balance_nonneg` let negative balances
		// in (red-team round 10, test/postgres/issue-constraint-changes.test.ts)
		if (subtypes.some((t) => CONSTRAINT_CHANGES.has(t))) c.binds.push({ kinds: ["INSERT", "UPDATE", "MERGE"], tables: [rangeVarName(b.relation as PgNode)] });
	}
	// A sequence is the value later INSERTs write in the columns whose default draws from it: `ALTER
	// SEQUENCE accounts_id_seq RESTART` (or INCREMENT, MAXVALUE, AS smallint...) makes them collide
	// with existing rows or fail, like a changed DEFAULT (red-team round 10,
	// test/postgres/issue-sequence-writes.test.ts). The catalog leads from the sequence to its tables
	// (RelationInfo.users).
	if (type === "AlterSeqStmt" && b.sequence && typeof b.sequence === "object") c.binds.push({ kinds: SEQUENCE_WRITES, tables: [rangeVarName(b.sequence as PgNode)] });
	if (type === "DropStmt" && ["OBJECT_RULE", "OBJECT_TRIGGER", "OBJECT_POLICY"].includes(String(b.removeType)) && Array.isArray(b.objects)) {
		const tables = b.objects.flatMap((o) => {
			const parts = names((unwrap(o)?.[1] as PgNode | undefined)?.items);
			return parts.length >= 2 ? [parts.slice(0, -1).join(".")] : [];
		});
		if (tables.length > 0) c.binds.push({ kinds: LATER_WRITES, tables });
	}
}

/**
 * Handing an object to another role is a privilege change: the new owner holds every privilege on it,
 * may grant them, alter or drop it, and (for a table) reads past row security; a schema's owner may
 * drop every object in it. `GRANT` is `privilege` (admin grants only), but `ALTER TABLE accounts
 * OWNER TO reporting` and `ALTER SCHEMA public OWNER TO reporting` were plain writes for a read-write
 * grant (red-team round 10, test/postgres/issue-owner-change.test.ts). Owning it oneself
 * (`CURRENT_USER`, `CURRENT_ROLE`, `SESSION_USER`) hands nothing to another role.
 */
function ownerChange(type: string, b: PgNode, c: Collector): void {
	const other = (role: unknown): boolean => {
		const r = role as PgNode | undefined;
		return r !== undefined && !["ROLESPEC_CURRENT_USER", "ROLESPEC_CURRENT_ROLE", "ROLESPEC_SESSION_USER"].includes(String(r.roletype));
	};
	const owners: unknown[] = [];
	if (type === "AlterOwnerStmt") owners.push(b.newowner);
	if (type === "CreateSchemaStmt") owners.push(b.authrole);
	if (type === "AlterTableStmt" && Array.isArray(b.cmds)) {
		for (const cmd of b.cmds) {
			const u = unwrap(cmd)?.[1];
			if (u?.subtype === "AT_ChangeOwner") owners.push(u.newowner);
		}
	}
	if (owners.some(other)) c.risk("privilege", "OWNER TO (or AUTHORIZATION) hands every privilege on the object to another role");
}

const ROUTINE_OBJECTS = new Set(["OBJECT_FUNCTION", "OBJECT_PROCEDURE", "OBJECT_ROUTINE", "OBJECT_AGGREGATE"]);

/**
 * Names a statement gives to a relation or a routine (created, renamed to, moved into a schema): a
 * name another relation or routine already has, in another schema or as another overload, may
 * capture what other sessions' SQL finds by that name (the application's role's "$user" schema, a
 * search_path set for it, a better-matching argument type). `withBaseTables` asks the catalog
 * (red-team round 10, test/postgres/issue-look-alike-names.test.ts).
 */
function nameTakers(type: string, b: PgNode, c: Collector): void {
	const rel = (rv: unknown): void => {
		// a temporary relation is found first in the creating session only
		if (rv && typeof rv === "object" && typeof (rv as PgNode).relname === "string" && (rv as PgNode).relpersistence !== "t") c.creates.add(rangeVarName(rv as PgNode));
	};
	if (type === "CreateStmt") rel(b.relation);
	if (type === "CreateForeignTableStmt") rel((b.base as PgNode | undefined)?.relation);
	if (type === "ViewStmt") rel(b.view);
	if (type === "CreateSeqStmt") rel(b.sequence);
	if (type === "CreateTableAsStmt") rel((b.into as PgNode | undefined)?.rel);
	if (type === "SelectStmt" && b.intoClause) rel((b.intoClause as PgNode).rel);
	const r = b.relation as PgNode | undefined;
	if (type === "RenameStmt" && NAMED_RELATIONS.has(String(b.renameType)) && r && typeof b.newname === "string") {
		c.creates.add(typeof r.schemaname === "string" ? `${r.schemaname}.${b.newname}` : b.newname);
	}
	if (type === "AlterObjectSchemaStmt" && NAMED_RELATIONS.has(String(b.objectType)) && r && typeof b.newschema === "string") {
		c.creates.add(`${b.newschema}.${String(r.relname)}`);
	}
	if (type === "CreateFunctionStmt") {
		const n = names(b.funcname);
		if (n.length > 0) c.createsRoutines.add(n.join(".").toLowerCase());
	}
	if (type === "DefineStmt" && b.kind === "OBJECT_AGGREGATE") {
		const n = names(b.defnames);
		if (n.length > 0) c.createsRoutines.add(n.join(".").toLowerCase());
	}
	const objname = names(((b.object as { ObjectWithArgs?: PgNode } | undefined)?.ObjectWithArgs ?? (b.object as PgNode | undefined))?.objname);
	if (type === "RenameStmt" && ROUTINE_OBJECTS.has(String(b.renameType)) && typeof b.newname === "string") {
		c.createsRoutines.add([...objname.slice(0, -1), b.newname].join(".").toLowerCase());
	}
	if (type === "AlterObjectSchemaStmt" && ROUTINE_OBJECTS.has(String(b.objectType)) && typeof b.newschema === "string" && objname.length > 0) {
		c.createsRoutines.add(`${b.newschema}.${objname[objname.length - 1]}`.toLowerCase());
	}
}

/** A rule's event as a statement kind (RuleStmt.event). */
const RULE_EVENTS: Record<string, string> = { CMD_INSERT: "INSERT", CMD_UPDATE: "UPDATE", CMD_DELETE: "DELETE" };
/** CreateTrigStmt.timing and .events bits (PostgreSQL's TRIGGER_TYPE_*). */
const TRIGGER_BEFORE = 1 << 1;
const TRIGGER_INSTEAD = 1 << 6;
const TRIGGER_EVENTS: readonly [number, string][] = [
	[1 << 2, "INSERT"],
	[1 << 3, "DELETE"],
	[1 << 4, "UPDATE"],
];

function classifyStatement(stmt: PgNode, text: string): SqlStatementInfo {
	const c = new Collector();
	const extra: Partial<SqlStatementInfo> = {};
	const kind = visitStatement(stmt, c, text, extra, true);
	// Expressions a definition evaluates over a relation's rows (a CHECK constraint validated now, an
	// index or generated-column expression, a policy, extended statistics) hand every row to the
	// functions and operators they use: `ALTER TABLE secrets ADD CONSTRAINT c CHECK (leak(secret))`,
	// leak a SQL function inserting its argument into scratch, copied every secret under a rule on
	// SELECT of secrets (red-team round 8, test/postgres/issue-reads-by-binding.test.ts). Such a
	// definition with an expression over columns reads its relation (an operator or cast the agent
	// defined can be the function: any expression counts).
	const top = unwrap(stmt)?.[0];
	if (top !== undefined && ROW_EXPRESSION_DEFINITIONS.has(top) && hasColumnRef(stmt)) c.kind("SELECT");
	const info: SqlStatementInfo = {
		kind,
		kinds: [kind, ...c.kinds.filter((k) => k !== kind)],
		readOnly: c.risks.length === 0,
		tables: [...c.tables],
		functions: [...c.functions],
		text,
		risks: c.risks,
		...extra,
	};
	if (c.sawFiltered) info.hasWhere = !c.missingWhere;
	if (c.escapes.size > 0) info.escapes = [...c.escapes];
	if (c.schemaEscapes.size > 0) info.schemaEscapes = [...c.schemaEscapes];
	if (c.reach.size > 0) info.unnamedReach = [...c.reach];
	if (c.fieldCalls.size > 0) info.fieldCalls = [...c.fieldCalls];
	if (c.binds.length > 0) info.binds = c.binds;
	if (c.creates.size > 0) info.creates = [...c.creates];
	if (c.createsRoutines.size > 0) info.createsRoutines = [...c.createsRoutines];
	trees.set(info, stmt);
	return info;
}

/** Whether a parse tree holds a column reference anywhere (iterative: trees may be deep). */
function hasColumnRef(tree: unknown): boolean {
	const stack: unknown[] = [tree];
	while (stack.length > 0) {
		const n = stack.pop();
		if (!n || typeof n !== "object") continue;
		if (Array.isArray(n)) {
			for (const x of n) stack.push(x);
			continue;
		}
		if ("ColumnRef" in n) return true;
		for (const v of Object.values(n)) if (v && typeof v === "object") stack.push(v);
	}
	return false;
}

/** Definitions whose expressions PostgreSQL evaluates over their relation's rows (see classifyStatement). */
const ROW_EXPRESSION_DEFINITIONS: ReadonlySet<string> = new Set(["AlterTableStmt", "IndexStmt", "CreatePolicyStmt", "AlterPolicyStmt", "CreateStatsStmt"]);

/** Classifies a nested statement body (PREPARE, DECLARE) as its own SqlStatementInfo. */
const bodyInfo = classifyStatement;

/** The single `{ Type: body }` entry of a wrapped node. */
function unwrap(node: unknown): [string, PgNode] | undefined {
	if (!node || typeof node !== "object" || Array.isArray(node)) return undefined;
	const keys = Object.keys(node);
	if (keys.length !== 1) return undefined;
	const key = keys[0]!;
	const first = key.charCodeAt(0);
	if (first < 65 || first > 90) return undefined; // node type names start upper-case
	const body = (node as PgNode)[key];
	if (!body || typeof body !== "object") return undefined;
	return [key, body as PgNode];
}

function str(node: unknown): string | undefined {
	const u = unwrap(node);
	if (u && u[0] === "String") return u[1].sval as string | undefined;
	return undefined;
}

function names(list: unknown): string[] {
	if (!Array.isArray(list)) return [];
	const out: string[] = [];
	for (const item of list) {
		const s = str(item);
		if (s !== undefined) out.push(s);
	}
	return out;
}

/** Constant boolean/integer/string of an A_Const (missing fields mean 0/false/""). */
function constValue(node: unknown): string | number | boolean | undefined {
	const b = (node as { A_Const?: PgNode } | undefined)?.A_Const;
	if (!b || b.isnull) return undefined;
	if ("ival" in b) return ((b.ival as { ival?: number }).ival ?? 0) as number;
	if ("boolval" in b) return ((b.boolval as { boolval?: boolean }).boolval ?? false) as boolean;
	if ("sval" in b) return ((b.sval as { sval?: string }).sval ?? "") as string;
	if ("fval" in b) return (b.fval as { fval?: string }).fval ?? "0";
	return undefined;
}

/** Value of a DefElem argument: `true`, `false`, `0`, `'off'` (String, Integer, Boolean or A_Const). */
function defArgValue(arg: unknown): string | number | boolean | undefined {
	const u = unwrap(arg);
	if (!u) return undefined;
	if (u[0] === "String") return String(u[1].sval ?? "");
	if (u[0] === "Integer") return Number(u[1].ival ?? 0);
	if (u[0] === "Boolean") return u[1].boolval === true;
	return constValue(arg);
}

function truthySetting(v: string | number | boolean | undefined): boolean | undefined {
	if (v === undefined) return undefined;
	if (typeof v === "boolean") return v;
	if (typeof v === "number") return v !== 0;
	const s = v.toLowerCase();
	if (["on", "true", "yes", "1", "t", "y"].includes(s)) return true;
	if (["off", "false", "no", "0", "f", "n"].includes(s)) return false;
	return undefined;
}

function defElems(list: unknown): { name: string; arg: unknown }[] {
	if (!Array.isArray(list)) return [];
	const out: { name: string; arg: unknown }[] = [];
	for (const item of list) {
		const u = unwrap(item);
		if (u && u[0] === "DefElem") out.push({ name: String(u[1].defname ?? ""), arg: u[1].arg });
	}
	return out;
}

/** System views that read configuration files (pg_hba.conf, pg_ident.conf, postgresql.conf). */
const FILE_VIEWS = new Set(["pg_hba_file_rules", "pg_ident_file_mappings", "pg_file_settings"]);

/**
 * Catalogs holding credentials a superuser upstream session can read: role password verifiers
 * (`pg_authid`, `pg_shadow`), user mapping options (postgres_fdw/dblink passwords in plain text:
 * `pg_user_mapping`, `pg_user_mappings`) and subscription connection strings (`pg_subscription`).
 * A read-only grant read the SCRAM verifier of the gateway's own backend role and an FDW password.
 */
const CREDENTIAL_CATALOGS = new Set(["pg_authid", "pg_shadow", "pg_user_mapping", "pg_user_mappings", "pg_subscription"]);

/**
 * The planner's statistics: sample values of every analysed column of every table (most common
 * values, histogram bounds, extended statistics' value combinations). Under a rule on SELECT of
 * secrets, `SELECT most_common_vals::text FROM pg_stats WHERE tablename = 'secrets'` read the
 * secrets back without naming them (red-team round 8, test/postgres/issue-reads-through-statistics.test.ts).
 */
const STATISTICS_CATALOGS = new Set(["pg_stats", "pg_statistic", "pg_stats_ext", "pg_stats_ext_exprs", "pg_statistic_ext_data"]);

/** Risks of reading the relation `schema.name` itself (configuration files, credentials, statistics). */
function relationRisk(schema: string | undefined, name: string, c: Collector): void {
	if (schema !== undefined && schema !== "pg_catalog") return;
	if (FILE_VIEWS.has(name)) c.risk("server-access", `${name} reads server configuration files`);
	if (CREDENTIAL_CATALOGS.has(name)) c.risk("server-access", `${name} holds credentials (password verifiers, connection passwords)`);
	// values of any table: rules naming tables meet it as a read of every table
	if (STATISTICS_CATALOGS.has(name)) reaches(c, ["SELECT"]);
}

/**
 * True when a relation written to is (or, unqualified, may resolve to) a system catalog: `pg_catalog`
 * is searched before the search_path, so `pg_proc` is `pg_catalog.pg_proc`. A superuser upstream
 * session may INSERT/UPDATE/DELETE catalogs: renaming `pg_read_file` in `pg_proc` read a server file
 * through a harmless-looking call, and `UPDATE pg_settings` ran set_config on any setting. Names
 * starting with `pg_` are reserved for the system, so a user relation matching is rare (conservative).
 */
function isCatalogRelation(rv: unknown): boolean {
	const u = unwrap(rv);
	const r = u && u[0] === "RangeVar" ? u[1] : (rv as PgNode | undefined);
	if (!r || typeof r.relname !== "string") return false;
	const schema = typeof r.schemaname === "string" ? r.schemaname : undefined;
	if (schema !== undefined) return schema === "pg_catalog" || schema === "information_schema";
	return r.relname.startsWith("pg_");
}

function rangeVarName(rv: PgNode): string {
	const parts: string[] = [];
	if (typeof rv.catalogname === "string") parts.push(rv.catalogname);
	if (typeof rv.schemaname === "string") parts.push(rv.schemaname);
	parts.push(String(rv.relname));
	return parts.join(".");
}

/** True when a WHERE/ON expression references no column (`WHERE true`, `WHERE 1=1`): not a filter. */
function isConstantCondition(node: unknown): boolean {
	let sawColumn = false;
	const walk = (n: unknown, depth: number): void => {
		if (sawColumn || depth > MAX_DEPTH) return;
		if (Array.isArray(n)) {
			for (const x of n) walk(x, depth + 1);
			return;
		}
		if (!n || typeof n !== "object") return;
		for (const [k, v] of Object.entries(n)) {
			if (k === "ColumnRef" || k === "SubLink" || k === "FuncCall" || k === "ParamRef" || k === "CurrentOfExpr") {
				sawColumn = true;
				return;
			}
			walk(v, depth + 1);
		}
	};
	walk(node, 0);
	return !sawColumn;
}

/**
 * The names a write's target rows are referred to by in its WHERE/ON: its alias, else its name as
 * written and unqualified (`accounts`, `public.accounts`).
 */
function targetNames(rv: unknown): Set<string> {
	const r = rv as PgNode | undefined;
	const alias = (r?.alias as PgNode | undefined)?.aliasname;
	if (typeof alias === "string") return new Set([alias]);
	if (!r || typeof r.relname !== "string") return new Set();
	return new Set([r.relname, rangeVarName(r)]);
}

/**
 * Whether a condition may read a column of the write's target (`names`): a column qualified with
 * the target's name or alias, an unqualified column (the target's or another relation's: not
 * known without the catalog, so taken as the target's), the whole row, or `WHERE CURRENT OF`.
 * Subqueries and function arguments are looked into; a parameter, a function of constants or a
 * subquery naming no such column is the same for every row.
 */
function readsTarget(node: unknown, target: ReadonlySet<string>): boolean {
	const stack: unknown[] = [node];
	let steps = 0;
	while (stack.length > 0) {
		// a tree too large to walk is taken as reading the target (the statement counts as filtered, as before)
		if (++steps > 100_000) return true;
		const n = stack.pop();
		if (!n || typeof n !== "object") continue;
		if (Array.isArray(n)) {
			for (const x of n) stack.push(x);
			continue;
		}
		if ("CurrentOfExpr" in n) return true;
		const ref = (n as { ColumnRef?: PgNode }).ColumnRef;
		if (ref) {
			const fields = Array.isArray(ref.fields) ? (ref.fields as unknown[]) : [];
			const parts = fields.map((f) => str(f) ?? "*");
			// `id`, `t` (a whole row or a column), `t.id`, `t.*`, `public.t.id`, `db.public.t.id`
			if (parts.length <= 1) return true;
			const qualifier = parts.slice(0, -1).join(".");
			if (target.has(qualifier) || target.has(parts[parts.length - 2]!)) return true;
			continue;
		}
		for (const v of Object.values(n)) if (v && typeof v === "object") stack.push(v);
	}
	return false;
}

/** A node without its `location` fields, for comparing two expressions as written. */
function shape(node: unknown): string {
	return JSON.stringify(node, (k, v) => (k === "location" ? undefined : v));
}

/**
 * True when a WHERE/ON condition does not filter the write's target rows (decision recorded in
 * README, "without WHERE"): one that reads no column of the target (`WHERE true`, `WHERE 1 = 1`,
 * `WHERE (SELECT true)`, `WHERE now() IS NOT NULL`, `WHERE $1`, `UPDATE t ... FROM u WHERE u.id = 1`:
 * the same answer for every row, so every row or none), an OR with such an arm (`WHERE id = 5 OR
 * 1 = 1`, the classic injected tautology) or with complementary arms (`x IS NULL OR x IS NOT NULL`,
 * `p OR NOT p`), an AND of such arms, or a column compared with itself (`WHERE id = id`, `ON a.id =
 * a.id`: every row whose value is not NULL). Conditions on the target's columns that happen to hold
 * for every row (`WHERE id > 0`, `WHERE id IS NOT NULL`) still count as filtered: `withoutWhere`
 * guards against forgotten or vacuous filters, not against a writer set on touching every row (use
 * a table rule on the statement kind for that).
 */
function isUnfiltered(node: unknown, target: ReadonlySet<string>, depth = 0): boolean {
	if (depth > 64) return false;
	if (isConstantCondition(node) || !readsTarget(node, target)) return true;
	const be = (node as { BoolExpr?: PgNode } | undefined)?.BoolExpr;
	const args = Array.isArray(be?.args) ? (be.args as unknown[]) : [];
	if (be?.boolop === "OR_EXPR") return args.some((a) => isUnfiltered(a, target, depth + 1)) || hasComplements(args);
	if (be?.boolop === "AND_EXPR") return args.length > 0 && args.every((a) => isUnfiltered(a, target, depth + 1));
	const ex = (node as { A_Expr?: PgNode } | undefined)?.A_Expr;
	if (ex && (ex.kind === "AEXPR_OP" || ex.kind === "AEXPR_NOT_DISTINCT")) {
		const op = ex.kind === "AEXPR_NOT_DISTINCT" ? "=" : names(ex.name).join(".");
		if (["=", "<=", ">=", "pg_catalog.=", "pg_catalog.<=", "pg_catalog.>="].includes(op)) {
			const l = (ex.lexpr as { ColumnRef?: PgNode } | undefined)?.ColumnRef;
			const r = (ex.rexpr as { ColumnRef?: PgNode } | undefined)?.ColumnRef;
			if (l && r && names(l.fields).join(".") === names(r.fields).join(".") && names(l.fields).length > 0) return true;
		}
	}
	return false;
}

/**
 * Arms of an OR of which one holds whenever another does not: `e IS NULL` with `e IS NOT NULL`, and
 * `p` with `NOT p` (with `p` NULL both are NULL; such rows are few and the writer meant every row).
 */
function hasComplements(args: readonly unknown[]): boolean {
	const seen = new Set<string>();
	for (const a of args) {
		const nt = (a as { NullTest?: PgNode } | undefined)?.NullTest;
		if (nt) {
			const arg = shape(nt.arg);
			seen.add(`${nt.nulltesttype === "IS_NULL" ? "null" : "notnull"}:${arg}`);
			if (seen.has(`${nt.nulltesttype === "IS_NULL" ? "notnull" : "null"}:${arg}`)) return true;
			continue;
		}
		const be = (a as { BoolExpr?: PgNode } | undefined)?.BoolExpr;
		const negated = be?.boolop === "NOT_EXPR" && Array.isArray(be.args) && be.args.length === 1;
		const body = shape(negated ? (be.args as unknown[])[0] : a);
		seen.add(`${negated ? "not" : "is"}:${body}`);
		if (seen.has(`${negated ? "is" : "not"}:${body}`)) return true;
	}
	return false;
}

const DROP_TABLE_LIKE = new Set([
	"OBJECT_TABLE",
	"OBJECT_VIEW",
	"OBJECT_MATVIEW",
	"OBJECT_INDEX",
	"OBJECT_SEQUENCE",
	"OBJECT_FOREIGN_TABLE",
]);

/** `OBJECT_FOREIGN_TABLE` -> `FOREIGN TABLE`. */
function objectName(objtype: unknown): string {
	return String(objtype ?? "OBJECT_UNKNOWN")
		.replace(/^OBJECT_/, "")
		.replaceAll("_", " ");
}

/** `CreateForeignServerStmt` -> `CREATE FOREIGN SERVER` (fallback names for rarely used statements). */
function kindFromType(type: string): string {
	return type
		.replace(/Stmt$/, "")
		.replace(/([a-z])([A-Z])/g, "$1 $2")
		.toUpperCase();
}

const DDL_WRITE = new Set([
	"CreateStmt",
	"AlterTableStmt",
	"IndexStmt",
	"ViewStmt",
	"CreateFunctionStmt",
	"AlterFunctionStmt",
	"CreateSeqStmt",
	"AlterSeqStmt",
	"CreateSchemaStmt",
	"CreateDomainStmt",
	"AlterDomainStmt",
	"CompositeTypeStmt",
	"CreateEnumStmt",
	"AlterEnumStmt",
	"CreateRangeStmt",
	"DefineStmt",
	"CreateTrigStmt",
	"RuleStmt",
	"CreatePolicyStmt",
	"AlterPolicyStmt",
	"CommentStmt",
	"AlterObjectSchemaStmt",
	"AlterObjectDependsStmt",
	"AlterOwnerStmt",
	"CreateCastStmt",
	"CreateConversionStmt",
	"CreateOpClassStmt",
	"CreateOpFamilyStmt",
	"AlterOpFamilyStmt",
	"CreateStatsStmt",
	"AlterStatsStmt",
	"RefreshMatViewStmt",
	"ClusterStmt",
	"ReindexStmt",
	"VacuumStmt",
	"LockStmt",
	"AlterCollationStmt",
	"CreateTransformStmt",
	"AlterTypeStmt",
	"AlterOperatorStmt",
	"AlterTableMoveAllStmt",
	"AlterTSDictionaryStmt",
	"AlterTSConfigurationStmt",
	"CreateConversionStmt",
]);

/** dblink functions that send SQL text to a connection. */
const REMOTE_SQL_FUNCTIONS = new Set(["dblink", "dblink_exec", "dblink_send_query", "dblink_open"]);

/** Statements that point foreign tables somewhere the classifier cannot follow (see ForeignTable). */
const FOREIGN_REACH_STMTS = new Set(["ImportForeignSchemaStmt", "AlterForeignServerStmt"]);

const SYSTEM_STMTS = new Set([
	"AlterSystemStmt",
	"LoadStmt",
	"CreateExtensionStmt",
	"AlterExtensionStmt",
	"AlterExtensionContentsStmt",
	"CreatedbStmt",
	"DropdbStmt",
	"AlterDatabaseStmt",
	"AlterDatabaseSetStmt",
	"AlterDatabaseRefreshCollStmt",
	"CheckPointStmt",
	"CreateTableSpaceStmt",
	"DropTableSpaceStmt",
	"AlterTableSpaceOptionsStmt",
	"CreateEventTrigStmt",
	"AlterEventTrigStmt",
	"CreateFdwStmt",
	"AlterFdwStmt",
	"CreateForeignServerStmt",
	"AlterForeignServerStmt",
	"CreateUserMappingStmt",
	"AlterUserMappingStmt",
	"DropUserMappingStmt",
	"ImportForeignSchemaStmt",
	"CreateSubscriptionStmt",
	"AlterSubscriptionStmt",
	"DropSubscriptionStmt",
	"SecLabelStmt",
	"CreatePLangStmt",
	"CreateAmStmt",
	// Publications stream table data to other servers: server-wide, masking cannot follow.
	"CreatePublicationStmt",
	"AlterPublicationStmt",
]);

const PRIVILEGE_STMTS: Record<string, string> = {
	CreateRoleStmt: "CREATE ROLE",
	AlterRoleStmt: "ALTER ROLE",
	AlterRoleSetStmt: "ALTER ROLE",
	DropRoleStmt: "DROP ROLE",
	ReassignOwnedStmt: "REASSIGN OWNED",
	DropOwnedStmt: "DROP OWNED",
	AlterDefaultPrivilegesStmt: "ALTER DEFAULT PRIVILEGES",
};

/** Names for statement types whose node name does not spell the SQL. */
const KIND_NAMES: Record<string, string> = {
	CreateStmt: "CREATE TABLE",
	ViewStmt: "CREATE VIEW",
	RuleStmt: "CREATE RULE",
	IndexStmt: "CREATE INDEX",
	CreateTrigStmt: "CREATE TRIGGER",
	CreateSeqStmt: "CREATE SEQUENCE",
	AlterSeqStmt: "ALTER SEQUENCE",
	CreatedbStmt: "CREATE DATABASE",
	DropdbStmt: "DROP DATABASE",
	CreateSchemaStmt: "CREATE SCHEMA",
	CreatePLangStmt: "CREATE LANGUAGE",
	CreateForeignServerStmt: "CREATE SERVER",
	AlterForeignServerStmt: "ALTER SERVER",
	CreateFdwStmt: "CREATE FOREIGN DATA WRAPPER",
	AlterFdwStmt: "ALTER FOREIGN DATA WRAPPER",
	CreateTableSpaceStmt: "CREATE TABLESPACE",
	DropTableSpaceStmt: "DROP TABLESPACE",
	CheckPointStmt: "CHECKPOINT",
	CommentStmt: "COMMENT",
	SecLabelStmt: "SECURITY LABEL",
	CompositeTypeStmt: "CREATE TYPE",
	CreateEnumStmt: "CREATE TYPE",
	CreateRangeStmt: "CREATE TYPE",
	CreateEventTrigStmt: "CREATE EVENT TRIGGER",
	AlterEventTrigStmt: "ALTER EVENT TRIGGER",
	CreateStatsStmt: "CREATE STATISTICS",
	AlterStatsStmt: "ALTER STATISTICS",
	CreateAmStmt: "CREATE ACCESS METHOD",
	CreateOpClassStmt: "CREATE OPERATOR CLASS",
	CreateOpFamilyStmt: "CREATE OPERATOR FAMILY",
	AlterOpFamilyStmt: "ALTER OPERATOR FAMILY",
	RefreshMatViewStmt: "REFRESH MATERIALIZED VIEW",
	AlterObjectSchemaStmt: "ALTER SET SCHEMA",
	AlterOwnerStmt: "ALTER OWNER",
	AlterTSDictionaryStmt: "ALTER TEXT SEARCH DICTIONARY",
	AlterTSConfigurationStmt: "ALTER TEXT SEARCH CONFIGURATION",
	ImportForeignSchemaStmt: "IMPORT FOREIGN SCHEMA",
	AlterDatabaseSetStmt: "ALTER DATABASE",
	AlterDatabaseRefreshCollStmt: "ALTER DATABASE",
	AlterExtensionContentsStmt: "ALTER EXTENSION",
	AlterTableMoveAllStmt: "ALTER TABLE",
	AlterTableSpaceOptionsStmt: "ALTER TABLESPACE",
	CreateForeignTableStmt: "CREATE FOREIGN TABLE",
};

const TRANSACTION_KINDS: Record<string, string> = {
	TRANS_STMT_BEGIN: "BEGIN",
	TRANS_STMT_START: "START TRANSACTION",
	TRANS_STMT_COMMIT: "COMMIT",
	TRANS_STMT_ROLLBACK: "ROLLBACK",
	TRANS_STMT_SAVEPOINT: "SAVEPOINT",
	TRANS_STMT_RELEASE: "RELEASE",
	TRANS_STMT_ROLLBACK_TO: "ROLLBACK TO",
	TRANS_STMT_PREPARE: "PREPARE TRANSACTION",
	TRANS_STMT_COMMIT_PREPARED: "COMMIT PREPARED",
	TRANS_STMT_ROLLBACK_PREPARED: "ROLLBACK PREPARED",
};

/**
 * Classifies one statement node (top-level or nested), records its kinds and risks in `c`, walks
 * its children, and returns its own kind. `executes` is false under a plain EXPLAIN: the nested
 * statement is planned, not run, so its kinds are recorded but not its write risk.
 */
function visitStatement(
	node: PgNode,
	c: Collector,
	text: string,
	extra: Partial<SqlStatementInfo>,
	executes: boolean,
): string {
	const u = unwrap(node);
	if (!u) {
		c.risk("unknown", "statement node without a type");
		return "UNKNOWN";
	}
	const [type, b] = u;
	const write = (detail: string): void => {
		if (executes) c.risk("write", detail);
	};
	const catalogWrite = (verb: string): void => {
		const rels = type === "TruncateStmt" ? (Array.isArray(b.relations) ? b.relations : []) : [b.relation];
		for (const rel of rels) {
			if (executes && isCatalogRelation(rel)) {
				const r = unwrap(rel)?.[1] ?? (rel as PgNode);
				c.risk("system", `${verb} writes the system catalog ${rangeVarName(r)}`);
				// UPDATE pg_settings SET setting = 'off' WHERE name = 'standard_conforming_strings' is a set_config.
				if (r.relname === "pg_settings") c.risk("parser-state", `${verb} of pg_settings may change how the server reads SQL text`);
			}
		}
	};
	let kind: string;
	switch (type) {
		case "SelectStmt": {
			kind = "SELECT";
			if (b.intoClause) {
				kind = "SELECT INTO";
				c.kind("SELECT");
				c.kind("CREATE TABLE AS");
				c.kind("CREATE");
				write("SELECT INTO creates a table");
			}
			if (Array.isArray(b.lockingClause) && b.lockingClause.length > 0) {
				c.kind("SELECT");
				kind = "SELECT FOR UPDATE";
				write("row locks (FOR UPDATE/SHARE)");
			}
			if (Array.isArray(b.valuesLists) && !b.targetList) kind = "VALUES";
			break;
		}
		case "InsertStmt":
			kind = "INSERT";
			write("INSERT");
			catalogWrite(kind);
			readsRows(b, c);
			// ON CONFLICT DO UPDATE updates existing rows of the target: a rule on UPDATE of it applies.
			if ((b.onConflictClause as PgNode | undefined)?.action === "ONCONFLICT_UPDATE") {
				c.kind("UPDATE");
				c.sawFiltered = true;
				if (unboundedUpsert(b)) c.missingWhere = true;
			}
			break;
		case "UpdateStmt":
			kind = "UPDATE";
			write("UPDATE");
			catalogWrite(kind);
			readsRows(b, c);
			c.sawFiltered = true;
			if (!b.whereClause || isUnfiltered(b.whereClause, targetNames(b.relation))) c.missingWhere = true;
			break;
		case "DeleteStmt":
			kind = "DELETE";
			write("DELETE");
			catalogWrite(kind);
			readsRows(b, c);
			c.sawFiltered = true;
			if (!b.whereClause || isUnfiltered(b.whereClause, targetNames(b.relation))) c.missingWhere = true;
			break;
		case "MergeStmt":
			kind = "MERGE";
			write("MERGE");
			catalogWrite(kind);
			readsRows(b, c);
			c.sawFiltered = true;
			if (isUnfiltered(b.joinCondition, targetNames(b.relation)) || unmatchedBySource(b)) c.missingWhere = true;
			mergeActions(b, c);
			break;
		case "DropStmt": {
			const obj = objectName(b.removeType);
			kind = `DROP ${obj}`;
			c.kind("DROP");
			write(kind);
			if (DROP_TABLE_LIKE.has(String(b.removeType)) && Array.isArray(b.objects)) {
				for (const o of b.objects) {
					const u2 = unwrap(o);
					const parts = u2 && u2[0] === "List" ? names(u2[1].items) : [];
					if (parts.length > 0) c.tables.add(parts.join("."));
				}
			}
			// CASCADE drops whatever depends on the objects (columns typed with a dropped type or
			// view row type, tables of a dropped schema, foreign keys, defaults, views); an extension
			// takes its member objects (tables included) with it even without CASCADE.
			if (cascades(b) || b.removeType === "OBJECT_EXTENSION") reaches(c, DROP_REACH);
			break;
		}
		case "TruncateStmt":
			kind = "TRUNCATE";
			write("TRUNCATE");
			catalogWrite(kind);
			// "The same effect as an unqualified DELETE on each table" (PostgreSQL's documentation): a
			// rule on DELETE of ledger, or on DELETE without WHERE, met DELETE FROM ledger but not
			// TRUNCATE ledger.
			c.kind("DELETE");
			c.sawFiltered = true;
			c.missingWhere = true;
			// TRUNCATE ... CASCADE also empties every table with a foreign key to the named ones.
			if (cascades(b)) reaches(c, ["TRUNCATE", "DELETE"]);
			break;
		case "DropOwnedStmt":
			kind = "DROP OWNED";
			c.kind("DROP");
			c.risk("privilege", "DROP OWNED manages roles or privileges");
			reaches(c, DROP_REACH);
			break;
		case "ReassignOwnedStmt":
			kind = "REASSIGN OWNED";
			c.kind("REASSIGN");
			c.risk("privilege", "REASSIGN OWNED manages roles or privileges");
			// An owner change of every object the roles own, ruled tables included (ALTER TABLE ... OWNER TO).
			reaches(c, ["ALTER", "ALTER TABLE", "ALTER OWNER"]);
			break;
		case "AlterDomainStmt":
			kind = "ALTER DOMAIN";
			c.kind("ALTER");
			write(kind);
			if (cascades(b)) reaches(c, DROP_REACH);
			break;
		case "AlterSystemStmt":
			kind = "ALTER SYSTEM";
			c.kind("ALTER");
			c.risk("system", "ALTER SYSTEM changes server configuration");
			break;
		case "GrantStmt":
			kind = b.is_grant ? "GRANT" : "REVOKE";
			c.risk("privilege", `${kind} changes privileges`);
			break;
		case "GrantRoleStmt":
			kind = b.is_grant ? "GRANT" : "REVOKE";
			c.kind(`${kind} ROLE`);
			c.risk("privilege", `${kind} changes role membership`);
			break;
		case "CopyStmt": {
			kind = "COPY";
			const from = b.is_from === true;
			c.kind(from ? "COPY FROM" : "COPY TO");
			if (b.is_program) {
				c.kind("COPY PROGRAM");
				c.risk("server-access", "COPY ... PROGRAM runs a program on the database server");
				// A shell command can do anything (psql over the local socket: DROP TABLE): for admin
				// grants, which skip the line above, it meets every rule like other unseen code.
				c.risk("unknown", "COPY ... PROGRAM runs a program the classifier cannot see into");
			} else if (typeof b.filename === "string") {
				c.kind("COPY FILE");
				c.risk("server-access", `COPY ${from ? "FROM" : "TO"} a server file`);
				// a server file may be a table's data file: its rows (red-team round 8); written, it may
				// also be a configuration or a library (red-team round 9, like SERVER_FILE_WRITERS)
				if (from) reaches(c, ["SELECT"]);
				else c.risk("unknown", "COPY ... TO a server file: a table's data file, a configuration or a library, what it does is not seen");
			}
			// COPY accounts TO STDOUT reads every row: a rule on SELECT of accounts met
			// COPY (SELECT * FROM accounts) TO STDOUT but not this.
			if (!from && b.relation) c.kind("SELECT");
			if (from) {
				write("COPY FROM writes rows");
				catalogWrite("COPY FROM");
				// It inserts rows: COPY accounts FROM STDIN passed a rule blocking INSERT into accounts.
				c.kind("INSERT");
			}
			break;
		}
		case "DoStmt": {
			kind = "DO";
			c.risk("opaque-code", "DO runs procedural code the classifier cannot see into");
			const opts = defElems(b.args);
			const lang = (str(opts.find((d) => d.name === "language")?.arg) ?? "plpgsql").toLowerCase();
			const body = str(opts.find((d) => d.name === "as")?.arg);
			// Best effort: the static SQL inside a PL/pgSQL block is classified too, so rules on
			// functions, tables and kinds see it (dynamic EXECUTE strings stay invisible).
			if (lang === "plpgsql" && body !== undefined) visitPlpgsql(body, c, text, executes);
			else c.risk("unknown", `DO in language ${lang} cannot be classified`);
			break;
		}
		case "CallStmt":
			kind = "CALL";
			write("CALL runs a procedure the classifier cannot see into");
			break;
		case "VariableSetStmt":
			kind = classifySet(b, c);
			break;
		case "VariableShowStmt":
			kind = "SHOW";
			break;
		case "ConstraintsSetStmt":
			kind = "SET CONSTRAINTS";
			break;
		case "PrepareStmt": {
			kind = "PREPARE";
			const q = b.query as PgNode | undefined;
			if (q) {
				const body = bodyInfo(q, text);
				extra.prepared = { name: String(b.name ?? ""), statement: body };
			}
			break;
		}
		case "ExecuteStmt":
			kind = "EXECUTE";
			extra.uses = { type: "prepared", name: String(b.name ?? "") };
			c.risk("unknown", `EXECUTE ${String(b.name ?? "")}: prepared statement not resolved`);
			break;
		case "DeallocateStmt":
			kind = "DEALLOCATE";
			break;
		case "DeclareCursorStmt": {
			kind = "DECLARE";
			const q = b.query as PgNode | undefined;
			if (q) extra.cursor = { name: String(b.portalname ?? ""), statement: bodyInfo(q, text) };
			break;
		}
		case "FetchStmt":
			kind = b.ismove ? "MOVE" : "FETCH";
			extra.uses = { type: "cursor", name: String(b.portalname ?? "") };
			break;
		case "ClosePortalStmt":
			kind = "CLOSE";
			break;
		case "ListenStmt":
			kind = "LISTEN";
			break;
		case "UnlistenStmt":
			kind = "UNLISTEN";
			break;
		case "NotifyStmt":
			kind = "NOTIFY";
			write("NOTIFY sends a notification");
			break;
		case "DiscardStmt": {
			const target = String(b.target ?? "DISCARD_ALL").replace(/^DISCARD_/, "");
			kind = `DISCARD ${target}`;
			c.kind("DISCARD");
			if (target === "ALL") c.risk("read-only-escape", "DISCARD ALL resets session settings");
			break;
		}
		case "ExplainStmt": {
			let analyze = false;
			for (const d of defElems(b.options)) {
				if (d.name === "analyze") analyze = d.arg === undefined ? true : truthySetting(defArgValue(d.arg)) !== false;
			}
			kind = analyze ? "EXPLAIN ANALYZE" : "EXPLAIN";
			c.kind("EXPLAIN");
			c.kind(kind);
			if (b.query) visitStatement(b.query as PgNode, c, text, {}, executes && analyze);
			return kind;
		}
		case "TransactionStmt": {
			kind = TRANSACTION_KINDS[String(b.kind)] ?? "TRANSACTION";
			c.kind("TRANSACTION");
			for (const d of defElems(b.options)) {
				if (d.name === "transaction_read_only" && truthySetting(defArgValue(d.arg)) === false) {
					c.kind(`${kind} READ WRITE`);
					c.risk("read-only-escape", `${kind} READ WRITE`);
				}
			}
			if (kind === "PREPARE TRANSACTION" || kind === "COMMIT PREPARED" || kind === "ROLLBACK PREPARED") {
				write(`${kind} (two-phase commit)`);
			}
			break;
		}
		case "CreateTableAsStmt": {
			const mat = b.objtype === "OBJECT_MATVIEW";
			kind = mat ? "CREATE MATERIALIZED VIEW" : "CREATE TABLE AS";
			c.kind("CREATE");
			write(kind);
			break;
		}
		case "RenameStmt": {
			const obj = objectName(b.renameType);
			kind = `ALTER ${obj}`;
			c.kind("ALTER");
			c.kind("RENAME");
			if (obj === "ROLE") c.risk("privilege", "ALTER ROLE ... RENAME");
			else write(kind);
			// A relation renamed away from the name its rules use escapes them (see tables.ts), and so
			// does every table of a renamed schema.
			if (NAMED_RELATIONS.has(String(b.renameType)) && b.relation) c.escapes.add(rangeVarName(b.relation as PgNode));
			if (b.renameType === "OBJECT_SCHEMA" && typeof b.subname === "string") c.schemaEscapes.add(b.subname);
			break;
		}
		case "AlterObjectSchemaStmt": {
			kind = "ALTER SET SCHEMA";
			c.kind("ALTER");
			write(kind);
			if (NAMED_RELATIONS.has(String(b.objectType)) && b.relation) c.escapes.add(rangeVarName(b.relation as PgNode));
			break;
		}
		case "AlterTableStmt": {
			kind = `ALTER ${objectName(b.objtype)}`;
			c.kind("ALTER");
			write(kind);
			// A foreign table's options name what it reads: file_fdw's filename/program, a
			// postgres_fdw table's remote relation. ALTER TABLE ... OPTIONS works on them too.
			const generic = Array.isArray(b.cmds) && b.cmds.some((cmd) => /GenericOptions$/.test(String(unwrap(cmd)?.[1]?.subtype)));
			if (b.objtype === "OBJECT_FOREIGN_TABLE" || generic) {
				c.risk("server-access", `${kind} sets foreign-table options (server files, programs or connections)`);
				c.risk("unknown", `${kind} OPTIONS: what the foreign table reaches (a remote relation, a program) is not seen`);
			}
			hierarchyChanges(b, c);
			referentialActions(b, c);
			// DROP COLUMN|CONSTRAINT|ATTRIBUTE ... CASCADE drops dependent views, foreign keys of
			// other tables and columns typed with this relation's row type.
			if (Array.isArray(b.cmds) && b.cmds.some((cmd) => cascades(unwrap(cmd)?.[1]))) reaches(c, DROP_REACH);
			break;
		}
		case "CreateForeignTableStmt":
			// Over an existing file_fdw server, OPTIONS (filename '/etc/passwd') reads a server file
			// and OPTIONS (program 'id') runs a program; over postgres_fdw it opens connections.
			kind = "CREATE FOREIGN TABLE";
			c.kind("CREATE");
			c.risk("server-access", "CREATE FOREIGN TABLE reads server files, runs programs or connects through a foreign server");
			// Over a loopback postgres_fdw server, OPTIONS (table_name 'accounts') makes DELETE FROM ft
			// delete accounts under a name no table rule knows: for admin grants it meets every rule.
			c.risk("unknown", "CREATE FOREIGN TABLE: the relation or program it reaches is not seen");
			break;
		case "ViewStmt": {
			kind = "CREATE VIEW";
			c.kind("CREATE");
			write(kind);
			const base = updatableBase(b.query);
			if (base) c.binds.push({ kinds: ["INSERT", "UPDATE", "DELETE", "MERGE"], tables: [base] });
			// Replacing a view the application writes through sends its later writes elsewhere (or
			// nowhere), like a DO INSTEAD rule: `CREATE OR REPLACE VIEW account_balances AS SELECT id,
			// balance FROM scratch` took the application's updates away from accounts (red-team round
			// 10, test/postgres/issue-replaced-views.test.ts). Bound on the view itself, which the
			// catalog leads to what it reads now.
			if (b.replace === true && b.view && typeof b.view === "object") c.binds.push({ kinds: LATER_WRITES, tables: [rangeVarName(b.view as PgNode)] });
			break;
		}
		case "RuleStmt": {
			kind = "CREATE RULE";
			c.kind("CREATE");
			write(kind);
			// Up to PostgreSQL 15, an ON SELECT DO INSTEAD rule turns an empty table into a view: `CREATE
			// TABLE tv (...)`, `CREATE RULE "_RETURN" AS ON SELECT TO tv DO INSTEAD SELECT * FROM
			// accounts`, `DELETE FROM tv WHERE id > 0` deleted accounts. Bound like CREATE VIEW.
			const actions = Array.isArray(b.actions) ? b.actions : [];
			// Its actions see NEW/OLD, the rows written to (or read from) the relation: `CREATE RULE
			// leak AS ON UPDATE TO secrets DO ALSO INSERT INTO scratch VALUES (NEW.secret)` copied the
			// next rows written under a rule on SELECT of secrets (red-team round 8).
			if (actions.length > 0) c.kind("SELECT");
			const base = b.event === "CMD_SELECT" && actions.length === 1 ? updatableBase(actions[0]) : undefined;
			if (base) c.binds.push({ kinds: ["INSERT", "UPDATE", "DELETE", "MERGE"], tables: [base] });
			// replacing a view's own ON SELECT rule replaces the view (see ViewStmt)
			if (b.event === "CMD_SELECT" && b.replace === true && b.relation && typeof b.relation === "object") {
				c.binds.push({ kinds: LATER_WRITES, tables: [rangeVarName(b.relation as PgNode)] });
			}
			// A DO INSTEAD rule on INSERT/UPDATE/DELETE decides what every later such write to the
			// relation does (NOTHING drops them): `CREATE RULE freeze AS ON UPDATE TO accounts DO
			// INSTEAD NOTHING` passed a rule blocking UPDATE of accounts and the application's updates
			// silently did nothing (red-team round 9, test/postgres/issue-write-interception.test.ts).
			const event = RULE_EVENTS[String(b.event)];
			if (b.instead === true && event && b.relation && typeof b.relation === "object") {
				c.binds.push({ kinds: event === "UPDATE" ? ["UPDATE", "MERGE"] : [event, "MERGE"], tables: [rangeVarName(b.relation as PgNode)] });
			}
			break;
		}
		case "CreateFunctionStmt": {
			kind = b.is_procedure ? "CREATE PROCEDURE" : "CREATE FUNCTION";
			c.kind("CREATE");
			write(kind);
			visitFunctionBody(b, c, text);
			break;
		}
		default: {
			const privilege = PRIVILEGE_STMTS[type];
			kind = privilege ?? KIND_NAMES[type] ?? kindFromType(type);
			if (type === "VacuumStmt") kind = b.is_vacuumcmd ? "VACUUM" : "ANALYZE";
			if (type === "DefineStmt") kind = `CREATE ${objectName(b.kind)}`;
			c.kind(kind.split(" ")[0]!);
			if (privilege) c.risk("privilege", `${kind} manages roles or privileges`);
			else if (SYSTEM_STMTS.has(type)) c.risk("system", `${kind} changes server-wide state`);
			else if (DDL_WRITE.has(type)) write(kind);
			else c.risk("unknown", `statement type ${type} is not classified`);
			// a library's initialisation is C code run in the session (one an admin wrote with lo_export)
			if (type === "LoadStmt") c.risk("unknown", "LOAD runs a library's code, which the classifier cannot see");
			// IMPORT FOREIGN SCHEMA creates foreign tables over remote relations; ALTER SERVER ...
			// OPTIONS re-points existing ones (to a loopback, say): unseen reach, every rule.
			if (FOREIGN_REACH_STMTS.has(type)) c.risk("unknown", `${kind}: the relations its foreign tables reach are not seen`);
			// A subscription's worker writes to the local tables a publisher names (a loopback
			// publication of another database's `accounts`: its DELETEs deleted shop's accounts
			// under an admin grant's rule). What it will write is decided elsewhere: every rule.
			if (type === "CreateSubscriptionStmt" || type === "AlterSubscriptionStmt") {
				c.risk("unknown", `${kind}: a subscription writes to local tables with changes made elsewhere`);
			}
		}
	}
	// CREATE TABLE c () INHERITS (accounts) / PARTITION OF parted: rows inserted into c are the
	// parent's rows. Inside the creating transaction the catalog's connection cannot see c, so
	// `INSERT INTO c` met no rule on INSERT into the parent; bound here like ATTACH PARTITION/INHERIT.
	if ((type === "CreateStmt" || type === "CreateForeignTableStmt") && executes) {
		const base = type === "CreateStmt" ? b : ((b.base as PgNode | undefined) ?? {});
		const parents = (Array.isArray(base.inhRelations) ? base.inhRelations : [])
			.map((r) => unwrap(r)?.[1] ?? (r as PgNode))
			.filter((r) => typeof r.relname === "string")
			.map((r) => rangeVarName(r));
		if (parents.length > 0) c.binds.push({ kinds: ["INSERT"], tables: parents });
	}
	// A row trigger hands every row written to its table to its function, which may copy it anywhere
	// (a DBA's generic audit function writing row_to_json(NEW) into a log): under a rule on SELECT
	// of secrets, CREATE TRIGGER ... ON secrets FOR EACH ROW EXECUTE FUNCTION audit_row() leaked the
	// next rows written (red-team round 8, test/postgres/issue-reads-by-binding.test.ts).
	if (type === "CreateTrigStmt" && b.row === true) c.kind("SELECT");
	// A BEFORE row trigger returns the row to write (changed, or NULL: skipped) and an INSTEAD OF
	// trigger does the write itself: either decides what every later write of its events to the
	// relation does, like a DO INSTEAD rule (red-team round 9).
	if (type === "CreateTrigStmt" && b.row === true && b.relation && typeof b.relation === "object") {
		const timing = typeof b.timing === "number" ? b.timing : 0;
		const events = typeof b.events === "number" ? b.events : 0;
		if ((timing & (TRIGGER_BEFORE | TRIGGER_INSTEAD)) !== 0) {
			const kinds = TRIGGER_EVENTS.filter(([bit]) => (events & bit) !== 0).map(([, k]) => k);
			if (kinds.length > 0) c.binds.push({ kinds: [...kinds, "MERGE"], tables: [rangeVarName(b.relation as PgNode)] });
		}
	}
	interceptors(type, b, c);
	// Replacing a routine changes what every caller already bound to it does, on tables the statement
	// does not name: a trigger on it (`CREATE OR REPLACE FUNCTION touch() RETURNS trigger ...
	// NEW.balance := 0`, a DBA's BEFORE UPDATE trigger function on accounts, zeroed the application's
	// next updates: red-team round 9, test/postgres/issue-write-interception.test.ts), and just as
	// much a column DEFAULT, a generated column, a CHECK or a domain's CHECK calling it, or another
	// routine's body calling it by name (`CREATE OR REPLACE FUNCTION initial_balance() ... 'SELECT
	// 0'` changed what the application's INSERTs wrote; a CHECK's function replaced to return true let
	// every value in: red-team round 10, test/postgres/issue-replaced-routines.test.ts). Changing
	// how a routine runs (`ALTER FUNCTION ... STRICT`, `SET search_path = ...`, `SECURITY DEFINER`) does
	// the same. Where they are used is not known here: they reach every table with later writes.
	if ((type === "CreateFunctionStmt" && b.replace === true) || type === "AlterFunctionStmt" || (type === "DefineStmt" && b.replace === true)) {
		reaches(c, LATER_WRITES);
	}
	// a domain's default, NOT NULL and constraints (SET|DROP DEFAULT, SET|DROP NOT NULL, ADD|DROP
	// CONSTRAINT) decide what later writes to its columns give or may give, wherever it is used
	if (type === "AlterDomainStmt" && ["T", "N", "O", "C", "X"].includes(String(b.subtype))) reaches(c, ["INSERT", "UPDATE", "MERGE"]);
	// Renaming an enum value changes the value in every row of every column of that type (every
	// 'active' account reads 'closed'): an UPDATE without WHERE of tables the statement does not name
	// (red-team round 9, test/postgres/issue-enum-rename-writes.test.ts).
	if (type === "AlterEnumStmt" && typeof b.oldVal === "string") {
		c.kind("UPDATE");
		c.sawFiltered = true;
		c.missingWhere = true;
		reaches(c, ["UPDATE"]);
	}
	// refint's check_foreign_key(n, 'cascade', key..., table, column...) deletes or updates rows of
	// the tables named in the trigger's arguments when a row of the trigger's table goes or changes:
	// `CREATE TRIGGER ... ON scratch ... EXECUTE FUNCTION check_foreign_key(1, 'cascade', 'id',
	// 'accounts', 'id')`, then `DELETE FROM scratch WHERE id = 1`, deleted an account under a rule
	// blocking DELETE of accounts. Every argument may be such a table: bound like a cascading key.
	if (type === "CreateTrigStmt" && TABLE_WRITING_TRIGGERS.has(names(b.funcname).at(-1)?.toLowerCase() ?? "")) {
		const tables = names(b.args).flatMap((a) => {
			const n = relationNameText(a);
			return n ? [n] : [];
		});
		if (tables.length > 0) c.binds.push({ kinds: ["DELETE", "UPDATE"], tables });
	}
	// DROP / RENAME / OWNER TO / SET SCHEMA of an object that is server-wide (or, like an event
	// trigger or an extension, guards or serves the whole database): creating and altering them was
	// `system`, these were plain writes (`DROP EVENT TRIGGER guard_ddl`, `ALTER DATABASE other RENAME
	// TO x` under a read-write grant).
	// Superuser-only definitions the server trusts with raw memory: a cast WITHOUT FUNCTION
	// reinterprets the bytes of one type as another (`CREATE CAST (text AS jsonb) WITHOUT FUNCTION`,
	// then `SELECT 'abcdefgh'::text::jsonb -> 'x'` crashed the server, ending every session of every
	// application), as do a base type's I/O functions and storage and an operator class's support
	// functions. Like other server-wide state: reserved for admin grants.
	if (type === "CreateCastStmt" && b.func === undefined && b.inout !== true) c.risk("system", "CREATE CAST ... WITHOUT FUNCTION reinterprets memory (a wrong cast crashes the server)");
	if (type === "DefineStmt" && b.kind === "OBJECT_TYPE" && Array.isArray(b.definition)) c.risk("system", "a base type's I/O functions and storage are trusted by the server");
	// Likewise text search parsers and templates (their functions get the server's own structures:
	// `CREATE TEXT SEARCH TEMPLATE t (INIT = gtsvector_decompress, LEXIZE = dsimple_lexize)` then a
	// dictionary on it crashed the server), and aggregates whose state is `internal` (any function
	// taking and returning internal fits: `sfunc = int8_avg_accum, stype = internal, finalfunc =
	// string_agg_finalfn` crashed it at the first call). Red-team round 8,
	// test/postgres/issue-crash-by-definition.test.ts.
	// A publication streams its tables' rows (every table's, FOR ALL TABLES or a schema) to
	// whoever subscribes, outside the gateway: a read of them (red-team round 8).
	if (type === "CreatePublicationStmt" || type === "AlterPublicationStmt") {
		c.kind("SELECT");
		reaches(c, ["SELECT"]);
	}
	if (type === "DefineStmt" && (b.kind === "OBJECT_TSPARSER" || b.kind === "OBJECT_TSTEMPLATE")) c.risk("system", `${kind} gives the server's text search internals to the functions it names`);
	if (type === "DefineStmt" && b.kind === "OBJECT_AGGREGATE" && internalState(b.definition)) c.risk("system", "an aggregate with internal state hands raw memory between the functions it names");
	if (type === "AlterTypeStmt" || type === "CreateOpClassStmt" || type === "CreateOpFamilyStmt" || type === "AlterOpFamilyStmt") {
		c.risk("system", `${kind} defines what the server trusts with raw memory`);
	}
	const target = type === "DropStmt" ? b.removeType : type === "RenameStmt" ? b.renameType : type === "AlterOwnerStmt" || type === "AlterObjectSchemaStmt" ? b.objectType : undefined;
	if (target !== undefined && SERVER_WIDE_OBJECTS.has(String(target))) c.risk("system", `${kind} changes a server-wide object`);
	ownerChange(type, b, c);
	nameTakers(type, b, c);
	c.kind(kind);
	walkChildren(b, c, text, executes);
	// Any other cast changes how every later expression of every session resolves, where no call is
	// written: an implicit cast from int4 to text WITH FUNCTION f ran f inside `pg_catalog.length(1)`,
	// which the data path counts as built-in code that cannot change settings, so f could turn
	// standard_conforming_strings off before the next pipelined text (red-team round 10,
	// test/postgres/issue-cast-resolution.test.ts); it can also make the application's expressions
	// ambiguous or run the agent's function in them. Creating or dropping a cast is server-wide
	// state (after the walk: a dangerous function the cast names keeps its own message).
	if ((type === "CreateCastStmt" && (b.func !== undefined || b.inout === true)) || (type === "DropStmt" && b.removeType === "OBJECT_CAST")) {
		c.risk("system", `${kind} changes how every session's expressions resolve (a cast runs its function where no call is written)`);
	}
	return kind;
}

/** An aggregate definition whose state (`stype`, `stype1`, `mstype`) is the pseudo-type internal. */
function internalState(definition: unknown): boolean {
	for (const d of defElems(definition)) {
		if (d.name !== "stype" && d.name !== "stype1" && d.name !== "mstype") continue;
		const u = unwrap(d.arg);
		const typeName = u?.[0] === "TypeName" ? names(u[1].names).at(-1) : str(d.arg);
		// a type name that is not a constant name is not provably another type
		if (typeName === undefined || typeName.toLowerCase() === "internal") return true;
	}
	return false;
}

/** Object types that are server-wide or serve every session: their DDL is reserved for admin grants. */
const SERVER_WIDE_OBJECTS: ReadonlySet<string> = new Set([
	"OBJECT_DATABASE",
	"OBJECT_TABLESPACE",
	"OBJECT_EVENT_TRIGGER",
	"OBJECT_FDW",
	"OBJECT_FOREIGN_SERVER",
	"OBJECT_USER_MAPPING",
	"OBJECT_SUBSCRIPTION",
	"OBJECT_PUBLICATION",
	"OBJECT_LANGUAGE",
	"OBJECT_EXTENSION",
	"OBJECT_ACCESS_METHOD",
]);

/** Trigger functions of contrib extensions that write to tables named in the trigger's arguments. */
const TABLE_WRITING_TRIGGERS: ReadonlySet<string> = new Set(["check_foreign_key"]);

/**
 * What a cascading drop may do to relations it does not name: drop them (tables of a schema or an
 * extension, views) or alter them (drop a column typed with the dropped type, a foreign key, a
 * default). Table rules whose statement kinds match one of these match the statement.
 */
const DROP_REACH = ["DROP", "DROP TABLE", "DROP VIEW", "DROP MATERIALIZED VIEW", "ALTER", "ALTER TABLE"] as const;

function cascades(b: PgNode | undefined): boolean {
	return b?.behavior === "DROP_CASCADE";
}

function reaches(c: Collector, kinds: readonly string[]): void {
	for (const k of kinds) c.reach.add(k);
}

/**
 * Writes that read rows out or in: RETURNING returns the rows written, and UPDATE ... FROM,
 * DELETE ... USING and MERGE ... USING read their other relations (`UPDATE scratch SET v =
 * s.secret FROM secrets s ... RETURNING v` returned, and `MERGE INTO scratch USING secrets ...`
 * copied, rows a rule on SELECT of secrets kept from reading). They carry SELECT too.
 */
function readsRows(b: PgNode, c: Collector): void {
	const list = (x: unknown): boolean => Array.isArray(x) && x.length > 0;
	const returning = list(b.returningList) || list((b.returningClause as PgNode | undefined)?.exprs);
	if (returning || list(b.fromClause) || list(b.usingClause) || b.sourceRelation !== undefined) c.kind("SELECT");
}

/**
 * MERGE runs the commands of its WHEN clauses on the target: `MERGE INTO accounts ... WHEN MATCHED
 * THEN DELETE` deleted every account under a rule blocking DELETE on accounts, because the statement
 * carried the kind MERGE only. It now carries DELETE/UPDATE/INSERT for each action it may run.
 */
/**
 * Whether `INSERT ... ON CONFLICT DO UPDATE` may update every row of its target, as an UPDATE without
 * WHERE would: its rows come from a query over relations with no filter (`INSERT INTO notes SELECT
 * id, '' FROM notes ON CONFLICT (id) DO UPDATE SET body = excluded.body` rewrote every note under a
 * rule on UPDATE without WHERE; red-team round 10, test/postgres/issue-vacuous-where.test.ts), and
 * its DO UPDATE has no WHERE of its own reading the target or `excluded`. A VALUES list, a SELECT
 * without FROM, or a source with a WHERE (not vacuous) or LIMIT names its rows.
 */
function unboundedUpsert(b: PgNode): boolean {
	const where = (b.onConflictClause as PgNode).whereClause;
	if (where !== undefined && !isUnfiltered(where, new Set([...targetNames(b.relation), "excluded"]))) return false;
	const sel = (b.selectStmt as { SelectStmt?: PgNode } | undefined)?.SelectStmt;
	if (!sel) return false; // DEFAULT VALUES: one row
	if ((sel.op ?? "SETOP_NONE") !== "SETOP_NONE") return true;
	if (sel.valuesLists || !Array.isArray(sel.fromClause) || sel.fromClause.length === 0) return false;
	if (sel.limitCount !== undefined) return false;
	return sel.whereClause === undefined || isConstantCondition(sel.whereClause);
}

/**
 * `WHEN NOT MATCHED BY SOURCE THEN DELETE|UPDATE` (PostgreSQL 17) acts on every target row the ON
 * condition matches no source row for: with a source that is empty (`USING (SELECT 1 WHERE false)`)
 * that is every row, whatever the ON says. Without an `AND` condition reading the target it counts as
 * no WHERE.
 */
function unmatchedBySource(b: PgNode): boolean {
	if (!Array.isArray(b.mergeWhenClauses)) return false;
	const target = targetNames(b.relation);
	return b.mergeWhenClauses.some((w) => {
		const m = unwrap(w)?.[1];
		if (m?.matchKind !== "MERGE_WHEN_NOT_MATCHED_BY_SOURCE" || (m.commandType !== "CMD_DELETE" && m.commandType !== "CMD_UPDATE")) return false;
		return m.condition === undefined || isUnfiltered(m.condition, target);
	});
}

function mergeActions(b: PgNode, c: Collector): void {
	if (!Array.isArray(b.mergeWhenClauses)) return;
	for (const w of b.mergeWhenClauses) {
		const cmd = String(unwrap(w)?.[1]?.commandType ?? "");
		if (cmd === "CMD_DELETE") c.kind("DELETE");
		else if (cmd === "CMD_UPDATE") c.kind("UPDATE");
		else if (cmd === "CMD_INSERT") c.kind("INSERT");
	}
}

/**
 * The relation an (auto-)updatable view writes to: PostgreSQL makes a view over a single relation
 * without DISTINCT, GROUP BY, HAVING, LIMIT/OFFSET, set operations, WITH or window clauses writable
 * (INSERT/UPDATE/DELETE through it reach the relation). A view created through the gateway is often
 * unknown to the catalog when the next statement uses it (created in the open transaction, or a
 * cached "no such relation"): `CREATE VIEW va AS SELECT * FROM accounts` then `DELETE FROM va WHERE
 * id > 0` deleted accounts under a rule blocking DELETE on accounts. The CREATE VIEW binds those
 * writes (`binds`). Aggregates in the target list also make a view read-only; they are not looked
 * for (over-matching, accepted).
 */
function updatableBase(query: unknown): string | undefined {
	const sel = (query as { SelectStmt?: PgNode } | undefined)?.SelectStmt;
	if (!sel) return undefined;
	if ((sel.op ?? "SETOP_NONE") !== "SETOP_NONE" || sel.distinctClause || sel.groupClause || sel.havingClause) return undefined;
	if (sel.limitCount || sel.limitOffset || sel.withClause || sel.windowClause || sel.valuesLists) return undefined;
	if (!Array.isArray(sel.fromClause) || sel.fromClause.length !== 1) return undefined;
	// Syntax only aggregates and window functions accept (count(*), FILTER, ORDER BY or DISTINCT in
	// the call, OVER): PostgreSQL refuses it on a plain function, so it proves the view read-only.
	if (Array.isArray(sel.targetList) && sel.targetList.some((t) => aggregateSyntax(t, 0))) return undefined;
	const from = unwrap(sel.fromClause[0]);
	return from?.[0] === "RangeVar" && typeof from[1].relname === "string" ? rangeVarName(from[1]) : undefined;
}

function aggregateSyntax(n: unknown, depth: number): boolean {
	if (depth > 64 || !n || typeof n !== "object") return false;
	if (Array.isArray(n)) return n.some((x) => aggregateSyntax(x, depth + 1));
	const f = (n as { FuncCall?: PgNode }).FuncCall;
	if (f && (f.agg_star || f.agg_filter || f.agg_order || f.agg_distinct || f.over)) return true;
	// Not into subqueries: an aggregate there does not make the view read-only.
	if ((n as { SubLink?: unknown }).SubLink) return false;
	return Object.values(n).some((v) => aggregateSyntax(v, depth + 1));
}

/**
 * Writes an ALTER TABLE makes to existing rows without naming them. A foreign key added to an
 * existing table with a referential action deletes or updates that table's rows later, when rows
 * of the referenced table go or change: `ALTER TABLE accounts ADD COLUMN k int DEFAULT 1 REFERENCES
 * src(id) ON DELETE CASCADE`, then the allowed `DELETE FROM src WHERE id = 1`, deleted every account
 * under a rule blocking DELETE on accounts. The ALTER binds what the action will do to the altered
 * table (`binds`; CASCADE on delete: DELETE; SET NULL/SET DEFAULT, or any action on update: UPDATE),
 * so a table rule on those kinds meets it when the key is added. CREATE TABLE is not counted: a new
 * table holds no rows yet.
 */
function referentialActions(b: PgNode, c: Collector): void {
	if (!Array.isArray(b.cmds)) return;
	const rel = b.relation as PgNode | undefined;
	const fk = (con: PgNode | undefined): void => {
		if (con?.contype !== "CONSTR_FOREIGN" || !rel || typeof rel.relname !== "string") return;
		const del = String(con.fk_del_action ?? "a");
		const upd = String(con.fk_upd_action ?? "a");
		const kinds: string[] = [];
		if (del === "c") kinds.push("DELETE");
		if (del === "n" || del === "d" || upd === "c" || upd === "n" || upd === "d") kinds.push("UPDATE");
		if (kinds.length > 0) c.binds.push({ kinds, tables: [rangeVarName(rel)] });
	};
	for (const cmd of b.cmds) {
		const u = unwrap(cmd);
		if (u?.[0] !== "AlterTableCmd") continue;
		const def = unwrap(u[1].def);
		// ALTER COLUMN ... TYPE rewrites the column of every row: with USING expr (`USING 0` zeroed
		// every balance under a rule blocking UPDATE on accounts), and without it through the cast
		// (`TYPE numeric(12,0)` rounded every numeric(12,2) price, `TYPE date` cut timestamps). It
		// carries UPDATE; a USING that ignores the old value (no column in it) is an UPDATE without
		// WHERE. A plain cast counts as filtered: rules on UPDATE of the table meet it, rules on
		// unbounded UPDATEs anywhere do not (widening int to bigint is routine).
		if (u[1].subtype === "AT_AlterColumnType" && def?.[0] === "ColumnDef") {
			c.kind("UPDATE");
			c.sawFiltered = true;
			if (def[1].raw_default !== undefined && isConstantCondition(def[1].raw_default)) c.missingWhere = true;
		}
		// DROP COLUMN erases the column's value in every row: a DROP, and an UPDATE without WHERE
		// (`ALTER TABLE ledger DROP COLUMN amount` passed rules on DROP and on UPDATE of ledger).
		if (u[1].subtype === "AT_DropColumn") {
			c.kind("DROP");
			c.kind("DROP COLUMN");
			c.kind("UPDATE");
			c.sawFiltered = true;
			c.missingWhere = true;
		}
		// SET EXPRESSION (PostgreSQL 17) recomputes a generated column in every row, like TYPE ... USING.
		if (u[1].subtype === "AT_SetExpression") {
			c.kind("UPDATE");
			c.sawFiltered = true;
			if (u[1].def !== undefined && isConstantCondition(u[1].def)) c.missingWhere = true;
		}
		if (def?.[0] === "Constraint") fk(def[1]);
		if (def?.[0] === "ColumnDef" && Array.isArray(def[1].constraints)) {
			for (const con of def[1].constraints) {
				const cu = unwrap(con);
				if (cu?.[0] === "Constraint") fk(cu[1]);
			}
		}
	}
}

/** Relation types a RENAME / SET SCHEMA moves to another name (columns, constraints... do not). */
const NAMED_RELATIONS = new Set(["OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_FOREIGN_TABLE", "OBJECT_SEQUENCE"]);

/**
 * Partition and inheritance changes. A partition or inheritance child's rows are rows of its
 * ancestors (DELETE/SELECT on the parent reach them), so tables.ts matches rules on a parent for
 * statements on its children. Taking a child out (DETACH PARTITION, NO INHERIT) takes its rows
 * away from every rule on the parent: the parent is recorded in `escapes`, which matches those
 * rules whatever their statement kinds (`DETACH PARTITION parted_1` then `DROP TABLE parted_1`
 * passed a rule blocking DROP on parted). Putting one in (ATTACH PARTITION, INHERIT) adds rows to
 * the parent: it also carries the kind `INSERT`.
 */
function hierarchyChanges(b: PgNode, c: Collector): void {
	const rel = b.relation as PgNode | undefined;
	if (!rel || !Array.isArray(b.cmds)) return;
	for (const cmd of b.cmds) {
		const u = unwrap(cmd);
		if (u?.[0] !== "AlterTableCmd") continue;
		const sub = String(u[1].subtype ?? "");
		const def = unwrap(u[1].def);
		const other = def?.[0] === "RangeVar" ? def[1] : undefined;
		switch (sub) {
			case "AT_AttachPartition": {
				c.kind("ATTACH PARTITION");
				c.kind("INSERT");
				// The attached table's rows become rows of the parent: DELETE/TRUNCATE of the parent
				// (perhaps created a moment ago, unknown to the catalog) reach them without naming it.
				const part = (def?.[0] === "PartitionCmd" ? def[1].name : undefined) as PgNode | undefined;
				if (part && typeof part.relname === "string") c.escapes.add(rangeVarName(part));
				break;
			}
			case "AT_DetachPartition":
			case "AT_DetachPartitionFinalize":
				c.kind("DETACH PARTITION");
				c.escapes.add(rangeVarName(rel));
				break;
			case "AT_AddInherit":
				c.kind("INHERIT");
				c.kind("INSERT");
				// Likewise the new child's rows: `ALTER TABLE accounts INHERIT p` then `DELETE FROM p`.
				c.escapes.add(rangeVarName(rel));
				break;
			case "AT_DropInherit":
				c.kind("NO INHERIT");
				if (other && typeof other.relname === "string") c.escapes.add(rangeVarName(other));
				break;
		}
	}
}

function classifySet(b: PgNode, c: Collector): string {
	const setKind = String(b.kind ?? "");
	const name = String(b.name ?? "").toLowerCase();
	const reset = setKind === "VAR_RESET" || setKind === "VAR_RESET_ALL";
	const verb = reset ? "RESET" : "SET";
	c.kind(verb);
	if (setKind === "VAR_RESET_ALL") {
		c.risk("read-only-escape", "RESET ALL resets default_transaction_read_only");
		return "RESET ALL";
	}
	if (name === "role") {
		c.risk("identity-switch", `${verb} ROLE`);
		return `${verb} ROLE`;
	}
	if (name === "session_authorization") {
		c.risk("identity-switch", `${verb} SESSION AUTHORIZATION`);
		return `${verb} SESSION AUTHORIZATION`;
	}
	if (setKind === "VAR_SET_MULTI") {
		for (const d of defElems(b.args)) {
			if (d.name === "transaction_read_only" && truthySetting(defArgValue(d.arg)) === false) {
				c.risk("read-only-escape", `SET ${name.toUpperCase()} READ WRITE`);
			}
		}
		return `SET ${name.toUpperCase()}`;
	}
	if (READ_ONLY_SETTINGS.has(name)) {
		const args = Array.isArray(b.args) ? b.args : [];
		const on = args.length === 1 && !reset && setKind === "VAR_SET_VALUE" ? truthySetting(constValue(args[0])) : undefined;
		if (on !== true) c.risk("read-only-escape", `${verb} ${name}`);
	}
	if (isSystemSetting(name)) c.risk("system", `${verb} ${name}`);
	parserSetting(b, c);
	if (b.is_local) c.kind(`${verb} LOCAL`);
	return verb;
}

/**
 * SET standard_conforming_strings = off / SET client_encoding = 'SJIS' (also as a function's SET
 * clause, ALTER ROLE|DATABASE ... SET and ALTER SYSTEM SET, whose `setstmt` is a bare node): the
 * server would read later texts differently from the gateway. Only values that keep them as the
 * gateway reads them are allowed.
 */
function parserSetting(b: PgNode, c: Collector): void {
	const setKind = String(b.kind ?? "");
	const name = String(b.name ?? "").toLowerCase();
	const args = Array.isArray(b.args) ? b.args : [];
	const keeps = setKind === "VAR_RESET" || setKind === "VAR_SET_DEFAULT" || setKind === "VAR_SET_CURRENT";
	const value = keeps ? "default" : args.length === 1 ? constValue(args[0]) : undefined;
	const why = parserSettingChange(name, value);
	if (why) c.risk("parser-state", `${keeps ? "RESET" : "SET"} ${name}: ${why}`);
}

/** SQL-language function bodies given as strings are parsed too, so rules see what they contain. */
function visitFunctionBody(b: PgNode, c: Collector, text: string): void {
	const opts = defElems(b.options);
	const lang = opts.find((d) => d.name === "language");
	const language = lang ? (str(lang.arg) ?? "").toLowerCase() : "sql";
	const as = opts.find((d) => d.name === "as");
	if (!as) return;
	const u = unwrap(as.arg);
	const parts = u && u[0] === "List" ? names(u[1].items) : [];
	if (language !== "sql") {
		c.risk("opaque-code", `function body in language ${language} is not analysed`);
		if (language !== "plpgsql") c.risk("unknown", `function body in language ${language} cannot be classified`);
		if (language === "plpgsql") {
			// Compiled with its own header when the statement is this function alone: parameters,
			// the return type and trigger variables (NEW, TG_OP) are then known. Wrapped in a void
			// function of no parameters, `RETURN x`, `NEW.a := ...` or an assignment to a parameter
			// did not compile, which made every such function `unknown` (matching every rule).
			const own = ownPlpgsql(text);
			if (own !== undefined && parts.length === 1) visitPlpgsqlTree(own, c, text, false);
			else for (const body of parts) visitPlpgsql(body, c, text, false);
		}
		return;
	}
	for (const body of parts) {
		let parsed: { stmts?: { stmt?: PgNode }[] };
		try {
			parsed = parseSync(body) as typeof parsed;
		} catch {
			c.risk("unknown", "function body does not parse");
			continue;
		}
		for (const s of parsed.stmts ?? []) if (s.stmt) visitStatement(s.stmt, c, text, {}, false);
	}
}

/** Classifies the SQL statements and expressions of a PL/pgSQL body (best effort). */
function visitPlpgsql(body: string, c: Collector, text: string, executes: boolean): void {
	let tag = "pgdo";
	while (body.includes(`$${tag}$`)) tag += "x";
	let parsed: unknown;
	try {
		parsed = parsePlPgSQLSync(`CREATE FUNCTION drawbridge_inline() RETURNS void LANGUAGE plpgsql AS $${tag}$${body}$${tag}$`);
	} catch {
		c.risk("unknown", "procedural code does not parse");
		return;
	}
	visitPlpgsqlTree(parsed, c, text, executes);
}

/**
 * The compiled PL/pgSQL function of `text` when `text` is exactly one statement creating exactly
 * one PL/pgSQL function (the usual CREATE [OR REPLACE] FUNCTION ... LANGUAGE plpgsql), else undefined.
 */
function ownPlpgsql(text: string): unknown {
	try {
		const stmts = (parseSync(text) as { stmts?: { stmt?: PgNode }[] }).stmts ?? [];
		if (stmts.length !== 1 || !stmts[0]!.stmt || unwrap(stmts[0]!.stmt)?.[0] !== "CreateFunctionStmt") return undefined;
		const parsed = parsePlPgSQLSync(text) as { plpgsql_funcs?: unknown[] };
		return parsed.plpgsql_funcs?.length === 1 ? parsed : undefined;
	} catch {
		return undefined;
	}
}

function visitPlpgsqlTree(parsed: unknown, c: Collector, text: string, executes: boolean): void {
	const stack: unknown[] = [parsed];
	while (stack.length > 0) {
		const n = stack.pop();
		if (Array.isArray(n)) {
			for (const x of n) stack.push(x);
			continue;
		}
		if (!n || typeof n !== "object") continue;
		const o = n as PgNode;
		// RETURN QUERY EXECUTE carries its string in `dynquery` like OPEN ... FOR EXECUTE: `RETURN QUERY
		// EXECUTE 'DELETE FROM accounts RETURNING *'` in a function passed an admin grant's rules (the
		// string was classified as `SELECT 'DELETE ...'`), and SELECT * FROM f() then deleted.
		const returnQuery = o.PLpgSQL_stmt_return_query as PgNode | undefined;
		if (o.PLpgSQL_stmt_dynexecute || o.PLpgSQL_stmt_dynfors || o.PLpgSQL_stmt_open || returnQuery?.dynquery) {
			c.risk("dynamic-sql", "procedural code may EXECUTE SQL built from strings");
		}
		if (o.PLpgSQL_stmt_dynexecute || o.PLpgSQL_stmt_dynfors || (o.PLpgSQL_stmt_open as PgNode | undefined)?.dynquery || returnQuery?.dynquery) {
			// What runs is built at run time: no rule can be checked against it (deny by default).
			c.risk("unknown", "procedural code EXECUTEs SQL built at run time");
		}
		const expr = o.PLpgSQL_expr as { query?: string; parseMode?: number } | undefined;
		if (expr && typeof expr.query === "string") {
			const mode = expr.parseMode ?? 0;
			// An assignment (`t := pg_read_file(...)`, `a[i] = f()`, parse modes 3-5) is its target
			// and a SELECT list; it was parsed as `SELECT t := ...`, which fails, and so was never
			// classified: function rules did not see calls on the right of `:=`.
			const assign = mode >= 3 && mode <= 5 ? splitAssignment(expr.query) : undefined;
			const sqls = assign ? [`SELECT ${assign[0]}`, `SELECT ${assign[1]}`] : [mode === 0 ? expr.query : `SELECT ${expr.query}`];
			for (const sql of sqls) {
				try {
					const inner = parseSync(sql) as { stmts?: { stmt?: PgNode }[] };
					for (const st of inner.stmts ?? []) if (st.stmt) visitStatement(st.stmt, c, text, {}, executes);
				} catch {
					// An assignment PL/pgSQL accepted is SQL we must see (deny by default); other
					// fragments that are not standalone SQL have nothing more to show.
					if (mode >= 3 && mode <= 5) c.risk("unknown", "procedural assignment cannot be classified");
				}
			}
			continue;
		}
		for (const v of Object.values(o)) if (v && typeof v === "object") stack.push(v);
	}
}

/**
 * Splits a PL/pgSQL assignment `target := expression` (or `=`) at its first `:=`/`=` outside
 * quotes, brackets and parentheses. The target (`a[f(x)]`, `blk.t`, `r.field`) is returned too: its
 * subscripts are evaluated.
 */
function splitAssignment(q: string): [string, string] | undefined {
	let depth = 0;
	for (let i = 0; i < q.length; i++) {
		const ch = q[i]!;
		if (ch === '"' || ch === "'") {
			const end = q.indexOf(ch, i + 1);
			if (end < 0) return undefined;
			i = end;
		} else if (ch === "[" || ch === "(") depth++;
		else if (ch === "]" || ch === ")") depth--;
		else if (depth === 0 && ch === ":" && q[i + 1] === "=") return [q.slice(0, i), q.slice(i + 2)];
		else if (depth === 0 && ch === "=") return [q.slice(0, i), q.slice(i + 1)];
	}
	return undefined;
}

/** Walks every child of a statement body: nested statements, relations, function calls. */
function walkChildren(body: PgNode, c: Collector, text: string, executes: boolean): void {
	// The per-node work is in visitNode, outside this recursive closure: its frame stays small, so
	// deeply nested expressions (thousands of levels) fit the stack.
	const walk = (n: unknown): void => {
		if (Array.isArray(n)) {
			for (const x of n) walk(x);
			return;
		}
		if (!n || typeof n !== "object") return;
		if (++c.depth > MAX_DEPTH) throw new Error("parse tree too deep");
		try {
			if (visitNode(n as PgNode, c, text, executes)) return;
			for (const v of Object.values(n)) if (v && typeof v === "object") walk(v);
		} finally {
			c.depth--;
		}
	};
	for (const [k, v] of Object.entries(body)) {
		if (k === "funccall" && v && typeof v === "object") visitFuncCall(v as PgNode, c, text, executes); // CallStmt
		if (k === "setstmt" && v && typeof v === "object") {
			// ALTER ROLE|DATABASE|SYSTEM ... SET
			parserSetting(v as PgNode, c);
			const name = String((v as PgNode).name ?? "").toLowerCase();
			const resets = ["VAR_RESET", "VAR_SET_DEFAULT", "VAR_RESET_ALL"].includes(String((v as PgNode).kind ?? ""));
			if (PROGRAM_SETTINGS.has(name) && !resets) c.risk("unknown", `SET ${name} names a program the server runs or a library it loads`);
		}
		// CREATE TRIGGER / EVENT TRIGGER ... EXECUTE FUNCTION f(), CREATE CONVERSION ... FROM f, language handlers
		if ((k === "funcname" || k === "func_name" || k === "plhandler" || k === "plinline" || k === "plvalidator") && Array.isArray(v)) {
			functionReference(names(v), c);
		}
		if (v && typeof v === "object") walk(v);
	}
}

/** What one node of a walked tree adds to `c`; true for a nested statement (visited whole). */
function visitNode(obj: PgNode, c: Collector, text: string, executes: boolean): boolean {
	if (typeof obj.relname === "string") {
		c.tables.add(rangeVarName(obj));
		relationRisk(typeof obj.schemaname === "string" ? obj.schemaname : undefined, obj.relname, c);
	}
	// ObjectWithArgs, wrapped or not: CREATE CAST ... WITH FUNCTION f(...), operator class
	// support functions, ALTER/DROP FUNCTION... It is the only node with `objname`; with empty
	// parentheses (`ALTER FUNCTION purge() RENAME TO tidy`) it has no other field, and was missed:
	// the rename passed a rule on purge, and SELECT tidy() ran it (red-team round 8).
	if (Array.isArray(obj.objname)) {
		functionReference(names(obj.objname), c);
	}
	const u = unwrap(obj);
	if (!u) return false;
	const [type, b] = u;
	if (type.endsWith("Stmt")) {
		visitStatement(obj, c, text, {}, executes);
		return true;
	}
	if (type === "FuncCall") visitFuncCall(b, c, text, executes);
	// `(expr).name`, `t.name`, `t.col.name`: a name that is not a column or field is a call.
	if (type === "A_Indirection" || (type === "ColumnRef" && Array.isArray(b.fields) && b.fields.length > 1)) fieldNotation(type, b, c);
	if (type === "DefElem" && FUNCTION_DEFNAMES.has(String(b.defname ?? "").toLowerCase())) {
		// CREATE OPERATOR (function = f), CREATE AGGREGATE (sfunc = f), CREATE TYPE (input = f)...
		const arg = unwrap(b.arg);
		if (arg?.[0] === "TypeName") functionReference(names(arg[1].names), c);
		else if (arg?.[0] === "List") functionReference(names(arg[1].items), c);
		// A planner support function (superuser only) gets the planner's own request nodes: any
		// function taking and returning internal fits, `SUPPORT gtsvector_decompress` crashed the
		// server at the first call planned (red-team round 8, issue-crash-by-definition).
		if (String(b.defname).toLowerCase() === "support") c.risk("system", "a planner support function is handed the planner's internal structures");
	}
	return false;
}

/**
 * DDL options naming a function that PostgreSQL will call implicitly (operators, aggregates, types,
 * text search objects, foreign data wrappers): `CREATE OPERATOR ### (function = pg_read_file)`
 * makes `SELECT ### '/etc/passwd'` call it without any function call in the text.
 */
const FUNCTION_DEFNAMES = new Set([
	"function",
	"procedure",
	"restrict",
	"join",
	"sfunc",
	// PostgreSQL still accepts the obsolete spellings sfunc1/stype1/initcond1: `CREATE AGGREGATE
	// rf(bigint, bigint) (sfunc1 = pg_read_file, stype1 = text, initcond1 = '/etc/hostname')` read a file.
	"sfunc1",
	"finalfunc",
	"combinefunc",
	"serialfunc",
	"deserialfunc",
	"msfunc",
	"minvfunc",
	"mfinalfunc",
	"input",
	"output",
	"receive",
	"send",
	"typmod_in",
	"typmod_out",
	"analyze",
	"subscript",
	"canonical",
	"subtype_diff",
	"init",
	"lexize",
	"start",
	"gettoken",
	"end",
	"lextypes",
	"headline",
	"handler",
	"validator",
	// CREATE/ALTER FUNCTION ... SUPPORT f: the planner calls f.
	"support",
]);

/**
 * A function named (not called) by a statement that binds it to something PostgreSQL calls later
 * (operator, cast, aggregate, trigger...): rules and risks see it as if it were called.
 */
function functionReference(parts: string[], c: Collector): void {
	if (parts.length === 0) return;
	const qualified = parts.map((p) => p.toLowerCase()).join(".");
	c.functions.add(qualified);
	const risk = functionRisk(qualified);
	if (risk) c.risk(risk.kind, `${qualified}() ${risk.detail} (referenced by the statement)`);
	const last = parts[parts.length - 1]!.toLowerCase();
	tableFunction(last, c);
	if (ALL_TABLES_FUNCTIONS.has(last)) reaches(c, ["SELECT"]);
}

/** The kinds (and table) of a function that does what a statement kind does (FUNCTION_STATEMENTS). */
function tableFunction(last: string, c: Collector): void {
	const t = FUNCTION_STATEMENTS.get(last);
	if (t) {
		for (const k of t.kinds) c.kind(k);
		if (t.table) c.tables.add(t.table);
	}
	// a written server file may be any table's rows, a configuration naming programs, a library
	if (SERVER_FILE_WRITERS.has(last)) c.risk("unknown", `${last}() writes a server file: a table's data file, a configuration or a library, what it does is not seen`);
}

/**
 * A name selected with `.` (`(x).name`, `t.name`): PostgreSQL calls the one-argument function of
 * that name when no column or field has it, for any argument type (`SELECT ('/etc/hostname'::text).
 * pg_read_file` read a server file under a read-only grant; `SELECT t.purge FROM t` ran a function
 * a rule blocked). Rules on functions see the name, and a known-dangerous name gets its risk (a
 * qualified column named like one, `t.setval`, is refused too: deny by default).
 */
function fieldNotation(type: string, b: PgNode, c: Collector): void {
	const selected = type === "A_Indirection" ? names(b.indirection) : Array.isArray(b.fields) ? names(b.fields.slice(1)) : [];
	for (const name of selected) fieldCall(name, c);
}

function fieldCall(name: string, c: Collector): void {
	c.fieldCalls.add(name);
	const risk = functionRisk(name);
	// listed as called, so masking's write checks look at the statement (state functions keep values)
	if (risk || STATE_FUNCTIONS.has(name.toLowerCase())) c.functions.add(name.toLowerCase());
	if (risk) c.risk(risk.kind, `${name.toLowerCase()}() ${risk.detail} (called in field notation: (x).${name})`);
	const last = name.toLowerCase();
	tableFunction(last, c);
	if (ALL_TABLES_FUNCTIONS.has(last)) reaches(c, ["SELECT"]);
	if (last === "set_config" || SQL_FRAGMENT_FUNCTIONS.has(last) || REMOTE_SQL_FUNCTIONS.has(last) || sqlTextArguments(last, 1).length > 0 || RELATION_ARGUMENT_FUNCTIONS.has(last)) {
		// one-argument forms of functions whose arguments the classifier reads (crosstab(sql),
		// dblink(sql)...): the argument is an expression here, not a constant it could read
		c.risk("unknown", `${last}() called in field notation: its argument is not analysed`);
	}
}

function visitFuncCall(b: PgNode, c: Collector, text: string, executes: boolean): void {
	const parts = names(b.funcname).map((s) => s.toLowerCase());
	if (parts.length === 0) return;
	const qualified = parts.join(".");
	c.functions.add(qualified);
	const last = parts[parts.length - 1]!;
	if (last === "set_config") {
		const first = Array.isArray(b.args) ? constValue(b.args[0]) : undefined;
		const setting = typeof first === "string" ? first.toLowerCase() : undefined;
		if (setting === undefined || IDENTITY_SETTINGS.has(setting)) {
			c.risk("identity-switch", `set_config(${setting ?? "<expression>"}, ...)`);
		}
		if (setting === undefined || READ_ONLY_SETTINGS.has(setting)) {
			c.risk("read-only-escape", `set_config(${setting ?? "<expression>"}, ...)`);
		}
		if (setting !== undefined && isSystemSetting(setting)) c.risk("system", `set_config(${setting}, ...)`);
		// A setting name computed at run time could be standard_conforming_strings or client_encoding.
		const why = setting === undefined ? "the setting is not a constant" : parserSettingChange(setting, Array.isArray(b.args) ? constValue(b.args[1]) : undefined);
		if (why) c.risk("parser-state", `set_config(${setting ?? "<expression>"}, ...): ${why}`);
		return;
	}
	const risk = functionRisk(qualified);
	if (risk) c.risk(risk.kind, `${qualified}() ${risk.detail}`);
	tableFunction(last, c);
	// dblink_exec('host=/run/postgresql ...', 'DROP TABLE accounts'): SQL on a connection the
	// classifier does not follow (often back to the same server). Admin grants skip server-access;
	// for them it meets every rule, like EXECUTE in PL/pgSQL.
	if (REMOTE_SQL_FUNCTIONS.has(last)) c.risk("unknown", `${qualified}() runs SQL text on another connection`);
	const args = Array.isArray(b.args) ? b.args : [];
	// xpath_table(key, doc, relation, xpaths, criteria): SQL assembled from fragments, run as is.
	if (SQL_FRAGMENT_FUNCTIONS.has(last)) c.risk("unknown", `${qualified}() runs SQL it assembles from its arguments`);
	relationArgument(last, args, c);
	if (last === "setval") sequenceArgument(args, c);
	for (const sqlArg of sqlTextArguments(last, args.length)) {
		// query_to_xml('select pg_read_file(...)'), ts_rewrite(q, 'select ...'), crosstab('select ...'):
		// the SQL in the string runs too. A constant is classified like any nested statement (rules
		// see its functions, tables and kinds); text computed at run time cannot be seen: deny by
		// default.
		const sql = constText(args[sqlArg]);
		if (sql === undefined) {
			c.risk("unknown", `${qualified}() runs SQL text computed at run time`);
			continue;
		}
		let parsed: { stmts?: { stmt?: PgNode }[] };
		try {
			parsed = parseSync(sql) as typeof parsed;
		} catch {
			c.risk("unknown", `${qualified}() SQL text does not parse`);
			continue;
		}
		for (const s of parsed.stmts ?? []) if (s.stmt) visitStatement(s.stmt, c, text, {}, executes);
	}
}

/**
 * A relation named by a function's argument (`table_to_xml('accounts', ...)`,
 * `heap_force_kill('accounts', ...)`) counts as named by the statement, with what the function does
 * to its rows; a name computed at run time (or an OID) may be any relation (`unnamedReach`).
 * `schema_to_xml`/`database_to_xml` read every table of a schema or of the database.
 */
function relationArgument(last: string, args: unknown[], c: Collector): void {
	if (ALL_TABLES_FUNCTIONS.has(last)) {
		reaches(c, ["SELECT"]);
		return;
	}
	const fn = RELATION_ARGUMENT_FUNCTIONS.get(last);
	if (!fn) return;
	for (const k of fn.kinds) c.kind(k);
	const text = constText(args[0]);
	const name = text === undefined ? undefined : relationNameText(text);
	if (name) {
		c.tables.add(name);
		const parts = name.split(".");
		relationRisk(parts.length >= 2 ? parts[parts.length - 2] : undefined, parts[parts.length - 1]!, c);
	} else reaches(c, ["SELECT", ...fn.kinds]);
}

/**
 * `setval(seq, n)` sets the value later INSERTs draw from the sequence (`SELECT
 * setval('accounts_id_seq', 1)` made the application's next INSERTs collide with existing accounts):
 * it binds those writes on the sequence, as `ALTER SEQUENCE ... RESTART` does; a sequence named by an
 * expression or an OID may be any table's.
 */
function sequenceArgument(args: unknown[], c: Collector): void {
	const text = constText(args[0]);
	const name = text === undefined ? undefined : relationNameText(text);
	if (name) c.binds.push({ kinds: SEQUENCE_WRITES, tables: [name] });
	else reaches(c, SEQUENCE_WRITES);
}

/**
 * A relation name as regclass input reads it (`public.accounts`, `"Odd Name"`, `ACCOUNTS` =
 * accounts): dot-separated identifiers, unquoted ones folded to lower case, quoted ones with `""`
 * for a quote. Undefined for anything else (an OID, odd characters): the caller then assumes any
 * relation.
 */
export function relationNameText(text: string): string | undefined {
	const parts: string[] = [];
	let i = 0;
	const n = text.length;
	const space = (ch: string | undefined): boolean => ch !== undefined && /\s/.test(ch);
	for (;;) {
		while (space(text[i])) i++;
		let part = "";
		if (text[i] === '"') {
			i++;
			for (;;) {
				if (i >= n) return undefined;
				if (text[i] === '"') {
					if (text[i + 1] === '"') {
						part += '"';
						i += 2;
						continue;
					}
					i++;
					break;
				}
				part += text[i++];
			}
			if (part === "") return undefined;
		} else {
			const m = /^[A-Za-z_\u0080-\uffff][A-Za-z0-9_$\u0080-\uffff]*/.exec(text.slice(i));
			if (!m) return undefined;
			part = m[0].toLowerCase();
			i += m[0].length;
		}
		parts.push(part);
		while (space(text[i])) i++;
		if (i === n) break;
		if (text[i] !== ".") return undefined;
		i++;
	}
	return parts.length <= 3 ? parts.join(".") : undefined;
}

/** A string constant, also through casts (`'select 1'::text`). */
function constText(node: unknown): string | undefined {
	let n = node as PgNode | undefined;
	for (let i = 0; i < 8 && n?.TypeCast; i++) n = (n.TypeCast as PgNode).arg as PgNode | undefined;
	const v = constValue(n);
	return typeof v === "string" ? v : undefined;
}

/**
 * Statement kinds that run no stored code by themselves (no trigger, rule, event trigger or
 * deferred constraint fires for them). COMMIT is not one (deferred triggers run at commit), nor
 * `SET CONSTRAINTS` (it fires them too), nor any DDL (event triggers).
 */
const NO_STORED_CODE_KINDS: ReadonlySet<string> = new Set([
	"SELECT",
	"VALUES",
	"SHOW",
	"SET",
	"SET LOCAL",
	"SET TRANSACTION",
	"BEGIN",
	"START TRANSACTION",
	"TRANSACTION",
	"ROLLBACK",
	"ROLLBACK TO",
	"SAVEPOINT",
	"RELEASE",
	"DEALLOCATE",
	"LISTEN",
	"UNLISTEN",
	"CLOSE",
	"EXPLAIN",
]);

/**
 * Why running the statement may run code its text does not show, or undefined when it provably runs
 * only built-in code. Stored code runs behind names: a view's select list, a table's defaults, CHECK
 * constraints, triggers, rules and row-level policies, a domain's CHECK (on a cast to the domain, on a
 * parameter of that type at Bind), an operator's function, a user cast, and any unqualified function,
 * type or operator name (`SET search_path = public, pg_catalog` puts the session's own `upper` or
 * `text` first). So only statements without relations, operators or field notation, whose calls and
 * type names are written `pg_catalog.`-qualified (libpg-query qualifies the SQL-standard type names
 * itself: `::int` is `pg_catalog.int4`) and whose casts convert a constant or a parameter (an input
 * function, not a cast function), qualify. The PostgreSQL data path uses it to decide whether a
 * statement may have changed server settings before the server reports them (gateway/postgres/README.md,
 * "Parser differentials").
 */
export function unseenCode(info: SqlStatementInfo, options: { userCasts?: boolean } = {}): string | undefined {
	if (info.uses) return "it runs a prepared statement or cursor";
	const kind = info.kinds.find((k) => !NO_STORED_CODE_KINDS.has(k));
	if (kind !== undefined) return `${kind} may run stored code (triggers, rules, event triggers)`;
	if (info.tables.length > 0) return `it names a relation (${info.tables[0]}), whose view, defaults, triggers, rules, policies or domains may run code`;
	if (info.fieldCalls && info.fieldCalls.length > 0) return "a name in field notation may call a function";
	// functions of SQL given as text (query_to_xml('SELECT app_set(...)', ...)) are listed, not in the tree
	const call = info.functions.find((f) => !f.startsWith("pg_catalog.") || f.split(".").length !== 2);
	if (call !== undefined) return `${call}() is not written pg_catalog-qualified: the search_path decides what it calls`;
	const tree = statementTree(info);
	if (!tree) return "its parse tree is not known";
	return unseenCodeIn(tree, 0, options.userCasts === true);
}

/**
 * A value whose type is not known until the server resolves it (a string literal, NULL): it is
 * converted by an input function. Any other value (a number, a parameter whose type Parse may have
 * declared, an expression) is converted by a cast when the call or cast needs another type.
 */
function untypedConstant(node: unknown): boolean {
	const k = (node as { A_Const?: PgNode } | undefined)?.A_Const;
	return k !== undefined && (k.isnull === true || "sval" in k);
}

function qualifiedBuiltin(list: unknown): boolean {
	const parts = names(list);
	return parts.length === 2 && parts[0] === "pg_catalog";
}

/**
 * `userCasts`: the database has casts whose function is not built in (made by a DBA or an admin
 * grant): a call or cast converting a typed value may run one where no call is written (`SELECT
 * pg_catalog.length(1)` over an implicit cast from int4 to text; red-team round 10,
 * test/postgres/issue-cast-resolution.test.ts), so only string literals and NULL may be converted.
 */
function unseenCodeIn(node: unknown, depth: number, userCasts = false): string | undefined {
	if (depth > MAX_DEPTH) return "the statement is nested too deeply to check";
	if (Array.isArray(node)) {
		for (const item of node) {
			const why = unseenCodeIn(item, depth + 1, userCasts);
			if (why) return why;
		}
		return undefined;
	}
	if (!node || typeof node !== "object") return undefined;
	const o = node as PgNode;
	for (const [key, value] of Object.entries(o)) {
		switch (key) {
			case "FuncCall": {
				const b = value as PgNode;
				if (!qualifiedBuiltin(b.funcname)) return `${names(b.funcname).join(".")}() is not written pg_catalog-qualified: the search_path decides what it calls`;
				if (userCasts && Array.isArray(b.args) && b.args.some((a) => !untypedConstant(a))) {
					return `an argument of ${names(b.funcname).join(".")}() may be converted by a cast the database defines with a user function`;
				}
				break;
			}
			case "A_Expr":
				return "an operator may be a user-defined function";
			case "SubLink":
				if (Array.isArray((value as PgNode).operName) && ((value as PgNode).operName as unknown[]).length > 0) return "an operator may be a user-defined function";
				break;
			case "CaseExpr":
				if ((value as PgNode).arg !== undefined) return "CASE x WHEN compares with an operator that may be a user-defined function";
				break;
			case "SortBy":
				if ((value as PgNode).useOp !== undefined) return "ORDER BY ... USING names an operator";
				break;
			case "TypeCast": {
				const b = value as PgNode;
				const arg = unwrap(b.arg)?.[0];
				if (arg !== "A_Const" && arg !== "ParamRef") return "a cast of an expression may run a user-defined cast function";
				if (userCasts && !untypedConstant(b.arg)) return "a cast of a typed value may run a cast the database defines with a user function";
				break;
			}
			case "typeName":
			case "TypeName":
				if (!qualifiedBuiltin((value as PgNode | undefined)?.names)) return `type ${names((value as PgNode | undefined)?.names).join(".")} may be a domain whose CHECK calls a function`;
				break;
		}
		const why = unseenCodeIn(value, depth + 1, userCasts);
		if (why) return why;
	}
	return undefined;
}
