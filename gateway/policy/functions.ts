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
	"pg_truncate_visibility_map",
	"pg_sync_replication_slots",
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
	"session_preload_libraries",
	"local_preload_libraries",
	"allow_system_table_mods",
	"lo_compat_privileges",
]);
