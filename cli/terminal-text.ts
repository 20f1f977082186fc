/**
 * Text that came from an agent (an exec command, an SFTP path, a SQL statement, a PostgreSQL
 * application_name, a Kubernetes path) printed to an auditor's or approver's terminal. Terminals act on
 * control characters: ESC sequences erase and rewrite lines, `\r` and backspace overwrite, bidi
 * overrides reorder what is shown. An agent could otherwise make `drawbridge recordings show` display
 * a harmless command over the one that ran, or `drawbridge approvals show` display a harmless command
 * for the one being approved. Every such character is shown as a visible escape instead.
 */

/** C0 and C1 controls, DEL, line/paragraph separators, and the bidi formatting characters. */
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
const UNSAFE_EXCEPT_NEWLINE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;

function visible(ch: string): string {
	const code = ch.charCodeAt(0);
	if (ch === "\n") return "\\n";
	if (ch === "\r") return "\\r";
	if (ch === "\t") return "\\t";
	return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u${code.toString(16).padStart(4, "0")}`;
}

/** `text` with every control, separator and bidi character shown as `\xNN` / `\uNNNN` (`\n` kept when asked). */
export function terminalSafe(text: string, opts: { keepNewlines?: boolean } = {}): string {
	return text.replace(opts.keepNewlines ? UNSAFE_EXCEPT_NEWLINE : UNSAFE, visible);
}
