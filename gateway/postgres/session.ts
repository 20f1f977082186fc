/**
 * One authenticated client session relayed to its upstream connection. Every client message is
 * parsed and understood; every statement is classified before it is forwarded; every result set is
 * masked as it streams (no buffering of whole results); backpressure is honoured both ways.
 *
 * Responses from the upstream arrive in the order of the messages we forwarded, so the session keeps
 * a FIFO of "response units" (one per forwarded message that gets an answer). A unit tells the
 * upstream pump what a RowDescription/DataRow/CommandComplete belongs to (statement, portal, mask
 * plan) and whether an upstream error must be replaced by the gateway's own.
 *
 * Blocked statements: instead of answering ourselves (which would leave the upstream transaction
 * healthy while the client believes it failed), we forward a statement that cannot parse in its
 * place (`BLOCKED_SQL`); the upstream fails it exactly like a real error (aborting an open
 * transaction block, discarding extended messages until Sync, reporting I/T/E in ReadyForQuery), and
 * we replace that upstream ErrorResponse with ours (SQLSTATE 42501 naming the rule). The client's
 * view and the server's state therefore never diverge.
 */
import { createHmac } from "node:crypto";
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { requesterOf } from "../approvals/decision.ts";
import type { ApprovalRequestRecord, ApprovalService } from "../approvals/types.ts";
import type { BundleConnection, BundleGrant, GuardrailRule, Identity, MaskStrategy, PostgresAccess } from "../config/bundle.ts";
import type { ConnectionPolicies } from "../config/store.ts";
import type {
	GuardrailVerdict,
	MaskContext,
	MaskPlan,
	ResultField,
	SqlAnalysis,
	SqlStatementInfo,
} from "../policy/types.ts";
import type { Decision, RecordingEvent, SessionEnd, SessionRecorder } from "../recording/events.ts";
import type { SessionCatalog } from "./catalog.ts";
import type { ClientParser } from "./client-parser.ts";
import { isPgGatewayError, PgGatewayError } from "./errors.ts";
import { unseenCode } from "../policy/sql.ts";
import { unsafeParserSetting } from "./parser-settings.ts";
import {
	binaryScannable,
	detectorText,
	type MaskerShape,
	type SqlPolicyApi,
	type SqlSessionState,
	type TextDetector,
	type ValueMasker,
	writeAsciiPartial,
} from "./policy-adapter.ts";
import { type ClientMessage, type ErrorFields, type FieldDescription, ServerCode, type ServerFrame, type TxStatus } from "./protocol.ts";
import { clientMessages, serverMessages } from "./serializer.ts";
import {
	decodeCommandComplete,
	decodeErrorFields,
	decodeReadyForQuery,
	decodeRowDescription,
	decodeServerMessage,
	ServerParser,
} from "./server-parser.ts";
import type { UpstreamConnection } from "./upstream.ts";

/** Forwarded in place of a blocked statement: fails upstream at parse time, never executes anything. */
export const BLOCKED_SQL = "DRAWBRIDGE_STATEMENT_BLOCKED";
/** Statement names whose defining rules are remembered (`noteDefinition`); past it all are forgotten, and an unknown Bind is refused. */
const MAX_DEFINED_NAMES = 10_000;
/** Name of the failing Parse that stands in for a refused Bind upstream (never stored: it does not parse). */
const BLOCKED_STATEMENT_NAME = "drawbridge:blocked-bind";

/** Bytes buffered behind a waiting message before we stop reading that socket. */
const HIGH_WATER_BYTES = 1 << 20;
/** A prepared statement's mask plan is reused this long (as the catalog cache: DDL is seen soon). */
const PLAN_REUSE_MS = 60_000;
/** Simple-query mask plans a session keeps for reuse (cleared when full). */
const SIMPLE_PLANS_MAX = 256;
/** Size of the arenas masked rows are written into. */
const ARENA_BYTES = 256 * 1024;
/** Output batch size that triggers an early write. */
const OUT_BATCH_BYTES = 256 * 1024;

/** Types whose text and binary representations are both UTF-8 text. */
const TEXT_TYPES = new Set([25, 1043, 1042, 19, 18, 705, 114, 142]);

export interface SessionLogger {
	info(fields: Record<string, unknown>, msg: string): void;
	warn(fields: Record<string, unknown>, msg: string): void;
}

export interface SessionOptions {
	id: string;
	client: Socket | TLSSocket;
	clientParser: ClientParser;
	upstream: UpstreamConnection;
	identity: Identity;
	grant: BundleGrant;
	connection: BundleConnection;
	access: PostgresAccess;
	/**
	 * The policies in force, read at every statement so a new bundle applies to open sessions:
	 * guardrail and masking rules, whether masking applies to this identity, the masking key.
	 */
	live(): LivePolicy;
	catalog: SessionCatalog;
	policy: SqlPolicyApi;
	recorder: SessionRecorder;
	approvals: ApprovalService | undefined;
	/** Default approval timeout when the rule sets none, seconds. */
	approvalTimeoutSec: number;
	maxServerMessageBytes: number;
	/** Close the session after this long without traffic either way (0: never). */
	idleTimeoutMs: number;
	log: SessionLogger;
	onClosed(session: Session): void;
}

export interface LivePolicy {
	policies: ConnectionPolicies;
	/** False when the identity is exempt or no rule selects the connection. */
	maskingActive: boolean;
	maskingKey: Buffer;
}

interface StmtRef {
	name: string;
	sql: string;
	analysis: SqlAnalysis;
	/** The (single) statement of a Parse; undefined for an empty string. */
	info: SqlStatementInfo | undefined;
	decision: Decision;
	rule: string | undefined;
	approvalId: string | undefined;
	/**
	 * The guardrail verdict at Parse: when it asks for approval every Bind of the statement is held,
	 * with its parameters, so an approval covers one execution with the values approvers saw.
	 * Undefined for statements not defined by a Parse of this session (SQL PREPARE bodies): those
	 * are evaluated again at Bind.
	 */
	parseVerdict?: GuardrailVerdict;
	/** The guardrail rules `parseVerdict` was decided under: other rules (a new bundle) decide again. */
	parseRules?: readonly GuardrailRule[];
	/** Cached `mayChangeSettings` (without, and with casts the database defines with user functions). */
	mayChangeSettings?: boolean;
	mayChangeSettingsCasts?: boolean;
	/** The parameter type OIDs its Parse declared (0: inferred); undefined when not defined by a Parse of this session. */
	paramTypes?: readonly number[];
	copyDetector: TextDetector | undefined;
	/**
	 * The policy (LivePolicy) maskPrecheck ran under (its block, if any, is in parseVerdict): a Bind
	 * under another one while masking applies checks again. A named statement parsed before a
	 * MaskingPolicy was merged, `COPY (SELECT phone ...) TO STDOUT` or `INSERT INTO mine SELECT id,
	 * phone FROM customers`, ran unchecked when bound after it.
	 */
	maskedUnder?: unknown;
	/** Mask plan of the last RowDescription seen for this statement (keyed by its bytes). */
	planCache?: PlanEntry;
	/** `nameSeg` when the Parse defining it was forwarded (see "Names" in the class). */
	seg: number;
	/** What executing it does to names (`nameEffectsOf`): worked out once per statement, not per Execute. */
	nameEffects?: NameEffects;
	/**
	 * The analysis before SQL EXECUTE/FETCH were resolved, for statements that hold one: what they run
	 * is looked up by the server when a portal of the statement first runs, not at Parse (see onExecute).
	 */
	unresolved?: SqlAnalysis;
}

/** A mask plan kept for reuse: valid for the same result shape (`key`) under the same policy object. */
interface PlanEntry {
	key: string;
	live: LivePolicy;
	/** The catalog's epoch when the plan was built (see catalogChanged). */
	epoch: number;
	plan: ActivePlan | null;
	at: number;
}

interface ActivePlan {
	/** Compiled masker per output column (sparse). */
	maskers: (ValueMasker | undefined)[];
	/** Per masked column, what its masker does for every value when that needs no call (MaskerShape). */
	shapes: MaskerShape[];
	formats: (0 | 1)[];
	typeOids: number[];
	/** Columns whose values detectors scan (text format, and binary format but for types holding no text: see detectorText). */
	scannable: boolean[];
	detector: TextDetector | undefined;
	maskedNames: string[];
	any: boolean;
	/**
	 * The RowDescription to send instead of the server's, its column names replaced: names of rows
	 * from a query the gateway never saw, and names a content detector matches (see planFor).
	 */
	rowDescription?: Buffer;
}

interface PortalRef {
	name: string;
	stmt: StmtRef | undefined;
	params: (Buffer | null)[];
	paramFormats: number[];
	resultFormats: number[];
	described: boolean;
	/** `nameSeg` of the last Describe(P) forwarded for it: trusted to come before an Execute only in the same segment. */
	describedSeg: number;
	/** undefined: not described yet; null: no rows / nothing to mask. */
	plan: ActivePlan | null | undefined;
	/** `nameSeg` when the Bind defining it was forwarded. */
	seg: number;
	/** Set when this Bind was held and approved: the approval covers this portal's execution only. */
	approvalId?: string;
	/** An Execute of it was forwarded: what it returns is fixed from then on (see onExecute). */
	ran?: boolean;
	/**
	 * The policy (LivePolicy) its plan was made under: an Execute under another one, with masking
	 * applying, describes the portal again. A portal suspended before a MaskingPolicy was merged
	 * (plan null: nothing to mask then) went on sending raw rows at every later Execute (`SELECT
	 * phone FROM customers` bound in an open transaction, Execute with a row limit, the policy
	 * merged, Execute again); one planned under a policy without a later rule kept missing it.
	 */
	plannedUnder?: unknown;
}

type Unit = (
	| {
			k: "simple";
			statements: SqlStatementInfo[];
			idx: number;
			plan: ActivePlan | null;
			rows: number;
			started: number;
			decision: Decision;
			rule: string | undefined;
			approvalId: string | undefined;
			substitute?: Buffer;
			copyDetector?: TextDetector | undefined;
	  }
	| { k: "parse"; stmt: StmtRef; previous: StmtRef | undefined; substitute?: Buffer }
	| { k: "bind"; portal: PortalRef; substitute?: Buffer }
	| {
			k: "describe";
			portal: PortalRef | undefined;
			swallow: boolean;
			/** A statement or portal the gateway never saw (made by code: `OPEN c FOR EXECUTE ...`, a dynamic PREPARE). */
			unknown?: boolean;
	  }
	| { k: "execute"; portal: PortalRef; rows: number; started: number }
	| { k: "close"; target: "S" | "P"; name: string }
	| { k: "sync" }
	| {
			k: "fn";
			substitute?: Buffer;
			asQuery?: true;
			/** A call forwarded upstream: recorded when it completes, fails or is cut off (once). */
			call?: { oid: number; args: Extract<ClientMessage, { type: "functionCall" }>["args"]; started: number; recorded?: true };
	  }
) & {
	/** `syncSeg` when it was forwarded. */
	sseg?: number;
	/**
	 * SqlSessionState sequence number: of the definition (named Parse/Bind), Close, or first statement
	 * (simple; Execute of a statement that defines or drops SQL names) it forwarded.
	 */
	seq?: number;
	/** Sync points (simple, sync, fn): the sequence number at forwarding, for a transaction end. */
	tseq?: number;
	/** CopyDone/CopyFail messages forwarded before it (see `copyEnds`). */
	copyEnds?: number;
};

export class Session {
	readonly id: string;
	readonly identity: Identity;
	readonly grant: BundleGrant;
	readonly upstreamProcessId: number;
	readonly upstreamSecretKey: Buffer;
	private readonly o: SessionOptions;
	private readonly client: Socket | TLSSocket;
	private readonly up: Socket | TLSSocket;
	private readonly cparser: ClientParser;
	private readonly sparser: ServerParser;
	private readonly sql: SqlSessionState;
	private readonly units: Unit[] = [];
	private unitHead = 0;
	private readonly statements = new Map<string, StmtRef>();
	private readonly portals = new Map<string, PortalRef>();
	private discardUntilSync = false;
	private status: TxStatus;
	private closed = false;
	private clientBusy = false;
	private serverBusy = false;
	private upstreamGone = false;
	private readonly abort = new AbortController();
	private endReason: SessionEnd | undefined;
	private readonly pendingApprovals = new Set<string>();
	private lastActivity = Date.now();
	/** The gateway ended the session and cancelled its running statement (see recordInterrupted). */
	private cancelledAtEnd = false;
	private idleTimer: NodeJS.Timeout | undefined;

	/*
	 * Names. A Bind names a prepared statement and an Execute/Describe a portal; masking plans from
	 * what the gateway believes that name holds upstream, so the belief must never be wrong. The
	 * client runs ahead of the server (pipelining), and names change in ways a message-by-message
	 * optimistic map gets wrong: a re-Parse or Bind of a taken name fails upstream (42P05/42P03) but
	 * the client's next segment is read before the error arrives; SQL DEALLOCATE/PREPARE/DECLARE/
	 * CLOSE and transaction ends change the same namespaces; a Describe skipped after an error never
	 * answers. So:
	 *  - `statements`/`portals` are the optimistic view, trusted only for a name (re)defined in the
	 *    current segment (`nameSeg`): if that definition failed, the server skips this message too;
	 *  - `confirmedStatements`/`confirmedPortals` change only on the server's answers (ParseComplete,
	 *    BindComplete, CloseComplete, CommandComplete of SQL-level name statements, ReadyForQuery
	 *    'I' for portals, errors for the unnamed ones);
	 *  - any other lookup first waits until every earlier segment is answered (normally nothing is
	 *    outstanding: no wait), then reads the confirmed view; a SQL PREPAREd body of the same name is
	 *    always added (union: masked as a whole);
	 *  - after a forwarded Execute that may change names (SQL PREPARE/DEALLOCATE/DECLARE/CLOSE/
	 *    DISCARD, transaction control, DO/CALL, an unknown statement) the rest of the segment cannot
	 *    wait (the server answers only at Sync): a name not redefined since is unknown, and unknown
	 *    means every column masked.
	 */
	/** Sync points forwarded (Sync, Query, FunctionCall): each segment is answered as a whole. */
	private syncSeg = 0;
	/** Bumped at each sync point and after an Execute that may change names. */
	private nameSeg = 0;
	/** `syncSeg` of the last name-changing Execute. */
	private nameChangedInSync = -1;
	/** `syncSeg` of the last Execute that may change prepared-statement names (not only portals). */
	private statementsChangedInSync = -1;
	/** Per statement name, the guardrail rules its definitions were decided under (`noteDefinition`). */
	private readonly definedUnder = new Map<string, readonly GuardrailRule[] | "several">();
	/** Set once `definedUnder` overflowed: a name it no longer holds may have been defined under any rules. */
	private definitionsForgotten = false;
	/**
	 * `syncSeg` of the last forwarded Execute that may change server settings (it calls a function
	 * that is not a known built-in, CALL, DO, EXECUTE, or its statement is unknown). See
	 * `parserSettingsGate`.
	 */
	private settingsChangedInSync = -1;
	/**
	 * `syncSeg` of the last forwarded Execute that runs only built-in code unless the database has
	 * casts with user functions (a typed value converted in a call or a cast). See `parserSettingsGate`.
	 */
	private castsChangeInSync = -1;
	private readonly confirmedStatements = new Map<string, StmtRef>();
	private readonly confirmedPortals = new Map<string, PortalRef>();
	private answerWaiters: { seg: number; resolve: () => void }[] = [];

	/*
	 * COPY FROM STDIN. While the server is in copy-in mode it ignores Sync (and Flush): libpq sends a
	 * Sync right after an extended-protocol Execute of COPY and another after CopyDone, and the server
	 * answers one ReadyForQuery. A Sync unit the server ignores would never be answered (the next
	 * answer desynchronised the FIFO; a name lookup waiting for it waited forever). The copy started
	 * by a unit ends at the first CopyDone/CopyFail the client sends after that unit.
	 */
	/** CopyDone/CopyFail messages forwarded so far. */
	private copyEnds = 0;
	/** The server is in copy-in mode, ended by the client's copy end number `copyEnds + 1` counted from this. */
	private copyInAt: number | undefined;

	constructor(o: SessionOptions) {
		this.o = o;
		this.id = o.id;
		this.identity = o.identity;
		this.grant = o.grant;
		this.client = o.client;
		this.up = o.upstream.socket;
		this.cparser = o.clientParser;
		this.sparser = new ServerParser(o.maxServerMessageBytes);
		this.sql = o.policy.newSessionState();
		this.status = o.upstream.status;
		this.upstreamProcessId = o.upstream.processId;
		this.upstreamSecretKey = o.upstream.secretKey;
	}

	/** Start relaying. Bytes the client already sent after the password are in the parser. */
	start(): void {
		this.client.on("data", (c: Buffer) => {
			this.lastActivity = Date.now();
			this.cparser.push(c);
			// While a message waits (approval, pre-check), keep at most ~1 MiB of what follows it.
			if (this.clientBusy && this.cparser.bufferedBytes > HIGH_WATER_BYTES) this.client.pause();
			this.kickClient();
		});
		this.client.on("end", () => this.close({ reason: "client-closed" }));
		this.client.on("close", () => this.close({ reason: "client-closed" }));
		this.client.on("error", () => this.close({ reason: "client-closed" }));
		this.up.on("data", (c: Buffer) => {
			this.lastActivity = Date.now();
			this.sparser.push(c);
			if (this.serverBusy && this.sparser.bufferedBytes > HIGH_WATER_BYTES) this.up.pause();
			this.kickServer();
		});
		// Frames already received (e.g. the server's own FATAL) may wait behind an async mask plan or
		// in a paused socket: relay them first (serverIdle), then close with a FATAL of our own if none came.
		this.up.on("close", () => this.onUpstreamGone());
		this.up.on("error", (e: Error) => {
			this.o.log.warn({ session: this.id, err: e.message }, "upstream connection error");
			this.onUpstreamGone();
		});
		if (this.o.upstream.leftover.length > 0) this.sparser.push(this.o.upstream.leftover);
		if (this.o.idleTimeoutMs > 0) {
			const every = Math.max(50, Math.min(this.o.idleTimeoutMs / 4, 30_000));
			this.idleTimer = setInterval(() => {
				if (Date.now() - this.lastActivity < this.o.idleTimeoutMs || this.pendingApprovals.size > 0) return;
				const message = `terminating connection: no traffic for ${this.o.idleTimeoutMs} ms (gateway idle timeout)`;
				this.terminate("idle_timeout", message, { reason: "policy", message });
			}, every);
			this.idleTimer.unref();
		}
		this.client.resume();
		this.up.resume();
		this.kickClient();
		this.kickServer();
	}

	/** Requests are outstanding upstream (a statement may be running there). */
	get busy(): boolean {
		return this.unitHead < this.units.length;
	}

	get transactionStatus(): TxStatus {
		return this.status;
	}

	/**
	 * Set when a statement that may leave names meaning something else for this session only (a
	 * temporary relation, search_path, DDL not committed yet) was forwarded while masking did not
	 * apply: masking refuses such statements, and the catalog cannot see their effects, so the
	 * listener ends the session if masking starts to apply (a policy merged, an exemption removed).
	 */
	namesUnseenByMasking = false;

	private noteUnmasked(statements: readonly (SqlStatementInfo | undefined)[]): void {
		if (!this.namesUnseenByMasking && !this.o.live().maskingActive && statements.some(changesSessionNames)) this.namesUnseenByMasking = true;
	}

	/** End the session with a FATAL the client can read (grant end, shutdown, recording failure). */
	terminate(code: "grant_ended" | "shutdown" | "idle_timeout" | "recording_unavailable", message: string, end: SessionEnd): void {
		if (this.closed) return;
		// Every caller cancelled the running statement first (nothing runs when the session is idle).
		this.cancelledAtEnd = true;
		const e = new PgGatewayError(code, message);
		this.writeClient(serverMessages.error(errorFieldsOf(e)));
		this.close(end);
	}

	// ---------------------------------------------------------------------------------------------
	// client → upstream

	private kickClient(): void {
		if (this.clientBusy || this.closed) return;
		this.clientBusy = true;
		this.up.cork();
		let wait: Promise<void> | undefined;
		try {
			wait = this.drainClient();
		} catch (e) {
			this.fail(e);
		}
		if (wait) {
			// Long waits (approvals) must not hold what was already forwarded.
			this.up.uncork();
			wait.catch((e) => this.fail(e)).finally(() => this.clientIdle());
		} else this.clientIdle();
	}

	private clientIdle(): void {
		this.flushUp();
		if (this.up.writableCorked) this.up.uncork();
		this.clientBusy = false;
		if (this.closed) return;
		if (this.up.writableNeedDrain) {
			this.client.pause();
			this.up.once("drain", () => {
				if (!this.closed) {
					this.client.resume();
					this.kickClient();
				}
			});
		} else if (this.client.isPaused()) this.client.resume();
	}

	/** Synchronous while possible; returns a promise only when a message had to wait. */
	private drainClient(): Promise<void> | undefined {
		for (;;) {
			if (this.closed) return undefined;
			const m = this.cparser.next();
			if (!m) return undefined;
			const wait = this.onClientMessage(m);
			if (wait) {
				this.flushUp();
				return wait.then(() => this.drainClient());
			}
		}
	}

	/**
	 * Client messages forwarded unchanged are views into the received chunk: adjacent ones are merged
	 * and go upstream as one write (Bind+Execute+Sync of a prepared transaction: one TLS record), at
	 * the end of the drain or before any wait (a held statement must not hold back what preceded it).
	 */
	private toUpstream(b: Buffer): void {
		const last = this.upOut[this.upOut.length - 1];
		if (last && last.buffer === b.buffer && last.byteOffset + last.length === b.byteOffset) {
			this.upOut[this.upOut.length - 1] = Buffer.from(last.buffer, last.byteOffset, last.length + b.length);
		} else this.upOut.push(b);
		this.upOutBytes += b.length;
		if (this.upOutBytes >= OUT_BATCH_BYTES) this.flushUp();
	}

	private flushUp(): void {
		if (this.upOut.length === 0) return;
		const batch = this.upOut.length === 1 ? this.upOut[0]! : Buffer.concat(this.upOut, this.upOutBytes);
		this.upOut = [];
		this.upOutBytes = 0;
		if (!this.up.destroyed && !this.up.writableEnded) this.up.write(batch);
	}

	private push(u: Unit): void {
		u.sseg = this.syncSeg;
		u.copyEnds = this.copyEnds;
		if (u.k === "simple" || u.k === "sync" || u.k === "fn") u.tseq = this.sql.tick();
		this.units.push(u);
		// DDL forwarded and not yet answered: what is checked or planned behind it in a pipeline
		// (a Parse's masking pre-check runs before the server ran the DDL) must not trust the
		// catalog either (see SessionCatalog.uncommittedDdl / routinesUnseen).
		const ddl = unitStatements(u);
		if (ddl?.some(changesCatalog)) {
			this.catalogChanged();
			if (ddl?.some(mayCreateRoutines)) this.o.catalog.routinesUnseen = true;
		}
	}

	private onClientMessage(m: ClientMessage): Promise<void> | undefined {
		if (this.discardUntilSync && m.type !== "sync" && m.type !== "terminate") return undefined;
		switch (m.type) {
			case "query": {
				const go = (gate: GuardrailVerdict | undefined): Promise<void> | undefined => {
					if (!gate) return this.onQuery(m.sql, m.raw);
					this.blockSimple(m.sql, this.o.policy.analyze(m.sql), gate);
					return undefined;
				};
				const gate = this.parserSettingsGate(m.sql);
				if (gate instanceof Promise) return gate.then((g) => (this.closed ? undefined : go(g)));
				return go(gate);
			}
			case "parse": {
				const go = (gate: GuardrailVerdict | undefined): Promise<void> | undefined =>
					gate ? this.decideParse(m, this.o.policy.analyze(m.sql), gate, undefined) : this.onParse(m);
				const gate = this.parserSettingsGate(m.sql);
				if (gate instanceof Promise) return gate.then((g) => (this.closed ? undefined : go(g)));
				return go(gate);
			}
			case "bind": {
				const stmt = this.resolveStatement(m.statement);
				if (stmt instanceof Promise) return stmt.then((r) => (this.closed ? undefined : this.onBind(m, r)));
				return this.onBind(m, stmt);
			}
			case "describe": {
				if (m.target !== "P") {
					const stmt = this.resolveStatement(m.name);
					const goS = (st: StmtRef | undefined): void => {
						this.push({ k: "describe", portal: undefined, swallow: false, ...(st ? {} : { unknown: true }) });
						this.toUpstream(m.raw);
					};
					if (stmt instanceof Promise) return stmt.then((st) => (this.closed ? undefined : goS(st)));
					goS(stmt);
					return undefined;
				}
				const portal = this.resolvePortal(m.name);
				const go = (p: PortalRef | undefined): void => {
					if (p) {
						p.described = true;
						p.describedSeg = this.nameSeg;
					}
					this.push({ k: "describe", portal: p, swallow: false, ...(p ? {} : { unknown: true }) });
					this.toUpstream(m.raw);
				};
				if (portal instanceof Promise) return portal.then((p) => (this.closed ? undefined : go(p)));
				go(portal);
				return undefined;
			}
			case "execute": {
				const portal = this.resolvePortal(m.portal);
				if (portal instanceof Promise) return portal.then((p) => (this.closed ? undefined : this.onExecute(m, p)));
				this.onExecute(m, portal);
				return undefined;
			}
			case "close":
				if (m.target === "S") this.statements.delete(m.name);
				else this.portals.delete(m.name);
				this.push({ k: "close", target: m.target, name: m.name, seq: this.sql.tick() });
				this.toUpstream(m.raw);
				return undefined;
			case "sync":
				if (this.copyInAt !== undefined && this.copyInAt === this.copyEnds) {
					// the server is in copy-in mode and ignores it: no answer will come
					this.toUpstream(m.raw);
					return undefined;
				}
				this.discardUntilSync = false;
				this.push({ k: "sync" });
				this.endSegment();
				this.toUpstream(m.raw);
				return undefined;
			case "flush":
				this.toUpstream(m.raw);
				return undefined;
			case "copyData":
				this.toUpstream(m.raw);
				return undefined;
			case "copyDone":
			case "copyFail":
				this.copyEnds++;
				this.toUpstream(m.raw);
				return undefined;
			case "functionCall": {
				// A call by OID is not classified. Below admin it is refused. An admin grant keeps its
				// GuardrailRules, and code they cannot see meets every rule (gateway/policy/README.md):
				// a call by OID could be any function a rule names (FunctionCall(purge's OID) deleted
				// rows under a rule blocking purge), and it cannot be held for approval, so it is refused
				// while any SQL rule blocks or holds. Its FunctionCallResponse is one value nothing says
				// the origin of (query_to_xml by OID returned raw masked columns to an admin grant), so
				// while masking applies no grant may call one either.
				const admin = this.o.access === "admin";
				const masking = admin && this.o.live().maskingActive;
				const binding = admin
					? this.o.live().policies.guardrailRules.find((r) => r.sql !== undefined && (r.action === "block" || r.action === "requireApproval"))
					: undefined;
				if (!admin || masking || binding) {
					const rule = masking ? "mask:function-call" : "protocol:function-call";
					const why = !admin ? 'grant access "admin" is required' : `it cannot be matched against guardrail rule "${binding?.name}" of this connection (use a query)`;
					const err = new PgGatewayError(
						"statement_blocked",
						masking
							? `FunctionCall (fast-path function ${m.functionOid}) is blocked by rule "${rule}": its result cannot be masked, and masking rules apply to this session`
							: `FunctionCall (fast-path function ${m.functionOid}) is blocked by rule "${rule}": it bypasses statement classification; ${why}`,
						{ detail: `Drawbridge rule: ${rule}` },
					);
					this.emit({
						type: "statement",
						sql: `<FunctionCall oid=${m.functionOid}>`,
						statementKinds: ["FUNCTIONCALL"],
						decision: "block",
						rule,
						error: { code: err.sqlstate, message: err.message },
					});
					this.push({ k: "fn", substitute: serverMessages.error(errorFieldsOf(err)), asQuery: true });
					this.endSegment();
					this.toUpstream(clientMessages.query(BLOCKED_SQL));
					return undefined;
				}
				this.push({ k: "fn", call: { oid: m.functionOid, args: m.args, started: performance.now() } });
				this.endSegment();
				// a function called by OID is not classified: it may change names
				this.nameChangedInSync = this.syncSeg;
				this.statementsChangedInSync = this.syncSeg;
				this.toUpstream(m.raw);
				return undefined;
			}
			case "terminate":
				this.toUpstream(m.raw);
				this.close({ reason: "client-closed" });
				return undefined;
			default:
				this.fail(new PgGatewayError("protocol_violation", `unexpected ${m.type} message during a session`));
				return undefined;
		}
	}

	/**
	 * A Bind of a statement whose guardrail verdict is requireApproval is held here, not at Parse: the
	 * approvers see the statement with these parameters, and the approval covers this one portal (a
	 * portal runs once). Re-binding an approved prepared statement asks again (or reuses an approval
	 * of exactly the same statement and parameters within the rule's reuse window).
	 */
	private onBind(m: Extract<ClientMessage, { type: "bind" }>, stmt: StmtRef | undefined): Promise<void> | undefined {
		const rules = this.o.live().policies.guardrailRules;
		if (stmt?.parseVerdict && stmt.parseRules !== rules) {
			// Rules apply to open sessions at once (a GuardrailPolicy merged meanwhile): a statement
			// parsed before them is decided again, or a cached prepared statement (pgx, JDBC) re-bound
			// ran past a new block or requireApproval rule.
			const pending = this.guardAsync(stmt.analysis);
			if (pending) {
				return pending.then((v) => {
					if (this.closed) return;
					stmt.parseVerdict = v;
					stmt.parseRules = rules;
					return this.onBind(m, stmt);
				});
			}
			stmt.parseVerdict = this.guardParsed(stmt.analysis);
			stmt.parseRules = rules;
		}
		const live = this.o.live();
		if (stmt && live.maskingActive && stmt.maskedUnder !== live && stmt.parseVerdict?.action !== "block") {
			// Masking checks are made under the policy in force: one parsed under another (none, before a
			// MaskingPolicy was merged) is checked again before it runs.
			const pre = this.maskPrecheck(stmt.analysis);
			const done = (r: { block?: GuardrailVerdict; copyDetector?: TextDetector }): void => {
				stmt.maskedUnder = live;
				stmt.copyDetector = r.copyDetector;
				if (r.block) {
					stmt.parseVerdict = r.block;
					stmt.parseRules = rules;
				}
			};
			if (pre) {
				return pre.then((r) => {
					if (this.closed) return;
					done(r);
					return this.onBind(m, stmt);
				});
			}
			done({});
		}
		if (stmt?.parseVerdict?.action === "block") {
			this.blockBind(m, stmt, stmt.parseVerdict);
			return undefined;
		}
		if (!stmt && this.definedUnderOtherRules(m.statement, rules)) {
			// What the name holds is not known here (an Execute earlier in this segment ran SQL PREPARE
			// or DEALLOCATE), and it was defined under other rules than these: a statement parsed
			// before a block rule was merged ran past it (`PREPARE z AS SELECT 1` executed, then Bind
			// of a DELETE parsed before the rule, in one segment).
			this.blockBind(m, undefined, {
				action: "block",
				rule: "guardrails:unknown-statement",
				sqlstate: "42501",
				message: `prepared statement ${JSON.stringify(m.statement)} is not known to the gateway at this point and the guardrail rules changed since it was defined: Sync, or Parse it again, before binding it`,
			});
			return undefined;
		}
		if (!rules.some((r) => r.action === "requireApproval")) {
			this.forwardBind(m, stmt);
			return undefined;
		}
		if (!stmt) {
			// What the name holds upstream is not known here (redefined earlier in this segment, or
			// never defined): it may be a statement that needs approval, so it does not run unseen.
			this.blockBind(m, undefined, {
				action: "block",
				rule: "approval:unknown-statement",
				sqlstate: "42501",
				message: `prepared statement ${JSON.stringify(m.statement)} is not known to the gateway at this point and guardrail rules require approvals on this connection: Sync, or Parse it again, before binding it`,
			});
			return undefined;
		}
		// A statement holding SQL EXECUTE/FETCH is judged on what its name holds now, not at Parse:
		// `EXECUTE s` parsed while s was a SELECT, then `PREPARE s AS DELETE ...` (approved as a
		// PREPARE), and the re-bound statement (node-postgres) ran the DELETE without the approval SQL
		// `EXECUTE s` asks for.
		const current = stmt.unresolved ? this.resolvedNow(stmt, stmt.unresolved) : undefined;
		const decide = (verdict: GuardrailVerdict): Promise<void> | undefined => {
			if (verdict.action === "block") {
				this.blockBind(m, stmt, verdict);
				return undefined;
			}
			if (verdict.action !== "requireApproval") {
				this.forwardBind(m, stmt);
				return undefined;
			}
			return this.hold(stmt.sql, (current ?? stmt).analysis, verdict, this.paramsForApproval(m)).then((r) => {
				if (this.closed) return;
				if (r.ok) this.forwardBind(m, stmt, r.id);
				else this.blockBind(m, stmt, r.verdict, r.decision, r.id);
			});
		};
		if (current) {
			const pending = this.guardAsync(current.analysis);
			if (pending) return pending.then((v) => (this.closed ? undefined : decide(v)));
			return decide(this.guard(current.analysis));
		}
		return decide(stmt.parseVerdict ?? this.guard(stmt.analysis));
	}

	/**
	 * The parameters of a held Bind as approvers see them (text values masked like recordings, binary
	 * values by size) and a keyed digest of their exact bytes and formats, so an approval (and its
	 * reuse) is for exactly these values even where the shown text is masked.
	 */
	private paramsForApproval(m: Extract<ClientMessage, { type: "bind" }>): string {
		const mac = createHmac("sha256", this.o.live().maskingKey);
		const shown = m.params.map((p, i) => {
			const fmt = m.paramFormats.length === 1 ? m.paramFormats[0] : (m.paramFormats[i] ?? 0);
			mac.update(`${i}:${fmt}:${p === null ? -1 : p.length}:`);
			if (p === null) return `$${i + 1} = NULL`;
			mac.update(p);
			if (fmt === 1) return `$${i + 1} = <binary ${p.length} bytes>`;
			const text = this.recordText(Buffer.from(p).toString("utf8"));
			const cut = text.length > 200 ? text.slice(0, 200) : text;
			// one line per command part: a value cannot fake another line or reorder what approvers read
			const shownText = cut.replaceAll("'", "''").replace(/[\u0000-\u001f\u007f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`);
			// A cut value says so outside its quotes: `...` inside them could be the value's own text.
			return `$${i + 1} = '${shownText}'${cut === text ? "" : ` (only the first 200 of ${text.length} characters shown)`}`;
		});
		if (shown.length === 0) return "";
		return `\n-- parameters: ${shown.join(", ")} (hmac-sha256 ${mac.digest("hex")})`;
	}

	private blockBind(
		m: Extract<ClientMessage, { type: "bind" }>,
		stmt: StmtRef | undefined,
		v: GuardrailVerdict,
		decision: Decision = "block",
		approvalId?: string,
	): void {
		const err = verdictError(v);
		this.emit({
			type: "statement",
			sql: this.recordText(stmt?.sql ?? `<unknown statement "${m.statement}">`),
			statementKinds: stmt?.info?.kinds ?? [],
			decision,
			...(v.rule ? { rule: v.rule } : {}),
			...(approvalId ? { approvalId } : {}),
			error: { code: err.sqlstate, message: err.message },
		});
		const portal: PortalRef = {
			name: m.portal,
			stmt,
			params: [],
			paramFormats: [],
			resultFormats: [],
			described: false,
			describedSeg: -1,
			plan: undefined,
			seg: this.nameSeg,
		};
		this.push({ k: "bind", portal, substitute: serverMessages.error(errorFieldsOf(err)) });
		// A named Parse of text that never parses fails upstream without touching any statement or
		// portal (a named statement is stored only after parsing), and the server skips to Sync.
		this.toUpstream(clientMessages.parse(BLOCKED_STATEMENT_NAME, BLOCKED_SQL));
		this.discardUntilSync = true;
	}

	private forwardBind(m: Extract<ClientMessage, { type: "bind" }>, stmt: StmtRef | undefined, approvalId?: string): void {
		const portal: PortalRef = {
			name: m.portal,
			stmt,
			params: m.params.map((p) => (p ? Buffer.from(p) : null)),
			paramFormats: m.paramFormats,
			resultFormats: m.resultFormats,
			described: false,
			describedSeg: -1,
			plan: undefined,
			seg: this.nameSeg,
			...(approvalId ? { approvalId } : {}),
		};
		this.portals.set(m.portal, portal);
		// SQL FETCH/MOVE/CLOSE may name a protocol portal (one namespace)
		const seq = m.portal === "" ? undefined : this.sql.defineProtocol("cursor", m.portal, singleStatement(stmt));
		this.push({ k: "bind", portal, ...(seq !== undefined ? { seq } : {}) });
		this.toUpstream(m.raw);
		if (bindMayChangeSettings(m, stmt)) this.settingsChangedInSync = this.syncSeg;
	}

	private onExecute(m: Extract<ClientMessage, { type: "execute" }>, known: PortalRef | undefined): void {
		// An unknown portal (a SQL cursor, a name whose meaning is uncertain) is masked entirely.
		const portal: PortalRef = known ?? {
			name: m.portal,
			stmt: undefined,
			params: [],
			paramFormats: [],
			resultFormats: [],
			described: false,
			describedSeg: -1,
			plan: undefined,
			seg: this.nameSeg,
		};
		// SQL EXECUTE and FETCH in a protocol statement run what their name holds when the portal first
		// runs (the server fills the portal then), not what it held at Parse, nor when the portal was
		// described: `DEALLOCATE s; PREPARE s AS SELECT phone || '' ...` between a Parse (or Describe)
		// of `EXECUTE s` and the Execute showed raw phones under the plan of the old s. Resolved again
		// now, and described again now, so the plan is made from what runs; after the first Execute
		// the rows are fixed, and so is the plan.
		let rerun = false;
		if (!portal.ran && portal.stmt?.unresolved) {
			portal.stmt = this.resolvedNow(portal.stmt, portal.stmt.unresolved);
			rerun = true;
		}
		portal.ran = true;
		// A Describe forwarded in this segment answers before this Execute (or both are skipped); one
		// from an earlier segment that never answered (skipped after an error) gives no plan.
		const pendingDescribe = !rerun && portal.described && portal.describedSeg === this.nameSeg;
		const stale = portal.plan !== undefined && portal.plannedUnder !== this.o.live();
		if (this.o.live().maskingActive && (portal.plan === undefined || rerun || stale) && !pendingDescribe) {
			// We must know the columns to mask DataRows: ask the upstream ourselves, answer swallowed.
			portal.described = true;
			portal.describedSeg = this.nameSeg;
			this.push({ k: "describe", portal, swallow: true });
			this.toUpstream(clientMessages.describe("P", m.portal));
		}
		// PREPARE/DECLARE run at Execute: they add SQL-level candidates now, narrowed at CommandComplete.
		const changes = nameEffectsOf(portal.stmt);
		const seq = changes.definesSqlNames ? this.sql.forwarded(portal.stmt!.analysis) : undefined;
		this.push({ k: "execute", portal, rows: 0, started: performance.now(), ...(seq !== undefined ? { seq } : {}) });
		this.noteUnmasked(portal.stmt?.analysis.ok ? portal.stmt.analysis.statements : [undefined]);
		this.toUpstream(m.raw);
		if (mayChangeSettings(portal.stmt, false)) this.settingsChangedInSync = this.syncSeg;
		else if (mayChangeSettings(portal.stmt, true)) this.castsChangeInSync = this.syncSeg;
		if (changes.statements || changes.portals) {
			this.bumpNameSeg();
			this.nameChangedInSync = this.syncSeg;
			if (changes.statements) this.statementsChangedInSync = this.syncSeg;
		}
	}

	/** A statement holding SQL EXECUTE/FETCH, resolved through the session's names as they are now. */
	private resolvedNow(stmt: StmtRef, unresolved: SqlAnalysis): StmtRef {
		const analysis = this.sql.resolve(unresolved);
		const out: StmtRef = { ...stmt, analysis, info: analysis.ok ? analysis.statements[0] : undefined };
		// worked out from the old analysis (and a resolved statement is never cached: see RowDescription)
		delete out.planCache;
		delete out.nameEffects;
		delete out.mayChangeSettings;
		delete out.mayChangeSettingsCasts;
		delete out.unresolved;
		return out;
	}

	/**
	 * Parser settings (gateway/postgres/README.md, "Parser differentials"). A text holding a backslash
	 * or a non-ASCII byte reads differently when standard_conforming_strings is off or client_encoding
	 * is a client-only encoding. The policy refuses statements that set them, and the server's
	 * ParameterStatus report of such a value ends the session; but the report comes with the
	 * ReadyForQuery of the statement that changed it (a function that already existed), and a
	 * pipelining client has sent its next text by then: `SELECT app_set('standard_conforming_strings',
	 * 'off')` and `SELECT 'a\' , ' ; DELETE FROM accounts ; -- '` back to back deleted the accounts.
	 * So such a text first waits until every earlier segment is answered (their reports read); within
	 * its own segment the server answers only at Sync, so after an Execute there that may change
	 * settings it is refused. Texts of ASCII without a backslash read the same under any setting.
	 */
	private parserSettingsGate(sql: string): GuardrailVerdict | Promise<GuardrailVerdict | undefined> | undefined {
		if (!SETTINGS_SENSITIVE.test(sql)) return undefined;
		if (this.settingsChangedInSync === this.syncSeg) return PARSER_SETTINGS_BLOCK;
		const seg = this.syncSeg;
		// An Execute that runs only built-in code unless the database has casts with user functions
		// (red-team round 10): ask the catalog (cached) whether it has any.
		if (this.castsChangeInSync === seg) {
			return this.o.catalog.hasFunctionCasts().then(
				(casts) => (casts ? PARSER_SETTINGS_BLOCK : this.answeredBefore(seg)?.then(() => undefined)),
				() => PARSER_SETTINGS_BLOCK,
			);
		}
		return this.answeredBefore(seg)?.then(() => undefined);
	}

	/** A sync point was forwarded: the server answers everything before it as a whole. */
	private endSegment(): void {
		this.syncSeg++;
		this.bumpNameSeg();
	}

	/**
	 * Names defined before now are no longer certain. The optimistic maps hold only what the current
	 * segment defined (older entries are never read): emptied, so unique names in autocommit (or a
	 * Bind's parameters) do not accumulate for the session's lifetime.
	 */
	private bumpNameSeg(): void {
		this.nameSeg++;
		if (this.statements.size > 0) this.statements.clear();
		if (this.portals.size > 0) this.portals.clear();
	}

	/** Resolves once every unit forwarded before segment `seg` is answered (see "Names"). */
	private answeredBefore(seg: number): Promise<void> | undefined {
		const h = this.head();
		if (!h || (h.sseg ?? 0) >= seg) return undefined;
		return new Promise((resolve) => this.answerWaiters.push({ seg, resolve }));
	}

	private wakeAnswerWaiters(): void {
		if (this.answerWaiters.length === 0) return;
		const h = this.closed ? undefined : this.head();
		const left: { seg: number; resolve: () => void }[] = [];
		for (const w of this.answerWaiters) {
			if (!h || (h.sseg ?? 0) >= w.seg) w.resolve();
			else left.push(w);
		}
		this.answerWaiters = left;
	}

	/**
	 * What a name means upstream (see "Names"): the current segment's own definition, else nothing
	 * known when a name-changing statement ran earlier in this segment, else the confirmed view once
	 * earlier segments are answered.
	 */
	private resolveName<T extends { seg: number }>(
		optimistic: Map<string, T>,
		confirmed: Map<string, T>,
		name: string,
		changedInSync: number,
	): { now: T | undefined; certain: boolean; unknown?: true } | Promise<T | undefined> {
		const own = optimistic.get(name);
		if (own && own.seg === this.nameSeg) return { now: own, certain: true };
		if (changedInSync === this.syncSeg) return { now: undefined, certain: false, unknown: true };
		const wait = this.answeredBefore(this.syncSeg);
		if (wait) return wait.then(() => confirmed.get(name));
		return { now: confirmed.get(name), certain: false };
	}

	private resolvePortal(name: string): PortalRef | undefined | Promise<PortalRef | undefined> {
		const r = this.resolveName(this.portals, this.confirmedPortals, name, this.nameChangedInSync);
		return r instanceof Promise ? r : r.now;
	}

	/**
	 * A Bind's statement. A statement SQL `PREPARE`d under the same name (one namespace in
	 * PostgreSQL) was classified and decided at PREPARE; its bodies are added to whatever the
	 * protocol view holds unless the name was Parsed in this very segment.
	 */
	private resolveStatement(name: string): StmtRef | undefined | Promise<StmtRef | undefined> {
		const r = this.resolveName(this.statements, this.confirmedStatements, name, this.statementsChangedInSync);
		if (r instanceof Promise) return r.then((s) => this.withSqlPrepared(name, s));
		// Unknown (a name-changing statement ran earlier in this segment): the SQL-level bodies alone
		// are not what the name holds (a protocol statement may), so nothing is known.
		if (r.unknown) return undefined;
		return r.certain ? r.now : this.withSqlPrepared(name, r.now);
	}

	private withSqlPrepared(name: string, protocol: StmtRef | undefined): StmtRef | undefined {
		if (name === "") return protocol;
		// a definition the gateway could not classify may hold the name
		if (this.sql.preparedUnknown(name)) return undefined;
		// the protocol statement itself is a candidate too (one namespace): not a second body
		const bodies = this.sql.preparedStatement(name).filter((b) => b !== protocol?.info);
		if (bodies.length === 0) return protocol;
		const all = [...(protocol?.analysis.ok ? protocol.analysis.statements : []), ...bodies];
		const out: StmtRef = {
			name,
			sql: [...(protocol ? [protocol.sql] : []), ...bodies.map((b) => b.text)].join("; "),
			// several candidate bodies: masking takes the union of their outputs
			analysis: protocol && !protocol.analysis.ok ? protocol.analysis : { ok: true, statements: all },
			info: protocol?.info ?? bodies[0],
			decision: protocol?.decision ?? "allow",
			rule: protocol?.rule,
			approvalId: protocol?.approvalId,
			copyDetector: protocol?.copyDetector,
			seg: this.nameSeg,
		};
		// a candidate holding EXECUTE/FETCH (an earlier protocol Parse of the name) is resolved again at Execute too
		if (out.analysis.ok && all.some((x) => x.uses)) out.unresolved = { ok: true, statements: all.map((x) => (x.uses ? this.unresolvedOf(x) : x)) };
		return out;
	}

	/** A statement as classified before its EXECUTE/FETCH name was resolved. */
	private unresolvedOf(x: SqlStatementInfo): SqlStatementInfo {
		const a = this.o.policy.analyze(x.text);
		return a.ok && a.statements.length === 1 ? a.statements[0]! : { ...x, uses: { type: x.uses!.type, name: x.uses!.name } };
	}

	private guard(analysis: SqlAnalysis): GuardrailVerdict {
		return this.o.policy.evaluate({
			analysis,
			access: this.o.access,
			rules: this.o.live().policies.guardrailRules,
			grant: this.grant.key,
		});
	}

	/**
	 * guard() for a statement as parsed (not expanded through views): a single statement's verdict
	 * is remembered by its text or literal-free template while the rules are the same object (the
	 * session's grant and access never change). Statements resolved through session state (EXECUTE, FETCH) are always evaluated.
	 */
	private guardParsed(analysis: SqlAnalysis): GuardrailVerdict {
		const rules = this.o.live().policies.guardrailRules;
		const one = analysis.ok && analysis.statements.length === 1 ? analysis.statements[0]! : undefined;
		const key = one && !one.uses ? this.o.policy.statementKey(one) : undefined;
		if (key !== undefined) {
			const hit = this.verdicts.get(key);
			if (hit && hit.rules === rules) return hit.verdict;
		}
		const verdict = this.guard(analysis);
		if (key !== undefined) {
			if (this.verdicts.size >= SIMPLE_PLANS_MAX) this.verdicts.clear();
			this.verdicts.set(key, { rules, verdict });
		}
		return verdict;
	}

	/**
	 * GuardrailRules naming tables must also catch a statement that reaches them through a view
	 * (`DELETE FROM customer_contacts` when the rule names `customers`): the guard then decides on
	 * the statement's tables expanded to base tables through the catalog, and rules naming functions
	 * on the functions stored code runs for it. Only when some rule names tables or functions; a
	 * catalog failure blocks (fail closed).
	 */
	private guardAsync(analysis: SqlAnalysis): Promise<GuardrailVerdict> | undefined {
		if (!analysis.ok) return undefined;
		const rules = this.o.live().policies.guardrailRules;
		const tableRules = rules.some((r) => (r.sql?.tables?.length ?? 0) > 0);
		// Rules on functions and tables follow the stored code a statement runs (a view, a written
		// table's defaults, CHECKs and triggers, a called routine's body) through the catalog.
		const stored = (tableRules || rules.some((r) => (r.sql?.functions?.length ?? 0) > 0)) && analysis.statements.some((s) => s.tables.length > 0 || s.functions.length > 0);
		// a schema rename names no table but hands the schema's relations to new names
		// and a write bound on a sequence (`SELECT setval('accounts_id_seq', 1)`) reaches its tables
		const tables = tableRules && analysis.statements.some((s) => s.tables.length > 0 || (s.schemaEscapes?.length ?? 0) > 0 || (s.binds?.length ?? 0) > 0);
		if (!stored && !tables) return undefined;
		return this.o.policy.expandTables(analysis, this.o.catalog, { stored }).then(
			(expanded) => this.guard(expanded),
			(e: unknown): GuardrailVerdict => ({
				action: "block",
				rule: "catalog",
				sqlstate: "42501",
				message: `could not resolve the tables behind this statement for the guardrail rules (${(e as Error)?.message ?? String(e)})`,
			}),
		);
	}

	private onQuery(sql: string, raw: Buffer): Promise<void> | undefined {
		const analysis = this.sql.resolve(this.o.policy.analyze(sql));
		const pending = this.guardAsync(analysis);
		if (pending) return pending.then((verdict) => (this.closed ? undefined : this.onQueryGuarded(sql, raw, analysis, verdict)));
		return this.onQueryGuarded(sql, raw, analysis, this.guardParsed(analysis));
	}

	private onQueryGuarded(sql: string, raw: Buffer, analysis: SqlAnalysis, verdict: GuardrailVerdict): Promise<void> | undefined {
		if (verdict.action === "block") {
			this.blockSimple(sql, analysis, verdict);
			return undefined;
		}
		const pre = this.maskPrecheck(analysis);
		if (!pre) return this.decideQuery(sql, raw, analysis, verdict, undefined);
		return pre.then((r) => {
			if (this.closed) return;
			if (r.block) this.blockSimple(sql, analysis, r.block);
			else return this.decideQuery(sql, raw, analysis, verdict, r.copyDetector);
		});
	}

	private decideQuery(
		sql: string,
		raw: Buffer,
		analysis: SqlAnalysis,
		verdict: GuardrailVerdict,
		copyDetector: TextDetector | undefined,
	): Promise<void> | undefined {
		const statements = analysis.ok ? analysis.statements : [];
		const forward = (decision: Decision, approvalId?: string) => {
			for (const s of statements) if (s.prepared) this.noteDefinition(s.prepared.name, this.o.live().policies.guardrailRules);
			const seq = this.sql.forwarded(analysis);
			this.noteUnmasked(analysis.ok ? statements : [undefined]);
			this.push({
				seq,
				k: "simple",
				statements,
				idx: 0,
				plan: null,
				rows: 0,
				started: performance.now(),
				decision,
				rule: verdict.rule,
				approvalId,
				copyDetector,
			});
			this.endSegment();
			this.toUpstream(raw);
		};
		if (verdict.action === "requireApproval") {
			return this.hold(sql, analysis, verdict).then((r) => {
				if (this.closed) return;
				if (r.ok) forward("approved", r.id);
				else this.blockSimple(sql, analysis, r.verdict, r.decision, r.id);
			});
		}
		forward(verdict.action === "audit" ? "audit" : "allow");
		return undefined;
	}

	/**
	 * Masking checks that must happen before a statement runs (only when masking applies and the
	 * statement is not a plain read): writes that would copy masked data elsewhere, and COPY TO
	 * STDOUT of masked columns (COPY rows are not masked per column: refused; detectors still apply).
	 */
	private maskPrecheck(analysis: SqlAnalysis): Promise<{ block?: GuardrailVerdict; copyDetector?: TextDetector }> | undefined {
		if (!this.o.live().maskingActive || !analysis.ok) return undefined;
		// Every COPY whose rows come to the client, also one whose query writes: `COPY (UPDATE customers
		// SET name = name RETURNING phone) TO STDOUT` (or a writable CTE before `SELECT phone`) was not
		// read-only, so it was never planned, and its rows went out raw, past the detectors too.
		const copies = analysis.statements.filter((s) => s.kind === "COPY" && copiesToClient(s));
		// Plain SELECTs without function calls cannot move masked data elsewhere; everything else
		// (writes, SET, SELECT set_config(...), ...) asks the policy first.
		const writes = analysis.statements.some((s) => !s.readOnly || s.kind !== "SELECT" || s.functions.length > 0);
		if (copies.length === 0 && !writes) return undefined;
		const ctx = this.maskContext();
		return (async () => {
			const blocked = writes ? await this.o.policy.checkMaskedWrites(analysis, ctx) : undefined;
			if (blocked) return { block: { action: "block", rule: blocked.rule, sqlstate: "42501", message: blocked.message } };
			let copyDetector: TextDetector | undefined;
			for (const c of copies) {
				const plan = await this.o.policy.planMasks({ ok: true, statements: [c] }, [], ctx);
				if (plan.block) return { block: { action: "block", rule: plan.block.rule, sqlstate: "42501", message: plan.block.message } };
				if (plan.columns.length > 0) {
					return {
						block: {
							action: "block",
							rule: "masking:copy-out",
							sqlstate: "42501",
							message: `COPY ... TO STDOUT of masked data (${plan.columns.flatMap((m) => m.sources).join(", ")}) is blocked: use SELECT, whose results are masked`,
						},
					};
				}
				copyDetector ??= this.o.policy.compileDetectorRules(plan.detectors, this.o.live().maskingKey);
			}
			return copyDetector ? { copyDetector } : {};
		})();
	}

	private blockSimple(sql: string, analysis: SqlAnalysis, verdict: GuardrailVerdict, decision: Decision = "block", approvalId?: string): void {
		const err = verdictError(verdict);
		this.emit({
			type: "statement",
			sql: this.recordText(sql),
			statementKinds: analysis.ok ? analysis.statements.flatMap((s) => s.kinds) : [],
			decision,
			...(verdict.rule ? { rule: verdict.rule } : {}),
			...(approvalId ? { approvalId } : {}),
			error: { code: err.sqlstate, message: err.message },
		});
		this.push({
			k: "simple",
			statements: [],
			idx: 0,
			plan: null,
			rows: 0,
			started: performance.now(),
			decision,
			rule: verdict.rule,
			approvalId,
			substitute: serverMessages.error(errorFieldsOf(err)),
		});
		this.endSegment();
		this.toUpstream(clientMessages.query(BLOCKED_SQL));
	}

	private onParse(m: Extract<ClientMessage, { type: "parse" }>): Promise<void> | undefined {
		const analysis = this.sql.resolve(this.o.policy.analyze(m.sql));
		const pending = this.guardAsync(analysis);
		if (pending) return pending.then((verdict) => (this.closed ? undefined : this.onParseGuarded(m, analysis, verdict)));
		return this.onParseGuarded(m, analysis, this.guardParsed(analysis));
	}

	private onParseGuarded(m: Extract<ClientMessage, { type: "parse" }>, analysis: SqlAnalysis, verdict: GuardrailVerdict): Promise<void> | undefined {
		const live = this.o.live();
		if (verdict.action !== "block") {
			const pre = this.maskPrecheck(analysis);
			if (pre) {
				return pre.then((r) => {
					if (this.closed) return;
					return this.decideParse(m, analysis, r.block ?? verdict, r.copyDetector, live);
				});
			}
			return this.decideParse(m, analysis, verdict, undefined, live);
		}
		return this.decideParse(m, analysis, verdict, undefined);
	}

	private decideParse(
		m: Extract<ClientMessage, { type: "parse" }>,
		analysis: SqlAnalysis,
		verdict: GuardrailVerdict,
		copyDetector: TextDetector | undefined,
		/** The policy maskPrecheck ran under (none: it did not run). */
		maskedUnder?: unknown,
	): Promise<void> | undefined {
		const blocked = verdict.action === "block" ? verdict : undefined;
		const info = analysis.ok ? analysis.statements[0] : undefined;
		const stmt: StmtRef = {
			name: m.name,
			sql: m.sql,
			analysis,
			info,
			decision: verdict.action === "audit" ? "audit" : "allow",
			rule: verdict.rule,
			approvalId: undefined,
			copyDetector,
			...(maskedUnder !== undefined ? { maskedUnder } : {}),
			seg: this.nameSeg,
			paramTypes: m.paramTypes,
		};
		const block = (v: GuardrailVerdict, decision: Decision = "block", approvalId?: string) => {
			const err = verdictError(v);
			this.emit({
				type: "statement",
				sql: this.recordText(m.sql),
				statementKinds: info?.kinds ?? [],
				decision,
				...(v.rule ? { rule: v.rule } : {}),
				...(approvalId ? { approvalId } : {}),
				error: { code: err.sqlstate, message: err.message },
			});
			this.push({ k: "parse", stmt, previous: undefined, substitute: serverMessages.error(errorFieldsOf(err)) });
			this.toUpstream(clientMessages.parse(m.name, BLOCKED_SQL));
			// As PostgreSQL does after an error in extended query mode: skip to Sync.
			this.discardUntilSync = true;
		};
		if (blocked) {
			block(blocked);
			return undefined;
		}
		const forward = () => {
			const previous = this.statements.get(m.name);
			this.statements.set(m.name, stmt);
			// SQL EXECUTE may name a protocol statement (one namespace)
			const seq = m.name === "" ? undefined : this.sql.defineProtocol("prepared", m.name, singleStatement(stmt));
			this.push({ k: "parse", stmt, previous, ...(seq !== undefined ? { seq } : {}) });
			this.toUpstream(m.raw);
		};
		// Parsing runs nothing: a statement that needs approval is held at each Bind, with its parameters.
		stmt.parseVerdict = verdict;
		if (analysis.ok && analysis.statements.some((s) => s.uses)) stmt.unresolved = this.o.policy.analyze(m.sql);
		stmt.parseRules = this.o.live().policies.guardrailRules;
		this.noteDefinition(m.name, stmt.parseRules);
		if (analysis.ok) for (const s of analysis.statements) if (s.prepared) this.noteDefinition(s.prepared.name, stmt.parseRules);
		forward();
		return undefined;
	}

	/**
	 * Records the guardrail rules a statement name was defined under (Parse, SQL PREPARE). A Bind
	 * whose statement the gateway cannot tell (see onBind) is safe only if every definition of the
	 * name was decided under the rules in force now.
	 */
	private noteDefinition(name: string, rules: readonly GuardrailRule[]): void {
		const had = this.definedUnder.get(name);
		if (had === rules || had === "several") return;
		if (had === undefined) {
			if (this.definedUnder.size >= MAX_DEFINED_NAMES) {
				this.definedUnder.clear();
				this.definitionsForgotten = true;
			}
			this.definedUnder.set(name, rules);
		} else this.definedUnder.set(name, "several");
	}

	/** Some definition of `name` may have been decided under other guardrail rules than `rules`. */
	private definedUnderOtherRules(name: string, rules: readonly GuardrailRule[]): boolean {
		const had = this.definedUnder.get(name);
		return had === undefined ? this.definitionsForgotten : had !== rules;
	}

	/** Hold a statement for approval. Resolves with the outcome; client disconnect cancels. */
	private async hold(
		sql: string,
		analysis: SqlAnalysis,
		verdict: GuardrailVerdict,
		/** Appended to the command approvers see (a Bind's parameters). */
		suffix = "",
	): Promise<{ ok: true; id: string } | { ok: false; verdict: GuardrailVerdict; decision: Decision; id?: string }> {
		const statements = analysis.ok ? analysis.statements : [];
		const rulesAtHold = this.o.live().policies.guardrailRules;
		const rule = verdict.rule ?? "guardrail";
		const approvals = this.o.approvals;
		if (!approvals) {
			return {
				ok: false,
				decision: "denied",
				verdict: { ...verdict, action: "block", message: `${verdict.message ?? "statement requires approval"}; no approval service is configured on this gateway` },
			};
		}
		const timeoutSeconds = verdict.approval?.timeoutSeconds ?? this.o.approvalTimeoutSec;
		// `EXECUTE name(...)` says nothing of what runs: the body the name holds in this session is
		// part of the command, so approvers see it and a reuse window never matches another body.
		let exact = sql;
		for (const s of statements) {
			if (s.uses?.type === "prepared") exact += `\n-- ${s.uses.name}: ${s.uses.statement?.text ?? "(unknown body)"}`;
		}
		// Approvers (and recordings) see the text with content detectors applied, and different
		// statements can read the same once masked (`... WHERE email = '[masked]'` for any address):
		// then a keyed digest of the exact text binds the approval, and its reuse, to this statement.
		const shown = this.recordText(exact);
		const command =
			(shown === exact ? shown : `${shown}\n-- statement hmac-sha256 ${createHmac("sha256", this.o.live().maskingKey).update(exact).digest("hex")}`) + suffix;
		let record: ApprovalRequestRecord;
		try {
			record = await approvals.request({
				sessionId: this.id,
				protocol: "postgres",
				connection: this.o.connection.name,
				grant: this.grant.key,
				requester: requesterOf(this.identity, this.grant),
				command,
				rule,
				approvers: verdict.approval?.approvers ?? this.grant.approvers.subjects,
				minApprovals: verdict.approval?.minApprovals ?? this.grant.approvers.minApprovals,
				timeoutSeconds,
				...(verdict.approval?.reuseWindowSeconds !== undefined ? { reuseWindowSeconds: verdict.approval.reuseWindowSeconds } : {}),
			});
		} catch (e) {
			return {
				ok: false,
				decision: "denied",
				verdict: { ...verdict, action: "block", message: `approval request failed: ${(e as Error).message}` },
			};
		}
		this.emit({ type: "approval", approvalId: record.id, phase: record.phase, rule, command });
		if (record.phase !== "Approved") {
			const approvers = (verdict.approval?.approvers ?? this.grant.approvers.subjects).map(describeSubject).join(", ");
			if (!this.closed) {
				this.writeClient(
					serverMessages.notice({
						S: "NOTICE",
						V: "NOTICE",
						C: "01000",
						M: `approval ${record.id} pending: ${statements[0]?.kind ?? "statement"} requires approval by guardrail rule "${rule}"`,
						D: `approvers: ${approvers || "(grant approvers)"}; needed: ${record.minApprovals}; expires at ${record.expiresAt}`,
						H: record.approveHint,
					}),
				);
			}
			this.pendingApprovals.add(record.id);
			try {
				record = await waitWithTimeout(approvals, record.id, this.abort.signal, timeoutSeconds * 1000 + 1000);
			} catch (e) {
				return {
					ok: false,
					decision: "expired",
					id: record.id,
					verdict: { ...verdict, action: "block", message: `approval ${record.id} was not decided: ${(e as Error).message}` },
				};
			} finally {
				this.pendingApprovals.delete(record.id);
			}
			this.emit({
				type: "approval",
				approvalId: record.id,
				phase: record.phase,
				rule,
				command,
				decidedBy: record.decisions.map((d) => d.by),
			});
		}
		if (record.phase === "Approved") {
			// A rule merged while the statement waited that now blocks it wins over the approval: the
			// approvers decided under the old rules, and a block is never approved away.
			if (this.o.live().policies.guardrailRules !== rulesAtHold) {
				const now = await (this.guardAsync(analysis) ?? this.guardParsed(analysis));
				if (now.action === "block") return { ok: false, decision: "block", id: record.id, verdict: now };
			}
			return { ok: true, id: record.id };
		}
		const decision: Decision = record.phase === "Denied" ? "denied" : "expired";
		return {
			ok: false,
			decision,
			id: record.id,
			verdict: {
				...verdict,
				action: "block",
				message: `approval ${record.id} ${record.phase === "Denied" ? "was denied" : `ended ${record.phase.toLowerCase()}`}: statement not run (guardrail rule "${rule}")`,
			},
		};
	}

	// ---------------------------------------------------------------------------------------------
	// upstream → client

	private kickServer(): void {
		if (this.serverBusy || this.closed) return;
		this.serverBusy = true;
		// One write (one TLS record batch) per upstream chunk, even across a mask-plan wait.
		this.client.cork();
		let wait: Promise<void> | undefined;
		try {
			wait = this.drainServer();
		} catch (e) {
			this.fail(e);
		}
		if (wait) wait.catch((e) => this.fail(e)).finally(() => this.serverIdle());
		else this.serverIdle();
	}

	private serverIdle(): void {
		this.flushOut();
		if (this.client.writableCorked) this.client.uncork();
		this.serverBusy = false;
		if (this.closed) return;
		if (this.upstreamGone) {
			let got = false;
			for (let c = this.up.read() as Buffer | null; c !== null; c = this.up.read() as Buffer | null) {
				this.sparser.push(c);
				got = true;
			}
			if (got) this.kickServer();
			else this.upstreamClosed();
			return;
		}
		if (this.client.writableNeedDrain) {
			this.up.pause();
			this.client.once("drain", () => {
				if (!this.closed) {
					this.up.resume();
					this.kickServer();
				}
			});
		} else if (this.up.isPaused()) this.up.resume();
	}

	private drainServer(): Promise<void> | undefined {
		for (;;) {
			if (this.closed) return undefined;
			const u = this.head();
			if (u?.k === "simple" || u?.k === "execute") {
				const plan = u.k === "simple" ? u.plan : u.portal.plan;
				// An undescribed portal under masking is refused frame by frame (onServerFrame).
				if ((plan !== undefined || !this.o.live().maskingActive) && this.dataRows(u, plan)) continue;
			}
			const f = this.sparser.next();
			if (!f) return undefined;
			const wait = this.onServerFrame(f);
			if (wait) return wait.then(() => this.drainServer());
		}
	}

	/** Whether an Execute of `portal` was forwarded and is not answered yet. */
	private executeQueued(portal: PortalRef): boolean {
		for (let i = this.unitHead; i < this.units.length; i++) {
			const x = this.units[i];
			if (x?.k === "execute" && x.portal === portal) return true;
		}
		return false;
	}

	private head(): Unit | undefined {
		return this.units[this.unitHead];
	}

	private pop(): void {
		this.units[this.unitHead] = undefined as unknown as Unit;
		this.unitHead++;
		if (this.unitHead > 1024 && this.unitHead * 2 > this.units.length) {
			this.units.splice(0, this.unitHead);
			this.unitHead = 0;
		}
		this.wakeAnswerWaiters();
	}

	private desync(what: string): never {
		throw new PgGatewayError("upstream_protocol", `gateway lost track of the protocol: unexpected ${what}`);
	}

	/**
	 * Output toward the client is batched per upstream chunk: views into the parser's buffers that
	 * are adjacent in memory are merged (an unmasked result is forwarded without copying), and the
	 * batch is written once (`flushOut`), or earlier when it grows past OUT_BATCH_BYTES.
	 */
	private out: Buffer[] = [];
	private outBytes = 0;
	/** The open run: bytes [runStart, runEnd) of runBuf's memory, not yet a Buffer of its own. */
	private runBuf: Buffer | undefined;
	private runStart = 0;
	private runEnd = 0;

	private send(b: Buffer): void {
		if (this.runBuf !== undefined && this.runBuf.buffer === b.buffer && this.runEnd === b.byteOffset) this.runEnd += b.length;
		else {
			this.closeRun();
			this.runBuf = b;
			this.runStart = b.byteOffset;
			this.runEnd = b.byteOffset + b.length;
		}
		this.outBytes += b.length;
		if (this.outBytes >= OUT_BATCH_BYTES) this.flushOut();
	}

	private closeRun(): void {
		const b = this.runBuf;
		if (b === undefined) return;
		this.runBuf = undefined;
		const whole = this.runStart === b.byteOffset && this.runEnd === b.byteOffset + b.length;
		this.out.push(whole ? b : Buffer.from(b.buffer, this.runStart, this.runEnd - this.runStart));
	}

	private flushOut(): void {
		this.closeRun();
		if (this.out.length === 0) return;
		const batch = this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out, this.outBytes);
		this.out = [];
		this.outBytes = 0;
		if (!this.client.destroyed) {
			this.writesIssued++;
			this.client.write(batch, this.onClientWritten);
		}
	}

	/** Direct write for messages outside the relayed stream (notices, FATALs): after what is batched. */
	private writeClient(b: Buffer): void {
		this.flushOut();
		if (!this.client.destroyed) this.client.write(b);
	}

	private onServerFrame(f: ServerFrame): Promise<void> | undefined {
		const u = this.head();
		switch (f.code) {
			case ServerCode.DataRow: {
				const plan = u?.k === "simple" ? u.plan : u?.k === "execute" ? u.portal.plan : this.desync("DataRow");
				if (plan === undefined && this.o.live().maskingActive) {
					// never: every Execute is described first while masking applies (fail closed)
					throw new PgGatewayError("statement_blocked", "rows of a portal the gateway has not described cannot be masked; the session was closed");
				}
				if (u?.k === "simple" || u?.k === "execute") u.rows++;
				this.send(plan?.any ? this.maskRow(f, plan) : f.raw);
				return undefined;
			}
			case ServerCode.RowDescription: {
				if (u?.k === "simple" && !this.o.live().maskingActive) {
					this.send(f.raw);
					return undefined;
				}
				if (u?.k === "simple") {
					// The same statement (or template: `... WHERE aid = 42` and `... = 43`) with the same
					// columns reuses its plan synchronously while the policy is unchanged, as prepared
					// statements do below. Statements resolved through session state (EXECUTE, FETCH) never.
					const s = u.statements[u.idx];
					const live = this.o.live();
					const epoch = this.o.catalog.epoch;
					const key = s && !s.uses ? `${this.o.policy.statementKey(s)}\u0000${f.raw.toString("latin1", 5)}` : undefined;
					const hit = key === undefined ? undefined : this.simplePlans.get(key);
					if (hit && this.reusable(hit, key!)) {
						u.plan = hit.plan;
						this.send(hit.plan?.rowDescription ?? f.raw);
						return undefined;
					}
					const raw = Buffer.from(f.raw);
					return this.planFor(s, decodeRowDescription(f)).then((plan) => {
						u.plan = plan;
						if (key !== undefined) {
							if (this.simplePlans.size >= SIMPLE_PLANS_MAX) this.simplePlans.clear();
							this.simplePlans.set(key, { key, live, epoch, plan, at: Date.now() });
						}
						this.send(plan?.rowDescription ?? raw);
					});
				}
				if (u?.k === "describe") {
					const portal = u.portal;
					if (!portal || !this.o.live().maskingActive) {
						if (portal) {
							portal.plan = null;
							portal.plannedUnder = this.o.live();
						}
						// Statement Describe: types only, no data. Passed as is, but for the column names of
						// a statement or portal the gateway never saw: code made it, and its names are data
						// like its values (`OPEN c FOR EXECUTE 'SELECT 1 AS ' || quote_ident(phone)`).
						this.pop();
						this.send(u.unknown && this.o.live().maskingActive ? renamedColumns(decodeRowDescription(f)) : f.raw);
						return undefined;
					}
					// A prepared statement executed again with the same columns reuses its plan synchronously.
					const stmt = portal.stmt;
					const key = f.raw.toString("latin1", 5);
					const live = this.o.live();
					const epoch = this.o.catalog.epoch;
					if (stmt?.planCache && this.reusable(stmt.planCache, key)) {
						portal.plan = stmt.planCache.plan;
						portal.plannedUnder = live;
						this.pop();
						if (!u.swallow) this.send(stmt.planCache.plan?.rowDescription ?? f.raw);
						return undefined;
					}
					const fields = decodeRowDescription(f);
					const raw = Buffer.from(f.raw);
					return this.planFor(stmt?.analysis, fields).then((plan) => {
						portal.plan = plan;
						portal.plannedUnder = live;
						// SQL-level EXECUTE/FETCH resolve per session state: never cache those.
						if (stmt?.info && !stmt.info.uses) stmt.planCache = { key, live, epoch, plan, at: Date.now() };
						this.pop();
						if (!u.swallow) this.send(plan?.rowDescription ?? raw);
					});
				}
				return this.desync("RowDescription");
			}
			case ServerCode.CommandComplete: {
				this.copyInAt = undefined;
				const tag = decodeCommandComplete(f);
				if (u?.k === "simple" || u?.k === "execute") {
					const done = u.k === "simple" ? [u.statements[u.idx]] : u.portal.stmt?.analysis.ok ? u.portal.stmt.analysis.statements : [undefined];
					this.nameStatementDone(done, tag);
					if (done.some(changesCatalog)) this.catalogChanged();
					// routines made in an open transaction stay unseen by the catalog until it ends
					if (done.some(mayCreateRoutines)) this.o.catalog.routinesUnseen = true;
					// SQL-level names: what a completed statement defined or dropped (its seq: forwarding order)
					const one = done.length === 1 ? done[0] : undefined;
					if (one && u.seq !== undefined) this.sql.succeeded(one, u.seq + (u.k === "simple" ? u.idx : 0));
				}
				if (u?.k === "simple") {
					this.recordDone(u.statements[u.idx], u, tag, u.plan);
					u.idx++;
					u.plan = null;
					u.rows = 0;
					u.started = performance.now();
				} else if (u?.k === "execute") {
					this.recordExecute(u, tag);
					this.pop();
				} else this.desync("CommandComplete");
				this.send(f.raw);
				return undefined;
			}
			case ServerCode.EmptyQueryResponse:
				if (u?.k === "simple") u.idx++;
				else if (u?.k === "execute") this.pop();
				else this.desync("EmptyQueryResponse");
				this.send(f.raw);
				return undefined;
			case ServerCode.PortalSuspended:
				if (u?.k !== "execute") this.desync("PortalSuspended");
				this.recordExecute(u, "SUSPENDED");
				this.pop();
				this.send(f.raw);
				return undefined;
			case ServerCode.ParseComplete:
				if (u?.k !== "parse") this.desync("ParseComplete");
				this.confirmedStatements.set(u.stmt.name, u.stmt);
				if (u.seq !== undefined) this.sql.protocolDefined("prepared", u.stmt.name, u.seq);
				this.pop();
				this.send(f.raw);
				return undefined;
			case ServerCode.BindComplete:
				if (u?.k !== "bind") this.desync("BindComplete");
				this.confirmedPortals.set(u.portal.name, u.portal);
				if (u.seq !== undefined) this.sql.protocolDefined("cursor", u.portal.name, u.seq);
				// The server converted the parameters making the portal, and a domain's input runs its
				// CHECK, which may call any function: a Bind with no Execute of its portal behind it
				// (Parse, Bind, Sync) may have written, and is recorded as what the agent ran.
				if (!this.executeQueued(u.portal)) this.recordExecute({ k: "execute", portal: u.portal, rows: 0, started: performance.now() }, "BIND");
				this.pop();
				this.send(f.raw);
				return undefined;
			case ServerCode.CloseComplete:
				if (u?.k !== "close") this.desync("CloseComplete");
				(u.target === "S" ? this.confirmedStatements : this.confirmedPortals).delete(u.name);
				if (u.seq !== undefined && u.name !== "") this.sql.protocolClosed(u.target === "S" ? "prepared" : "cursor", u.name, u.seq);
				this.pop();
				this.send(f.raw);
				return undefined;
			case ServerCode.NoData:
				if (u?.k !== "describe") this.desync("NoData");
				if (u.portal) {
					u.portal.plan = null;
					u.portal.plannedUnder = this.o.live();
				}
				this.pop();
				if (!u.swallow) this.send(f.raw);
				return undefined;
			case ServerCode.ParameterDescription:
				if (u?.k !== "describe") this.desync("ParameterDescription");
				if (!u.swallow) this.send(f.raw);
				return undefined;
			case ServerCode.ReadyForQuery: {
				this.status = decodeReadyForQuery(f);
				// The transaction's DDL is visible to the catalog now (kept while a later segment's DDL
				// is still on its way: its flags were set when it was forwarded).
				if (this.status === "I" && !this.units.slice(this.unitHead + 1).some((x) => unitStatements(x)?.some(changesCatalog))) {
					this.o.catalog.routinesUnseen = false;
					this.o.catalog.uncommittedDdl = false;
				}
				// Protocol portals never outlive their transaction; a simple Query replaces the unnamed statement and portal.
				if (this.status === "I") {
					if (this.catalogDirty) {
						this.catalogDirty = false;
						this.o.catalog.invalidate();
						this.simplePlans.clear();
					}
					this.confirmedPortals.clear();
					if (u?.tseq !== undefined) this.sql.transactionEnded(u.tseq);
				}
				// (a blocked FunctionCall is a simple Query upstream)
				if (u?.k === "simple" || (u?.k === "fn" && u.asQuery)) {
					this.confirmedStatements.delete("");
					this.confirmedPortals.delete("");
				}
				if (u?.k === "simple" || u?.k === "sync" || u?.k === "fn") this.pop();
				else this.desync("ReadyForQuery");
				this.send(f.raw);
				return undefined;
			}
			case ServerCode.ErrorResponse:
				this.onUpstreamError(f, u);
				return undefined;
			case ServerCode.NoticeResponse:
				this.send(this.scrub(f));
				return undefined;
			case ServerCode.NotificationResponse:
				this.send(this.scrubNotification(f));
				return undefined;
			case ServerCode.FunctionCallResponse:
				if (u?.k !== "fn") this.desync("FunctionCallResponse");
				else this.recordFunctionCall(u);
				this.send(f.raw);
				return undefined;
			case ServerCode.CopyInResponse:
				this.copyInStarted(u);
				this.send(f.raw);
				return undefined;
			case ServerCode.CopyData: {
				const d = u?.k === "simple" ? u.copyDetector : u?.k === "execute" ? u.portal.stmt?.copyDetector : undefined;
				if (d) {
					const text = f.raw.toString("utf8", 5);
					const masked = d(text);
					if (masked !== undefined) {
						this.send(serverMessages.copyData(Buffer.from(masked, "utf8")));
						return undefined;
					}
				}
				this.send(f.raw);
				return undefined;
			}
			case ServerCode.CopyOutResponse:
			case ServerCode.CopyBothResponse:
				if (this.o.live().maskingActive && f.raw[5] === 1) {
					const d = u?.k === "simple" ? u.copyDetector : u?.k === "execute" ? u.portal.stmt?.copyDetector : undefined;
					if (d) throw new PgGatewayError("statement_blocked", "binary COPY cannot be scanned by the masking detectors; the session was closed");
				}
				this.send(f.raw);
				return undefined;
			case ServerCode.CopyDone:
				this.send(f.raw);
				return undefined;
			case ServerCode.ParameterStatus:
				this.checkParserSetting(f);
				// set_config('application_name', (SELECT email ...)) echoes table data here.
				this.send(this.scrubParameterStatus(f));
				return undefined;
			case ServerCode.BackendKeyData:
			case ServerCode.Authentication:
				return this.desync("authentication message after startup");
			default:
				this.send(f.raw);
				return undefined;
		}
	}

	private onUpstreamError(f: ServerFrame, u: Unit | undefined): void {
		this.copyInAt = undefined;
		const fields = decodeErrorFields(f);
		if (fields.S === "FATAL" || fields.V === "FATAL" || fields.S === "PANIC") {
			this.send(f.raw);
			this.close({ reason: "upstream-closed", message: fields.M ?? "upstream FATAL" });
			return;
		}
		// What a failed Parse/Bind leaves under its name is not certain: an unnamed statement is dropped
		// before parsing, and a name left unknown is masked entirely (fail closed).
		if (u?.k === "parse" && u.stmt.name === "") this.confirmedStatements.delete("");
		if (u?.k === "bind") this.confirmedPortals.delete(u.portal.name);
		if (u && "substitute" in u && u.substitute) {
			this.send(u.substitute);
			// consumed: a later error of this unit (none expected) would be relayed
			u.substitute = undefined;
			if (u.k === "parse" || u.k === "bind") this.pop();
			// "simple" and "fn" units end at ReadyForQuery
			if (u.k === "parse" || u.k === "bind") this.skipToSync();
			return;
		}
		const error = { code: fields.C ?? "XX000", message: this.scrubText(fields.M ?? "", true) };
		if (u?.k === "simple") {
			const s = u.statements[u.idx];
			if (s) {
				this.emit({
					type: "statement",
					sql: this.recordText(s.text),
					statementKinds: s.kinds,
					decision: u.decision,
					...(u.rule ? { rule: u.rule } : {}),
					...(u.approvalId ? { approvalId: u.approvalId } : {}),
					durationMs: round(performance.now() - u.started),
					error,
				});
			}
			this.send(this.scrub(f));
			return;
		}
		if (u?.k === "fn") {
			this.recordFunctionCall(u, error);
			this.send(this.scrub(f));
			return;
		}
		if (u?.k === "execute") this.recordExecute(u, undefined, error);
		// A Bind the server refused (a parameter that does not convert to its type, a domain's CHECK):
		// the statement never runs, but the agent sent it with its parameters, and code may have run
		// evaluating them; it is recorded with the error, as a failed Execute would be.
		if (u?.k === "bind") this.recordExecute({ k: "execute", portal: u.portal, rows: 0, started: performance.now() }, undefined, error);
		// A Parse the server refused (a missing table or column, a syntax error): nothing behind it in the
		// segment runs, so nothing else records what the agent sent; its simple-query twin is recorded.
		if (u?.k === "parse") {
			this.emit({
				type: "statement",
				sql: this.recordText(u.stmt.sql),
				statementKinds: u.stmt.info?.kinds ?? [],
				decision: u.stmt.decision,
				...(u.stmt.rule ? { rule: u.stmt.rule } : {}),
				...(u.stmt.approvalId ? { approvalId: u.stmt.approvalId } : {}),
				error,
			});
		}
		if (u?.k === "parse" && this.statements.get(u.stmt.name) === u.stmt) {
			// the upstream did not create it: restore what it still has under that name
			if (u.previous) this.statements.set(u.stmt.name, u.previous);
			else this.statements.delete(u.stmt.name);
		}
		this.send(this.scrub(f));
		// Extended protocol: the server skips to Sync; so do our expectations.
		if (u && u.k !== "sync") this.skipToSync();
	}

	/**
	 * A statement completed upstream: apply what it did to prepared-statement and portal names (SQL
	 * and protocol names share one namespace). The command tag says what ran; the name comes from
	 * the statement when exactly one is known, otherwise every name of that kind becomes unknown.
	 */
	private nameStatementDone(done: (SqlStatementInfo | undefined)[], tag: string): void {
		if (tag === "COMMIT" || tag === "ROLLBACK" || tag === "PREPARE TRANSACTION" || tag === "CALL" || tag === "DO") {
			// transaction ends (ROLLBACK TO SAVEPOINT included) drop portals; procedures may commit
			this.confirmedPortals.clear();
		}
		const statementTag = tag === "PREPARE" || tag === "DEALLOCATE" || tag === "DEALLOCATE ALL" || tag === "DISCARD ALL";
		const portalTag = tag === "DECLARE CURSOR" || tag === "CLOSE CURSOR" || tag === "CLOSE CURSOR ALL" || tag === "DISCARD ALL";
		if (!statementTag && !portalTag) return;
		const one = done.length === 1 ? done[0] : undefined;
		const effects = one ? this.o.policy.nameEffects(one) : undefined;
		if (statementTag) {
			const name = effects?.prepared;
			if (typeof name === "string") this.confirmedStatements.delete(name);
			else this.confirmedStatements.clear();
		}
		if (portalTag) {
			const name = effects?.portal;
			if (typeof name === "string") this.confirmedPortals.delete(name);
			else this.confirmedPortals.clear();
		}
	}

	/** The server entered copy-in mode for `u`: Syncs forwarded before the copy's end are ignored upstream. */
	private copyInStarted(u: Unit | undefined): void {
		if (u?.k !== "simple" && u?.k !== "execute") this.desync("CopyInResponse");
		const at = u.copyEnds ?? 0;
		this.copyInAt = at;
		for (let i = this.unitHead + 1; i < this.units.length; ) {
			const x = this.units[i]!;
			if (x.k === "sync" && x.copyEnds === at) this.units.splice(i, 1);
			else i++;
		}
	}

	/** Drop expected responses up to (not including) the next Sync/simple unit. */
	private skipToSync(): void {
		for (;;) {
			const u = this.head();
			if (!u || u.k === "sync" || u.k === "simple" || u.k === "fn") return;
			if (u.k === "parse" && this.statements.get(u.stmt.name) === u.stmt) {
				if (u.previous) this.statements.set(u.stmt.name, u.previous);
				else this.statements.delete(u.stmt.name);
			}
			this.pop();
		}
	}

	// ---------------------------------------------------------------------------------------------
	// masking

	private maskContext(): MaskContext {
		return {
			rules: this.o.live().policies.maskRules,
			catalog: this.o.catalog,
			identity: this.identity,
			grant: this.grant,
			maskingKey: this.o.live().maskingKey,
		};
	}

	/** Plan masks for a result set from its RowDescription and the statement's parse tree. */
	private async planFor(
		statement: SqlStatementInfo | SqlAnalysis | undefined,
		fields: FieldDescription[],
	): Promise<ActivePlan | null> {
		if (!this.o.live().maskingActive) return null;
		const resultFields: ResultField[] = fields.map((f) => ({
			name: f.name,
			tableOid: f.tableOid,
			columnAttr: f.columnAttr,
			typeOid: f.typeOid,
			format: f.format,
		}));
		// Unknown statement (a portal we never saw parsed): an unparseable analysis makes the policy mask by origin and fail closed.
		const analysis: SqlAnalysis =
			statement === undefined
				? { ok: false, error: "statement unknown to the gateway" }
				: "ok" in statement
					? statement
					: { ok: true, statements: [statement] };
		const plan: MaskPlan = await this.o.policy.planMasks(analysis, resultFields, this.maskContext());
		if (plan.block) throw new PgGatewayError("statement_blocked", plan.block.message, { detail: `Drawbridge rule: ${plan.block.rule}` });
		const maskers: (ValueMasker | undefined)[] = new Array(fields.length).fill(undefined);
		for (const c of plan.columns) {
			if (c.index >= 0 && c.index < fields.length) maskers[c.index] = this.masker(c.strategy);
		}
		const detector = plan.detectors.length > 0 ? this.o.policy.compileDetectorRules(plan.detectors, this.o.live().maskingKey) : undefined;
		// Column names are data when the query is not the agent's text: a DBA's helper opening a
		// cursor with dynamic SQL (`OPEN c FOR EXECUTE q`) given `'SELECT 1 AS ' || quote_ident(phone)`
		// described every value masked under the phone as the column's name. Such columns are named
		// `column1`, `column2`... (as VALUES names them), and so is any column whose name a content
		// detector matches.
		const renamed = (i: number): boolean => plan.namesUnknown !== undefined || (detector !== undefined && detector(fields[i]!.name) !== undefined);
		const rowDescription = fields.some((_, i) => renamed(i)) ? renamedColumns(fields, renamed) : undefined;
		return {
			...(rowDescription ? { rowDescription } : {}),
			maskers,
			shapes: maskers.map((m, i) => m?.shape?.(fields[i]!.format, fields[i]!.typeOid)),
			formats: fields.map((f) => f.format),
			typeOids: fields.map((f) => f.typeOid),
			// Binary values too: a driver asking for binary results (pgx, JDBC, tokio-postgres) got an
			// array, record or jsonb holding an email, or a bigint holding a card number, past the
			// detectors that masked the same value in text format.
			scannable: fields.map((f) => f.format === 0 || binaryScannable(f.typeOid)),
			detector,
			maskedNames: plan.columns.map((c) => (c.sources.length > 0 ? c.sources.join("+") : (fields[c.index]?.name ?? `#${c.index}`))),
			any: plan.columns.length > 0 || detector !== undefined,
		};
	}

	private readonly maskers = new WeakMap<MaskStrategy, ValueMasker>();
	private upOut: Buffer[] = [];
	private upOutBytes = 0;
	private readonly verdicts = new Map<string, { rules: readonly GuardrailRule[]; verdict: GuardrailVerdict }>();
	private readonly simplePlans = new Map<string, PlanEntry>();

	/** A kept plan still applies: same result shape, same policy object (a new bundle re-plans), not stale. */
	private reusable(e: PlanEntry, key: string): boolean {
		return e.key === key && e.live === this.o.live() && e.epoch === this.o.catalog.epoch && Date.now() - e.at < PLAN_REUSE_MS;
	}

	/**
	 * A statement that may have changed the catalog completed: the shared catalog cache (negative
	 * answers included) and every plan built on it are dropped now, and again when the transaction
	 * ends (the catalog's own connection sees the change only after COMMIT). Without this, a view or
	 * child table created by the agent stayed unknown to the catalog for up to its TTL.
	 */
	private catalogChanged(): void {
		this.o.catalog.uncommittedDdl = true;
		this.o.catalog.invalidate();
		this.simplePlans.clear();
		this.catalogDirty = true;
	}
	private catalogDirty = false;

	private masker(strategy: MaskStrategy): ValueMasker {
		let m = this.maskers.get(strategy);
		if (!m) this.maskers.set(strategy, (m = this.o.policy.compileValueMasker(strategy, this.o.live().maskingKey)));
		return m;
	}

	/**
	 * The DataRow with masked values, for rows read frame by frame (straddling reads, or past the
	 * in-place path): written by writeMaskedRow into the arena, or, for a row that does not fit in
	 * one, into a buffer of its own grown until it does.
	 */
	private maskRow(f: ServerFrame, plan: ActivePlan): Buffer {
		const raw = f.raw;
		if (raw.length <= ARENA_BYTES / 4) {
			let o = this.writeMaskedRow(raw, 0, raw.length, plan, this.arena, this.arenaOff, this.arena.length);
			if (o < 0) {
				this.nextArena();
				o = this.writeMaskedRow(raw, 0, raw.length, plan, this.arena, 0, this.arena.length);
			}
			if (o >= 0) {
				const out = this.arena.subarray(this.arenaOff, o);
				this.arenaOff = o;
				return out;
			}
		}
		for (let size = raw.length + 1024; ; size *= 2) {
			const out = Buffer.allocUnsafe(size);
			const o = this.writeMaskedRow(raw, 0, raw.length, plan, out, 0, size);
			if (o >= 0) return out.subarray(0, o);
		}
	}

	/**
	 * Rewrite one DataRow in one pass: the DataRow at raw[base, end) written to out[at, limit), only
	 * masked (or detector-matched) values changed. Lengths are read and written by hand and small
	 * ranges copied byte by byte, because Buffer's checked accessors and copy() cost more than the
	 * bytes they move. Returns the offset after the row, or -1 when it does not fit before `limit`
	 * (nothing else is touched; the caller retries with room).
	 */
	private writeMaskedRow(raw: Buffer, base: number, end: number, plan: ActivePlan, out: Buffer, at: number, limit: number): number {
		if (end - base < 7) throw new PgGatewayError("upstream_protocol", "malformed DataRow from upstream");
		const n = (raw[base + 5]! << 8) | raw[base + 6]!;
		if (at + 7 > limit) return -1;
		out[at] = ServerCode.DataRow;
		out[at + 5] = raw[base + 5]!;
		out[at + 6] = raw[base + 6]!;
		let off = base + 7;
		let o = at + 7;
		const maskers = plan.maskers;
		for (let i = 0; i < n; i++) {
			if (off + 4 > end) throw new PgGatewayError("upstream_protocol", "malformed DataRow from upstream");
			const vlen = (raw[off]! << 24) | (raw[off + 1]! << 16) | (raw[off + 2]! << 8) | raw[off + 3]!;
			const from = off + 4;
			const to = vlen > 0 ? from + vlen : from;
			if (to > end) throw new PgGatewayError("upstream_protocol", "malformed DataRow from upstream");
			off = to;
			const masker = maskers[i];
			let value: Buffer | null | undefined;
			if (vlen < 0) value = undefined;
			else if (masker) {
				const shape = plan.shapes[i];
				if (shape?.kind === "constant") value = shape.value;
				else if (shape?.kind === "ascii-partial" && vlen > shape.first + shape.last && shape.first < 0x7fffffff && isAscii(raw, from, to)) {
					// Same length, written from the wire bytes (the masker's own partial path gives the same bytes).
					if (o + 4 + vlen > limit) return -1;
					o = writeAsciiPartial(raw, from, to, out, putInt32(out, o, vlen), shape.first, shape.last);
					continue;
				} else value = masker(raw.subarray(from, to), plan.formats[i] ?? 0, plan.typeOids[i] ?? 0);
			} else if (plan.detector && plan.scannable[i]) {
				const format = plan.formats[i] ?? 0;
				const oid = plan.typeOids[i] ?? 0;
				const text = detectorText(raw, from, to, format, oid);
				const d = text === undefined ? undefined : plan.detector(text);
				if (d !== undefined) {
					// the masked text is a valid value of text types in either format, of user types only in
					// text format (their binary layout is unknown); anything else becomes NULL
					value = TEXT_TYPES.has(oid) || (oid >= 16384 && format === 0) ? Buffer.from(d, "utf8") : null;
				}
			}
			if (value === undefined) {
				// Unchanged: length and value as received.
				const m = to - from + 4;
				if (o + m > limit) return -1;
				o = copyRange(raw, from - 4, to, out, o);
			} else if (value === null) {
				if (o + 4 > limit) return -1;
				o = putInt32(out, o, -1);
			} else {
				if (o + 4 + value.length > limit) return -1;
				o = putInt32(out, o, value.length);
				o = copyRange(value, 0, value.length, out, o);
			}
		}
		putInt32(out, at + 1, o - at - 1);
		return o;
	}

	/**
	 * The hot loop of a large result: DataRows lying wholly in the parser's first buffered chunk are
	 * handled in place, without a frame object or a Buffer view per row. Unmasked rows go on as one
	 * view of the chunk; masked ones (changed or not) are written one after the other into the arena
	 * and go on as one view of it. Anything unusual (another message, a row straddling chunks, a bad
	 * length, a row too big for the arena) is left to the frame-by-frame path, which decides and
	 * fails exactly as before. Returns whether any row was taken.
	 */
	private dataRows(u: Extract<Unit, { k: "simple" }> | Extract<Unit, { k: "execute" }>, plan: ActivePlan | null | undefined): boolean {
		const buf = this.sparser.firstChunk();
		if (buf === undefined) return false;
		const start = this.sparser.firstOffset;
		const end = buf.length;
		const max = Math.min(this.sparser.maxFrameBytes, ARENA_BYTES / 4);
		const mask = plan?.any === true;
		let off = start;
		let rows = 0;
		let runStart = this.arenaOff;
		while (off + 5 <= end && buf[off] === ServerCode.DataRow) {
			const size = ((buf[off + 1]! << 24) | (buf[off + 2]! << 16) | (buf[off + 3]! << 8) | buf[off + 4]!) + 1;
			if (size < 5 || size > max || off + size > end) break;
			if (mask) {
				let o = this.writeMaskedRow(buf, off, off + size, plan, this.arena, this.arenaOff, this.arena.length);
				if (o < 0) {
					if (this.arenaOff > runStart) this.send(this.arena.subarray(runStart, this.arenaOff));
					this.nextArena();
					runStart = 0;
					o = this.writeMaskedRow(buf, off, off + size, plan, this.arena, 0, this.arena.length);
					if (o < 0) break; // larger than an arena once masked: frame by frame
				}
				this.arenaOff = o;
			}
			off += size;
			rows++;
		}
		if (rows === 0) return false;
		this.sparser.consume(off - start);
		u.rows += rows;
		if (!mask) this.send(buf.subarray(start, off));
		else if (this.arenaOff > runStart) this.send(this.arena.subarray(runStart, this.arenaOff));
		return true;
	}

	/**
	 * Rewritten rows are appended to an arena so consecutive rows are adjacent in memory and `send`
	 * merges them into one view (no per-row allocation, no copy at flush). A full arena is retired
	 * with the number of the client write that carries its last bytes, and is written into again
	 * only after that write has completed (the socket no longer holds it). Reusing arenas matters:
	 * a fresh 256 KiB ArrayBuffer per arena made a large result allocate its own size again in
	 * external memory, and V8 answers external memory growth with major collections of the whole heap.
	 */
	private arena: Buffer = Buffer.alloc(0);
	private arenaOff = 0;
	private readonly retiredArenas: { arena: Buffer; write: number }[] = [];
	/** Client writes issued by flushOut, and those completed (callbacks come in order). */
	private writesIssued = 0;
	private writesDone = 0;
	private readonly onClientWritten = (): void => {
		this.writesDone++;
	};

	/** Retire the current arena (after writing out what is batched) and continue in a free one. */
	private nextArena(): void {
		if (this.arena.length === ARENA_BYTES) {
			this.flushOut();
			this.retiredArenas.push({ arena: this.arena, write: this.writesIssued });
		}
		const oldest = this.retiredArenas[0];
		if (oldest !== undefined && this.writesDone >= oldest.write) {
			this.retiredArenas.shift();
			this.arena = oldest.arena;
		} else this.arena = Buffer.allocUnsafeSlow(ARENA_BYTES);
		this.arenaOff = 0;
		// A client that stopped reading holds arenas in the socket; those are not kept for reuse.
		if (this.retiredArenas.length > 8) this.retiredArenas.shift();
	}

	private recordDetector: TextDetector | undefined | null = null;

	/** Text for recordings and approvals: content detectors applied, so recordings hold no more than the agent saw. */
	private recordText(text: string): string {
		if (!this.o.live().maskingActive) return text;
		if (this.recordDetector === null) {
			this.recordDetector = this.o.policy.compileDetectorRules(this.o.live().policies.maskRules, this.o.live().maskingKey);
		}
		return this.recordDetector?.(text) ?? text;
	}

	private scrubText(text: string, values: boolean): string {
		if (!this.o.live().maskingActive) return text;
		const out = this.recordText(text);
		return values ? scrubValues(out) : out;
	}

	/** Errors and notices can carry table data (failed casts, unique violations, RAISE). */
	private scrub(f: ServerFrame): Buffer {
		if (!this.o.live().maskingActive) return f.raw;
		const fields = decodeErrorFields(f);
		const code = fields.C ?? "";
		// Only syntax/analysis errors pointing into the client's own text (class 42 with a position)
		// are raised before any row is read and keep their text. Every other error or notice may
		// print a value the executor met, whatever the plan says about the output columns: a view's
		// own WHERE (`... WHERE quote_ident(phone)::regclass IS NOT NULL`) is evaluated for a reader
		// whose plan is clean, and its 42P01 printed the phone (red-team round,
		// test/postgres/issue-error-text-leak.test.ts). Before, a clean plan kept the text of every
		// class but 22, 23, P0, 00, 01 and 02.
		if (code.startsWith("42") && fields.P !== undefined) return f.raw;
		const out: ErrorFields = { ...fields };
		if (out.M !== undefined) out.M = this.scrubText(out.M, true);
		if (out.H !== undefined) out.H = this.scrubText(out.H, true);
		// RAISE in a function can print any column (a hash- or null-masked one no detector knows):
		// its text is the function's, not PostgreSQL's, so none of it is shown.
		// RAISE ... USING COLUMN/CONSTRAINT/DATATYPE/TABLE/SCHEMA = <any text> fills the fields
		// PostgreSQL otherwise uses for object names: dropped too.
		if (fields.R === "exec_stmt_raise") {
			out.M = "message raised by a function, hidden by the Drawbridge masking policy";
			for (const k of ["H", "c", "n", "d", "t", "s"]) delete out[k];
		}
		for (const k of ["D", "W", "q", "p"]) delete out[k];
		if (fields.D !== undefined) out.D = "detail hidden by Drawbridge masking policy";
		return f.code === ServerCode.ErrorResponse ? serverMessages.error(out) : serverMessages.notice(out);
	}

	/**
	 * The policy refuses statements that set standard_conforming_strings off or a client-only
	 * client_encoding; should the server report one anyway (a function that already existed set it),
	 * the gateway can no longer read what the client sends as the server will: the session ends.
	 */
	private checkParserSetting(f: ServerFrame): void {
		const m = decodeServerMessage(f);
		if (m.type !== "parameterStatus") return;
		const why = unsafeParserSetting(m.name, m.value);
		if (why) throw new PgGatewayError("unsafe_parser_setting", `terminating connection: ${why}`);
	}

	private scrubParameterStatus(f: ServerFrame): Buffer {
		if (!this.o.live().maskingActive) return f.raw;
		const m = decodeServerMessage(f);
		if (m.type !== "parameterStatus") return f.raw;
		const value = this.recordText(m.value);
		return value === m.value ? f.raw : serverMessages.parameterStatus(m.name, value);
	}

	private scrubNotification(f: ServerFrame): Buffer {
		if (!this.o.live().maskingActive) return f.raw;
		const m = decodeServerMessage(f);
		if (m.type !== "notificationResponse" || m.payload === "") return f.raw;
		// Any session's function can pg_notify() any column (a hash- or null-masked one no detector
		// knows), and the sender cannot be told apart: while masking is active payloads are withheld.
		return serverMessages.notification(m.processId, m.channel, "payload hidden by the Drawbridge masking policy");
	}

	// ---------------------------------------------------------------------------------------------
	// recording

	private emit(e: RecordingEvent): void {
		try {
			this.o.recorder.emit(e);
		} catch {
			// emit never blocks forwarding
		}
	}

	private recordDone(
		s: SqlStatementInfo | undefined,
		u: Extract<Unit, { k: "simple" }>,
		tag: string,
		plan: ActivePlan | null,
	): void {
		if (!s) return;
		this.emit({
			type: "statement",
			sql: this.recordText(s.text),
			statementKinds: s.kinds,
			decision: u.decision,
			...(u.rule ? { rule: u.rule } : {}),
			...(u.approvalId ? { approvalId: u.approvalId } : {}),
			durationMs: round(performance.now() - u.started),
			rows: rowsOf(tag, u.rows),
			commandTag: tag,
			...(plan && plan.maskedNames.length > 0 ? { maskedColumns: plan.maskedNames } : {}),
		});
	}

	private recordExecute(u: Extract<Unit, { k: "execute" }>, tag: string | undefined, error?: { code: string; message: string }): void {
		const stmt = u.portal.stmt;
		const params = u.portal.params.map((p, i) => {
			if (p === null) return null;
			const fmt = u.portal.paramFormats.length === 1 ? u.portal.paramFormats[0] : u.portal.paramFormats[i];
			return fmt === 1 ? `<binary ${p.length} bytes>` : this.recordText(p.toString("utf8"));
		});
		const plan = u.portal.plan;
		this.emit({
			type: "statement",
			sql: this.recordText(stmt?.sql ?? `<unknown portal "${u.portal.name}">`),
			...(params.length > 0 ? { params } : {}),
			statementKinds: stmt?.info?.kinds ?? [],
			decision: u.portal.approvalId ? "approved" : (stmt?.decision ?? "allow"),
			...(stmt?.rule ? { rule: stmt.rule } : {}),
			...(u.portal.approvalId ? { approvalId: u.portal.approvalId } : stmt?.approvalId ? { approvalId: stmt.approvalId } : {}),
			durationMs: round(performance.now() - u.started),
			rows: tag ? rowsOf(tag, u.rows) : u.rows,
			...(tag ? { commandTag: tag } : {}),
			...(error ? { error } : {}),
			...(plan && plan.maskedNames.length > 0 ? { maskedColumns: plan.maskedNames } : {}),
		});
	}

	/**
	 * A fast-path FunctionCall that was forwarded (an admin grant without masking or binding rules):
	 * it runs any function by OID, so it is recorded like a statement, with its arguments masked as
	 * parameters are. Its result value is not recorded (nor are a query's rows).
	 */
	private recordFunctionCall(u: Extract<Unit, { k: "fn" }>, error?: { code: string; message: string }): void {
		const call = u.call;
		if (!call || call.recorded) return;
		call.recorded = true;
		const params = call.args?.values.map((v, i) => {
			if (v === null) return null;
			const fmt = call.args?.formats.length === 1 ? call.args.formats[0] : call.args?.formats[i];
			return fmt === 1 ? `<binary ${v.length} bytes>` : this.recordText(v.toString("utf8"));
		});
		this.emit({
			type: "statement",
			sql: `<FunctionCall oid=${call.oid}>`,
			...(params ? (params.length > 0 ? { params } : {}) : { params: ["<malformed arguments>"] }),
			statementKinds: ["FUNCTIONCALL"],
			decision: "allow",
			durationMs: round(performance.now() - call.started),
			...(error ? { error } : { commandTag: "FUNCTION CALL" }),
		});
	}

	// ---------------------------------------------------------------------------------------------
	// end

	private fail(e: unknown): void {
		if (this.closed) return;
		if (isPgGatewayError(e)) {
			this.o.log.warn({ session: this.id, code: e.code, err: e.message }, "session error");
			this.writeClient(serverMessages.error(errorFieldsOf(e)));
			this.close({ reason: "error", message: e.message });
		} else {
			this.o.log.warn({ session: this.id, err: (e as Error)?.stack ?? String(e) }, "session internal error");
			this.writeClient(
				serverMessages.error({ S: "FATAL", V: "FATAL", C: "XX000", M: "internal error in the Drawbridge gateway; the session was closed" }),
			);
			this.close({ reason: "error", message: (e as Error)?.message ?? String(e) });
		}
	}

	private onUpstreamGone(): void {
		if (this.closed || this.upstreamGone) return;
		this.upstreamGone = true;
		if (!this.serverBusy) this.serverIdle();
	}

	/** The server went away without a FATAL of its own (killed, network): tell the client why. */
	private upstreamClosed(): void {
		if (this.closed) return;
		const e = new PgGatewayError("upstream_unavailable", "the upstream PostgreSQL server closed the connection");
		this.writeClient(serverMessages.error(errorFieldsOf(e)));
		this.close({ reason: "upstream-closed" });
	}

	close(end: SessionEnd): void {
		if (this.closed) return;
		this.closed = true;
		this.endReason = end;
		this.wakeAnswerWaiters();
		if (this.idleTimer) clearInterval(this.idleTimer);
		this.abort.abort();
		this.recordInterrupted(end);
		this.flushUp();
		if (!this.up.destroyed) this.up.end(clientMessages.terminate());
		// What is batched for the client (e.g. the server's own FATAL relayed just before) goes out
		// before the end: a write after end() would be dropped.
		this.flushOut();
		this.client.end();
		setTimeout(() => {
			this.up.destroy();
			this.client.destroy();
		}, 1000).unref();
		this.o.recorder.close(end).catch(() => undefined);
		this.o.onClosed(this);
	}

	/**
	 * What was forwarded upstream and not answered when the session ends (grant end, revocation,
	 * shutdown, client gone) has no CommandComplete to record it: record it here, so the timeline
	 * shows what ran until the cut. The first statement is the one running (`interrupted` when the
	 * gateway cancelled it, else `not answered`: it may run on to its end); those queued behind it (later statements of its Query, pipelined Queries, Executes, Binds and calls)
	 * are already in the server's input and may run after it, even after a cancel (PostgreSQL reads
	 * the next message once a statement ends): each is recorded as `not answered`. Only the first
	 * used to be: `SELECT pg_sleep(1)` and `INSERT ...` sent as two Queries before the client closed
	 * its socket inserted the row unrecorded (test/postgres/issue-queued-statements-unrecorded.test.ts).
	 */
	private recordInterrupted(end: SessionEnd): void {
		const why = end.message ?? `session ended (${end.reason})`;
		const interrupted = { code: "57P01", message: this.scrubText(`interrupted: ${why}`, false) };
		const unanswered = {
			code: "57P01",
			message: this.scrubText(`not answered: sent before the session ended (${why}); it may have run`, false),
		};
		// The running statement was interrupted only when the gateway cancelled it (terminate()); when
		// the client or the server went away nothing stopped it: it was recorded as interrupted though
		// it ran on to its end, which the recording cannot know.
		let running = this.cancelledAtEnd;
		const next = () => {
			const e = running ? interrupted : unanswered;
			running = false;
			return e;
		};
		for (let i = this.unitHead; i < this.units.length; i++) {
			const u = this.units[i];
			if (u?.k === "simple" && !u.substitute) {
				for (let j = u.idx; j < u.statements.length; j++) {
					const s = u.statements[j];
					if (!s) continue;
					this.emit({
						type: "statement",
						sql: this.recordText(s.text),
						statementKinds: s.kinds,
						decision: u.decision,
						...(u.rule ? { rule: u.rule } : {}),
						...(u.approvalId ? { approvalId: u.approvalId } : {}),
						...(j === u.idx ? { durationMs: round(performance.now() - u.started), rows: u.rows } : {}),
						error: next(),
					});
				}
			} else if (u?.k === "execute") {
				this.recordExecute(u, undefined, next());
			} else if (u?.k === "fn" && u.call) {
				this.recordFunctionCall(u, next());
			} else if (u?.k === "bind" && !u.substitute && !this.executeQueued(u.portal)) {
				// converting its parameters may run code (a domain's CHECK), as at BindComplete
				this.recordExecute({ k: "execute", portal: u.portal, rows: 0, started: performance.now() }, "BIND", unanswered);
			}
		}
	}

	get ended(): SessionEnd | undefined {
		return this.endReason;
	}
}

// -------------------------------------------------------------------------------------------------

/** Statement kinds that define or drop prepared statements (and portals: DISCARD ALL). */
const STATEMENT_NAME_KINDS = new Set(["PREPARE", "DEALLOCATE", "DISCARD", "DO", "CALL"]);
/**
 * Statement kinds that define or drop portals: cursors, transaction ends (ROLLBACK TO included),
 * procedures (which may commit). BEGIN, SAVEPOINT, RELEASE and SET TRANSACTION change no name.
 */
const PORTAL_NAME_KINDS = new Set(["DECLARE", "CLOSE", "DISCARD", "COMMIT", "ROLLBACK", "ROLLBACK TO", "PREPARE TRANSACTION", "DO", "CALL"]);

interface NameEffects {
	/** Executing it may change prepared-statement names upstream. */
	statements: boolean;
	/** Executing it may change portal names upstream. */
	portals: boolean;
	/** It defines or drops SQL-level names the session state follows (`definesSqlNames`). */
	definesSqlNames: boolean;
}
const UNKNOWN_NAME_EFFECTS: NameEffects = { statements: true, portals: true, definesSqlNames: false };

/** nameChanges of `stmt`, kept on it: a pure function of its analysis. Unknown or unparsed: everything may change. */
function nameEffectsOf(stmt: StmtRef | undefined): NameEffects {
	if (!stmt?.analysis.ok) return UNKNOWN_NAME_EFFECTS;
	if (!stmt.nameEffects) {
		stmt.nameEffects = { ...nameChanges(stmt.analysis.statements), definesSqlNames: stmt.analysis.statements.some(definesSqlNames) };
	}
	return stmt.nameEffects;
}

/** A backslash or a non-ASCII character (bytes that are not UTF-8 were decoded to U+FFFD). */
const SETTINGS_SENSITIVE = /[\\\u0080-\uffff]/;

const PARSER_SETTINGS_BLOCK: GuardrailVerdict = Object.freeze({
	action: "block",
	rule: "protocol:parser-settings",
	sqlstate: "42501",
	message:
		"a statement holding a backslash or a non-ASCII character may not follow, before Sync, an Execute (or a Bind with parameters) that may run code changing server settings: the gateway could not read it as the server will; send Sync first",
});

/**
 * Whether executing a statement may change a server setting the gateway cannot see change: it may
 * run code its text does not show (`unseenCode`: a user function, directly or behind a view, a
 * table's default, trigger, rule or policy, a domain's CHECK, an operator, a cast, or a name the
 * search_path resolves; CALL, DO, EXECUTE, DDL), or is not known. set_config itself is checked by
 * the policy (a parser setting, or a name that is not a constant, is refused).
 */
function mayChangeSettings(stmt: StmtRef | undefined, userCasts: boolean): boolean {
	if (!stmt?.analysis.ok) return true;
	const key = userCasts ? "mayChangeSettingsCasts" : "mayChangeSettings";
	if (stmt[key] === undefined) stmt[key] = stmt.analysis.statements.some((s) => unseenCode(s, { userCasts }) !== undefined);
	return stmt[key];
}

/** PostgreSQL's first OID for objects made after initdb: types below it are built in. */
const FIRST_NORMAL_OBJECT_ID = 16384;

/**
 * Whether a Bind may change a server setting: the server converts each parameter with its type's
 * input function when the portal is made, and a domain's input runs the domain's CHECK constraints,
 * which may call any function (`CREATE DOMAIN d AS text CHECK (app_set('standard_conforming_strings',
 * VALUE) IS NOT NULL)`, then Parse `SELECT $1::d` and Bind 'off', without an Execute). A Bind without
 * parameters converts nothing; with parameters it may, unless the statement runs only built-in code
 * and every parameter type it declared at Parse is built in (an undeclared type is then inferred as a
 * built-in one).
 */
function bindMayChangeSettings(m: Extract<ClientMessage, { type: "bind" }>, stmt: StmtRef | undefined): boolean {
	if (m.params.length === 0) return false;
	// parameters are converted by input functions, never by casts
	if (!stmt?.paramTypes || mayChangeSettings(stmt, false)) return true;
	return stmt.paramTypes.some((t) => t >= FIRST_NORMAL_OBJECT_ID);
}

/** What executing these statements may change upstream: prepared-statement names, portal names. */
function nameChanges(statementsOf: readonly SqlStatementInfo[]): { statements: boolean; portals: boolean } {
	let statements = false;
	let portals = false;
	for (const s of statementsOf) {
		for (const k of s.kinds) {
			if (STATEMENT_NAME_KINDS.has(k)) statements = true;
			if (PORTAL_NAME_KINDS.has(k)) portals = true;
		}
		// a transaction statement of a kind not listed (a future one): assume the worst
		if (s.kinds.includes("TRANSACTION") && !["BEGIN", "START TRANSACTION", "SAVEPOINT", "RELEASE", "SET TRANSACTION"].includes(s.kind)) portals = true;
	}
	return { statements, portals };
}

/** Whether a statement run by Execute defines or drops SQL-level names the session state follows. */
function definesSqlNames(s: SqlStatementInfo): boolean {
	return s.prepared !== undefined || s.cursor !== undefined || s.kind === "DEALLOCATE" || s.kind === "CLOSE" || s.kind === "DISCARD ALL" || s.kinds.includes("TRANSACTION");
}

/** The one classified statement a protocol name holds, for SQL EXECUTE/FETCH of that name (undefined: unknown). */
function singleStatement(stmt: StmtRef | undefined): SqlStatementInfo | undefined {
	return stmt?.analysis.ok && stmt.analysis.statements.length === 1 ? stmt.analysis.statements[0] : undefined;
}

export function errorFieldsOf(e: PgGatewayError): ErrorFields {
	const f: ErrorFields = { S: e.severity, V: e.severity, C: e.sqlstate, M: e.message };
	if (e.detail) f.D = e.detail;
	if (e.hint) f.H = e.hint;
	return f;
}

function verdictError(v: GuardrailVerdict): PgGatewayError {
	const sqlstate = v.sqlstate ?? "42501";
	const code = sqlstate === "42601" ? "statement_unparseable" : "statement_blocked";
	const message = v.message ?? `statement blocked by guardrail rule "${v.rule ?? "unknown"}"`;
	return new PgGatewayError(code, message, {
		sqlstate,
		...(v.rule ? { detail: `Drawbridge rule: ${v.rule}` } : {}),
	});
}

/** Kinds after whose completion the catalog may differ (an unknown statement counts). */
const CATALOG_KINDS = /^(CREATE|ALTER|DROP|COMMENT|SECURITY LABEL|IMPORT FOREIGN SCHEMA|REASSIGN|DO|CALL|GRANT|REVOKE|REFRESH|SELECT INTO)/;

/**
 * Statements whose effect on what names mean may stay with the session where the catalog cannot see
 * it: DDL (temporary relations, or anything before COMMIT), SET/RESET (search_path, role),
 * set_config, DO/CALL, and unknown statements.
 */
function changesSessionNames(s: SqlStatementInfo | undefined): boolean {
	return changesCatalog(s) || s!.kinds.some((k) => /^(SET|RESET)\b/.test(k)) || s!.functions.some((f) => f === "set_config" || f.endsWith(".set_config"));
}

/** A `COPY ... TO STDOUT` (not to a server file or program): its rows reach the client as CopyData. */
function copiesToClient(s: SqlStatementInfo): boolean {
	return s.kinds.includes("COPY TO") && !s.kinds.includes("COPY FILE") && !s.kinds.includes("COPY PROGRAM");
}

function changesCatalog(s: SqlStatementInfo | undefined): boolean {
	return s === undefined || CATALOG_KINDS.test(s.kind) || s.kinds.some((k) => CATALOG_KINDS.test(k));
}

/** The statements an execute or simple unit runs (an unknown portal statement as `undefined`). */
function unitStatements(u: Unit | undefined): (SqlStatementInfo | undefined)[] | undefined {
	if (u?.k === "simple") return u.statements;
	if (u?.k === "execute") return u.portal.stmt?.analysis.ok ? u.portal.stmt.analysis.statements : [undefined];
	return undefined;
}

/** Kinds that may create or rename functions (an unknown statement counts), see SessionCatalog.routinesUnseen. */
const ROUTINE_KINDS = /FUNCTION|PROCEDURE|AGGREGATE|ROUTINE|EXTENSION|^DO|^CALL/;

function mayCreateRoutines(s: SqlStatementInfo | undefined): boolean {
	return s === undefined || ROUTINE_KINDS.test(s.kind) || s.kinds.some((k) => ROUTINE_KINDS.test(k));
}

function rowsOf(tag: string, counted: number): number {
	const n = Number(tag.slice(tag.lastIndexOf(" ") + 1));
	return Number.isFinite(n) && /\d$/.test(tag) ? n : counted;
}

function round(ms: number): number {
	return Math.round(ms * 1000) / 1000;
}


function describeSubject(s: import("../config/bundle.ts").SubjectMatcher): string {
	switch (s.kind) {
		case "User":
			return `user:${s.name}`;
		case "Group":
			return `group:${s.name}`;
		case "ServiceAccount":
			return `serviceaccount:${s.namespace}/${s.name}`;
		case "Claims":
			return `claims(${Object.entries(s.claims)
				.map(([k, v]) => `${k}=${v}`)
				.join(",")})`;
	}
}

async function waitWithTimeout(
	approvals: ApprovalService,
	id: string,
	signal: AbortSignal,
	timeoutMs: number,
): Promise<ApprovalRequestRecord> {
	const ctl = new AbortController();
	const onAbort = () => ctl.abort(signal.reason);
	// The session may have closed while the request was being created: an abort listener added to an
	// aborted signal never fires, and the request would stay Pending until its timeout.
	if (signal.aborted) onAbort();
	else signal.addEventListener("abort", onAbort, { once: true });
	const timer = setTimeout(() => ctl.abort(new Error("timed out")), timeoutMs);
	try {
		return await approvals.waitForDecision(id, ctl.signal);
	} finally {
		clearTimeout(timer);
		signal.removeEventListener("abort", onAbort);
	}
}

/** Big-endian int32 at `at`; returns the offset after it. */
function putInt32(b: Buffer, at: number, v: number): number {
	b[at] = v >>> 24;
	b[at + 1] = v >>> 16;
	b[at + 2] = v >>> 8;
	b[at + 3] = v;
	return at + 4;
}

/** src[from, to) into dst at `at`; returns the offset after it. Small ranges by hand (see maskRow). */
function copyRange(src: Buffer, from: number, to: number, dst: Buffer, at: number): number {
	const n = to - from;
	if (n > 64) return at + src.copy(dst, at, from, to);
	for (let i = 0; i < n; i++) dst[at + i] = src[from + i]!;
	return at + n;
}

function isAscii(b: Buffer, from: number, to: number): boolean {
	for (let i = from; i < to; i++) if (b[i]! > 0x7f) return false;
	return true;
}

/**
 * Error and notice text with the values PostgreSQL formats into it removed: everything between
 * the first and the last double quote (a value can itself contain quotes: `('"' || phone)::int`),
 * the same for single quotes, key/value pairs of constraint errors, everything after the first
 * `: ` (PostgreSQL appends values there unquoted: `operator does not exist: <text>` for
 * `::regoper`, dotted names for `::regclass`/`::regconfig`; `translate(phone, '0123456789',
 * 'abcdefghij')::regoper` spelled a phone out in letters), and every token holding a digit
 * (`chr(n)`, `make_date(y, m, d)`, `get_byte(b, n)` and invalid byte sequences print numbers and
 * bytes unquoted). What is left is the message's template.
 */
export function scrubValues(text: string): string {
	return text
		.replace(/: [\s\S]*$/, ": ***")
		.replace(/\([^()]*\)=\([^()]*\)/g, "(***)=(***)")
		.replace(/"[\s\S]*"|"[\s\S]*$/, '"***"')
		.replace(/'[\s\S]*'|'[\s\S]*$/, "'***'")
		.replace(/[^\s"',;()]*\d[^\s"',;()]*/g, "***");
}

/** A RowDescription with the chosen columns (all by default) named `column1`, `column2`... (as VALUES names them). */
function renamedColumns(fields: FieldDescription[], which: (i: number) => boolean = () => true): Buffer {
	return serverMessages.rowDescription(fields.map((f, i) => (which(i) ? { ...f, name: `column${i + 1}` } : f)));
}
