/**
 * Wire codes and message shapes of the PostgreSQL frontend/backend protocol 3.0 (PostgreSQL docs,
 * chapter 55 "Frontend/Backend Protocol", section 55.7 "Message Formats"). Codes are `const enum`s
 * with their letter in a comment (STYLE 3).
 */

/** Messages a client (frontend) sends, after the untyped startup phase. */
// biome-ignore lint/suspicious/noConstEnum: STYLE 3 wants const enums for wire codes; tsx emits them as objects
export const enum ClientCode {
	Bind = 0x42, // B
	Close = 0x43, // C
	CopyData = 0x64, // d
	CopyDone = 0x63, // c
	CopyFail = 0x66, // f
	Describe = 0x44, // D
	Execute = 0x45, // E
	Flush = 0x48, // H
	FunctionCall = 0x46, // F
	Parse = 0x50, // P
	/** PasswordMessage, SASLInitialResponse, SASLResponse and GSSResponse share this code. */
	Password = 0x70, // p
	Query = 0x51, // Q
	Sync = 0x53, // S
	Terminate = 0x58, // X
}

/** Messages a server (backend) sends. */
// biome-ignore lint/suspicious/noConstEnum: STYLE 3 wants const enums for wire codes; tsx emits them as objects
export const enum ServerCode {
	Authentication = 0x52, // R
	BackendKeyData = 0x4b, // K
	BindComplete = 0x32, // 2
	CloseComplete = 0x33, // 3
	CommandComplete = 0x43, // C
	CopyData = 0x64, // d
	CopyDone = 0x63, // c
	CopyInResponse = 0x47, // G
	CopyOutResponse = 0x48, // H
	CopyBothResponse = 0x57, // W
	DataRow = 0x44, // D
	EmptyQueryResponse = 0x49, // I
	ErrorResponse = 0x45, // E
	FunctionCallResponse = 0x56, // V
	NegotiateProtocolVersion = 0x76, // v
	NoData = 0x6e, // n
	NoticeResponse = 0x4e, // N
	NotificationResponse = 0x41, // A
	ParameterDescription = 0x74, // t
	ParameterStatus = 0x53, // S
	ParseComplete = 0x31, // 1
	PortalSuspended = 0x73, // s
	ReadyForQuery = 0x5a, // Z
	RowDescription = 0x54, // T
}

/** Request codes of the untyped first messages (a length, then this Int32). */
// biome-ignore lint/suspicious/noConstEnum: STYLE 3 wants const enums for wire codes; tsx emits them as objects
export const enum StartupCode {
	/** Protocol 3.0: major 3 << 16 | minor 0. */
	Protocol30 = 196608,
	/** Protocol 3.2 (PostgreSQL 18): longer cancel keys. */
	Protocol32 = 196610,
	CancelRequest = 80877102,
	SSLRequest = 80877103,
	GSSENCRequest = 80877104,
}

/** Authentication request sub-codes (Int32 after 'R'). */
// biome-ignore lint/suspicious/noConstEnum: STYLE 3 wants const enums for wire codes; tsx emits them as objects
export const enum AuthCode {
	Ok = 0,
	KerberosV5 = 2,
	CleartextPassword = 3,
	MD5Password = 5,
	GSS = 7,
	GSSContinue = 8,
	SSPI = 9,
	SASL = 10,
	SASLContinue = 11,
	SASLFinal = 12,
}

/** ErrorResponse / NoticeResponse field codes. */
// biome-ignore lint/suspicious/noConstEnum: STYLE 3 wants const enums for wire codes; tsx emits them as objects
export const enum FieldCode {
	Severity = 0x53, // S (localised)
	SeverityV = 0x56, // V (never localised)
	Code = 0x43, // C
	Message = 0x4d, // M
	Detail = 0x44, // D
	Hint = 0x48, // H
	Position = 0x50, // P
	InternalPosition = 0x70, // p
	InternalQuery = 0x71, // q
	Where = 0x57, // W
	Schema = 0x73, // s
	Table = 0x74, // t
	Column = 0x63, // c
	DataType = 0x64, // d
	Constraint = 0x6e, // n
	File = 0x46, // F
	Line = 0x4c, // L
	Routine = 0x52, // R
}

/** Transaction status in ReadyForQuery. */
export type TxStatus = "I" | "T" | "E";

// -------------------------------------------------------------------------------------------------
// Client messages

export type ClientMessage =
	| { type: "sslRequest"; raw: Buffer }
	| { type: "gssEncRequest"; raw: Buffer }
	/** Cancel keys are secrets: never log this message. */
	| { type: "cancelRequest"; raw: Buffer; processId: number; secretKey: Buffer }
	| { type: "startup"; raw: Buffer; protocolVersion: number; parameters: Record<string, string> }
	| { type: "query"; raw: Buffer; sql: string }
	| { type: "parse"; raw: Buffer; name: string; sql: string; paramTypes: number[] }
	| {
			type: "bind";
			raw: Buffer;
			portal: string;
			statement: string;
			paramFormats: number[];
			params: (Buffer | null)[];
			resultFormats: number[];
	  }
	| { type: "describe"; raw: Buffer; target: "S" | "P"; name: string }
	| { type: "execute"; raw: Buffer; portal: string; maxRows: number }
	| { type: "close"; raw: Buffer; target: "S" | "P"; name: string }
	| { type: "sync"; raw: Buffer }
	| { type: "flush"; raw: Buffer }
	| { type: "copyData"; raw: Buffer; data: Buffer }
	| { type: "copyDone"; raw: Buffer }
	| { type: "copyFail"; raw: Buffer; message: string }
	| {
			type: "functionCall";
			raw: Buffer;
			functionOid: number;
			/** Argument format codes and values, as Bind's; undefined when the rest of the message is malformed. */
			args?: { formats: number[]; values: (Buffer | null)[] };
	  }
	/** PasswordMessage / SASL messages: the payload is interpreted by the authentication state. */
	| { type: "password"; raw: Buffer; payload: Buffer }
	| { type: "terminate"; raw: Buffer };

// -------------------------------------------------------------------------------------------------
// Server messages

/** A framed server message: code plus the whole message bytes (header included), undecoded. */
export interface ServerFrame {
	code: number;
	/** Whole message: code byte, Int32 length, payload. A view into the parser's buffer. */
	raw: Buffer;
}

export interface FieldDescription {
	name: string;
	tableOid: number;
	columnAttr: number;
	typeOid: number;
	typeSize: number;
	typeModifier: number;
	format: 0 | 1;
}

export type ErrorFields = Partial<Record<string, string>> & { S?: string; C?: string; M?: string };

export type ServerMessage =
	| { type: "authentication"; auth: number; data: Buffer }
	| { type: "parameterStatus"; name: string; value: string }
	| { type: "backendKeyData"; processId: number; secretKey: Buffer }
	| { type: "readyForQuery"; status: TxStatus }
	| { type: "rowDescription"; fields: FieldDescription[] }
	| { type: "dataRow"; values: (Buffer | null)[] }
	| { type: "commandComplete"; tag: string }
	| { type: "errorResponse"; fields: ErrorFields }
	| { type: "noticeResponse"; fields: ErrorFields }
	| { type: "notificationResponse"; processId: number; channel: string; payload: string }
	| { type: "copyInResponse" | "copyOutResponse" | "copyBothResponse"; format: number; columnFormats: number[] }
	| { type: "copyData"; data: Buffer }
	| { type: "copyDone" }
	| { type: "parseComplete" }
	| { type: "bindComplete" }
	| { type: "closeComplete" }
	| { type: "noData" }
	| { type: "emptyQueryResponse" }
	| { type: "portalSuspended" }
	| { type: "parameterDescription"; typeOids: number[] }
	| { type: "functionCallResponse"; value: Buffer | null }
	| { type: "negotiateProtocolVersion"; minorVersion: number; unrecognized: string[] }
	| { type: "unknown"; code: number; payload: Buffer };
