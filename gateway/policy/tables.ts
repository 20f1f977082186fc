/**
 * Base tables behind views, and partition/inheritance relatives, for table-scoped guardrail rules.
 * `analyzeSql` lists relations as written; a rule on `customers` would not see `DELETE FROM
 * customer_contacts` (an auto-updatable view over customers) or `SELECT * FROM
 * customer_order_totals`, and a rule on `parted` would not see `DROP TABLE parted_1` (a partition of
 * it) or `DELETE FROM child` (an inheritance child). `withBaseTables` asks the catalog and adds, for
 * every relation a statement names, its resolved `schema.name`; for views and materialized views,
 * the relations their definitions use (recursively, depth 8); for tables, their partition and
 * inheritance ancestors (their rows are the ancestors' rows) and descendants (DELETE, UPDATE,
 * TRUNCATE, SELECT and DROP of a parent reach them). An unqualified name stands for every relation
 * of that name in any schema (the session's search_path is not the catalog's). Unknown relations
 * stay as written. The original names are kept, so rules only ever match more.
 *
 * `escapes` (RENAME, SET SCHEMA, DETACH PARTITION, NO INHERIT) get the resolved names too, and for
 * DETACH/NO INHERIT the parent's ancestors: the detached rows leave all of them. A renamed or moved
 * relation, and every relation of a renamed schema, also escapes the tables whose rows it reaches.
 * `binds` (writes a statement makes possible later: cascading foreign keys, updatable views) are
 * expanded like tables. An index or TOAST table stands for its owner too (`RelationInfo.owner`), a
 * sequence for the tables drawing values from it (`RelationInfo.users`).
 */
import { analyzeSql, withFields, withTables } from "./sql.ts";
import type { Catalog, RelationInfo, RelationName, SqlAnalysis, SqlStatementInfo } from "./types.ts";

const MAX_DEPTH = 8;

function split(name: string): [string | undefined, string] {
	const parts = name.split(".");
	const rel = parts.pop()!;
	return [parts.pop(), rel];
}

/**
 * The relations each name may mean. An unqualified name means, to the server, whatever the session's
 * search_path finds first, and the session may have changed it (`SET search_path = reporting,
 * public`, a function's `SET search_path` clause) where the catalog's lookup cannot follow: `DELETE
 * FROM acct_v` then deleted through reporting.acct_v, a view over a ruled table, while the catalog
 * found no acct_v in public. So an unqualified name also stands for every relation of that name in
 * any schema (rules only match more).
 */
async function resolve(names: readonly string[], catalog: Catalog): Promise<(RelationInfo | undefined)[]> {
	const lists = await Promise.all(
		names.map(async (n) => {
			const [schema, name] = split(n);
			// A look-up that fails (a lock timeout on the catalog connection) rejects: the statement is
			// refused rather than matched against its names alone, which a view or a partition hides.
			const own = await catalog.relation(schema, name);
			if (schema !== undefined || !catalog.relationsNamed) return [own];
			const anywhere = await catalog.relationsNamed(name);
			return [own, ...anywhere];
		}),
	);
	return lists.flat();
}

const qualified = (r: RelationName): string => `${r.schema}.${r.name}`;

/** Stored code collected while expanding (for `calls`): texts, and whether the statement writes. */
interface CodeCollector {
	writes: boolean;
	texts: Set<string>;
}

/**
 * Adds to `seen` the relations `names` reach; `reach` (when given) collects the unnamed reach of view
 * definitions: a view over `pg_stats` reads every table's sample values as its own query would;
 * `code` (when given) the stored code the statement runs on them (view definitions, and the
 * relation's `code`: all of it for a statement that writes, what reads run otherwise).
 */
async function expand(names: readonly string[], catalog: Catalog, seen: Set<string>, depth: number, reach?: Set<string>, code?: CodeCollector): Promise<void> {
	if (depth > MAX_DEPTH) return;
	const rels = await resolve(names, catalog);
	const next: string[] = [];
	for (const rel of rels) {
		if (!rel) continue;
		const q = qualified(rel);
		if (seen.has(q)) continue;
		seen.add(q);
		// Partition/inheritance relatives are tables (never views): their names are enough.
		for (const r of [...(rel.ancestors ?? []), ...(rel.descendants ?? [])]) seen.add(qualified(r));
		// An index or TOAST table holds its owner's data: the owner (with its relatives) is read.
		if (rel.owner) next.push(qualified(rel.owner));
		// A sequence gives later INSERTs their values: its tables (with their relatives) are written.
		for (const u of rel.users ?? []) next.push(qualified(u));
		if (code) {
			for (const c of rel.code ?? []) if (c.onRead || code.writes) code.texts.add(c.text);
			if (rel.viewDefinition) code.texts.add(rel.viewDefinition);
		}
		if (rel.viewDefinition) {
			const a = analyzeSql(rel.viewDefinition);
			if (a.ok) {
				for (const s of a.statements) {
					next.push(...s.tables);
					if (reach) for (const k of s.unnamedReach ?? []) reach.add(k);
				}
			}
		}
	}
	if (next.length > 0) await expand(next, catalog, seen, depth + 1, reach, code);
}

/** Statement kinds that run a table's write-time code (defaults, CHECKs, triggers, rules, indexes). */
const WRITE_KINDS: ReadonlySet<string> = new Set(["INSERT", "UPDATE", "DELETE", "MERGE", "TRUNCATE", "COPY FROM"]);
/** Depth of routine bodies followed, and routine names looked up per statement. */
const MAX_ROUTINE_DEPTH = 8;
const MAX_ROUTINE_NAMES = 200;

/** What a piece of stored code does when it runs. */
interface CodeEffects {
	functions: readonly string[];
	tables: readonly string[];
	kinds: readonly string[];
	/** It updates or deletes without a WHERE (as `hasWhere: false`). */
	unfiltered: boolean;
	/** Routines it runs SQL built at run time in (PL/pgSQL EXECUTE): set only on the routine call chain. */
	dynamic: readonly string[];
}

/** Definitions whose text names what they are attached to, not what they do: only their calls count. */
const CALLS_ONLY = new Set(["CREATE TRIGGER", "CREATE CONSTRAINT TRIGGER", "CREATE INDEX"]);

/**
 * What a piece of stored code does: a routine's definition (`CREATE FUNCTION ...`: what its body
 * does), a rule's (`CREATE RULE ...`: its actions), a view's query, or an expression (a default, a
 * CHECK, a policy); a trigger's or an index's definition counts for its calls only.
 */
function codeEffects(text: string): CodeEffects {
	const a = analyzeSql(/^\s*(CREATE|SELECT|WITH|VALUES)\b/i.test(text) ? text : `SELECT (${text})`);
	const out: CodeEffects = { functions: [], tables: [], kinds: [], unfiltered: false, dynamic: [] };
	if (!a.ok) return out;
	// PL/pgSQL that EXECUTEs SQL built at run time: `dynamic-sql` alone also marks a static OPEN
	const dynamic = a.statements.some((s) => s.risks?.some((r) => r.kind === "dynamic-sql") && s.risks.some((r) => r.kind === "unknown"));
	const functions: string[] = [];
	const tables: string[] = [];
	const kinds: string[] = [];
	for (const s of a.statements) {
		functions.push(...s.functions);
		if (CALLS_ONLY.has(s.kind)) continue;
		tables.push(...s.tables);
		// a definition's own kind (CREATE FUNCTION, CREATE RULE) is not what it does when it runs
		const definition = s.kind.startsWith("CREATE ");
		kinds.push(...s.kinds.filter((k) => !(definition && (k === s.kind || k === "CREATE"))));
		if (s.hasWhere === false) out.unfiltered = true;
	}
	return { ...out, functions, tables, kinds, dynamic: dynamic ? [text] : [] };
}

/**
 * Everything the statement may run through stored code it does not show: the stored code collected
 * while expanding its relations, and, through the catalog, the bodies of every user routine called
 * (by the statement, that code or another routine), with the stored code of the relations those
 * bodies reach in turn, to MAX_ROUTINE_DEPTH rounds. An INSERT into a table whose CHECK calls a
 * DBA's `tell(note)`, whose body calls `announce`, which calls pg_notify, ran it under a rule on
 * pg_notify; `SELECT purge_accounts()`, a DBA's function deleting accounts, ran under a rule on
 * DELETE of accounts (red-team round 10, test/postgres/issue-functions-by-stored-code.test.ts).
 * Relations reached are added to `seen` (expanded like the statement's own); beyond
 * MAX_ROUTINE_NAMES look-ups the rest is not followed (what was found so far is kept).
 */
async function followStoredCode(s: SqlStatementInfo, code: CodeCollector, catalog: Catalog, seen: Set<string>, reach: Set<string>): Promise<CodeEffects> {
	const own = new Set(s.functions);
	const functions = new Set<string>(own);
	const kinds = new Set<string>();
	let unfiltered = false;
	// routines the statement calls, and those they call in turn (not those triggers and defaults call)
	const called = new Set<string>(own);
	const dynamic: string[] = [];
	const analysed = new Set<string>();
	const looked = new Set<string>();
	let frontier: string[] = [...own];
	const tables = new Set<string>();
	for (let round = 0; round < MAX_ROUTINE_DEPTH; round++) {
		const reached: string[] = [];
		const take = (text: string, caller?: string): void => {
			if (analysed.has(text)) return;
			analysed.add(text);
			const e = codeEffects(text);
			const chain = caller !== undefined && called.has(caller);
			if (chain && e.dynamic.length > 0) dynamic.push(caller);
			for (const f of e.functions) {
				if (chain) called.add(f);
				if (functions.has(f)) continue;
				functions.add(f);
				frontier.push(f);
			}
			reached.push(...e.tables);
			for (const k of e.kinds) kinds.add(k);
			if (e.unfiltered) unfiltered = true;
		};
		for (const t of [...code.texts]) take(t);
		const batch = catalog.routineDefinitions ? frontier.filter((f) => !looked.has(f)).slice(0, Math.max(0, MAX_ROUTINE_NAMES - looked.size)) : [];
		frontier = [];
		for (const f of batch) looked.add(f);
		const defs = await Promise.all(
			batch.map((f) => {
				const parts = f.split(".");
				return catalog.routineDefinitions!(parts.length >= 2 ? parts[parts.length - 2] : undefined, parts[parts.length - 1]!);
			}),
		);
		defs.forEach((list, i) => {
			for (const d of list) take(d, batch[i]);
		});
		// code that writes runs the write-time code of the tables it writes
		if ([...kinds].some((k) => WRITE_KINDS.has(k))) code.writes = true;
		const before = code.texts.size;
		for (const t of reached) tables.add(t);
		if (reached.length > 0) await expand(reached, catalog, seen, 0, reach, code);
		if (frontier.length === 0 && code.texts.size === before) break;
	}
	return { functions: [...functions].filter((f) => !own.has(f)), tables: [...tables], kinds: [...kinds], unfiltered, dynamic };
}

/**
 * Escaping relations with their resolved names (and, for a detached child's parent, its ancestors).
 * A relation renamed or moved (RENAME, SET SCHEMA), or every relation of a renamed schema, also
 * escapes every table whose rows it reaches: a view's base tables, a partition's or child's
 * ancestors and descendants. PostgreSQL looks a function body's relation names up at each call, so
 * a body classified when its name meant nothing (check_function_bodies off) or a scratch table then
 * reached a ruled table's rows once a DBA's view over it, or a partition of it, took that name
 * (red-team round 8, test/postgres/issue-late-bound-names.test.ts).
 */
async function expandEscapes(s: SqlStatementInfo, catalog: Catalog): Promise<string[] | undefined> {
	const schemas = s.schemaEscapes ?? [];
	if ((!s.escapes || s.escapes.length === 0) && schemas.length === 0) return undefined;
	const escapes = s.escapes ?? [];
	const detaches = s.kinds.includes("DETACH PARTITION") || s.kinds.includes("NO INHERIT");
	const renames = s.kinds.includes("RENAME") || s.kinds.includes("ALTER SET SCHEMA");
	const out = new Set(escapes);
	for (const rel of await resolve(escapes, catalog)) {
		if (!rel) continue;
		out.add(qualified(rel));
		if (detaches) for (const a of rel.ancestors ?? []) out.add(qualified(a));
	}
	const handed: string[] = renames ? [...escapes] : [];
	for (const schema of schemas) {
		// A catalog that cannot list a schema's relations leaves only the rule's own schema patterns.
		if (!catalog.relationsInSchema) continue;
		for (const rel of await catalog.relationsInSchema(schema)) handed.push(qualified(rel));
	}
	if (handed.length > 0) {
		const reached = new Set<string>();
		await expand(handed, catalog, reached, 0);
		for (const q of reached) out.add(q);
	}
	return out.size === escapes.length ? undefined : [...out];
}

/** Bound writes with their tables' resolved names, view base tables and partition/inheritance relatives. */
async function expandBinds(s: SqlStatementInfo, catalog: Catalog): Promise<SqlStatementInfo["binds"]> {
	if (!s.binds || s.binds.length === 0) return undefined;
	let changed = false;
	const out: NonNullable<SqlStatementInfo["binds"]> = [];
	for (const b of s.binds) {
		const seen = new Set<string>();
		await expand(b.tables, catalog, seen, 0);
		const tables = [...new Set([...b.tables, ...seen])];
		if (tables.length !== b.tables.length) changed = true;
		out.push({ kinds: [...b.kinds], tables });
	}
	return changed ? out : undefined;
}

/** Writes a statement may take over, or change, by giving an existing name to something else. */
const TAKEN_WRITES = ["INSERT", "UPDATE", "DELETE", "MERGE"];

/**
 * Names the statement gives (`creates`, `createsRoutines`) that an existing relation or routine has
 * too. A relation of the same name in another schema may capture the application's SQL that names it
 * unqualified (its role's "$user" schema, a search_path set for it): `CREATE SCHEMA app` then `CREATE
 * TABLE app.accounts (...)` made the application, connecting as role app with the default
 * search_path, write its accounts into the agent's table under a rule on writes of public.accounts.
 * That binds those writes on every existing relation of the name. A routine named like an existing
 * user routine (an overload, or the same in another schema) or a built-in may capture calls in DBA
 * code resolved by name at run time (a routine body, the application's SQL): it reaches every
 * table's writes (where it is called is not known). Red-team round 10,
 * test/postgres/issue-look-alike-names.test.ts.
 */
async function lookAlikes(s: SqlStatementInfo, catalog: Catalog): Promise<{ binds: SqlStatementInfo["binds"]; reach: boolean }> {
	const tables: string[] = [];
	if (catalog.relationsNamed) {
		for (const n of s.creates ?? []) {
			const [schema, name] = split(n);
			for (const rel of await catalog.relationsNamed(name)) if (rel.schema !== schema) tables.push(qualified(rel));
		}
	}
	let reach = false;
	const builtin = (catalog as { isBuiltinFunctionName?: (name: string) => Promise<boolean> }).isBuiltinFunctionName;
	for (const n of s.createsRoutines ?? []) {
		const name = split(n)[1];
		if ((catalog.routineDefinitions && (await catalog.routineDefinitions(undefined, name)).length > 0) || (builtin && (await builtin.call(catalog, name)))) reach = true;
	}
	return { binds: tables.length > 0 ? [{ kinds: TAKEN_WRITES, tables }] : undefined, reach };
}

/**
 * The analysis with view base tables, partition/inheritance relatives and resolved names added to
 * every statement's tables. With `stored`, also what the stored code the statement runs does
 * (`followStoredCode`): the functions it calls (`storedCalls`), the relations it reaches (in
 * `tables`), its kinds (in `kinds`) and whether it writes without WHERE (`hasWhere`).
 */
export async function withBaseTables(analysis: SqlAnalysis, catalog: Catalog, options: { stored?: boolean } = {}): Promise<SqlAnalysis> {
	if (!analysis.ok) return analysis;
	const statements: SqlStatementInfo[] = [];
	for (const s of analysis.statements) {
		const seen = new Set<string>();
		const own = s.uses?.statement ? [...s.tables, ...s.uses.statement.tables] : s.tables;
		const reach = new Set(s.unnamedReach ?? []);
		const reached = reach.size;
		const code: CodeCollector | undefined = options.stored ? { writes: s.kinds.some((k) => WRITE_KINDS.has(k)), texts: new Set() } : undefined;
		await expand(own, catalog, seen, 0, reach, code);
		const effects = code ? await followStoredCode(s, code, catalog, seen, reach) : undefined;
		const tables = [...new Set([...s.tables, ...(effects?.tables ?? []), ...seen])];
		const escapes = await expandEscapes(s, catalog);
		const taken = options.stored && (s.creates || s.createsRoutines) ? await lookAlikes(s, catalog) : undefined;
		const bound = taken?.binds ? withFields(s, { binds: [...(s.binds ?? []), ...taken.binds] }) : s;
		const binds = (await expandBinds(bound, catalog)) ?? (bound === s ? undefined : bound.binds);
		if (taken?.reach) for (const k of TAKEN_WRITES) reach.add(k);
		let out = tables.length === s.tables.length && !escapes && !binds ? s : withTables(s, tables, escapes, binds);
		if (reach.size > reached) out = withFields(out, { unnamedReach: Object.freeze([...reach]) as unknown as string[] });
		if (effects) {
			const fields: Partial<SqlStatementInfo> = {};
			if (effects.functions.length > 0) fields.storedCalls = Object.freeze(effects.functions) as unknown as string[];
			const kinds = effects.kinds.filter((k) => !out.kinds.includes(k));
			if (kinds.length > 0) fields.kinds = Object.freeze([...out.kinds, ...kinds]) as unknown as string[];
			if (effects.unfiltered && out.hasWhere !== false) fields.hasWhere = false;
			// A routine the statement calls that runs SQL built at run time may do anything: `SELECT
			// run_sql('DELETE FROM accounts')`, a DBA's helper doing `EXECUTE q`, deleted every account
			// under a rule on DELETE of accounts (red-team round 10,
			// test/postgres/issue-writes-by-stored-code.test.ts). Deny by default, as for the agent's own
			// EXECUTE: risk unknown (refused below admin, every rule of an admin grant). Triggers and
			// defaults using EXECUTE (a generic audit trigger) do not count: the statement does not choose
			// what they run.
			if (effects.dynamic.length > 0) {
				fields.risks = [...(out.risks ?? []), { kind: "unknown", detail: `${effects.dynamic[0]}() runs SQL built at run time (EXECUTE in its body)` }];
				fields.readOnly = false;
			}
			if (Object.keys(fields).length > 0) out = withFields(out, fields);
		}
		statements.push(out);
	}
	return Object.freeze({ ok: true, statements });
}
