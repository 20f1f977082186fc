/**
 * Per-session SQL state: SQL-level prepared statements (PREPARE/EXECUTE/DEALLOCATE) and cursors
 * (DECLARE/FETCH/MOVE/CLOSE) hide the real query behind a name. The data path keeps one
 * SessionSqlState per client session:
 *
 *   const analysis = state.resolve(analyzeSql(text));  // EXECUTE/FETCH now carry what they run
 *   const verdict = evaluateSqlGuardrails({ analysis, access, rules });
 *   if (verdict.action allows) { forward; state.record(analysis); }
 *
 * `record` is called for statements that were forwarded. Entries for statements that then failed
 * upstream are harmless: EXECUTE/FETCH of them fail upstream too. Protocol-level (Parse/Bind)
 * statement names are the data path's business, not this class's.
 */
import { statementTree } from "./sql.ts";
import type { SqlAnalysis, SqlStatementInfo } from "./types.ts";

/** Bounds memory for sessions that PREPARE in a loop without DEALLOCATE. */
const MAX_ENTRIES = 10_000;

export class SessionSqlState {
	readonly #prepared = new Map<string, SqlStatementInfo>();
	readonly #cursors = new Map<string, SqlStatementInfo>();

	/** Replaces EXECUTE/FETCH/MOVE statements by ones classified as what they run. */
	resolve(analysis: SqlAnalysis): SqlAnalysis {
		if (!analysis.ok || !analysis.statements.some((s) => s.uses)) return analysis;
		// Statements earlier in the same string may PREPARE/DECLARE names used later in it.
		const prepared = new Map(this.#prepared);
		const cursors = new Map(this.#cursors);
		const statements = analysis.statements.map((s) => {
			const out = s.uses ? this.#resolveOne(s, prepared, cursors) : s;
			applyEffects(out, prepared, cursors);
			return out;
		});
		return Object.freeze({ ok: true, statements });
	}

	#resolveOne(
		s: SqlStatementInfo,
		prepared: Map<string, SqlStatementInfo>,
		cursors: Map<string, SqlStatementInfo>,
	): SqlStatementInfo {
		const uses = s.uses!;
		const body = uses.type === "prepared" ? prepared.get(uses.name) : cursors.get(uses.name);
		if (uses.type === "cursor") {
			// FETCH/MOVE only read (cursors cannot contain data-modifying statements); an unknown
			// cursor (e.g. a refcursor returned by a function) stays read-only but masks everything.
			return body ? Object.freeze({ ...s, uses: Object.freeze({ ...uses, statement: body }) }) : s;
		}
		if (!body) return s; // guardrails block it: `session:unknown-prepared`
		const kinds = [s.kind, ...body.kinds.filter((k) => k !== s.kind)];
		const info: SqlStatementInfo = {
			...s,
			kinds,
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

	/** Records the effects of forwarded statements (PREPARE, DEALLOCATE, DECLARE, CLOSE, DISCARD). */
	record(analysis: SqlAnalysis): void {
		if (!analysis.ok) return;
		for (const s of analysis.statements) applyEffects(s, this.#prepared, this.#cursors);
	}

	/** The body of a recorded SQL-level prepared statement. */
	preparedStatement(name: string): SqlStatementInfo | undefined {
		return this.#prepared.get(name);
	}

	cursor(name: string): SqlStatementInfo | undefined {
		return this.#cursors.get(name);
	}

	clear(): void {
		this.#prepared.clear();
		this.#cursors.clear();
	}
}

function applyEffects(
	s: SqlStatementInfo,
	prepared: Map<string, SqlStatementInfo>,
	cursors: Map<string, SqlStatementInfo>,
): void {
	if (s.prepared && prepared.size < MAX_ENTRIES) prepared.set(s.prepared.name, s.prepared.statement);
	else if (s.cursor && cursors.size < MAX_ENTRIES) cursors.set(s.cursor.name, s.cursor.statement);
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
