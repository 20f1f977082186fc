/**
 * gateway/ssh/packet-pool.ts on a real loopback TCP socket: a packet buffer the kernel did not take at
 * once (libuv still holds it) must never be handed out again before its write completed. The end-to-end
 * check with real ssh/sshd is in gateway.test.ts ("recycled packet buffers"); on loopback there the
 * kernel nearly always takes a write at once, so the asynchronous case is forced here with a peer that
 * does not read.
 */
import assert from "node:assert/strict";
import { once } from "node:events";
import { createServer, type Socket, connect } from "node:net";
import { test } from "node:test";
import { packetPoolStats, poolOutgoingPackets } from "../../gateway/ssh/packet-pool.ts";

const PACKET = 32 * 1024;

/** The two shapes of ssh2 the pool relies on: `_protocol._cipher.allocPacket` and `_sock`. */
function fakeSsh2(sock: Socket) {
	const proto = { _cipher: { allocPacket: (n: number) => Buffer.allocUnsafe(n) } };
	return { _protocol: proto, _sock: sock };
}

test("a buffer still queued in a socket write is not reused; every byte arrives as written", async (t) => {
	const server = createServer();
	t.after(() => server.close());
	server.listen(0, "127.0.0.1");
	await once(server, "listening");
	const port = (server.address() as { port: number }).port;
	const accepted = once(server, "connection") as Promise<[Socket]>;
	const sock = connect(port, "127.0.0.1");
	await once(sock, "connect");
	const [peer] = await accepted;
	t.after(() => {
		sock.destroy();
		peer.destroy();
	});
	peer.pause(); // nothing read: the kernel's buffers fill and writes go asynchronous
	const o = fakeSsh2(sock);
	assert.equal(poolOutgoingPackets(o), true);

	// Write packets whose bytes name their sequence number until the socket queues them.
	let seq = 0;
	const writeOne = () => {
		const p = o._protocol._cipher.allocPacket(PACKET);
		p.fill(seq++ & 0xff);
		sock.write(p);
	};
	while (sock.writableLength === 0 && seq < 100_000) writeOne();
	assert.ok(sock.writableLength > 0, "the socket never queued a write");
	// More packets while earlier ones are queued: none of them may reuse a queued buffer.
	const releasedBefore = packetPoolStats.released;
	for (let i = 0; i < 64; i++) writeOne();
	assert.equal(packetPoolStats.released, releasedBefore, "a queued buffer went back to the pool");
	const total = seq * PACKET;
	sock.end();

	let got = 0;
	let bad = -1;
	peer.on("data", (b: Buffer) => {
		for (let i = 0; i < b.length; i += 4096) {
			if (bad < 0 && b[i] !== (Math.floor((got + i) / PACKET) & 0xff)) bad = got + i;
		}
		got += b.length;
	});
	peer.resume();
	await once(peer, "end");
	assert.equal(got, total);
	assert.equal(bad, -1, `byte ${bad} is not from the packet written there`);
});

test("buffers written at once are reused; objects of another shape are left alone", async (t) => {
	const server = createServer((s) => s.resume());
	t.after(() => server.close());
	server.listen(0, "127.0.0.1");
	await once(server, "listening");
	const sock = connect((server.address() as { port: number }).port, "127.0.0.1");
	await once(sock, "connect");
	t.after(() => sock.destroy());
	const o = fakeSsh2(sock);
	assert.equal(poolOutgoingPackets(o), true);
	const reused = packetPoolStats.reused;
	for (let i = 0; i < 8; i++) {
		const p = o._protocol._cipher.allocPacket(PACKET);
		p.fill(i);
		sock.write(p);
		await new Promise((r) => setImmediate(r));
	}
	assert.ok(packetPoolStats.reused > reused);
	// A view of a packet (ssh2's JavaScript AES-GCM writes the length field as one) releases nothing.
	const released = packetPoolStats.released;
	const p = o._protocol._cipher.allocPacket(PACKET);
	sock.write(p.subarray(0, 4));
	sock.write(Buffer.from(p.subarray(4)));
	assert.equal(packetPoolStats.released, released);
	// Small packets (handshake, window adjusts) keep ssh2's own allocation.
	const small = o._protocol._cipher.allocPacket(100);
	assert.ok(small.buffer.byteLength !== 33 * 1024);
	// ssh2 replaces the cipher after each key exchange: the new one is pooled too.
	o._protocol._cipher = { allocPacket: (n: number) => Buffer.allocUnsafe(n) };
	assert.equal(o._protocol._cipher.allocPacket(PACKET).buffer.byteLength, 33 * 1024);
	assert.equal(poolOutgoingPackets({}), false);
	assert.equal(poolOutgoingPackets({ _protocol: {}, _sock: sock }), false);
});
