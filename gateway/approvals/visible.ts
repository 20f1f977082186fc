/**
 * Requester-controlled text (the held command, user names, comments) as approvers see it in Slack and
 * on the approvals web page. The command is the agent's own text, and a few characters make a screen
 * show something other than what runs: bidi overrides and isolates reorder it (`DELETE FROM t
 * --<U+202E>1 = di EREHW` reads as a DELETE with a WHERE), `\r`, backspace and ESC sequences overwrite
 * it, zero-width, format and other default-ignorable characters (Hangul fillers, variation selectors,
 * tag characters, the soft hyphen) hide parts of it. Each of them is shown as a visible escape
 * (`\u202e`, `\x1b`) instead; newlines and tabs stay. Which characters those are is the one predicate
 * the grants-repository loader refuses (crds/text.ts `INVISIBLE`); the web page's script is given its
 * source (web.ts) and the CLI uses it for terminals (cli/terminal-text.ts).
 */
import { INVISIBLE_ALL } from "../../crds/text.ts";

/** `text` with every control, format, separator and default-ignorable character but `\n` and `\t` shown as an escape. */
export function visibleText(text: string): string {
	return text.replace(INVISIBLE_ALL, (ch) => {
		if (ch === "\n" || ch === "\t") return ch;
		const code = ch.codePointAt(0)!;
		if (ch === "\r") return "\\r";
		if (code <= 0xff) return `\\x${code.toString(16).padStart(2, "0")}`;
		return code <= 0xffff ? `\\u${code.toString(16).padStart(4, "0")}` : `\\u{${code.toString(16)}}`;
	});
}
