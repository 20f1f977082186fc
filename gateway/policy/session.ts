/**
 * Per-session SQL state: SQL-level prepared statements (PREPARE/EXECUTE/DEALLOCATE) and cursors
 * (DECLARE/FETCH/MOVE/CLOSE) hide the real query behind a name. The data path keeps one
 * SessionSqlState per client session:
 *
 *   const analysis = state.resolve(analyzeSql(text));  // EXECUTE/FETCH now carry what they run
 *   const verdict = evaluateSqlGuardrails({ analysis, access, rules });
 *   if (verdict.action allows) { forward; state.record(analysis); }
 *
 * `record` is called for statements that were forwarded; whether each then succeeded upstream is
 * not needed. A name therefore maps to every body it may hold: a PREPARE that failed upstream
 * (duplicate name, missing table) must not replace or hide the body that really holds the name.
 * EXECUTE of a name with several candidate bodies is classified as all of them at once (every
 * kind, table, function and risk; read-only only if all are), and its results are masked
 * entirely. DEALLOCATE/CLOSE/DISCARD ALL forget names (if they failed upstream, the name did not
 * exist there either; if they never ran, a later EXECUTE is refused as unknown: safe).
 * Protocol-level (Parse/Bind) statement names are the data path's business, not this class's.
 */
import { statementTree } from "./sql.ts";
import type { SqlAnalysis, SqlRisk, SqlStatementInfo } from "./types.ts";

/** Bounds memory for sessions that PREPARE in a loop without DEALLOCATE. */
const MAX_ENTRIES = 10_000;
/** Candidate bodies kept per name (more are merged into one unknown candidate). */
const MAX_CANDIDATES = 8;

type Names = Map<string, SqlStatementInfo[]>;

export class SessionSqlState {
	readonly #prepared: Names = new Map();
	readonly #cursors: Names = new Map();

	/** Replaces EXECUTE/FETCH/MOVE statements by ones classified as what they run. */
	resolve(analysis: SqlAnalysis): SqlAnalysis {
		if (!analysis.ok || !analysis.statements.some((s) => s.uses)) return analysis;
		// Statements earlier in the same string may PREPARE/DECLARE names used later in it.
		const prepared = copy(this.#prepared);
		const cursors = copy(this.#cursors);
		const statements = analysis.statements.map((s) => {
			const out = s.uses ? resolveOne(s, prepared, cursors) : s;
			applyEffects(out, prepared, cursors);
			return out;
		});
		return Object.freeze({ ok: true, statements });
	}

	/** Records the effects of forwarded statements (PREPARE, DEALLOCATE, DECLARE, CLOSE, DISCARD). */
	record(analysis: SqlAnalysis): void {
		if (!analysis.ok) return;
		for (const s of analysis.statements) applyEffects(s, this.#prepared, this.#cursors);
	}

	/** The candidate bodies recorded for a prepared statement name (normally one). */
	preparedStatement(name: string): readonly SqlStatementInfo[] {
		return this.#prepared.get(name) ?? [];
	}

	cursor(name: string): readonly SqlStatementInfo[] {
		return this.#cursors.get(name) ?? [];
	}

	clear(): void {
		this.#prepared.clear();
		this.#cursors.clear();
	}
}

function copy(m: Names): Names {
	const out: Names = new Map();
	for (const [k, v] of m) out.set(k, [...v]);
	return out;
}

function resolveOne(s: SqlStatementInfo, prepared: Names, cursors: Names): SqlStatementInfo {
	const uses = s.uses!;
	const candidates = (uses.type === "prepared" ? prepared : cursors).get(uses.name) ?? [];
	const body = candidates.length === 1 ? candidates[0] : candidates.length > 1 ? merge(candidates) : undefined;
	if (uses.type === "cursor") {
		// FETCH/MOVE only read (cursors cannot contain data-modifying statements); an unknown
		// cursor (e.g. a refcursor returned by a function) stays read-only but masks everything.
		return body ? Object.freeze({ ...s, uses: Object.freeze({ ...uses, statement: body }) }) : s;
	}
	if (!body) return s; // guardrails block it: `session:unknown-prepared`
	const info: SqlStatementInfo = {
		...s,
		kinds: [s.kind, ...body.kinds.filter((k) => k !== s.kind)],
		readOnly: body.readOnly,
		tables: body.tables,
		functions: body.functions,
		risks: body.risks ?? [],
		uses: { ...uses, statement: body },
	};
	if (body.hasWhere !== undefined) info.hasWhere = body.hasWhere;
	else delete info.hasWhere;
	return Object.freeze(info);
}

/**
 * One classification covering several candidate bodies. It has no parse tree, so masking treats
 * its results as opaque (every column masked).
 */
function merge(list: SqlStatementInfo[]): SqlStatementInfo {
	const uniq = <T>(xs: T[]): T[] => [...new Set(xs)];
	const risks: SqlRisk[] = [];
	for (const s of list) for (const r of s.risks ?? []) if (!risks.some((x) => x.kind === r.kind && x.detail === r.detail)) risks.push(r);
	const filtered = list.filter((s) => s.hasWhere !== undefined);
	const info: SqlStatementInfo = {
		kind: list[0]!.kind,
		kinds: uniq(list.flatMap((s) => s.kinds)),
		readOnly: list.every((s) => s.readOnly),
		tables: uniq(list.flatMap((s) => s.tables)),
		functions: uniq(list.flatMap((s) => s.functions)),
		text: list.map((s) => s.text).join("; "),
		risks,
	};
	if (filtered.length > 0) info.hasWhere = filtered.every((s) => s.hasWhere === true);
	return Object.freeze(info);
}

function add(names: Names, name: string, body: SqlStatementInfo): void {
	const list = names.get(name);
	if (!list) {
		if (names.size < MAX_ENTRIES) names.set(name, [body]);
		return;
	}
	if (list.includes(body)) return;
	list.push(body);
	if (list.length > MAX_CANDIDATES) names.set(name, [merge(list)]);
}

function applyEffects(s: SqlStatementInfo, prepared: Names, cursors: Names): void {
	if (s.prepared) add(prepared, s.prepared.name, s.prepared.statement);
	else if (s.cursor) add(cursors, s.cursor.name, s.cursor.statement);
	else if (s.kind === "DEALLOCATE") {
		const name = deallocateName(s);
		if (name === undefined) prepared.clear();
		else prepared.delete(name);
	} else if (s.kind === "CLOSE") {
		const name = closeName(s);
		if (name === undefined) cursors.clear();
		else cursors.delete(name);
	} else if (s.kind === "DISCARD ALL") {
		prepared.clear();
		cursors.clear();
	}
}

// DEALLOCATE/CLOSE names are read from the statement's parse tree.

function deallocateName(s: SqlStatementInfo): string | undefined {
	const tree = statementTree(s) as { DeallocateStmt?: { name?: string; isall?: boolean } } | undefined;
	const b = tree?.DeallocateStmt;
	if (!b || b.isall || b.name === undefined) return undefined;
	return b.name;
}

function closeName(s: SqlStatementInfo): string | undefined {
	const tree = statementTree(s) as { ClosePortalStmt?: { portalname?: string } } | undefined;
	return tree?.ClosePortalStmt?.portalname;
}

/**
 * What a forwarded statement does to the session's names once it succeeds upstream: prepared
 * statements (PREPARE, DEALLOCATE [ALL], DISCARD ALL) and portals (DECLARE, CLOSE [ALL], DISCARD
 * ALL). `null` means every name. SQL-level and protocol-level (Parse/Bind) names share one
 * namespace in PostgreSQL, so the data path drops its own protocol entries for these names.
 */
export function sqlNameEffects(s: SqlStatementInfo): { prepared?: string | null; portal?: string | null } | undefined {
	if (s.prepared) return { prepared: s.prepared.name };
	if (s.cursor) return { portal: s.cursor.name };
	if (s.kind === "DEALLOCATE") return { prepared: deallocateName(s) ?? null };
	if (s.kind === "CLOSE") return { portal: closeName(s) ?? null };
	if (s.kind === "DISCARD ALL") return { prepared: null, portal: null };
	return undefined;
}
