/**
 * Recycles the buffers ssh2 allocates for outgoing packets (README "Throughput").
 *
 * ssh2 allocates a fresh Buffer for every packet it sends (`cipher.allocPacket` → `Buffer.allocUnsafe`,
 * ~32 KiB per channel-data packet). Each is an ArrayBuffer counted as V8 external memory, and every
 * ~64 MiB of external allocation starts a mark-compact of the whole heap: relaying 1 GiB took ~70
 * major GCs, 40-45 % of the gateway's CPU (perf, bench/ssh.ts). Reusing a packet's buffer once it has
 * been written halves that churn (the other half is Node's per-read buffers, which ssh2 decrypts in place
 * and hands on, so they cannot be reused).
 *
 * A buffer goes back to the free list only when the very packet object allocPacket returned was written
 * whole and `socket.write` completed synchronously: right after it, `writableLength === 0` means libuv
 * wrote every byte to the kernel and holds no reference (a partial write keeps the request queued and
 * `writableLength` above 0 until its callback). ssh2's binding ciphers encrypt in place and write that
 * object once; its JavaScript fallbacks write views or new buffers, which never release anything. Every
 * other buffer is left to the GC as before. The free list is process-wide and small (`MAX_FREE`), so idle connections
 * hold nothing; a reused buffer is exposed only as a view of exactly the packet's length, every byte of
 * which ssh2 writes (length, padding length, payload, random padding, then the cipher's MAC or tag), as
 * with `Buffer.allocUnsafe`'s own shared pool.
 *
 * This reaches into ssh2 internals (`_protocol._cipher.allocPacket`, the socket ssh2 writes to), which
 * is why ssh2 is pinned to an exact version; `installed` tells whether a connection got it, and
 * test/ssh/gateway.test.ts (recycled packet buffers) fails when an ssh2 upgrade changes those shapes.
 */
import type { Socket } from "node:net";

/** Largest packet taken from the pool: 32 KiB channel data + headers, padding and MAC. */
const CAP = 33 * 1024;
/** Smaller packets keep ssh2's own allocation (Buffer's shared 8 KiB pool serves those below 4 KiB). */
const MIN = 4 * 1024;
/** Buffers kept for reuse, process-wide (a writer reuses one per packet while its writes stay synchronous). */
const MAX_FREE = 4;

const free: ArrayBuffer[] = [];
/** Packets handed out and not yet recycled: only the very object allocPacket returned can release its buffer. */
const issued = new WeakSet<Uint8Array>();
const allocUnsafe = Buffer.allocUnsafe;

/** Pool counters (tests, benches). */
export const packetPoolStats = { allocated: 0, reused: 0, released: 0 };

function poolAlloc(n: number): Buffer {
	if (n < MIN || n > CAP) return allocUnsafe(n);
	let ab = free.pop();
	if (ab) packetPoolStats.reused++;
	else {
		ab = new ArrayBuffer(CAP);
		packetPoolStats.allocated++;
	}
	const packet = Buffer.from(ab, 0, n);
	issued.add(packet);
	return packet;
}

type Cipher = { allocPacket?: (n: number) => Buffer; __drawbridgePooled?: true };

function patchCipher(c: Cipher | undefined): void {
	const orig = c?.allocPacket;
	if (!c || typeof orig !== "function" || c.__drawbridgePooled) return;
	c.__drawbridgePooled = true;
	c.allocPacket = function (this: unknown, n: number): Buffer {
		// allocPacket calls Buffer.allocUnsafe exactly once, synchronously; nothing else runs meanwhile.
		(Buffer as { allocUnsafe: (n: number) => Buffer }).allocUnsafe = poolAlloc;
		try {
			return orig.call(this, n);
		} finally {
			Buffer.allocUnsafe = allocUnsafe;
		}
	};
}

/**
 * Pool the outgoing packets of one ssh2 Connection (server side) or Client. Returns false (and changes
 * nothing) when the object does not have the shape this was written against.
 */
export function poolOutgoingPackets(ssh2Object: unknown): boolean {
	const o = ssh2Object as { _protocol?: { _cipher?: Cipher }; _sock?: Socket };
	const proto = o._protocol;
	const sock = o._sock;
	if (!proto || !sock || typeof sock.write !== "function" || !("_cipher" in proto)) return false;
	let cipher = proto._cipher;
	patchCipher(cipher);
	// ssh2 replaces `_cipher` after every key exchange (kex.js); patch each new one.
	Object.defineProperty(proto, "_cipher", {
		get: () => cipher,
		set: (c: Cipher) => {
			cipher = c;
			patchCipher(c);
		},
		configurable: true,
		enumerable: true,
	});
	const write = sock.write;
	sock.write = function (this: Socket, data: unknown, ...rest: unknown[]): boolean {
		const r = (write as (...a: unknown[]) => boolean).call(this, data, ...rest);
		if (data instanceof Uint8Array && issued.has(data)) {
			issued.delete(data);
			if (this.writableLength === 0 && free.length < MAX_FREE) {
				free.push(data.buffer as ArrayBuffer);
				packetPoolStats.released++;
			}
		}
		return r;
	} as typeof sock.write;
	return true;
}
