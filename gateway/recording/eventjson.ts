/**
 * JSON for statement events, the one event a busy PostgreSQL session emits per statement. It is
 * `JSON.stringify(event)` for every value an event can hold (a property test in
 * test/recording/eventjson.test.ts compares the parsed results over arbitrary strings, numbers and
 * optional fields), written field by field in the order `StatementEvent` declares them. For the usual
 * statement (ASCII text, nothing to escape) it is a few string concatenations instead of V8's generic
 * serialiser walking the object, and it says whether the line is pure ASCII, so the recorder can copy
 * it into the chunk buffer as Latin-1 without a UTF-8 encoding pass.
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

/** Printable ASCII except `"` and `\`: such a string is its own JSON body. */
const PLAIN = /^[\x20\x21\x23-\x5b\x5d-\x7e]*$/;

export interface EventJson {
	json: string;
	/** Every character is ASCII (one byte each in UTF-8). */
	ascii: boolean;
}

/** A serialiser with its own ASCII flag; one per recorder (emit is synchronous). */
export class StatementSerializer {
	private ascii = true;

	private str(s: string): string {
		if (PLAIN.test(s)) return `"${s}"`;
		const out = JSON.stringify(s);
		// JSON.stringify escapes control characters and lone surrogates but keeps other non-ASCII.
		if (this.ascii && !/^[\x00-\x7f]*$/.test(out)) this.ascii = false;
		return out;
	}

	private strings(xs: readonly (string | null)[]): string {
		let out = "[";
		for (let i = 0; i < xs.length; i++) {
			if (i > 0) out += ",";
			const x = xs[i];
			out += typeof x === "string" ? this.str(x) : x === null || x === undefined ? "null" : this.other(x);
		}
		return `${out}]`;
	}

	private other(v: unknown): string {
		const out = JSON.stringify(v) ?? "null";
		if (this.ascii && !/^[\x00-\x7f]*$/.test(out)) this.ascii = false;
		return out;
	}

	/** The event's JSON text (same value as JSON.stringify(e)), or undefined for a value outside the event type. */
	serialize(e: StatementEvent): EventJson | undefined {
		this.ascii = true;
		if (typeof e.sql !== "string" || !Array.isArray(e.statementKinds) || typeof e.decision !== "string") return undefined;
		let out = `{"type":"statement","sql":${this.str(e.sql)}`;
		if (e.params !== undefined) out += `,"params":${Array.isArray(e.params) ? this.strings(e.params) : this.other(e.params)}`;
		out += `,"statementKinds":${this.strings(e.statementKinds)},"decision":${this.str(e.decision)}`;
		if (e.rule !== undefined) out += `,"rule":${typeof e.rule === "string" ? this.str(e.rule) : this.other(e.rule)}`;
		if (e.approvalId !== undefined) out += `,"approvalId":${typeof e.approvalId === "string" ? this.str(e.approvalId) : this.other(e.approvalId)}`;
		if (e.durationMs !== undefined) out += `,"durationMs":${this.num(e.durationMs)}`;
		if (e.rows !== undefined) out += `,"rows":${this.num(e.rows)}`;
		if (e.commandTag !== undefined) out += `,"commandTag":${typeof e.commandTag === "string" ? this.str(e.commandTag) : this.other(e.commandTag)}`;
		if (e.error !== undefined) out += `,"error":${this.other(e.error)}`;
		if (e.maskedColumns !== undefined) out += `,"maskedColumns":${Array.isArray(e.maskedColumns) ? this.strings(e.maskedColumns) : this.other(e.maskedColumns)}`;
		if (e.resultColumns !== undefined) out += `,"resultColumns":${Array.isArray(e.resultColumns) ? this.strings(e.resultColumns) : this.other(e.resultColumns)}`;
		if (e.resultRows !== undefined) out += `,"resultRows":${this.other(e.resultRows)}`;
		if (e.resultRowsTruncated !== undefined) out += `,"resultRowsTruncated":${this.other(e.resultRowsTruncated)}`;
		return { json: `${out}}`, ascii: this.ascii };
	}

	/** A number as JSON.stringify writes it (non-finite numbers become null); anything else through JSON.stringify. */
	private num(n: unknown): string {
		if (typeof n === "number") {
			// Durations are rounded to the microsecond: a number with at most three decimals (and under
			// 1e12) is written from its digits; JavaScript's shortest form of such a double is exactly
			// that decimal. Anything else goes through V8's number formatting.
			const k = Math.round(n * 1000);
			if (k / 1000 === n && k < 1e15 && k > -1e15) return k < 0 ? `-${Math.floor(-k / 1000)}${FRACTION[-k % 1000]}` : `${Math.floor(k / 1000)}${FRACTION[k % 1000]}`;
			return Number.isFinite(n) ? String(n) : "null";
		}
		return this.other(n);
	}
}

/** ".5", ".05", ".123" … for thousandths 0-999 ("" for 0). */
const FRACTION = Array.from({ length: 1000 }, (_, f) => (f === 0 ? "" : `.${String(f).padStart(3, "0").replace(/0+$/, "")}`));
