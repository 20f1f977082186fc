/**
 * The guardrail and masking bypass corpus replayed END TO END: psql → (byte tap) → the real
 * PostgreSQL listener → real PostgreSQL with the seeded shop database. The tap keeps every byte the
 * gateway sends to the client, so the leak check covers DataRow, CopyData, ErrorResponse,
 * NoticeResponse, ParameterStatus and NotificationResponse alike.
 *
 * For every statement of gateway/policy/corpus/sql-bypass.ts and our own test/hostile/sql-extra.ts:
 * - `blocked` / `approval`: an ErrorResponse 42501/42601 from the gateway and no CommandComplete
 *   (nothing ran; no approval service is configured, so approval cases must be refused);
 * - `masked`: the result has the expected width and, for every listed column, no value equal to
 *   what PostgreSQL returns for the same statement directly (run as superuser in a rolled-back
 *   transaction);
 * - always: no seeded email, card number, IBAN or phone number (nor their hex/base64/md5/reversed
 *   forms) in any byte the client received.
 * At the end the seeded tables are intact and no table the corpus tried to create exists.
 *
 * Plaintext between psql and the gateway (`allowInsecure`, loopback) so the tap sees the messages;
 * the gateway still speaks TLS + SCRAM to PostgreSQL.
 */
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { createConnection, createServer, type Server, type Socket } from "node:net";
import { after, before, describe, test } from "node:test";
import pg from "pg";
import { CORPUS_GUARDRAILS, CORPUS_MASK_RULES, SQL_BYPASS_CORPUS } from "../../gateway/policy/corpus/sql-bypass.ts";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { printLogsOnFailure, run, seedRows, startPostgres } from "../env/index.ts";
import { CONNECTION, type GatewayFixture, startGatewayFixture } from "../faults/fixture.ts";
import { EXTRA_SQL_CASES, type ExtraCase } from "./sql-extra.ts";

const PSQL = "/usr/bin/psql";
const USERS = { "read-only": "agent-ro", "read-write": "agent-rw", admin: "agent-admin" } as const;

let f: GatewayFixture;
let tap: Server;
let tapPort = 0;
let capture: Buffer[] = [];
const tapSockets = new Set<Socket>();
let direct: pg.Client;
const secrets: { label: string; bytes: Buffer }[] = [];

before(async () => {
	const pgh = await startPostgres();
	// Make the statistics views hold real sample values, and give the corpus its user function.
	await pgh.query("ANALYZE customers");
	await pgh.query("CREATE FUNCTION get_email(int) RETURNS text LANGUAGE sql AS 'SELECT email FROM customers WHERE id = $1'");
	f = await startGatewayFixture({
		pg: pgh,
		grants: [
			{ name: "agent-ro", user: USERS["read-only"], access: "read-only" },
			{ name: "agent-rw", user: USERS["read-write"], access: "read-write" },
			{ name: "agent-admin", user: USERS.admin, access: "admin" },
		],
		guardrails: CORPUS_GUARDRAILS,
		maskRules: CORPUS_MASK_RULES,
		listener: { allowInsecure: true },
	});
	tap = createServer((client) => {
		const up = createConnection({ host: "127.0.0.1", port: f.port });
		tapSockets.add(client).add(up);
		client.on("close", () => tapSockets.delete(client));
		up.on("close", () => tapSockets.delete(up));
		up.on("data", (b: Buffer) => capture.push(Buffer.from(b)));
		up.pipe(client);
		client.pipe(up);
		client.on("error", () => up.destroy());
		up.on("error", () => client.destroy());
	});
	await new Promise<void>((r) => tap.listen(0, "127.0.0.1", () => r()));
	tapPort = (tap.address() as { port: number }).port;
	direct = await pgh.connect();
	for (const c of seedRows().customers) {
		const add = (label: string, s: string) => secrets.push({ label: `${label} of customer ${c.id}`, bytes: Buffer.from(s) });
		add("email", c.email);
		add("card number", c.card_number);
		add("IBAN", c.iban);
		add("phone", c.phone);
		add("hex email", Buffer.from(c.email).toString("hex"));
		add("base64 IBAN", Buffer.from(c.iban).toString("base64"));
		add("md5 email", createHash("md5").update(c.email).digest("hex"));
		add("reversed card number", [...c.card_number].reverse().join(""));
	}
});
after(async () => {
	await direct?.end().catch(() => undefined);
	for (const s of tapSockets) s.destroy();
	await new Promise<void>((r) => (tap ? tap.close(() => r()) : r()));
	const pgh = f?.pg;
	await f?.stop();
	await pgh?.stop();
});
printLogsOnFailure(() => [["postgres", f?.pg]]);

interface Msg {
	type: string;
	body: Buffer;
}

function parseServerStream(buf: Buffer): Msg[] {
	const out: Msg[] = [];
	let i = 0;
	while (i + 5 <= buf.length) {
		const len = buf.readInt32BE(i + 1);
		if (len < 4 || i + 1 + len > buf.length) break;
		out.push({ type: String.fromCharCode(buf[i]!), body: buf.subarray(i + 5, i + 1 + len) });
		i += 1 + len;
	}
	return out;
}

function errorFields(body: Buffer): Record<string, string> {
	const f: Record<string, string> = {};
	let i = 0;
	while (i < body.length && body[i] !== 0) {
		const code = String.fromCharCode(body[i]!);
		const end = body.indexOf(0, i + 1);
		f[code] = body.subarray(i + 1, end).toString("utf8");
		i = end + 1;
	}
	return f;
}

function dataRow(body: Buffer): (string | null)[] {
	const n = body.readInt16BE(0);
	const out: (string | null)[] = [];
	let i = 2;
	for (let c = 0; c < n; c++) {
		const len = body.readInt32BE(i);
		i += 4;
		if (len < 0) out.push(null);
		else {
			out.push(body.subarray(i, i + len).toString("utf8"));
			i += len;
		}
	}
	return out;
}

/** Sections of the stream, each ending with ReadyForQuery: [startup, setup..., statement]. */
function sections(msgs: Msg[]): Msg[][] {
	const out: Msg[][] = [[]];
	for (const m of msgs) {
		out[out.length - 1]!.push(m);
		if (m.type === "Z") out.push([]);
	}
	if (out[out.length - 1]!.length === 0) out.pop();
	return out;
}

async function viaGateway(c: ExtraCase): Promise<{ raw: Buffer; msgs: Msg[]; stderr: string; stdout: string }> {
	capture = [];
	const user = USERS[c.access ?? "read-only"];
	const token = await f.token(user);
	const args = ["-X", "-h", "127.0.0.1", "-p", String(tapPort), "-U", user, "-d", CONNECTION, "-v", "ON_ERROR_STOP=0"];
	for (const s of c.setup ?? []) args.push("-c", s);
	args.push("-c", c.sql);
	if (c.sql.includes("\u0000")) return viaNodePg(c, user, token);
	const r = await run(PSQL, args, {
		env: { PATH: process.env.PATH ?? "/usr/bin:/bin", PGPASSWORD: token, PGSSLMODE: "disable", PGCONNECT_TIMEOUT: "60" },
		input: "",
		timeoutMs: 120_000,
	});
	// psql has exited: the tap saw everything the gateway sent before the connection closed.
	await new Promise((r) => setImmediate(r));
	const raw = Buffer.concat(capture);
	return { raw, msgs: parseServerStream(raw), stderr: r.stderr, stdout: r.stdout };
}

async function viaNodePg(c: ExtraCase, user: string, token: string): Promise<{ raw: Buffer; msgs: Msg[]; stderr: string; stdout: string }> {
	const client = new pg.Client({ host: "127.0.0.1", port: tapPort, user, password: token, database: CONNECTION, ssl: false });
	client.on("error", () => undefined);
	let stderr = "";
	await client.connect();
	try {
		for (const s of [...(c.setup ?? []), c.sql]) await client.query(s).catch((e: Error) => (stderr += `${e.message}\n`));
	} finally {
		await client.end().catch(() => undefined);
	}
	await new Promise((r) => setImmediate(r));
	const raw = Buffer.concat(capture);
	return { raw, msgs: parseServerStream(raw), stderr, stdout: "" };
}

/** The same statement straight to PostgreSQL as superuser, rolled back. Undefined when it fails there. */
async function viaDirect(c: ExtraCase): Promise<(string | null)[][] | undefined> {
	if (/\bCOPY\b/i.test(c.sql)) return undefined;
	const rawTypes = { getTypeParser: () => (v: string) => v };
	try {
		await direct.query("BEGIN");
		for (const s of c.setup ?? []) if (!/^\s*BEGIN\s*$/i.test(s)) await direct.query(s);
		const sql = c.sql.replace(/^\s*BEGIN\s*;/i, "").replace(/;\s*COMMIT\s*;?\s*$/i, "");
		const res = (await direct.query({ text: sql, rowMode: "array", types: rawTypes } as never)) as unknown as pg.QueryResult | pg.QueryResult[];
		const last = Array.isArray(res) ? [...res].reverse().find((r) => r.fields.length > 0) : res;
		return (last?.rows ?? []) as (string | null)[][];
	} catch {
		return undefined;
	} finally {
		await direct.query("ROLLBACK").catch(() => undefined);
	}
}

function leaks(raw: Buffer): string[] {
	const found: string[] = [];
	for (const s of secrets) if (raw.includes(s.bytes)) found.push(s.label);
	return found;
}

const ALL: ExtraCase[] = [...SQL_BYPASS_CORPUS.map((c) => c as ExtraCase), ...EXTRA_SQL_CASES];

describe("SQL bypass corpus end to end (psql → gateway → PostgreSQL)", () => {
	test("the corpus is large enough to mean something", () => {
		assert.ok(ALL.length >= 200, String(ALL.length));
	});

	for (const c of ALL) {
		test(`${c.id} [${c.access ?? "read-only"}] ${c.expect}: ${c.note}`, async () => {
			const g = await viaGateway(c);
			const secs = sections(g.msgs);
			assert.ok(secs.length >= 2 + (c.setup?.length ?? 0) || c.expect !== "masked", `session did not complete: ${g.stderr}`);
			const found = leaks(g.raw);
			assert.deepEqual(found.slice(0, 5), [], `seeded values reached the client (${found.length}): ${found.slice(0, 5).join(", ")}`);
			const last = secs[secs.length - 1] ?? [];
			const errors = last.filter((m) => m.type === "E").map((m) => errorFields(m.body));
			const refusal = errors.find((e) => e.C === "42501" || e.C === "42601" || e.D?.startsWith("Drawbridge rule:") || (e.S === "FATAL" && e.C === "08P01"));
			if (c.expect === "blocked" || c.expect === "approval") {
				assert.ok(refusal, `expected a refusal by the gateway, got ${JSON.stringify(errors)} stderr=${g.stderr}`);
				const completed = last.filter((m) => m.type === "C").map((m) => m.body.toString("utf8", 0, m.body.length - 1));
				assert.deepEqual(completed, [], "a statement of a refused string completed");
			}
			// Masked cases: refused by the gateway (conservative) or failed in PostgreSQL are fine, as long
			// as nothing leaked (checked above) and the gateway did not fail internally.
			assert.ok(!errors.some((e) => e.C === "XX000"), `gateway internal error: ${JSON.stringify(errors)}`);
			if (c.expect === "masked" && errors.length === 0) {
				const shape = [...last].reverse().find((m) => m.type === "T" || m.type === "H");
				assert.ok(shape, `no result in ${last.map((m) => m.type).join("")}`);
				const width = shape.type === "T" ? shape.body.readInt16BE(0) : shape.body.readInt16BE(1);
				assert.equal(width, c.width, "result width");
				if (shape.type === "T") {
					const start = last.lastIndexOf(shape);
					const rows = last.slice(start).filter((m) => m.type === "D").map((m) => dataRow(m.body));
					const want = await viaDirect(c);
					if (want) {
						for (const col of c.masked ?? []) {
							const plain: Set<string> = new Set(want.map((r) => r[col]).filter((v): v is string => typeof v === "string" && v.length >= 5));
							const same: (string | null | undefined)[] = rows.map((r) => r[col]).filter((v) => typeof v === "string" && plain.has(v));
							assert.deepEqual(same.slice(0, 3), [], `column ${col} came back unmasked (${same.length} values)`);
						}
					}
				}
			}
		});
	}

	test("after the corpus: seeded tables intact, nothing the corpus tried to create exists", async () => {
		const counts = await direct.query(
			"SELECT (SELECT count(*) FROM customers)::int AS c, (SELECT count(*) FROM orders)::int AS o, (SELECT count(*) FROM orders WHERE status = 'x')::int AS x",
		);
		// mask-returning-subquery inserts order 999 under a read-write grant (allowed by design); nothing else may write.
		assert.deepEqual(counts.rows[0], { c: 200, o: 401, x: 1 });
		const extra = await direct.query("SELECT id FROM orders WHERE status = 'x'");
		assert.deepEqual(extra.rows, [{ id: 999 }]);
		const made = await direct.query(
			"SELECT relname FROM pg_class WHERE relname IN ('stolen', 'leak', 'scratch', 'v', 't') UNION ALL SELECT rolname FROM pg_roles WHERE rolname = 'evil' UNION ALL SELECT proname FROM pg_proc WHERE proname = 'f'",
		);
		assert.deepEqual(made.rows, []);
		const ro = await direct.query("SELECT count(*)::int AS n FROM pg_largeobject_metadata");
		assert.equal(ro.rows[0].n, 0, "a large object was created");
	});
});

describe("extended protocol through the tap: parameters, named statements, binary results, suspended portals", () => {
	async function extendedClient(extra: Partial<pg.ClientConfig> = {}): Promise<pg.Client> {
		const c = new pg.Client({
			host: "127.0.0.1",
			port: tapPort,
			user: USERS["read-only"],
			password: await f.token(USERS["read-only"]),
			database: CONNECTION,
			ssl: false,
			...extra,
		});
		c.on("error", () => undefined);
		await c.connect();
		return c;
	}

	test("parameterised, named and binary-format queries never return seeded values", async () => {
		capture = [];
		const text = await extendedClient();
		const binary = await extendedClient({ binary: true } as Partial<pg.ClientConfig>);
		const results: number[] = [];
		try {
			for (const c of [text, binary]) {
				for (let id = 1; id <= 5; id++) {
					const r = await c.query("SELECT email, card_number, iban, phone FROM customers WHERE id = $1", [id]);
					results.push(r.rowCount ?? 0);
				}
				for (let i = 0; i < 2; i++) {
					const r = await c.query({ name: "all-customers", text: "SELECT * FROM customers WHERE id > $1", values: [0] });
					results.push(r.rowCount ?? 0);
				}
				results.push((await c.query("SELECT $1::text || email AS e FROM customers", ["x"])).rowCount ?? 0);
				results.push((await c.query("SELECT row_to_json(c) AS j FROM customers c WHERE id = $1", [3])).rowCount ?? 0);
				results.push((await c.query("SELECT (SELECT card_number FROM customers WHERE id = $1) AS k", [2])).rowCount ?? 0);
			}
		} finally {
			await text.end();
			await binary.end();
		}
		await new Promise((r) => setImmediate(r));
		assert.ok(results.every((n) => n > 0), `every query returned rows: ${results.join(",")}`);
		const found = leaks(Buffer.concat(capture));
		assert.deepEqual(found.slice(0, 5), [], `seeded values reached the client (${found.length})`);
	});

	test("a portal executed in slices (Execute with maxRows, PortalSuspended) is masked in every slice", async () => {
		capture = [];
		const c = await extendedClient();
		// Take over the connection's socket after startup: raw extended-protocol messages.
		const stream = (c as unknown as { connection: { stream: import("node:net").Socket } }).connection.stream;
		const done = new Promise<void>((resolve) => {
			const onData = () => {
				const all = Buffer.concat(capture);
				// ReadyForQuery after our Sync: 'Z' 0 0 0 5 'I'
				if (all.includes(Buffer.from([0x5a, 0, 0, 0, 5, 0x49]), all.length - 6)) {
					stream.off("data", onData);
					resolve();
				}
			};
			stream.on("data", onData);
		});
		capture = [];
		stream.write(
			Buffer.concat([
				clientMessages.parse("sliced", "SELECT id, email, card_number FROM customers ORDER BY id"),
				clientMessages.bind("p1", "sliced"),
				clientMessages.execute("p1", 7),
				clientMessages.execute("p1", 7),
				clientMessages.execute("p1", 0),
				clientMessages.sync(),
			]),
		);
		await done;
		const raw = Buffer.concat(capture);
		const msgs = parseServerStream(raw);
		assert.equal(msgs.filter((m) => m.type === "s").length, 2, `PortalSuspended twice: ${msgs.map((m) => m.type).join("")}`);
		assert.equal(msgs.filter((m) => m.type === "D").length, 200);
		assert.deepEqual(leaks(raw).slice(0, 5), []);
		await c.end().catch(() => undefined);
	});
});
