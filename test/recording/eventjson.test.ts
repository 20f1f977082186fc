/**
 * The recorder writes statement events with its own serialiser (gateway/recording/eventjson.ts). What
 * a recording holds must be exactly what JSON.stringify would have stored: these properties run it
 * over arbitrary strings (control characters, quotes, backslashes, non-ASCII, lone surrogates),
 * numbers (NaN, infinities, -0, fractions) and every optional field, then through a real recorder
 * and directory store.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { test } from "node:test";
import fc from "fast-check";
import { listSessions, loadSession } from "../../gateway/recording/catalog.ts";
import { type ByteSink, STATEMENT_FIELD_ORDER, type StatementEvent, StatementSerializer } from "../../gateway/recording/eventjson.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { makeRecorder, meta, tempDir } from "./fixtures.ts";

const text = fc.oneof(
	fc.string(),
	fc.string({ unit: "grapheme" }),
	fc.string({ unit: "binary" }),
	fc.constantFrom("SELECT 1", 'SELECT "a""b", \'}\' -- }', "\\", '"', "\u2028\u2029", "\ud800", "x\udc00y", "\u0000\u001f\u007f", "é", "😀"),
);
const number = fc.oneof(fc.double(), fc.integer(), fc.integer({ min: -2e15, max: 2e15 }).map((k) => k / 1000), fc.integer({ min: -5000, max: 5000 }).map((k) => k / 1000), fc.constantFrom(Number.NaN, Number.POSITIVE_INFINITY, Number.NEGATIVE_INFINITY, -0, 0.1 + 0.2, 1e21, 5e-324, 1.005, 999999999999.999, -0.001, 1e12, 1e15 / 1000));
const decision = fc.constantFrom("allow", "block", "approved", "denied", "expired", "audit") as fc.Arbitrary<StatementEvent["decision"]>;

const statementEvent: fc.Arbitrary<StatementEvent> = fc
	.record(
		{
			sql: text,
			params: fc.array(fc.option(text, { nil: null })),
			statementKinds: fc.array(text, { maxLength: 3 }),
			decision,
			rule: text,
			approvalId: text,
			durationMs: number,
			rows: number,
			commandTag: text,
			error: fc.record({ code: text, message: text }),
			maskedColumns: fc.array(text, { maxLength: 3 }),
			resultColumns: fc.array(text, { maxLength: 3 }),
			resultRows: fc.array(fc.array(fc.option(text, { nil: null }), { maxLength: 3 }), { maxLength: 3 }),
			resultRowsTruncated: fc.boolean(),
		},
		{ requiredKeys: ["sql", "statementKinds", "decision"] },
	)
	.map((r) => {
		// Canonical key order, as the data paths build their events.
		const e: Record<string, unknown> = { type: "statement" };
		for (const k of STATEMENT_FIELD_ORDER) if (k in r) e[k] = (r as Record<string, unknown>)[k];
		return e as unknown as StatementEvent;
	});

/**
 * A sink like the recorder's chunk buffer: it starts small (16 bytes after a prefix that must stay
 * untouched) so that nearly every event makes it grow mid-write.
 */
class TestSink implements ByteSink {
	buf = Buffer.alloc(20, 0x2e);
	len = 4;
	room(more: number): Buffer {
		if (this.len + more > this.buf.length) {
			const next = Buffer.alloc(Math.max(this.len + more, this.buf.length * 2));
			this.buf.copy(next, 0, 0, this.len);
			this.buf = next;
		}
		return this.buf;
	}
}

/** The serialiser's bytes for e as text (undefined when it declines the event), checking the prefix before its write position is untouched. */
function serialize(s: StatementSerializer, e: StatementEvent): string | undefined {
	const sink = new TestSink();
	if (!s.write(e, sink)) {
		assert.equal(sink.len, 4, "a declined event writes nothing");
		return undefined;
	}
	assert.equal(sink.buf.toString("latin1", 0, 4), "....");
	return sink.buf.toString("utf8", 4, sink.len);
}

test("statement JSON is JSON.stringify's text (as UTF-8 bytes) for events in field order", () => {
	const s = new StatementSerializer();
	fc.assert(
		fc.property(statementEvent, (e) => {
			const out = serialize(s, e);
			assert.ok(out !== undefined, "a well-formed statement event is serialised");
			assert.equal(out, JSON.stringify(e));
		}),
		{ numRuns: 3000 },
	);
});

test("statement JSON in another key order or with undefined fields parses to the same value as JSON.stringify's", () => {
	const s = new StatementSerializer();
	fc.assert(
		fc.property(statementEvent, fc.func(fc.integer()), fc.boolean(), (e, order, holes) => {
			const keys = Object.keys(e).sort((a, b) => order(a) - order(b) || (a < b ? -1 : 1));
			const shuffled: Record<string, unknown> = {};
			for (const k of keys) shuffled[k] = (e as unknown as Record<string, unknown>)[k];
			if (holes) shuffled.rule = undefined;
			const out = serialize(s, shuffled as unknown as StatementEvent);
			assert.ok(out !== undefined);
			assert.deepEqual(JSON.parse(out), JSON.parse(JSON.stringify(shuffled)));
		}),
		{ numRuns: 1000 },
	);
});

test("values outside the event type fall back or fail like JSON.stringify: no silent change", () => {
	const s = new StatementSerializer();
	assert.equal(serialize(s, { type: "statement", sql: 42, statementKinds: [], decision: "allow" } as unknown as StatementEvent), undefined);
	assert.throws(() => serialize(s, { type: "statement", sql: "x", statementKinds: [], decision: "allow", rows: 1n } as unknown as StatementEvent), /BigInt/);
	const odd = { type: "statement", sql: "x", params: [1, undefined], statementKinds: ["select", 7, null], decision: "allow" } as unknown as StatementEvent;
	assert.equal(serialize(s, odd), JSON.stringify(odd));
});

test("recorded statements with every kind of text come back from the store exactly as emitted", async () => {
	const store = new DirStore(await tempDir("eventjson-store"));
	await store.init();
	const { rec } = await makeRecorder(store, join(await tempDir("eventjson-spool"), "spool"), { chunkMaxBytes: 4096 });
	try {
		const events = fc.sample(statementEvent, { numRuns: 400, seed: 20261126 });
		events.push({ type: "statement", sql: "SELECT '\ud800' || 'é' || '\u2028' || '\\\\' || '\"'", statementKinds: ["select"], decision: "allow", rows: Number.NaN, durationMs: -0 });
		const m = meta();
		const s = await rec.openSession(m);
		for (const e of events) s.emit(e);
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
		const [summary] = await listSessions(store, { sessionId: m.sessionId });
		const loaded = await loadSession(store, summary!.prefix);
		assert.equal(loaded.events.length, events.length);
		loaded.events.forEach((got, i) => {
			const { seq, time, offsetMs, ...rest } = got;
			assert.equal(seq, i + 1);
			assert.equal(typeof time, "string");
			assert.equal(typeof offsetMs, "number");
			assert.deepEqual(rest, JSON.parse(JSON.stringify(events[i])), `event ${i + 1}`);
		});
	} finally {
		await rec.stop();
	}
});

test("seq, time and offsetMs are written digit by digit as JSON.stringify would: offsets past 2^31 ms, and a clock stepped back keeps the offset where it was", async () => {
	const store = new DirStore(await tempDir("eventjson-offsets"));
	await store.init();
	const start = Date.parse("2027-01-01T00:00:00.000Z");
	const clock = [start + 30 * 86_400_000 + 7, start - 1234, start, start + 999_999_999_999];
	let i = 0;
	const { rec } = await makeRecorder(store, join(await tempDir("eventjson-offsets-spool"), "spool"), { now: () => clock[Math.min(i++, clock.length - 1)]! });
	try {
		const m = meta({ startedAt: new Date(start).toISOString() });
		const s = await rec.openSession(m);
		i = 0;
		for (let k = 0; k < 4; k++) s.emit({ type: "statement", sql: `SELECT ${k}`, statementKinds: ["select"], decision: "allow" });
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
		const [summary] = await listSessions(store, { sessionId: m.sessionId });
		const loaded = await loadSession(store, summary!.prefix);
		assert.deepEqual(
			loaded.events.map((e) => [e.seq, e.time, e.offsetMs]),
			// `time` is the wall clock as read; `offsetMs` never decreases (recordings red-team round 10).
			clock.slice(0, 4).map((t, k) => [k + 1, new Date(t).toISOString(), Math.max(0, ...clock.slice(0, k + 1).map((c) => c - start))]),
		);
	} finally {
		await rec.stop();
	}
});

test("event times are toISOString of the clock: within a second only the milliseconds are rewritten, across seconds, before 1970 and past year 9999 too", async () => {
	const store = new DirStore(await tempDir("eventjson-iso"));
	await store.init();
	const { rec } = await makeRecorder(store, join(await tempDir("eventjson-iso-spool"), "spool"));
	try {
		const base = fc.constantFrom(Date.parse("2026-11-26T18:59:59.000Z"), -1500, 0, 253402300799000);
		const step = fc.oneof(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 1, max: 1999 }), fc.integer({ min: -1999, max: 1999 }), fc.double({ min: 0, max: 2, noNaN: true }));
		fc.assert(
			fc.property(base, fc.array(step, { maxLength: 40 }), (b, steps) => {
				let t = b;
				for (const s of steps) {
					t += s;
					assert.equal(rec.isoBytes(t).toString("latin1"), new Date(t).toISOString(), `t = ${t}`);
				}
			}),
			{ numRuns: 500 },
		);
	} finally {
		await rec.stop();
	}
});
