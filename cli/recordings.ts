/**
 * `drawbridge recordings list | show | replay | verify | export | keys` — the auditor's tools. They
 * read the recording store directly (MinIO/S3 with read access, or a local directory in standalone
 * mode) through the same `RecordingStore` the gateway writes with; no gateway needs to run.
 */
import { readFile } from "node:fs/promises";
import { parseArgs } from "node:util";
import type { JWK } from "jose";
import {
	listIncompleteSessions,
	listSessionFolders,
	type LoadedSession,
	listSessions,
	loadSession,
	loadStoreKeys,
	matches,
	resolveSession,
	type SessionFilter,
	type SessionSummary,
	summaryOfDocument,
} from "../gateway/recording/catalog.ts";
import { RecordingError } from "../gateway/recording/errors.ts";
import type { StoredEvent } from "../gateway/recording/events.ts";
import type { SessionDocument } from "../gateway/recording/format.ts";
import { type PublicKeySet, publicKeySet } from "../gateway/recording/keys.ts";
import { DirStore, parseEndpoint, type RecordingStore, S3Store } from "../gateway/recording/store.ts";
import { readSignedDocument, type VerifiedContent, verifyAndRead, verifySession } from "../gateway/recording/verify.ts";
import { ReplayFilter, terminalSafe } from "./terminal-text.ts";

const STORE_HELP = `Store (one of):
  --dir DIR              a local recordings directory (standalone mode)   env DRAWBRIDGE_RECORDINGS_DIR
  --endpoint URL         S3/MinIO endpoint, http(s)://host:port           env DRAWBRIDGE_S3_ENDPOINT
  --bucket NAME          bucket (default drawbridge-recordings)           env DRAWBRIDGE_S3_BUCKET
  --access-key KEY       access key                                       env AWS_ACCESS_KEY_ID
  --secret-key SECRET    secret key (prefer the env variable)             env AWS_SECRET_ACCESS_KEY
  --region REGION        region (default us-east-1)                       env AWS_REGION
Flags win over the environment; --dir wins over --endpoint.`;

const FILTER_HELP = `Filters:
  --identity NAME        user name or subject (* wildcard), e.g. ci-deployer or 'user:*@example.com'
  --grant NS/NAME        grant (* wildcard)
  --connection NAME      connection (exact names scan only that connection's folders)
  --protocol P           postgres | ssh | kubernetes
  --since TIME           started at or after (RFC 3339 or YYYY-MM-DD, UTC)
  --until TIME           started before
  --blocked              only sessions with a blocked or denied command (--no-blocked: without)
  --approvals            only sessions with just-in-time approvals (--no-approvals: without)`;

export const HELP = `Usage: drawbridge recordings <command> [options]

Commands:
  list                 sessions matching the filters, oldest first
  show <session>       a readable timeline: statements, commands, requests, decisions, approvals
  replay <session>     terminal sessions in the terminal; SQL/Kubernetes sessions as a timed log
  verify [<session>]   check chunk hashes, the hash chain and the manifest signature (all
                       matching sessions with --all)
  export               JSON Lines, one event per line with its session context, for a SIEM
  keys                 print the recording public keys published in the store (JWKS)

<session> is a session id or its key prefix (recordings/YYYY/MM/DD/<connection>/<id>/).
Run \`drawbridge recordings <command> --help\` for the command's options.

${STORE_HELP}

Exit status: 0 ok; 1 verification failed or nothing found; 2 usage error; 3 store unreachable.
`;

const COMMAND_HELP: Record<string, string> = {
	list: `Usage: drawbridge recordings list [filters] [--json]

Lists closed sessions. Uses the date folders and object metadata, so a month of recordings lists
without reading a single session body. Progress goes to stderr on a terminal (or with --progress).

${FILTER_HELP}
  --json                 one JSON object per line instead of a table
  --progress             progress on stderr even when it is not a terminal
  --incomplete           instead: session folders without a signed manifest (still open, still
                         uploading from a gateway's spool, or damaged) or without session.json
                         (damaged: not listed otherwise); connection/session/time filters apply

${STORE_HELP}
`,
	show: `Usage: drawbridge recordings show <session> [--terminal] [--no-verify] [--json]

Prints the session (who, grant and its approving commit/PR, connection, client, times, end reason,
counts, verification result) and its timeline.
  --terminal             include terminal input/output in the timeline (default: a summary)
  --no-verify            skip verification
  --json                 the session document and events as JSON
  --key FILE             trusted public key(s) for verification (see verify --help)
  --keys-url URL         trust the JWKS a gateway's admin server serves (see verify --help)

${STORE_HELP}
`,
	replay: `Usage: drawbridge recordings replay <session> [--speed N] [--max-idle SECONDS]

Terminal sessions write the recorded output to this terminal with the original timing (as
\`asciinema play terminal.cast\` does, but only text and the escape sequences that draw reach the
terminal: clipboard writes, queries and reports are dropped). SQL and Kubernetes sessions print a
timed statement/request log.
  --speed N              play N times faster (default 1)
  --max-idle SECONDS     cap pauses at this length (default: no cap)
  --no-verify            replay without verifying first (by default a recording that does not
                         verify is not replayed; the result goes to stderr)
  --key FILE             trusted public key(s) for verification (see verify --help)
  --keys-url URL         trust the JWKS a gateway's admin server serves (see verify --help)

${STORE_HELP}
`,
	verify: `Usage: drawbridge recordings verify <session> | --all [filters]

Checks that every chunk listed in the signed manifest is present, unmodified and in order (SHA-256
and the previous-chunk chain), that nothing was appended, that session.json and terminal.cast match
the manifest, and that the manifest is signed by a trusted recording key.
  --all                  verify every session matching the filters: every session folder of the
                         days and connection asked for is found from the key layout; the other
                         filters select by the signed session.json, and a folder without one that
                         verifies is always checked (it fails)
  --key FILE             trust these public keys (a JWK or a JWKS file; repeatable). In a cluster:
                         kubectl -n drawbridge-system get configmap drawbridge-recording-trusted-keys
                           -o jsonpath='{.data.keys\\.json}' > keys.json
                         Default: the keys published in the store under recordings/keys/, which
                         whoever can write the store can add to: a WARNING on stderr, and every
                         result says "UNPINNED" (JSON: "keys": "bucket" instead of "pinned").
  --keys-url URL         trust the JWKS a gateway serves (https://<admin>/api/v1/recordings/keys;
                         pinned only when that gateway runs with --recording-trusted-keys-file).
                         https: only (plain http: on a loopback address), no redirects, ≤ 1 MiB
  --json                 one JSON result per session
${FILTER_HELP}

${STORE_HELP}
`,
	export: `Usage: drawbridge recordings export [filters] [--out FILE]

Writes JSON Lines: one line per event with the session context (sessionId, protocol, identity,
subject, grant, connection, prefix, commit, pullRequest) merged in, oldest session first. Each
session is verified first (chosen and checked as by verify --all); one that fails is not exported.
Progress on stderr on a terminal (or with --progress).
  --out FILE             write to FILE instead of stdout
  --progress             progress on stderr even when it is not a terminal
  --key FILE             trusted public key(s) for verification (see verify --help)
  --keys-url URL         trust the JWKS a gateway's admin server serves (see verify --help)
  --include-unverified   also export sessions that fail verification, their lines marked
                         "unverified": true (by default they are left out and named on stderr;
                         either way the exit status is 1)
  --no-verify            export without verifying (sessions chosen by object metadata, as list)
${FILTER_HELP}

${STORE_HELP}
`,
	keys: `Usage: drawbridge recordings keys

Prints the JWKS of recording public keys published in the store.

${STORE_HELP}
`,
};

export interface CliIo {
	env: Record<string, string | undefined>;
	stdout: (s: string) => void;
	stderr: (s: string) => void;
	/** True when stderr is a terminal (progress display). */
	stderrIsTty: boolean;
	sleep: (ms: number) => Promise<void>;
}

const defaultIo = (): CliIo => ({
	env: process.env,
	stdout: (s) => void process.stdout.write(s),
	stderr: (s) => void process.stderr.write(s),
	stderrIsTty: Boolean(process.stderr.isTTY),
	sleep: (ms) => new Promise((r) => setTimeout(r, ms)),
});

class UsageError extends Error {}

const OPTIONS = {
	help: { type: "boolean", short: "h" },
	dir: { type: "string" },
	endpoint: { type: "string" },
	bucket: { type: "string" },
	"access-key": { type: "string" },
	"secret-key": { type: "string" },
	region: { type: "string" },
	identity: { type: "string" },
	grant: { type: "string" },
	connection: { type: "string" },
	protocol: { type: "string" },
	since: { type: "string" },
	until: { type: "string" },
	blocked: { type: "boolean" },
	"no-blocked": { type: "boolean" },
	approvals: { type: "boolean" },
	"no-approvals": { type: "boolean" },
	json: { type: "boolean" },
	progress: { type: "boolean" },
	terminal: { type: "boolean" },
	"no-verify": { type: "boolean" },
	"include-unverified": { type: "boolean" },
	key: { type: "string", multiple: true },
	"keys-url": { type: "string" },
	all: { type: "boolean" },
	speed: { type: "string" },
	"max-idle": { type: "string" },
	out: { type: "string" },
	incomplete: { type: "boolean" },
} as const;

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true }>>["values"];

export function storeFromFlags(values: Values, env: CliIo["env"]): RecordingStore {
	const dir = values.dir ?? env.DRAWBRIDGE_RECORDINGS_DIR;
	if (dir) return new DirStore(dir);
	const endpoint = values.endpoint ?? env.DRAWBRIDGE_S3_ENDPOINT;
	if (!endpoint) throw new UsageError("no recording store: pass --dir DIR or --endpoint URL (or set DRAWBRIDGE_RECORDINGS_DIR / DRAWBRIDGE_S3_ENDPOINT)");
	const accessKey = values["access-key"] ?? env.AWS_ACCESS_KEY_ID;
	const secretKey = values["secret-key"] ?? env.AWS_SECRET_ACCESS_KEY;
	if (!accessKey || !secretKey) throw new UsageError("S3 store needs --access-key and --secret-key (or AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)");
	return new S3Store({
		...parseEndpoint(endpoint),
		accessKey,
		secretKey,
		bucket: values.bucket ?? env.DRAWBRIDGE_S3_BUCKET ?? "drawbridge-recordings",
		region: values.region ?? env.AWS_REGION ?? "us-east-1",
	});
}

function parseTime(flag: string, v: string | undefined): Date | undefined {
	if (v === undefined) return undefined;
	const d = new Date(/^\d{4}-\d{2}-\d{2}$/.test(v) ? `${v}T00:00:00Z` : v);
	if (Number.isNaN(d.getTime())) throw new UsageError(`${flag}: not a time: ${JSON.stringify(v)} (use RFC 3339 or YYYY-MM-DD)`);
	return d;
}

export function filterFromFlags(values: Values): SessionFilter {
	const f: SessionFilter = {};
	if (values.identity) f.identity = values.identity;
	if (values.grant) f.grant = values.grant;
	if (values.connection) f.connection = values.connection;
	if (values.protocol) {
		if (!["postgres", "ssh", "kubernetes"].includes(values.protocol)) throw new UsageError(`--protocol must be postgres, ssh or kubernetes`);
		f.protocol = values.protocol;
	}
	const since = parseTime("--since", values.since);
	const until = parseTime("--until", values.until);
	if (since) f.since = since;
	if (until) f.until = until;
	if (values.blocked && values["no-blocked"]) throw new UsageError("--blocked and --no-blocked are exclusive");
	if (values.approvals && values["no-approvals"]) throw new UsageError("--approvals and --no-approvals are exclusive");
	if (values.blocked) f.hasBlocked = true;
	if (values["no-blocked"]) f.hasBlocked = false;
	if (values.approvals) f.hasApprovals = true;
	if (values["no-approvals"]) f.hasApprovals = false;
	return f;
}

/** Said on stderr, in `show` and in every `verify` result, whenever the keys came from the bucket. */
const BUCKET_KEYS_WARNING =
	"WARNING: no pinned keys: recordings are verified against the keys published in the recordings bucket itself; whoever can write the bucket can publish a key of their own and forge a recording that verifies. Pin keys with --key FILE (in a cluster: the ConfigMap drawbridge-recording-trusted-keys, key keys.json) or --keys-url";

/** The keys a verification trusts, and whether they were pinned by the caller or read from the bucket. */
interface TrustedKeys {
	set: PublicKeySet;
	source: "pinned" | "bucket";
}

const MAX_KEYS_BYTES = 1024 * 1024;

/**
 * The keys fetched from --keys-url decide what verifies, so they come over HTTPS; plain HTTP only
 * from this machine. Over plain HTTP to another host, whoever is on the path (or answers for the
 * name) serves their own key, and every recording they forge verifies as "pinned".
 */
function checkKeysUrl(value: string): void {
	let url: URL;
	try {
		url = new URL(value);
	} catch {
		throw new UsageError(`--keys-url ${JSON.stringify(value)} is not a URL`);
	}
	if (url.protocol === "https:") return;
	const loopback = url.hostname === "localhost" || url.hostname === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(url.hostname);
	if (url.protocol === "http:" && loopback) return;
	throw new UsageError(`--keys-url must be https: (plain http: only on a loopback address), got ${url.protocol}//${url.host}: keys fetched in the clear are no pin`);
}

async function trustedKeys(values: Values, store: RecordingStore, io: CliIo): Promise<TrustedKeys> {
	if (values["keys-url"]) {
		const url = values["keys-url"];
		checkKeysUrl(url);
		let body: { keys?: JWK[] };
		try {
			// No redirect: the keys come from the URL the auditor named (a redirect could go to plain
			// http, or to any host), and a JWKS is small.
			const r = await fetch(url, { signal: AbortSignal.timeout(10_000), redirect: "error" });
			if (!r.ok) throw new Error(`HTTP ${r.status}`);
			const raw = Buffer.from(await r.arrayBuffer());
			if (raw.length > MAX_KEYS_BYTES) throw new Error(`the answer is larger than ${MAX_KEYS_BYTES} bytes`);
			body = JSON.parse(raw.toString("utf8")) as { keys?: JWK[] };
		} catch (e) {
			throw new RecordingError("STORE_UNAVAILABLE", `cannot fetch recording keys from ${url}: ${(e as Error).message}`);
		}
		if (!Array.isArray(body.keys)) throw new UsageError(`--keys-url ${url} did not return a JWKS ({"keys": [...]})`);
		return { set: await publicKeySet(body.keys), source: "pinned" };
	}
	if (values.key && values.key.length > 0) {
		const jwks: JWK[] = [];
		for (const file of values.key) {
			const parsed = JSON.parse(await readFile(file, "utf8")) as JWK | { keys: JWK[] };
			if ("keys" in parsed && Array.isArray(parsed.keys)) jwks.push(...parsed.keys);
			else jwks.push(parsed as JWK);
		}
		return { set: await publicKeySet(jwks), source: "pinned" };
	}
	const { set } = await loadStoreKeys(store);
	io.stderr(`${BUCKET_KEYS_WARNING}\n(trusting the ${set.size} recording key(s) published in ${store.description})\n`);
	return { set, source: "bucket" };
}

function progressPrinter(io: CliIo, enabled: boolean, label: string) {
	let last = 0;
	return {
		update(done: number, total: number | undefined, extra: string) {
			if (!enabled) return;
			const now = Date.now();
			if (now - last < 100 && done !== total) return;
			last = now;
			const width = 24;
			const bar = total ? `[${"#".repeat(Math.round((done / total) * width)).padEnd(width, ".")}] ${done}/${total}` : `${done}`;
			io.stderr(`\r${label} ${bar} ${extra}\u001b[K`);
		},
		end() {
			if (enabled) io.stderr("\n");
		},
	};
}

function pad(s: string, n: number): string {
	return s.length >= n ? s : s + " ".repeat(n - s.length);
}

function formatTable(rows: string[][]): string {
	const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
	return `${rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : pad(c, widths[i]!))).join("  ")).join("\n")}\n`;
}

function flags(s: { hasBlocked: boolean; hasApprovals: boolean }): string {
	return `${s.hasBlocked ? "B" : "-"}${s.hasApprovals ? "A" : "-"}`;
}

function duration(ms: number): string {
	if (!Number.isFinite(ms) || ms < 0) return "?";
	const s = Math.floor(ms / 1000);
	if (s < 60) return `${(ms / 1000).toFixed(1)}s`;
	if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
	return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

function offset(ms: number): string {
	const sign = ms < 0 ? "-" : "+";
	ms = Math.abs(ms);
	const m = Math.floor(ms / 60000);
	const s = ((ms % 60000) / 1000).toFixed(3).padStart(6, "0");
	return `${sign}${String(m).padStart(2, "0")}:${s}`;
}


/**
 * One readable line per event (undefined for events summarised instead). Recorded text is the
 * agent's: control and bidi characters are shown escaped (cli/terminal-text.ts), never sent raw.
 * Texts (SQL, commands, notices) are shown whole and as recorded, newlines as `\n`: they were cut at
 * 160 characters with whitespace runs folded, so a statement padded past the cut (`SELECT 1 --
 * aaaa…` then a newline and `DELETE FROM accounts`) showed only its harmless start.
 */
export function describeEvent(e: StoredEvent): string | undefined {
	const line = describeEventRaw(e);
	return line === undefined ? undefined : terminalSafe(line);
}

function describeEventRaw(e: StoredEvent): string | undefined {
	const rule = "rule" in e && e.rule ? ` rule=${e.rule}` : "";
	const appr = "approvalId" in e && e.approvalId ? ` approval=${e.approvalId}` : "";
	switch (e.type) {
		case "statement": {
			const res: string[] = [];
			if (e.commandTag) res.push(e.commandTag);
			else if (e.rows !== undefined) res.push(`${e.rows} rows`);
			if (e.durationMs !== undefined) res.push(`${e.durationMs} ms`);
			if (e.error) res.push(`ERROR ${e.error.code} ${e.error.message}`);
			if (e.maskedColumns?.length) res.push(`masked ${e.maskedColumns.join(",")}`);
			if (e.resultRows?.length) res.push(`${e.resultRows.length} row(s) captured${e.resultRowsTruncated ? " (capped)" : ""}`);
			const params = e.params?.length ? ` params=${JSON.stringify(e.params)}` : "";
			return `SQL    ${pad(e.decision.toUpperCase(), 8)} ${e.sql}${params}${rule}${appr}${res.length ? `  → ${res.join("; ")}` : ""}`;
		}
		case "approval":
			return `APPROVAL ${pad(e.phase, 8)} ${e.approvalId} rule=${e.rule} ${e.command}${e.decidedBy?.length ? ` by ${e.decidedBy.join(", ")}` : ""}`;
		case "exec":
			return `EXEC   ${pad(e.decision.toUpperCase(), 8)} ${e.command}${rule}${appr}${e.exitCode !== undefined ? `  → exit ${e.exitCode}` : ""}${e.signal ? ` signal ${e.signal}` : ""}`;
		case "sftp":
			return `SFTP   ${pad(e.decision.toUpperCase(), 8)} ${e.op} ${e.path}${e.bytes !== undefined ? ` (${e.bytes} bytes)` : ""}`;
		case "kube.request": {
			const resource = e.resource ? `${e.resource}${e.subresource ? `/${e.subresource}` : ""}${e.name ? `/${e.name}` : ""}` : e.path;
			const target = [e.namespace ? `ns=${e.namespace}` : "", resource].filter(Boolean).join(" ");
			// The path (its query holds an exec's command, dryRun, fieldManager...) and the recorded body
			// (what a write wrote) are shown: the line said "create rolebindings" and nothing of whom it bound.
			const body = e.body !== undefined ? `  body=${JSON.stringify(e.body)}` : "";
			return `KUBE   ${pad(e.decision.toUpperCase(), 8)} ${e.verb} ${target}${rule}${appr}${e.status !== undefined ? `  → ${e.status}` : ""}${e.durationMs !== undefined ? ` ${e.durationMs} ms` : ""}  ${e.path}${body}`;
		}
		case "notice":
			return `NOTICE ${e.message}`;
		case "terminal":
			return undefined;
	}
}

function describeSession(doc: SessionDocument | undefined, prefix: string): string {
	if (!doc) return `Session at ${prefix}\n  (no session.json: the session is still open or uploading)\n`;
	const o = doc.origin;
	const approved = [o.commit ? `commit ${o.commit}` : "", o.pullRequest !== undefined ? `PR #${o.pullRequest}` : "", o.url ?? ""].filter(Boolean).join("  ");
	const c = doc.counts;
	return [
		`Session     ${doc.sessionId}  (${doc.protocol})`,
		`Identity    ${doc.identity.username}  sub=${doc.identity.subject}  issuer=${doc.identity.issuer}${doc.identity.groups.length ? `  groups=${doc.identity.groups.join(",")}` : ""}`,
		`Grant       ${doc.grant}${approved ? `  approved by ${approved}` : ""}`,
		`Connection  ${doc.connectionNamespace}/${doc.connection}  ${Object.entries(doc.target)
			.map(([k, v]) => `${k}=${v}`)
			.join(" ")}`,
		`Client      ${doc.client.address}${doc.client.port ? `:${doc.client.port}` : ""}${doc.client.application ? `  (${doc.client.application})` : ""}  via ${doc.gateway}`,
		`Time        ${doc.startedAt} → ${doc.endedAt}  (${duration(doc.durationMs)})`,
		`Ended       ${doc.end.reason}${doc.end.message ? `: ${doc.end.message}` : ""}${doc.recovered ? "  [closed by spool recovery]" : ""}`,
		`Counts      ${c.events} events: ${c.statements} statements, ${c.execs} commands, ${c.kubeRequests} kube requests, ${c.approvals} approval events, ${c.blocked} blocked, ${c.terminalBytes} terminal bytes${doc.droppedEvents ? `, ${doc.droppedEvents} DROPPED` : ""}`,
		`Location    ${prefix}`,
		"",
	]
		.map((l) => terminalSafe(l))
		.join("\n");
}

async function cmdList(values: Values, io: CliIo): Promise<number> {
	const store = storeFromFlags(values, io.env);
	const filter = filterFromFlags(values);
	if (values.incomplete) {
		const open = await listIncompleteSessions(store, filter);
		if (values.json) for (const s of open) io.stdout(`${JSON.stringify(s)}\n`);
		else if (open.length > 0) {
			const rows = [["DAY", "CONNECTION", "CHUNKS", "SESSION.JSON", "MANIFEST", "SESSION"]];
			for (const s of open) rows.push([s.day, s.connection, String(s.chunks), s.hasSessionJson ? "yes" : "no", s.hasManifest ? "yes" : "no", s.sessionId].map((c) => terminalSafe(c)));
			io.stdout(formatTable(rows));
			io.stdout(`${open.length} session folder(s) without a signed manifest or without session.json\n`);
		} else io.stderr("no incomplete sessions\n");
		return open.length > 0 ? 0 : 1;
	}
	const bar = progressPrinter(io, Boolean(values.progress) || io.stderrIsTty, "scanning");
	const sessions = await listSessions(store, filter, (p) => bar.update(p.prefixesScanned, p.prefixesTotal, `days, ${p.sessionsSeen} sessions, ${p.matched} match`));
	bar.end();
	if (values.json) {
		for (const s of sessions) io.stdout(`${JSON.stringify(s)}\n`);
	} else if (sessions.length > 0) {
		const rows = [["STARTED", "DURATION", "PROTOCOL", "IDENTITY", "CONNECTION", "GRANT", "FLAGS", "SESSION"]];
		for (const s of sessions) {
			rows.push([s.startedAt.replace(/\.\d+Z$/, "Z"), duration(Date.parse(s.endedAt) - Date.parse(s.startedAt)), s.protocol, s.identity, s.connection, s.grant, flags(s), s.sessionId].map((c) => terminalSafe(c)));
		}
		io.stdout(formatTable(rows));
		io.stdout(`${sessions.length} session(s). FLAGS: B = blocked/denied commands, A = just-in-time approvals\n`);
	} else {
		io.stderr("no sessions match\n");
	}
	return sessions.length > 0 ? 0 : 1;
}

function sessionArg(positionals: string[], cmd: string): string {
	const id = positionals[0];
	if (!id) throw new UsageError(`${cmd}: missing <session> (a session id or its prefix)`);
	if (positionals.length > 1) throw new UsageError(`${cmd}: unexpected arguments ${positionals.slice(1).join(" ")}`);
	return id;
}

/**
 * Object names, prefixes and key ids in a result come from the bucket: a writer can put terminal
 * controls in them (an object named to erase the FAILED lines above it), so each is made inert.
 */
function describeVerify(r: Awaited<ReturnType<typeof verifySession>>, source: TrustedKeys["source"]): string {
	const kid = terminalSafe(r.keyId ?? "");
	if (r.ok && source === "bucket") return `verified against UNPINNED keys from the bucket itself: ${r.chunks} chunk(s), ${r.events} event(s), manifest signed by key ${kid}\n`;
	if (r.ok) return `verified: ${r.chunks} chunk(s), ${r.events} event(s), manifest signed by pinned key ${kid}\n`;
	if (r.problems.length > 0 && r.problems.every((p) => p.kind === "lost")) {
		return `INCOMPLETE: everything verifies, but the gateway lost ${r.problems.length} chunk(s) from its spool before upload (signed as lost) for ${terminalSafe(r.prefix)}\n${r.problems.map((p) => `  - ${terminalSafe(p.message)}\n`).join("")}`;
	}
	return `VERIFICATION FAILED (${r.problems.length} problem(s)) for ${terminalSafe(r.prefix)}\n${r.problems.map((p) => `  - ${terminalSafe(p.message)}\n`).join("")}`;
}

async function cmdShow(values: Values, positionals: string[], io: CliIo): Promise<number> {
	const store = storeFromFlags(values, io.env);
	const prefix = await resolveSession(store, sessionArg(positionals, "show"), filterFromFlags(values));
	const keys = values["no-verify"] ? undefined : await trustedKeys(values, store, io);
	const checked = keys ? await verifyAndRead(store, prefix, keys.set) : undefined;
	const verified = checked && keys ? { ...checked.result, keys: keys.source } : undefined;
	// Verified: show exactly what was verified, not a second read of the store.
	const s = checked?.content ? fromVerified(prefix, checked.content) : await loadSession(store, prefix);
	if (values.json) {
		io.stdout(`${JSON.stringify({ prefix, session: s.document, verification: verified, events: s.events }, null, 2)}\n`);
		return verified && !verified.ok ? 1 : 0;
	}
	io.stdout(describeSession(s.document, prefix));
	if (verified) io.stdout(`Integrity   ${describeVerify(verified, verified.keys).replace(/\n(?=.)/g, "\n            ")}`);
	for (const u of s.unreadable) io.stdout(`WARNING     unreadable chunk: ${terminalSafe(u)}\n`);
	io.stdout("\nTimeline\n");
	let termOut = 0;
	let termIn = 0;
	// Typed input is listed line by line (replay plays the output only: what was typed without echo,
	// after `stty -echo` or at a prompt that does not echo, showed nowhere else).
	let typed = "";
	let typedAt = 0;
	const typedLine = () => {
		if (typed.trim() !== "") io.stdout(`  ${offset(typedAt)}  TYPED  ${terminalSafe(typed)}\n`);
		typed = "";
	};
	for (const e of s.events) {
		if (e.type === "terminal") {
			if (values.terminal) io.stdout(`  ${offset(e.offsetMs)}  TERM ${e.stream}  ${terminalSafe(JSON.stringify(e.data))}\n`);
			else if (e.stream === "o") termOut += Buffer.byteLength(e.data);
			else if (e.stream === "i") {
				termIn += Buffer.byteLength(e.data);
				for (const ch of e.data) {
					typed += ch;
					typedAt = e.offsetMs;
					if (ch === "\r" || ch === "\n") typedLine();
				}
			}
			continue;
		}
		io.stdout(`  ${offset(e.offsetMs)}  ${describeEvent(e)}\n`);
	}
	typedLine();
	if (termOut || termIn) io.stdout(`  (terminal: ${termOut} bytes output, ${termIn} bytes input; --terminal to list, \`replay\` to watch)\n`);
	return verified && !verified.ok ? 1 : 0;
}

async function cmdReplay(values: Values, positionals: string[], io: CliIo): Promise<number> {
	const store = storeFromFlags(values, io.env);
	const prefix = await resolveSession(store, sessionArg(positionals, "replay"), filterFromFlags(values));
	const speed = values.speed ? Number(values.speed) : 1;
	if (!(speed > 0)) throw new UsageError("--speed must be a positive number");
	const maxIdleMs = values["max-idle"] ? Number(values["max-idle"]) * 1000 : Number.POSITIVE_INFINITY;
	if (!(maxIdleMs > 0)) throw new UsageError("--max-idle must be a positive number of seconds");
	let s: LoadedSession;
	if (!values["no-verify"]) {
		// Say whether the terminal.cast or the chunks are what the gateway signed before playing them,
		// do not play what is not (unless asked to), and play the very bytes that were verified.
		const keys = await trustedKeys(values, store, io);
		const { result: v, content } = await verifyAndRead(store, prefix, keys.set);
		io.stderr(describeVerify(v, keys.source));
		if (!content) {
			io.stderr("drawbridge recordings replay: not replaying a recording that does not verify (--no-verify replays it anyway)\n");
			return 1;
		}
		s = fromVerified(prefix, content);
	} else s = await loadSession(store, prefix);
	const wait = async (fromMs: number, toMs: number) => {
		const gap = Math.min(maxIdleMs, Math.max(0, toMs - fromMs)) / speed;
		if (gap >= 1) await io.sleep(gap);
	};
	if (s.cast) {
		let prev = 0;
		const lines = s.cast.split("\n").filter(Boolean);
		// The output is the agent's: only sequences that draw reach the auditor's terminal.
		const filter = new ReplayFilter();
		for (const line of lines.slice(1)) {
			const [t, stream, data] = JSON.parse(line) as [number, string, string];
			if (stream !== "o") continue;
			await wait(prev, t * 1000);
			prev = t * 1000;
			const shown = filter.write(String(data));
			if (shown) io.stdout(shown);
		}
		io.stdout(`${filter.end()}\n`);
		return 0;
	}
	let prev = 0;
	io.stdout(describeSession(s.document, prefix));
	for (const e of s.events) {
		const line = describeEvent(e);
		if (!line) continue;
		await wait(prev, e.offsetMs);
		prev = e.offsetMs;
		io.stdout(`${offset(e.offsetMs)}  ${line}\n`);
	}
	return 0;
}

function fromVerified(prefix: string, c: VerifiedContent): LoadedSession {
	return { prefix, document: c.document, events: c.events, cast: c.cast, hasManifest: true, unreadable: [] };
}

/**
 * The session folders an audit (verify --all, export) covers: every folder of the days and connection
 * asked for, from the key layout; the other filters select by the signed session.json, and a folder
 * without one that checks out is always included (nothing trustworthy says it is not asked for).
 */
async function auditedSessions(store: RecordingStore, filter: SessionFilter, keys: TrustedKeys): Promise<string[]> {
	const out: { prefix: string; order: string }[] = [];
	for (const f of await listSessionFolders(store, filter)) {
		const doc = await readSignedDocument(store, f.prefix, keys.set);
		const summary = doc && summaryOfDocument(f.prefix, doc);
		// Oldest first: by the signed start time, else by the day of the folder.
		if (!summary || matches(summary, filter)) out.push({ prefix: f.prefix, order: summary?.startedAt ?? `${f.day}T` });
	}
	return out.sort((a, b) => (a.order < b.order ? -1 : a.order > b.order ? 1 : 0)).map((o) => o.prefix);
}

async function cmdVerify(values: Values, positionals: string[], io: CliIo): Promise<number> {
	const store = storeFromFlags(values, io.env);
	const keys = await trustedKeys(values, store, io);
	let prefixes: string[];
	if (values.all) {
		if (positionals.length) throw new UsageError("verify: give a session or --all, not both");
		// Every session folder in the days and connection asked for, found from the key layout (not from
		// session.json or its unsigned metadata, which a bucket writer can delete or rewrite to hide a
		// session). Other filters select by the signed session.json; a folder without one that verifies
		// is always checked (and fails): nothing trustworthy says it is not one of those asked for.
		prefixes = await auditedSessions(store, filterFromFlags(values), keys);
		if (prefixes.length === 0) {
			io.stderr("no sessions match\n");
			return 1;
		}
	} else prefixes = [await resolveSession(store, sessionArg(positionals, "verify"), filterFromFlags(values))];
	let failed = 0;
	const bar = progressPrinter(io, prefixes.length > 1 && (Boolean(values.progress) || io.stderrIsTty), "verifying");
	for (let i = 0; i < prefixes.length; i++) {
		const r = await verifySession(store, prefixes[i]!, keys.set);
		if (!r.ok) failed++;
		if (values.json) io.stdout(`${JSON.stringify({ ...r, keys: keys.source })}\n`);
		else if (prefixes.length === 1 || !r.ok) io.stdout(`${terminalSafe(prefixes[i]!)}: ${describeVerify(r, keys.source)}`);
		bar.update(i + 1, prefixes.length, `${failed} failed`);
	}
	bar.end();
	if (prefixes.length > 1 && !values.json) {
		io.stdout(`${prefixes.length - failed} of ${prefixes.length} session(s) verified, ${failed} failed${keys.source === "bucket" ? " (against UNPINNED keys from the bucket itself)" : ""}\n`);
	}
	return failed > 0 ? 1 : 0;
}

function context(s: SessionSummary | SessionDocument, prefix: string): Record<string, unknown> {
	if ("format" in s) {
		return {
			sessionId: s.sessionId,
			protocol: s.protocol,
			identity: s.identity.username,
			subject: s.identity.subject,
			grant: s.grant,
			connection: s.connection,
			commit: s.origin.commit,
			pullRequest: s.origin.pullRequest,
			prefix,
		};
	}
	return { sessionId: s.sessionId, protocol: s.protocol, identity: s.identity, subject: s.subject, grant: s.grant, connection: s.connection, commit: s.commit, pullRequest: s.pullRequest, prefix };
}

async function cmdExport(values: Values, io: CliIo): Promise<number> {
	const store = storeFromFlags(values, io.env);
	const filter = filterFromFlags(values);
	const keys = values["no-verify"] ? undefined : await trustedKeys(values, store, io);
	// Verified: chosen like verify --all (key layout + signed session.json). --no-verify: by metadata.
	const sessions: { prefix: string; summary?: SessionSummary }[] = keys
		? (await auditedSessions(store, filter, keys)).map((prefix) => ({ prefix }))
		: (await listSessions(store, filter)).map((summary) => ({ prefix: summary.prefix, summary }));
	const failed: string[] = [];
	let exported = 0;
	let write = io.stdout;
	let finish = async () => {};
	if (values.out) {
		const { createWriteStream } = await import("node:fs");
		const out = createWriteStream(values.out);
		write = (s) => void out.write(s);
		finish = () => new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
	}
	const bar = progressPrinter(io, Boolean(values.progress) || io.stderrIsTty, "exporting");
	let events = 0;
	for (let i = 0; i < sessions.length; i++) {
		const { prefix, summary } = sessions[i]!;
		let unverified = false;
		let verifiedContent: VerifiedContent | undefined;
		if (keys) {
			const { result: v, content } = await verifyAndRead(store, prefix, keys.set);
			verifiedContent = content;
			if (!v.ok) {
				failed.push(`${prefix}: ${v.problems[0]?.message ?? "does not verify"}${v.problems.length > 1 ? ` (and ${v.problems.length - 1} more)` : ""}`);
				unverified = true;
			}
		}
		if (unverified && !values["include-unverified"]) continue;
		const s = verifiedContent ? fromVerified(prefix, verifiedContent) : await loadSession(store, prefix);
		const ctx = s.document ? context(s.document, prefix) : summary ? context(summary, prefix) : { prefix };
		if (unverified) ctx.unverified = true;
		for (const e of s.events) {
			write(`${JSON.stringify({ ...ctx, ...e, sessionSeq: e.seq })}\n`);
			events++;
		}
		exported++;
		bar.update(i + 1, sessions.length, `sessions, ${events} events`);
	}
	bar.end();
	await finish();
	io.stderr(`exported ${events} event(s) from ${exported} session(s)${keys?.source === "bucket" ? " (verified against UNPINNED keys from the bucket itself)" : keys ? "" : " (not verified)"}\n`);
	if (failed.length > 0) {
		io.stderr(
			`${failed.length} session(s) failed verification${values["include-unverified"] ? ', exported with "unverified": true' : " and were NOT exported (--include-unverified exports them marked)"}:\n${failed.map((f) => `  - ${terminalSafe(f)}\n`).join("")}`,
		);
		return 1;
	}
	return sessions.length > 0 ? 0 : 1;
}

async function cmdKeys(values: Values, io: CliIo): Promise<number> {
	const store = storeFromFlags(values, io.env);
	const { jwks } = await loadStoreKeys(store);
	io.stdout(`${JSON.stringify({ keys: jwks }, null, 2)}\n`);
	return jwks.length > 0 ? 0 : 1;
}

export async function main(argv: string[], io: CliIo = defaultIo()): Promise<number> {
	const [cmd, ...rest] = argv;
	if (!cmd || cmd === "--help" || cmd === "-h" || cmd === "help") {
		io.stdout(HELP);
		return cmd ? 0 : 2;
	}
	if (!COMMAND_HELP[cmd]) {
		io.stderr(`drawbridge recordings: unknown command ${JSON.stringify(cmd)}\n\n${HELP}`);
		return 2;
	}
	try {
		const { values, positionals } = parseArgs({ args: rest, options: OPTIONS, allowPositionals: true, strict: true });
		if (values.help) {
			io.stdout(COMMAND_HELP[cmd]!);
			return 0;
		}
		switch (cmd) {
			case "list":
				if (positionals.length) throw new UsageError(`list: unexpected arguments ${positionals.join(" ")}`);
				return await cmdList(values, io);
			case "show":
				return await cmdShow(values, positionals, io);
			case "replay":
				return await cmdReplay(values, positionals, io);
			case "verify":
				return await cmdVerify(values, positionals, io);
			case "export":
				return await cmdExport(values, io);
			case "keys":
				return await cmdKeys(values, io);
		}
		return 2;
	} catch (e) {
		if (e instanceof UsageError || (e as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
			io.stderr(`drawbridge recordings ${cmd}: ${(e as Error).message}\n(see drawbridge recordings ${cmd} --help)\n`);
			return 2;
		}
		if (e instanceof RecordingError) {
			io.stderr(`drawbridge recordings ${cmd}: ${terminalSafe(e.message)}\n`);
			return e.code === "STORE_UNAVAILABLE" ? 3 : 1;
		}
		throw e;
	}
}
