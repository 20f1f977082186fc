/**
 * Per-session SQL state: SQL-level prepared statements (PREPARE/EXECUTE/DEALLOCATE) and cursors
 * (DECLARE/FETCH/MOVE/CLOSE) hide the real query behind a name. The data path keeps one
 * SessionSqlState per client session:
 *
 *   const analysis = state.resolve(analyzeSql(text));  // EXECUTE/FETCH now carry what they run
 *   const verdict = evaluateSqlGuardrails({ analysis, access, rules });
 *   if (verdict.action allows) { forward; seq = state.forwarded(analysis); }
 *   ... on each statement's CommandComplete: state.succeeded(statement, seq + i)
 *
 * A name maps to every body it may hold. Forwarding a PREPARE/DECLARE adds a candidate: one that
 * fails upstream (duplicate name, missing table) must not replace or hide the body that really
 * holds the name. Only the server's success narrows: a PREPARE that completed leaves its own body
 * (and definitions forwarded after it); a DEALLOCATE/CLOSE/DISCARD ALL that completed leaves only
 * definitions forwarded after it. A DEALLOCATE that never ran (`SELECT 1/0; DEALLOCATE s`) forgets
 * nothing: forgetting at forwarding made a later `PREPARE s AS <clean>`, refused upstream as a
 * duplicate, the only body the gateway knew while EXECUTE ran the masked one.
 * EXECUTE of a name with several candidate bodies is classified as all of them at once (every
 * kind, table, function and risk; read-only only if all are), and its results are masked
 * entirely. SQL and protocol names share one namespace in PostgreSQL: the data path reports named
 * Parse/Bind definitions and Closes too (`defineProtocol`, `protocolDefined`, `protocolClosed`), so
 * SQL EXECUTE/FETCH of a protocol name is classified as what it runs. Cursors without HOLD end
 * with their transaction (`transactionEnded`).
 * `record` is the one-step form for callers that do not see the server's answers (tests, replays).
 */
import { statementTree, withFields } from "./sql.ts";
import type { SqlAnalysis, SqlRisk, SqlStatementInfo } from "./types.ts";

/** Bounds memory for sessions that PREPARE in a loop without DEALLOCATE. */
const MAX_ENTRIES = 10_000;
/** Candidate bodies kept per name (more are merged into one unknown candidate). */
const MAX_CANDIDATES = 8;

/** A candidate for a name: what defined it (undefined: a definition the classifier could not see), in forwarding order. */
interface Candidate {
	seq: number;
	body: SqlStatementInfo | undefined;
	/** A cursor that survives its transaction (DECLARE ... WITH HOLD). */
	hold: boolean;
}

type Names = Map<string, Candidate[]>;

/** Which namespace a protocol-level definition is in: prepared statements (Parse) or portals (Bind). */
export type NameSpace = "prepared" | "cursor";

export class SessionSqlState {
	readonly #prepared: Names = new Map();
	readonly #cursors: Names = new Map();
	#seq = 0;

	/** Replaces EXECUTE/FETCH/MOVE statements by ones classified as what they run. */
	resolve(analysis: SqlAnalysis): SqlAnalysis {
		if (!analysis.ok || !analysis.statements.some((s) => s.uses)) return analysis;
		// Statements earlier in the same string may PREPARE/DECLARE names used later in it (and a
		// string runs only as far as its first error, so a later statement sees the earlier ones' effects).
		const prepared = copy(this.#prepared);
		const cursors = copy(this.#cursors);
		let seq = this.#seq;
		const statements = analysis.statements.map((s) => {
			const out = s.uses ? resolveOne(s, prepared, cursors) : s;
			// as if it succeeded: a later statement of the string runs only if this one did
			seq++;
			addEffects(out, prepared, cursors, seq);
			if (out.prepared) narrow(prepared, out.prepared.name, seq);
			else if (out.cursor) narrow(cursors, out.cursor.name, seq);
			else dropEffects(out, prepared, cursors, seq);
			return out;
		});
		return Object.freeze({ ok: true, statements });
	}

	/**
	 * Records forwarded statements whose outcome the caller does not follow: PREPARE/DECLARE add a
	 * candidate body, DEALLOCATE/CLOSE/DISCARD ALL forget at once. A data path that sees the server's
	 * answers uses `forwarded` and `succeeded` instead (a DEALLOCATE that never ran must not forget
	 * the body that still holds the name: a later PREPARE of the name, refused as a duplicate, would
	 * then be taken for what EXECUTE runs).
	 */
	record(analysis: SqlAnalysis): void {
		if (!analysis.ok) return;
		for (const s of analysis.statements) {
			const seq = ++this.#seq;
			addEffects(s, this.#prepared, this.#cursors, seq);
			dropEffects(s, this.#prepared, this.#cursors, seq);
		}
	}

	/**
	 * Statements forwarded upstream: PREPARE/DECLARE add candidate bodies (whether they will succeed
	 * is not known yet); nothing is forgotten. Returns the sequence number of the first statement
	 * (statement i has `seq + i`) for `succeeded`.
	 */
	forwarded(analysis: SqlAnalysis): number {
		const base = this.#seq + 1;
		if (!analysis.ok) return base;
		for (const s of analysis.statements) addEffects(s, this.#prepared, this.#cursors, ++this.#seq);
		return base;
	}

	/**
	 * The server completed statement `s` (forwarded as `seq`): the name it defined now holds exactly
	 * that body (plus definitions forwarded after it), the names it dropped hold only definitions
	 * forwarded after it, and a transaction end drops cursors without HOLD.
	 */
	succeeded(s: SqlStatementInfo, seq: number): void {
		if (s.prepared) narrow(this.#prepared, s.prepared.name, seq);
		else if (s.cursor) narrow(this.#cursors, s.cursor.name, seq);
		else if (s.kind === "COMMIT" || s.kind === "ROLLBACK" || s.kind === "PREPARE TRANSACTION") this.transactionEnded(seq);
		else dropEffects(s, this.#prepared, this.#cursors, seq);
	}

	/**
	 * A protocol-level definition forwarded (Parse of a named statement, Bind of a named portal):
	 * SQL and protocol names share one namespace in PostgreSQL, so SQL EXECUTE/FETCH of the name may
	 * run it. `body` undefined: not classifiable (EXECUTE is then refused, FETCH masks everything).
	 */
	defineProtocol(space: NameSpace, name: string, body: SqlStatementInfo | undefined): number {
		const seq = ++this.#seq;
		add(space === "prepared" ? this.#prepared : this.#cursors, name, { seq, body, hold: false });
		return seq;
	}

	/** The server confirmed a protocol definition (ParseComplete/BindComplete) forwarded as `seq`. */
	protocolDefined(space: NameSpace, name: string, seq: number): void {
		narrow(space === "prepared" ? this.#prepared : this.#cursors, name, seq);
	}

	/** The server confirmed a protocol Close (CloseComplete) forwarded as `seq`. */
	protocolClosed(space: NameSpace, name: string, seq: number): void {
		forget(space === "prepared" ? this.#prepared : this.#cursors, name, seq);
	}

	/** A sequence number for a forwarded message whose answer the caller will report (a sync point). */
	tick(): number {
		return ++this.#seq;
	}

	/** The transaction open when `seq` was forwarded has ended (ReadyForQuery 'I', COMMIT, ROLLBACK). */
	transactionEnded(seq: number): void {
		for (const [name, list] of this.#cursors) {
			const left = list.filter((c) => c.hold || c.seq > seq);
			if (left.length === 0) this.#cursors.delete(name);
			else if (left.length !== list.length) this.#cursors.set(name, left);
		}
	}

	/** The candidate bodies recorded for a prepared statement name (normally one). */
	preparedStatement(name: string): readonly SqlStatementInfo[] {
		return bodies(this.#prepared.get(name));
	}

	/** Whether some definition of the name could not be classified (its use is then unknown). */
	preparedUnknown(name: string): boolean {
		return (this.#prepared.get(name) ?? []).some((c) => c.body === undefined);
	}

	cursor(name: string): readonly SqlStatementInfo[] {
		return bodies(this.#cursors.get(name));
	}

	clear(): void {
		this.#prepared.clear();
		this.#cursors.clear();
	}
}

function bodies(list: Candidate[] | undefined): SqlStatementInfo[] {
	return (list ?? []).flatMap((c) => (c.body ? [c.body] : []));
}

function copy(m: Names): Names {
	const out: Names = new Map();
	for (const [k, v] of m) out.set(k, [...v]);
	return out;
}

function resolveOne(s: SqlStatementInfo, prepared: Names, cursors: Names): SqlStatementInfo {
	const uses = s.uses!;
	const list = (uses.type === "prepared" ? prepared : cursors).get(uses.name) ?? [];
	// A definition the classifier could not see makes the name unknown. So does one that is itself
	// EXECUTE or FETCH (a protocol statement or portal: SQL PREPARE/DECLARE cannot hold them): it
	// runs what another name holds when it first runs, which its recorded body (resolved when it
	// was defined) does not say. `FETCH ALL FROM p` of a portal bound to `EXECUTE s` was planned from
	// the EXECUTE's bare tree (no outputs: nothing masked) and showed `phone || ''` raw.
	const candidates = list.some((c) => c.body === undefined || c.body.uses !== undefined) ? [] : bodies(list);
	const body = candidates.length === 1 ? candidates[0] : candidates.length > 1 ? merge(candidates) : undefined;
	if (uses.type === "cursor") {
		// FETCH/MOVE only read (cursors cannot contain data-modifying statements); an unknown
		// cursor (e.g. a refcursor returned by a function) stays read-only but masks everything.
		return body ? Object.freeze({ ...s, uses: Object.freeze({ ...uses, statement: body }) }) : s;
	}
	if (!body) return s; // guardrails block it: `session:unknown-prepared`
	// The EXECUTE's own parameter expressions run too: `EXECUTE s(pg_read_file('/etc/hostname'))` or
	// `EXECUTE s(query_to_xml('select phone from customers', ...))` over `PREPARE s(text) AS SELECT
	// $1` read a server file and raw phones under a read-only grant when only the body's functions
	// and risks were kept. Everything but the "not resolved" placeholder is kept with the body's.
	const own = (s.risks ?? []).filter((r) => !(r.kind === "unknown" && r.detail.endsWith(": prepared statement not resolved")));
	const risks = [...own];
	for (const r of body.risks ?? []) if (!risks.some((x) => x.kind === r.kind && x.detail === r.detail)) risks.push(r);
	const uniq = (xs: string[]): string[] => [...new Set(xs)];
	const fields: Partial<SqlStatementInfo> = {
		kinds: uniq([s.kind, ...body.kinds, ...s.kinds]),
		readOnly: risks.length === 0,
		tables: uniq([...body.tables, ...s.tables]),
		functions: uniq([...body.functions, ...s.functions]),
		risks,
		uses: { ...uses, statement: body },
	};
	const calls = uniq([...(body.fieldCalls ?? []), ...(s.fieldCalls ?? [])]);
	if (calls.length > 0) fields.fieldCalls = calls;
	if (body.hasWhere !== undefined) fields.hasWhere = body.hasWhere;
	return withFields(s, fields, body.hasWhere === undefined ? ["hasWhere"] : []);
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
	const calls = uniq(list.flatMap((s) => s.fieldCalls ?? []));
	if (calls.length > 0) info.fieldCalls = calls;
	if (filtered.length > 0) info.hasWhere = filtered.every((s) => s.hasWhere === true);
	return Object.freeze(info);
}

function add(names: Names, name: string, c: Candidate): void {
	const list = names.get(name);
	if (!list) {
		if (names.size < MAX_ENTRIES) names.set(name, [c]);
		return;
	}
	if (list.some((x) => x.body === c.body && x.hold === c.hold)) {
		// the same body again: only its newest forwarding matters for narrowing
		for (const x of list) if (x.body === c.body) x.seq = Math.max(x.seq, c.seq);
		return;
	}
	list.push(c);
	if (list.length > MAX_CANDIDATES) {
		const known = bodies(list);
		const unknown = list.some((x) => x.body === undefined);
		names.set(name, [{ seq: Math.max(...list.map((x) => x.seq)), body: unknown ? undefined : merge(known), hold: list.some((x) => x.hold) }]);
	}
}

/** The definition forwarded as `seq` succeeded: earlier candidates no longer hold the name. */
function narrow(names: Names, name: string, seq: number): void {
	const list = names.get(name);
	if (!list) return;
	const left = list.filter((c) => c.seq >= seq);
	if (left.length === 0) names.delete(name);
	else names.set(name, left);
}

/** The name was dropped by what was forwarded as `seq`: only later definitions may hold it. */
function forget(names: Names, name: string | undefined, seq: number): void {
	const keys = name === undefined ? [...names.keys()] : [name];
	for (const k of keys) {
		const list = names.get(k);
		if (!list) continue;
		const left = list.filter((c) => c.seq > seq);
		if (left.length === 0) names.delete(k);
		else names.set(k, left);
	}
}

function addEffects(s: SqlStatementInfo, prepared: Names, cursors: Names, seq: number): void {
	if (s.prepared) add(prepared, s.prepared.name, { seq, body: s.prepared.statement, hold: false });
	else if (s.cursor) add(cursors, s.cursor.name, { seq, body: s.cursor.statement, hold: holdable(s) });
}

/** DEALLOCATE/CLOSE/DISCARD ALL forget names: every definition forwarded up to `seq`. */
function dropEffects(s: SqlStatementInfo, prepared: Names, cursors: Names, seq: number): void {
	if (s.kind === "DEALLOCATE") forget(prepared, deallocateName(s), seq);
	else if (s.kind === "CLOSE") forget(cursors, closeName(s), seq);
	else if (s.kind === "DISCARD ALL") {
		forget(prepared, undefined, seq);
		forget(cursors, undefined, seq);
	}
}

function holdable(s: SqlStatementInfo): boolean {
	const tree = statementTree(s) as { DeclareCursorStmt?: { options?: number } } | undefined;
	// CURSOR_OPT_HOLD (parsenodes.h)
	return ((tree?.DeclareCursorStmt?.options ?? 0) & 0x20) !== 0;
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
