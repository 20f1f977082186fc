/**
 * JSON for statement events, the one event a busy PostgreSQL session emits per statement. It is
 * `JSON.stringify(event)` for every value an event can hold (a property test in
 * test/recording/eventjson.test.ts compares the results over arbitrary strings, numbers and optional
 * fields), written field by field in the order `StatementEvent` declares them, as UTF-8 bytes straight
 * into the chunk buffer. For the usual statement (ASCII text, nothing to escape) that is a few byte
 * copies instead of V8's generic serialiser walking the object and a string to encode afterwards.
 */
import type { RecordingEvent } from "./events.ts";

export type StatementEvent = Extract<RecordingEvent, { type: "statement" }>;

/**
 * Every field of a statement event, in output order. `satisfies` makes the compiler refuse a field
 * added to the event type but not here, so no field is ever left out of recordings silently.
 */
const STATEMENT_FIELDS = {
	type: 1,
	sql: 2,
	params: 3,
	statementKinds: 4,
	decision: 5,
	rule: 6,
	approvalId: 7,
	durationMs: 8,
	rows: 9,
	commandTag: 10,
	error: 11,
	maskedColumns: 12,
	resultColumns: 13,
	resultRows: 14,
	resultRowsTruncated: 15,
} as const satisfies Record<keyof StatementEvent, number>;
export const STATEMENT_FIELD_ORDER = Object.keys(STATEMENT_FIELDS) as (keyof StatementEvent)[];

/** Printable ASCII except `"` and `\\`: such a string is its own JSON body. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

/**
 * Where events are written: a buffer with a write position that can grow (the recorder's chunk
 * buffer). `room(n)` returns the buffer with at least n bytes free after `len`, replacing `buf` when
 * it has to grow.
 */
export interface ByteSink {
	buf: Buffer;
	len: number;
	room(more: number): Buffer;
}

const latin1 = (s: string) => Buffer.from(s, "latin1");
const OPEN = latin1('{"type":"statement","sql":');
const PARAMS = latin1(',"params":');
const KINDS = latin1(',"statementKinds":');
const DECISION = latin1(',"decision":');
const RULE = latin1(',"rule":');
const APPROVAL = latin1(',"approvalId":');
const DURATION = latin1(',"durationMs":');
const ROWS = latin1(',"rows":');
const TAG = latin1(',"commandTag":');
const ERROR = latin1(',"error":');
const MASKED = latin1(',"maskedColumns":');
const RESULT_COLUMNS = latin1(',"resultColumns":');
const RESULT_ROWS = latin1(',"resultRows":');
const TRUNCATED = latin1(',"resultRowsTruncated":');
/** `,"decision":"allow"` … for every decision, written as one copy. */
const DECISIONS = new Map<string, Buffer>(
	(["allow", "block", "approved", "denied", "expired", "audit"] as const).map((d) => [d, latin1(`,"decision":"${d}"`)]),
);
/** ".5", ".05", ".123" … for thousandths 0-999 (empty for 0). */
const FRACTION = Array.from({ length: 1000 }, (_, f) => latin1(f === 0 ? "" : `.${String(f).padStart(3, "0").replace(/0+$/, "")}`));

/** Copy bytes to buf[p…]; returns the end. A loop: the pieces are a few dozen bytes. */
export function putBytes(buf: Buffer, p: number, bytes: Uint8Array): number {
	for (let i = 0; i < bytes.length; i++) buf[p + i] = bytes[i]!;
	return p + bytes.length;
}

/** A number as JSON writes it: safe integers digit by digit, anything else through JSON.stringify. */
export function putNumber(buf: Buffer, p: number, n: number): number {
	if (!Number.isSafeInteger(n)) return p + buf.write(JSON.stringify(n), p, "latin1");
	if (n < 0) {
		buf[p++] = 0x2d; // -
		n = -n;
	}
	let digits = 1;
	for (let x = n; x >= 10; x = Math.floor(x / 10)) digits++;
	for (let i = p + digits - 1; i >= p; i--) {
		buf[i] = 0x30 + (n % 10);
		n = Math.floor(n / 10);
	}
	return p + digits;
}

/**
 * Writes statement events as JSON straight into a ByteSink: no line string, no concatenations, no
 * number-to-string conversions for the usual statement, so the event leaves nothing behind for the
 * garbage collector but the event object itself. One per recorder (emit is synchronous).
 */
export class StatementSerializer {
	/**
	 * Append the event's JSON (JSON.stringify's text, UTF-8) at sink.len; false, with nothing
	 * written, for a value outside the event type (the caller falls back to JSON.stringify).
	 */
	write(e: StatementEvent, k: ByteSink): boolean {
		if (typeof e.sql !== "string" || !Array.isArray(e.statementKinds) || typeof e.decision !== "string") return false;
		this.bytes(k, OPEN);
		this.str(k, e.sql);
		if (e.params !== undefined) {
			this.bytes(k, PARAMS);
			if (Array.isArray(e.params)) this.strings(k, e.params);
			else this.other(k, e.params);
		}
		this.bytes(k, KINDS);
		this.strings(k, e.statementKinds);
		const decision = DECISIONS.get(e.decision);
		if (decision) this.bytes(k, decision);
		else {
			this.bytes(k, DECISION);
			this.str(k, e.decision);
		}
		if (e.rule !== undefined) this.field(k, RULE, e.rule);
		if (e.approvalId !== undefined) this.field(k, APPROVAL, e.approvalId);
		if (e.durationMs !== undefined) {
			this.bytes(k, DURATION);
			this.num(k, e.durationMs);
		}
		if (e.rows !== undefined) {
			this.bytes(k, ROWS);
			this.num(k, e.rows);
		}
		if (e.commandTag !== undefined) this.field(k, TAG, e.commandTag);
		if (e.error !== undefined) {
			this.bytes(k, ERROR);
			this.other(k, e.error);
		}
		if (e.maskedColumns !== undefined) this.list(k, MASKED, e.maskedColumns);
		if (e.resultColumns !== undefined) this.list(k, RESULT_COLUMNS, e.resultColumns);
		if (e.resultRows !== undefined) {
			this.bytes(k, RESULT_ROWS);
			this.other(k, e.resultRows);
		}
		if (e.resultRowsTruncated !== undefined) {
			this.bytes(k, TRUNCATED);
			this.other(k, e.resultRowsTruncated);
		}
		const buf = k.room(1);
		buf[k.len++] = 0x7d; // }
		return true;
	}

	private bytes(k: ByteSink, b: Uint8Array): void {
		k.len = putBytes(k.room(b.length), k.len, b);
	}

	/** `,"key":` and a value that should be a string. */
	private field(k: ByteSink, key: Uint8Array, v: unknown): void {
		this.bytes(k, key);
		if (typeof v === "string") this.str(k, v);
		else this.other(k, v);
	}

	/** `,"key":` and a value that should be an array of strings. */
	private list(k: ByteSink, key: Uint8Array, v: unknown): void {
		this.bytes(k, key);
		if (Array.isArray(v)) this.strings(k, v);
		else this.other(k, v);
	}

	/**
	 * A JSON string. Printable ASCII without `"` or `\\` is its own body: short ones are copied in the
	 * same loop that checks them, long ones checked by a regular expression and copied as Latin-1.
	 * Anything else goes through JSON.stringify and is written as UTF-8 (it escapes control
	 * characters and lone surrogates, and keeps other non-ASCII characters).
	 */
	private str(k: ByteSink, s: string): void {
		const n = s.length;
		const buf = k.room(n + 2);
		let p = k.len;
		buf[p++] = 0x22;
		if (n <= 64) {
			for (let i = 0; i < n; i++) {
				const c = s.charCodeAt(i);
				if (c < 0x20 || c > 0x7e || c === 0x22 || c === 0x5c) {
					this.escaped(k, s);
					return;
				}
				buf[p++] = c;
			}
		} else if (PLAIN.test(s)) p += buf.write(s, p, "latin1");
		else {
			this.escaped(k, s);
			return;
		}
		buf[p++] = 0x22;
		k.len = p;
	}

	private escaped(k: ByteSink, s: string): void {
		this.utf8(k, JSON.stringify(s));
	}

	private utf8(k: ByteSink, json: string): void {
		const buf = k.room(json.length > 65536 ? Buffer.byteLength(json) : json.length * 3);
		k.len += buf.write(json, k.len, "utf8");
	}

	private strings(k: ByteSink, xs: readonly unknown[]): void {
		let buf = k.room(1);
		buf[k.len++] = 0x5b; // [
		for (let i = 0; i < xs.length; i++) {
			if (i > 0) {
				buf = k.room(1);
				buf[k.len++] = 0x2c; // ,
			}
			const x = xs[i];
			if (typeof x === "string") this.str(k, x);
			else this.other(k, x === undefined ? null : x);
		}
		buf = k.room(1);
		buf[k.len++] = 0x5d; // ]
	}

	private other(k: ByteSink, v: unknown): void {
		this.utf8(k, JSON.stringify(v) ?? "null");
	}

	/**
	 * A number as JSON.stringify writes it (non-finite numbers become null). Durations are rounded to
	 * the microsecond: a number with at most three decimals (and under 1e12) is written from its
	 * digits, since JavaScript's shortest form of such a double is exactly that decimal. Anything else
	 * goes through V8's number formatting.
	 */
	private num(k: ByteSink, n: unknown): void {
		if (typeof n !== "number") {
			this.other(k, n);
			return;
		}
		const m = Math.round(n * 1000);
		if (m / 1000 === n && m < 1e15 && m > -1e15) {
			const buf = k.room(24);
			let p = k.len;
			let a = m;
			if (a < 0) {
				buf[p++] = 0x2d; // -
				a = -a;
			}
			p = putNumber(buf, p, Math.floor(a / 1000));
			k.len = putBytes(buf, p, FRACTION[a % 1000]!);
			return;
		}
		this.utf8(k, Number.isFinite(n) ? String(n) : "null");
	}
}
