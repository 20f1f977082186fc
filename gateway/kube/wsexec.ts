/**
 * Passive observer of a Kubernetes exec/attach stream over WebSocket (RFC 6455 framing) with the
 * `channel.k8s.io`, `v4.channel.k8s.io` or `v5.channel.k8s.io` subprotocols (kubectl >= 1.31 default):
 * every binary message starts with one channel byte — 0 stdin, 1 stdout, 2 stderr, 3 error/status
 * (JSON `metav1.Status`, exit code in `details.causes[reason=ExitCode]`), 4 resize (JSON
 * `{"Width":..,"Height":..}`), 255 close-channel (v5). The relay is byte for byte; this only turns the
 * stream into recording events like the SSH path's. Bytes in, callbacks out; it never owns a socket
 * and never buffers more than one frame. SPDY streams are not decoded (see README).
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

export class ExecStreamObserver {
	readonly #client = new WsFramer();
	readonly #server = new WsFramer();
	readonly #on: ExecStreamEvents;
	/** Channel of the message being continued, per direction. */
	#clientChannel = -1;
	#serverChannel = -1;
	#status = "";

	constructor(on: ExecStreamEvents) {
		this.#on = on;
	}

	get broken(): boolean {
		return this.#client.broken || this.#server.broken;
	}

	/** Bytes the agent sent (masked frames). */
	client(chunk: Buffer): void {
		this.#client.push(chunk, (fin, opcode, payload) => {
			const data = this.#payload(opcode, payload, "client");
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
			const data = this.#payload(opcode, payload, "server");
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
	return protocol === "channel.k8s.io" || protocol === "v4.channel.k8s.io" || protocol === "v5.channel.k8s.io";
}
