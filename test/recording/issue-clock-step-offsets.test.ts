/**
 * Regression (recordings red-team round 10, "a record that lies"): an event's `offsetMs` (and its
 * terminal.cast time) was the wall clock minus the session's start, so a clock stepped back during a
 * session (NTP correcting a fast clock, a VM resumed from a snapshot) gave the events after the step
 * earlier offsets than those before it, negative ones included: the timeline read as if the later
 * command ran first, and the asciicast (whose times must not decrease) played them out of order.
 * Offsets never decrease now; `time` stays the wall clock. Real recorder and directory store, the
 * recorder's clock stepped back between events.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { loadSession } from "../../gateway/recording/catalog.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { makeRecorder, meta, tempDir } from "./fixtures.ts";

test("a clock stepped back does not reorder offsets or the terminal cast", async () => {
	const store = new DirStore(await tempDir("clock-step-store"));
	await store.init();
	const start = Date.parse("2027-05-01T10:00:00.000Z");
	let clock = start;
	const { rec } = await makeRecorder(store, await tempDir("clock-step-spool"), { now: () => clock });
	const m = meta({ protocol: "ssh", connection: "db-primary", target: { login: "lee" }, startedAt: new Date(start).toISOString() });
	try {
		const s = await rec.openSession(m);
		clock = start + 5_000;
		s.emit({ type: "terminal", stream: "o", data: "$ " });
		s.emit({ type: "exec", command: "first", decision: "allow", exitCode: 0 });
		clock = start - 60_000; // stepped back a minute
		s.emit({ type: "exec", command: "second", decision: "allow", exitCode: 0 });
		s.emit({ type: "terminal", stream: "o", data: "after the step\r\n" });
		clock = start + 6_000;
		s.emit({ type: "exec", command: "third", decision: "allow", exitCode: 0 });
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
	let prefix: string | undefined;
	for await (const o of store.list("recordings/")) if (o.key.includes(`/${m.sessionId}/`)) prefix = o.key.replace(/[^/]+$/, "");
	assert.ok(prefix);
	const loaded = await loadSession(store, prefix);
	const offsets = loaded.events.map((e) => e.offsetMs);
	for (let i = 1; i < offsets.length; i++) assert.ok(offsets[i]! >= offsets[i - 1]!, `offsets went back: ${JSON.stringify(offsets)}`);
	assert.ok(offsets.every((o) => o >= 0), JSON.stringify(offsets));
	const times = (loaded.cast ?? "").trim().split("\n").slice(1).map((l) => (JSON.parse(l) as [number])[0]);
	for (let i = 1; i < times.length; i++) assert.ok(times[i]! >= times[i - 1]!, `cast times went back: ${JSON.stringify(times)}`);
	// the wall clock is kept as it was read
	assert.equal(loaded.events.find((e) => e.type === "exec" && e.command === "second")?.time, new Date(start - 60_000).toISOString());
});
