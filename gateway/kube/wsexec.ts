/**
 * Passive observer of a Kubernetes exec/attach stream over WebSocket (RFC 6455 framing) with the
 * `channel.k8s.io`, `v4.channel.k8s.io` or `v5.channel.k8s.io` subprotocols (kubectl >= 1.31 default):
 * every binary message starts with one channel byte — 0 stdin, 1 stdout, 2 stderr, 3 error/status
 * (JSON `metav1.Status`, exit code in `details.causes[reason=ExitCode]`), 4 resize (JSON
 * `{"Width":..,"Height":..}`), 255 close-channel (v5). The relay is byte for byte; this only turns the
 * stream into recording events like the SSH path's. Bytes in, callbacks out; it never owns a socket
 * and never buffers more than one frame (one message with base64 framing). SPDY streams are not
 * decoded (see README).
 *
 * The same channels travel with no subprotocol at all (the kubelet's default: binary framing) and
 * with `base64.channel.k8s.io` / `v4.base64.channel.k8s.io` (text messages: the channel as an ASCII
 * digit, then the data in base64). Both were relayed unobserved, so an agent choosing them ran a
 * terminal that left no trace (recordings round 10, test/kube/wsexec.test.ts).
 */

export interface ExecStreamEvents {
	input?(data: Buffer): void;
	output?(data: Buffer): void;
	resize?(cols: number, rows: number): void;
	/** Exit code from the status channel (0 on Success). */
	exit?(code: number, message?: string): void;
}

/** Frames larger than this stop the observer (the relay continues untouched). */
const MAX_FRAME = 16 * 1024 * 1024;

export enum WsOpcode {
	Continuation = 0x0,
	Text = 0x1,
	Binary = 0x2,
	Close = 0x8,
}

/** Parses frames of one direction; calls back with each frame's unmasked payload. */
class WsFramer {
	#buf: Buffer = Buffer.alloc(0);
	broken = false;

	push(chunk: Buffer, onFrame: (fin: boolean, opcode: number, payload: Buffer) => void): void {
		if (this.broken) return;
		this.#buf = this.#buf.length === 0 ? chunk : Buffer.concat([this.#buf, chunk]);
		for (;;) {
			const b = this.#buf;
			if (b.length < 2) return;
			const fin = (b[0]! & 0x80) !== 0;
			const opcode = b[0]! & 0x0f;
			const masked = (b[1]! & 0x80) !== 0;
			let len = b[1]! & 0x7f;
			let off = 2;
			if (len === 126) {
				if (b.length < 4) return;
				len = b.readUInt16BE(2);
				off = 4;
			} else if (len === 127) {
				if (b.length < 10) return;
				const big = b.readBigUInt64BE(2);
				if (big > BigInt(MAX_FRAME)) {
					this.broken = true;
					this.#buf = Buffer.alloc(0);
					return;
				}
				len = Number(big);
				off = 10;
			}
			if (len > MAX_FRAME) {
				this.broken = true;
				this.#buf = Buffer.alloc(0);
				return;
			}
			const maskOff = off;
			if (masked) off += 4;
			if (b.length < off + len) return;
			let payload = b.subarray(off, off + len);
			if (masked) {
				const key = b.subarray(maskOff, maskOff + 4);
				const out = Buffer.allocUnsafe(len);
				for (let i = 0; i < len; i++) out[i] = payload[i]! ^ key[i & 3]!;
				payload = out;
			} else {
				payload = Buffer.from(payload);
			}
			this.#buf = b.subarray(off + len);
			onFrame(fin, opcode, payload);
		}
	}
}

function exitFromStatus(json: string): { code: number; message?: string } | undefined {
	try {
		const s = JSON.parse(json) as { status?: string; message?: string; details?: { causes?: { reason?: string; message?: string }[] } };
		if (s.status === "Success") return { code: 0 };
		const cause = s.details?.causes?.find((c) => c.reason === "ExitCode");
		if (cause?.message && /^\d+$/.test(cause.message)) return { code: Number(cause.message), ...(s.message ? { message: s.message } : {}) };
		return { code: -1, ...(s.message ? { message: s.message } : {}) };
	} catch {
		return undefined;
	}
}

export type ExecStreamFraming = "binary" | "base64";

export class ExecStreamObserver {
	readonly #client = new WsFramer();
	readonly #server = new WsFramer();
	readonly #on: ExecStreamEvents;
	readonly #framing: ExecStreamFraming;
	/** Channel of the message being continued, per direction. */
	#clientChannel = -1;
	#serverChannel = -1;
	/** base64 framing: the text of the message being continued, per direction. */
	#clientText: Buffer[] = [];
	#serverText: Buffer[] = [];
	#status = "";

	constructor(on: ExecStreamEvents, framing: ExecStreamFraming = "binary") {
		this.#on = on;
		this.#framing = framing;
	}

	get broken(): boolean {
		return this.#client.broken || this.#server.broken;
	}

	/** Bytes the agent sent (masked frames). */
	client(chunk: Buffer): void {
		this.#client.push(chunk, (fin, opcode, payload) => {
			const data = this.#framing === "base64" ? this.#base64(fin, opcode, payload, this.#clientText) : this.#payload(opcode, payload, "client");
			if (!data) return;
			const [channel, body] = data;
			if (channel === 0) this.#on.input?.(body);
			else if (channel === 4) {
				try {
					const r = JSON.parse(body.toString("utf8")) as { Width?: number; Height?: number };
					if (typeof r.Width === "number" && typeof r.Height === "number") this.#on.resize?.(r.Width, r.Height);
				} catch {
					// not a resize message we understand
				}
			}
			if (fin) this.#clientChannel = -1;
		});
	}

	/** Bytes the apiserver sent (unmasked frames). */
	server(chunk: Buffer): void {
		this.#server.push(chunk, (fin, opcode, payload) => {
			const data = this.#framing === "base64" ? this.#base64(fin, opcode, payload, this.#serverText) : this.#payload(opcode, payload, "server");
			if (!data) return;
			const [channel, body] = data;
			if (channel === 1 || channel === 2) this.#on.output?.(body);
			else if (channel === 3) {
				this.#status += body.toString("utf8");
				if (fin) {
					const exit = exitFromStatus(this.#status);
					this.#status = "";
					if (exit) this.#on.exit?.(exit.code, exit.message);
				}
			}
			if (fin) this.#serverChannel = -1;
		});
	}

	/** base64 framing: a whole message (its frames joined) as its channel and decoded data. */
	#base64(fin: boolean, opcode: number, payload: Buffer, text: Buffer[]): [number, Buffer] | undefined {
		if (opcode === WsOpcode.Binary || opcode === WsOpcode.Text) text.length = 0;
		else if (opcode !== WsOpcode.Continuation || text.length === 0) return undefined; // control frames
		text.push(payload);
		if (!fin) {
			if (text.reduce((n, b) => n + b.length, 0) > MAX_FRAME) text.length = 0;
			return undefined;
		}
		const message = Buffer.concat(text);
		text.length = 0;
		const digit = message[0];
		if (digit === undefined || digit < 0x30 || digit > 0x39) return undefined;
		return [digit - 0x30, Buffer.from(message.subarray(1).toString("latin1"), "base64")];
	}

	#payload(opcode: number, payload: Buffer, dir: "client" | "server"): [number, Buffer] | undefined {
		if (opcode === WsOpcode.Binary || opcode === WsOpcode.Text) {
			if (payload.length === 0) return undefined;
			const channel = payload[0]!;
			if (dir === "client") this.#clientChannel = channel;
			else this.#serverChannel = channel;
			return [channel, payload.subarray(1)];
		}
		if (opcode === WsOpcode.Continuation) {
			const channel = dir === "client" ? this.#clientChannel : this.#serverChannel;
			return channel < 0 ? undefined : [channel, payload];
		}
		return undefined; // control frames
	}
}

/** Subprotocols whose framing ExecStreamObserver understands. */
export function isChannelProtocol(protocol: string | undefined): boolean {
	return execStreamFraming(protocol) !== undefined;
}

/**
 * The channel framing of a WebSocket exec/attach stream by its negotiated subprotocol: binary with none
 * (the kubelet's default) and the `channel.k8s.io` family, base64 with the `base64.channel.k8s.io`
 * family; undefined for anything else.
 */
export function execStreamFraming(protocol: string | undefined): ExecStreamFraming | undefined {
	const p = (protocol ?? "").trim();
	if (p === "" || p === "channel.k8s.io" || p === "v4.channel.k8s.io" || p === "v5.channel.k8s.io") return "binary";
	if (p === "base64.channel.k8s.io" || p === "v4.base64.channel.k8s.io") return "base64";
	return undefined;
}

/**
 * Where the relayed bytes of one direction stand in RFC 6455 framing, without buffering payloads:
 * `atBoundary` is true between frames, the only place the gateway may add a frame of its own (a
 * control frame may sit between the fragments of a message). Lengths beyond 2^53 stop it (`broken`).
 */
export class WsBoundary {
	#header: number[] = [];
	#left = 0;
	broken = false;

	push(chunk: Buffer): void {
		let i = 0;
		while (i < chunk.length && !this.broken) {
			if (this.#left > 0) {
				const n = Math.min(this.#left, chunk.length - i);
				this.#left -= n;
				i += n;
				continue;
			}
			this.#header.push(chunk[i++]!);
			const h = this.#header;
			if (h.length < 2) continue;
			const len7 = h[1]! & 0x7f;
			const need = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (h[1]! & 0x80 ? 4 : 0);
			if (h.length < need) continue;
			let len = len7;
			if (len7 === 126) len = (h[2]! << 8) | h[3]!;
			else if (len7 === 127) {
				const big = Buffer.from(h.slice(2, 10)).readBigUInt64BE(0);
				if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
					this.broken = true;
					return;
				}
				len = Number(big);
			}
			this.#left = len;
			this.#header = [];
		}
	}

	get atBoundary(): boolean {
		return !this.broken && this.#left === 0 && this.#header.length === 0;
	}
}

/** One unmasked (server → client) frame. */
function serverFrame(opcode: number, payload: Buffer): Buffer {
	const n = payload.length;
	const head = n < 126 ? Buffer.from([0x80 | opcode, n]) : n < 65536 ? Buffer.from([0x80 | opcode, 126, n >> 8, n & 0xff]) : Buffer.alloc(10);
	if (n >= 65536) {
		head[0] = 0x80 | opcode;
		head[1] = 127;
		head.writeBigUInt64BE(BigInt(n), 2);
	}
	return Buffer.concat([head, payload]);
}

/** Close frame with a status code and a reason of at most 123 bytes of UTF-8 (cut at a character). */
export function wsCloseFrame(code: number, reason: string): Buffer {
	let text = reason;
	while (Buffer.byteLength(text) > 123) text = text.slice(0, -1);
	const payload = Buffer.alloc(2 + Buffer.byteLength(text));
	payload.writeUInt16BE(code, 0);
	payload.write(text, 2, "utf8");
	return serverFrame(WsOpcode.Close, payload);
}

/**
 * A `metav1.Status` Failure on the error channel (3) of a v4/v5 channel stream: what kubectl exec prints
 * as the command's error. Undefined for the older `channel.k8s.io`, whose channel 3 is plain text.
 */
export function wsChannelStatusFrame(protocol: string | undefined, message: string, code: number, reason: string): Buffer | undefined {
	if (protocol !== "v4.channel.k8s.io" && protocol !== "v5.channel.k8s.io") return undefined;
	const status = { kind: "Status", apiVersion: "v1", metadata: {}, status: "Failure", message, reason, code };
	return serverFrame(WsOpcode.Binary, Buffer.concat([Buffer.from([3]), Buffer.from(JSON.stringify(status))]));
}
