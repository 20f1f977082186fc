import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import { test } from "node:test";
import { ExecStreamObserver, isChannelProtocol, WsBoundary, WsOpcode, wsChannelStatusFrame, wsCloseFrame } from "../../gateway/kube/wsexec.ts";

/** One RFC 6455 frame; client frames are masked, server frames are not. */
function frame(opcode: number, payload: Buffer, opts: { masked: boolean; fin?: boolean }): Buffer {
	const fin = opts.fin ?? true;
	const head: number[] = [(fin ? 0x80 : 0) | opcode];
	const len = payload.length;
	const maskBit = opts.masked ? 0x80 : 0;
	let ext = Buffer.alloc(0);
	if (len < 126) head.push(maskBit | len);
	else if (len < 65536) {
		head.push(maskBit | 126);
		ext = Buffer.alloc(2);
		ext.writeUInt16BE(len);
	} else {
		head.push(maskBit | 127);
		ext = Buffer.alloc(8);
		ext.writeBigUInt64BE(BigInt(len));
	}
	if (!opts.masked) return Buffer.concat([Buffer.from(head), ext, payload]);
	const key = randomBytes(4);
	const masked = Buffer.from(payload.map((b, i) => b ^ key[i & 3]!));
	return Buffer.concat([Buffer.from(head), ext, key, masked]);
}

const chan = (c: number, data: string | Buffer) => Buffer.concat([Buffer.from([c]), typeof data === "string" ? Buffer.from(data) : data]);

test("exec over v5.channel.k8s.io: stdin, resize, stdout/stderr (fragmented, large), exit status", () => {
	const big = Buffer.alloc(70_000, 0x61);
	const clientBytes = Buffer.concat([
		frame(WsOpcode.Binary, chan(4, '{"Width":120,"Height":40}'), { masked: true }),
		frame(WsOpcode.Binary, chan(0, "ls -l\r"), { masked: true }),
		frame(0x9, Buffer.from("ping"), { masked: true }), // control frame ignored
	]);
	const serverBytes = Buffer.concat([
		frame(WsOpcode.Binary, chan(1, "total 0\r\n"), { masked: false, fin: false }),
		frame(WsOpcode.Continuation, Buffer.from("more\r\n"), { masked: false }),
		frame(WsOpcode.Binary, chan(2, "warn\r\n"), { masked: false }),
		frame(WsOpcode.Binary, chan(1, big), { masked: false }),
		frame(
			WsOpcode.Binary,
			chan(3, JSON.stringify({ status: "Failure", message: "command terminated with non-zero exit code", details: { causes: [{ reason: "ExitCode", message: "2" }] } })),
			{ masked: false },
		),
	]);
	for (const step of [1, 7, 1000, clientBytes.length + serverBytes.length]) {
		const input: string[] = [];
		const output: Buffer[] = [];
		const resizes: string[] = [];
		let exit: number | undefined;
		const obs = new ExecStreamObserver({
			input: (b) => input.push(b.toString()),
			output: (b) => output.push(b),
			resize: (c, r) => resizes.push(`${c}x${r}`),
			exit: (code) => {
				exit = code;
			},
		});
		for (let i = 0; i < clientBytes.length; i += step) obs.client(clientBytes.subarray(i, i + step));
		for (let i = 0; i < serverBytes.length; i += step) obs.server(serverBytes.subarray(i, i + step));
		assert.deepEqual(input, ["ls -l\r"]);
		assert.deepEqual(resizes, ["120x40"]);
		const out = Buffer.concat(output);
		assert.equal(out.subarray(0, 21).toString(), "total 0\r\nmore\r\nwarn\r\n");
		assert.equal(out.length, 21 + big.length);
		assert.equal(exit, 2);
		assert.equal(obs.broken, false);
	}
});

test("success status is exit 0; an absurd frame length stops the observer, not the relay", () => {
	let exit: number | undefined;
	const obs = new ExecStreamObserver({ exit: (c) => (exit = c) });
	obs.server(frame(WsOpcode.Binary, chan(3, '{"status":"Success"}'), { masked: false }));
	assert.equal(exit, 0);
	const huge = Buffer.from([0x82, 127, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
	obs.server(huge);
	assert.equal(obs.broken, true);
	assert.ok(isChannelProtocol("v5.channel.k8s.io"));
	// observed since recordings round 10 (test/kube/issue-exec-framing-unrecorded.test.ts)
	assert.ok(isChannelProtocol("base64.channel.k8s.io"));
	assert.ok(isChannelProtocol(undefined));
	assert.ok(!isChannelProtocol("v6.unknown.k8s.io"));
});

test("WsBoundary: between frames only, whatever the chunking (short, 16-bit and 64-bit lengths, masked, empty)", () => {
	const parts = [
		frame(WsOpcode.Binary, chan(1, "hello"), { masked: false }),
		frame(WsOpcode.Binary, chan(1, randomBytes(300)), { masked: false }),
		frame(WsOpcode.Text, Buffer.alloc(0), { masked: false }),
		frame(WsOpcode.Binary, randomBytes(70_000), { masked: false }),
		frame(WsOpcode.Binary, chan(0, "typed"), { masked: true }),
	];
	const ends = new Set<number>();
	let total = 0;
	for (const p of parts) ends.add((total += p.length));
	const all = Buffer.concat(parts);
	for (const step of [1, 2, 3, 7, 125, 4096, all.length]) {
		const b = new WsBoundary();
		assert.equal(b.atBoundary, true);
		for (let i = 0; i < all.length; i += step) {
			const end = Math.min(all.length, i + step);
			b.push(all.subarray(i, end));
			// Inside a chunk the boundary may pass unseen; at its end it must be exact.
			assert.equal(b.atBoundary, ends.has(end), `step ${step}, after byte ${end}`);
		}
	}
});

test("a Close frame carries the code and at most 123 bytes of reason, cut at a character; a Status only on v4/v5 channels", () => {
	const close = wsCloseFrame(1008, `grant ops/x expired ${"é".repeat(100)}`);
	assert.equal(close[0], 0x88);
	const len = close[1]!;
	assert.ok(len <= 125);
	assert.equal(close.readUInt16BE(2), 1008);
	const reason = close.subarray(4, 2 + len).toString("utf8");
	assert.ok(!reason.includes("\ufffd"), "no broken character");
	assert.ok(reason.startsWith("grant ops/x expired "));
	assert.equal(wsChannelStatusFrame("channel.k8s.io", "m", 403, "Forbidden"), undefined);
	const status = wsChannelStatusFrame("v5.channel.k8s.io", "grant ops/x expired", 403, "Forbidden")!;
	const seen: { code: number; message?: string }[] = [];
	new ExecStreamObserver({ exit: (code, message) => seen.push({ code, ...(message ? { message } : {}) }) }).server(status);
	assert.deepEqual(seen, [{ code: -1, message: "grant ops/x expired" }]);
});
