/** Bounds-checked reading of one message payload; any overrun is a protocol violation, never a crash. */
import { PgGatewayError } from "./errors.ts";

export class PayloadReader {
	offset: number;
	constructor(
		readonly buf: Buffer,
		start: number,
		readonly end: number,
		readonly what: string,
	) {
		this.offset = start;
	}

	private need(n: number): void {
		if (n < 0 || this.offset + n > this.end) {
			throw new PgGatewayError("protocol_violation", `malformed ${this.what} message: truncated`);
		}
	}

	int8(): number {
		this.need(1);
		return this.buf[this.offset++]!;
	}

	int16(): number {
		this.need(2);
		const v = this.buf.readInt16BE(this.offset);
		this.offset += 2;
		return v;
	}

	uint16(): number {
		this.need(2);
		const v = this.buf.readUInt16BE(this.offset);
		this.offset += 2;
		return v;
	}

	int32(): number {
		this.need(4);
		const v = this.buf.readInt32BE(this.offset);
		this.offset += 4;
		return v;
	}

	uint32(): number {
		this.need(4);
		const v = this.buf.readUInt32BE(this.offset);
		this.offset += 4;
		return v;
	}

	/** A NUL-terminated string. */
	cstring(): string {
		const nul = this.buf.indexOf(0, this.offset);
		if (nul < 0 || nul >= this.end) {
			throw new PgGatewayError("protocol_violation", `malformed ${this.what} message: unterminated string`);
		}
		const s = this.buf.toString("utf8", this.offset, nul);
		this.offset = nul + 1;
		return s;
	}

	bytes(n: number): Buffer {
		this.need(n);
		const b = this.buf.subarray(this.offset, this.offset + n);
		this.offset += n;
		return b;
	}

	rest(): Buffer {
		const b = this.buf.subarray(this.offset, this.end);
		this.offset = this.end;
		return b;
	}

	remaining(): number {
		return this.end - this.offset;
	}

	/** Messages must be consumed exactly. */
	done(): void {
		if (this.offset !== this.end) {
			throw new PgGatewayError("protocol_violation", `malformed ${this.what} message: trailing bytes`);
		}
	}
}
