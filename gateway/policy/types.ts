/**
 * The policy contract: protocol-neutral decisions the data paths ask for. Policy code knows
 * decisions, not sockets (DESIGN.md "Boundaries"). gateway/policy/ implements these; the
 * PostgreSQL, SSH and Kubernetes paths call them.
 */
import type {
	BundleGrant,
	GuardrailAction,
	GuardrailRule,
	Identity,
	MaskRule,
	MaskStrategy,
	PostgresAccess,
} from "../config/bundle.ts";

// ---------------------------------------------------------------------------------------------
// SQL analysis (from libpg-query's parse tree, never regex)

export interface SqlStatementInfo {
	/** Top-level kind: `SELECT`, `INSERT`, `UPDATE`, `DELETE`, `DROP`, `TRUNCATE`, `ALTER SYSTEM`, `COPY`, `SET`, `DO`, ... */
	kind: string;
	/** Every kind inside, including data-modifying CTEs and nested statements. */
	kinds: string[];
	/** True only when the statement provably cannot write (deny by default for unknown kinds). */
	readOnly: boolean;
	/** Relations referenced, as written (`schema.table` or `table`). */
	tables: string[];
	/** Functions called anywhere, lower-case, schema-qualified when written so. */
	functions: string[];
	/** For UPDATE/DELETE: whether a WHERE clause is present. */
	hasWhere?: boolean;
	/** The statement's own text (from the parser's locations), for recording and approvals. */
	text: string;
}

export type SqlAnalysis =
	| { ok: true; statements: SqlStatementInfo[] }
	/** Unparseable statements are blocked, never passed (SQLSTATE 42601 to the client). */
	| { ok: false; error: string; position?: number };

export interface GuardrailVerdict {
	action: "allow" | GuardrailAction;
	/** Rule that decided; `grant:read-only` for read-only enforcement, `parse` for parse failures. */
	rule?: string;
	message?: string;
	/** SQLSTATE for the client when blocked (42501 insufficient privilege, 42601 syntax error). */
	sqlstate?: string;
	/** Set when action is requireApproval. */
	approval?: NonNullable<GuardrailRule["approval"]>;
	/** Index of the statement (in a multi-statement string) that triggered the verdict. */
	statementIndex?: number;
}

export interface SqlGuardrailInput {
	analysis: SqlAnalysis;
	access: PostgresAccess;
	rules: GuardrailRule[];
}

// ---------------------------------------------------------------------------------------------
// Masking

/** What the data path knows about the database catalog; resolved lazily and cached per bundle. */
export interface Catalog {
	/** Resolve as PostgreSQL would (search_path when schema is omitted). */
	relation(schema: string | undefined, name: string): Promise<RelationInfo | undefined>;
	relationByOid(oid: number): Promise<RelationInfo | undefined>;
}

export interface RelationInfo {
	oid: number;
	schema: string;
	name: string;
	kind: "table" | "view" | "matview" | "foreign" | "partitioned" | "other";
	columns: { name: string; attnum: number }[];
	/** For views and materialized views: the SQL of the definition, analysed recursively. */
	viewDefinition?: string;
}

/** A RowDescription field as the data path saw it. */
export interface ResultField {
	name: string;
	tableOid: number;
	columnAttr: number;
	typeOid: number;
	format: 0 | 1;
}

export interface ColumnMask {
	/** Output column index. */
	index: number;
	rule: string;
	strategy: MaskStrategy;
	/** `schema.table.column` sources that tainted this output column. */
	sources: string[];
}

export interface MaskPlan {
	/** Masks per output column (sparse). */
	columns: ColumnMask[];
	/** Detector rules applied to every remaining text value. */
	detectors: MaskRule[];
	/** True when the statement touches masked data in a way that can leak through errors/notices. */
	scrubMessages: boolean;
}

export interface MaskContext {
	rules: MaskRule[];
	catalog: Catalog;
	identity: Identity;
	grant: BundleGrant;
	/** HMAC key for the `hash` strategy. */
	maskingKey: Buffer;
}
