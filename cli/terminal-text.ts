/**
 * Text that came from an agent (an exec command, an SFTP path, a SQL statement, a PostgreSQL
 * application_name, a Kubernetes path) printed to an auditor's or approver's terminal. Terminals act on
 * control characters: ESC sequences erase and rewrite lines, `\r` and backspace overwrite, bidi
 * overrides reorder what is shown, zero-width and other default-ignorable characters (Hangul fillers,
 * variation selectors, tag characters) show nothing. An agent could otherwise make `drawbridge
 * recordings show` display a harmless command over the one that ran, or `drawbridge approvals show`
 * display a harmless command for the one being approved. Every such character is shown as a visible
 * escape instead. Which characters: the one predicate the approvals page, Slack and the grants
 * repository loader use (crds/text.ts `INVISIBLE`).
 */
import { INVISIBLE_ALL } from "../crds/text.ts";

function visible(ch: string): string {
	const code = ch.codePointAt(0)!;
	if (ch === "\n") return "\\n";
	if (ch === "\r") return "\\r";
	if (ch === "\t") return "\\t";
	if (code <= 0xff) return `\\x${code.toString(16).padStart(2, "0")}`;
	return code <= 0xffff ? `\\u${code.toString(16).padStart(4, "0")}` : `\\u{${code.toString(16)}}`;
}

/** `text` with every `INVISIBLE` character shown as `\xNN` / `\uNNNN` / `\u{NNNNN}` (`\n` kept when asked). */
export function terminalSafe(text: string, opts: { keepNewlines?: boolean } = {}): string {
	return text.replace(INVISIBLE_ALL, (ch) => (opts.keepNewlines && ch === "\n" ? ch : visible(ch)));
}
