/**
 * Crafted names in grants: path traversal (`../`), slashes, NUL, Unicode look-alikes, very long
 * names, in every place a name travels:
 * - the API: the offline validator (same rules as the CRDs) refuses them in metadata.name,
 *   metadata.namespace, spec.connection and ServiceAccount subjects;
 * - recordings: a session whose connection, grant and identity carry such names is stored strictly
 *   under the store's root (DiskRecorder → DirStore), never beside it;
 * - the PostgreSQL listener: such a database (Connection) name is answered with FATAL 3D000, the
 *   gateway keeps serving.
 */
import assert from "node:assert/strict";
import { mkdtemp, readdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join, relative, resolve, sep } from "node:path";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { validateResource } from "../../crds/validate.ts";
import { generateRecordingKey } from "../../gateway/recording/keys.ts";
import { DiskRecorder } from "../../gateway/recording/recorder.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { type GatewayFixture, startGatewayFixture } from "../faults/fixture.ts";

const CRAFTED = [
	"../../etc/passwd",
	"..",
	"a/b",
	"a\\b",
	"team/../admin",
	"name\u0000hidden",
	"gränt",
	"ｓｈｏｐ-ｐｒｏｄ",
	"shop\u202eprod",
	"UPPER",
	"-leading-dash",
	"trailing-dash-",
	"dots.in.name..",
	"x".repeat(300),
	"",
	" ",
	"%2e%2e%2f",
	"$(id)",
];

function grant(overrides: { name?: string; namespace?: string; connection?: string; saNamespace?: string; saName?: string }) {
	return {
		apiVersion: "access.drawbridge.dev/v1alpha1",
		kind: "AccessGrant",
		metadata: { name: overrides.name ?? "ok-grant", namespace: overrides.namespace ?? "team" },
		spec: {
			connection: overrides.connection ?? "tickets-prod",
			subjects: [{ kind: "ServiceAccount", namespace: overrides.saNamespace ?? "support", name: overrides.saName ?? "support-bot" }],
			postgres: { access: "read-only" },
			duration: "24h",
			justification: "crafted-name test",
			approvers: { subjects: [{ kind: "Group", name: "support-leads" }], minApprovals: 1 },
		},
	};
}

describe("the API refuses crafted names", () => {
	test("control: the plain grant validates", () => {
		const r = validateResource(grant({}));
		assert.deepEqual(r.errors, []);
	});
	// ServiceAccount subject *names* are not pattern-checked by the schema (reported to the API owner);
	// they are only ever compared for equality with verified token claims, so they are left out here.
	for (const field of ["name", "namespace", "connection", "saNamespace"] as const) {
		for (const bad of CRAFTED) {
			test(`${field} = ${JSON.stringify(bad.length > 40 ? `${bad.slice(0, 40)}…` : bad)} is refused`, () => {
				const r = validateResource(grant({ [field]: bad }));
				assert.ok(r.errors.length > 0, `accepted ${field}=${JSON.stringify(bad)}`);
			});
		}
	}
});

describe("recordings stay under the store root whatever the names", () => {
	test("a session with crafted connection, grant, identity and client names is stored under the root only", async () => {
		const base = await mkdtemp(join(tmpdir(), "drawbridge-crafted-"));
		const root = join(base, "store", "recordings-root");
		const rec = new DiskRecorder({
			spoolDir: join(base, "spool"),
			store: new DirStore(root),
			key: (await generateRecordingKey()).key,
			flushIntervalMs: 20,
			logger: { info() {}, warn() {}, error() {} },
		});
		await rec.start();
		const meta = (sessionId: string, bad: string) => ({
			sessionId,
			protocol: "postgres" as const,
			connection: bad,
			connectionNamespace: bad,
			identity: { issuer: "https://issuer", subject: bad, username: bad, groups: [bad] },
			grant: `${bad}/${bad}`,
			origin: { repository: bad, path: `../${bad}` },
			client: { address: "127.0.0.1", application: bad },
			target: { database: bad },
			startedAt: new Date().toISOString(),
			gateway: bad,
		});
		try {
			// Session ids are the gateway's own UUIDs: anything path-like is refused as misuse.
			for (const id of ["../../../escape", "a/b", "..", ""]) {
				await assert.rejects(rec.openSession(meta(id, "x")), TypeError);
			}
			for (const [i, bad] of CRAFTED.entries()) {
				const s = await rec.openSession({
					sessionId: `ok-${i}`,
					protocol: "postgres",
					connection: bad,
					connectionNamespace: bad,
					identity: { issuer: "https://issuer", subject: bad, username: bad, groups: [bad] },
					grant: `${bad}/${bad}`,
					origin: { repository: bad, path: `../${bad}` },
					client: { address: "127.0.0.1", application: bad },
					target: { database: bad },
					startedAt: new Date().toISOString(),
					gateway: bad,
				});
				s.emit({ type: "statement", sql: "SELECT 1", statementKinds: ["select"], decision: "allow" });
				await s.close({ reason: "client-closed" });
			}
			await rec.drain(60_000);
		} finally {
			await rec.stop();
		}
		const files: string[] = [];
		const walk = async (d: string) => {
			for (const e of await readdir(d, { withFileTypes: true })) {
				const p = join(d, e.name);
				if (e.isDirectory()) await walk(p);
				else files.push(p);
			}
		};
		await walk(join(base, "store"));
		assert.ok(files.length >= CRAFTED.length, `only ${files.length} files written`);
		for (const f of files) {
			const rel = relative(resolve(root), resolve(f));
			assert.ok(!rel.startsWith("..") && !rel.startsWith(sep), `written outside the store root: ${f}`);
		}
	});
});

describe("the PostgreSQL listener with crafted Connection names", () => {
	let f: GatewayFixture;
	before(async () => {
		f = await startGatewayFixture();
	});
	after(async () => {
		await f?.stop();
	});
	for (const bad of CRAFTED.filter((b) => !b.includes("\u0000") && b !== "")) {
		test(`database ${JSON.stringify(bad.length > 40 ? `${bad.slice(0, 40)}…` : bad)} → FATAL 3D000`, async () => {
			const c = new pg.Client(f.clientConfig("alice", await f.token("alice"), { database: bad }));
			c.on("error", () => undefined);
			const e = await c.connect().then(
				() => undefined,
				(x: Error & { code?: string }) => x,
			);
			await c.end().catch(() => undefined);
			assert.ok(e, "connected");
			assert.equal(e.code, "3D000", e.message);
			assert.match(e.message, /no PostgreSQL connection named/);
		});
	}
	test("the gateway still serves", async () => {
		const c = await f.connect("alice");
		assert.equal((await c.query("SELECT 1 AS one")).rows[0]!.one, 1);
		await c.end();
	});
});
