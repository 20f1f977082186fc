/**
 * Masking plan: which output columns of a statement derive from masked columns.
 *
 * Two independent sources, either of which masks a column:
 *  1. RowDescription origin (table OID + attribute number) through `Catalog.relationByOid`; a view
 *     origin is followed into the view's definition.
 *  2. Parse-tree taint: every output expression is evaluated over the FROM scope; a masked column
 *     anywhere inside it (expression, function, cast, CASE, aggregate, whole-row reference,
 *     subquery, CTE, UNION branch, LATERAL, view, RETURNING) taints the output.
 * Conservative: an unknown relation, an unknown (non-built-in) function, a function that runs SQL
 * text, or outputs that cannot be aligned with RowDescription are treated as tainted.
 *
 * Relations are resolved asynchronously first (Catalog), then the analysis itself is synchronous.
 */
import type { MaskRule, MaskStrategy } from "../config/bundle.ts";
import { functionRisk, PURE_BUILTINS, STATE_FUNCTIONS } from "./functions.ts";
import { compileQualified, type QualifiedMatcher } from "./glob.ts";
import { Lru } from "./lru.ts";
import { strategyStrength } from "./maskvalue.ts";
import { analyzeSql, type PgNode, statementCacheKey, statementTree } from "./sql.ts";
import type {
	Catalog,
	ColumnMask,
	FunctionCatalog,
	MaskContext,
	MaskPlan,
	RelationInfo,
	RelationName,
	ResultField,
	SqlAnalysis,
	SqlStatementInfo,
} from "./types.ts";

// ---------------------------------------------------------------------------------------------
// Taint values

interface Taint {
	/** `schema.table.column` of masked columns this value derives from. */
	readonly cols: ReadonlySet<string>;
	/** Why the value cannot be proven clean (unknown relation, user function...). */
	readonly opaque?: string;
	/** True when transformed (not the column value itself): partial masking becomes redact. */
	readonly derived: boolean;
}

const NO_COLS: ReadonlySet<string> = new Set();
const CLEAN: Taint = Object.freeze({ cols: NO_COLS, derived: false });

function isTainted(t: Taint): boolean {
	return t.cols.size > 0 || t.opaque !== undefined;
}

function union(a: Taint, b: Taint): Taint {
	if (!isTainted(b)) return a.derived || !b.derived ? a : { ...a, derived: true };
	if (!isTainted(a)) return a.derived && !b.derived ? { ...b, derived: true } : b;
	const cols = a.cols.size === 0 ? b.cols : b.cols.size === 0 ? a.cols : new Set([...a.cols, ...b.cols]);
	const out: { cols: ReadonlySet<string>; opaque?: string; derived: boolean } = { cols, derived: a.derived || b.derived };
	const opaque = a.opaque ?? b.opaque;
	if (opaque !== undefined) out.opaque = opaque;
	return out;
}

function derive(t: Taint): Taint {
	return t.derived || !isTainted(t) ? t : { ...t, derived: true };
}

function opaque(reason: string): Taint {
	return { cols: NO_COLS, opaque: reason, derived: true };
}

/** Output columns of a query; `rest` stands for columns of unknown count (`*` over an unknown relation). */
interface Outputs {
	names: string[];
	taints: Taint[];
	rest?: Taint;
}

const NO_OUTPUTS: Outputs = { names: [], taints: [] };

function unionAll(o: Outputs): Taint {
	let t = o.rest ?? CLEAN;
	for (const x of o.taints) t = union(t, x);
	return t;
}

// ---------------------------------------------------------------------------------------------
// Rules

interface CompiledColumnRule {
	rule: MaskRule;
	matchers: QualifiedMatcher[];
}

/** Column globs: `schema.table.column`; `table.column` = any schema; `column` = any table. */
function compileColumnRules(rules: readonly MaskRule[]): CompiledColumnRule[] {
	return rules
		.filter((r) => (r.columns?.length ?? 0) > 0)
		.map((rule) => ({
			rule,
			matchers: rule.columns!.map((p) => {
				const parts = p.split(".");
				while (parts.length < 3) parts.unshift("*");
				return compileQualified(parts.join("."));
			}),
		}));
}

class RuleIndex {
	readonly columnRules: CompiledColumnRule[];
	readonly detectors: MaskRule[];
	readonly #cache = new Map<string, MaskRule | null>();
	/** Strongest column rule, used for opaque taint. */
	readonly strongest: MaskRule | undefined;

	constructor(rules: readonly MaskRule[]) {
		this.columnRules = compileColumnRules(rules);
		this.detectors = rules.filter((r) => (r.detectors?.length ?? 0) > 0 || (r.patterns?.length ?? 0) > 0);
		let best: MaskRule | undefined;
		for (const c of this.columnRules) if (!best || strategyStrength(c.rule.strategy) > strategyStrength(best.strategy)) best = c.rule;
		this.strongest = best;
	}

	ruleFor(qualified: string): MaskRule | undefined {
		const hit = this.#cache.get(qualified);
		if (hit !== undefined) return hit ?? undefined;
		const parts = splitQualified(qualified);
		const found = this.columnRules.find((c) => c.matchers.some((m) => m(parts)))?.rule;
		this.#cache.set(qualified, found ?? null);
		return found;
	}
}

/** `schema.table.column` -> parts; identifiers never contain the NUL separator we use. */
function qualify(schema: string, table: string, column: string): string {
	return `${schema}\u0000${table}\u0000${column}`;
}
function splitQualified(q: string): string[] {
	return q.split("\u0000");
}
function displayQualified(q: string): string {
	return splitQualified(q).join(".");
}

// ---------------------------------------------------------------------------------------------
// Catalog prefetch

interface Resolved {
	relations: Map<string, RelationInfo | null>;
	byOid: Map<number, RelationInfo | null>;
	builtin: Map<string, boolean>;
	/** Names given to new functions and aggregates: does a built-in function have that name? */
	builtinNames: Map<string, boolean>;
	/** Operator names (`op` or `schema.op`): is every operator of that name a built-in? */
	builtinOps: Map<string, boolean>;
	/** Names selected with `.` (`t.name`, `(x).name`): may a function that is not built-in have it? */
	fieldCalls: Map<string, boolean>;
	/** Catalog.uncommittedDdl when the plan was made. */
	uncommittedDdl: boolean;
	/** FunctionCatalog.userCasts: type names a cast into runs code masking does not see; implicit ones run anywhere. */
	castTargets: Set<string>;
	implicitCasts: boolean;
}

interface Refs {
	rels: Map<string, [string | undefined, string]>;
	funcs: Set<string>;
	names: Set<string>;
	ops: Set<string>;
	/** Names selected with `.`, which PostgreSQL calls as functions when no column or field has them. */
	fieldNames: Set<string>;
}

/** DefElems of CREATE OPERATOR / CREATE AGGREGATE that name a function PostgreSQL calls later. */
const DEFINE_FUNCTION_OPTIONS = new Set([
	"function",
	"procedure",
	"sfunc",
	"sfunc1",
	"finalfunc",
	"combinefunc",
	"serialfunc",
	"deserialfunc",
	"msfunc",
	"minvfunc",
	"mfinalfunc",
]);

/** The operator names an A_Expr calls (BETWEEN is spelled with `<=`/`>=`, IN with `=`...). */
function operatorNames(b: PgNode): string[] {
	const kind = String(b.kind ?? "");
	if (kind.startsWith("AEXPR_BETWEEN") || kind.startsWith("AEXPR_NOT_BETWEEN")) return ["<=", ">="];
	const name = strings(b.name).map((x) => x.toLowerCase());
	return name.length > 0 ? [name.join(".")] : [];
}

/** The functions a DefineStmt (CREATE OPERATOR/AGGREGATE) binds, lower-case, schema as written. */
function definedFunctions(b: PgNode): string[] {
	const out: string[] = [];
	for (const d of Array.isArray(b.definition) ? b.definition : []) {
		const de = (d as { DefElem?: PgNode }).DefElem;
		if (!de || !DEFINE_FUNCTION_OPTIONS.has(String(de.defname ?? "").toLowerCase())) continue;
		const arg = de.arg as { TypeName?: PgNode; String?: { sval?: string } } | undefined;
		const names = arg?.TypeName ? strings(arg.TypeName.names) : arg?.String?.sval ? [arg.String.sval] : [];
		if (names.length > 0) out.push(names.map((x) => x.toLowerCase()).join("."));
	}
	return out;
}

function relKey(schema: string | undefined, name: string): string {
	return `${schema ?? ""}\u0000${name}`;
}

/**
 * Walks a tree and collects RangeVar names, function names (calls, and functions bound by CREATE
 * OPERATOR/AGGREGATE/CAST), names given to new functions, and operator names.
 */
function collectRefs(node: unknown, { rels, funcs, names, ops, fieldNames }: Refs): void {
	const stack: unknown[] = [node];
	let guard = 0;
	while (stack.length > 0) {
		if (++guard > 1_000_000) throw new Error("parse tree too large");
		const n = stack.pop();
		if (Array.isArray(n)) {
			for (const x of n) stack.push(x);
			continue;
		}
		if (!n || typeof n !== "object") continue;
		const o = n as PgNode;
		if (typeof o.relname === "string") {
			const schema = typeof o.schemaname === "string" ? o.schemaname : undefined;
			rels.set(relKey(schema, o.relname), [schema, o.relname]);
			if (schema === undefined && printedBare.has(o)) rels.set(relKey("pg_catalog", o.relname), ["pg_catalog", o.relname]);
			// The bare name too: a relation created or moved elsewhere may shadow what it resolves to.
			if (schema !== undefined) rels.set(relKey(undefined, o.relname), [undefined, o.relname]);
		}
		const fc = o.FuncCall as PgNode | undefined;
		if (fc && Array.isArray(fc.funcname)) funcs.add(funcName(fc));
		const cr = o.ColumnRef as PgNode | undefined;
		if (cr && Array.isArray(cr.fields)) for (const n of strings(cr.fields.slice(1))) if (n) fieldNames.add(n);
		const ind = o.A_Indirection as PgNode | undefined;
		if (ind) for (const n of strings(ind.indirection)) if (n) fieldNames.add(n);
		const ae = o.A_Expr as PgNode | undefined;
		if (ae) for (const op of operatorNames(ae)) ops.add(op);
		const cf = o.CreateFunctionStmt as PgNode | undefined;
		if (cf) names.add(lastName(cf.funcname));
		const ds = o.DefineStmt as PgNode | undefined;
		if (ds) {
			if (ds.kind === "OBJECT_AGGREGATE") names.add(lastName(ds.defnames));
			for (const f of definedFunctions(ds)) funcs.add(f);
		}
		const cc = o.CreateCastStmt as PgNode | undefined;
		const castFn = (cc?.func as PgNode | undefined)?.objname;
		if (Array.isArray(castFn)) funcs.add(strings(castFn).map((x) => x.toLowerCase()).join("."));
		for (const v of Object.values(o)) if (v && typeof v === "object") stack.push(v);
	}
}

function lastName(list: unknown): string {
	const parts = strings(list);
	return (parts[parts.length - 1] ?? "").toLowerCase();
}

function funcName(fc: PgNode): string {
	return (fc.funcname as unknown[])
		.map((x) => ((x as { String?: { sval?: string } }).String?.sval ?? "").toLowerCase())
		.join(".");
}

const MAX_VIEW_DEPTH = 8;

async function prefetch(trees: PgNode[], fields: ResultField[], catalog: Catalog): Promise<Resolved> {
	const r: Resolved = {
		relations: new Map(),
		byOid: new Map(),
		builtin: new Map(),
		builtinNames: new Map(),
		builtinOps: new Map(),
		fieldCalls: new Map(),
		uncommittedDdl: catalog.uncommittedDdl === true,
		castTargets: new Set(),
		implicitCasts: false,
	};
	const fnCatalog = catalog as Partial<FunctionCatalog>;
	if (typeof fnCatalog.userCasts === "function") {
		// unknown when the catalog fails: every cast may run code, anywhere
		const casts = await fnCatalog.userCasts().catch(() => ({ targets: [], implicit: true }));
		for (const t of casts.targets) r.castTargets.add(t);
		r.implicitCasts = casts.implicit;
	}
	let pendingTrees = trees;
	const oids = new Set<number>();
	for (const f of fields) if (f.tableOid) oids.add(f.tableOid);
	for (let depth = 0; depth <= MAX_VIEW_DEPTH; depth++) {
		const refs: Refs = { rels: new Map(), funcs: new Set(), names: new Set(), ops: new Set(), fieldNames: new Set() };
		for (const t of pendingTrees) collectRefs(t, refs);
		const todoRels = [...refs.rels].filter(([k]) => !r.relations.has(k));
		const todoOids = [...oids].filter((o) => !r.byOid.has(o));
		oids.clear();
		const todoFuncs = typeof fnCatalog.isBuiltinFunction === "function" ? [...refs.funcs].filter((f) => !r.builtin.has(f)) : [];
		const todoNames = typeof fnCatalog.isBuiltinFunctionName === "function" ? [...refs.names].filter((f) => !r.builtinNames.has(f)) : [];
		const todoOps = typeof fnCatalog.isBuiltinOperator === "function" ? [...refs.ops].filter((f) => !r.builtinOps.has(f)) : [];
		const todoFields = typeof fnCatalog.mayBeUserFunction === "function" ? [...refs.fieldNames].filter((f) => !r.fieldCalls.has(f)) : [];
		if (todoRels.length === 0 && todoOids.length === 0 && todoFuncs.length === 0 && todoNames.length === 0 && todoOps.length === 0 && todoFields.length === 0) break;
		await Promise.all([
			...todoRels.map(async ([k, [schema, name]]) => {
				r.relations.set(k, (await catalog.relation(schema, name).catch(() => undefined)) ?? null);
			}),
			...todoOids.map(async (oid) => {
				r.byOid.set(oid, (await catalog.relationByOid(oid).catch(() => undefined)) ?? null);
			}),
			...todoFuncs.map(async (f) => {
				const parts = f.split(".");
				const name = parts.pop()!;
				const schema = parts.pop();
				r.builtin.set(f, await fnCatalog.isBuiltinFunction!(schema, name).catch(() => false));
			}),
			...todoNames.map(async (n) => {
				// unknown when the catalog fails: taken as a built-in's name (refused)
				r.builtinNames.set(n, await fnCatalog.isBuiltinFunctionName!(n).catch(() => true));
			}),
			...todoOps.map(async (op) => {
				const dot = op.lastIndexOf(".");
				const schema = dot >= 0 ? op.slice(0, dot) : undefined;
				r.builtinOps.set(op, await fnCatalog.isBuiltinOperator!(schema, op.slice(dot + 1)).catch(() => false));
			}),
			...todoFields.map(async (n) => {
				// unknown when the catalog fails: taken as a call
				r.fieldCalls.set(n, await fnCatalog.mayBeUserFunction!(n).catch(() => true));
			}),
		]);
		// Views found at this level: their definitions are walked at the next.
		const next: PgNode[] = [];
		const newRels = [...todoRels.map(([k]) => r.relations.get(k)), ...todoOids.map((o) => r.byOid.get(o))];
		for (const rel of newRels) {
			if (rel?.viewDefinition) {
				const tree = viewTree(rel);
				if (tree) next.push(tree);
			}
		}
		pendingTrees = next;
	}
	return r;
}

/** Statements that change no relation or routine (everything else counts as DDL below). */
const NOT_DDL = new Set([
	"SelectStmt", "InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt", "ExplainStmt", "VariableShowStmt",
	"VariableSetStmt", "TransactionStmt", "PrepareStmt", "ExecuteStmt", "DeallocateStmt", "DeclareCursorStmt",
	"FetchStmt", "ClosePortalStmt", "CopyStmt", "ListenStmt", "UnlistenStmt", "NotifyStmt", "DiscardStmt",
	"LockStmt", "CheckPointStmt", "VacuumStmt",
]);

/** Object types of routines a RENAME or SET SCHEMA may move under a new name. */
const ROUTINE_RENAMES = new Set(["OBJECT_FUNCTION", "OBJECT_PROCEDURE", "OBJECT_ROUTINE", "OBJECT_AGGREGATE"]);

/**
 * Several statements analysed together (a multi-statement Query before it runs, for the masking
 * pre-check of its writes): DDL among them runs before the later ones, but the catalog answers as
 * before it. `CREATE FUNCTION g(text) ... AS 'SELECT string_agg(phone, ...) FROM customers';
 * INSERT INTO dst SELECT ('a'::text).g` copied every phone into a clean table: `.g` was no
 * routine yet. A name a statement of the text creates is a call, any name when routines are made
 * by code the text does not show (CALL, DO, extensions), and relations count as changed.
 */
function sameTextDdl(trees: PgNode[], r: Resolved): void {
	if (trees.length < 2) return;
	const created = new Set<string>();
	let anyName = false;
	for (const t of trees) {
		const key = Object.keys(t)[0] ?? "";
		const b = (t as Record<string, PgNode>)[key];
		if (!b || NOT_DDL.has(key)) continue;
		r.uncommittedDdl = true;
		if (key === "CreateFunctionStmt") created.add(strings(b.funcname).pop() ?? "");
		else if (key === "DefineStmt") created.add(strings(b.defnames).pop() ?? "");
		else if (key === "RenameStmt" && ROUTINE_RENAMES.has(String(b.renameType))) created.add(String(b.newname ?? ""));
		else if (key === "AlterObjectSchemaStmt" && ROUTINE_RENAMES.has(String(b.objectType))) anyName = true;
		else if (key === "CallStmt" || key === "DoStmt" || key === "CreateExtensionStmt" || key === "AlterExtensionStmt" || key === "AlterExtensionContentsStmt") anyName = true;
	}
	for (const n of r.fieldCalls.keys()) if (anyName || created.has(n)) r.fieldCalls.set(n, true);
}

/**
 * A view's definition as a tree, its bare relation names marked (printedBare). The catalog prints
 * definitions with pg_catalog alone in the search_path, so a relation name it leaves bare is
 * pg_catalog's (or a CTE's): read with the session's own search_path, a client that started with
 * `search_path = s12, pg_catalog` (s12 holding a clean table named `pg_stats`) had a DBA's view
 * over pg_catalog.pg_stats analysed as over s12's and read the phones in its sample values raw.
 * The tree is a copy: the parser's cache shares trees with statements clients send.
 */
function viewTree(rel: RelationInfo): PgNode | undefined {
	if (!rel.viewDefinition) return undefined;
	const a = analyzeSql(rel.viewDefinition);
	if (!a.ok || a.statements.length !== 1) return undefined;
	const shared = statementTree(a.statements[0]!);
	if (!shared) return undefined;
	const tree = structuredClone(shared);
	const stack: unknown[] = [tree];
	while (stack.length > 0) {
		const n = stack.pop();
		if (!n || typeof n !== "object") continue;
		if (Array.isArray(n)) {
			for (const x of n) stack.push(x);
			continue;
		}
		const o = n as PgNode;
		if (typeof o.relname === "string" && typeof o.schemaname !== "string") printedBare.add(o);
		for (const v of Object.values(o)) if (v && typeof v === "object") stack.push(v);
	}
	return tree;
}

/** RangeVars of printed view definitions whose name was left bare: pg_catalog's unless a CTE's. */
const printedBare = new WeakSet<object>();

/** The schema a RangeVar names: its own, or pg_catalog for a bare name in a printed definition. */
function rangeVarSchema(rv: PgNode): string | undefined {
	if (typeof rv.schemaname === "string") return rv.schemaname;
	return printedBare.has(rv) ? "pg_catalog" : undefined;
}

/**
 * The statements of a SQL-language function or procedure body (`AS 'insert ...'` or `BEGIN ATOMIC
 * ... END`), or undefined for other languages (their bodies are refused for non-admin grants by the
 * guardrails' opaque-code rule) and bodies that do not parse (refused as unknown).
 */
const functionBodies = new WeakMap<PgNode, PgNode[] | null>();
function functionBody(b: PgNode): PgNode[] | undefined {
	const memo = functionBodies.get(b);
	if (memo !== undefined) return memo ?? undefined;
	let out: PgNode[] | null = null;
	const opts = (Array.isArray(b.options) ? b.options : []).map((o) => (o as { DefElem?: PgNode }).DefElem ?? {});
	const lang = opts.find((d) => d.defname === "language");
	const language = lang ? String((lang.arg as { String?: { sval?: string } } | undefined)?.String?.sval ?? "").toLowerCase() : "sql";
	if (language === "sql") {
		out = [];
		if (b.sql_body) collectStatements(b.sql_body, out);
		const as = opts.find((d) => d.defname === "as");
		const items = ((as?.arg as { List?: { items?: unknown[] } } | undefined)?.List?.items ?? []) as { String?: { sval?: string } }[];
		for (const item of items) {
			const text = item.String?.sval;
			if (text === undefined) continue;
			const a = analyzeSql(text);
			if (!a.ok) {
				out = null;
				break;
			}
			for (const st of a.statements) {
				const tree = statementTree(st);
				if (tree) out.push(tree);
			}
		}
	}
	functionBodies.set(b, out);
	return out ?? undefined;
}

function collectStatements(node: unknown, out: PgNode[]): void {
	if (Array.isArray(node)) {
		for (const x of node) collectStatements(x, out);
		return;
	}
	if (!node || typeof node !== "object") return;
	const keys = Object.keys(node);
	if (keys.length === 1 && keys[0] === "List") collectStatements((node as { List: { items?: unknown[] } }).List.items, out);
	else if (keys.length === 1 && keys[0]!.endsWith("Stmt")) out.push(node as PgNode);
}

// ---------------------------------------------------------------------------------------------
// Scopes

interface ScopeItem {
	alias: string;
	/** Known columns in order, or undefined when the item's columns are unknown. */
	columns?: { name: string; taint: Taint }[];
	/** Taint of any column when columns are unknown, and of the whole row. */
	unknown: Taint;
	all: Taint;
	/**
	 * Not expanded by a bare `*`: a join alias (`(a JOIN b) AS j`, whose columns are a's and b's),
	 * or the two sides of a USING/NATURAL join (expanded through their merged item instead).
	 */
	starHidden?: boolean;
	/** Not found by its alias: an item inside a join that has an alias of its own (see fromItem). */
	aliasHidden?: boolean;
	/** Its columns not found unqualified either (reached through the join's alias instead). */
	colsHidden?: boolean;
	/**
	 * The relation of a FROM item written without an alias (schema undefined when the catalog does
	 * not know it): what a schema-qualified reference (`public.customers.phone`) finds, by relation,
	 * not by alias (see #itemsByAlias).
	 */
	relation?: { schema: string | undefined; name: string };
	/**
	 * A table (partitioned, materialized view, foreign table): it has system columns (`xmin`,
	 * `ctid`...). Subqueries, CTEs, functions and views have none, so those names are theirs only
	 * as real output columns.
	 */
	systemColumns?: boolean;
	/** Inside a JOIN: PostgreSQL reaches its columns unqualified through the join, which has no system columns. */
	inJoin?: boolean;
}

interface Scope {
	items: ScopeItem[];
	ctes: Map<string, Outputs>;
	parent?: Scope;
	/**
	 * Where this level's FROM list starts in `items` (after an UPDATE's or DELETE's target): the items
	 * from there on are not seen by a subquery in FROM without LATERAL (see withoutItems).
	 */
	fromStart?: number;
}

function newScope(parent: Scope | undefined): Scope {
	const s: Scope = { items: [], ctes: new Map() };
	if (parent) s.parent = parent;
	return s;
}

/**
 * The scope as a subquery in FROM without LATERAL sees it: the same WITH names and outer levels, not
 * the FROM items of this level (a DML target before them stays, as it was).
 */
function withoutItems(scope: Scope): Scope {
	const s: Scope = { items: scope.items.slice(0, scope.fromStart ?? scope.items.length), ctes: scope.ctes };
	if (scope.parent) s.parent = scope.parent;
	return s;
}

function findCte(scope: Scope | undefined, name: string): Outputs | undefined {
	for (let s = scope; s; s = s.parent) {
		const o = s.ctes.get(name);
		if (o) return o;
	}
	return undefined;
}

function itemFromOutputs(alias: string, o: Outputs, colnames: string[]): ScopeItem {
	const all = unionAll(o);
	if (o.rest) return { alias, unknown: all, all: derive(all) };
	const columns = o.names.map((n, i) => ({ name: colnames[i] ?? n, taint: o.taints[i] ?? CLEAN }));
	return { alias, columns, unknown: CLEAN, all: derive(all) };
}

/** Object types of relations whose renaming or moving matters to masking (column renames included). */
const RELATION_OBJECTS = new Set(["OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_FOREIGN_TABLE", "OBJECT_COLUMN"]);

/** Object types of functions and operators, whose names masking trusts (see #renames). */
const ROUTINE_OBJECTS = new Set(["OBJECT_FUNCTION", "OBJECT_PROCEDURE", "OBJECT_ROUTINE", "OBJECT_AGGREGATE", "OBJECT_OPERATOR"]);

/** CHECK expressions among constraints (a table's elements, a column's or a domain's constraints). */
function checkExpressions(constraints: unknown): unknown[] {
	const out: unknown[] = [];
	for (const c of Array.isArray(constraints) ? constraints : []) {
		const k = (c as { Constraint?: PgNode }).Constraint;
		if (k && k.contype === "CONSTR_CHECK" && k.raw_expr) out.push(k.raw_expr);
	}
	return out;
}

/** DEFAULT and GENERATED expressions among a column's (or domain's) constraints. */
function defaultExpressions(constraints: unknown): unknown[] {
	const out: unknown[] = [];
	for (const c of Array.isArray(constraints) ? constraints : []) {
		const k = (c as { Constraint?: PgNode }).Constraint;
		if (k && (k.contype === "CONSTR_DEFAULT" || k.contype === "CONSTR_GENERATED") && k.raw_expr) out.push(k.raw_expr);
	}
	return out;
}

/** The name PostgreSQL gives a table function in FROM written without an alias. */
const TABLE_FUNCTION_NAMES: Record<string, string> = { RangeTableFunc: "xmltable", JsonTable: "json_table" };

/**
 * System columns of tables: never in the catalog's column lists. (`oid` is an ordinary column since
 * PostgreSQL 12, listed where a catalog table has it.)
 */
const SYSTEM_COLUMNS = new Set(["ctid", "xmin", "xmax", "cmin", "cmax", "tableoid"]);

/** Relation kinds with system columns (views have none). */
const SYSTEM_COLUMN_KINDS = new Set<RelationInfo["kind"]>(["table", "partitioned", "matview", "foreign"]);

const STATS_RELATIONS = new Set(["pg_stats", "pg_stats_ext", "pg_stats_ext_exprs", "pg_statistic", "pg_statistic_ext_data"]);

/**
 * The session's open cursors and prepared statements by name and text, and its memory contexts
 * (a cached plan's is named by its query text): code may make these at run time (`OPEN c FOR
 * EXECUTE q` in a DBA's helper given `'SELECT ' || quote_literal(phone)`), and `SELECT statement
 * FROM pg_cursors` then read the phone. Every column is opaque, as the functions behind the views are.
 */
const SESSION_TEXT_RELATIONS = new Set(["pg_cursors", "pg_prepared_statements", "pg_backend_memory_contexts"]);
const SESSION_TEXT_FUNCTIONS = new Set(["pg_cursor", "pg_prepared_statement", "pg_get_backend_memory_contexts"]);

// ---------------------------------------------------------------------------------------------
// The analyser

class Analyzer {
	touched: Taint = CLEAN;
	block: { rule: string; message: string } | undefined;
	/** How many things the analysis could not see into (non-built-in functions, unknown relations). */
	unprovable = 0;
	readonly #viewMemo = new Map<number, { out: Outputs; unprovable: boolean } | "pending">();
	#depth = 0;

	constructor(
		readonly rules: RuleIndex,
		readonly resolved: Resolved,
	) {}

	touch(t: Taint): void {
		if (isTainted(t)) this.touched = union(this.touched, t);
	}

	#enter(): void {
		if (++this.#depth > 2000) throw new Error("query nesting too deep");
	}
	#leave(): void {
		this.#depth--;
	}

	/** Output columns of a statement node that returns rows (SELECT, DML RETURNING...). */
	statement(node: PgNode, parent: Scope | undefined): Outputs {
		this.#enter();
		try {
			const key = Object.keys(node)[0];
			const b = key ? (node[key] as PgNode) : undefined;
			if (!key || !b) return NO_OUTPUTS;
			switch (key) {
				case "SelectStmt":
					return this.select(b, parent);
				case "InsertStmt":
					return this.insert(b, parent);
				case "UpdateStmt":
					return this.update(b, parent);
				case "DeleteStmt":
					return this.delete(b, parent);
				case "MergeStmt":
					return this.merge(b, parent);
				case "CreateTableAsStmt": {
					const o = this.statement(b.query as PgNode, parent);
					if (isTainted(unionAll(o))) this.#blockCopy("CREATE TABLE AS / SELECT INTO");
					this.#shadows((b.into as PgNode | undefined)?.rel as PgNode | undefined);
					return NO_OUTPUTS;
				}
				case "CreateStmt":
					this.#shadows(b.relation as PgNode | undefined);
					this.#columnDefaults(b, parent);
					return NO_OUTPUTS;
				case "CreateDomainStmt":
				case "AlterDomainStmt": {
					// A domain's default fills every column of that type an INSERT leaves out.
					const name = strings(key === "CreateDomainStmt" ? b.domainname : b.typeName).join(".");
					const scope = newScope(parent);
					const exprs = key === "CreateDomainStmt" ? defaultExpressions(b.constraints) : b.subtype === "T" && b.def ? [b.def] : [];
					if (exprs.some((e) => isTainted(this.expr(e, scope)))) this.#blockCopy(`the default of domain ${name}`);
					// Its CHECK runs on every value cast to it, masked ones included (`phone::d`):
					// `CHECK (pg_try_advisory_lock(3, ascii(substr(VALUE, 3, 1))))` put phone digits in
					// pg_locks. VALUE is taken as masked, so state functions given it are refused.
					const checks = key === "CreateDomainStmt" ? checkExpressions(b.constraints) : b.subtype === "C" ? checkExpressions([b.def]) : [];
					const value = opaque(`the value of domain ${name} (masked values can be cast to it)`);
					scope.items.push({ alias: "", columns: [{ name: "value", taint: value }], unknown: CLEAN, all: value, starHidden: true });
					for (const e of checks) this.touch(this.expr(e, scope));
					return NO_OUTPUTS;
				}
				case "DefineStmt":
					this.#define(b);
					return NO_OUTPUTS;
				case "CreateCastStmt": {
					const fn = (b.func as PgNode | undefined)?.objname;
					if (Array.isArray(fn)) this.#boundFunction("CREATE CAST", strings(fn).map((x) => x.toLowerCase()).join("."), false);
					return NO_OUTPUTS;
				}
				case "ViewStmt": {
					const rv = b.view as PgNode;
					const o = this.statement(b.query as PgNode, parent);
					const existing = this.#relationOf(rv);
					// The catalog is read on another connection: it does not see a view replaced in an
					// open transaction, or a temporary one, and caches definitions for a while. A view
					// over masked data that the catalog would not follow is refused.
					if (b.replace === true && existing && existing.kind !== "table") {
						if (isTainted(unionAll(o)) || isTainted(unionAll(this.relationOutputs(existing, targetName(rv))))) {
							this.block ??= {
								rule: "mask:replace-view",
								message: `replacing view ${targetName(rv)} is not allowed while masking rules apply: it reads masked columns`,
							};
						}
					} else if (rv.relpersistence === "t" && isTainted(unionAll(o))) {
						this.#blockCopy(`temporary view ${targetName(rv)}`);
					}
					this.#shadows(rv, b.replace === true);
					return NO_OUTPUTS;
				}
				case "CopyStmt":
					return this.copy(b, parent);
				case "ExplainStmt": {
					// The plan text carries no row data, except constants the planner folded: an immutable
					// user function is evaluated at plan time and printed (`Output: '+1-555-0101'::text`).
					// So the output is masked when the statement holds anything the analysis cannot see
					// into. ANALYZE runs the query: it is also checked for writes of masked data.
					const before = this.unprovable;
					const inner = b.query as PgNode | undefined;
					if (inner) this.statement(inner, parent);
					if (this.unprovable > before || !inner || Object.keys(inner)[0] === "ExecuteStmt") {
						return { names: ["QUERY PLAN"], taints: [opaque("EXPLAIN shows constants folded from functions the analysis cannot see into")] };
					}
					return NO_OUTPUTS;
				}
				case "PrepareStmt":
				case "DeclareCursorStmt":
					if (b.query) this.statement(b.query as PgNode, parent);
					return NO_OUTPUTS;
				case "RenameStmt":
				case "AlterObjectSchemaStmt":
					this.#renames(key, b);
					return NO_OUTPUTS;
				case "AlterTableStmt": {
					// Generated columns, defaults, USING expressions over masked columns copy their values.
					const scope = newScope(parent);
					if (b.relation) scope.items.push(this.rangeVar(b.relation as PgNode, scope));
					if (isTainted(this.expr(b.cmds, scope))) this.#blockCopy(`ALTER TABLE ${targetName(b.relation as PgNode)}`);
					this.#hierarchy(b);
					this.#dropColumns(b);
					return NO_OUTPUTS;
				}
				case "RuleStmt": {
					// Rule actions see NEW and OLD rows of the relation.
					const scope = newScope(parent);
					const rv = b.relation as PgNode;
					for (const alias of ["new", "old"]) scope.items.push({ ...this.rangeVar(rv, scope), alias, relation: undefined });
					this.touch(this.expr(b.whereClause, scope));
					for (const a of (b.actions as PgNode[]) ?? []) {
						const o = this.statement(a, scope);
						// ON SELECT DO INSTEAD turns an empty table into a view (up to PostgreSQL 15), which
						// the catalog, read on another connection, does not see in the open transaction:
						// `CREATE RULE "_RETURN" AS ON SELECT TO rt DO INSTEAD SELECT phone AS x FROM
						// customers; SELECT x || '' FROM rt` showed raw phones (rt's x looked clean).
						if (b.event === "CMD_SELECT" && isTainted(unionAll(o))) {
							this.block ??= {
								rule: "mask:replace-view",
								message: `a rule ON SELECT turning ${targetName(rv)} into a view over masked columns is not allowed while masking rules apply: use CREATE VIEW`,
							};
						} else if (isTainted(unionAll(o))) {
							// A SELECT action (or an action's RETURNING) sends its rows to whoever runs the
							// INSERT/UPDATE/DELETE, whose text says nothing about them: `ON INSERT TO t DO
							// INSTEAD SELECT phone || '' FROM customers` made `INSERT INTO t VALUES (1)`
							// return raw phones.
							this.block ??= {
								rule: "mask:rule-output",
								message: `a rule on ${targetName(rv)} whose action returns masked columns is not allowed while masking rules apply: its rows would reach whoever fires it, unmasked`,
							};
						}
					}
					return NO_OUTPUTS;
				}
				case "VariableSetStmt":
					if (String(b.name ?? "").toLowerCase() === "search_path") this.#blockSearchPath();
					return NO_OUTPUTS;
				case "CreateFunctionStmt": {
					this.#functionName(strings(b.funcname), b.is_procedure === true ? "procedure" : "function");
					this.#functionBody(b, parent);
					// Parameter defaults run in every call that leaves them out: `fd2(a bool DEFAULT
					// pg_try_advisory_lock(9, ascii(substr(lf(1), 2, 1))))` then `SELECT fd2()` put a
					// phone character in pg_locks.
					const params = Array.isArray(b.parameters) ? b.parameters : [];
					this.touch(this.expr(params.map((p) => (p as { FunctionParameter?: PgNode }).FunctionParameter?.defexpr), newScope(parent)));
					return NO_OUTPUTS;
				}
				case "CreateTrigStmt": {
					this.#triggerArguments(b);
					// WHEN runs on every row the trigger fires for: `WHEN (pg_try_advisory_lock(2,
					// ascii(substr(NEW.phone, 2, 1))))` put phone digits in pg_locks at each UPDATE.
					const scope = newScope(parent);
					for (const alias of ["new", "old"]) scope.items.push({ ...this.rangeVar(b.relation as PgNode, scope), alias, relation: undefined });
					this.touch(this.expr(b.whenClause, scope));
					return NO_OUTPUTS;
				}
				case "CreatePolicyStmt":
				case "AlterPolicyStmt": {
					// Row security expressions run on every row the policy covers.
					const scope = newScope(parent);
					scope.items.push(this.rangeVar(b.table as PgNode, scope));
					this.touch(this.expr([b.qual, b.with_check], scope));
					return NO_OUTPUTS;
				}
				default:
					// Any other statement's expressions run too (CALL's arguments, EXECUTE's parameters
					// where it is not resolved, ...): a state function given a masked value is refused.
					this.touch(this.children(b, newScope(parent)));
					return NO_OUTPUTS;
			}
		} finally {
			this.#leave();
		}
	}

	/** Taint of `$n` parameters: set while a function body is analysed, clean elsewhere (PREPARE). */
	#paramTaint: Taint | undefined;

	/**
	 * Runs `fn` (the analysis of a prepared body) with `$n` carrying the taint of EXECUTE's own
	 * parameter expressions: `EXECUTE s(lf(1))` over `PREPARE s(text) AS SELECT $1` returned what the
	 * function lf read from customers, unmasked, as `$1` was clean.
	 */
	withParams<T>(params: unknown, fn: () => T): T {
		const t = this.expr(params, newScope(undefined));
		this.touch(t);
		const saved = this.#paramTaint;
		if (isTainted(t)) this.#paramTaint = saved ? union(saved, t) : t;
		try {
			return fn();
		} finally {
			this.#paramTaint = saved;
		}
	}

	/**
	 * A SQL function's body runs later, on whatever its callers pass: `insert into audit_copy select
	 * ... phone from customers` inside a function, or `set_config('application_name', $1, false)`
	 * called as f(phone), copied masked values where masking cannot follow. The body is analysed
	 * like the statement itself, with its parameters (as `$n` and by name) taken as masked.
	 */
	#functionBody(b: PgNode, parent: Scope | undefined): void {
		const body = functionBody(b);
		if (!body) return;
		const fname = strings(Array.isArray(b.funcname) ? b.funcname : []).join(".");
		const param = opaque(`parameter of function ${fname} (its callers can pass masked values)`);
		const scope = newScope(parent);
		const params = (Array.isArray(b.parameters) ? b.parameters : [])
			.map((p) => String(((p as { FunctionParameter?: PgNode }).FunctionParameter?.name as string | undefined) ?? "").toLowerCase())
			.filter((n) => n !== "");
		scope.items.push({ alias: fname.slice(fname.lastIndexOf(".") + 1), columns: params.map((name) => ({ name, taint: param })), unknown: CLEAN, all: param, starHidden: true });
		const saved = this.#paramTaint;
		this.#paramTaint = param;
		try {
			for (const st of body) this.statement(st, scope);
		} finally {
			this.#paramTaint = saved;
		}
	}

	/**
	 * Built-in trigger functions take column names as arguments and copy those columns elsewhere in
	 * the row: `tsvector_update_trigger(tsv, 'pg_catalog.simple', phone)` on customers put every
	 * phone, spelled out, in a new tsvector column no rule names. A trigger on a relation with masked
	 * columns is refused when one of its arguments names one of them.
	 */
	#triggerArguments(b: PgNode): void {
		const rv = b.relation as PgNode | undefined;
		const rel = rv ? this.#relationOf(rv) : undefined;
		if (!rel) return;
		for (const arg of strings(Array.isArray(b.args) ? b.args : [])) {
			// compared case-insensitively: conservative for columns whose names need quoting
			const col = rel.columns.find((c) => c.name.toLowerCase() === arg.toLowerCase());
			if (col && this.#columnRule(rel, col.name).rule !== undefined) {
				this.#blockCopy(`a trigger on ${targetName(rv!)} given the masked column ${col.name}`);
				return;
			}
		}
	}

	/**
	 * Masking trusts a function or operator by name when every one of that name was created with
	 * the server, and the catalog is read on another connection. A function created under a
	 * built-in's name (`CREATE FUNCTION lower(bigint) ... AS 'SELECT phone ...'` in an open
	 * transaction, then `SELECT lower(8::bigint)`: the catalog still saw only pg_catalog.lower) or in
	 * pg_catalog would be called where masking sees a built-in: refused while masking applies.
	 */
	#functionName(parts: string[], what: string): void {
		const name = (parts[parts.length - 1] ?? "").toLowerCase();
		const schema = parts.length > 1 ? parts[parts.length - 2]!.toLowerCase() : undefined;
		const builtinName = this.resolved.builtinNames.get(name) ?? PURE_BUILTINS.has(name);
		if (schema === "pg_catalog" || builtinName) {
			this.block ??= {
				rule: "mask:shadow",
				message: `creating ${what} ${parts.join(".")} is not allowed while masking rules apply: ${
					schema === "pg_catalog" ? "functions in pg_catalog are taken for built-ins" : "a built-in function has that name"
				}, and masking could not tell which one a call reaches`,
			};
		}
	}

	/**
	 * CREATE OPERATOR and CREATE CAST make PostgreSQL call a function where the statement text shows
	 * no call: `CREATE OPERATOR ### (function = lf, rightarg = int)` then `SELECT ### 1`, or `CREATE
	 * CAST (int4 AS text) WITH FUNCTION lf(int)` then `SELECT 5::text`, returned what lf read from
	 * customers, unmasked (an implicit cast is not even spelled). While masking applies, the function
	 * must be a built-in that reads no table and runs no SQL text.
	 */
	#boundFunction(what: string, fn: string, userFunctions: boolean): void {
		const risk = functionRisk(fn);
		const builtin = this.#builtin(fn);
		// A state function bound this way gets masked values where no call of it is written:
		// `CREATE OPERATOR ~~~ (function = pg_try_advisory_lock, ...)` then `SELECT 7 ~~~
		// ascii(substr(phone, 1, 1))` put phone characters in pg_locks, and `CREATE AGGREGATE
		// leakagg(text, bool) (sfunc = set_config, stype = text, initcond = 'application_name')` then
		// `SELECT leakagg(phone, false)` reported a phone as application_name.
		const state = STATE_FUNCTIONS.has(fn.slice(fn.lastIndexOf(".") + 1));
		if ((!builtin && !userFunctions) || risk !== undefined || state) {
			this.block ??= {
				rule: "mask:hidden-call",
				message: `${what} with function ${fn} is not allowed while masking rules apply: ${
					risk ? `it ${risk.detail}` : state ? "it keeps its arguments where masking cannot follow them" : "it is not a built-in function"
				}, and its calls through an operator, cast or aggregate would be invisible to masking`,
			};
		}
	}

	/**
	 * CREATE OPERATOR binds a function (see #boundFunction); CREATE AGGREGATE names one
	 * (#functionName) and binds state functions. A user function bound by an aggregate is called as
	 * the aggregate (a user function: opaque), and its body was checked when it was created.
	 */
	#define(b: PgNode): void {
		const kind = String(b.kind ?? "");
		const name = strings(b.defnames).join(".");
		if (kind === "OBJECT_AGGREGATE") {
			this.#functionName(strings(b.defnames), "aggregate");
			for (const f of definedFunctions(b)) this.#boundFunction(`CREATE AGGREGATE ${name}`, f, true);
		}
		if (kind === "OBJECT_OPERATOR") for (const f of definedFunctions(b)) this.#boundFunction(`CREATE OPERATOR ${name}`, f, false);
	}

	/**
	 * Column defaults and generated columns of a new table run at every INSERT that leaves the column
	 * out: `CREATE TABLE t1 (a int, b text DEFAULT lf(1))` (lf reading customers.phone), then
	 * `INSERT INTO t1 (a) VALUES (1)`, stored a phone in t1.b, which no rule names. ALTER TABLE ...
	 * SET DEFAULT was already checked; CREATE TABLE was not.
	 */
	#columnDefaults(b: PgNode, parent: Scope | undefined): void {
		const rv = b.relation as PgNode;
		const written = targetName(rv);
		// The new table as masking will see it: its own columns and its parents' (INHERITS, PARTITION
		// OF), named by its rules and its parents'. A generated column computes from columns of its
		// row: `CREATE TABLE child2 (x text GENERATED ALWAYS AS (phone || '') STORED) INHERITS
		// (customers)`, then `INSERT INTO child2 SELECT * FROM customers` (child2.phone is masked, so
		// that copy is allowed) stored raw phones in x, which no rule names.
		const ancestors: RelationName[] = [];
		const names: string[] = [];
		let unknownParent = false;
		for (const p of Array.isArray(b.inhRelations) ? b.inhRelations : []) {
			const prv = (p as { RangeVar?: PgNode }).RangeVar;
			const prel = prv ? this.#relationOf(prv) : undefined;
			if (!prel) {
				unknownParent = true;
				continue;
			}
			ancestors.push({ schema: prel.schema, name: prel.name }, ...(prel.ancestors ?? []));
			for (const c of prel.columns) if (c.attnum > 0 && !names.includes(c.name)) names.push(c.name);
		}
		const elts = Array.isArray(b.tableElts) ? b.tableElts : [];
		for (const el of elts) {
			const cd = (el as { ColumnDef?: PgNode }).ColumnDef;
			if (cd && typeof cd.colname === "string" && !names.includes(cd.colname)) names.push(cd.colname);
		}
		const rel: RelationInfo = {
			oid: 0,
			schema: typeof rv.schemaname === "string" ? rv.schemaname : "public",
			name: String(rv.relname ?? ""),
			kind: "table",
			columns: names.map((name, i) => ({ name, attnum: i + 1 })),
			...(ancestors.length > 0 ? { ancestors } : {}),
		};
		const columns = names.map((name) => {
			const { rule, keys } = this.#columnRule(rel, name);
			return { name, taint: rule ? ({ cols: new Set(keys.filter((k) => this.rules.ruleFor(k) !== undefined)), derived: false } as Taint) : CLEAN };
		});
		const unknown = unknownParent && this.rules.columnRules.length > 0 ? opaque(`a parent of ${written} the catalog does not know`) : CLEAN;
		const own = newScope(parent);
		own.items.push({ alias: rel.name, columns, unknown, all: derive(columns.reduce((t, c) => union(t, c.taint), unknown)) });
		const checks: unknown[] = checkExpressions(elts);
		for (const el of elts) {
			const cd = (el as { ColumnDef?: PgNode }).ColumnDef;
			if (!cd) continue;
			for (const e of defaultExpressions(cd.constraints)) {
				const t = this.expr(e, own);
				if (isTainted(t) && !this.#destCovers(rel, String(cd.colname), t)) {
					this.#blockCopy(`the default or generated value of ${written}.${String(cd.colname)}`);
				}
			}
			checks.push(...checkExpressions(cd.constraints));
		}
		// CHECK constraints run on every row written later, which may hold masked values (a child of
		// customers takes its rows: `CREATE TABLE c (CHECK (pg_try_advisory_lock(hashtext(phone))))
		// INHERITS (customers)`): columns are taken as masked, so state functions given them are refused.
		const row = opaque(`a column of ${written} (rows written later may hold masked values)`);
		const scope = newScope(parent);
		scope.items.push({ alias: rel.name, unknown: row, all: row });
		for (const e of checks) this.touch(this.expr(e, scope));
	}

	#blockCopy(what: string): void {
		this.block ??= {
			rule: "mask:copy-masked-data",
			message: `${what} would copy masked columns where masking cannot follow them`,
		};
	}

	#blockSearchPath(): void {
		this.block ??= {
			rule: "mask:search-path",
			message: "changing search_path is not allowed while masking rules apply: it would change which tables the rules resolve to",
		};
	}

	/** Renaming or moving a relation (or schema) holding masked columns would let it escape its rule. */
	#renames(key: string, b: PgNode): void {
		const objType = String(b.renameType ?? b.objectType ?? "");
		if (ROUTINE_OBJECTS.has(objType)) {
			// `ALTER FUNCTION query_to_xml(text, bool, bool, text) RENAME TO harmless`, then
			// `SELECT harmless('select phone from customers', ...)`: masking knows functions that
			// run SQL text by name, and trusts built-ins by name. Moving one into pg_catalog, or renaming
			// one in an open transaction, changes what a name means where the catalog cannot see it.
			this.block ??= {
				rule: "mask:shadow",
				message: `${key === "RenameStmt" ? "renaming" : "moving"} a ${objType.slice(7).toLowerCase()} is not allowed while masking rules apply: masking knows functions and operators by name`,
			};
			return;
		}
		if (objType === "OBJECT_SCHEMA") {
			this.block ??= { rule: "mask:rename-masked", message: "renaming a schema is not allowed while masking rules apply" };
			return;
		}
		const rv = b.relation as PgNode | undefined;
		if (!rv) return;
		const rel = this.#relationOf(rv);
		const masked = rel
			? rel.columns.some((c) => this.#columnRule(rel, c.name).rule !== undefined) ||
				(RELATION_OBJECTS.has(String(b.relationType ?? objType)) && isTainted(unionAll(this.relationOutputs(rel, targetName(rv)))))
			: true; // unknown relation: cannot prove it holds no masked column
		// A relation renamed or moved to another schema can shadow another name (`orders` resolving to
		// a view over customers): the catalog, read on another connection, cannot follow that.
		const movesName = RELATION_OBJECTS.has(objType) && (key === "AlterObjectSchemaStmt" || objType !== "OBJECT_COLUMN");
		if (masked || movesName) {
			this.block ??= {
				rule: "mask:rename-masked",
				message: `${key === "RenameStmt" ? "renaming" : "moving"} ${targetName(rv)} is not allowed: it holds masked columns and would escape the masking rules`,
			};
		}
	}

	/**
	 * ATTACH PARTITION, INHERIT, DETACH PARTITION and NO INHERIT of a relation holding masked columns
	 * (under its own name or a parent's or child's) are refused while masking applies. Masking follows
	 * partitions and inheritance through the catalog's pg_inherits, which is read on another
	 * connection and cached: `ALTER TABLE customers INHERIT evil; SELECT email FROM evil` (evil's
	 * entry cached before, without children) would show customers' emails, and a detached partition
	 * would lose its parent's rules once the cache refreshed.
	 */
	#hierarchy(b: PgNode): void {
		if (!Array.isArray(b.cmds)) return;
		for (const cmd of b.cmds) {
			const ac = (cmd as { AlterTableCmd?: PgNode }).AlterTableCmd;
			const sub = String(ac?.subtype ?? "");
			let child: PgNode | undefined;
			let verb: string;
			if (sub === "AT_AttachPartition" || sub === "AT_DetachPartition" || sub === "AT_DetachPartitionFinalize") {
				child = ((ac?.def as { PartitionCmd?: PgNode } | undefined)?.PartitionCmd?.name as PgNode | undefined) ?? undefined;
				verb = sub === "AT_AttachPartition" ? "attaching" : "detaching";
			} else if (sub === "AT_AddInherit" || sub === "AT_DropInherit") {
				child = b.relation as PgNode | undefined;
				verb = sub === "AT_AddInherit" ? "adding a parent to" : "removing a parent of";
			} else continue;
			if (!child || typeof child.relname !== "string") continue;
			const rel = this.#relationOf(child);
			const masked = rel ? rel.columns.some((c) => this.#columnRule(rel, c.name).rule !== undefined) : this.rules.columnRules.length > 0;
			if (masked) {
				this.block ??= {
					rule: "mask:rename-masked",
					message: `${verb} ${targetName(child)} is not allowed while masking rules apply: it holds masked columns, and their rows would appear under another table's name`,
				};
			}
		}
	}

	/**
	 * DROP COLUMN of a relation holding masked columns is refused while masking applies. Every later
	 * column moves one place left, and the catalog, read on another connection, keeps the old column
	 * list until the change commits: in an open transaction, `ALTER TABLE customers DROP COLUMN id
	 * CASCADE, DROP COLUMN name; ALTER TABLE customers ADD COLUMN id int, ADD COLUMN name text`, then
	 * `SELECT * FROM (SELECT * FROM customers UNION ALL SELECT * FROM customers) u` (a set operation
	 * carries no column origin) put name's clean taint on the phone column: raw phones.
	 */
	#dropColumns(b: PgNode): void {
		if (!Array.isArray(b.cmds) || !b.relation) return;
		const drops = b.cmds.some((cmd) => (cmd as { AlterTableCmd?: PgNode }).AlterTableCmd?.subtype === "AT_DropColumn");
		if (!drops) return;
		const rv = b.relation as PgNode;
		const rel = this.#relationOf(rv);
		const masked = rel ? rel.columns.some((c) => this.#columnRule(rel, c.name).rule !== undefined) : this.rules.columnRules.length > 0;
		if (masked) {
			this.block ??= {
				rule: "mask:rename-masked",
				message: `dropping a column of ${targetName(rv)} is not allowed while masking rules apply: it holds masked columns, and the columns after the dropped one would move under the masking rules`,
			};
		}
	}

	/**
	 * A relation created under a name that already resolves to another relation (a temporary table
	 * or view, or one in a schema earlier in search_path) would change what the name means to the
	 * session but not to the catalog, which reads on its own connection: refused while masking applies.
	 * So is one created under the very name of a relation the catalog still sees (not `OR REPLACE`):
	 * it can only have been dropped earlier in this open transaction (or the statement is a no-op
	 * `IF NOT EXISTS`). `BEGIN; DROP TABLE mytab; CREATE VIEW public.mytab AS SELECT phone AS x FROM
	 * customers; SELECT x || '' FROM mytab` showed raw phones: the catalog analysed the dropped table.
	 */
	#shadows(rv: PgNode | undefined, replace = false): void {
		if (!rv || typeof rv.relname !== "string") return;
		const existing = this.resolved.relations.get(relKey(undefined, rv.relname));
		const schema = typeof rv.schemaname === "string" ? rv.schemaname : undefined;
		if (existing && (rv.relpersistence === "t" || schema === undefined || schema !== existing.schema)) {
			this.block ??= {
				rule: "mask:shadow",
				message: `creating ${targetName(rv)} is not allowed while masking rules apply: it would shadow ${existing.schema}.${existing.name} for this session, where masking could not follow`,
			};
			return;
		}
		const same = schema !== undefined ? this.resolved.relations.get(relKey(schema, rv.relname)) : existing;
		if (same && !replace) {
			this.block ??= {
				rule: "mask:shadow",
				message: `creating ${targetName(rv)} is not allowed while masking rules apply: masking reads the catalog on another connection, which still sees ${same.schema}.${same.name} (dropped in this transaction?) and would take the new relation for it; commit the DROP first`,
			};
		}
	}

	withClause(w: PgNode | undefined, scope: Scope): void {
		if (!w || !Array.isArray(w.ctes)) return;
		const recursive = w.recursive === true;
		if (recursive) {
			// In WITH RECURSIVE every name of the list is in scope in every query of it, also before
			// its own definition: `WITH RECURSIVE a AS (SELECT id FROM orders), orders AS (SELECT phone
			// || '' AS id FROM customers) SELECT id FROM a` reads the second CTE, not the table orders
			// (planned clean: raw phones). A name used before its definition is taken as opaque.
			for (const c of w.ctes) {
				const name = (c as { CommonTableExpr?: PgNode }).CommonTableExpr?.ctename;
				if (typeof name === "string") scope.ctes.set(name, { names: [], taints: [], rest: opaque(`CTE ${name} used before its definition`) });
			}
		}
		for (const c of w.ctes) {
			const cte = (c as { CommonTableExpr?: PgNode }).CommonTableExpr;
			if (!cte) continue;
			const name = String(cte.ctename);
			const colnames = strings(cte.aliascolnames);
			const q = cte.ctequery as PgNode;
			let out: Outputs;
			if (recursive) {
				scope.ctes.set(name, { names: [], taints: [], rest: CLEAN });
				out = this.statement(q, scope);
				for (let i = 0; i < 6; i++) {
					scope.ctes.set(name, rename(out, colnames));
					const next = this.statement(q, scope);
					const merged = zipUnion(out, next);
					if (sameOutputs(merged, out)) break;
					out = merged;
					if (i === 5) out = { names: out.names, taints: out.taints.map((t) => union(t, opaque("recursive CTE"))) };
				}
			} else {
				out = this.statement(q, scope);
			}
			scope.ctes.set(name, this.#searchCycleColumns(cte, rename(out, colnames), scope));
		}
	}

	/**
	 * `SEARCH ... SET ord` and `CYCLE ... SET mark USING path` add columns after the CTE's own, and
	 * both the sequence column and the path hold the rows' values (`{(+1-555-0101)}`): they were
	 * unknown names (clean), so `SELECT path::text FROM r` showed the phones r carried. They carry
	 * every column's taint now (the mark too: the order of the added columns then does not matter).
	 */
	#searchCycleColumns(cte: PgNode, out: Outputs, scope: Scope): Outputs {
		const search = cte.search_clause as PgNode | undefined;
		const cycle = cte.cycle_clause as PgNode | undefined;
		const added: string[] = [];
		if (search && typeof search.search_seq_column === "string") added.push(search.search_seq_column);
		if (cycle) {
			for (const k of ["cycle_mark_column", "cycle_path_column"]) if (typeof cycle[k] === "string") added.push(cycle[k] as string);
		}
		if (!search && !cycle) return out;
		let t = union(unionAll(out), this.expr([cycle?.cycle_mark_value, cycle?.cycle_mark_default], scope));
		t = derive(t);
		if (out.rest) return { ...out, rest: union(out.rest, t) };
		return { names: [...out.names, ...added], taints: [...out.taints, ...added.map(() => t)] };
	}

	select(b: PgNode, parent: Scope | undefined): Outputs {
		const op = String(b.op ?? "SETOP_NONE");
		const scope = newScope(parent);
		this.withClause(b.withClause as PgNode | undefined, scope);
		if (op !== "SETOP_NONE") {
			const l = this.select(b.larg as PgNode, scope);
			const r = this.select(b.rarg as PgNode, scope);
			for (const k of ["sortClause", "limitCount", "limitOffset"]) this.touch(this.expr(b[k], scope));
			return zipUnion(l, r);
		}
		if (Array.isArray(b.valuesLists)) {
			let out: Outputs = NO_OUTPUTS;
			for (const row of b.valuesLists) {
				const items = (row as { List?: { items?: unknown[] } }).List?.items ?? [];
				const o: Outputs = { names: items.map((_, i) => `column${i + 1}`), taints: items.map((e) => this.expr(e, scope)) };
				out = out === NO_OUTPUTS ? o : zipUnion(out, o);
			}
			for (const t of out.taints) this.touch(t);
			return out;
		}
		scope.fromStart = scope.items.length;
		this.fromClause(b.fromClause, scope);
		for (const k of ["whereClause", "havingClause", "groupClause", "sortClause", "distinctClause", "windowClause", "limitCount", "limitOffset"]) {
			this.touch(this.expr(b[k], scope));
		}
		const out = this.targetList(b.targetList, scope);
		for (const t of out.taints) this.touch(t);
		if (out.rest) this.touch(out.rest);
		if (b.intoClause && isTainted(unionAll(out))) this.#blockCopy("SELECT INTO");
		if (b.intoClause) this.#shadows((b.intoClause as PgNode).rel as PgNode | undefined);
		return out;
	}

	targetList(list: unknown, scope: Scope): Outputs {
		const out: Outputs = { names: [], taints: [] };
		if (!Array.isArray(list)) return out;
		for (const item of list) {
			const rt = (item as { ResTarget?: PgNode }).ResTarget;
			if (!rt) continue;
			const cr = (rt.val as { ColumnRef?: PgNode } | undefined)?.ColumnRef;
			const fields = cr && Array.isArray(cr.fields) ? cr.fields : undefined;
			if (fields && isStar(fields[fields.length - 1])) {
				this.expandStar(fields.slice(0, -1), scope, out);
				continue;
			}
			const ind = (rt.val as { A_Indirection?: PgNode } | undefined)?.A_Indirection;
			if (ind && Array.isArray(ind.indirection) && isStar(ind.indirection[ind.indirection.length - 1])) {
				// `(x).*` expands to every field of x's type, a count and names the analysis does not
				// know: counted as one column, the outputs after it moved, and a name looked up in
				// them was not found (clean). `SELECT s.phone FROM (SELECT (SELECT c FROM customers c
				// LIMIT 1).*) s` showed the phone raw (no column origin through a subquery).
				out.rest = union(out.rest ?? CLEAN, this.expr(rt.val, scope));
				continue;
			}
			out.taints.push(this.expr(rt.val, scope));
			out.names.push(typeof rt.name === "string" ? rt.name : outputName(rt.val));
		}
		return out;
	}

	expandStar(prefix: unknown[], scope: Scope, out: Outputs): void {
		const items = prefix.length === 0 ? scope.items.filter((i) => !i.starHidden) : this.#itemsByAlias(strings(prefix), scope);
		if (prefix.length > 0 && items.length === 0) {
			out.rest = union(out.rest ?? CLEAN, opaque(`unresolved ${strings(prefix).join(".")}.*`));
			return;
		}
		for (const it of items) {
			if (it.columns) {
				for (const c of it.columns) {
					out.names.push(c.name);
					out.taints.push(c.taint);
				}
			} else {
				out.rest = union(out.rest ?? CLEAN, it.unknown);
			}
		}
	}

	#itemsByAlias(parts: string[], scope: Scope): ScopeItem[] {
		const alias = parts[parts.length - 1]!;
		if (parts.length >= 2) {
			// `schema.table.column` (or `db.schema.table.column`) names a relation, not an alias:
			// PostgreSQL finds that relation among the FROM items without an alias, at any query level,
			// and skips a subquery, CTE or aliased item of that name. Taken as an alias, `SELECT (SELECT
			// public.customers.phone || '' FROM (SELECT 'x' AS phone) customers) FROM customers` read
			// the inner clean phone where PostgreSQL read the outer table's: raw phones.
			const schema = parts[parts.length - 2]!;
			for (let s: Scope | undefined = scope; s; s = s.parent) {
				const hit = s.items.filter(
					(i) => !i.aliasHidden && i.relation !== undefined && i.relation.name === alias && (i.relation.schema === undefined || i.relation.schema === schema),
				);
				if (hit.length > 0) return hit;
			}
			return [];
		}
		for (let s: Scope | undefined = scope; s; s = s.parent) {
			const hit = s.items.filter((i) => i.alias === alias && !i.aliasHidden);
			if (hit.length > 0) return hit;
		}
		return [];
	}

	fromClause(list: unknown, scope: Scope): void {
		if (!Array.isArray(list)) return;
		for (const f of list) this.fromItem(f as PgNode, scope);
	}

	fromItem(node: PgNode, scope: Scope): void {
		const key = Object.keys(node)[0];
		const b = key ? (node[key] as PgNode) : undefined;
		if (!key || !b) return;
		switch (key) {
			case "RangeVar":
				scope.items.push(this.rangeVar(b, scope));
				return;
			case "RangeSubselect": {
				// Without LATERAL a subquery in FROM does not see the items before it (JOIN's left side
				// included): PostgreSQL looks its names up at the outer query levels. Analysed in this
				// level's scope, `SELECT (SELECT s.v FROM (SELECT 'x' AS zz) c, (SELECT zz || '' AS v) s)
				// FROM (SELECT phone AS zz FROM customers) o` took c's clean zz for o's, the phone.
				const o = this.statement(b.subquery as PgNode, b.lateral === true ? scope : withoutItems(scope));
				const alias = b.alias as PgNode | undefined;
				scope.items.push(itemFromOutputs(String(alias?.aliasname ?? ""), o, strings(alias?.colnames)));
				return;
			}
			case "RangeFunction": {
				let t: Taint = CLEAN;
				for (const f of (b.functions as unknown[]) ?? []) {
					const items = (f as { List?: { items?: unknown[] } }).List?.items ?? [];
					t = union(t, this.expr(items[0], scope));
				}
				const alias = b.alias as PgNode | undefined;
				// Without an alias PostgreSQL names the item as it names an output column (FigureColname)
				// after its first function: `FROM CAST(c.phone AS text)` is `phone`, `FROM coalesce(...)`
				// `coalesce`. Unnamed, `phone.phone` inside it was looked up at an outer level.
				const firstFn = ((b.functions as unknown[])?.[0] as { List?: { items?: unknown[] } })?.List?.items?.[0];
				const name = alias?.aliasname ?? outputName(firstFn);
				t = derive(t);
				scope.items.push({ alias: String(name ?? ""), unknown: t, all: t });
				return;
			}
			case "JoinExpr": {
				const before = scope.items.length;
				this.fromItem(b.larg as PgNode, scope);
				const mid = scope.items.length;
				this.fromItem(b.rarg as PgNode, scope);
				// ON sees the join's own items only (and outer levels), not the FROM items before it
				for (const it of scope.items.slice(before)) it.inJoin = true;
				const on: Scope = { items: [...scope.items.slice(0, scope.fromStart ?? 0), ...scope.items.slice(before)], ctes: scope.ctes };
				if (scope.parent) on.parent = scope.parent;
				this.touch(this.expr(b.quals, on));
				const using = strings(b.usingClause);
				const merges = using.length > 0 || b.isNatural === true;
				const merged = merges && this.#mergeJoin(scope, before, mid, using, b.isNatural === true);
				const alias = b.alias as PgNode | undefined;
				// `JOIN ... USING (phone) AS u` names the merged columns (u.phone): a FULL join's
				// merged column is a COALESCE with no column origin, and `u` was an unknown name
				// (clean) before. Like a join alias, it stands for every column of both sides.
				const usingAlias = (b.join_using_alias as PgNode | undefined)?.aliasname;
				let all: Taint = CLEAN;
				for (const it of scope.items.slice(before)) all = union(all, union(it.all, it.unknown));
				if (usingAlias) scope.items.push({ alias: String(usingAlias), unknown: all, all, starHidden: true });
				if (alias?.aliasname) {
					// A join's alias hides what is inside it, names and columns: `a.zz` in `((...) a JOIN b
					// ON ...) AS j` is the a of an outer query level (the phone of `(SELECT phone AS zz
					// FROM customers) a`), not the inner a, which the plan read (clean); and its columns
					// are reached through j alone, under the names of j's column list (`AS j(p, q)` leaves
					// no zz: an unqualified zz is the outer one). j stands for the join's columns in
					// PostgreSQL's order when they are known.
					const inner = scope.items.slice(before);
					const visible = inner.filter((i) => !i.starHidden);
					const known = (!merges || merged) && visible.every((i) => i.columns !== undefined);
					const colnames = strings(alias.colnames);
					for (const it of inner) {
						it.aliasHidden = true;
						it.colsHidden = true;
						it.starHidden = true;
					}
					const name = String(alias.aliasname);
					if (known) {
						const columns = visible.flatMap((i) => i.columns!).map((c, i) => ({ name: colnames[i] ?? c.name, taint: c.taint }));
						scope.items.push({ alias: name, columns, unknown: CLEAN, all: derive(all) });
					} else scope.items.push({ alias: name, unknown: all, all });
				}
				return;
			}
			case "RangeTableSample":
				this.fromItem(b.relation as PgNode, scope);
				return;
			default: {
				// XMLTABLE, JSON_TABLE and future forms: columns unknown, tainted by every input. Without
				// an alias PostgreSQL names them `xmltable` / `json_table`: `xmltable.x` is the inner item,
				// which the plan, finding no item of that name, looked for at an outer level.
				const t = derive(this.expr(b, scope));
				const alias = (b.alias as PgNode | undefined)?.aliasname ?? TABLE_FUNCTION_NAMES[key] ?? "";
				scope.items.push({ alias: String(alias), unknown: t, all: t });
			}
		}
	}

	/**
	 * USING/NATURAL joins: `*` yields the join columns once (first), then the other left columns,
	 * then the other right columns. The merged item carries that order; the sides stay resolvable
	 * by alias. When a side's columns are unknown, nothing is merged (outputs then cannot be
	 * aligned and everything is masked).
	 */
	#mergeJoin(scope: Scope, before: number, mid: number, using: string[], natural: boolean): boolean {
		const left = scope.items.slice(before, mid).filter((i) => !i.starHidden);
		const right = scope.items.slice(mid).filter((i) => !i.starHidden);
		// unknown columns, or a column whose name is not known (one of them may be a join column)
		if ([...left, ...right].some((i) => !i.columns || i.columns.some((c) => c.name === UNKNOWN_NAME))) return false;
		const lcols = left.flatMap((i) => i.columns!);
		const rcols = right.flatMap((i) => i.columns!);
		const common = natural ? lcols.map((c) => c.name).filter((n) => rcols.some((r) => r.name === n)) : using;
		const merged: { name: string; taint: Taint }[] = [];
		// A USING name the plan does not find on a side (the server did): that side's model is wrong,
		// so any of its columns, not clean.
		const lall = derive(left.reduce((t, i) => union(t, i.all), CLEAN));
		const rall = derive(right.reduce((t, i) => union(t, i.all), CLEAN));
		for (const n of common) {
			const l = lcols.find((c) => c.name === n)?.taint ?? lall;
			const r = rcols.find((c) => c.name === n)?.taint ?? rall;
			merged.push({ name: n, taint: derive(union(l, r)) });
		}
		for (const c of lcols) if (!common.includes(c.name)) merged.push(c);
		for (const c of rcols) if (!common.includes(c.name)) merged.push(c);
		for (const it of [...left, ...right]) it.starHidden = true;
		let all: Taint = CLEAN;
		for (const c of merged) all = union(all, c.taint);
		scope.items.push({ alias: "", columns: merged, unknown: CLEAN, all: derive(all) });
		return true;
	}

	/**
	 * A FROM item naming a relation or a CTE. `target`: the table an INSERT, UPDATE, DELETE or MERGE
	 * writes, which PostgreSQL never takes for a CTE of that name: `WITH customers AS (SELECT 1 AS z)
	 * UPDATE customers SET name = phone` wrote every phone into name (the plan read the CTE, which
	 * has no phone: clean), and `... UPDATE customers SET name = name RETURNING phone || ''` returned
	 * them raw.
	 */
	rangeVar(rv: PgNode, scope: Scope, target = false): ScopeItem {
		const name = String(rv.relname);
		const schema = typeof rv.schemaname === "string" ? rv.schemaname : undefined;
		const aliasNode = rv.alias as PgNode | undefined;
		const alias = String(aliasNode?.aliasname ?? name);
		const colnames = strings(aliasNode?.colnames);
		if (!schema && !target) {
			const cte = findCte(scope, name);
			if (cte) return itemFromOutputs(alias, cte, colnames);
		}
		// A bare name in a view's printed definition is pg_catalog's once no CTE took it.
		const at = schema ?? rangeVarSchema(rv);
		const rel = this.resolved.relations.get(relKey(at, name));
		const o = this.relationOutputs(rel ?? undefined, at ? `${at}.${name}` : name);
		const item = itemFromOutputs(alias, o, colnames);
		if (!aliasNode) item.relation = rel ? { schema: rel.schema, name: rel.name } : { schema, name };
		if (rel && SYSTEM_COLUMN_KINDS.has(rel.kind)) item.systemColumns = true;
		return item;
	}

	/**
	 * Columns of a catalog relation with their taint (views analysed recursively). After DDL in the
	 * open transaction the catalog's connection still sees the relations as they were before it: a
	 * view may have been replaced (`CREATE OR REPLACE VIEW v AS SELECT 1 AS a, phone AS b FROM
	 * customers` over a clean v), a table may have other columns, which moved the outputs after its
	 * `*` (`ALTER TABLE t1 ADD COLUMN b int`, then `SELECT s.z FROM (SELECT t1.*, c.phone || '' AS p
	 * FROM t1, customers c) s(q, r, z)` was planned as a missing column: raw phones). Until the
	 * transaction ends views are opaque and tables' columns of unknown count.
	 */
	relationOutputs(rel: RelationInfo | undefined, written: string): Outputs {
		const o = this.#catalogOutputs(rel, written);
		if (!rel || !this.resolved.uncommittedDdl || this.rules.columnRules.length === 0) return o;
		if (rel.kind === "table" || rel.kind === "partitioned" || rel.kind === "foreign") return { ...o, rest: union(o.rest ?? CLEAN, unionAll(o)) };
		this.unprovable++;
		const t = opaque(`${rel.kind} ${rel.schema}.${rel.name} may have changed in this transaction`);
		return { names: o.names, taints: o.names.map(() => t), rest: t };
	}

	#catalogOutputs(rel: RelationInfo | undefined, written: string): Outputs {
		const anyRules = this.rules.columnRules.length > 0;
		if (!rel) {
			this.unprovable++;
			return { names: [], taints: [], rest: anyRules ? opaque(`unknown relation ${written}`) : CLEAN };
		}
		const cols = [...rel.columns].sort((a, b) => a.attnum - b.attnum).filter((c) => c.attnum > 0);
		if (anyRules && (rel.schema === "pg_catalog" || rel.schema === "") && STATS_RELATIONS.has(rel.name)) {
			const t = opaque(`${rel.schema}.${rel.name} holds column statistics (sample values)`);
			return { names: cols.map((c) => c.name), taints: cols.map(() => t), rest: t };
		}
		if (anyRules && (rel.schema === "pg_catalog" || rel.schema === "") && SESSION_TEXT_RELATIONS.has(rel.name)) {
			const t = opaque(`${rel.schema}.${rel.name} shows text code may have made at run time`);
			return { names: cols.map((c) => c.name), taints: cols.map(() => t), rest: t };
		}
		if (rel.viewDefinition !== undefined && (rel.kind === "view" || rel.kind === "matview")) {
			const v = this.viewOutputs(rel);
			return { names: cols.map((c) => c.name), taints: cols.map((_, i) => v.rest ?? v.taints[i] ?? opaque(`view ${rel.name} column ${i + 1}`)) };
		}
		if (rel.kind === "view" || rel.kind === "matview" || rel.kind === "other") {
			// A view we cannot see into: conservative when any column rule exists.
			this.unprovable++;
			const t = anyRules ? opaque(`${rel.kind} ${rel.schema}.${rel.name} without definition`) : CLEAN;
			return { names: cols.map((c) => c.name), taints: cols.map(() => t) };
		}
		return {
			names: cols.map((c) => c.name),
			taints: cols.map((c) => {
				const hits = this.#columnKeys(rel, c.name).filter((q) => this.rules.ruleFor(q) !== undefined);
				return hits.length > 0 ? { cols: new Set(hits), derived: false } : CLEAN;
			}),
		};
	}

	/**
	 * The names a rule may give `rel.column` by: the relation's own, its partition/inheritance
	 * ancestors' (the row is theirs too: `SELECT email FROM parted_1` showed what a rule on
	 * `parted.email` masks), and its descendants' (reading a parent reads their rows). Inherited
	 * columns keep their names down the hierarchy.
	 */
	#columnKeys(rel: RelationInfo, column: string): string[] {
		const own = qualify(rel.schema, rel.name, column);
		if (!rel.ancestors && !rel.descendants) return [own];
		return [own, ...[...(rel.ancestors ?? []), ...(rel.descendants ?? [])].map((r) => qualify(r.schema, r.name, column))];
	}

	/** The strongest rule masking `rel.column` under any of its names, and those names. */
	#columnRule(rel: RelationInfo, column: string): { rule: MaskRule | undefined; keys: string[] } {
		const keys = this.#columnKeys(rel, column);
		let rule: MaskRule | undefined;
		for (const q of keys) {
			const r = this.rules.ruleFor(q);
			if (r && (!rule || strategyStrength(r.strategy) > strategyStrength(rule.strategy))) rule = r;
		}
		return { rule, keys };
	}

	viewOutputs(rel: RelationInfo): Outputs {
		const memo = this.#viewMemo.get(rel.oid);
		if (memo === "pending") return { names: [], taints: [], rest: opaque(`recursive view ${rel.name}`) };
		if (memo) {
			if (memo.unprovable) this.unprovable++;
			return memo.out;
		}
		this.#viewMemo.set(rel.oid, "pending");
		const before = this.unprovable;
		const tree = viewTree(rel);
		let out: Outputs;
		if (!tree) out = { names: [], taints: [], rest: opaque(`view ${rel.name} definition does not parse`) };
		else {
			// A view's own WHERE does not leak to its reader: analyse in a fresh analyser for touched.
			const saved = this.touched;
			out = this.statement(tree, undefined);
			this.touched = saved;
		}
		// A view column is derived exactly when the view's expression transforms its base columns
		// (`lower(email)`); a plain column keeps its strategy, so a hash stays a joinable pseudonym.
		if (!tree) this.unprovable++;
		this.#viewMemo.set(rel.oid, { out, unprovable: this.unprovable > before });
		return out;
	}

	insert(b: PgNode, parent: Scope | undefined): Outputs {
		const scope = newScope(parent);
		this.withClause(b.withClause as PgNode | undefined, scope);
		const target = this.rangeVar(b.relation as PgNode, scope, true);
		const rel = this.#relationOf(b.relation as PgNode);
		// The row proposed for insertion, per target column (ON CONFLICT's `excluded`).
		const proposed = new Map<string, Taint>();
		if (b.selectStmt) {
			const src = this.statement(b.selectStmt as PgNode, scope);
			const cols = Array.isArray(b.cols)
				? b.cols.map((c) => String((c as { ResTarget?: PgNode }).ResTarget?.name ?? ""))
				: (target.columns?.map((c) => c.name) ?? []);
			const n = Math.max(src.taints.length, cols.length);
			// Columns of unknown count in the source (`t.*` over a relation changed by the open
			// transaction, `(x).*`): any output may land in any target column.
			const everything = src.rest ? unionAll(src) : undefined;
			for (let i = 0; i < n; i++) {
				const t = everything ?? src.taints[i] ?? CLEAN;
				if (cols[i]) proposed.set(cols[i]!, union(proposed.get(cols[i]!) ?? CLEAN, t));
				if (isTainted(t) && !this.#destCovers(rel, cols[i], t)) this.#blockCopy(`INSERT into ${targetName(b.relation as PgNode)}`);
			}
			if (everything && isTainted(everything)) this.#blockCopy(`INSERT into ${targetName(b.relation as PgNode)}`);
		}
		const occ = b.onConflictClause as PgNode | undefined;
		if (occ) {
			// ON CONFLICT DO UPDATE reads the existing row (the target, by its name or alias) and the
			// proposed one (`excluded`): `SET name = customers.phone` or `SET name = excluded.phone`
			// copies a masked column into an unmasked one exactly as UPDATE ... SET would.
			const excluded: ScopeItem = {
				alias: "excluded",
				...(target.columns ? { columns: target.columns.map((c) => ({ name: c.name, taint: proposed.get(c.name) ?? CLEAN })) } : {}),
				unknown: union(target.unknown, [...proposed.values()].reduce(union, CLEAN)),
				all: [...proposed.values()].reduce(union, CLEAN),
			};
			const conflictScope = newScope(scope.parent);
			conflictScope.ctes = scope.ctes;
			conflictScope.items = [target, excluded];
			this.#assignments(occ.targetList, rel, conflictScope, b.relation as PgNode);
			this.touch(this.expr(occ.whereClause, conflictScope));
		}
		scope.items = [target];
		return this.#returning(b, scope);
	}

	update(b: PgNode, parent: Scope | undefined): Outputs {
		const scope = newScope(parent);
		this.withClause(b.withClause as PgNode | undefined, scope);
		scope.items.push(this.rangeVar(b.relation as PgNode, scope, true));
		scope.fromStart = scope.items.length;
		this.fromClause(b.fromClause, scope);
		this.touch(this.expr(b.whereClause, scope));
		this.#assignments(b.targetList, this.#relationOf(b.relation as PgNode), scope, b.relation as PgNode);
		return this.#returning(b, scope);
	}

	delete(b: PgNode, parent: Scope | undefined): Outputs {
		const scope = newScope(parent);
		this.withClause(b.withClause as PgNode | undefined, scope);
		scope.items.push(this.rangeVar(b.relation as PgNode, scope, true));
		scope.fromStart = scope.items.length;
		this.fromClause(b.usingClause, scope);
		this.touch(this.expr(b.whereClause, scope));
		return this.#returning(b, scope);
	}

	merge(b: PgNode, parent: Scope | undefined): Outputs {
		const scope = newScope(parent);
		this.withClause(b.withClause as PgNode | undefined, scope);
		scope.items.push(this.rangeVar(b.relation as PgNode, scope, true));
		scope.fromStart = scope.items.length;
		this.fromItem(b.sourceRelation as PgNode, scope);
		this.touch(this.expr(b.joinCondition, scope));
		const rel = this.#relationOf(b.relation as PgNode);
		for (const w of (b.mergeWhenClauses as unknown[]) ?? []) {
			const wc = (w as { MergeWhenClause?: PgNode }).MergeWhenClause;
			if (!wc) continue;
			this.touch(this.expr(wc.condition, scope));
			if (wc.commandType === "CMD_INSERT") {
				const vals = (wc.values as unknown[]) ?? [];
				const cols = ((wc.targetList as unknown[]) ?? []).map((c) => String((c as { ResTarget?: PgNode }).ResTarget?.name ?? ""));
				vals.forEach((v, i) => {
					const t = this.expr(v, scope);
					if (isTainted(t) && !this.#destCovers(rel, cols[i], t)) this.#blockCopy("MERGE ... INSERT");
				});
			} else {
				this.#assignments(wc.targetList, rel, scope, b.relation as PgNode);
			}
		}
		return this.#returning(b, scope);
	}

	copy(b: PgNode, parent: Scope | undefined): Outputs {
		if (b.is_from) {
			// COPY ... FROM ... WHERE runs its condition on every row.
			const scope = newScope(parent);
			scope.items.push(this.rangeVar(b.relation as PgNode, scope));
			this.touch(this.expr(b.whereClause, scope));
			return NO_OUTPUTS;
		}
		let out: Outputs;
		if (b.query) out = this.statement(b.query as PgNode, parent);
		else {
			const scope = newScope(parent);
			const item = this.rangeVar(b.relation as PgNode, scope);
			const attl = strings(b.attlist);
			if (attl.length > 0) {
				out = { names: attl, taints: attl.map((a) => item.columns?.find((c) => c.name === a)?.taint ?? item.unknown) };
			} else if (item.columns) out = { names: item.columns.map((c) => c.name), taints: item.columns.map((c) => c.taint) };
			else out = { names: [], taints: [], rest: item.unknown };
		}
		for (const t of out.taints) this.touch(t);
		if (typeof b.filename === "string" || b.is_program) {
			if (isTainted(unionAll(out))) this.#blockCopy("COPY to a server file or program");
			return NO_OUTPUTS;
		}
		return out;
	}

	#relationOf(rv: PgNode): RelationInfo | undefined {
		const schema = typeof rv.schemaname === "string" ? rv.schemaname : undefined;
		return this.resolved.relations.get(relKey(schema, String(rv.relname))) ?? undefined;
	}

	/**
	 * Whether writing a value with taint `t` into `rel.column` keeps it masked: the column must be
	 * masked at least as strongly as every source (iban, masked `null`, written into email, masked
	 * `redact`, would show more than before), a `partial` column shows part of whatever is written,
	 * so it only takes its own untransformed values (`SET card_number = substr(email, 1, 8)` would
	 * show four characters of an email), and a `hash` column only untransformed ones (a hash of a
	 * transformed value is a codebook entry).
	 */
	#destCovers(rel: RelationInfo | undefined, column: string | undefined, t: Taint): boolean {
		if (!rel || !column) return false;
		const { rule: dest, keys } = this.#columnRule(rel, column);
		if (!dest) return false;
		const strength = strategyStrength(dest.strategy);
		for (const c of t.cols) {
			const r = this.rules.ruleFor(c);
			if (r && strategyStrength(r.strategy) > strength) return false;
		}
		if (t.opaque !== undefined && this.rules.strongest && strategyStrength(this.rules.strongest.strategy) > strength) return false;
		// A hash column takes no transformed value either: `SET phone = substr(phone, 9, 1)` then
		// reading phone hashes one character, compared with the hash of a row holding '7'.
		if ((dest.strategy.type === "partial" || dest.strategy.type === "hash") && (t.derived || t.opaque !== undefined)) return false;
		if (dest.strategy.type === "partial" && [...t.cols].some((c) => !keys.includes(c))) return false;
		return true;
	}

	#assignments(list: unknown, rel: RelationInfo | undefined, scope: Scope, rv: PgNode): void {
		if (!Array.isArray(list)) return;
		for (const item of list) {
			const rt = (item as { ResTarget?: PgNode }).ResTarget;
			if (!rt) continue;
			const t = this.expr(rt.val, scope);
			this.touch(t);
			// `SET (a, b) = (SELECT ...)` (MultiAssignRef) taints every target of the row.
			if (isTainted(t) && !this.#destCovers(rel, typeof rt.name === "string" ? rt.name : undefined, t)) {
				this.#blockCopy(`UPDATE of ${targetName(rv)}`);
			}
		}
	}

	#returning(b: PgNode, scope: Scope): Outputs {
		const rc = b.returningClause as PgNode | undefined;
		const list = rc?.exprs ?? b.returningList;
		if (!Array.isArray(list) || list.length === 0) return NO_OUTPUTS;
		const out = this.targetList(list, scope);
		for (const t of out.taints) this.touch(t);
		return out;
	}

	/** Taint of any expression subtree (also used for clause lists). */
	/**
	 * The taint of an expression. While a cast running code masking does not see is implicit or
	 * assignment (FunctionCatalog.userCasts), PostgreSQL may call it on any value where types
	 * differ, with no cast written (`upper('a'::mood)`, `INSERT INTO t (txt) VALUES (5)`): every
	 * value is then opaque, so results are masked and copies and state functions refused.
	 */
	expr(node: unknown, scope: Scope): Taint {
		const t = this.#expr(node, scope);
		if (!this.resolved.implicitCasts || node === undefined || node === null || typeof node !== "object") return t;
		this.unprovable++;
		return union(t, opaque("an implicit or assignment cast calls a function that is not built-in"));
	}

	#expr(node: unknown, scope: Scope): Taint {
		if (node === undefined || node === null || typeof node !== "object") return CLEAN;
		if (Array.isArray(node)) {
			let t: Taint = CLEAN;
			for (const x of node) t = union(t, this.expr(x, scope));
			return t;
		}
		const o = node as PgNode;
		const keys = Object.keys(o);
		if (keys.length === 1) {
			const key = keys[0]!;
			const b = o[key] as PgNode;
			switch (key) {
				case "ColumnRef": {
					const t = this.columnRef(b, scope);
					const selected = strings(Array.isArray(b.fields) ? b.fields.slice(1) : []);
					// `t.col.pg_advisory_lock`: a name after the column may be a call (field notation)
					this.#fieldCalls(selected, t);
					return this.#userFieldCalls(selected, t);
				}
				case "A_Indirection": {
					// `(card::bigint).pg_advisory_lock` calls pg_advisory_lock(card::bigint): field
					// notation, the same channels as the call syntax (pg_locks listed the card number)
					const t = derive(this.children(b, scope));
					const selected = strings(b.indirection);
					this.#fieldCalls(selected, t);
					return this.#userFieldCalls(selected, t);
				}
				case "ParamRef":
					return this.#paramTaint ?? CLEAN;
				case "A_Const":
				case "SQLValueFunction":
					return CLEAN;
				case "SubLink": {
					const sub = this.statement(b.subselect as PgNode, scope);
					return derive(union(unionAll(sub), this.expr(b.testexpr, scope)));
				}
				case "FuncCall":
					return this.funcCall(b, scope);
				case "TypeCast": {
					// A cast into a type that a cast calling a user function produces may be that cast
					// (`'a'::mood::text` over `CREATE CAST (mood AS text) WITH FUNCTION lf(mood)`).
					const t = derive(this.children(b, scope));
					const target = strings((b.typeName as PgNode | undefined)?.names).pop() ?? "";
					if (!this.resolved.castTargets.has(target)) return t;
					this.unprovable++;
					return union(t, opaque(`a cast into ${target} calls a function that is not built-in`));
				}
				case "A_Expr": {
					// An operator is a function call: a user operator (`CREATE OPERATOR ### (function =
					// lf, ...)`, `SELECT ### 1`) returns whatever its function reads.
					let t = derive(this.children(b, scope));
					for (const op of operatorNames(b)) {
						if (this.resolved.builtinOps.get(op) === false) {
							this.unprovable++;
							t = union(t, opaque(`operator ${op} is not a known built-in`));
							break;
						}
					}
					return t;
				}
				default:
					if (key.endsWith("Stmt")) return derive(unionAll(this.statement(o, scope)));
					if (b && typeof b === "object") return derive(this.children(b, scope));
					return CLEAN;
			}
		}
		return derive(this.children(o, scope));
	}

	children(b: PgNode, scope: Scope): Taint {
		let t: Taint = CLEAN;
		this.#enter();
		try {
			for (const v of Object.values(b)) if (v && typeof v === "object") t = union(t, this.expr(v, scope));
		} finally {
			this.#leave();
		}
		return t;
	}

	funcCall(b: PgNode, scope: Scope): Taint {
		const name = funcName(b);
		let t = derive(this.children(b, scope));
		const risk = functionRisk(name);
		const last = name.slice(name.lastIndexOf(".") + 1);
		if (isTainted(t) && (risk !== undefined || STATE_FUNCTIONS.has(last))) {
			// pg_notify(ch, email), setval(s, length(ssn)), lo_from_bytea(0, card::bytea),
			// pg_advisory_lock(hashtext(email)): the value leaves through a channel masking does not see.
			this.block ??= {
				rule: "mask:copy-masked-data",
				message: `${name}() would send masked data where masking cannot follow it`,
			};
		}
		if (last === "set_config") {
			const first = (b.args as unknown[] | undefined)?.[0] as { A_Const?: { sval?: { sval?: string } } } | undefined;
			const setting = first?.A_Const?.sval?.sval?.toLowerCase();
			if (setting === undefined || setting === "search_path") this.#blockSearchPath();
		}
		if (risk?.kind === "dynamic-sql" || risk?.kind === "server-access") {
			this.unprovable++;
			t = union(t, opaque(`${name}() ${risk.detail}`));
		} else if (!this.#builtin(name)) {
			this.unprovable++;
			t = union(t, opaque(`function ${name}() is not a known built-in`));
		} else if (SESSION_TEXT_FUNCTIONS.has(last)) {
			this.unprovable++;
			t = union(t, opaque(`${name}() shows text code may have made at run time`));
		} else if (this.resolved.castTargets.has(last) && (name === last || name === `pg_catalog.${last}`)) {
			// `text(x)` with no function text() for x's type is the cast `x::text`
			this.unprovable++;
			t = union(t, opaque(`${last}() may be a cast calling a function that is not built-in`));
		}
		return t;
	}

	/** Names selected with `.` that PostgreSQL may call as functions of a value tainted `t`. */
	#fieldCalls(names: string[], t: Taint): void {
		if (!isTainted(t)) return;
		for (const n of names) {
			const name = n.toLowerCase();
			if (functionRisk(name) !== undefined || STATE_FUNCTIONS.has(name)) {
				this.block ??= {
					rule: "mask:copy-masked-data",
					message: `${name}() called in field notation would send masked data where masking cannot follow it`,
				};
			}
		}
	}

	/**
	 * `t.f` and `(x).f` call `f(t)` / `f(x)` when no column or field is named f, whatever the
	 * argument: a user function of that name returns what it reads (`CREATE FUNCTION g(t8) ... AS
	 * 'SELECT string_agg(phone, ...) FROM customers'`, then `SELECT t8.g FROM t8` or `SELECT
	 * ('a'::text).g` showed every phone raw, planned as a missing column or a field of a clean
	 * value). Such a name is opaque, as the call syntax `g(t8)` is.
	 */
	#userFieldCalls(names: string[], t: Taint): Taint {
		for (const n of names) {
			if (n && this.resolved.fieldCalls.get(n) === true) {
				this.unprovable++;
				return union(derive(t), opaque(`${n}() may be called in field notation and is not a known built-in`));
			}
		}
		return t;
	}

	#builtin(name: string): boolean {
		const fromCatalog = this.resolved.builtin.get(name);
		if (fromCatalog !== undefined) return fromCatalog;
		const parts = name.split(".");
		const last = parts[parts.length - 1]!;
		if (parts.length >= 2 && parts[parts.length - 2] === "pg_catalog") return true;
		return parts.length === 1 && PURE_BUILTINS.has(last);
	}

	columnRef(b: PgNode, scope: Scope): Taint {
		const fields = Array.isArray(b.fields) ? b.fields : [];
		const star = isStar(fields[fields.length - 1]);
		const parts = strings(star ? fields.slice(0, -1) : fields);
		if (star) {
			if (parts.length === 0) {
				let t: Taint = CLEAN;
				for (const it of scope.items) t = union(t, union(it.all, it.unknown));
				return derive(t);
			}
			const items = this.#itemsByAlias(parts, scope);
			if (items.length === 0) return opaque(`unresolved ${parts.join(".")}.*`);
			let t: Taint = CLEAN;
			for (const it of items) t = union(t, union(it.all, it.unknown));
			return derive(t);
		}
		if (parts.length === 1) return this.#unqualified(parts[0]!, scope);
		// alias.column (or schema.table.column): match the table alias, then the column.
		const col = parts[parts.length - 1]!;
		const aliasParts = parts.slice(0, -1);
		const items = this.#itemsByAlias(aliasParts, scope);
		if (items.length > 0) {
			let t: Taint = CLEAN;
			for (const it of items) {
				const c = it.columns?.find((x) => x.name === col);
				// A name the item's known columns lack, in a statement the server ran: the plan's
				// model of the item is wrong (a name PostgreSQL gives that the analysis does not,
				// a catalog behind the session), so the item's whole row, not clean. A system column
				// is clean on a table only: `s.xmin` of a subquery is a column PostgreSQL named xmin
				// (`(SELECT * FROM (SELECT phone AS xmin ...) q)`, which the plan could not name).
				const system = it.systemColumns === true && SYSTEM_COLUMNS.has(col);
				t = union(t, c ? c.taint : it.columns ? (system ? CLEAN : derive(union(it.all, it.unknown))) : it.unknown);
			}
			return t;
		}
		// (composite).field: the first part is a column.
		return derive(this.#unqualified(parts[0]!, scope));
	}

	#unqualified(name: string, scope: Scope): Taint {
		// PostgreSQL looks for a column of that name at every query level, innermost first, and only
		// then for a table alias (a whole-row reference): `SELECT (SELECT phone FROM (SELECT 1)
		// phone) FROM customers` reads the outer customers.phone, not the inner alias (planned as
		// that clean whole row before: raw phones).
		for (let s: Scope | undefined = scope; s; s = s.parent) {
			let t: Taint = CLEAN;
			let hit = false;
			for (const it of s.items) {
				if (it.colsHidden) continue;
				const c = it.columns?.find((x) => x.name === name);
				if (c) {
					t = union(t, c.taint);
					hit = true;
				} else if (!it.columns) {
					t = union(t, it.unknown);
					if (isTainted(it.unknown)) hit = true;
				} else {
					// a column PostgreSQL names after something the analysis does not see may be this one
					for (const x of it.columns) {
						if (x.name !== UNKNOWN_NAME) continue;
						t = union(t, x.taint);
						if (isTainted(x.taint)) hit = true;
					}
				}
			}
			if (hit) return t;
		}
		for (let s: Scope | undefined = scope; s; s = s.parent) {
			// A bare table alias is a whole-row reference (`row_to_json(c)`, `c::text`).
			const whole = s.items.filter((i) => i.alias === name && !i.aliasHidden);
			if (whole.length > 0) {
				let w: Taint = CLEAN;
				for (const it of whole) w = union(w, union(it.all, it.unknown));
				return derive(w);
			}
		}
		// Found nowhere though every item's columns are known: the model is wrong (see columnRef),
		// so every item in reach. (An item of unknown columns may hold it: its taint was taken above.)
		// A system column name is the column of the innermost level with a table whose columns are
		// reached unqualified (not through a JOIN, which has none); the levels before it may hold the
		// name under a column the analysis names otherwise.
		const system = SYSTEM_COLUMNS.has(name);
		let all: Taint = CLEAN;
		for (let s: Scope | undefined = scope; s; s = s.parent) {
			if (system && s.items.some((i) => i.systemColumns && !i.inJoin && !i.colsHidden)) return derive(all);
			for (const it of s.items) {
				if (!it.columns) return CLEAN;
				all = union(all, it.all);
			}
		}
		return derive(all);
	}
}

function isStar(node: unknown): boolean {
	return !!node && typeof node === "object" && "A_Star" in (node as object);
}

function strings(list: unknown): string[] {
	if (!Array.isArray(list)) return [];
	return list.map((x) => (x as { String?: { sval?: string } }).String?.sval ?? "");
}

/**
 * The name PostgreSQL gives an output column without AS (its FigureColname): a subquery's columns
 * are looked up by these names. Only column references and calls were named before, every other
 * expression `?column?`, so `SELECT s.coalesce FROM (SELECT coalesce(phone, '') FROM customers) s`
 * (and `case`, `row`, `array`, `greatest`, `nullif`, `xmlelement`...) read a name the plan did not
 * have: clean, raw phones.
 */
function outputName(val: unknown): string {
	const [name, strength] = figureName(val);
	return strength > 0 && name ? name : "?column?";
}

const SQL_VALUE_NAMES: Record<string, string> = {
	SVFOP_CURRENT_DATE: "current_date",
	SVFOP_CURRENT_TIME: "current_time",
	SVFOP_CURRENT_TIME_N: "current_time",
	SVFOP_CURRENT_TIMESTAMP: "current_timestamp",
	SVFOP_CURRENT_TIMESTAMP_N: "current_timestamp",
	SVFOP_LOCALTIME: "localtime",
	SVFOP_LOCALTIME_N: "localtime",
	SVFOP_LOCALTIMESTAMP: "localtimestamp",
	SVFOP_LOCALTIMESTAMP_N: "localtimestamp",
	SVFOP_CURRENT_ROLE: "current_role",
	SVFOP_CURRENT_USER: "current_user",
	SVFOP_USER: "user",
	SVFOP_SESSION_USER: "session_user",
	SVFOP_CURRENT_CATALOG: "current_catalog",
	SVFOP_CURRENT_SCHEMA: "current_schema",
};

const XML_NAMES: Record<string, string> = {
	IS_XMLCONCAT: "xmlconcat",
	IS_XMLELEMENT: "xmlelement",
	IS_XMLFOREST: "xmlforest",
	IS_XMLPARSE: "xmlparse",
	IS_XMLPI: "xmlpi",
	IS_XMLROOT: "xmlroot",
	IS_XMLSERIALIZE: "xmlserialize",
};

/** Keyword-named expressions: always that name. */
const NODE_NAMES: Record<string, string> = {
	GroupingFunc: "grouping",
	A_ArrayExpr: "array",
	RowExpr: "row",
	CoalesceExpr: "coalesce",
	XmlSerialize: "xmlserialize",
	JsonParseExpr: "json",
	JsonScalarExpr: "json_scalar",
	JsonSerializeExpr: "json_serialize",
	JsonObjectConstructor: "json_object",
	JsonArrayConstructor: "json_array",
	JsonArrayQueryConstructor: "json_array",
	JsonObjectAgg: "json_objectagg",
	JsonArrayAgg: "json_arrayagg",
	MergeSupportFunc: "merge_action",
};

/**
 * The name of a column PostgreSQL names after a column the analysis does not name here: the first of
 * a `*` (`(SELECT * FROM q)` is named after q's column). A scope item with such a column may hold any
 * name looked up in it (#unqualified, #mergeJoin).
 */
const UNKNOWN_NAME = "\u0000unknown name";

/**
 * The name of the first output column of a query, as PostgreSQL gives it (the resname of its first
 * target entry): the leftmost branch's of a set operation, `column1` of VALUES, a target's own name.
 * A scalar subquery is named so: `(SELECT c.phone AS zz UNION ALL SELECT NULL)` is zz, `(VALUES
 * (c.phone))` column1; both were `?column?`, and `SELECT (SELECT zz || '' FROM (SELECT (SELECT c.phone
 * AS zz UNION ALL ...)) s) FROM customers c, (SELECT 'x' AS zz) o` read s.zz, the phone, where the
 * plan saw o's clean zz.
 */
function firstColumnName(query: unknown): string {
	let sel = (query as { SelectStmt?: PgNode } | undefined)?.SelectStmt;
	for (let i = 0; sel && String(sel.op ?? "SETOP_NONE") !== "SETOP_NONE" && i < 10_000; i++) sel = (sel.larg as PgNode | undefined) ?? undefined;
	if (!sel) return UNKNOWN_NAME;
	if (Array.isArray(sel.valuesLists)) return "column1";
	const rt = ((sel.targetList as unknown[] | undefined)?.[0] as { ResTarget?: PgNode } | undefined)?.ResTarget;
	if (!rt) return UNKNOWN_NAME;
	if (typeof rt.name === "string") return rt.name;
	const cr = (rt.val as { ColumnRef?: PgNode } | undefined)?.ColumnRef;
	const ind = (rt.val as { A_Indirection?: PgNode } | undefined)?.A_Indirection;
	const star = (cr && Array.isArray(cr.fields) && isStar(cr.fields[cr.fields.length - 1])) || (ind && Array.isArray(ind.indirection) && isStar(ind.indirection[ind.indirection.length - 1]));
	return star ? UNKNOWN_NAME : outputName(rt.val);
}

/** [name, strength]: 2 a real name, 1 a fallback (a type's or `case`), 0 none (PostgreSQL's FigureColnameInternal). */
function figureName(node: unknown): [string, number] {
	if (!node || typeof node !== "object" || Array.isArray(node)) return ["", 0];
	const key = Object.keys(node)[0] ?? "";
	const b = (node as PgNode)[key] as PgNode;
	if (!b || typeof b !== "object") return ["", 0];
	if (NODE_NAMES[key]) return [NODE_NAMES[key]!, 2];
	switch (key) {
		case "ColumnRef": {
			// the last name, past a `*`: `c.*::text` is named `c` (it was the cast's type, `text`)
			const f = strings(b.fields).filter((n) => n !== "");
			const last = f[f.length - 1];
			return last ? [last, 2] : ["", 0];
		}
		case "A_Indirection": {
			const names = strings(b.indirection).filter((n) => n !== "");
			if (names.length > 0) return [names[names.length - 1]!, 2];
			return figureName(b.arg);
		}
		case "FuncCall": {
			// as written: `"Foo"(x)` is named `Foo` (funcName lower-cases for the built-in checks)
			const f = strings(b.funcname);
			return [f[f.length - 1] ?? "", 2];
		}
		case "A_Expr":
			return b.kind === "AEXPR_NULLIF" ? ["nullif", 2] : ["", 0];
		case "TypeCast": {
			const inner = figureName(b.arg);
			if (inner[1] > 1) return inner;
			const t = strings((b.typeName as PgNode | undefined)?.names);
			const last = t[t.length - 1];
			return last ? [last, 1] : inner;
		}
		case "CollateClause":
			return figureName(b.arg);
		case "SubLink": {
			if (b.subLinkType === "EXISTS_SUBLINK") return ["exists", 2];
			if (b.subLinkType === "ARRAY_SUBLINK") return ["array", 2];
			// PostgreSQL names a scalar subquery after its (only) column, whatever its form
			if (b.subLinkType === "EXPR_SUBLINK") return [firstColumnName(b.subselect), 2];
			return ["", 0];
		}
		case "CaseExpr": {
			const d = figureName(b.defresult);
			return d[1] > 1 ? d : ["case", 1];
		}
		case "MinMaxExpr":
			return [b.op === "IS_LEAST" ? "least" : "greatest", 2];
		case "SQLValueFunction": {
			const n = SQL_VALUE_NAMES[String(b.op)];
			return n ? [n, 2] : ["", 0];
		}
		case "XmlExpr": {
			const n = XML_NAMES[String(b.op)];
			return n ? [n, 2] : ["", 0];
		}
		default:
			return ["", 0];
	}
}

function targetName(rv: PgNode): string {
	return typeof rv.schemaname === "string" ? `${rv.schemaname}.${String(rv.relname)}` : String(rv.relname);
}

function rename(o: Outputs, colnames: string[]): Outputs {
	if (colnames.length === 0) return o;
	return { ...o, names: o.names.map((n, i) => colnames[i] ?? n) };
}

function zipUnion(a: Outputs, b: Outputs): Outputs {
	const n = Math.max(a.taints.length, b.taints.length);
	const taints: Taint[] = [];
	for (let i = 0; i < n; i++) taints.push(union(a.taints[i] ?? a.rest ?? CLEAN, b.taints[i] ?? b.rest ?? CLEAN));
	const out: Outputs = { names: a.names.length >= b.names.length ? a.names : b.names, taints };
	if (a.rest || b.rest) out.rest = union(a.rest ?? CLEAN, b.rest ?? CLEAN);
	return out;
}

function sameTaint(a: Taint, b: Taint): boolean {
	if (a.opaque !== b.opaque || a.derived !== b.derived || a.cols.size !== b.cols.size) return false;
	for (const c of a.cols) if (!b.cols.has(c)) return false;
	return true;
}

function sameOutputs(a: Outputs, b: Outputs): boolean {
	if (a.taints.length !== b.taints.length || !!a.rest !== !!b.rest) return false;
	if (a.rest && b.rest && !sameTaint(a.rest, b.rest)) return false;
	return a.taints.every((t, i) => sameTaint(t, b.taints[i]!));
}

// ---------------------------------------------------------------------------------------------
// Public API

export interface PlanOptions {
	/**
	 * Which statement of a multi-statement string produced this RowDescription. Without it, every
	 * statement's outputs are considered (union: conservative).
	 */
	statementIndex?: number;
}

const ruleIndexCache = new WeakMap<readonly MaskRule[], RuleIndex>();
const planCache = new WeakMap<RuleIndex, WeakMap<Catalog, Lru<string, Promise<MaskPlan>>>>();

function ruleIndex(rules: readonly MaskRule[]): RuleIndex {
	let r = ruleIndexCache.get(rules);
	if (!r) ruleIndexCache.set(rules, (r = new RuleIndex(rules)));
	return r;
}

/** The tree that actually runs for a statement (EXECUTE/FETCH resolved through SessionSqlState). */
function runTree(s: SqlStatementInfo): PgNode | undefined {
	if (s.uses) return s.uses.statement ? statementTree(s.uses.statement) : undefined;
	return statementTree(s);
}

/**
 * Decides, for each output column of a result, whether it derives from a masked column.
 * `fields` are the RowDescription fields; for `COPY ... TO STDOUT` pass `[]` and read
 * `columns[].index` as COPY column positions. Plans are cached per (rules, catalog, text, fields).
 */
export function planMasks(
	sqlOrAnalysis: string | SqlAnalysis,
	fields: ResultField[],
	ctx: MaskContext,
	options: PlanOptions = {},
): Promise<MaskPlan> {
	const rules = ruleIndex(ctx.rules);
	if (rules.columnRules.length === 0) {
		return Promise.resolve({ columns: [], detectors: rules.detectors, scrubMessages: false });
	}
	const analysis = typeof sqlOrAnalysis === "string" ? analyzeSql(sqlOrAnalysis) : sqlOrAnalysis;
	if (!analysis.ok) return Promise.resolve({ ...maskEverything(fields, rules, "statement does not parse"), namesUnknown: "statement unknown" });
	let byCatalog = planCache.get(rules);
	if (!byCatalog) planCache.set(rules, (byCatalog = new WeakMap()));
	let lru = byCatalog.get(ctx.catalog);
	if (!lru) byCatalog.set(ctx.catalog, (lru = new Lru(1024)));
	const cacheable = !analysis.statements.some((s) => s.uses);
	// The catalog's epoch (bumped when the session's DDL may have changed it): a plan made before
	// `DROP TABLE mytab4; CREATE VIEW mytab4 AS SELECT phone AS x FROM customers` kept answering
	// "clean" for the same text (`SELECT x || '' AS y FROM mytab4` showed raw phones).
	const key = `${ctx.catalog.epoch ?? ""}\u0000${options.statementIndex ?? "*"}\u0000${fields.map((f) => `${f.tableOid}:${f.columnAttr}`).join(",")}\u0000${analysis.statements.map(statementCacheKey).join("\u0000")}`;
	if (cacheable) {
		const hit = lru.get(key);
		if (hit) return hit;
	}
	const p = computePlan(analysis.statements, fields, ctx, rules, options).catch((e: unknown) =>
		maskEverything(fields, rules, e instanceof Error && /too (deep|large)/.test(e.message) ? e.message : "masking analysis failed"),
	);
	if (cacheable) lru.set(key, p);
	return p;
}

/** The `block` part of a plan, before a statement is forwarded (writes that copy masked data). */
export async function checkMaskedWrites(
	analysis: SqlAnalysis,
	ctx: MaskContext,
): Promise<{ rule: string; message: string } | undefined> {
	const plan = await planMasks(analysis, [], ctx);
	if (plan.block) return plan.block;
	// Deny by default: a statement the analysis could not follow may copy masked data anywhere.
	// It returned nothing, and `INSERT INTO scratch SELECT id, phone, name || name || ... (2000
	// deep) FROM customers` copied every phone into a table the grant reads.
	if (plan.unanalysed !== undefined) {
		return {
			rule: "mask:unanalysable",
			message: `the statement could not be analysed for masking (${plan.unanalysed}), so it could copy masked data where masking cannot follow it: simplify it`,
		};
	}
	return undefined;
}

function maskEverything(fields: ResultField[], rules: RuleIndex, reason: string): MaskPlan {
	const r = rules.strongest;
	// Without fields (COPY ... TO STDOUT) the columns are not known: one position stands for them
	// all. None at all read as "nothing masked", and `COPY (SELECT phone, name || name || ... 'x'
	// FROM customers) TO STDOUT`, too deep to analyse, sent every phone raw.
	const positions = fields.length > 0 ? fields.length : 1;
	return {
		columns: r ? Array.from({ length: positions }, (_, i) => ({ index: i, rule: r.name, strategy: r.strategy, sources: [`opaque:${reason}`] })) : [],
		detectors: rules.detectors,
		scrubMessages: true,
		unanalysed: reason,
	};
}

async function computePlan(
	statements: readonly SqlStatementInfo[],
	fields: ResultField[],
	ctx: MaskContext,
	rules: RuleIndex,
	options: PlanOptions,
): Promise<MaskPlan> {
	const chosen =
		options.statementIndex !== undefined && statements[options.statementIndex]
			? [statements[options.statementIndex]!]
			: [...statements];
	const trees: PgNode[] = [];
	for (const s of chosen) {
		const t = runTree(s);
		if (t) trees.push(t);
		// EXECUTE's own parameters (their functions are looked up too)
		const own = s.uses ? statementTree(s) : undefined;
		if (own) trees.push(own);
	}
	const bodies: PgNode[] = [];
	for (const t of trees) {
		const f = (t as { CreateFunctionStmt?: PgNode }).CreateFunctionStmt;
		if (f) bodies.push(...(functionBody(f) ?? []));
	}
	const resolved = await prefetch(bodies.length > 0 ? [...trees, ...bodies] : trees, fields, ctx.catalog);
	sameTextDdl(trees, resolved);
	const an = new Analyzer(rules, resolved);
	// Per output column: union over the chosen statements (one, normally).
	let outputs: Outputs | undefined;
	let unknownRows = false;
	for (const s of chosen) {
		const tree = runTree(s);
		let o: Outputs;
		if (!tree) {
			// FETCH from a cursor we did not see declared, EXECUTE unresolved: cannot prove anything.
			o = s.uses ? { names: [], taints: [], rest: opaque(`${s.kind} ${s.uses.name}: unknown ${s.uses.type}`) } : NO_OUTPUTS;
		} else {
			const exec = s.uses?.type === "prepared" ? (statementTree(s) as { ExecuteStmt?: PgNode } | undefined)?.ExecuteStmt : undefined;
			o = exec ? an.withParams(exec.params, () => an.statement(tree, undefined)) : an.statement(tree, undefined);
			if (o === NO_OUTPUTS && returnsOpaqueRows(s)) o = { names: [], taints: [], rest: opaque(`${s.kind} returns rows the analysis cannot model`) };
			// INSERT/UPDATE/DELETE/MERGE without RETURNING return rows only when a rule rewrote them
			// (`ON INSERT TO t DO INSTEAD SELECT phone || '' FROM customers`): nothing in the text
			// says what those rows are.
			else if (o === NO_OUTPUTS && fields.length > 0 && DML_NODES.has(Object.keys(tree)[0] ?? "")) {
				o = { names: [], taints: [], rest: opaque(`${s.kind} without RETURNING returned rows (a rule's action)`) };
			}
		}
		if (o !== NO_OUTPUTS) {
			if (outputs) unknownRows = true;
			outputs = outputs ? zipUnion(outputs, o) : o;
		}
		an.touch(unionAll(o));
	}
	for (const s of chosen) {
		// DROP ... CASCADE (of a domain, type, collation, extension...) drops the columns that use
		// the object, in tables it does not name: the same shift as DROP COLUMN (#dropColumns),
		// `ALTER TABLE s9.customers ALTER COLUMN id TYPE dz` then `DROP DOMAIN dz CASCADE` in an open
		// transaction moved phone under id's clean position.
		if (s.unnamedReach?.includes("DROP")) {
			an.block ??= {
				rule: "mask:rename-masked",
				message: `${s.kind} with CASCADE may drop columns of tables it does not name, moving the later columns of a masked table where masking cannot see it: drop without CASCADE while masking rules apply`,
			};
		}
	}
	outputs ??= NO_OUTPUTS;
	const aligned = !unknownRows && !outputs.rest && (fields.length === 0 || outputs.taints.length === fields.length);
	const everything = unionAll(outputs);
	// Without fields (COPY ... TO STDOUT) the columns are those the analysis counted, and columns of
	// unknown count (`(c).*`, `*` over a function or a relation the catalog does not know) add one
	// more position standing for them all: counted as none, `COPY (SELECT (c).* FROM customers c)
	// TO STDOUT` got a plan without a masked column and sent every phone raw.
	const count = fields.length > 0 ? fields.length : outputs.taints.length + (aligned ? 0 : 1);
	const columns: ColumnMask[] = [];
	for (let i = 0; i < count; i++) {
		let t = aligned ? (outputs.taints[i] ?? CLEAN) : everything;
		// `SELECT * FROM moods UNION SELECT 'x'` casts moods' column with no expression written
		if (resolved.implicitCasts) t = union(t, opaque("an implicit or assignment cast calls a function that is not built-in"));
		const f = fields[i];
		if (f && f.tableOid !== 0) t = union(t, originTaint(f, resolved, an));
		if (!isTainted(t)) continue;
		const m = toColumnMask(i, t, rules);
		if (m) columns.push(m);
	}
	const plan: MaskPlan = { columns, detectors: rules.detectors, scrubMessages: isTainted(an.touched) || columns.length > 0 };
	if (an.block) plan.block = an.block;
	const unknown = unknownSource(chosen);
	if (unknown !== undefined) plan.namesUnknown = unknown;
	return plan;
}

/**
 * Why the rows of these statements come from a query the gateway never saw (FETCH from a cursor a
 * function opened, an unresolved EXECUTE), or undefined: the column names of those rows are as
 * unknown as their values. (Detectors alone, without column rules, scan the names instead.)
 */
function unknownSource(statements: readonly SqlStatementInfo[]): string | undefined {
	for (const s of statements) if (s.uses && !runTree(s)) return `${s.kind} ${s.uses.name}: unknown ${s.uses.type}`;
	return undefined;
}

const DML_NODES = new Set(["InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"]);

/** Statements that return rows we do not model (CALL with OUT parameters...). */
function returnsOpaqueRows(s: SqlStatementInfo): boolean {
	return s.kind === "CALL" || s.kind === "DO";
}

function originTaint(f: ResultField, resolved: Resolved, an: Analyzer): Taint {
	const rel = resolved.byOid.get(f.tableOid);
	if (!rel) return opaque(`unknown relation oid ${f.tableOid}`);
	const o = an.relationOutputs(rel, `${rel.schema}.${rel.name}`);
	const cols = [...rel.columns].sort((a, b) => a.attnum - b.attnum).filter((c) => c.attnum > 0);
	const idx = cols.findIndex((c) => c.attnum === f.columnAttr);
	if (idx < 0) return o.rest ?? (f.columnAttr > 0 ? opaque(`unknown column ${f.columnAttr} of ${rel.name}`) : CLEAN);
	return o.taints[idx] ?? o.rest ?? CLEAN;
}

const DERIVED_REDACT: MaskStrategy = Object.freeze({ type: "redact" });

function toColumnMask(index: number, t: Taint, rules: RuleIndex): ColumnMask | undefined {
	let rule: MaskRule | undefined;
	const sources: string[] = [];
	for (const q of t.cols) {
		sources.push(displayQualified(q));
		const r = rules.ruleFor(q);
		if (r && (!rule || strategyStrength(r.strategy) > strategyStrength(rule.strategy))) rule = r;
	}
	if (t.opaque !== undefined) {
		sources.push(`opaque:${t.opaque}`);
		const s = rules.strongest;
		if (s && (!rule || strategyStrength(s.strategy) > strategyStrength(rule.strategy))) rule = s;
	}
	if (!rule) return undefined;
	let strategy: MaskStrategy = rule.strategy;
	// Partial masking of a transformed value could reveal other characters (reverse(card)): redact.
	// A keyed hash of a transformed value is a codebook: `substr(phone, 1, 0) || d` for the digits d
	// hashes chosen text, and `substr(phone, n, 1)` is then read character by character: redact too.
	if ((strategy.type === "partial" || strategy.type === "hash") && t.derived) strategy = DERIVED_REDACT;
	return { index, rule: rule.name, strategy, sources };
}
