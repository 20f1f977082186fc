/**
 * Recording benchmarks against a REAL MinIO (test/env startMinio). Prints ratios, never pass/fail.
 *
 * Usage: ./node_modules/.bin/node --import tsx bench/recording.ts [--outage-seconds 5] [--rate 2000]
 *        [--sessions 8] [--events 20000] [--chunk-bytes 1048576]
 *
 * 1. emit cost: µs per SessionRecorder.emit() vs JSON.stringify of the same event (the floor).
 * 2. upload throughput: --events statement events over --sessions sessions, recorded and drained with
 *    MinIO up: events/s and compressed MB/s into the bucket.
 * 3. outage: MinIO stopped for --outage-seconds while --rate events/s keep arriving (sessions opening
 *    and closing); then MinIO comes back: backlog at the peak, drain time, drain rate vs arrival rate,
 *    and verification of every session. The issue's scenario is `--outage-seconds 600`.
 */
import { listSessions, loadStoreKeys } from "../gateway/recording/catalog.ts";
import type { RecordingEvent, SessionMeta, SessionRecorder } from "../gateway/recording/events.ts";
import { generateRecordingKey } from "../gateway/recording/keys.ts";
import { DiskRecorder } from "../gateway/recording/recorder.ts";
import { parseEndpoint, S3Store } from "../gateway/recording/store.ts";
import { verifySession } from "../gateway/recording/verify.ts";
import { makeTempDir, startMinio } from "../test/env/index.ts";
import { benchArgs } from "./args.ts";

const { values } = benchArgs(import.meta.url, {
	options: {
		"outage-seconds": { type: "string", default: "5" },
		rate: { type: "string", default: "2000" },
		sessions: { type: "string", default: "8" },
		events: { type: "string", default: "20000" },
		"chunk-bytes": { type: "string", default: String(1024 * 1024) },
	},
});
const outageSeconds = Number(values["outage-seconds"]);
const rate = Number(values.rate);
const sessionsN = Number(values.sessions);
const eventsN = Number(values.events);
const chunkBytes = Number(values["chunk-bytes"]);

let n = 0;
function meta(): SessionMeta {
	n++;
	return {
		sessionId: `bench-${Date.now().toString(36)}-${n}`,
		protocol: "postgres",
		connection: "orders-prod",
		connectionNamespace: "data",
		identity: { issuer: "https://bench", subject: `agent-${n % 5}`, username: `agent-${n % 5}`, groups: ["bench"] },
		grant: "bench/agents-ro",
		origin: { commit: "0".repeat(40), pullRequest: 1 },
		client: { address: "127.0.0.1" },
		target: { database: "orders" },
		startedAt: new Date().toISOString(),
		gateway: "bench",
	};
}
function event(i: number): RecordingEvent {
	return {
		type: "statement",
		sql: `SELECT id, name, email FROM customers WHERE id = $1 AND status = 'paid' -- ${i}`,
		params: [String(i)],
		statementKinds: ["select"],
		decision: "allow",
		durationMs: 1,
		rows: 1,
		commandTag: "SELECT 1",
		maskedColumns: ["public.customers.email"],
	};
}
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const rows: [string, string][] = [];
const row = (k: string, v: string) => {
	rows.push([k, v]);
	process.stderr.write(`${k}: ${v}\n`);
};

const minio = await startMinio();
try {
	const store = new S3Store({ ...parseEndpoint(minio.endpoint), accessKey: minio.accessKey, secretKey: minio.secretKey, bucket: "bench" });
	await store.init();
	const key = (await generateRecordingKey()).key;
	const rec = new DiskRecorder({
		spoolDir: makeTempDir("bench-spool"),
		store,
		key,
		chunkMaxBytes: chunkBytes,
		maxSpoolBytes: 8 * 1024 ** 3,
		retryInitialDelayMs: 200,
		retryMaxDelayMs: 2000,
		logger: { info() {}, warn() {}, error() {} },
	});
	await rec.start();

	// 1. emit cost
	{
		const ev = event(1);
		const iterations = 100_000;
		let t = performance.now();
		for (let i = 0; i < iterations; i++) JSON.stringify({ ...ev, seq: i, time: new Date().toISOString(), offsetMs: i });
		const floor = (performance.now() - t) / iterations;
		const s = await rec.openSession(meta());
		t = performance.now();
		for (let i = 0; i < iterations; i++) s.emit(ev);
		const emit = (performance.now() - t) / iterations;
		await s.close({ reason: "client-closed" });
		await rec.drain(120_000);
		row("emit µs/event", (emit * 1000).toFixed(2));
		row("emit / JSON.stringify floor", `${(emit / floor).toFixed(2)}x`);
	}

	// 2. throughput with the store up
	{
		const uploaded0 = await counter(rec, "drawbridge_recording_uploaded_bytes_total");
		const t = performance.now();
		const open: SessionRecorder[] = [];
		for (let i = 0; i < sessionsN; i++) open.push(await rec.openSession(meta()));
		for (let i = 0; i < eventsN; i++) open[i % sessionsN]!.emit(event(i));
		await Promise.all(open.map((s) => s.close({ reason: "client-closed" })));
		await rec.drain(600_000);
		const secs = (performance.now() - t) / 1000;
		const bytes = (await counter(rec, "drawbridge_recording_uploaded_bytes_total")) - uploaded0;
		row("throughput events/s (record+upload)", (eventsN / secs).toFixed(0));
		row("throughput MB/s uploaded (gzip)", (bytes / secs / 1e6).toFixed(2));
	}

	// 3. outage
	{
		const before = await listSessions(store, {});
		await minio.stop();
		const t0 = performance.now();
		let emitted = 0;
		let peak = 0;
		let sessionsDone = 0;
		const live: SessionRecorder[] = [];
		for (let i = 0; i < sessionsN; i++) live.push(await rec.openSession(meta()));
		const tickMs = 100;
		while (performance.now() - t0 < outageSeconds * 1000) {
			const due = Math.floor(((performance.now() - t0) / 1000) * rate);
			while (emitted < due) live[emitted % live.length]!.emit(event(emitted++));
			// Sessions turn over: close one and open another every ~second.
			if (emitted % rate < rate / (1000 / tickMs) && live.length > 0) {
				const s = live.shift()!;
				await s.close({ reason: "client-closed" });
				sessionsDone++;
				live.push(await rec.openSession(meta()));
			}
			peak = Math.max(peak, rec.backlogBytes());
			await sleep(tickMs);
		}
		await Promise.all(live.map((s) => s.close({ reason: "client-closed" })));
		sessionsDone += live.length;
		peak = Math.max(peak, rec.backlogBytes());
		const outage = (performance.now() - t0) / 1000;
		const age = await gauge(rec, "drawbridge_recording_oldest_unsent_event_age_seconds");
		await minio.start();
		const t1 = performance.now();
		await rec.drain(3_600_000);
		const drain = (performance.now() - t1) / 1000;
		row("outage s", outage.toFixed(1));
		row("events during outage", String(emitted));
		row("peak backlog MB", (peak / 1e6).toFixed(2));
		row("oldest unsent age at recovery s", age.toFixed(1));
		row("drain time s", drain.toFixed(2));
		row("drain time / outage", (drain / outage).toFixed(3));
		row("drain rate / arrival rate", ((emitted / drain) / rate).toFixed(1));
		const keys = (await loadStoreKeys(store)).set;
		const after = await listSessions(store, {});
		let bad = 0;
		for (const s of after) if (!(await verifySession(store, s.prefix, keys)).ok) bad++;
		row("sessions recorded in outage / verified", `${after.length - before.length}/${after.length - before.length - bad} (expected ${sessionsDone})`);
	}
	await rec.stop();
	process.stdout.write(`\n| measure | value |\n| --- | --- |\n${rows.map(([k, v]) => `| ${k} | ${v} |`).join("\n")}\n`);
} finally {
	await minio.destroy();
}

async function counter(rec: DiskRecorder, name: string): Promise<number> {
	const m = await rec.metrics.registry.getSingleMetric(name)?.get();
	return m?.values.reduce((a, v) => a + v.value, 0) ?? 0;
}
async function gauge(rec: DiskRecorder, name: string): Promise<number> {
	return counter(rec, name);
}
