/** Synthetic sessions driven through the real recorder (the data paths produce real ones). */
import { spawn } from "node:child_process";
import { mkdtemp } from "node:fs/promises";
import { tmpdir } from "node:os";
import type { AddressInfo } from "node:net";
import { join } from "node:path";
import Fastify, { type FastifyInstance } from "fastify";
import { type Browser, chromium } from "playwright-core";
import { registerViewer } from "../../gateway/admin/viewer.ts";
import type { Identity } from "../../gateway/config/bundle.ts";
import type { RecordingEvent, SessionMeta } from "../../gateway/recording/events.ts";
import { generateRecordingKey } from "../../gateway/recording/keys.ts";
import { DiskRecorder, type RecorderOptions } from "../../gateway/recording/recorder.ts";
import type { RecordingStore } from "../../gateway/recording/store.ts";

export async function tempDir(name: string): Promise<string> {
	return mkdtemp(join(tmpdir(), `drawbridge-rec-${name}-`));
}

let counter = 0;
export function meta(overrides: Partial<SessionMeta> = {}): SessionMeta {
	counter++;
	return {
		sessionId: `s-${Date.now().toString(36)}-${counter}-${Math.random().toString(36).slice(2, 8)}`,
		protocol: "postgres",
		connection: "orders-prod",
		connectionNamespace: "data",
		identity: { issuer: "https://issuer.test", subject: "system:serviceaccount:ci:deployer", username: "ci-deployer", groups: ["ci"] },
		grant: "ci/deployer-orders-ro",
		origin: { repository: "https://git.test/grants.git", commit: "0123456789abcdef0123456789abcdef01234567", pullRequest: 42, url: "https://git.test/grants/pull/42" },
		client: { address: "127.0.0.1", port: 50000, application: "psql" },
		target: { database: "orders", user: "app_ro" },
		startedAt: new Date().toISOString(),
		gateway: "gw-test-0",
		...overrides,
	};
}

export function sqlEvents(n: number): RecordingEvent[] {
	const out: RecordingEvent[] = [];
	for (let i = 0; i < n; i++) {
		out.push({ type: "statement", sql: `SELECT id, email FROM customers WHERE id = $1 -- ${i}`, params: [String(i)], statementKinds: ["select"], decision: "allow", rows: 1, commandTag: "SELECT 1", maskedColumns: ["public.customers.email"] });
	}
	return out;
}

export const blockedAndApproved: RecordingEvent[] = [
	{ type: "statement", sql: "DROP TABLE customers", statementKinds: ["drop"], decision: "block", rule: "no-ddl", error: { code: "42501", message: "blocked by guardrail no-ddl" } },
	{ type: "approval", approvalId: "ar-7f3c", phase: "Pending", rule: "delete-needs-approval", command: "DELETE FROM tickets" },
	{ type: "approval", approvalId: "ar-7f3c", phase: "Approved", rule: "delete-needs-approval", command: "DELETE FROM tickets", decidedBy: ["user:sam"] },
	{ type: "statement", sql: "DELETE FROM tickets WHERE created < now() - interval '1 year'", statementKinds: ["delete"], decision: "approved", approvalId: "ar-7f3c", rows: 12, commandTag: "DELETE 12" },
];

export async function makeRecorder(store: RecordingStore, spoolDir: string, extra: Partial<RecorderOptions> = {}) {
	const key = extra.key ?? (await generateRecordingKey()).key;
	const rec = new DiskRecorder({
		spoolDir,
		store,
		key,
		retryInitialDelayMs: 50,
		retryMaxDelayMs: 500,
		flushIntervalMs: 20,
		logger: { info() {}, warn() {}, error() {} },
		...extra,
	});
	await rec.start();
	return { rec, key };
}

/** The Node running this test (24, from node_modules), for the child recorder. */
const NODE = process.execPath;

/** Start test/recording/child-recorder.ts (the real recorder in another process); wait for its report line. */
export function startChild(args: string[]): Promise<{ report: Record<string, string | number>; kill: () => Promise<void> }> {
	const child = spawn(NODE, ["--import", "tsx", join(import.meta.dirname, "child-recorder.ts"), ...args], { stdio: ["ignore", "pipe", "pipe"] });
	let out = "";
	let err = "";
	child.stderr.on("data", (d) => (err += d));
	return new Promise((resolve, reject) => {
		const timer = setTimeout(() => reject(new Error(`child recorder did not report in 30 s; stderr:\n${err}`)), 30_000);
		child.on("exit", (code) => reject(new Error(`child recorder exited with ${code}; stderr:\n${err}`)));
		child.stdout.on("data", (d) => {
			out += d;
			const nl = out.indexOf("\n");
			if (nl < 0) return;
			clearTimeout(timer);
			child.removeAllListeners("exit");
			resolve({
				report: JSON.parse(out.slice(0, nl)),
				kill: () =>
					new Promise<void>((r) => {
						child.on("exit", () => r());
						child.kill("SIGKILL");
					}),
			});
		});
	});
}


/** Value of a metric (summed over labels) from the recorder's registry. */
export async function metricValue(rec: DiskRecorder, name: string, labels: Record<string, string> = {}): Promise<number> {
	const m = await rec.metrics.registry.getSingleMetric(name)?.get();
	if (!m) throw new Error(`metric ${name} is not registered`);
	return m.values.filter((v) => Object.entries(labels).every(([k, val]) => v.labels[k] === val)).reduce((a, v) => a + v.value, 0);
}

/** Poll until `check` holds (metrics move in the background). */
export async function eventually(what: string, check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
	const end = Date.now() + timeoutMs;
	while (Date.now() < end) {
		if (await check()) return;
		await new Promise((r) => setTimeout(r, 50));
	}
	throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

/** An auditor (group `auditors`) signed in through OIDC at `issuer`, for the viewer's tests. */
export function auditorIdentity(issuer = "https://idp.test"): Identity {
	return { issuer, issuerKind: "oidc", subject: "noor", username: "noor", groups: ["auditors"], tokenExpiresAt: new Date(Date.now() + 600_000), claims: {} };
}

/**
 * The auditor web viewer over `store` on a loopback port, every request signed in as
 * `auditorIdentity()`, and Debian's Chromium to look at it. `close()` stops both.
 */
export async function viewerInChromium(store: RecordingStore): Promise<{ app: FastifyInstance; url: string; browser: Browser; close: () => Promise<void> }> {
	const auditor = auditorIdentity();
	const app = Fastify();
	await registerViewer(app, { store, auditorGroup: "auditors", authenticate: () => auditor });
	await app.listen({ host: "127.0.0.1", port: 0 });
	const url = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
	const browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
	return {
		app,
		url,
		browser,
		close: async () => {
			await browser.close();
			await app.close();
		},
	};
}
