/**
 * Parser for frontend (client → server) messages: bytes in, messages out, any TCP chunking (STYLE 2).
 * It starts in the untyped startup phase (SSLRequest, GSSENCRequest, CancelRequest, StartupMessage,
 * PostgreSQL docs 55.2.1 and 55.7) and switches to typed messages after a StartupMessage.
 * It never owns a socket; `push` buffers bytes, `next` returns one whole message or undefined.
 */
import { PgGatewayError } from "./errors.ts";
import { ClientCode, type ClientMessage, StartupCode } from "./protocol.ts";
import { PayloadReader } from "./reader.ts";

export interface ClientParserOptions {
	/** Largest typed message accepted, header included (default 64 MiB). */
	maxMessageBytes?: number;
	/** Largest startup-phase message (default 10000 bytes, as PostgreSQL). */
	maxStartupBytes?: number;
}

export const DEFAULT_MAX_CLIENT_MESSAGE_BYTES = 64 * 1024 * 1024;
const DEFAULT_MAX_STARTUP_BYTES = 10_000;
const EMPTY = Buffer.alloc(0);

export class ClientParser {
	private buf: Buffer = EMPTY;
	private off = 0;
	private phase: "startup" | "typed" = "startup";
	/** Raised by the listener once the client is authenticated. */
	maxMessageBytes: number;
	private readonly maxStartupBytes: number;

	constructor(opts: ClientParserOptions = {}) {
		this.maxMessageBytes = opts.maxMessageBytes ?? DEFAULT_MAX_CLIENT_MESSAGE_BYTES;
		this.maxStartupBytes = opts.maxStartupBytes ?? DEFAULT_MAX_STARTUP_BYTES;
	}

	get inStartupPhase(): boolean {
		return this.phase === "startup";
	}

	/** Bytes received but not yet returned as a message (must be 0 before a TLS upgrade). */
	get bufferedBytes(): number {
		return this.buf.length - this.off;
	}

	push(chunk: Buffer): void {
		if (this.off >= this.buf.length) {
			this.buf = chunk;
		} else {
			this.buf = Buffer.concat([this.buf.subarray(this.off), chunk]);
		}
		this.off = 0;
	}

	/** The next whole message, or undefined when more bytes are needed. Throws PgGatewayError only. */
	next(): ClientMessage | undefined {
		return this.phase === "startup" ? this.nextStartup() : this.nextTyped();
	}

	private nextStartup(): ClientMessage | undefined {
		const avail = this.buf.length - this.off;
		if (avail < 4) return undefined;
		const len = this.buf.readInt32BE(this.off);
		if (len < 8 || len > this.maxStartupBytes) {
			throw new PgGatewayError(
				len > this.maxStartupBytes ? "message_too_large" : "protocol_violation",
				`invalid startup packet length ${len}`,
			);
		}
		if (avail < len) return undefined;
		const start = this.off;
		const raw = this.buf.subarray(start, start + len);
		this.off += len;
		const r = new PayloadReader(this.buf, start + 4, start + len, "startup");
		const code = r.int32();
		switch (code) {
			case StartupCode.SSLRequest:
				r.done();
				return { type: "sslRequest", raw };
			case StartupCode.GSSENCRequest:
				r.done();
				return { type: "gssEncRequest", raw };
			case StartupCode.CancelRequest: {
				const processId = r.int32();
				const secretKey = Buffer.from(r.rest());
				if (secretKey.length < 4 || secretKey.length > 256) {
					throw new PgGatewayError("protocol_violation", "malformed cancel request");
				}
				return { type: "cancelRequest", raw, processId, secretKey };
			}
			default: {
				const major = code >>> 16;
				if (major !== 3) {
					throw new PgGatewayError(
						"unsupported_protocol",
						`unsupported frontend protocol ${major}.${code & 0xffff}: server supports 3.0`,
					);
				}
				const parameters: Record<string, string> = Object.create(null);
				for (;;) {
					const key = r.cstring();
					if (key === "") break;
					parameters[key] = r.cstring();
				}
				r.done();
				this.phase = "typed";
				return { type: "startup", raw, protocolVersion: code, parameters };
			}
		}
	}

	private nextTyped(): ClientMessage | undefined {
		const avail = this.buf.length - this.off;
		if (avail < 1) return undefined;
		const start = this.off;
		const code = this.buf[start]!;
		// Like PostgreSQL, judge the type byte before waiting for the length: an unknown type would
		// otherwise make the session wait for a body that never comes.
		if (!CLIENT_CODES.has(code)) throw new PgGatewayError("protocol_violation", `invalid frontend message type ${code}`);
		if (avail < 5) return undefined;
		const len = this.buf.readInt32BE(start + 1);
		if (len < 4) throw new PgGatewayError("protocol_violation", `invalid message length ${len}`);
		if (len + 1 > this.maxMessageBytes) {
			throw new PgGatewayError(
				"message_too_large",
				`message of ${len + 1} bytes exceeds the gateway's limit of ${this.maxMessageBytes} bytes`,
			);
		}
		if (avail < len + 1) return undefined;
		const end = start + 1 + len;
		this.off = end;
		const raw = this.buf.subarray(start, end);
		return decodeClientMessage(code, raw, this.buf, start + 5, end);
	}
}

const CLIENT_CODES: ReadonlySet<number> = new Set([
	ClientCode.Bind,
	ClientCode.Close,
	ClientCode.CopyData,
	ClientCode.CopyDone,
	ClientCode.CopyFail,
	ClientCode.Describe,
	ClientCode.Execute,
	ClientCode.Flush,
	ClientCode.FunctionCall,
	ClientCode.Parse,
	ClientCode.Password,
	ClientCode.Query,
	ClientCode.Sync,
	ClientCode.Terminate,
]);

function decodeClientMessage(code: number, raw: Buffer, buf: Buffer, start: number, end: number): ClientMessage {
	switch (code) {
		case ClientCode.Query: {
			const r = new PayloadReader(buf, start, end, "Query");
			const sql = r.cstring();
			r.done();
			return { type: "query", raw, sql };
		}
		case ClientCode.Parse: {
			const r = new PayloadReader(buf, start, end, "Parse");
			const name = r.cstring();
			const sql = r.cstring();
			const n = r.int16();
			if (n < 0) throw new PgGatewayError("protocol_violation", "malformed Parse message: negative count");
			const paramTypes: number[] = [];
			for (let i = 0; i < n; i++) paramTypes.push(r.uint32());
			r.done();
			return { type: "parse", raw, name, sql, paramTypes };
		}
		case ClientCode.Bind: {
			const r = new PayloadReader(buf, start, end, "Bind");
			const portal = r.cstring();
			const statement = r.cstring();
			const nf = r.int16();
			if (nf < 0) throw new PgGatewayError("protocol_violation", "malformed Bind message: negative count");
			const paramFormats: number[] = [];
			for (let i = 0; i < nf; i++) paramFormats.push(r.int16());
			const np = r.int16();
			if (np < 0) throw new PgGatewayError("protocol_violation", "malformed Bind message: negative count");
			const params: (Buffer | null)[] = [];
			for (let i = 0; i < np; i++) {
				const l = r.int32();
				if (l === -1) params.push(null);
				else if (l < 0) throw new PgGatewayError("protocol_violation", "malformed Bind message: bad length");
				else params.push(r.bytes(l));
			}
			const nr = r.int16();
			if (nr < 0) throw new PgGatewayError("protocol_violation", "malformed Bind message: negative count");
			const resultFormats: number[] = [];
			for (let i = 0; i < nr; i++) resultFormats.push(r.int16());
			r.done();
			return { type: "bind", raw, portal, statement, paramFormats, params, resultFormats };
		}
		case ClientCode.Describe:
		case ClientCode.Close: {
			const what = code === ClientCode.Describe ? "Describe" : "Close";
			const r = new PayloadReader(buf, start, end, what);
			const t = r.int8();
			if (t !== 0x53 && t !== 0x50) {
				throw new PgGatewayError("protocol_violation", `malformed ${what} message: target must be S or P`);
			}
			const name = r.cstring();
			r.done();
			const target = t === 0x53 ? "S" : "P";
			return code === ClientCode.Describe
				? { type: "describe", raw, target, name }
				: { type: "close", raw, target, name };
		}
		case ClientCode.Execute: {
			const r = new PayloadReader(buf, start, end, "Execute");
			const portal = r.cstring();
			const maxRows = r.int32();
			r.done();
			return { type: "execute", raw, portal, maxRows };
		}
		case ClientCode.Sync:
		case ClientCode.Flush:
		case ClientCode.CopyDone:
		case ClientCode.Terminate: {
			// PostgreSQL ignores payload bytes of these; so do we (but they count towards the cap).
			const type =
				code === ClientCode.Sync
					? "sync"
					: code === ClientCode.Flush
						? "flush"
						: code === ClientCode.CopyDone
							? "copyDone"
							: "terminate";
			return { type, raw };
		}
		case ClientCode.CopyData:
			return { type: "copyData", raw, data: buf.subarray(start, end) };
		case ClientCode.CopyFail: {
			const r = new PayloadReader(buf, start, end, "CopyFail");
			return { type: "copyFail", raw, message: r.cstring() };
		}
		case ClientCode.FunctionCall: {
			const r = new PayloadReader(buf, start, end, "FunctionCall");
			const functionOid = r.uint32();
			// The arguments are read for the recording only: a malformed rest is PostgreSQL's to refuse.
			try {
				const nf = r.int16();
				if (nf < 0) throw new RangeError("negative count");
				const formats: number[] = [];
				for (let i = 0; i < nf; i++) formats.push(r.int16());
				const na = r.int16();
				if (na < 0) throw new RangeError("negative count");
				const values: (Buffer | null)[] = [];
				for (let i = 0; i < na; i++) {
					const l = r.int32();
					if (l === -1) values.push(null);
					else if (l < 0) throw new RangeError("bad length");
					else values.push(r.bytes(l));
				}
				return { type: "functionCall", raw, functionOid, args: { formats, values } };
			} catch {
				return { type: "functionCall", raw, functionOid };
			}
		}
		case ClientCode.Password:
			return { type: "password", raw, payload: buf.subarray(start, end) };
		default:
			throw new PgGatewayError(
				"protocol_violation",
				`invalid frontend message type ${code} (0x${code.toString(16).padStart(2, "0")})`,
			);
	}
}

/** PasswordMessage payload: a NUL-terminated string. */
export function decodePasswordPayload(payload: Buffer): string {
	const r = new PayloadReader(payload, 0, payload.length, "PasswordMessage");
	const s = r.cstring();
	r.done();
	return s;
}
