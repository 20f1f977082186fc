/**
 * Fuzzing the PostgreSQL client-message parser THROUGH THE REAL LISTENER SOCKET (fast-check), with
 * a real PostgreSQL behind it:
 * - random and structured-random startup packets before authentication;
 * - random byte soup and random well- or ill-framed client messages after a real authentication,
 *   followed by Sync + a probe query: the session either answers the probe or ends with an
 *   ErrorResponse/close — it never hangs, and the gateway never crashes;
 * - a canary session opened before the fuzzing keeps working throughout and afterwards.
 * Plaintext to the gateway (`allowInsecure`, loopback) so the fuzzer reaches the parser directly.
 */
import assert from "node:assert/strict";
import { connect, type Socket } from "node:net";
import { after, before, test } from "node:test";
import fc from "fast-check";
import type pg from "pg";
import { clientMessages } from "../../../gateway/postgres/serializer.ts";
import { decodeServerMessage, ServerParser } from "../../../gateway/postgres/server-parser.ts";
import type { ServerMessage } from "../../../gateway/postgres/protocol.ts";
import { printLogsOnFailure } from "../../env/index.ts";
import { CONNECTION, type GatewayFixture, startGatewayFixture, waitFor } from "../../faults/fixture.ts";

let f: GatewayFixture;
let canary: pg.Client;
let token: string;

before(async () => {
	f = await startGatewayFixture({ listener: { allowInsecure: true, startupTimeoutMs: 5_000, maxClientMessageBytes: 256 * 1024 } });
	canary = await f.connect("bob");
	token = await f.token("bob", { expSec: 3600 });
});
after(async () => {
	await canary?.end().catch(() => undefined);
	await f?.stop();
});
printLogsOnFailure(() => [["postgres", f?.pg]]);

/** A plaintext socket that collects decoded server messages. */
class Wire {
	readonly msgs: ServerMessage[] = [];
	closed = false;
	private readonly parser = new ServerParser();
	private constructor(readonly s: Socket) {
		s.on("data", (c: Buffer) => {
			this.parser.push(c);
			try {
				for (let fr = this.parser.next(); fr; fr = this.parser.next()) this.msgs.push(decodeServerMessage(fr));
			} catch {
				// a reply we cannot decode is itself a failure, checked by the caller through `msgs`
			}
		});
		s.on("close", () => {
			this.closed = true;
		});
		s.on("error", () => undefined);
	}
	static open(): Promise<Wire> {
		return new Promise((resolve, reject) => {
			const s = connect(f.port, "127.0.0.1", () => resolve(new Wire(s)));
			s.once("error", reject);
		});
	}
	write(b: Buffer | Uint8Array): void {
		if (!this.s.destroyed) this.s.write(b);
	}
	async authenticate(): Promise<void> {
		this.write(clientMessages.startup({ user: "bob", database: CONNECTION }));
		await waitFor("password request", () => this.msgs.some((m) => m.type === "authentication") || this.closed, 30_000, 10);
		this.write(clientMessages.password(token));
		await waitFor("ready for query", () => this.msgs.some((m) => m.type === "readyForQuery") || this.closed, 30_000, 10);
		assert.ok(!this.closed, JSON.stringify(this.msgs));
		this.msgs.length = 0;
	}
}

async function canaryAlive(): Promise<void> {
	const r = await canary.query("SELECT count(*)::int AS n FROM orders");
	assert.equal(r.rows[0]!.n, 400);
}

const STARTUP_CODES = [196608, 196610, 80877103, 80877102, 80877104, 0, 1, 0x7fffffff, 131072];

const startupPacket = fc.oneof(
	fc.uint8Array({ maxLength: 600 }),
	fc
		.record({
			len: fc.oneof(fc.constant(-1), fc.integer({ min: -8, max: 2_000_000 })),
			code: fc.oneof(fc.constantFrom(...STARTUP_CODES), fc.integer()),
			params: fc.array(fc.tuple(fc.constantFrom("user", "database", "options", "replication", "application_name", "", "x\u0000y"), fc.string({ maxLength: 30 })), { maxLength: 5 }),
			tail: fc.uint8Array({ maxLength: 64 }),
		})
		.map(({ len, code, params, tail }) => {
			const body = Buffer.concat([...params.map(([k, v]) => Buffer.from(`${k}\u0000${v}\u0000`)), Buffer.from([0]), Buffer.from(tail)]);
			const head = Buffer.alloc(8);
			head.writeInt32BE(len === -1 ? body.length + 8 : len, 0);
			head.writeInt32BE(code | 0, 4);
			return Buffer.concat([head, body]);
		}),
);

test("random startup packets: each connection ends cleanly, the gateway and a live session are unaffected", { timeout: 600_000 }, async () => {
	let n = 0;
	await fc.assert(
		fc.asyncProperty(fc.array(startupPacket, { minLength: 1, maxLength: 3 }), async (packets) => {
			const w = await Wire.open();
			for (const p of packets) w.write(p);
			w.s.end();
			await waitFor("gateway closes the connection", () => w.closed, 30_000, 10);
			for (const m of w.msgs) {
				if (m.type === "errorResponse") assert.match(m.fields.C ?? "", /^(08P01|0A000|28000|28P01|3D000|08006)$/, JSON.stringify(m));
			}
			if (++n % 25 === 0) await canaryAlive();
		}),
		{ numRuns: 150 },
	);
	await canaryAlive();
});

const TYPES = "QPBEDSHCXFdcfp".split("").map((c) => c.charCodeAt(0));

/** A well-framed message: a known type with a correct length, random body, or a hostile valid one. */
const framedMessage = fc.oneof(
	fc.record({ t: fc.constantFrom(...TYPES), body: fc.uint8Array({ maxLength: 120 }) }).map(({ t, body }) => {
		const b = Buffer.alloc(5 + body.length);
		b[0] = t;
		b.writeInt32BE(4 + body.length, 1);
		Buffer.from(body).copy(b, 5);
		return b;
	}),
	fc.constantFrom(
		clientMessages.query("SELECT 1; SELECT 2"),
		clientMessages.query(""),
		clientMessages.query("\u0000"),
		clientMessages.query("DROP TABLE orders"),
		clientMessages.query("COPY orders FROM STDIN"),
		Buffer.from([0x64, 0, 0, 0, 8, 1, 2, 3, 4]),
		Buffer.from([0x63, 0, 0, 0, 4]),
		Buffer.from([0x66, 0, 0, 0, 5, 0]),
		Buffer.from([0x48, 0, 0, 0, 4]),
	),
);

/** Bytes whose framing may lie (a length the client never fulfils is a legitimate wait). */
const unframedTail = fc.oneof(
	fc.uint8Array({ minLength: 1, maxLength: 200 }),
	fc.record({ t: fc.constantFrom(...TYPES), len: fc.integer({ min: -10, max: 10_000_000 }), body: fc.uint8Array({ maxLength: 40 }) }).map(({ t, len, body }) => {
		const b = Buffer.alloc(5 + body.length);
		b[0] = t;
		b.writeInt32BE(len, 1);
		Buffer.from(body).copy(b, 5);
		return b;
	}),
);

test("random client messages after authentication: the session answers the probe or ends with an error; never hangs, never crashes", { timeout: 900_000 }, async () => {
	let n = 0;
	await fc.assert(
		fc.asyncProperty(fc.array(framedMessage, { maxLength: 6 }), fc.option(unframedTail, { freq: 3 }), async (messages, tail) => {
			const w = await Wire.open();
			await w.authenticate();
			for (const m of messages) w.write(m);
			if (tail) {
				// Framing may now lie: end the connection; the gateway must close its side.
				w.write(tail);
				w.s.end();
				await waitFor("session ended after EOF", () => w.closed, 60_000, 10);
			} else {
				// Sync then a probe: whatever state the fuzz left, the session must converge.
				w.write(Buffer.from([0x53, 0, 0, 0, 4]));
				w.write(clientMessages.query("SELECT 'probe-ok'"));
				await waitFor(
					"probe answered or session ended",
					() => w.closed || w.msgs.some((m) => m.type === "dataRow" && m.values.some((v) => v?.toString() === "probe-ok")),
					60_000,
					10,
				);
			}
			for (const m of w.msgs) {
				if (m.type === "errorResponse") assert.notEqual(m.fields.C, "XX000", `gateway internal error: ${JSON.stringify(m.fields)}`);
			}
			w.s.destroy();
			if (++n % 20 === 0) await canaryAlive();
		}),
		{ numRuns: 200 },
	);
	await canaryAlive();
	await waitFor("fuzzed sessions released", () => f.gateway.sessionCount === 1, 60_000);
});
