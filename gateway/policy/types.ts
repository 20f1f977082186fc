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
	/**
	 * Relations the statement takes a name or rows away from, as written: the relation of a RENAME or
	 * SET SCHEMA, the parent of a DETACH PARTITION or NO INHERIT. `withBaseTables` adds, for a RENAME
	 * or SET SCHEMA (and for every relation of a renamed schema), the tables whose rows the relation
	 * reaches: a function body created earlier may use the new name ("Late-bound names"). A rule whose `tables` match one of
	 * them matches the statement whatever its `statementKinds` and `withoutWhere`: afterwards the rule
	 * no longer reaches those rows (gateway/policy/README.md, "Partitions and inheritance").
	 */
	escapes?: string[];
	/**
	 * Schemas a statement takes away from their name (`ALTER SCHEMA s RENAME TO x`): every table in
	 * them escapes its rules like a renamed table. A rule matches when one of its `tables` patterns
	 * can name a table in that schema (an unqualified pattern can), whatever its statement kinds.
	 */
	schemaEscapes?: string[];
	/**
	 * Set when the statement may act on relations it does not name, so its reach over ruled tables
	 * cannot be proven empty: `DROP ... CASCADE` of any object, `DROP EXTENSION` (member objects go
	 * with it), `TRUNCATE ... CASCADE`, `ALTER TABLE|TYPE|DOMAIN ... DROP ... CASCADE`, `DROP OWNED`,
	 * `REASSIGN OWNED`. The values are the kinds of what it may do to them (`DROP TABLE`, `ALTER
	 * TABLE`, `TRUNCATE`...). A rule with `tables` matches it as if it named every table, when the
	 * rule's statement kinds match the statement's kinds or these (gateway/policy/README.md,
	 * "Schema-wide and cascading statements").
	 */
	unnamedReach?: string[];
	/**
	 * Names selected with `.` from an expression or a qualified column reference (`(x).name`,
	 * `t.name`, `t.col.name`): PostgreSQL resolves one that is not a column or field as a call of
	 * the one-argument function of that name (field notation), so `SELECT ('/etc/hostname'::text).
	 * pg_read_file` calls pg_read_file. Rules with `functions` match these names too; the built-in
	 * function risks apply to them (gateway/policy/README.md, "Function calls in field notation").
	 */
	fieldCalls?: string[];
	/**
	 * Functions the statement runs through stored code it does not show (`withBaseTables` with
	 * `stored`): a view's definition, a written table's column defaults, CHECKs, domains, triggers,
	 * rules, policies and index expressions, and the bodies of user routines called (by the
	 * statement or that code), followed through the catalog. Rules with `functions` match these names
	 * too (gateway/policy/README.md, "Stored code the statement runs").
	 */
	storedCalls?: string[];
	/**
	 * Relations the statement names anew (CREATE TABLE|VIEW|SEQUENCE|..., CREATE TABLE AS, SELECT
	 * INTO, RENAME TO, SET SCHEMA), as `schema.name` or `name`, and routines likewise
	 * (`createsRoutines`): a name another one already has may capture other sessions' SQL
	 * (gateway/policy/README.md, "Look-alike names").
	 */
	creates?: string[];
	createsRoutines?: string[];
	/**
	 * Writes the statement makes possible later on relations it names, without running them now
	 * (gateway/policy/README.md, "Deferred and implicit execution"): a foreign key with `ON DELETE
	 * CASCADE` added to `accounts` binds `DELETE` on accounts to deletes of the referenced table; an
	 * auto-updatable view over accounts binds `INSERT`/`UPDATE`/`DELETE`/`MERGE` on accounts to writes
	 * through the view. A rule with `tables` matches the statement when one of its tables matches an
	 * entry's tables and its statement kinds (if set) match one of the entry's kinds; `withoutWhere`
	 * is not asked (the later statement's filter is unknown). Rules without `tables` ignore it: the
	 * later statement carries the kind itself.
	 */
	binds?: { kinds: string[]; tables: string[] }[];
	/** For UPDATE/DELETE: whether a WHERE clause is present. */
	hasWhere?: boolean;
	/** The statement's own text (from the parser's locations), for recording and approvals. */
	text: string;
	/**
	 * Why the statement is not read-only or is dangerous (server file access, identity switch...).
	 * Added by gateway/policy; empty for plain reads.
	 */
	risks?: SqlRisk[];
	/** PREPARE: the prepared statement's name and its body, classified now (rules apply at PREPARE). */
	prepared?: { name: string; statement: SqlStatementInfo };
	/** DECLARE: the cursor's name and its query. */
	cursor?: { name: string; statement: SqlStatementInfo };
	/**
	 * EXECUTE / FETCH / MOVE: the prepared statement or cursor used. `statement` is filled in by
	 * `SessionSqlState.resolve()` (a merged classification when the name has several candidate
	 * bodies); when it stays unknown the guardrails block EXECUTE (deny by default).
	 */
	uses?: { type: "prepared" | "cursor"; name: string; statement?: SqlStatementInfo };
}

export type SqlRiskKind =
	/** Writes data or schema. */
	| "write"
	/** Reads/writes server files, runs programs, opens network connections, signals backends. */
	| "server-access"
	/** SET ROLE, SET SESSION AUTHORIZATION, RESET ROLE, set_config('role', ...). */
	| "identity-switch"
	/** Role and privilege management: CREATE/ALTER/DROP ROLE, GRANT, REVOKE. */
	| "privilege"
	/** ALTER SYSTEM, LOAD, CREATE EXTENSION, ALTER DATABASE ... SET, CHECKPOINT. */
	| "system"
	/** Code the parser cannot fully see into: DO blocks, procedural (non-SQL) function bodies. */
	| "opaque-code"
	/** Runs SQL given as a string (query_to_xml, dblink...): invisible to classification and taint. */
	| "dynamic-sql"
	/** Could end read-only enforcement: SET default_transaction_read_only, BEGIN READ WRITE, RESET ALL. */
	| "read-only-escape"
	/**
	 * Changes how the server reads SQL text (standard_conforming_strings off, a client_encoding other
	 * than UTF8): the gateway would no longer read what it forwards as the server does. Blocked for
	 * every access level, admin included.
	 */
	| "parser-state"
	/** Kind the classifier does not know: never read-only. */
	| "unknown";

export interface SqlRisk {
	kind: SqlRiskKind;
	detail: string;
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
	/** Grant key (`namespace/name`), named in the read-only message. */
	grant?: string;
}

// ---------------------------------------------------------------------------------------------
// Masking

/** What the data path knows about the database catalog; resolved lazily and cached per bundle. */
export interface Catalog {
	/** Resolve as PostgreSQL would (search_path when schema is omitted). */
	relation(schema: string | undefined, name: string): Promise<RelationInfo | undefined>;
	relationByOid(oid: number): Promise<RelationInfo | undefined>;
	/**
	 * Every relation of this name, in any schema. Table rules resolve an unqualified name with it as
	 * well: the session's search_path (`SET search_path = reporting`) is not the catalog's, so the
	 * name may mean any of them to the server (gateway/policy/README.md, "Unqualified names").
	 */
	relationsNamed?(name: string): Promise<RelationInfo[]>;
	/**
	 * Every relation in a schema (rejects when there are too many to list). A schema rename hands
	 * its views and partitions to new names, which function bodies created earlier may use
	 * (gateway/policy/README.md, "Late-bound names").
	 */
	relationsInSchema?(schema: string): Promise<RelationInfo[]>;
	/**
	 * The definitions (`CREATE FUNCTION ...` text) of every routine named `name` that is not a
	 * built-in, in `schema` or (unqualified) in any schema, at most 20. A statement calling one runs
	 * its body: rules on tables and functions follow it (gateway/policy/README.md, "Stored code the statement runs").
	 */
	routineDefinitions?(schema: string | undefined, name: string): Promise<string[]>;
	/**
	 * Changes whenever what the catalog answers may have changed (the data path's DDL completed):
	 * plans are cached per epoch, so none made before a change is reused after it.
	 */
	readonly epoch?: number;
	/**
	 * True while the session's open transaction (an explicit block, or the implicit one of a
	 * multi-statement Query or an extended pipeline) ran DDL the catalog's own connection cannot
	 * see before COMMIT: relations may have other columns or definitions than the catalog says.
	 */
	readonly uncommittedDdl?: boolean;
}

export interface RelationInfo {
	oid: number;
	schema: string;
	name: string;
	kind: "table" | "view" | "matview" | "foreign" | "partitioned" | "other";
	columns: { name: string; attnum: number }[];
	/** For views and materialized views: the SQL of the definition, analysed recursively. */
	viewDefinition?: string;
	/**
	 * Partition and inheritance ancestors at any depth (pg_inherits): their rules cover this
	 * relation's rows, which are their rows too. Absent when none (or the catalog cannot tell).
	 */
	ancestors?: RelationName[];
	/** Partitions and inheritance children at any depth: reading or writing this relation reaches their rows. */
	descendants?: RelationName[];
	/**
	 * For an index or a TOAST table: the relation whose data it holds (indexed values, out-of-line
	 * values). Table rules follow it: `SELECT chunk_data FROM pg_toast.pg_toast_16390` reads secrets.
	 */
	owner?: RelationName;
	/**
	 * For a sequence: the tables whose later INSERTs draw values from it (the table owning it, an
	 * identity column's table, a column DEFAULT calling nextval on it). Table rules follow them:
	 * `ALTER SEQUENCE accounts_id_seq RESTART` changes what the application's next INSERT writes.
	 */
	users?: RelationName[];
	/**
	 * Stored code a statement on the relation runs, as SQL text: column defaults and generated
	 * expressions, CHECK constraints (its own and its columns' domains', and their defaults),
	 * triggers (`CREATE TRIGGER ...`), rules (`CREATE RULE ...`), row security policies and index
	 * expressions. `onRead`: run by reading too (policies); the rest by writes.
	 */
	code?: { text: string; onRead: boolean }[];
}

export interface RelationName {
	schema: string;
	name: string;
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
	/**
	 * Set (to the reason) when the analysis could not be made (the statement does not parse, or is
	 * nested deeper than the analysis goes): every column is then masked, and `checkMaskedWrites`
	 * refuses the statement, since what it writes cannot be known either.
	 */
	unanalysed?: string;
	/**
	 * Set (to the reason) when the result's column names come from a query the gateway never saw:
	 * a cursor a function opened with dynamic SQL (`FETCH ALL FROM c`, or a protocol Execute of that
	 * portal), an unresolved EXECUTE, a portal it did not parse. Such names are data like the values
	 * (`OPEN c FOR EXECUTE 'SELECT 1 AS ' || quote_ident(phone)`): the data path renames the columns.
	 */
	namesUnknown?: string;
	/**
	 * Set when the statement would copy masked data somewhere masking cannot follow (INSERT ... SELECT
	 * of a masked column into an unmasked one, CREATE TABLE AS, SELECT INTO, COPY ... TO file, rules,
	 * generated columns, pg_notify/set_config of masked values), rename or move a table holding masked
	 * columns, or change search_path. The data path must refuse the statement (SQLSTATE 42501) with
	 * this rule and message.
	 */
	block?: { rule: string; message: string };
}

export interface MaskContext {
	rules: MaskRule[];
	catalog: Catalog;
	identity: Identity;
	grant: BundleGrant;
	/** HMAC key for the `hash` strategy. */
	maskingKey: Buffer;
}

/** Optional catalog extension: lets masking trust built-in functions (see gateway/policy/README.md). */
export interface FunctionCatalog {
	/**
	 * True when every function named `name` (in `schema`, if given) is a built-in: created with the
	 * server (OID below 16384), not merely placed in pg_catalog. False when none is visible.
	 */
	isBuiltinFunction(schema: string | undefined, name: string): Promise<boolean>;
	/**
	 * True when some built-in function has this name. Without it, masking falls back to
	 * `PURE_BUILTINS` to refuse functions created under a built-in's name.
	 */
	isBuiltinFunctionName?(name: string): Promise<boolean>;
	/**
	 * True when every operator named `name` (in `schema`, if given) is a built-in or calls a C
	 * function (an extension's), none written in SQL or a procedural language. Without it, operators
	 * are trusted (the PostgreSQL data path always provides it).
	 */
	isBuiltinOperator?(schema: string | undefined, name: string): Promise<boolean>;
	/**
	 * True when a function that is not built-in may have this name, so that `t.name` or `(x).name`
	 * may call it (field notation): a visible one, or any name while the session has DDL the catalog
	 * cannot see yet (an open transaction that created or renamed routines). Without it, such names
	 * are taken as columns and fields (the PostgreSQL data path always provides it).
	 */
	mayBeUserFunction?(name: string): Promise<boolean>;
	/**
	 * Casts that run code masking does not see: those whose function is not built-in and not written
	 * in C (an extension's). Without it, casts are trusted (the PostgreSQL data path always provides it).
	 */
	userCasts?(): Promise<UserCasts>;
}

/** FunctionCatalog.userCasts: what a cast may call where the text shows only a type name. */
export interface UserCasts {
	/** Names (pg_type.typname) of the types such casts produce, and of every domain over them. */
	targets: string[];
	/** Some such cast is implicit or assignment: it runs where the text shows no cast at all. */
	implicit: boolean;
}

// ---------------------------------------------------------------------------------------------
// Kubernetes and SSH (gateway/policy/kube.ts, gateway/policy/ssh.ts)

/** A Kubernetes API request as the kube data path parsed it from the URL and method. */
export interface KubeRequest {
	/** Kubernetes verb: get, list, watch, create, update, patch, delete, deletecollection, proxy... */
	verb: string;
	/** Plural resource name (`pods`), empty for non-resource URLs. */
	resource: string;
	subresource?: string;
	/** Empty or undefined for cluster-scoped resources. */
	namespace?: string;
	name?: string;
	/** `""` for the core group, `apps`, ... */
	apiGroup?: string;
	/** URL path without the query; decides which non-resource URLs are discovery (see evaluateKubeRequest). */
	path?: string;
	/**
	 * The request's body sets `ownerReferences` or `ttlSecondsAfterFinished` (on a StatefulSet also a
	 * `persistentVolumeClaimRetentionPolicy` of `Delete`; or the gateway could not tell: an unparsed
	 * body), handing the object (or its claims) to a controller that deletes it: it is matched as the
	 * object's `delete` too (see deleteEquivalents); on a workload, a count or history set to zero
	 * (its controller's deletes: controllerDeletes). Set by the kube data path, which reads the body
	 * only when that would change the decision.
	 */
	handsOver?: boolean;
	/**
	 * The body gives a pod (or a pod template) the node's PID, IPC or network namespace, a host path or a
	 * privileged container: matched as `create pods/exec` in every namespace too (see nodeReach). Set by
	 * the kube data path, which reads the body only when that would change the decision.
	 */
	reachesNode?: boolean;
	/**
	 * An update (PUT), or a server-side apply (PATCH `application/apply-patch+…`), of a named object:
	 * it creates the object when it does not exist, and the apiserver then authorizes it as `create`
	 * (asked of RBAC only in that case). The gateway cannot tell, so the grant must allow `create` too
	 * and rules on `create` match it. Set by the kube data path (request.ts `mayCreate`).
	 */
	mayCreate?: boolean;
}

export interface PolicyVerdict {
	action: "allow" | GuardrailAction;
	/** `grant:<key>` for scope refusals, the GuardrailRule name otherwise. */
	rule?: string;
	message?: string;
	approval?: NonNullable<GuardrailRule["approval"]>;
}

export interface KubeVerdict extends PolicyVerdict {
	/** HTTP status when blocked (403). */
	status?: number;
}

export interface SshVerdict extends PolicyVerdict {
	/** The command segments the decision looked at (after splitting chains, sudo, bash -c). */
	segments?: string[];
}
