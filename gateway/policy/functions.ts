/**
 * What we know about PostgreSQL functions that matter to guardrails and masking. Names are matched
 * on their last segment, lower-case: `pg_catalog.pg_read_file` and `"PG_READ_FILE"` both hit.
 * The list is a denylist of known-dangerous built-ins and well-known extension functions; a user
 * function that writes is caught by the upstream read-only session, not here (README "Limits").
 */
import type { SqlRiskKind } from "./types.ts";

export interface FunctionRisk {
	kind: SqlRiskKind;
	detail: string;
}

const table = new Map<string, FunctionRisk>();

function add(kind: SqlRiskKind, detail: string, names: string[]): void {
	for (const name of names) table.set(name, { kind, detail });
}

add("server-access", "reads server files", [
	"pg_read_file",
	// the pre-9.x API kept in pg_catalog under another name (and adminpack 1.0's aliases): the
	// same file reads, missed by a list of the current names (red-team round)
	"pg_read_file_old",
	"pg_file_read",
	"pg_file_length",
	"pg_read_binary_file",
	"pg_stat_file",
	"pg_ls_dir",
	"pg_ls_logdir",
	"pg_ls_waldir",
	"pg_ls_tmpdir",
	"pg_ls_archive_statusdir",
	"pg_ls_logicalsnapdir",
	"pg_ls_logicalmapdir",
	"pg_ls_replslotdir",
	"pg_ls_summariesdir",
	"pg_logdir_ls",
	"pg_current_logfile",
	// configuration files as rows (behind the pg_hba_file_rules, pg_ident_file_mappings and
	// pg_file_settings views)
	"pg_hba_file_rules",
	"pg_ident_file_mappings",
	"pg_show_all_file_settings",
]);
add("server-access", "writes server files", [
	"pg_file_write",
	"pg_file_rename",
	"pg_file_unlink",
	"pg_file_sync",
	"lo_import",
	"lo_export",
]);
add("server-access", "signals or controls server processes", [
	"pg_terminate_backend",
	"pg_cancel_backend",
	"pg_signal_backend",
	"pg_reload_conf",
	"pg_rotate_logfile",
	"pg_rotate_logfile_old",
	"pg_promote",
	"pg_switch_wal",
	"pg_create_restore_point",
	"pg_backup_start",
	"pg_backup_stop",
	"pg_start_backup",
	"pg_stop_backup",
	"pg_wal_replay_pause",
	"pg_wal_replay_resume",
	"pg_log_backend_memory_contexts",
	"pg_create_physical_replication_slot",
	"pg_create_logical_replication_slot",
	"pg_drop_replication_slot",
	"pg_copy_physical_replication_slot",
	"pg_copy_logical_replication_slot",
	"pg_replication_slot_advance",
	"pg_logical_slot_get_changes",
	"pg_logical_slot_get_binary_changes",
	"pg_logical_emit_message",
	"pg_replication_origin_create",
	"pg_replication_origin_drop",
	"pg_replication_origin_advance",
	"pg_replication_origin_session_setup",
	"pg_import_system_collations",
	"pg_stat_reset",
	"pg_stat_reset_shared",
	"pg_stat_reset_single_table_counters",
	"pg_stat_reset_single_function_counters",
	"pg_stat_reset_slru",
	// the rest of the statistics resets (PostgreSQL 14-18 and pg_stat_statements): they erase the
	// record of what ran as well
	"pg_stat_reset_replication_slot",
	"pg_stat_reset_subscription_stats",
	"pg_stat_reset_backend_stats",
	"pg_stat_statements_reset",
	// planner statistics written directly (PostgreSQL 18): bad plans for every session
	"pg_clear_relation_stats",
	"pg_restore_relation_stats",
	"pg_clear_attribute_stats",
	"pg_restore_attribute_stats",
	"pg_replication_origin_session_reset",
	"pg_replication_origin_xact_setup",
	"pg_replication_origin_xact_reset",
	"pg_log_standby_snapshot",
	"pg_truncate_visibility_map",
	"pg_sync_replication_slots",
]);
// Logical decoding reads the WAL: every row written to any table, masked columns spelled out
// (test_decoding prints `phone[text]:'+1-555-0101'`). The get variants also consume the slot.
add("server-access", "reads decoded WAL (the row values written to every table)", [
	"pg_logical_slot_peek_changes",
	"pg_logical_slot_peek_binary_changes",
]);
add("server-access", "opens connections to other servers (dblink)", [
	"dblink",
	"dblink_exec",
	"dblink_connect",
	"dblink_connect_u",
	"dblink_send_query",
	"dblink_open",
	"dblink_fetch",
	"dblink_get_result",
]);
add("dynamic-sql", "runs SQL given as text", [
	"query_to_xml",
	"query_to_xmlschema",
	"query_to_xml_and_xmlschema",
	"cursor_to_xml",
	"cursor_to_xmlschema",
	"table_to_xml",
	"table_to_xmlschema",
	"table_to_xml_and_xmlschema",
	"schema_to_xml",
	"schema_to_xmlschema",
	"schema_to_xml_and_xmlschema",
	"database_to_xml",
	"database_to_xmlschema",
	"database_to_xml_and_xmlschema",
	"ts_stat",
	"ts_rewrite",
]);

/**
 * Which arguments of a function hold complete SQL text it runs: `query_to_xml(query, ...)`,
 * `ts_stat(sqlquery [, weights])`, `ts_rewrite(query tsquery, select text)` (only the two-argument
 * form; the three-argument one takes tsqueries), and tablefunc's `crosstab(source_sql [,
 * category_sql])` and `crosstab2|3|4(source_sql)`. Empty for every other function. (crosstab ran
 * `select pg_read_file('/etc/hostname')` for a read-only grant: the string was a constant nobody
 * parsed.)
 */
export function sqlTextArguments(name: string, argCount: number): number[] {
	switch (name) {
		case "query_to_xml":
		case "query_to_xmlschema":
		case "query_to_xml_and_xmlschema":
		case "ts_stat":
		case "crosstab2":
		case "crosstab3":
		case "crosstab4":
			return [0];
		case "crosstab":
			return argCount >= 2 ? [0, 1] : [0];
		case "ts_rewrite":
			return argCount === 2 ? [1] : [];
		default:
			return [];
	}
}

/**
 * Functions that assemble SQL from fragments given as arguments and run it: xml2's
 * `xpath_table(key, document, relation, xpaths, criteria)` runs `SELECT key, document FROM relation
 * WHERE criteria` (`criteria` = `false; DELETE FROM accounts; SELECT 1, 2` deleted rows under a rule
 * blocking it), tablefunc's `connectby(relation, key, parent, ...)` likewise. What runs is not one
 * string the classifier could parse: deny by default.
 */
export const SQL_FRAGMENT_FUNCTIONS: ReadonlySet<string> = new Set(["xpath_table", "connectby"]);

/**
 * Functions that read or change the rows of a relation named by their first argument (a name as
 * text, or regclass), which the statement text never names as a relation: `table_to_xml('accounts',
 * ...)` read a table a rule kept from SELECT. `kinds` are what they do to its rows besides reading.
 */
export const RELATION_ARGUMENT_FUNCTIONS: ReadonlyMap<string, { kinds: readonly string[] }> = new Map([
	["table_to_xml", { kinds: [] }],
	["table_to_xmlschema", { kinds: [] }],
	["table_to_xml_and_xmlschema", { kinds: [] }],
	// pageinspect: raw pages and index entries (the bytes of every column)
	["get_raw_page", { kinds: [] }],
	["bt_page_items", { kinds: [] }],
	["bt_page_stats", { kinds: [] }],
	["bt_multi_page_stats", { kinds: [] }],
	["bt_metap", { kinds: [] }],
	// pg_surgery: tuples killed or frozen by hand, in a read-only transaction too
	["heap_force_kill", { kinds: ["DELETE"] }],
	["heap_force_freeze", { kinds: ["UPDATE"] }],
]);

/**
 * Functions that write, move or remove a server file (red-team round 9): a file can be a table's data
 * file (`lo_export(<empty object>, pg_relation_filepath('accounts'))` erased every account under a
 * rule blocking DELETE and TRUNCATE of it), a configuration file naming programs the server runs, or
 * a library a later LOAD runs. What that does is not seen: for admin grants (which keep server files)
 * such a call meets every rule, as COPY ... PROGRAM does.
 */
export const SERVER_FILE_WRITERS: ReadonlySet<string> = new Set(["pg_file_write", "pg_file_rename", "pg_file_unlink", "lo_export"]);

/**
 * Settings naming programs the server runs or libraries it loads (ALTER SYSTEM, ALTER DATABASE|ROLE
 * ... SET): code the classifier does not see, which meets every rule of an admin grant.
 */
export const PROGRAM_SETTINGS: ReadonlySet<string> = new Set([
	"archive_command",
	"archive_library",
	"restore_command",
	"archive_cleanup_command",
	"recovery_end_command",
	"ssl_passphrase_command",
	"shared_preload_libraries",
	"session_preload_libraries",
	"local_preload_libraries",
	"dynamic_library_path",
	"jit_provider",
]);

/**
 * Functions that read every table of a schema (`schema_to_xml('public', ...)`) or of the database,
 * and those that read a server file's contents (a table's data file is its rows: under a rule on
 * SELECT of secrets an admin grant read them with `pg_read_binary_file(pg_relation_filepath(
 * 'secrets'))` or `lo_import` of that path; red-team round 8).
 */
export const ALL_TABLES_FUNCTIONS: ReadonlySet<string> = new Set([
	"pg_read_file",
	"pg_read_file_old",
	"pg_read_binary_file",
	"pg_file_read",
	"lo_import",
	// logical decoding and WAL block images: the rows written to every table
	"pg_logical_slot_get_changes",
	"pg_logical_slot_get_binary_changes",
	"pg_logical_slot_peek_changes",
	"pg_logical_slot_peek_binary_changes",
	"pg_get_wal_block_info",
	"schema_to_xml",
	"schema_to_xmlschema",
	"schema_to_xml_and_xmlschema",
	"database_to_xml",
	"database_to_xmlschema",
	"database_to_xml_and_xmlschema",
]);
add("server-access", "reads raw storage pages (every column's bytes, masked ones included)", [
	"get_raw_page",
	"bt_page_items",
	"bt_page_stats",
	"bt_multi_page_stats",
	"bt_metap",
	"hash_bitmap_info",
]);
add("server-access", "reads the write-ahead log (what was written to every table)", [
	"pg_get_wal_record_info",
	"pg_get_wal_records_info",
	"pg_get_wal_records_info_till_end_of_wal",
	"pg_get_wal_stats",
	"pg_get_wal_stats_till_end_of_wal",
	"pg_get_wal_block_info",
]);
// Not stopped by a read-only transaction: a read-only grant killed a row with heap_force_kill.
add("system", "rewrites table tuples in place (pg_surgery), a read-only transaction does not stop it", ["heap_force_kill", "heap_force_freeze"]);
// Index maintenance that writes index pages (as VACUUM does), allowed in a read-only transaction.
add("write", "writes index pages (index maintenance, like VACUUM)", [
	"brin_summarize_new_values",
	"brin_summarize_range",
	"brin_desummarize_range",
	"gin_clean_pending_list",
]);
add("write", "writes data", [
	"nextval",
	"setval",
	"pg_notify",
	"lo_create",
	"lo_creat",
	"lo_unlink",
	"lo_put",
	"lo_from_bytea",
	"lo_truncate",
	"lo_truncate64",
	"lowrite",
]);

/**
 * Functions that do what a statement kind does, without that statement: large objects are rows of
 * `pg_catalog.pg_largeobject` (files an application keeps with lo_import or JDBC Blobs), and
 * `pg_notify(channel, payload)` is NOTIFY. A statement calling one carries the kinds of what it does
 * (and names the table): under a rule holding DELETEs for approval, `SELECT lo_unlink(16400)` removed
 * a stored document with nobody asked, and `SELECT pg_notify('jobs', ...)` passed a rule blocking
 * NOTIFY (red-team round 8, test/postgres/issue-large-object-writes.test.ts).
 */
export const FUNCTION_STATEMENTS: ReadonlyMap<string, { kinds: readonly string[]; table?: string }> = new Map<string, { kinds: readonly string[]; table?: string }>([
	["pg_notify", { kinds: ["NOTIFY"] }],
	...(
		[
			["lo_unlink", ["DELETE"]],
			// contrib lo's trigger: unlinks the large object a row's column named when the row is
			// updated or deleted (a trigger on the agent's own table then removes anyone's objects)
			["lo_manage", ["DELETE"]],
			["lo_truncate", ["UPDATE"]],
			["lo_truncate64", ["UPDATE"]],
			["lo_put", ["UPDATE"]],
			["lowrite", ["UPDATE"]],
			["lo_create", ["INSERT"]],
			["lo_creat", ["INSERT"]],
			["lo_from_bytea", ["INSERT"]],
			["lo_import", ["INSERT"]],
			["lo_get", []],
			["loread", []],
			["lo_export", []],
		] as const
	).map(([name, kinds]): [string, { kinds: readonly string[]; table: string }] => [name, { kinds, table: "pg_catalog.pg_largeobject" }]),
]);

/**
 * Built-ins that write no table but keep what they are given beyond the statement, where another
 * statement or session reads it back unmasked: `set_config` (ParameterStatus, current_setting),
 * advisory locks (their keys are listed in pg_locks: `pg_advisory_lock(id, ascii(substr(email, n,
 * 1)))` spelled every email out to a read-only grant), `setseed` (random() in the next statement
 * replays the seed) and large-object descriptors (their position, read back with lo_tell). Masking
 * refuses a masked value as an argument to any of them; with clean arguments they are unaffected.
 */
export const STATE_FUNCTIONS: ReadonlySet<string> = new Set([
	"set_config",
	"setseed",
	"pg_advisory_lock",
	"pg_advisory_lock_shared",
	"pg_advisory_xact_lock",
	"pg_advisory_xact_lock_shared",
	"pg_try_advisory_lock",
	"pg_try_advisory_lock_shared",
	"pg_try_advisory_xact_lock",
	"pg_try_advisory_xact_lock_shared",
	"pg_advisory_unlock",
	"pg_advisory_unlock_shared",
	"lo_open",
	"lo_close",
	"loread",
	"lo_lseek",
	"lo_lseek64",
]);

/** The risk of calling `name` (any schema), or undefined for functions not on the list. */
export function functionRisk(qualifiedName: string): FunctionRisk | undefined {
	const dot = qualifiedName.lastIndexOf(".");
	const last = dot >= 0 ? qualifiedName.slice(dot + 1) : qualifiedName;
	return table.get(last.toLowerCase());
}

/** Settings whose change would switch identity or end read-only enforcement. */
export const IDENTITY_SETTINGS: ReadonlySet<string> = new Set(["role", "session_authorization"]);
export const READ_ONLY_SETTINGS: ReadonlySet<string> = new Set([
	"transaction_read_only",
	"default_transaction_read_only",
]);
export const SYSTEM_SETTINGS: ReadonlySet<string> = new Set([
	"session_replication_role",
	// PostgreSQL 17: off skips every event trigger in the session (a DBA's DDL guard), as
	// session_replication_role = replica skips ordinary triggers (red-team round 8)
	"event_triggers",
	"session_preload_libraries",
	"local_preload_libraries",
	"allow_system_table_mods",
	"lo_compat_privileges",
	"zero_damaged_pages",
	"ignore_system_indexes",
	"ignore_checksum_failure",
	"allow_in_place_tablespaces",
	"wal_compression",
	"synchronous_commit",
]);

/**
 * Settings that change how the server reads the SQL text a client sends. The gateway parses every
 * text as UTF-8 with standard_conforming_strings on (libpg-query); with `standard_conforming_strings
 * = off` the server reads `'a\' , '` as one string where the gateway reads two, and with a
 * client-only encoding (SJIS, BIG5, GBK, UHC, GB18030, JOHAB) a multibyte character may end in
 * the byte of `\`, `'` is never one but a following quote then closes or escapes differently. Either
 * way a statement the gateway sees inside a string literal runs.
 */
export const PARSER_SETTINGS: ReadonlySet<string> = new Set(["standard_conforming_strings", "client_encoding"]);

/** Client encodings under which the server reads the bytes the gateway reads as UTF-8. */
const SAFE_CLIENT_ENCODINGS: ReadonlySet<string> = new Set(["utf8", "unicode", "sqlascii"]);

/** A client_encoding value as the server compares it (case and punctuation ignored: `UTF-8`, `utf_8`). */
export function clientEncodingKey(value: string): string {
	return value.toLowerCase().replace(/[^a-z0-9]/g, "");
}

/**
 * Why setting `name` to `value` would change how the server reads SQL text, or undefined when it
 * would not. `value` is the constant assigned (a string, number or boolean), `"default"` for RESET /
 * `TO DEFAULT` / `FROM CURRENT` (the session's own value, which the data path checks when the server
 * reports it), or undefined when it is not a constant.
 */
export function parserSettingChange(name: string, value: string | number | boolean | "default" | undefined): string | undefined {
	if (!PARSER_SETTINGS.has(name)) return undefined;
	if (value === "default") return undefined;
	if (name === "standard_conforming_strings") {
		if (value === true || (typeof value === "number" && value !== 0)) return undefined;
		if (typeof value === "string" && ["on", "true", "yes", "1", "t", "y"].includes(value.toLowerCase())) return undefined;
		return "the gateway reads SQL with standard_conforming_strings on; only on may be set";
	}
	if (typeof value === "string" && SAFE_CLIENT_ENCODINGS.has(clientEncodingKey(value))) return undefined;
	return "the gateway reads SQL as UTF-8; only UTF8 (or SQL_ASCII) may be set as client_encoding";
}

/** Whether a client_encoding the server reports keeps the text the gateway decodes as UTF-8 exact. */
export function isSafeClientEncoding(value: string): boolean {
	return SAFE_CLIENT_ENCODINGS.has(clientEncodingKey(value));
}

/**
 * Settings that change server-wide behaviour or hide activity (server logging, statistics
 * tracking): superuser-only upstream, reserved for admin grants here.
 */
export function isSystemSetting(name: string): boolean {
	return SYSTEM_SETTINGS.has(name) || name.startsWith("log_") || name.startsWith("debug_") || name.startsWith("track_");
}

/**
 * Common built-in functions that compute only from their arguments (they read no table). Masking
 * treats any other function as opaque (its result may carry masked data read inside it) unless the
 * Catalog says it is built-in (`FunctionCatalog.isBuiltinFunction`) or it is written `pg_catalog.f`.
 */
export const PURE_BUILTINS: ReadonlySet<string> = new Set(
	(
		"abs ceil ceiling floor round trunc sign sqrt cbrt exp ln log log10 power pow mod div greatest least random " +
		"width_bucket degrees radians pi sin cos tan asin acos atan atan2 gcd lcm factorial scale " +
		"length char_length character_length octet_length bit_length lower upper initcap substr substring left right " +
		"ltrim rtrim btrim trim lpad rpad replace translate reverse repeat concat concat_ws format position strpos " +
		"split_part string_to_array array_to_string regexp_replace regexp_match regexp_matches regexp_split_to_array " +
		"regexp_split_to_table regexp_substr regexp_count regexp_instr regexp_like starts_with ascii chr md5 sha224 sha256 " +
		"sha384 sha512 encode decode convert_to convert_from to_hex quote_ident quote_literal quote_nullable overlay " +
		"normalize unistr casefold to_char to_number to_date to_timestamp now current_date current_time clock_timestamp " +
		"statement_timestamp transaction_timestamp localtime localtimestamp date_part date_trunc date_bin extract age " +
		"make_date make_time make_timestamp make_timestamptz make_interval justify_days justify_hours justify_interval " +
		"isfinite timezone coalesce nullif count sum avg min max bool_and bool_or every string_agg array_agg " +
		"json_agg jsonb_agg json_object_agg jsonb_object_agg stddev stddev_pop stddev_samp variance var_pop var_samp " +
		"percentile_cont percentile_disc mode rank dense_rank row_number ntile lag lead first_value last_value nth_value " +
		"percent_rank cume_dist array_length array_upper array_lower array_position array_positions array_remove " +
		"array_replace array_append array_prepend array_cat array_dims array_ndims cardinality unnest generate_series " +
		"generate_subscripts to_json to_jsonb row_to_json array_to_json json_build_object jsonb_build_object " +
		"json_build_array jsonb_build_array json_object jsonb_object json_each jsonb_each json_each_text jsonb_each_text " +
		"json_array_elements jsonb_array_elements json_array_elements_text jsonb_array_elements_text json_extract_path " +
		"jsonb_extract_path json_extract_path_text jsonb_extract_path_text json_typeof jsonb_typeof jsonb_set " +
		"jsonb_insert jsonb_pretty jsonb_strip_nulls json_strip_nulls jsonb_path_query jsonb_path_query_array " +
		"jsonb_path_query_first jsonb_path_exists jsonb_path_match json_populate_record jsonb_populate_record " +
		"json_to_record jsonb_to_record json_object_keys jsonb_object_keys json_array_length jsonb_array_length " +
		"xmlagg xmlelement xmlforest xmlconcat xpath xpath_exists gen_random_uuid uuidv4 uuidv7 version " +
		"current_user session_user current_schema current_schemas current_database current_catalog " +
		"pg_typeof pg_column_size num_nonnulls num_nulls hashtext set_masklen host text inet cidr " +
		"bit_and bit_or bit_xor bit_count get_bit set_bit get_byte set_byte to_tsvector to_tsquery plainto_tsquery " +
		"phraseto_tsquery websearch_to_tsquery ts_rank ts_headline setweight int4 int8 int2 float8 float4 numeric " +
		"bool varchar bpchar date timestamp timestamptz interval uuid json jsonb bytea pg_sleep"
	).split(" "),
);
