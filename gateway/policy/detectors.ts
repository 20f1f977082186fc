/**
 * Content detectors: find sensitive values inside any text (what column rules miss) and mask the
 * matched part only. Text is folded first (Unicode digits, fullwidth forms, spaces, dashes, invisible
 * characters); card numbers come from a linear scanner, the rest from one combined regular expression
 * per rule, compiled once; candidates are then
 * validated (Luhn for card numbers, ISO 13616 mod-97 for IBANs, SSA rules for US SSNs).
 */
import type { ContentDetector, MaskRule, MaskStrategy } from "../config/bundle.ts";
import { PolicyError } from "./errors.ts";
import { compileStringMasker } from "./maskvalue.ts";

// Card numbers are found by a scanner (cardSpans), not a regular expression: see there.
// IBAN: upper or lower case, groups of four separated by up to two spaces or dashes.
const IBAN = String.raw`(?<![A-Za-z0-9])[A-Za-z]{2}\d{2}(?:[ -]{0,2}[A-Za-z0-9]{4}){2,7}(?:[ -]{0,2}[A-Za-z0-9]{1,4})?(?![A-Za-z0-9])`;
// Email: dot-atom or quoted local part (letters of any script), domain labels of any script or
// punycode, TLD of letters or punycode (`xn--p1ai`). Bounded repetitions only (no catastrophic
// backtracking on long runs).
const LOCAL = String.raw`(?:[\p{L}\p{N}\p{M}._%+-]{1,64}|"[^"\\\r\n]{1,64}")`;
const LABEL = String.raw`[\p{L}\p{N}](?:[\p{L}\p{N}\p{M}-]{0,61}[\p{L}\p{N}\p{M}])?`;
const EMAIL = String.raw`(?<![\p{L}\p{N}\p{M}_.+%-])${LOCAL}@${LABEL}(?:\.${LABEL}){0,8}\.(?:xn--[A-Za-z0-9-]{1,59}|\p{L}[\p{L}\p{M}]{1,62})(?![\p{L}\p{N}\p{M}_])`;
const SSN = String.raw`(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])`;
// Phone: +E.164 or 00-prefixed international (optionally grouped), national formats with
// separators: (555) 123-4567, 555-123-4567, 030 1234 5678, 030 12345678, 01 23 45 67 89.
// Bare digit runs are not phones (too many false positives); never followed by `:d` (times).
const PHONE = String.raw`(?<![\w+]|\d\.)(?:(?:\+|00)\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}|\(\d{2,4}\)[ .-]?\d{3,4}[ .-]?\d{3,4}|\d{2,4}[ .-]\d{3,4}[ .-]\d{3,4}|0\d{1,4}(?:[ -]\d{2,8}){1,4})(?![\w-]|[.:]\d)`;

const SOURCES: Record<Exclude<ContentDetector, "creditCard">, string> = {
	iban: IBAN,
	nationalId: SSN,
	email: EMAIL,
	phone: PHONE,
};

/** Order inside the combined expression: longer, validated forms first. */
const ORDER: ContentDetector[] = ["creditCard", "iban", "nationalId", "email", "phone"];

/**
 * Unicode folding, so that look-alike characters cannot hide a value: every decimal digit of any
 * script (fullwidth ４, Arabic-Indic ٤, Devanagari ४, mathematical 𝟒) becomes its ASCII digit,
 * fullwidth ASCII (＋ ＠ Ａ) becomes ASCII, every space separator (NBSP, thin, ideographic) a space,
 * every dash (‐ – — −) a `-`, and invisible format characters (zero-width space/joiners, word
 * joiner, soft hyphen, BOM, bidi marks) are dropped. `map[i]` is the index in the original text of
 * folded character i (`map[length]` = the original length), so matches mask the original span.
 * ASCII text is returned as is (no allocation).
 */
interface Folded {
	s: string;
	map: number[] | undefined;
}
const NON_ASCII = /[^\x00-\x7f]/;
const ND = /^\p{Nd}$/u;
const CF = /^\p{Cf}$/u;
const ZS = /^\p{Zs}$/u;
const PD = /^\p{Pd}$/u;
const digitValues = new Map<number, number>();

/** Value of a decimal digit (Unicode guarantees Nd digits come in contiguous runs 0..9). */
function digitValue(cp: number): number {
	let v = digitValues.get(cp);
	if (v === undefined) {
		let start = cp;
		while (start > 0 && ND.test(String.fromCodePoint(start - 1))) start--;
		v = (cp - start) % 10;
		digitValues.set(cp, v);
	}
	return v;
}

export function foldText(text: string): Folded {
	if (!NON_ASCII.test(text)) return { s: text, map: undefined };
	let s = "";
	const map: number[] = [];
	for (let i = 0; i < text.length; ) {
		const cp = text.codePointAt(i)!;
		const width = cp > 0xffff ? 2 : 1;
		if (cp < 0x80) {
			s += text[i];
			map.push(i);
		} else {
			const ch = String.fromCodePoint(cp);
			let out: string;
			if (ND.test(ch)) out = String.fromCharCode(48 + digitValue(cp));
			else if (cp >= 0xff01 && cp <= 0xff5e) out = String.fromCharCode(cp - 0xfee0);
			else if (CF.test(ch)) out = "";
			else if (ZS.test(ch)) out = " ";
			else if (PD.test(ch) || cp === 0x2212) out = "-";
			else out = ch;
			for (let k = 0; k < out.length; k++) map.push(i);
			s += out;
		}
		i += width;
	}
	map.push(text.length);
	return { s, map };
}

const UUID = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/gi;
const isDigit = (c: number): boolean => c >= 48 && c <= 57;
/**
 * Separators that join any digit groups (space, dash) and those that join groups of 3+ digits only.
 * Tab and newline never join: they delimit COPY columns and rows.
 */
const isLooseSep = (c: number): boolean => c === 32 || c === 45;
const isStrictSep = (c: number): boolean => c === 46 || c === 47 || c === 95 || c === 92;

/**
 * Card numbers: digit groups joined by separator runs of at most 3 characters. Space and dash join
 * any groups; `.`, `/`, `_` and `\` only groups of 3 or more digits (so decimals such as
 * `0.30000000000000004` and dates are not joined). Inside a chain of groups every contiguous run
 * of whole groups holding 13-19 digits is a candidate (longest Luhn-valid first), so a number
 * written next to a card (`42 4111 1111 1111 1111`, a COPY row's id and tab) cannot hide it.
 * A single run of more than 19 digits is not a card. Letters may touch the digits (`pan4111...`);
 * UUIDs are skipped. Linear: at most 19 groups are considered from each group.
 */
function cardSpans(s: string, out: [number, number][]): void {
	const blocked: [number, number][] = [];
	if (s.includes("-")) {
		UUID.lastIndex = 0;
		for (let m = UUID.exec(s); m; m = UUID.exec(s)) blocked.push([m.index, m.index + m[0].length]);
	}
	let b = 0;
	const starts: number[] = [];
	const ends: number[] = [];
	// Luhn over any window of the chain in O(1): prefix sums of the digits with even (A) or odd (B)
	// positions doubled; a window ending at digit e doubles the positions of the other parity.
	const A: number[] = [0];
	const B: number[] = [0];
	const off: number[] = [0];
	const dbl = (d: number): number => (d * 2 > 9 ? d * 2 - 9 : d * 2);
	const flush = (): void => {
		const n = starts.length;
		if (n === 0) return;
		A.length = 1;
		B.length = 1;
		off.length = 1;
		let p = 0;
		for (let g = 0; g < n; g++) {
			for (let x = starts[g]!; x < ends[g]!; x++, p++) {
				const d = s.charCodeAt(x) - 48;
				A.push(A[p]! + (p % 2 === 0 ? dbl(d) : d));
				B.push(B[p]! + (p % 2 === 0 ? d : dbl(d)));
			}
			off.push(p);
		}
		for (let i = 0; i < n; ) {
			let best = -1;
			let j = i;
			while (j < n && off[j + 1]! - off[i]! <= 19) j++;
			// groups i..j-1 hold at most 19 digits; try the longest first
			for (let k = j - 1; k >= i && best < 0; k--) {
				const from = off[i]!;
				const to = off[k + 1]!;
				if (to - from < 13) break;
				const sum = (to - 1) % 2 === 0 ? B[to]! - B[from]! : A[to]! - A[from]!;
				if (sum % 10 === 0) best = k;
			}
			if (best >= 0) {
				out.push([starts[i]!, ends[best]!]);
				i = best + 1;
			} else i++;
		}
		starts.length = 0;
		ends.length = 0;
	};
	let i = 0;
	while (i < s.length) {
		while (b < blocked.length && blocked[b]![1] <= i) b++;
		if (b < blocked.length && blocked[b]![0] <= i) {
			flush();
			i = blocked[b]![1];
			continue;
		}
		if (!isDigit(s.charCodeAt(i))) {
			i++;
			continue;
		}
		let e = i;
		while (e < s.length && isDigit(s.charCodeAt(e))) e++;
		if (starts.length > 0) {
			// joined to the previous group if only separators (at most 3) lie between them
			const gap = s.slice(ends[ends.length - 1], i);
			let loose = gap.length > 0 && gap.length <= 3;
			let strict = false;
			for (let k = 0; loose && k < gap.length; k++) {
				const c = gap.charCodeAt(k);
				if (isStrictSep(c)) strict = true;
				else if (!isLooseSep(c)) loose = false;
			}
			const prevLen = ends[ends.length - 1]! - starts[starts.length - 1]!;
			if (!loose || (strict && (prevLen < 3 || e - i < 3))) flush();
		}
		if (e - i > 19) flush();
		else {
			starts.push(i);
			ends.push(e);
		}
		i = e;
	}
	flush();
}

export function luhnValid(digits: string): boolean {
	let sum = 0;
	let double = false;
	for (let i = digits.length - 1; i >= 0; i--) {
		const c = digits.charCodeAt(i) - 48;
		if (c < 0 || c > 9) return false;
		let d = c;
		if (double) {
			d *= 2;
			if (d > 9) d -= 9;
		}
		sum += d;
		double = !double;
	}
	return digits.length > 0 && sum % 10 === 0;
}

/** ISO 13616: move the first four characters to the end, letters to 10..35, remainder mod 97 == 1. */
export function ibanValid(iban: string): boolean {
	const s = iban.replace(/ /g, "").toUpperCase();
	if (s.length < 15 || s.length > 34 || !/^[A-Z]{2}\d{2}[A-Z0-9]+$/.test(s)) return false;
	const r = s.slice(4) + s.slice(0, 4);
	let rem = 0;
	for (const ch of r) {
		const code = ch.charCodeAt(0);
		const v = code >= 65 ? code - 55 : code - 48;
		rem = v >= 10 ? (rem * 100 + v) % 97 : (rem * 10 + v) % 97;
	}
	return rem === 1;
}

/** US SSN: area not 000, 666 or 9xx; group not 00; serial not 0000. */
export function ssnValid(ssn: string): boolean {
	const m = /^(\d{3})-(\d{2})-(\d{4})$/.exec(ssn);
	if (!m) return false;
	const area = m[1]!;
	return area !== "000" && area !== "666" && area[0] !== "9" && m[2] !== "00" && m[3] !== "0000";
}

function validate(kind: ContentDetector, match: string): boolean {
	switch (kind) {
		case "iban":
			return ibanValid(match.replace(/[ -]/g, ""));
		case "nationalId":
			return ssnValid(match);
		case "phone": {
			const digits = match.replace(/\D/g, "");
			return digits.length >= 7 && digits.length <= 15;
		}
		default:
			return true;
	}
}

/** Masks detected values in a text; returns undefined when nothing matched (no allocation). */
export type TextDetector = (text: string) => string | undefined;

export class DetectorPatternError extends PolicyError {
	constructor(message: string) {
		super("invalid-pattern", message);
		this.name = "DetectorPatternError";
	}
}

/**
 * Compiles a rule's detectors and custom patterns. Throws DetectorPatternError for a custom
 * pattern that is not a valid JavaScript regular expression (the bundle should be refused).
 */
export function compileDetector(
	detectors: readonly ContentDetector[] | undefined,
	patterns: readonly string[] | undefined,
	strategy: MaskStrategy,
	key: Buffer,
): TextDetector {
	const kinds = ORDER.filter((k) => detectors?.includes(k));
	const cards = kinds.includes("creditCard");
	const others = kinds.filter((k): k is Exclude<ContentDetector, "creditCard"> => k !== "creditCard");
	const mask = compileStringMasker(strategy, key);
	const replace = (m: string): string => mask(m) ?? "";
	const builtin = others.length
		? new RegExp(others.map((k) => `(?<${k}>${SOURCES[k]})`).join("|"), "gu")
		: undefined;
	const needsDigit = kinds.every((k) => k !== "email");
	const custom: RegExp[] = [];
	for (const p of patterns ?? []) {
		try {
			custom.push(new RegExp(p, "gu"));
		} catch (err) {
			throw new DetectorPatternError(`invalid masking pattern ${JSON.stringify(p)}: ${(err as Error).message}`);
		}
	}
	return (text) => {
		let out = text;
		let changed = false;
		if (kinds.length > 0 && (needsDigit ? /\d/.test(text) || NON_ASCII.test(text) : true)) {
			const { s, map } = foldText(text);
			const spans: [number, number][] = [];
			if (cards) cardSpans(s, spans);
			if (builtin) {
				builtin.lastIndex = 0;
				for (let m = builtin.exec(s); m; m = builtin.exec(s)) {
					const groups = m.groups!;
					for (const k of others) {
						if (groups[k] !== undefined) {
							if (validate(k, m[0])) spans.push([m.index, m.index + m[0].length]);
							break;
						}
					}
				}
			}
			if (spans.length > 0) {
				spans.sort((x, y) => x[0] - y[0]);
				let res = "";
				let at = 0;
				for (let i = 0; i < spans.length; ) {
					let [from, to] = spans[i]!;
					for (i++; i < spans.length && spans[i]![0] < to; i++) to = Math.max(to, spans[i]![1]);
					if (map) {
						// end after the last matched character (not after invisible ones dropped behind it)
						const last = map[to - 1]!;
						[from, to] = [map[from]!, last + (text.codePointAt(last)! > 0xffff ? 2 : 1)];
					}
					res += text.slice(at, from) + replace(text.slice(from, to));
					at = to;
				}
				out = res + text.slice(at);
				changed = true;
			}
		}
		for (const re of custom) {
			re.lastIndex = 0;
			if (!re.test(out)) continue;
			re.lastIndex = 0;
			out = out.replace(re, (m: string) => {
				if (m === "") return m;
				changed = true;
				return replace(m);
			});
		}
		return changed ? out : undefined;
	};
}

/**
 * One-shot helper: masks detected content in `text` (compiles each call; data paths compile once).
 * `key` is required for the `hash` strategy (a missing key throws `invalid-masking-key`).
 */
export function detectAndMask(
	text: string,
	detectors: readonly ContentDetector[] | undefined,
	patterns: readonly string[] | undefined,
	strategy: MaskStrategy,
	key?: Buffer,
): string {
	return compileDetector(detectors, patterns, strategy, key ?? Buffer.alloc(0))(text) ?? text;
}

const compiledRules = new WeakMap<readonly MaskRule[], Map<Buffer, TextDetector | undefined>>();

/**
 * Compiles every detector rule of a plan into one text function (rules applied in order). Cached
 * per rules array and key: `MaskPlan.detectors` is the same array for every plan of a rule set, so
 * calling this per result set costs a lookup, not a regex compilation.
 */
export function compileDetectorRules(rules: readonly MaskRule[], key: Buffer): TextDetector | undefined {
	let byKey = compiledRules.get(rules);
	if (!byKey) compiledRules.set(rules, (byKey = new Map()));
	if (byKey.has(key)) return byKey.get(key);
	const d = compileDetectorRulesUncached(rules, key);
	byKey.set(key, d);
	return d;
}

function compileDetectorRulesUncached(rules: readonly MaskRule[], key: Buffer): TextDetector | undefined {
	const ds = rules
		.filter((r) => (r.detectors?.length ?? 0) > 0 || (r.patterns?.length ?? 0) > 0)
		.map((r) => compileDetector(r.detectors, r.patterns, r.strategy, key));
	if (ds.length === 0) return undefined;
	if (ds.length === 1) return ds[0];
	return (text) => {
		let out: string | undefined;
		for (const d of ds) {
			const r = d(out ?? text);
			if (r !== undefined) out = r;
		}
		return out;
	};
}
