/**
 * Globs used by rules: `*` matches any run of characters, `?` one character, everything else is
 * literal. Matching is case-insensitive by default (conservative for a denylist: a quoted
 * `"Customers"` still matches a rule written `customers`). Compiled once per rule set, never per
 * statement.
 */

export type GlobMatcher = (value: string) => boolean;

export function compileGlob(pattern: string): GlobMatcher {
	return globMatcher(pattern, false);
}

/**
 * compileGlob comparing case too. For allowlists over case-sensitive names (SSH `allowedCommands`: the
 * shell and the target's filesystem tell `ls` from `LS`), where folding case allows more than was
 * written.
 */
export function compileCaseSensitiveGlob(pattern: string): GlobMatcher {
	return globMatcher(pattern, true);
}

/** One `*`-free piece of a glob as a regular expression source: `?` is any one character, the rest literal. */
function pieceSource(piece: string): string {
	let src = "";
	for (const ch of piece) src += ch === "?" ? "[\\s\\S]" : ch.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
	return src;
}

/**
 * A pattern with `*` is matched piece by piece, never as one regular expression: `^a[\s\S]*b[\s\S]*c…$`
 * backtracks over every way to place each `*` (polynomial in the value's length, one degree per `*`), so
 * a rule `*a*b*c*d*` and a 6,000-character command held the event loop, and with it every session of
 * the gateway, for minutes (an agent chooses the command). The pieces between `*`s hold no `*`, so each
 * has a fixed number of characters and its leftmost match also ends first: the first piece at the
 * start, each middle piece at its leftmost place after the one before, the last piece at the end after
 * them is a match exactly when the single expression is one. Each piece keeps that expression's flags
 * (`i` and `u`: the same case folding, `?` one code point).
 */
function globMatcher(pattern: string, caseSensitive: boolean): GlobMatcher {
	if (pattern === "*") return () => true;
	if (!pattern.includes("*") && !pattern.includes("?")) {
		if (caseSensitive) return (v) => v === pattern;
		const lower = pattern.toLowerCase();
		return (v) => v.toLowerCase() === lower;
	}
	const flags = caseSensitive ? "u" : "iu";
	const pieces = pattern.split("*");
	if (pieces.length === 1) {
		const re = new RegExp(`^${pieceSource(pattern)}$`, flags);
		return (v) => re.test(v);
	}
	const head = pieces[0]! === "" ? undefined : new RegExp(pieceSource(pieces[0]!), `${flags}y`);
	const tail = pieces[pieces.length - 1]! === "" ? undefined : new RegExp(`(?:${pieceSource(pieces[pieces.length - 1]!)})$`, `${flags}g`);
	const middle = pieces
		.slice(1, -1)
		.filter((p) => p !== "")
		.map((p) => new RegExp(pieceSource(p), `${flags}g`));
	return (v) => {
		let pos = 0;
		if (head) {
			head.lastIndex = 0;
			if (!head.test(v)) return false;
			pos = head.lastIndex;
		}
		for (const re of middle) {
			re.lastIndex = pos;
			if (!re.test(v)) return false;
			pos = re.lastIndex;
		}
		if (tail) {
			tail.lastIndex = pos;
			return tail.test(v);
		}
		return true;
	};
}

export function compileGlobs(patterns: readonly string[] | undefined): GlobMatcher | undefined {
	if (!patterns || patterns.length === 0) return undefined;
	const ms = patterns.map(compileGlob);
	return (v) => ms.some((m) => m(v));
}

/**
 * A dotted-name glob (`schema.table`, `table`, `schema.table.column`...). Segments are compared from
 * the right; a segment missing on either side matches (an unqualified table could live in any
 * schema on the search_path, so `public.orders` matches a statement that wrote just `orders`).
 */
export type QualifiedMatcher = (nameParts: readonly string[]) => boolean;

export function compileQualified(pattern: string): QualifiedMatcher {
	const segs = pattern.split(".").map(compileGlob);
	return (parts) => {
		const n = Math.min(segs.length, parts.length);
		for (let i = 1; i <= n; i++) {
			if (!segs[segs.length - i]!(parts[parts.length - i]!)) return false;
		}
		return true;
	};
}

export function compileQualifiedList(patterns: readonly string[] | undefined): QualifiedMatcher | undefined {
	if (!patterns || patterns.length === 0) return undefined;
	const ms = patterns.map(compileQualified);
	return (parts) => ms.some((m) => m(parts));
}

/** Splits a dotted name as written in SqlStatementInfo (`db.schema.table`, lower/upper as written). */
export function splitName(name: string): string[] {
	return name.split(".");
}

/**
 * Makes attacker-controlled text (identifiers, commands, names) safe to put in a verdict message:
 * control characters (newlines, escape sequences) become `?`, and it is cut to `max` characters.
 */
export function printable(text: string, max = 200): string {
	const clean = text.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, "?");
	return clean.length > max ? `${clean.slice(0, max)}…` : clean;
}
