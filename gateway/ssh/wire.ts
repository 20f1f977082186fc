/**
 * SSH wire primitives (RFC 4251 section 5): a bounds-checked reader over one buffer and a writer.
 * Used by the certificate parser, the SFTP observer and the key helpers. A short read is a
 * `SshWireError`, never an out-of-range slice.
 */

export class SshWireError extends Error {
	override name = "SshWireError";
}

export class WireReader {
	#buf: Buffer;
	#pos: number;

	constructor(buf: Buffer, pos = 0) {
		this.#buf = buf;
		this.#pos = pos;
	}

	get pos(): number {
		return this.#pos;
	}

	get remaining(): number {
		return this.#buf.length - this.#pos;
	}

	#need(n: number): void {
		if (n < 0 || this.#pos + n > this.#buf.length) throw new SshWireError(`truncated: need ${n} bytes at ${this.#pos}`);
	}

	byte(): number {
		this.#need(1);
		return this.#buf[this.#pos++]!;
	}

	bool(): boolean {
		return this.byte() !== 0;
	}

	uint32(): number {
		this.#need(4);
		const v = this.#buf.readUInt32BE(this.#pos);
		this.#pos += 4;
		return v;
	}

	uint64(): bigint {
		this.#need(8);
		const v = this.#buf.readBigUInt64BE(this.#pos);
		this.#pos += 8;
		return v;
	}

	/** `string` as raw bytes (a view into the buffer). */
	bytes(): Buffer {
		const len = this.uint32();
		this.#need(len);
		const v = this.#buf.subarray(this.#pos, this.#pos + len);
		this.#pos += len;
		return v;
	}

	/** `string` decoded as UTF-8. */
	string(): string {
		return this.bytes().toString("utf8");
	}

	/** `mpint` as an unsigned big-endian magnitude with leading zero bytes removed (negatives refused). */
	mpint(): Buffer {
		const b = this.bytes();
		if (b.length > 0 && (b[0]! & 0x80) !== 0) throw new SshWireError("negative mpint");
		let i = 0;
		while (i < b.length && b[i] === 0) i++;
		return b.subarray(i);
	}

	raw(n: number): Buffer {
		this.#need(n);
		const v = this.#buf.subarray(this.#pos, this.#pos + n);
		this.#pos += n;
		return v;
	}

	end(): void {
		if (this.remaining !== 0) throw new SshWireError(`${this.remaining} trailing bytes`);
	}
}

export function writeString(value: Buffer | string): Buffer {
	const body = typeof value === "string" ? Buffer.from(value, "utf8") : value;
	const out = Buffer.allocUnsafe(4 + body.length);
	out.writeUInt32BE(body.length, 0);
	body.copy(out, 4);
	return out;
}

export function writeUint32(v: number): Buffer {
	const out = Buffer.allocUnsafe(4);
	out.writeUInt32BE(v >>> 0, 0);
	return out;
}
