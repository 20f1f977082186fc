import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { ClientParser } from "../../gateway/postgres/client-parser.ts";
import { isPgGatewayError, PgGatewayError } from "../../gateway/postgres/errors.ts";
import type { ClientMessage } from "../../gateway/postgres/protocol.ts";
import {
	decodeDataRow,
	decodeErrorFields,
	decodeRowDescription,
	decodeServerMessage,
	ServerParser,
} from "../../gateway/postgres/server-parser.ts";
import { clientMessages, serverMessages } from "../../gateway/postgres/serializer.ts";

const startup = clientMessages.startup({ user: "alice", database: "orders", application_name: "psql" });
const typedStream = Buffer.concat([
	clientMessages.query("select 1; select 2"),
	clientMessages.parse("s1", "select $1::int", [23]),
	clientMessages.bind("p1", "s1", [Buffer.from("42"), null], [1]),
	clientMessages.describe("P", "p1"),
	clientMessages.execute("p1", 10),
	clientMessages.close("S", "s1"),
	clientMessages.flush(),
	clientMessages.sync(),
	clientMessages.copyData(Buffer.from("a\tb\n")),
	clientMessages.copyDone(),
	clientMessages.copyFail("nope"),
	clientMessages.password("tok"),
	clientMessages.terminate(),
]);
const fullStream = Buffer.concat([clientMessages.sslRequest(), startup, typedStream]);

function drain(p: ClientParser): ClientMessage[] {
	const out: ClientMessage[] = [];
	for (let m = p.next(); m; m = p.next()) out.push(m);
	return out;
}

function strip(ms: ClientMessage[]): unknown[] {
	return ms.map((m) => {
		const { raw: _raw, ...rest } = m as ClientMessage & { raw: Buffer };
		return JSON.parse(JSON.stringify(rest));
	});
}

test("client parser decodes every message type", () => {
	const p = new ClientParser();
	p.push(fullStream);
	const ms = drain(p);
	assert.deepEqual(
		ms.map((m) => m.type),
		[
			"sslRequest",
			"startup",
			"query",
			"parse",
			"bind",
			"describe",
			"execute",
			"close",
			"flush",
			"sync",
			"copyData",
			"copyDone",
			"copyFail",
			"password",
			"terminate",
		],
	);
	const s = ms[1] as Extract<ClientMessage, { type: "startup" }>;
	assert.equal(s.parameters.database, "orders");
	assert.equal(s.protocolVersion, 196608);
	const b = ms[4] as Extract<ClientMessage, { type: "bind" }>;
	assert.equal(b.params[0]?.toString(), "42");
	assert.equal(b.params[1], null);
	assert.deepEqual(b.resultFormats, [1]);
	const parse = ms[3] as Extract<ClientMessage, { type: "parse" }>;
	assert.deepEqual(parse.paramTypes, [23]);
	assert.equal((ms[2] as Extract<ClientMessage, { type: "query" }>).sql, "select 1; select 2");
	// raw bytes reassemble to the input
	assert.deepEqual(Buffer.concat(ms.map((m) => m.raw)), fullStream);
});

test("client parser: TCP chunking at start, middle and end never matters", () => {
	const whole = new ClientParser();
	whole.push(fullStream);
	const expected = strip(drain(whole));
	for (let cut = 0; cut <= fullStream.length; cut++) {
		const p = new ClientParser();
		const got: ClientMessage[] = [];
		p.push(fullStream.subarray(0, cut));
		got.push(...drain(p));
		p.push(fullStream.subarray(cut));
		got.push(...drain(p));
		assert.deepEqual(strip(got), expected, `cut at ${cut}`);
	}
	// one byte at a time
	const p = new ClientParser();
	const got: ClientMessage[] = [];
	for (const byte of fullStream) {
		p.push(Buffer.from([byte]));
		got.push(...drain(p));
	}
	assert.deepEqual(strip(got), expected);
});

test("client parser: cancel request and GSSENCRequest stay in the startup phase", () => {
	const p = new ClientParser();
	p.push(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]));
	assert.equal(p.next()?.type, "gssEncRequest");
	assert.ok(p.inStartupPhase);
	p.push(clientMessages.cancelRequest(1234, Buffer.from([1, 2, 3, 4])));
	const c = p.next();
	assert.equal(c?.type, "cancelRequest");
	if (c?.type === "cancelRequest") {
		assert.equal(c.processId, 1234);
		assert.deepEqual([...c.secretKey], [1, 2, 3, 4]);
	}
});

test("client parser: hard size cap with a clean typed error", () => {
	const p = new ClientParser({ maxMessageBytes: 1024 });
	p.push(startup);
	p.next();
	const big = Buffer.alloc(5);
	big[0] = 0x51;
	big.writeInt32BE(0x7ffffff0, 1);
	p.push(big);
	assert.throws(
		() => p.next(),
		(e: unknown) => isPgGatewayError(e) && e.code === "message_too_large" && e.sqlstate === "08P01",
	);
	const s = new ClientParser();
	s.push(Buffer.from([0x7f, 0, 0, 0, 0, 0, 0, 0]));
	assert.throws(() => s.next(), (e: unknown) => isPgGatewayError(e) && e.code === "message_too_large");
});

test("client parser: garbage, bad versions, bad types and truncated payloads are typed errors", () => {
	const cases: [Buffer, boolean][] = [
		[Buffer.from("GET / HTTP/1.1\r\n\r\n"), true],
		[Buffer.from([0, 0, 0, 8, 0, 2, 0, 0]), true], // protocol 2.0
		[Buffer.from([0, 0, 0, 3]), true], // short length
	];
	for (const [bytes] of cases) {
		const p = new ClientParser();
		p.push(bytes);
		assert.throws(() => p.next(), PgGatewayError);
	}
	const p = new ClientParser();
	p.push(startup);
	p.next();
	// Query whose string lacks its NUL
	p.push(Buffer.from([0x51, 0, 0, 0, 6, 0x61, 0x62]));
	assert.throws(() => p.next(), (e: unknown) => isPgGatewayError(e) && e.code === "protocol_violation");
	const q = new ClientParser();
	q.push(startup);
	q.next();
	q.push(Buffer.from([0x7a, 0, 0, 0, 4]));
	assert.throws(() => q.next(), /invalid frontend message type/);
});

test("fuzz: the client parser only ever throws PgGatewayError and always terminates", () => {
	const messageArb = fc.oneof(
		fc.string().map((s) => clientMessages.query(s.replaceAll("\0", ""))),
		fc
			.tuple(fc.string(), fc.string(), fc.array(fc.integer({ min: 0, max: 2 ** 32 - 1 }), { maxLength: 4 }))
			.map(([n, s, t]) => clientMessages.parse(n.replaceAll("\0", ""), s.replaceAll("\0", ""), t)),
		fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b)),
		fc.constant(clientMessages.sync()),
	);
	fc.assert(
		fc.property(
			fc.boolean(),
			fc.array(messageArb, { maxLength: 8 }),
			fc.array(fc.integer({ min: 1, max: 64 }), { maxLength: 8 }),
			(withStartup, msgs, cuts) => {
				const stream = Buffer.concat([withStartup ? startup : Buffer.alloc(0), ...msgs]);
				const p = new ClientParser({ maxMessageBytes: 4096 });
				let off = 0;
				let steps = 0;
				try {
					for (const c of [...cuts, stream.length]) {
						p.push(stream.subarray(off, off + c));
						off += c;
						while (p.next() !== undefined) {
							steps++;
							assert.ok(steps < 10_000, "parser does not loop forever");
						}
						if (off >= stream.length) break;
					}
				} catch (e) {
					if (!(e instanceof PgGatewayError)) throw e;
				}
			},
		),
		{ numRuns: 2000 },
	);
});

const serverStream = Buffer.concat([
	serverMessages.authenticationOk(),
	serverMessages.parameterStatus("server_version", "15.8"),
	serverMessages.backendKeyData(77, Buffer.from([9, 9, 9, 9])),
	serverMessages.readyForQuery("I"),
	serverMessages.rowDescription([
		{ name: "email", tableOid: 16384, columnAttr: 3, typeOid: 25, typeSize: -1, typeModifier: -1, format: 0 },
	]),
	serverMessages.dataRow([Buffer.from("a@example.com"), null]),
	serverMessages.commandComplete("SELECT 1"),
	serverMessages.error({ S: "ERROR", V: "ERROR", C: "42501", M: "blocked" }),
	serverMessages.notice({ S: "NOTICE", C: "00000", M: "hi" }),
	serverMessages.notification(5, "chan", "payload"),
	serverMessages.readyForQuery("T"),
]);

test("server parser frames and decodes, under any chunking", () => {
	const expected = [
		"authentication",
		"parameterStatus",
		"backendKeyData",
		"readyForQuery",
		"rowDescription",
		"dataRow",
		"commandComplete",
		"errorResponse",
		"noticeResponse",
		"notificationResponse",
		"readyForQuery",
	];
	for (let cut = 0; cut <= serverStream.length; cut++) {
		const p = new ServerParser();
		const types: string[] = [];
		for (const part of [serverStream.subarray(0, cut), serverStream.subarray(cut)]) {
			p.push(part);
			for (let f = p.next(); f; f = p.next()) types.push(decodeServerMessage(f).type);
		}
		assert.deepEqual(types, expected, `cut at ${cut}`);
	}
	const p = new ServerParser();
	p.push(serverStream);
	const frames = [];
	for (let f = p.next(); f; f = p.next()) frames.push(f);
	assert.equal(decodeRowDescription(frames[4]!)[0]?.columnAttr, 3);
	const row = decodeDataRow(frames[5]!);
	assert.equal(row[0]?.toString(), "a@example.com");
	assert.equal(row[1], null);
	assert.deepEqual(decodeErrorFields(frames[7]!), { S: "ERROR", V: "ERROR", C: "42501", M: "blocked" });
});

test("server parser: any chunking, pushes while frames are still unread, views where a frame fits in a chunk", () => {
	// Frames of every size class, including ones longer than the chunks they arrive in.
	const frame = (code: number, bodyLen: number) => {
		const b = Buffer.alloc(5 + bodyLen, bodyLen & 0xff);
		b[0] = code;
		b.writeInt32BE(4 + bodyLen, 1);
		return b;
	};
	const frames = [frame(0x44, 0), frame(0x44, 1), frame(0x44, 7), frame(0x43, 300), frame(0x44, 5000), frame(0x44, 3), frame(0x5a, 1)];
	const stream = Buffer.concat(frames);
	let seed = 7;
	const rand = (n: number) => {
		seed = (seed * 1103515245 + 12345) & 0x7fffffff;
		return seed % n;
	};
	for (let round = 0; round < 200; round++) {
		const p = new ServerParser();
		const got: Buffer[] = [];
		let pos = 0;
		while (pos < stream.length) {
			const n = 1 + rand(round % 2 ? 9 : 700);
			p.push(stream.subarray(pos, pos + n));
			pos += n;
			// Sometimes read nothing before the next push (a session waiting on a mask plan).
			if (rand(3) === 0) continue;
			for (let f = p.next(); f; f = p.next()) got.push(Buffer.from(f.raw));
		}
		for (let f = p.next(); f; f = p.next()) got.push(Buffer.from(f.raw));
		assert.deepEqual(got, frames, `round ${round}`);
		assert.equal(p.bufferedBytes, 0);
	}
	// A frame wholly inside one chunk is not copied.
	const p = new ServerParser();
	const chunk = Buffer.concat([frames[1]!, frames[2]!.subarray(0, 3)]);
	p.push(chunk);
	const f = p.next()!;
	assert.equal(f.raw.buffer, chunk.buffer);
	assert.equal(f.raw.byteOffset, chunk.byteOffset);
	assert.equal(p.next(), undefined);
	assert.equal(p.bufferedBytes, 3);
	// The straddling frame is copied; the frame after it is a view of the new chunk, which is not
	// copied whole to join the three bytes left over (that made a large result cost one more copy).
	const next = Buffer.concat([frames[2]!.subarray(3), frames[3]!]);
	p.push(next);
	assert.deepEqual(Buffer.from(p.next()!.raw), frames[2]);
	const after = p.next()!;
	assert.deepEqual(Buffer.from(after.raw), frames[3]);
	assert.equal(after.raw.buffer, next.buffer);
	assert.equal(after.raw.byteOffset, next.byteOffset + frames[2]!.length - 3, "a view into the pushed chunk itself");
	// takeBuffered hands back exactly the unread bytes, across chunks.
	const q = new ServerParser();
	q.push(stream.subarray(0, 4));
	q.push(stream.subarray(4, 20));
	assert.deepEqual(q.next()?.raw.length, 5);
	assert.deepEqual(q.takeBuffered(), stream.subarray(5, 20));
	assert.equal(q.bufferedBytes, 0);
});

test("server parser caps message size", () => {
	const p = new ServerParser(100);
	p.push(Buffer.from([0x44, 0, 0, 1, 0]));
	assert.throws(() => p.next(), (e: unknown) => isPgGatewayError(e) && e.code === "message_too_large");
});
