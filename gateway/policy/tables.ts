/**
 * Base tables behind views, for table-scoped guardrail rules. `analyzeSql` lists relations as
 * written; a rule on `customers` would not see `DELETE FROM customer_contacts` (an auto-updatable
 * view over customers) or `SELECT * FROM customer_order_totals`. `withBaseTables` asks the catalog
 * and adds, for every relation a statement names, its resolved `schema.name` and, for views and
 * materialized views, the relations their definitions use (recursively, depth 8). Unknown
 * relations stay as written. The original names are kept, so rules only ever match more.
 */
import { analyzeSql, withTables } from "./sql.ts";
import type { Catalog, RelationInfo, SqlAnalysis, SqlStatementInfo } from "./types.ts";

const MAX_DEPTH = 8;

function split(name: string): [string | undefined, string] {
	const parts = name.split(".");
	const rel = parts.pop()!;
	return [parts.pop(), rel];
}

async function expand(names: readonly string[], catalog: Catalog, seen: Set<string>, depth: number): Promise<void> {
	if (depth > MAX_DEPTH) return;
	const rels = await Promise.all(
		names.map(async (n) => {
			const [schema, name] = split(n);
			return (await catalog.relation(schema, name).catch(() => undefined)) as RelationInfo | undefined;
		}),
	);
	const next: string[] = [];
	for (const rel of rels) {
		if (!rel) continue;
		const q = `${rel.schema}.${rel.name}`;
		if (seen.has(q)) continue;
		seen.add(q);
		if (rel.viewDefinition) {
			const a = analyzeSql(rel.viewDefinition);
			if (a.ok) for (const s of a.statements) next.push(...s.tables);
		}
	}
	if (next.length > 0) await expand(next, catalog, seen, depth + 1);
}

/** The analysis with view base tables (and resolved schema names) added to every statement's tables. */
export async function withBaseTables(analysis: SqlAnalysis, catalog: Catalog): Promise<SqlAnalysis> {
	if (!analysis.ok) return analysis;
	const statements: SqlStatementInfo[] = [];
	for (const s of analysis.statements) {
		const seen = new Set<string>();
		const own = s.uses?.statement ? [...s.tables, ...s.uses.statement.tables] : s.tables;
		await expand(own, catalog, seen, 0);
		const tables = [...new Set([...s.tables, ...seen])];
		statements.push(tables.length === s.tables.length ? s : withTables(s, tables));
	}
	return Object.freeze({ ok: true, statements });
}
