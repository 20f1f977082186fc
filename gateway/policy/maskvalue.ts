/**
 * Mask strategies applied to wire values (DataRow fields, COPY fields, parameters).
 *
 * Type handling (a masked value must stay a valid value of its column type, or be NULL):
 * - text-like types (text, varchar, bpchar, name, unknown, xml, and unknown OIDs in text
 *   format such as citext, enums or domains): the strategy applies to the text; in binary format
 *   these types are their UTF-8 bytes, so the same masking applies;
 * - json/jsonb: the masked text becomes a JSON string literal (`"****"`); jsonb binary gets its
 *   version byte;
 * - every other type (numbers, dates, uuid, bytea, arrays, records...): NULL, in text and binary
 *   format alike, because `****` is not a valid integer and a "masked" number would look real.
 *   Strategy `null` is NULL for every type.
 */
import { createHmac } from "node:crypto";
import type { MaskStrategy } from "../config/bundle.ts";
import { PolicyError } from "./errors.ts";

/** PostgreSQL type OIDs (pg_type.oid) the maskers care about. */
// biome-ignore lint/suspicious/noConstEnum: wire codes are const enums (STYLE 3)
export const enum TypeOid {
	Bool = 16,
	Bytea = 17,
	Char = 18,
	Name = 19,
	Int8 = 20,
	Int2 = 21,
	Int4 = 23,
	Text = 25,
	Oid = 26,
	Json = 114,
	Xml = 142,
	Float4 = 700,
	Float8 = 701,
	Unknown = 705,
	Bpchar = 1042,
	Varchar = 1043,
	Date = 1082,
	Time = 1083,
	Timestamp = 1114,
	Timestamptz = 1184,
	Interval = 1186,
	Numeric = 1700,
	Uuid = 2950,
	Jsonb = 3802,
}

// Not `"char"` (TypeOid.Char): one byte in either format, which `****` or a hash is not (a driver
// that checks the length refuses the value); it is masked to NULL like the other fixed-size types.
const TEXT_LIKE = new Set<number>([TypeOid.Text, TypeOid.Varchar, TypeOid.Bpchar, TypeOid.Name, TypeOid.Unknown, TypeOid.Xml]);

/**
 * Built-in OIDs below FirstNormalObjectId (16384) that are not text-like: masked to NULL. OIDs at or
 * above 16384 are user types (citext, enums, domains); in text format they are masked as text.
 */
function isKnownNonText(typeOid: number): boolean {
	return typeOid < 16384 && !TEXT_LIKE.has(typeOid) && typeOid !== TypeOid.Json && typeOid !== TypeOid.Jsonb;
}

export const DEFAULT_REDACTION = "****";
export const DEFAULT_HASH_LENGTH = 16;

/** Masks a string (no type handling). */
export type StringMasker = (value: string) => string | null;

export function compileStringMasker(strategy: MaskStrategy, key: Buffer): StringMasker {
	switch (strategy.type) {
		case "null":
			return () => null;
		case "redact": {
			const r = strategy.replacement ?? DEFAULT_REDACTION;
			return () => r;
		}
		case "partial": {
			const keepLast = Math.max(0, Math.floor(strategy.keepLast));
			const keepFirst = Math.max(0, Math.floor(strategy.keepFirst ?? 0));
			return (value) => {
				const chars = Array.from(value);
				// Never reveal a whole short value: if nothing would be hidden, hide everything.
				if (chars.length <= keepFirst + keepLast) return "*".repeat(chars.length || 1);
				const head = chars.slice(0, keepFirst).join("");
				const tail = keepLast > 0 ? chars.slice(chars.length - keepLast).join("") : "";
				return head + "*".repeat(chars.length - keepFirst - keepLast) + tail;
			};
		}
		case "hash": {
			const length = Math.min(64, Math.max(8, Math.floor(strategy.length ?? DEFAULT_HASH_LENGTH)));
			if (key.length < 16) throw new PolicyError("invalid-masking-key", "hash masking needs a masking key of at least 16 bytes");
			return (value) => createHmac("sha256", key).update(value, "utf8").digest("hex").slice(0, length);
		}
		default:
			// Unknown strategy from a newer bundle: fail closed.
			return () => null;
	}
}

/**
 * How a masker treats every non-null value of one result column (format, type), when that is
 * simpler than a call per value: always the same output, or partial masking done on the wire bytes
 * (ASCII values longer than what is kept; anything else still goes through the call).
 */
export type MaskerShape = { kind: "constant"; value: Buffer | null } | { kind: "ascii-partial"; first: number; last: number } | undefined;

/**
 * The ascii-partial shape applied on wire bytes: src[from, to) (ASCII, longer than first + last)
 * written to out at `at`, same length, `first` and `last` bytes kept and '*' between. Returns the
 * offset after it. The masker's own partial path produces the same bytes (tested).
 */
export function writeAsciiPartial(src: Buffer, from: number, to: number, out: Buffer, at: number, first: number, last: number): number {
	const n = to - from;
	const tail = n - last;
	for (let j = 0; j < n; j++) out[at + j] = j < first || j >= tail ? src[from + j]! : 0x2a;
	return at + n;
}

/** Masks one wire value; null in, null out. `shape` lets the data path skip the call per value. */
export interface ValueMasker {
	(value: Buffer | null, format: 0 | 1, typeOid: number): Buffer | null;
	shape?: (format: 0 | 1, typeOid: number) => MaskerShape;
}

/**
 * Byte-level partial masking for ASCII values (the common case): no string round trip, and one
 * pass by hand (Buffer's fill/copy wrappers cost more than the few bytes of a card number).
 */
function partialAscii(value: Buffer, keepFirst: number, keepLast: number): Buffer | undefined {
	const n = value.length;
	for (let i = 0; i < n; i++) if (value[i]! > 0x7f) return undefined;
	const out = Buffer.allocUnsafe(n || 1);
	if (n <= keepFirst + keepLast) return out.fill(0x2a);
	const tail = n - keepLast;
	for (let i = 0; i < n; i++) out[i] = i < keepFirst || i >= tail ? value[i]! : 0x2a;
	return out;
}

export function compileValueMasker(strategy: MaskStrategy, key: Buffer): ValueMasker {
	if (strategy.type === "null") return Object.assign(() => null, { shape: () => ({ kind: "constant", value: null }) as const });
	let maskString = compileStringMasker(strategy, key);
	if (strategy.type === "hash") {
		// Values repeat (statuses, countries, joined ids): remember recent pseudonyms.
		const inner = maskString;
		const memo = new Map<string, string | null>();
		maskString = (v) => {
			let r = memo.get(v);
			if (r === undefined) {
				r = inner(v);
				if (memo.size >= 4096) memo.clear();
				memo.set(v, r);
			}
			return r;
		};
	}
	const partial =
		strategy.type === "partial"
			? { first: Math.max(0, Math.floor(strategy.keepFirst ?? 0)), last: Math.max(0, Math.floor(strategy.keepLast)) }
			: undefined;
	// Constant strategies: encode once.
	const constant = strategy.type === "redact" ? maskString("") : undefined;
	const constText = constant !== undefined && constant !== null ? Buffer.from(constant, "utf8") : undefined;
	const constJson = constant !== undefined && constant !== null ? Buffer.from(JSON.stringify(constant), "utf8") : undefined;
	const constJsonb = constJson ? Buffer.concat([Buffer.from([1]), constJson]) : undefined;
	// Mirrors the branches of the masker below, per column instead of per value.
	const shape = (format: 0 | 1, typeOid: number): MaskerShape => {
		if (isKnownNonText(typeOid)) return { kind: "constant", value: null };
		if (format === 1 && !TEXT_LIKE.has(typeOid) && typeOid !== TypeOid.Json && typeOid !== TypeOid.Jsonb) return { kind: "constant", value: null };
		if (typeOid === TypeOid.Json || typeOid === TypeOid.Jsonb) {
			if (constJson) return { kind: "constant", value: format === 1 && typeOid === TypeOid.Jsonb ? constJsonb! : constJson };
			return undefined;
		}
		if (constText) return { kind: "constant", value: constText };
		if (partial) return { kind: "ascii-partial", first: partial.first, last: partial.last };
		return undefined;
	};
	const masker = (value: Buffer | null, format: 0 | 1, typeOid: number): Buffer | null => {
		if (value === null) return null;
		if (isKnownNonText(typeOid)) return null;
		if (format === 1 && !TEXT_LIKE.has(typeOid) && typeOid !== TypeOid.Json && typeOid !== TypeOid.Jsonb) {
			return null; // binary format of a user type: we cannot know its layout
		}
		if (typeOid === TypeOid.Json || typeOid === TypeOid.Jsonb) {
			const binaryJsonb = format === 1 && typeOid === TypeOid.Jsonb;
			if (constJson) return binaryJsonb ? constJsonb! : constJson;
			const text = (binaryJsonb ? value.subarray(1) : value).toString("utf8");
			const masked = maskString(jsonScalarText(text));
			if (masked === null) return null;
			const out = Buffer.from(JSON.stringify(masked), "utf8");
			return binaryJsonb ? Buffer.concat([Buffer.from([1]), out]) : out;
		}
		if (constText) return constText;
		if (partial) {
			const fast = partialAscii(value, partial.first, partial.last);
			if (fast) return fast;
		}
		const masked = maskString(value.toString("utf8"));
		return masked === null ? null : Buffer.from(masked, "utf8");
	};
	return Object.assign(masker, { shape });
}

/** A JSON string scalar is masked by its content; anything else by its JSON text. */
function jsonScalarText(text: string): string {
	const t = text.trim();
	if (t.startsWith('"')) {
		try {
			const v = JSON.parse(t) as unknown;
			if (typeof v === "string") return v;
		} catch {
			// fall through
		}
	}
	return t;
}

const maskerCache = new WeakMap<MaskStrategy, Map<Buffer, ValueMasker>>();

/** One-shot form of compileValueMasker (compiled maskers are cached per strategy object and key). */
export function maskValue(value: Buffer | null, format: 0 | 1, typeOid: number, strategy: MaskStrategy, key: Buffer): Buffer | null {
	let byKey = maskerCache.get(strategy);
	if (!byKey) maskerCache.set(strategy, (byKey = new Map()));
	let m = byKey.get(key);
	if (!m) byKey.set(key, (m = compileValueMasker(strategy, key)));
	return m(value, format, typeOid);
}

/** Strength order used when several rules taint one column: null > redact > hash > partial. */
export function strategyStrength(s: MaskStrategy): number {
	switch (s.type) {
		case "null":
			return 4;
		case "redact":
			return 3;
		case "hash":
			return 2;
		case "partial":
			return 1;
		default:
			return 5;
	}
}

/**
 * Binary forms that hold no text and whose text form is no detector's material either (true/false,
 * floats, dates and times, intervals, UUIDs, money): not scanned in binary format. Timestamps, UUIDs
 * and floats are not masked in text format either (gateway/policy/README.md, false positives).
 */
const NOT_SCANNED_BINARY = new Set<number>([
	TypeOid.Bool,
	TypeOid.Float4,
	TypeOid.Float8,
	TypeOid.Date,
	TypeOid.Time,
	TypeOid.Timestamp,
	TypeOid.Timestamptz,
	TypeOid.Interval,
	1266, // timetz
	TypeOid.Uuid,
	790, // money
]);

/** Whether content detectors look at values of this type in binary format (see detectorText). */
export function binaryScannable(typeOid: number): boolean {
	return !NOT_SCANNED_BINARY.has(typeOid);
}

/**
 * The text content detectors scan for a wire value: the value itself in text format; in binary
 * format, what the server would have written in text format for integers and numeric (a card number
 * kept in a bigint or numeric column is a run of digits only in its text form), and the bytes read as
 * UTF-8 for everything else, where strings are embedded as they are (arrays, records, jsonb, tsvector,
 * hstore, bytea...). Undefined: nothing to scan (see binaryScannable, or a malformed value).
 */
export function detectorText(value: Buffer, from: number, to: number, format: 0 | 1, typeOid: number): string | undefined {
	if (format === 0) return value.toString("utf8", from, to);
	const n = to - from;
	switch (typeOid) {
		case TypeOid.Int2:
			return n === 2 ? String(value.readInt16BE(from)) : undefined;
		case TypeOid.Int4:
			return n === 4 ? String(value.readInt32BE(from)) : undefined;
		case TypeOid.Oid:
			return n === 4 ? String(value.readUInt32BE(from)) : undefined;
		case TypeOid.Int8:
			return n === 8 ? value.readBigInt64BE(from).toString() : undefined;
		case TypeOid.Numeric:
			return numericText(value, from, to);
		case TypeOid.Jsonb:
			return n >= 1 ? value.toString("utf8", from + 1, to) : undefined;
		default:
			return binaryScannable(typeOid) ? value.toString("utf8", from, to) : undefined;
	}
}

/** numeric's binary form (ndigits, weight, sign, dscale, base-10000 digits) as numeric_out writes it. */
function numericText(b: Buffer, from: number, to: number): string | undefined {
	if (to - from < 8) return undefined;
	const ndigits = b.readInt16BE(from);
	const weight = b.readInt16BE(from + 2);
	const sign = b.readUInt16BE(from + 4);
	const dscale = b.readUInt16BE(from + 6);
	if ((sign !== 0 && sign !== 0x4000) || ndigits < 0 || to - from < 8 + 2 * ndigits || dscale > 0x3fff) return undefined;
	const digit = (i: number): number => (i >= 0 && i < ndigits ? b.readUInt16BE(from + 8 + 2 * i) : 0);
	let int = "";
	if (weight < 0) int = "0";
	else for (let i = 0; i <= weight; i++) int += i === 0 ? String(digit(i)) : String(digit(i)).padStart(4, "0");
	let frac = "";
	for (let i = weight + 1; frac.length < dscale; i++) frac += String(digit(i)).padStart(4, "0");
	return (sign === 0x4000 ? "-" : "") + int + (dscale > 0 ? `.${frac.slice(0, dscale)}` : "");
}
