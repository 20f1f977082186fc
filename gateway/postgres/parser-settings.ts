/**
 * The gateway reads every SQL text it relays as UTF-8 with standard_conforming_strings on (that is
 * how libpg-query lexes). Two server settings change how PostgreSQL itself reads the same bytes:
 * `standard_conforming_strings = off` (a backslash escapes a quote in '...') and a client-only
 * client_encoding (SJIS, BIG5, GBK, UHC, GB18030, JOHAB: a multibyte character may end in the byte
 * of a backslash). The policy refuses statements that set them; this check covers every other way
 * (the server's defaults, a StartupMessage parameter, a function that already exists) by watching
 * what the server reports in ParameterStatus.
 */
import { isSafeClientEncoding } from "../policy/functions.ts";

/** The settings the server must report, and report safely, before a session may relay SQL. */
export const PARSER_SETTING_NAMES = ["standard_conforming_strings", "client_encoding"] as const;

/** Why a reported `name` = `value` means the server no longer reads SQL as the gateway does. */
export function unsafeParserSetting(name: string, value: string | undefined): string | undefined {
	if (name === "standard_conforming_strings" && value !== "on") {
		return `the server reports standard_conforming_strings = ${value ?? "<not reported>"}; the gateway reads SQL with it on`;
	}
	if (name === "client_encoding" && (value === undefined || !isSafeClientEncoding(value))) {
		return `the server reports client_encoding = ${value ?? "<not reported>"}; the gateway reads SQL as UTF-8 (use UTF8)`;
	}
	return undefined;
}
