/**
 * The masking Catalog (gateway/policy/types.ts) over side queries on a gateway-owned upstream
 * connection: pg_class, pg_namespace, pg_attribute, pg_get_viewdef and pg_inherits (partition and
 * inheritance ancestors and descendants, cached with the relation; a sequence's tables from
 * pg_depend). Results are cached per
 * Connection and bundle version (`catalogCacheTtlMs`, default 60 s, so DDL is seen soon); unqualified
 * names resolve with the session's search_path (the startup parameter; `SET search_path` is refused
 * by the policy while masking applies) via to_regclass; for table rules, `relationsNamed` also lists
 * every relation of the name in any schema (the session may have changed its search_path).
 */
import type { Catalog, FunctionCatalog, RelationInfo, RelationName, UserCasts } from "../policy/types.ts";
import { SideConnection } from "./side-query.ts";
import type { UpstreamTarget } from "./upstream.ts";

/**
 * Partition and inheritance relatives at any depth from pg_inherits, as a JSON array of [schema, name]:
 * ancestors (`from` = inhrelid, `to` = inhparent) or descendants (the other way round). UNION
 * stops on repeats (PostgreSQL refuses inheritance cycles anyway).
 */
function relatives(from: string, to: string): string {
	return `(SELECT pg_catalog.json_agg(pg_catalog.json_build_array(rn.nspname, rc.relname))::text
     FROM (WITH RECURSIVE r(oid) AS (
             SELECT i.${to} FROM pg_catalog.pg_inherits i WHERE i.${from} = c.oid
             UNION SELECT i.${to} FROM pg_catalog.pg_inherits i JOIN r ON i.${from} = r.oid)
           SELECT oid FROM r) x
     JOIN pg_catalog.pg_class rc ON rc.oid = x.oid JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace)`;
}

/**
 * Stored code a statement on relation `c` runs, as a JSON array of [text, onRead]: column defaults and
 * generated expressions, CHECK constraints, the CHECKs and defaults of its columns' domains (through
 * domains over domains and arrays), triggers, rules other than a view's own, row security policies
 * (USING runs on reads) and index expressions and predicates.
 */
const STORED_CODE = `(SELECT pg_catalog.json_agg(pg_catalog.json_build_array(x.t, x.r))::text FROM (
     WITH RECURSIVE ty(oid) AS (
       SELECT a.atttypid FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
       UNION SELECT CASE WHEN t.typtype = 'd' THEN t.typbasetype ELSE t.typelem END
               FROM pg_catalog.pg_type t JOIN ty ON t.oid = ty.oid WHERE t.typtype = 'd' OR t.typelem <> 0)
     SELECT pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) AS t, false AS r FROM pg_catalog.pg_attrdef ad WHERE ad.adrelid = c.oid
     UNION ALL SELECT CASE WHEN co.conrelid <> 0 THEN pg_catalog.pg_get_expr(co.conbin, co.conrelid) END, false FROM pg_catalog.pg_constraint co
      WHERE co.conrelid = c.oid AND co.contype = 'c'
     UNION ALL SELECT CASE WHEN co.contypid <> 0 THEN pg_catalog.pg_get_expr(co.conbin, 0) END, false FROM pg_catalog.pg_constraint co
      WHERE co.contype = 'c' AND co.contypid IN (SELECT oid FROM ty)
     UNION ALL SELECT t.typdefault, false FROM pg_catalog.pg_type t WHERE t.typtype = 'd' AND t.oid IN (SELECT oid FROM ty)
     UNION ALL SELECT pg_catalog.pg_get_triggerdef(tg.oid), false FROM pg_catalog.pg_trigger tg WHERE tg.tgrelid = c.oid AND NOT tg.tgisinternal
     UNION ALL SELECT pg_catalog.pg_get_ruledef(ru.oid), false FROM pg_catalog.pg_rewrite ru WHERE ru.ev_class = c.oid AND ru.rulename <> '_RETURN'
     UNION ALL SELECT pg_catalog.pg_get_expr(po.polqual, po.polrelid), true FROM pg_catalog.pg_policy po WHERE po.polrelid = c.oid
     UNION ALL SELECT pg_catalog.pg_get_expr(po.polwithcheck, po.polrelid), false FROM pg_catalog.pg_policy po WHERE po.polrelid = c.oid
     UNION ALL SELECT pg_catalog.pg_get_indexdef(ix.indexrelid), false FROM pg_catalog.pg_index ix
      WHERE ix.indrelid = c.oid AND (ix.indexprs IS NOT NULL OR ix.indpred IS NOT NULL)) x)`;

const RELATION_SQL = `SELECT c.oid::text, n.nspname, c.relname, c.relkind::text,
  CASE WHEN c.relkind IN ('v','m') THEN pg_catalog.pg_get_viewdef(c.oid) END,
  (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(a.attname, a.attnum) ORDER BY a.attnum)::text
     FROM pg_catalog.pg_attribute a WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped),
  ${relatives("inhrelid", "inhparent")},
  ${relatives("inhparent", "inhrelid")},
  CASE WHEN c.relkind IN ('i', 'I') THEN
         (SELECT pg_catalog.json_build_array(pg_catalog.json_build_array(on_.nspname, oc.relname))::text
            FROM pg_catalog.pg_index x JOIN pg_catalog.pg_class oc ON oc.oid = x.indrelid
            JOIN pg_catalog.pg_namespace on_ ON on_.oid = oc.relnamespace WHERE x.indexrelid = c.oid)
       WHEN c.relkind = 't' THEN
         (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(on_.nspname, oc.relname))::text
            FROM pg_catalog.pg_class oc JOIN pg_catalog.pg_namespace on_ ON on_.oid = oc.relnamespace
           WHERE oc.reltoastrelid = c.oid) END,
  CASE WHEN c.relkind = 'S' THEN
         (SELECT pg_catalog.json_agg(pg_catalog.json_build_array(on_.nspname, oc.relname))::text
            FROM (SELECT d.refobjid AS rel FROM pg_catalog.pg_depend d
                   WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.objid = c.oid
                     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype IN ('a', 'i')
                  UNION
                  SELECT ad.adrelid FROM pg_catalog.pg_depend d JOIN pg_catalog.pg_attrdef ad ON ad.oid = d.objid
                   WHERE d.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass
                     AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.refobjid = c.oid) u
            JOIN pg_catalog.pg_class oc ON oc.oid = u.rel JOIN pg_catalog.pg_namespace on_ ON on_.oid = oc.relnamespace) END,
  ${STORED_CODE}
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace WHERE `;

/**
 * Every look-up that prints a view's definition first sets the catalog connection's search_path to
 * pg_catalog alone, so that pg_get_viewdef qualifies every name outside pg_catalog (it leaves a name
 * bare when the search_path in force finds it). The connection is shared by the Connection's
 * sessions and its search_path was the last session's (or its own default), while the analysis
 * resolves a definition's bare names with the reading session's: a view over public.customers
 * printed `FROM customers` was read by a session whose search_path starts with a schema holding a
 * clean `customers`, and its masked column came out raw. `(SELECT true FROM p)` in WHERE runs the
 * setting before any row, hence before pg_get_viewdef.
 */
const QUALIFIED = "WITH p AS (SELECT pg_catalog.set_config('search_path', 'pg_catalog', false)) ";
const ONCE = "(SELECT true FROM p) AND ";

const KINDS: Record<string, RelationInfo["kind"]> = {
	r: "table",
	v: "view",
	m: "matview",
	f: "foreign",
	p: "partitioned",
};

function relativeNames(json: string | null | undefined): RelationName[] | undefined {
	if (!json) return undefined;
	const list = JSON.parse(json) as [string, string][] | null;
	if (!list || list.length === 0) return undefined;
	return Object.freeze(list.map(([schema, name]) => Object.freeze({ schema, name }))) as RelationName[];
}

function toRelation(row: (string | null)[]): RelationInfo {
	const cols = JSON.parse(row[5] ?? "[]") as [string, number][];
	const info: RelationInfo = {
		oid: Number(row[0]),
		schema: row[1] ?? "",
		name: row[2] ?? "",
		kind: KINDS[row[3] ?? ""] ?? "other",
		columns: (cols ?? []).map(([name, attnum]) => ({ name, attnum })),
	};
	if (row[4]) info.viewDefinition = row[4];
	const ancestors = relativeNames(row[6]);
	const descendants = relativeNames(row[7]);
	if (ancestors) info.ancestors = ancestors;
	if (descendants) info.descendants = descendants;
	const owner = relativeNames(row[8])?.[0];
	if (owner) info.owner = owner;
	const users = relativeNames(row[9]);
	if (users) info.users = users;
	// (nulls kept in SQL: a filter there may be pushed into the branches and run pg_get_expr on rows
	// of the wrong kind)
	const code = (JSON.parse(row[10] ?? "null") as [string | null, boolean][] | null)?.filter((e): e is [string, boolean] => typeof e[0] === "string");
	if (code && code.length > 0) info.code = Object.freeze(code.map(([text, onRead]) => Object.freeze({ text, onRead }))) as RelationInfo["code"];
	return Object.freeze(info);
}

interface CacheEntry {
	at: number;
	value: Promise<RelationInfo | undefined>;
}

/** Relations listed for a renamed schema (`relationsInSchema`); more refuse the rename. */
const SCHEMA_RELATIONS_MAX = 2000;

/** Shared per (Connection, bundle version): side connection plus caches. */
export class CatalogSource {
	private side: Promise<SideConnection> | undefined;
	private readonly byOid = new Map<number, CacheEntry>();
	private readonly byName = new Map<string, CacheEntry>();
	private readonly anywhere = new Map<string, { at: number; value: Promise<RelationInfo[]> }>();
	private readonly inSchema = new Map<string, { at: number; value: Promise<RelationInfo[]> }>();
	private readonly builtin = new Map<string, { at: number; value: Promise<{ all: boolean; any: boolean; user: boolean }> }>();
	private readonly builtinOps = new Map<string, { at: number; value: Promise<boolean> }>();
	private readonly routines = new Map<string, { at: number; value: Promise<string[]> }>();
	private readonly functionCasts = new Map<string, { at: number; value: Promise<boolean> }>();
	private readonly casts = new Map<string, { at: number; value: Promise<UserCasts> }>();
	private idleTimer: NodeJS.Timeout | undefined;
	#invalidations = 0;

	/**
	 * Changes at every `invalidate` and every `ttlMs`: what was derived from the catalog before (mask
	 * plans, cached per epoch) is not reused. The time part makes DDL run elsewhere (a DBA, another
	 * replica) reach plans too, not only the cached look-ups they were made from: a plan of `SELECT x
	 * || '' FROM mytab5`, made while mytab5 was a clean table, kept answering "clean" after mytab5 was
	 * dropped and re-created outside the gateway as a view over customers.phone.
	 */
	get epoch(): number {
		return this.#invalidations * 1e9 + Math.floor(Date.now() / Math.max(this.ttlMs, 1));
	}

	constructor(
		private readonly target: UpstreamTarget,
		private readonly ttlMs = 60_000,
	) {}

	private async conn(): Promise<SideConnection> {
		if (this.idleTimer) clearTimeout(this.idleTimer);
		this.idleTimer = setTimeout(() => this.close(), 5 * 60_000);
		this.idleTimer.unref();
		if (this.side) {
			const s = await this.side.catch(() => undefined);
			if (s?.usable) return s;
		}
		this.side = SideConnection.open(this.target);
		return this.side;
	}

	private cached<V>(map: Map<string | number, { at: number; value: Promise<V> }>, key: string | number, load: () => Promise<V>): Promise<V> {
		const now = Date.now();
		const hit = map.get(key);
		if (hit && now - hit.at < this.ttlMs) return hit.value;
		if (map.size > 10_000) map.clear();
		const value = load();
		map.set(key, { at: now, value });
		value.catch(() => map.delete(key));
		return value;
	}

	relationByOid(oid: number): Promise<RelationInfo | undefined> {
		if (!Number.isInteger(oid) || oid <= 0) return Promise.resolve(undefined);
		return this.cached(this.byOid as Map<string | number, CacheEntry>, oid, async () => {
			const rows = await (await this.conn()).query(`${QUALIFIED}${RELATION_SQL}${ONCE}c.oid = $1::oid`, [String(oid)]);
			return rows[0] ? toRelation(rows[0]) : undefined;
		});
	}

	relation(schema: string | undefined, name: string, searchPath: string): Promise<RelationInfo | undefined> {
		const key = schema === undefined ? `${searchPath}\u0000\u0000${name}` : `${schema}\u0000${name}`;
		return this.cached(this.byName as Map<string | number, CacheEntry>, key, async () => {
			const side = await this.conn();
			if (schema !== undefined) {
				const rows = await side.query(`${QUALIFIED}${RELATION_SQL}${ONCE}n.nspname = $1 AND c.relname = $2`, [schema, name]);
				return rows[0] ? toRelation(rows[0]) : undefined;
			}
			// The name is resolved with the session's search_path, the relation then read (and its
			// definition printed) with pg_catalog alone (see QUALIFIED).
			const found = await side.query(
				`WITH p AS (SELECT pg_catalog.set_config('search_path', $1, false))
				 SELECT (SELECT pg_catalog.to_regclass(pg_catalog.quote_ident($2)) FROM p)::pg_catalog.oid::pg_catalog.text`,
				[searchPath, name],
			);
			const oid = found[0]?.[0];
			return oid ? this.relationByOid(Number(oid)) : undefined;
		});
	}

	/** Every relation named `name`, in any schema (at most 100). */
	relationsNamed(name: string): Promise<RelationInfo[]> {
		return this.cached(this.anywhere as Map<string | number, { at: number; value: Promise<RelationInfo[]> }>, name, async () => {
			const rows = await (await this.conn()).query(`${QUALIFIED}${RELATION_SQL}${ONCE}c.relname = $1 ORDER BY c.oid LIMIT 100`, [name]);
			return rows.map(toRelation);
		});
	}

	/**
	 * Every relation in schema `schema`. A schema holding more than SCHEMA_RELATIONS_MAX relations
	 * rejects: the caller cannot tell what renaming it reaches, and refuses the statement.
	 */
	relationsInSchema(schema: string): Promise<RelationInfo[]> {
		return this.cached(this.inSchema as Map<string | number, { at: number; value: Promise<RelationInfo[]> }>, schema, async () => {
			const rows = await (await this.conn()).query(`${QUALIFIED}${RELATION_SQL}${ONCE}n.nspname = $1 ORDER BY c.oid LIMIT ${SCHEMA_RELATIONS_MAX + 1}`, [schema]);
			if (rows.length > SCHEMA_RELATIONS_MAX) throw new Error(`schema ${JSON.stringify(schema)} holds more than ${SCHEMA_RELATIONS_MAX} relations`);
			return rows.map(toRelation);
		});
	}

	/**
	 * Whether the database has a cast whose function is not built in (a DBA's or an admin grant's):
	 * such a cast runs where no call is written, also inside a qualified built-in call.
	 */
	hasFunctionCasts(): Promise<boolean> {
		return this.cached(this.functionCasts as Map<string | number, { at: number; value: Promise<boolean> }>, "casts", async () => {
			const rows = await (await this.conn()).query("SELECT EXISTS (SELECT 1 FROM pg_catalog.pg_cast WHERE castfunc >= 16384)::text");
			return rows[0]?.[0] === "true";
		});
	}

	/** Definitions of the routines named `name` (in `schema`, if given) that are not built-in (at most 50). */
	routineDefinitions(schema: string | undefined, name: string): Promise<string[]> {
		const key = `${schema ?? ""}\u0000${name}`;
		return this.cached(this.routines as Map<string | number, { at: number; value: Promise<string[]> }>, key, async () => {
			const rows = await (await this.conn()).query(
				`SELECT pg_catalog.pg_get_functiondef(p.oid) FROM pg_catalog.pg_proc p
				 JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
				 WHERE p.proname = $1 AND ($2::text IS NULL OR n.nspname = $2) AND p.oid >= 16384 AND p.prokind IN ('f', 'p')
				 ORDER BY p.oid LIMIT 50`,
				[name, schema ?? null],
			);
			return rows.map((r) => r[0] ?? "").filter((t) => t !== "");
		});
	}

	/**
	 * Built-in means created with the server (initdb): OID below FirstNormalObjectId (16384). The
	 * schema is no proof: the upstream role may be a superuser, which can create functions and
	 * operators in pg_catalog (`CREATE FUNCTION pg_catalog.innocent() ... AS 'SELECT phone FROM
	 * customers'` was trusted as a pure built-in). A name with no visible function (created in an open
	 * transaction, which this connection cannot see) is not built-in.
	 */
	functionNames(schema: string | undefined, name: string): Promise<{ all: boolean; any: boolean; user: boolean }> {
		const key = `${schema ?? ""}\u0000${name}`;
		return this.cached(this.builtin as Map<string | number, { at: number; value: Promise<{ all: boolean; any: boolean; user: boolean }> }>, key, async () => {
			const side = await this.conn();
			const rows = await side.query(
				`SELECT bool_and(p.oid < 16384)::text, bool_or(p.oid < 16384)::text, bool_or(p.oid >= 16384)::text FROM pg_catalog.pg_proc p
				 JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
				 WHERE p.proname = $1 AND ($2::text IS NULL OR n.nspname = $2)`,
				[name, schema ?? null],
			);
			return { all: rows[0]?.[0] === "true", any: rows[0]?.[1] === "true", user: rows[0]?.[2] === "true" };
		});
	}

	/** Every function of that name (in that schema, if given) is a built-in. */
	async isBuiltinFunction(schema: string | undefined, name: string): Promise<boolean> {
		return (await this.functionNames(schema, name)).all;
	}

	/** Some built-in function, in any schema, has that name. */
	async isBuiltinFunctionName(name: string): Promise<boolean> {
		return (await this.functionNames(undefined, name)).any;
	}

	/**
	 * Every operator of that name (in that schema, if given) is a built-in or calls a function written
	 * in C (language internal or c: the server's or an extension's, as hstore's `||` or PostGIS' `&&`),
	 * not in SQL or a procedural language, which could read tables (`CREATE OPERATOR ### (function =
	 * lf)` over a SQL function returning customers.phone). C functions cannot be created through the
	 * gateway by non-admin grants.
	 */
	isBuiltinOperator(schema: string | undefined, name: string): Promise<boolean> {
		const key = `${schema ?? ""}\u0000${name}`;
		return this.cached(this.builtinOps as Map<string | number, { at: number; value: Promise<boolean> }>, key, async () => {
			const side = await this.conn();
			const rows = await side.query(
				`SELECT bool_and(o.oid < 16384 OR l.lanname IN ('internal', 'c'))::text FROM pg_catalog.pg_operator o
				 JOIN pg_catalog.pg_namespace n ON n.oid = o.oprnamespace
				 LEFT JOIN pg_catalog.pg_proc p ON p.oid = o.oprcode
				 LEFT JOIN pg_catalog.pg_language l ON l.oid = p.prolang
				 WHERE o.oprname = $1 AND ($2::text IS NULL OR n.nspname = $2)`,
				[name, schema ?? null],
			);
			return rows[0]?.[0] === "true";
		});
	}

	/**
	 * Casts calling a function that is neither built-in nor written in C, whoever made them: a cast
	 * the agent made while no masking applied (or a DBA's) runs its function where the text shows a
	 * type name, `SELECT 'a'::mood::text` over `CREATE CAST (mood AS text) WITH FUNCTION lf(mood)`
	 * (lf reading customers.phone). The types they produce count with every domain over them (a cast
	 * to a domain is one to its base type), and implicit and assignment ones run with no cast written.
	 */
	userCasts(): Promise<UserCasts> {
		return this.cached(this.casts as Map<string | number, { at: number; value: Promise<UserCasts> }>, "", async () => {
			const rows = await (await this.conn()).query(
				`WITH RECURSIVE c AS (
				   SELECT k.casttarget AS t, k.castcontext AS ctx FROM pg_catalog.pg_cast k
				   JOIN pg_catalog.pg_proc p ON p.oid = k.castfunc
				   JOIN pg_catalog.pg_language l ON l.oid = p.prolang
				   WHERE k.castfunc >= 16384 AND l.lanname NOT IN ('internal', 'c')
				 ), d AS (
				   SELECT c.t FROM c
				   UNION
				   SELECT y.oid FROM pg_catalog.pg_type y JOIN d ON y.typbasetype = d.t WHERE y.typtype = 'd'
				 )
				 SELECT y.typname::pg_catalog.text, (SELECT pg_catalog.bool_or(c.ctx <> 'e') FROM c)::pg_catalog.text
				 FROM d JOIN pg_catalog.pg_type y ON y.oid = d.t`,
			);
			return { targets: rows.map((r) => r[0] ?? "").filter((n) => n !== ""), implicit: rows.some((r) => r[1] === "true") };
		});
	}

	/**
	 * Forget everything cached (relations by name and OID, negative answers included, and builtin
	 * function answers): a session's DDL has completed or committed. Loads in flight finish for their
	 * callers but are no longer cached. DDL run outside the gateway is still seen only after ttlMs
	 * (plans: up to twice that, see epoch).
	 */
	invalidate(): void {
		this.byOid.clear();
		this.byName.clear();
		this.anywhere.clear();
		this.inSchema.clear();
		this.builtin.clear();
		this.builtinOps.clear();
		this.routines.clear();
		this.functionCasts.clear();
		this.casts.clear();
		this.#invalidations++;
	}

	close(): void {
		if (this.idleTimer) clearTimeout(this.idleTimer);
		const s = this.side;
		this.side = undefined;
		s?.then((c) => c.close()).catch(() => undefined);
	}
}

/** A session's view: the shared source plus the session's own search_path. */
export class SessionCatalog implements Catalog, FunctionCatalog {
	/** As `SET search_path` would take it; default matches PostgreSQL's. */
	searchPath = '"$user", public';

	constructor(private readonly source: CatalogSource) {}

	relation(schema: string | undefined, name: string): Promise<RelationInfo | undefined> {
		return this.source.relation(schema, name, this.searchPath);
	}

	relationByOid(oid: number): Promise<RelationInfo | undefined> {
		return this.source.relationByOid(oid);
	}

	relationsNamed(name: string): Promise<RelationInfo[]> {
		return this.source.relationsNamed(name);
	}

	relationsInSchema(schema: string): Promise<RelationInfo[]> {
		return this.source.relationsInSchema(schema);
	}

	routineDefinitions(schema: string | undefined, name: string): Promise<string[]> {
		return this.source.routineDefinitions(schema, name);
	}

	isBuiltinFunction(schema: string | undefined, name: string): Promise<boolean> {
		return this.source.isBuiltinFunction(schema, name);
	}

	isBuiltinFunctionName(name: string): Promise<boolean> {
		return this.source.isBuiltinFunctionName(name);
	}

	isBuiltinOperator(schema: string | undefined, name: string): Promise<boolean> {
		return this.source.isBuiltinOperator(schema, name);
	}

	userCasts(): Promise<UserCasts> {
		return this.source.userCasts();
	}

	/**
	 * Set by the session when a statement that may create or rename routines completed inside a
	 * transaction (cleared when it ends): the shared side connection cannot see those yet, so every
	 * name selected with `.` may be one of them until then.
	 */
	routinesUnseen = false;

	/** See Catalog.uncommittedDdl: set by the session with its catalogChanged, cleared when the transaction ends. */
	uncommittedDdl = false;

	/** See CatalogSource.hasFunctionCasts (cached like the other look-ups). */
	hasFunctionCasts(): Promise<boolean> {
		return this.source.hasFunctionCasts();
	}

	async mayBeUserFunction(name: string): Promise<boolean> {
		if (this.routinesUnseen) return true;
		return (await this.source.functionNames(undefined, name)).user;
	}

	/** See CatalogSource.invalidate: shared by every session of the same Connection and bundle. */
	invalidate(): void {
		this.source.invalidate();
	}

	get epoch(): number {
		return this.source.epoch;
	}
}
