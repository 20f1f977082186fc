/**
 * `drawbridge approvals list | show | approve | deny` — talks to a gateway's admin REST API
 * (gateway/approvals/routes.ts) with the caller's bearer token. The gateway verifies the token and
 * applies every rule (no self-approval, approver subjects, expiry); this client only formats.
 */
import { readFile } from "node:fs/promises";
import { request as httpRequest } from "node:http";
import { request as httpsRequest } from "node:https";
import { homedir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { describeRequester, describeSubjects } from "../gateway/approvals/decision.ts";
import type { ApprovalRequestRecord } from "../gateway/approvals/types.ts";
import { LoginError, oidcLogin } from "./approvals-login.ts";
import { terminalSafe } from "./terminal-text.ts";

const DEFAULT_SERVER = "http://127.0.0.1:8080";
const API = "/api/v1/approvals";

export const HELP = `Usage: drawbridge approvals <command> [options]

Commands:
  login                sign in with your OIDC provider; stores your ID token in the token file
  list                 approval requests you may see (default: Pending only)
  show <id>            one request: command, requester, rule, approvers, decisions
  approve <id>         record your approval
  deny <id>            deny the request (any deny ends it)

Options:
  --server URL         gateway admin URL (env DRAWBRIDGE_SERVER; default ${DEFAULT_SERVER})
  --token TOKEN        bearer token (your OIDC ID token or a service-account token); visible to
                       other local users in the process list: prefer the alternatives below
  --token-file FILE    read the token from FILE (env DRAWBRIDGE_TOKEN_FILE)
                       (env DRAWBRIDGE_TOKEN holds the token itself; default file
                       ~/.config/drawbridge/token)
  --ca-file FILE       PEM CA bundle to trust for an https server
  --phase PHASE        list: Pending (default), Approved, Denied, Expired, Cancelled or all
  -m, --comment TEXT   approve/deny: a comment stored with your decision
  --json               print the server's JSON instead of text
  -h, --help           this help

Login options (authorization code + PKCE, loopback redirect http://127.0.0.1:<port>/callback):
  --issuer URL         OIDC issuer (env DRAWBRIDGE_OIDC_ISSUER)
  --client-id ID       OIDC client (env DRAWBRIDGE_OIDC_CLIENT_ID; default drawbridge)
  --client-secret S    only for confidential clients (env DRAWBRIDGE_OIDC_CLIENT_SECRET)
  --login-hint NAME    pre-fill the user name at the provider
  --token-file FILE    where to store the token (default ~/.config/drawbridge/token, mode 0600)

Token precedence: --token, --token-file, DRAWBRIDGE_TOKEN, DRAWBRIDGE_TOKEN_FILE, the default file.

Exit status: 0 done; 1 refused by the gateway (401 token, 403 self-approval or not an approver,
404 unknown id, 409 already decided, 410 expired) or gateway unreachable; 2 usage error.
`;

export interface CliIo {
	env: Record<string, string | undefined>;
	stdout: (s: string) => void;
	stderr: (s: string) => void;
}

const defaultIo = (): CliIo => ({
	env: process.env,
	stdout: (s) => void process.stdout.write(s),
	stderr: (s) => void process.stderr.write(s),
});

class UsageError extends Error {}

interface HttpResult {
	status: number;
	body: unknown;
}

function call(server: URL, method: string, path: string, token: string, ca: string | undefined, body?: unknown): Promise<HttpResult> {
	const url = new URL(path, server);
	const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
	const send = url.protocol === "https:" ? httpsRequest : httpRequest;
	return new Promise((resolve, reject) => {
		const req = send(
			url,
			{
				method,
				headers: {
					authorization: `Bearer ${token}`,
					accept: "application/json",
					...(payload ? { "content-type": "application/json", "content-length": String(payload.length) } : {}),
				},
				...(ca && url.protocol === "https:" ? { ca } : {}),
				timeout: 30_000,
			},
			(res) => {
				const chunks: Buffer[] = [];
				res.on("data", (c: Buffer) => chunks.push(c));
				res.on("end", () => {
					const text = Buffer.concat(chunks).toString("utf8");
					let parsed: unknown = text;
					try {
						parsed = text ? JSON.parse(text) : undefined;
					} catch {
						// not JSON: keep the text
					}
					resolve({ status: res.statusCode ?? 0, body: parsed });
				});
				res.on("error", reject);
			},
		);
		req.on("timeout", () => req.destroy(new Error("request timed out")));
		req.on("error", reject);
		req.end(payload);
	});
}

async function resolveToken(values: { token?: string; "token-file"?: string }, env: CliIo["env"]): Promise<string> {
	const fromFile = async (file: string, explicit: boolean): Promise<string | undefined> => {
		try {
			return (await readFile(file, "utf8")).trim();
		} catch (err) {
			if (explicit) throw new UsageError(`cannot read token file ${file}: ${(err as Error).message}`);
			return undefined;
		}
	};
	let token: string | undefined = values.token;
	if (!token && values["token-file"]) token = await fromFile(values["token-file"], true);
	if (!token && env.DRAWBRIDGE_TOKEN) token = env.DRAWBRIDGE_TOKEN.trim();
	if (!token && env.DRAWBRIDGE_TOKEN_FILE) token = await fromFile(env.DRAWBRIDGE_TOKEN_FILE, true);
	if (!token) token = await fromFile(defaultTokenFile(env), false);
	if (!token) throw new UsageError("no token: run `drawbridge approvals login`, pass --token-file FILE, or set DRAWBRIDGE_TOKEN");
	return token;
}

/**
 * Plain http is for a gateway or provider on this machine only (development, `drawbridge dev`, a port
 * forward). Every request carries the approver's token, an OIDC ID token the gateway also accepts on
 * its data paths and for approving: sent in clear to `http://gateway.example.com` (a typo, an old
 * bookmark, DRAWBRIDGE_SERVER), anyone on the path could use it as the approver.
 */
function loopbackHost(hostname: string): boolean {
	const h = hostname.toLowerCase();
	return h === "localhost" || h === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(h);
}

function defaultTokenFile(env: CliIo["env"]): string {
	return join(env.HOME ?? homedir(), ".config", "drawbridge", "token");
}

async function login(
	values: { issuer?: string; "client-id"?: string; "client-secret"?: string; "login-hint"?: string; "token-file"?: string; "login-timeout-seconds"?: string },
	extra: string | undefined,
	io: CliIo,
): Promise<number> {
	if (extra !== undefined) throw new UsageError("login takes no arguments");
	const issuer = values.issuer ?? io.env.DRAWBRIDGE_OIDC_ISSUER;
	if (!issuer) throw new UsageError("login needs --issuer (or DRAWBRIDGE_OIDC_ISSUER)");
	if (!/^https?:\/\//.test(issuer)) throw new UsageError("--issuer must be an http(s) URL");
	let issuerUrl: URL;
	try {
		issuerUrl = new URL(issuer);
	} catch {
		throw new UsageError(`--issuer: not a URL: ${issuer}`);
	}
	if (issuerUrl.protocol === "http:" && !loopbackHost(issuerUrl.hostname)) {
		throw new UsageError(`--issuer ${issuerUrl.origin}: plain http: only to this machine; the sign-in's code, verifier and token would cross the network in clear`);
	}
	const timeoutSec = Number(values["login-timeout-seconds"] ?? 300);
	if (!Number.isFinite(timeoutSec) || timeoutSec <= 0) throw new UsageError("--login-timeout-seconds must be a positive number");
	const secret = values["client-secret"] ?? io.env.DRAWBRIDGE_OIDC_CLIENT_SECRET;
	try {
		const result = await oidcLogin({
			issuer,
			clientId: values["client-id"] ?? io.env.DRAWBRIDGE_OIDC_CLIENT_ID ?? "drawbridge",
			...(secret ? { clientSecret: secret } : {}),
			...(values["login-hint"] ? { loginHint: values["login-hint"] } : {}),
			scopes: ["openid", "email", "profile", "groups"],
			tokenFile: values["token-file"] ?? io.env.DRAWBRIDGE_TOKEN_FILE ?? defaultTokenFile(io.env),
			timeoutMs: timeoutSec * 1000,
			announce: (url) => io.stderr(`Open this URL in your browser to sign in:\n\n  ${url}\n\nWaiting for the sign-in to finish...\n`),
		});
		io.stdout(`Signed in as ${result.email ?? result.subject}; token saved to ${result.tokenFile} (expires ${result.expiresAt.toISOString()}).\n`);
		return 0;
	} catch (err) {
		if (err instanceof LoginError) {
			io.stderr(`drawbridge approvals login: ${err.message}\n`);
			return 1;
		}
		throw err;
	}
}

function ago(iso: string, now: Date): string {
	const sec = Math.round((Date.parse(iso) - now.getTime()) / 1000);
	const abs = Math.abs(sec);
	const text = abs < 120 ? `${abs}s` : abs < 7200 ? `${Math.round(abs / 60)}m` : `${Math.round(abs / 3600)}h`;
	return sec >= 0 ? `in ${text}` : `${text} ago`;
}

function who(r: ApprovalRequestRecord): string {
	return describeRequester(r);
}

function approverList(r: ApprovalRequestRecord): string {
	return describeSubjects(r.approvers);
}

function oneLine(s: string, max: number): string {
	const flat = s.replace(/\s+/g, " ").trim();
	return flat.length > max ? `${flat.slice(0, max - 1)}…` : flat;
}

export function formatList(items: ApprovalRequestRecord[], now = new Date()): string {
	if (items.length === 0) return "No approval requests.\n";
	const rows = items.map((r) => [
		r.id,
		r.phase,
		who(r),
		r.connection,
		`${r.decisions.filter((d) => d.decision === "approve").length}/${r.minApprovals}`,
		r.phase === "Pending" ? ago(r.expiresAt, now) : (r.decidedAt ?? "").slice(0, 19),
		oneLine(r.command, 60),
	].map((c) => terminalSafe(c)));
	const header = ["ID", "PHASE", "REQUESTER", "CONNECTION", "APPROVALS", "EXPIRES/DECIDED", "COMMAND"];
	const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
	const fmt = (row: string[]) => `${row.map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!))).join("  ")}\n`;
	return fmt(header) + rows.map(fmt).join("");
}

export function formatRecord(r: ApprovalRequestRecord, now = new Date()): string {
	const lines = [
		`Approval ${r.id}: ${r.phase}${r.reason ? ` (${r.reason})` : ""}`,
		`  Requester:  ${who(r)} (issuer ${r.requester.issuer})`,
		`  Connection: ${r.connection} (${r.protocol}), grant ${r.grant}`,
		`  Rule:       ${r.rule}`,
		`  Session:    ${r.sessionId}`,
		`  Approvers:  ${approverList(r)} (${r.minApprovals} approval${r.minApprovals === 1 ? "" : "s"} needed)`,
		`  Created:    ${r.createdAt}`,
		`  Expires:    ${r.expiresAt}${r.phase === "Pending" ? ` (${ago(r.expiresAt, now)})` : ""}`,
	];
	if (r.decidedAt) lines.push(`  Decided:    ${r.decidedAt}`);
	if (r.reuseWindowSeconds) lines.push(`  Reuse:      the same command may run again for ${r.reuseWindowSeconds}s after approval`);
	lines.push("  Command:");
	for (const l of r.command.split("\n")) lines.push(`    ${l}`);
	if (r.decisions.length > 0) {
		lines.push("  Decisions:");
		for (const d of r.decisions) lines.push(`    ${d.at}  ${d.decision.padEnd(7)} ${d.by}${d.comment ? `: ${d.comment}` : ""}`);
	}
	if (r.phase === "Pending") lines.push(`  Approve with: ${r.approveHint}`);
	// The command and the names in it are the requester's text: what the approver sees is what runs.
	return `${lines.map((l) => terminalSafe(l)).join("\n")}\n`;
}

function serverError(result: HttpResult): string {
	const err = (result.body as { error?: { code?: string; message?: string } } | undefined)?.error;
	if (err?.message) return `${err.message} (HTTP ${result.status}, ${err.code ?? "error"})`;
	return `HTTP ${result.status}${typeof result.body === "string" && result.body ? `: ${oneLine(result.body, 200)}` : ""}`;
}

export async function main(argv: string[], io: CliIo = defaultIo()): Promise<number> {
	let parsed: ReturnType<typeof parse>;
	function parse() {
		return parseArgs({
			args: argv,
			allowPositionals: true,
			strict: true,
			options: {
				server: { type: "string" },
				token: { type: "string" },
				"token-file": { type: "string" },
				"ca-file": { type: "string" },
				phase: { type: "string" },
				comment: { type: "string", short: "m" },
				json: { type: "boolean" },
				help: { type: "boolean", short: "h" },
				issuer: { type: "string" },
				"client-id": { type: "string" },
				"client-secret": { type: "string" },
				"login-hint": { type: "string" },
				"login-timeout-seconds": { type: "string" },
			},
		});
	}
	try {
		parsed = parse();
	} catch (err) {
		io.stderr(`drawbridge approvals: ${(err as Error).message}\n\n${HELP}`);
		return 2;
	}
	const { values, positionals } = parsed;
	const [command, id, ...extra] = positionals;
	if (values.help || command === "help") {
		io.stdout(HELP);
		return 0;
	}
	try {
		if (!command) throw new UsageError("missing command");
		if (command === "login") return await login(values, id, io);
		if (!["list", "show", "approve", "deny"].includes(command)) throw new UsageError(`unknown command "${command}"`);
		if (command === "list" ? id !== undefined : id === undefined || extra.length > 0) {
			throw new UsageError(command === "list" ? "list takes no arguments" : `${command} needs exactly one approval id`);
		}
		if (values.comment !== undefined && command !== "approve" && command !== "deny") throw new UsageError("--comment is only for approve and deny");
		if (values.phase !== undefined && command !== "list") throw new UsageError("--phase is only for list");
		const serverText = values.server ?? io.env.DRAWBRIDGE_SERVER ?? DEFAULT_SERVER;
		let server: URL;
		try {
			server = new URL(serverText.endsWith("/") ? serverText : `${serverText}/`);
		} catch {
			throw new UsageError(`--server: not a URL: ${serverText}`);
		}
		if (server.protocol !== "http:" && server.protocol !== "https:") throw new UsageError("--server must be an http or https URL");
		if (server.protocol === "http:" && !loopbackHost(server.hostname)) {
			throw new UsageError(
				`--server ${server.origin}: plain http: only to this machine (127.0.0.1, localhost, [::1]); use https: — the request carries your token, which opens the data paths as you`,
			);
		}
		const ca = values["ca-file"] ? await readFile(values["ca-file"], "utf8").catch((e: Error) => {
			throw new UsageError(`cannot read --ca-file: ${e.message}`);
		}) : undefined;
		const token = await resolveToken(values, io.env);
		const base = server.pathname.replace(/\/+$/, "") + API;

		let result: HttpResult;
		try {
			if (command === "list") {
				const phase = values.phase ?? "Pending";
				const query = phase === "all" ? "" : `?phase=${encodeURIComponent(phase)}`;
				result = await call(server, "GET", base + query, token, ca);
			} else if (command === "show") {
				result = await call(server, "GET", `${base}/${encodeURIComponent(id!)}`, token, ca);
			} else {
				const body = values.comment !== undefined ? { comment: values.comment } : {};
				result = await call(server, "POST", `${base}/${encodeURIComponent(id!)}/${command}`, token, ca, body);
			}
		} catch (err) {
			io.stderr(`drawbridge approvals: cannot reach ${server.origin}: ${(err as Error).message}\n`);
			return 1;
		}
		if (result.status < 200 || result.status >= 300) {
			io.stderr(`drawbridge approvals ${command}${id ? ` ${id}` : ""}: ${serverError(result)}\n`);
			return 1;
		}
		if (values.json) {
			io.stdout(`${JSON.stringify(result.body, null, 2)}\n`);
			return 0;
		}
		if (command === "list") {
			io.stdout(formatList((result.body as { items: ApprovalRequestRecord[] }).items));
		} else {
			const record = result.body as ApprovalRequestRecord;
			if (command !== "show") {
				const outcome =
					record.phase === "Pending"
						? `recorded your ${command === "approve" ? "approval" : "denial"}; still Pending (${record.decisions.filter((d) => d.decision === "approve").length}/${record.minApprovals} approvals)`
						: `now ${record.phase}`;
				io.stdout(`${record.id}: ${outcome}\n`);
			} else {
				io.stdout(formatRecord(record));
			}
		}
		return 0;
	} catch (err) {
		if (err instanceof UsageError) {
			io.stderr(`drawbridge approvals: ${err.message}\nRun \`drawbridge approvals --help\` for usage.\n`);
			return 2;
		}
		throw err;
	}
}
