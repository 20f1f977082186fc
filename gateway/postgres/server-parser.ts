/**
 * Parser for backend (server → client) messages from the upstream PostgreSQL: bytes in, frames out,
 * any TCP chunking. Framing is separate from decoding so that the relay can forward frames it does
 * not need to look at (DataRow without masks) as raw bytes, and decode only what it needs.
 */
import { PgGatewayError } from "./errors.ts";
import {
	type ErrorFields,
	type FieldDescription,
	ServerCode,
	type ServerFrame,
	type ServerMessage,
	type TxStatus,
} from "./protocol.ts";
import { PayloadReader } from "./reader.ts";

export const DEFAULT_MAX_SERVER_MESSAGE_BYTES = 256 * 1024 * 1024;
const EMPTY = Buffer.alloc(0);

/**
 * Received chunks are kept as they came (a list, read from `off` in the first): a frame inside one
 * chunk is returned as a view of it, and only a frame that straddles chunks is copied, into a buffer
 * of exactly its size. (Joining the unread tail with each new chunk copied the whole stream once
 * more: a large result arrives as 64 KiB reads that nearly all end inside a DataRow.)
 */
export class ServerParser {
	private chunks: Buffer[] = [];
	private off = 0;
	private avail = 0;
	constructor(private readonly maxMessageBytes = DEFAULT_MAX_SERVER_MESSAGE_BYTES) {}

	get bufferedBytes(): number {
		return this.avail;
	}

	push(chunk: Buffer): void {
		if (chunk.length === 0) return;
		this.chunks.push(chunk);
		this.avail += chunk.length;
	}

	/** Hand back every buffered byte not yet returned as a frame (when another parser takes over). */
	takeBuffered(): Buffer {
		const rest = this.chunks.length === 0 ? EMPTY : Buffer.concat([this.chunks[0]!.subarray(this.off), ...this.chunks.slice(1)]);
		this.chunks = [];
		this.off = 0;
		this.avail = 0;
		return rest;
	}

	/** Byte `i` (0-based) of the unread data, across chunks. */
	private byteAt(i: number): number {
		let pos = this.off + i;
		for (const c of this.chunks) {
			if (pos < c.length) return c[pos]!;
			pos -= c.length;
		}
		throw new RangeError("byteAt past the buffered data");
	}

	/** The largest frame `next` accepts. */
	get maxFrameBytes(): number {
		return this.maxMessageBytes;
	}

	/**
	 * For reading frames in place: the first buffered chunk with unread bytes (they start at
	 * `firstOffset`), or undefined when nothing is buffered. See `consume`.
	 */
	firstChunk(): Buffer | undefined {
		while (this.chunks.length > 0 && this.off >= this.chunks[0]!.length) {
			this.chunks.shift();
			this.off = 0;
		}
		return this.chunks[0];
	}

	get firstOffset(): number {
		return this.off;
	}

	/** Mark `n` bytes of the first chunk as read: whole frames the caller has read in place. */
	consume(n: number): void {
		this.off += n;
		this.avail -= n;
	}

	/** Next whole frame or undefined. `raw` is a view of a received chunk, or a copy if it straddled two. */
	next(): ServerFrame | undefined {
		if (this.avail < 5) return undefined;
		let first = this.chunks[0]!;
		while (this.off >= first.length) {
			this.chunks.shift();
			this.off = 0;
			first = this.chunks[0]!;
		}
		const inFirst = first.length - this.off;
		const len =
			inFirst >= 5 ? first.readInt32BE(this.off + 1) : ((this.byteAt(1) << 24) | (this.byteAt(2) << 16) | (this.byteAt(3) << 8) | this.byteAt(4)) >> 0;
		if (len < 4) throw new PgGatewayError("upstream_protocol", `upstream sent invalid message length ${len}`);
		if (len + 1 > this.maxMessageBytes) {
			throw new PgGatewayError(
				"message_too_large",
				`upstream message of ${len + 1} bytes exceeds the gateway's limit of ${this.maxMessageBytes} bytes`,
			);
		}
		const size = len + 1;
		if (this.avail < size) return undefined;
		this.avail -= size;
		if (inFirst >= size) {
			const start = this.off;
			this.off += size;
			return { code: first[start]!, raw: first.subarray(start, this.off) };
		}
		const frame = Buffer.allocUnsafe(size);
		let filled = 0;
		while (filled < size) {
			const c = this.chunks[0]!;
			const n = Math.min(c.length - this.off, size - filled);
			c.copy(frame, filled, this.off, this.off + n);
			filled += n;
			this.off += n;
			if (this.off >= c.length) {
				this.chunks.shift();
				this.off = 0;
			}
		}
		return { code: frame[0]!, raw: frame };
	}
}

function reader(frame: ServerFrame, what: string): PayloadReader {
	return new PayloadReader(frame.raw, 5, frame.raw.length, what);
}

export function decodeErrorFields(frame: ServerFrame): ErrorFields {
	const r = reader(frame, "ErrorResponse");
	const fields: ErrorFields = {};
	for (;;) {
		if (r.remaining() === 0) break;
		const t = r.int8();
		if (t === 0) break;
		fields[String.fromCharCode(t)] = r.cstring();
	}
	return fields;
}

export function decodeRowDescription(frame: ServerFrame): FieldDescription[] {
	const r = reader(frame, "RowDescription");
	const n = r.int16();
	const fields: FieldDescription[] = [];
	for (let i = 0; i < n; i++) {
		fields.push({
			name: r.cstring(),
			tableOid: r.uint32(),
			columnAttr: r.int16(),
			typeOid: r.uint32(),
			typeSize: r.int16(),
			typeModifier: r.int32(),
			format: r.int16() === 1 ? 1 : 0,
		});
	}
	return fields;
}

export function decodeDataRow(frame: ServerFrame): (Buffer | null)[] {
	const r = reader(frame, "DataRow");
	const n = r.int16();
	const values: (Buffer | null)[] = new Array(n);
	for (let i = 0; i < n; i++) {
		const l = r.int32();
		values[i] = l < 0 ? null : r.bytes(l);
	}
	return values;
}

export function decodeReadyForQuery(frame: ServerFrame): TxStatus {
	const s = String.fromCharCode(frame.raw[5] ?? 0);
	if (s !== "I" && s !== "T" && s !== "E") throw new PgGatewayError("upstream_protocol", "bad ReadyForQuery status");
	return s;
}

export function decodeCommandComplete(frame: ServerFrame): string {
	return reader(frame, "CommandComplete").cstring();
}

/** Decode any frame into a typed message (tests, handshake, logging of non-secret messages). */
export function decodeServerMessage(frame: ServerFrame): ServerMessage {
	switch (frame.code) {
		case ServerCode.Authentication: {
			const r = reader(frame, "Authentication");
			return { type: "authentication", auth: r.int32(), data: r.rest() };
		}
		case ServerCode.ParameterStatus: {
			const r = reader(frame, "ParameterStatus");
			return { type: "parameterStatus", name: r.cstring(), value: r.cstring() };
		}
		case ServerCode.BackendKeyData: {
			const r = reader(frame, "BackendKeyData");
			return { type: "backendKeyData", processId: r.int32(), secretKey: Buffer.from(r.rest()) };
		}
		case ServerCode.ReadyForQuery:
			return { type: "readyForQuery", status: decodeReadyForQuery(frame) };
		case ServerCode.RowDescription:
			return { type: "rowDescription", fields: decodeRowDescription(frame) };
		case ServerCode.DataRow:
			return { type: "dataRow", values: decodeDataRow(frame) };
		case ServerCode.CommandComplete:
			return { type: "commandComplete", tag: decodeCommandComplete(frame) };
		case ServerCode.ErrorResponse:
			return { type: "errorResponse", fields: decodeErrorFields(frame) };
		case ServerCode.NoticeResponse:
			return { type: "noticeResponse", fields: decodeErrorFields(frame) };
		case ServerCode.NotificationResponse: {
			const r = reader(frame, "NotificationResponse");
			return { type: "notificationResponse", processId: r.int32(), channel: r.cstring(), payload: r.cstring() };
		}
		case ServerCode.CopyInResponse:
		case ServerCode.CopyOutResponse:
		case ServerCode.CopyBothResponse: {
			const r = reader(frame, "CopyResponse");
			const format = r.int8();
			const n = r.int16();
			const columnFormats: number[] = [];
			for (let i = 0; i < n; i++) columnFormats.push(r.int16());
			const type =
				frame.code === ServerCode.CopyInResponse
					? "copyInResponse"
					: frame.code === ServerCode.CopyOutResponse
						? "copyOutResponse"
						: "copyBothResponse";
			return { type, format, columnFormats };
		}
		case ServerCode.CopyData:
			return { type: "copyData", data: frame.raw.subarray(5) };
		case ServerCode.CopyDone:
			return { type: "copyDone" };
		case ServerCode.ParseComplete:
			return { type: "parseComplete" };
		case ServerCode.BindComplete:
			return { type: "bindComplete" };
		case ServerCode.CloseComplete:
			return { type: "closeComplete" };
		case ServerCode.NoData:
			return { type: "noData" };
		case ServerCode.EmptyQueryResponse:
			return { type: "emptyQueryResponse" };
		case ServerCode.PortalSuspended:
			return { type: "portalSuspended" };
		case ServerCode.ParameterDescription: {
			const r = reader(frame, "ParameterDescription");
			const n = r.int16();
			const typeOids: number[] = [];
			for (let i = 0; i < n; i++) typeOids.push(r.uint32());
			return { type: "parameterDescription", typeOids };
		}
		case ServerCode.FunctionCallResponse: {
			const r = reader(frame, "FunctionCallResponse");
			const l = r.int32();
			return { type: "functionCallResponse", value: l < 0 ? null : r.bytes(l) };
		}
		case ServerCode.NegotiateProtocolVersion: {
			const r = reader(frame, "NegotiateProtocolVersion");
			const minorVersion = r.int32();
			const n = r.int32();
			const unrecognized: string[] = [];
			for (let i = 0; i < n; i++) unrecognized.push(r.cstring());
			return { type: "negotiateProtocolVersion", minorVersion, unrecognized };
		}
		default:
			return { type: "unknown", code: frame.code, payload: frame.raw.subarray(5) };
	}
}
