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

function globMatcher(pattern: string, caseSensitive: boolean): GlobMatcher {
	if (pattern === "*") return () => true;
	if (!pattern.includes("*") && !pattern.includes("?")) {
		if (caseSensitive) return (v) => v === pattern;
		const lower = pattern.toLowerCase();
		return (v) => v.toLowerCase() === lower;
	}
	let src = "^";
	for (const ch of pattern) {
		if (ch === "*") src += "[\\s\\S]*";
		else if (ch === "?") src += "[\\s\\S]";
		else src += ch.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
	}
	const re = new RegExp(`${src}$`, caseSensitive ? "u" : "iu");
	return (v) => re.test(v);
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
