/**
 * Characters a reader does not see as themselves, one predicate for every surface that shows text
 * someone else wrote: the operator's loader refuses them in a grants repository and writes them
 * escaped into status, Events and annotations (operator/gitsync), `drawbridge validate` refuses them
 * in a pull request, and approvers see them escaped in Slack, on the approvals web page and in the
 * CLI (gateway/approvals/visible.ts, cli/terminal-text.ts). Both the operator and the gateway import
 * it from here; nobody keeps a list of their own.
 */

/**
 * Controls (C0, DEL, C1), format characters (bidi controls, zero-width characters, the soft hyphen,
 * tag characters, the Arabic letter mark), line and paragraph separators, and every other
 * default-ignorable code point (variation selectors, Hangul fillers, the combining grapheme joiner,
 * the Mongolian vowel separator), which renderers draw as nothing. Tab and newline are in it too:
 * each surface says whether it keeps them.
 */
export const INVISIBLE = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Default_Ignorable_Code_Point}]/u;

/** `INVISIBLE` with the global flag, for `String.replace`. */
export const INVISIBLE_ALL = new RegExp(INVISIBLE.source, "gu");

/** `INVISIBLE` but tab and newline: text hidden from a reviewer in a field where line breaks are ordinary. */
export const HIDDEN_IN_TEXT = new RegExp(`(?![\\t\\n])${INVISIBLE.source}`, "u");

/**
 * Text from the repository (paths, YAML keys, commit authors) made safe for status, Events, annotations
 * and logs: every `INVISIBLE` character (ANSI escapes, newlines, bidi controls, zero-width
 * characters...) is shown as `\u{…}`.
 */
export function printable(text: string): string {
	return text.replace(INVISIBLE_ALL, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}
