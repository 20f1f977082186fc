/**
 * Serializers: the server messages the gateway answers clients with, and the client messages it
 * sends upstream (startup, authentication, side queries). Each returns one Buffer.
 */
import {
	AuthCode,
	ClientCode,
	type ErrorFields,
	type FieldDescription,
	ServerCode,
	StartupCode,
	type TxStatus,
} from "./protocol.ts";

/** Grows as needed; `message(code)` prefixes the code and Int32 length. */
export class Writer {
	private buf: Buffer;
	private len = 0;
	constructor(size = 256) {
		this.buf = Buffer.allocUnsafe(size);
	}
	private ensure(n: number): void {
		if (this.len + n <= this.buf.length) return;
		const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.len + n));
		this.buf.copy(next, 0, 0, this.len);
		this.buf = next;
	}
	int8(v: number): this {
		this.ensure(1);
		this.buf[this.len++] = v & 0xff;
		return this;
	}
	int16(v: number): this {
		this.ensure(2);
		this.buf.writeInt16BE(v, this.len);
		this.len += 2;
		return this;
	}
	int32(v: number): this {
		this.ensure(4);
		this.buf.writeInt32BE(v | 0, this.len);
		this.len += 4;
		return this;
	}
	uint32(v: number): this {
		this.ensure(4);
		this.buf.writeUInt32BE(v >>> 0, this.len);
		this.len += 4;
		return this;
	}
	cstring(s: string): this {
		const n = Buffer.byteLength(s);
		this.ensure(n + 1);
		this.buf.write(s, this.len, "utf8");
		this.len += n;
		this.buf[this.len++] = 0;
		return this;
	}
	bytes(b: Uint8Array): this {
		this.ensure(b.length);
		this.buf.set(b, this.len);
		this.len += b.length;
		return this;
	}
	/** Finish as a typed message with `code`. */
	message(code: number): Buffer {
		const out = Buffer.allocUnsafe(this.len + 5);
		out[0] = code;
		out.writeInt32BE(this.len + 4, 1);
		this.buf.copy(out, 5, 0, this.len);
		return out;
	}
	/** Finish as an untyped (startup-phase) message. */
	untyped(): Buffer {
		const out = Buffer.allocUnsafe(this.len + 4);
		out.writeInt32BE(this.len + 4, 0);
		this.buf.copy(out, 4, 0, this.len);
		return out;
	}
}

// -------------------------------------------------------------------------------------------------
// Server messages (gateway → client)

export const serverMessages = {
	authenticationOk: (): Buffer => new Writer(4).int32(AuthCode.Ok).message(ServerCode.Authentication),
	authenticationCleartextPassword: (): Buffer =>
		new Writer(4).int32(AuthCode.CleartextPassword).message(ServerCode.Authentication),
	parameterStatus: (name: string, value: string): Buffer =>
		new Writer().cstring(name).cstring(value).message(ServerCode.ParameterStatus),
	backendKeyData: (processId: number, secretKey: Buffer): Buffer =>
		new Writer(12).int32(processId).bytes(secretKey).message(ServerCode.BackendKeyData),
	readyForQuery: (status: TxStatus): Buffer =>
		new Writer(1).int8(status.charCodeAt(0)).message(ServerCode.ReadyForQuery),
	error: (fields: ErrorFields): Buffer => fieldsMessage(ServerCode.ErrorResponse, fields),
	notice: (fields: ErrorFields): Buffer => fieldsMessage(ServerCode.NoticeResponse, fields),
	commandComplete: (tag: string): Buffer => new Writer().cstring(tag).message(ServerCode.CommandComplete),
	emptyQueryResponse: (): Buffer => new Writer(0).message(ServerCode.EmptyQueryResponse),
	parseComplete: (): Buffer => new Writer(0).message(ServerCode.ParseComplete),
	bindComplete: (): Buffer => new Writer(0).message(ServerCode.BindComplete),
	closeComplete: (): Buffer => new Writer(0).message(ServerCode.CloseComplete),
	noData: (): Buffer => new Writer(0).message(ServerCode.NoData),
	copyData: (data: Uint8Array): Buffer => new Writer(data.length).bytes(data).message(ServerCode.CopyData),
	copyDone: (): Buffer => new Writer(0).message(ServerCode.CopyDone),
	notification: (processId: number, channel: string, payload: string): Buffer =>
		new Writer().int32(processId).cstring(channel).cstring(payload).message(ServerCode.NotificationResponse),
	rowDescription: (fields: FieldDescription[]): Buffer => {
		const w = new Writer().int16(fields.length);
		for (const f of fields) {
			w.cstring(f.name).uint32(f.tableOid).int16(f.columnAttr).uint32(f.typeOid).int16(f.typeSize);
			w.int32(f.typeModifier).int16(f.format);
		}
		return w.message(ServerCode.RowDescription);
	},
	dataRow: (values: (Uint8Array | null)[]): Buffer => encodeDataRow(values),
	negotiateProtocolVersion: (minor: number, unrecognized: string[]): Buffer => {
		const w = new Writer().int32(minor).int32(unrecognized.length);
		for (const o of unrecognized) w.cstring(o);
		return w.message(ServerCode.NegotiateProtocolVersion);
	},
};

function fieldsMessage(code: number, fields: ErrorFields): Buffer {
	const w = new Writer();
	for (const [k, v] of Object.entries(fields)) {
		if (v === undefined || k.length !== 1) continue;
		w.int8(k.charCodeAt(0)).cstring(v);
	}
	w.int8(0);
	return w.message(code);
}

/** DataRow with exact preallocation (hot path when masking). */
export function encodeDataRow(values: (Uint8Array | null)[]): Buffer {
	let size = 7;
	for (const v of values) size += 4 + (v ? v.length : 0);
	const out = Buffer.allocUnsafe(size);
	out[0] = ServerCode.DataRow;
	out.writeInt32BE(size - 1, 1);
	out.writeInt16BE(values.length, 5);
	let o = 7;
	for (const v of values) {
		if (v === null) {
			out.writeInt32BE(-1, o);
			o += 4;
		} else {
			out.writeInt32BE(v.length, o);
			out.set(v, o + 4);
			o += 4 + v.length;
		}
	}
	return out;
}

// -------------------------------------------------------------------------------------------------
// Client messages (gateway → upstream)

export const clientMessages = {
	sslRequest: (): Buffer => new Writer(4).int32(StartupCode.SSLRequest).untyped(),
	startup: (parameters: Record<string, string>): Buffer => {
		const w = new Writer().int32(StartupCode.Protocol30);
		for (const [k, v] of Object.entries(parameters)) w.cstring(k).cstring(v);
		return w.int8(0).untyped();
	},
	cancelRequest: (processId: number, secretKey: Buffer): Buffer =>
		new Writer(12).int32(StartupCode.CancelRequest).int32(processId).bytes(secretKey).untyped(),
	password: (password: string): Buffer => new Writer().cstring(password).message(ClientCode.Password),
	saslInitialResponse: (mechanism: string, data: Buffer): Buffer =>
		new Writer().cstring(mechanism).int32(data.length).bytes(data).message(ClientCode.Password),
	saslResponse: (data: Buffer): Buffer => new Writer(data.length).bytes(data).message(ClientCode.Password),
	query: (sql: string): Buffer => new Writer().cstring(sql).message(ClientCode.Query),
	parse: (name: string, sql: string, paramTypes: number[] = []): Buffer => {
		const w = new Writer().cstring(name).cstring(sql).int16(paramTypes.length);
		for (const t of paramTypes) w.uint32(t);
		return w.message(ClientCode.Parse);
	},
	bind: (portal: string, statement: string, params: (Buffer | null)[] = [], resultFormats: number[] = []): Buffer => {
		const w = new Writer().cstring(portal).cstring(statement).int16(0).int16(params.length);
		for (const p of params) {
			if (p === null) w.int32(-1);
			else w.int32(p.length).bytes(p);
		}
		w.int16(resultFormats.length);
		for (const f of resultFormats) w.int16(f);
		return w.message(ClientCode.Bind);
	},
	describe: (target: "S" | "P", name: string): Buffer =>
		new Writer().int8(target.charCodeAt(0)).cstring(name).message(ClientCode.Describe),
	execute: (portal: string, maxRows = 0): Buffer => new Writer().cstring(portal).int32(maxRows).message(ClientCode.Execute),
	close: (target: "S" | "P", name: string): Buffer =>
		new Writer().int8(target.charCodeAt(0)).cstring(name).message(ClientCode.Close),
	sync: (): Buffer => new Writer(0).message(ClientCode.Sync),
	flush: (): Buffer => new Writer(0).message(ClientCode.Flush),
	terminate: (): Buffer => new Writer(0).message(ClientCode.Terminate),
	copyData: (data: Uint8Array): Buffer => new Writer(data.length).bytes(data).message(ClientCode.CopyData),
	copyDone: (): Buffer => new Writer(0).message(ClientCode.CopyDone),
	copyFail: (message: string): Buffer => new Writer().cstring(message).message(ClientCode.CopyFail),
};
