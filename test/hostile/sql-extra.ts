/**
 * Extra hostile statements of our own, replayed end to end next to the policy engineer's corpus
 * (gateway/policy/corpus/sql-bypass.ts). Same shape; `any` means "may run or be blocked, but must not
 * leak" (the leak checks of the end-to-end suite still apply to every byte).
 */
import type { BypassCase } from "../../gateway/policy/corpus/sql-bypass.ts";

export type ExtraCase = Omit<BypassCase, "expect"> & { expect: BypassCase["expect"] | "any" };

const b = (id: string, sql: string, note: string, extra: Partial<ExtraCase> = {}): ExtraCase => ({ id, sql, note, expect: "blocked", access: "read-only", ...extra });
const m = (id: string, sql: string, width: number, masked: number[], note: string, extra: Partial<ExtraCase> = {}): ExtraCase => ({
	id,
	sql,
	note,
	expect: "masked",
	access: "read-only",
	width,
	masked,
	...extra,
});
const any = (id: string, sql: string, note: string, extra: Partial<ExtraCase> = {}): ExtraCase => ({ id, sql, note, expect: "any", access: "read-only", ...extra });

export const EXTRA_SQL_CASES: ExtraCase[] = [
	// --- values smuggled out through channels other than DataRow --------------------------------
	any("x-param-status-app-name", "SELECT set_config('application_name', (SELECT email FROM customers WHERE id = 1), false)", "GUC_REPORT setting echoed in ParameterStatus"),
	any("x-param-status-app-name-card", "SELECT set_config('application_name', (SELECT card_number FROM customers WHERE id = 7), false)", "card number through ParameterStatus"),
	any("x-param-status-app-name-phone", "SELECT set_config('application_name', (SELECT phone FROM customers WHERE id = 8), false)", "phone (no content detector) through ParameterStatus"),
	any("x-param-status-set-then-show", "SELECT set_config('search_path', (SELECT card_number FROM customers WHERE id = 2), false); SHOW search_path", "setting read back with SHOW"),
	any("x-current-setting-custom", "SELECT set_config('x.y', (SELECT iban FROM customers WHERE id = 3), false), current_setting('x.y')", "custom GUC round trip"),
	b("x-do-raise-notice", "DO $$ DECLARE r record; BEGIN FOR r IN SELECT email FROM customers LOOP RAISE NOTICE '%', r.email; END LOOP; END $$", "NOTICE leak via DO/RAISE", { access: "read-write" }),
	b("x-do-raise-exception", "DO $$ BEGIN RAISE EXCEPTION '%', (SELECT card_number FROM customers LIMIT 1); END $$", "ERROR leak via DO/RAISE", { access: "read-write" }),
	any("x-cast-error-card", "SELECT card_number::int FROM customers", "failed cast echoes the value in the error"),
	any("x-cast-error-date", "SELECT email::date FROM customers WHERE id = 4", "date parse error echoes the value"),
	any("x-cast-error-json", "SELECT email::json FROM customers WHERE id = 5", "JSON parse error echoes the token"),
	any("x-cast-error-numeric-where", "SELECT 1 FROM customers WHERE iban::numeric > 0", "cast error in WHERE"),
	any("x-to-number-error", "SELECT to_date(phone, 'YYYY') FROM customers", "formatting function error"),
	any("x-regclass-error", "SELECT email::regclass FROM customers WHERE id = 6", "regclass lookup echoes the value"),
	any("x-unique-violation-detail", "INSERT INTO customers (id, name, email, phone, card_number, iban) SELECT 1, name, email, phone, card_number, iban FROM customers WHERE id = 1", "constraint DETAIL shows the key", { access: "read-write" }),
	any("x-explain-verbose", "EXPLAIN (VERBOSE, COSTS OFF) SELECT email FROM customers WHERE id = 1", "EXPLAIN shows plans, not data"),
	any("x-explain-analyze-select", "EXPLAIN (ANALYZE, VERBOSE, COSTS OFF, TIMING OFF) SELECT email FROM customers", "EXPLAIN ANALYZE of a read"),
	any("x-explain-json", "EXPLAIN (FORMAT JSON) SELECT * FROM customer_contacts", "EXPLAIN JSON of a view"),
	// --- statistics and catalog views holding sample values ------------------------------------
	m("x-pg-stats-histogram", "SELECT histogram_bounds::text FROM pg_stats WHERE tablename = 'customers' AND attname = 'email'", 1, [0], "histogram bounds are sample values"),
	m("x-pg-stats-star", "SELECT * FROM pg_stats WHERE tablename = 'customers'", 14, [], "whole pg_stats rows"),
	any("x-pg-statistic", "SELECT stavalues1::text, stavalues2::text FROM pg_statistic", "pg_statistic directly (anyarray)"),
	any("x-pg-statistic-join", "SELECT a.attname, s.stavalues1::text FROM pg_statistic s JOIN pg_attribute a ON a.attrelid = s.starelid AND a.attnum = s.staattnum", "pg_statistic with names"),
	any("x-pg-stats-ext", "SELECT * FROM pg_stats_ext", "extended statistics view"),
	// --- large objects -------------------------------------------------------------------------
	b("x-lo-from-bytea", "SELECT lo_from_bytea(0, convert_to((SELECT email FROM customers LIMIT 1), 'UTF8'))", "copy a masked value into a large object"),
	any("x-lo-get", "SELECT lo_get(oid) FROM pg_largeobject_metadata", "read every large object"),
	any("x-lo-open", "SELECT loread(lo_open(oid, 262144), 100) FROM pg_largeobject_metadata", "lo_open/loread"),
	// --- renaming, shape games -----------------------------------------------------------------
	m("x-column-alias-list", "SELECT e FROM customers AS c(i, n, e)", 1, [0], "table column alias list renames email"),
	m("x-star-alias-list", "SELECT * FROM customers AS c(a, b, x, y, z)", 7, [2, 3, 4, 5], "alias list on *"),
	m("x-paren-star", "SELECT (c).* FROM customers c", 7, [2, 3, 4, 5], "(row).*"),
	m("x-only", "SELECT email FROM ONLY customers", 1, [0], "ONLY"),
	m("x-unnest-array", "SELECT unnest(ARRAY[email, phone]) FROM customers", 1, [0], "unnest of an array of masked columns"),
	m("x-values-lateral", "SELECT v.e FROM customers, LATERAL (VALUES (email)) v(e)", 1, [0], "LATERAL VALUES"),
	m("x-hex", "SELECT encode(convert_to(email, 'UTF8'), 'hex') FROM customers", 1, [0], "hex encoding"),
	m("x-split-chars", "SELECT string_to_array(card_number, NULL) FROM customers", 1, [0], "split into characters"),
	m("x-regexp-split", "SELECT regexp_split_to_table(email, '@') FROM customers", 1, [0], "split into rows"),
	m("x-json-populate", "SELECT (json_populate_record(NULL::customers, row_to_json(c))).email FROM customers c", 1, [0], "populate a record back"),
	m("x-jsonb-each-text", "SELECT j.value FROM customers c, jsonb_each_text(to_jsonb(c)) j", 1, [0], "jsonb_each_text over a row"),
	m("x-xmlagg", "SELECT xmlagg(xmlelement(name e, email)) FROM customers", 1, [0], "xmlagg"),
	m("x-table-to-xml", "SELECT table_to_xml('customers', true, false, '')", 1, [0], "table_to_xml reads a table by name"),
	m("x-query-to-xml-ro", "SELECT query_to_xml('select card_number from customers', true, false, '')", 1, [0], "query_to_xml read-only"),
	m("x-array-to-string", "SELECT array_to_string(array_agg(iban), ';') FROM customers", 1, [0], "array_to_string"),
	m("x-window", "SELECT first_value(email) OVER (ORDER BY id) FROM customers", 1, [0], "window function"),
	m("x-grouping", "SELECT email, count(*) FROM customers GROUP BY ROLLUP (email)", 2, [0], "ROLLUP"),
	m("x-order-by-only", "SELECT id FROM customers ORDER BY email LIMIT 3", 1, [], "masked column only in ORDER BY"),
	m("x-dollar-quoted-ident", "SELECT $a$x$a$ || email FROM customers", 1, [0], "dollar-quoted literal concatenated"),
	m("x-escape-unicode-literal", "SELECT U&'\\0041' || phone FROM customers", 1, [0], "Unicode escape string"),
	m("x-cte-materialized", "WITH x AS MATERIALIZED (SELECT card_number FROM customers) SELECT * FROM x", 1, [0], "MATERIALIZED CTE"),
	any("x-search-path-shadow", "SELECT email FROM pg_temp.customers", "pg_temp schema reference (no such table: error, no leak)"),
	// --- cursors, transactions, prepared statements -----------------------------------------
	m("x-cursor-in-txn", "BEGIN; DECLARE cc CURSOR FOR SELECT card_number FROM customers; FETCH 5 FROM cc; COMMIT", 1, [0], "cursor in one multi-statement string"),
	m("x-cursor-move-fetch", "FETCH NEXT FROM cm", 1, [0], "cursor declared earlier, MOVE then FETCH", {
		setup: ["BEGIN", "DECLARE cm SCROLL CURSOR FOR SELECT id, iban FROM customers", "MOVE 3 IN cm"],
		width: 2,
		masked: [1],
	}),
	m("x-prepare-then-explain-execute", "EXECUTE pe", 1, [0], "prepared via PREPARE, executed after DEALLOCATE of another", {
		setup: ["PREPARE other AS SELECT 1", "PREPARE pe AS SELECT email FROM customers", "DEALLOCATE other"],
	}),
	b("x-prepare-deallocate-reuse", "EXECUTE pr", "name reused after DEALLOCATE for a write", {
		setup: ["PREPARE pr AS SELECT 1", "DEALLOCATE pr", "PREPARE pr AS DELETE FROM orders WHERE id = 2"],
	}),
	b("x-savepoint-write", "BEGIN; SAVEPOINT s; DELETE FROM orders WHERE id = 3; RELEASE s; COMMIT", "write inside a savepoint"),
	b("x-set-role-in-function", "SELECT set_config('role', 'postgres', true)", "set_config role local"),
	b("x-set-role-quoted", "SET \"role\" = 'postgres'", "quoted GUC name"),
	b("x-set-session-auth-string", "SET SESSION AUTHORIZATION 'postgres'", "string form", { access: "read-write" }),
	b("x-reset-ro-in-txn", "BEGIN; SET LOCAL default_transaction_read_only = off; DELETE FROM orders WHERE id = 4; COMMIT", "read-only switched off in a transaction"),
	b("x-copy-from-stdin-csv", "COPY customers (id, email) FROM STDIN WITH (FORMAT csv)", "COPY FROM under read-only"),
	m("x-copy-binary", "COPY customers (email) TO STDOUT WITH (FORMAT binary)", 1, [0], "binary COPY"),
	m("x-copy-view", "COPY (SELECT * FROM customer_contacts) TO STDOUT", 4, [2, 3], "COPY of a view"),
	b("x-copy-to-file-ro", "COPY customers TO '/tmp/drawbridge-leak.csv'", "COPY to a server file under read-only"),
	// --- names the plan must resolve as PostgreSQL does (red-team round 11) ----------------------
	m("x-schema-qualified-outer", "SELECT (SELECT public.customers.phone || '' FROM (SELECT 'x' AS phone) customers) AS v FROM customers", 1, [0], "schema.table.column names the outer relation, not the inner alias"),
	m("x-from-function-name", "SELECT (SELECT phone.phone || '' FROM CAST(c.phone AS text)) AS v FROM customers c, (SELECT 'x' AS phone) phone", 1, [0], "a FROM function without alias is named after its expression"),
	m("x-star-cast-name", "SELECT (SELECT zz || '' FROM (SELECT zz.*::text FROM customers zz WHERE zz.id = c.id) s) AS v FROM customers c, (SELECT 'x' AS zz) o", 1, [0], "zz.*::text is named zz"),
	m("x-system-column-name", "SELECT s.xmin || '' AS v FROM (SELECT (SELECT * FROM (SELECT c.phone AS xmin) q) FROM customers c) s", 1, [0], "xmin of a subquery is its output column, not a system column"),
	// --- functions that read files or run SQL by name -----------------------------------------
	b("x-pg-read-file-overload", "SELECT pg_read_file('postgresql.conf', 0, 100)", "overloaded signature"),
	b("x-pg-stat-file", "SELECT pg_stat_file('postgresql.conf')", "file metadata", { note: "pg_stat_file is not in the corpus rules: allowed or blocked, no leak", expect: "any" }),
	any("x-current-query", "SELECT query FROM pg_stat_activity", "other sessions' query text"),
];
