/**
 * Content detectors: find sensitive values inside any text (what column rules miss) and mask the
 * matched part only. One combined regular expression per rule, compiled once; candidates are then
 * validated (Luhn for card numbers, ISO 13616 mod-97 for IBANs, SSA rules for US SSNs).
 */
import type { ContentDetector, MaskRule, MaskStrategy } from "../config/bundle.ts";
import { PolicyError } from "./errors.ts";
import { compileStringMasker } from "./maskvalue.ts";

// Card: 13-19 digits, optionally grouped with single spaces or dashes.
const CARD = String.raw`(?<![\w-])(?:\d[ -]?){12,18}\d(?![\w-])`;
const IBAN = String.raw`(?<![A-Za-z0-9])[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?(?![A-Za-z0-9])`;
const EMAIL = String.raw`(?<![\w.+-])[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,}(?![\w-])`;
const SSN = String.raw`(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])`;
// Phone: +E.164 (optionally grouped), or national formats with separators: (555) 123-4567,
// 555-123-4567, 030 1234 5678. Bare digit runs are not phones (too many false positives).
const PHONE = String.raw`(?<![\w+]|\d\.)(?:\+\d{1,3}(?:[ .-]?\(?\d{1,4}\)?){2,5}|\(\d{2,4}\)[ .-]?\d{3,4}[ .-]?\d{3,4}|\d{2,4}[ .-]\d{3,4}[ .-]\d{3,4})(?![\w-]|\.\d)`;

const SOURCES: Record<ContentDetector, string> = {
	creditCard: CARD,
	iban: IBAN,
	nationalId: SSN,
	email: EMAIL,
	phone: PHONE,
};

/** Order inside the combined expression: longer, validated forms first. */
const ORDER: ContentDetector[] = ["creditCard", "iban", "nationalId", "email", "phone"];

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
		case "creditCard": {
			const digits = match.replace(/[ -]/g, "");
			return digits.length >= 13 && digits.length <= 19 && luhnValid(digits);
		}
		case "iban":
			return ibanValid(match);
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
	const mask = compileStringMasker(strategy, key);
	const replace = (m: string): string => mask(m) ?? "";
	const builtin = kinds.length
		? new RegExp(kinds.map((k) => `(?<${k}>${SOURCES[k]})`).join("|"), "g")
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
		if (builtin && (needsDigit ? /\d/.test(text) : true)) {
			builtin.lastIndex = 0;
			const next = out.replace(builtin, (m: string, ...rest: unknown[]) => {
				const groups = rest[rest.length - 1] as Record<string, string | undefined>;
				for (const k of kinds) {
					if (groups[k] !== undefined) {
						if (!validate(k, m)) return m;
						changed = true;
						return replace(m);
					}
				}
				return m;
			});
			out = next;
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
