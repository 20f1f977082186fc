/**
 * `drawbridge quickstart`: the newcomer's minute. Starts `drawbridge dev` on examples/ and walks a
 * scripted agent through journeys 1 and 2 of the product story, printing what happened:
 *
 *   1. the CI deployer (read-only, 2h) reads customers: emails and card numbers come back masked;
 *      its UPDATE fails with SQLSTATE 42501 naming the read-only grant.
 *   2. the support bot (read-write) sends a DELETE: it is held; the bot cannot approve itself; the
 *      demo approver (a support lead) approves it and the bot gets its row count. DROP TABLE is blocked.
 *   3. every session was recorded: listed and verified, with copy-paste lines to look further.
 *
 * Then it keeps running (Ctrl-C stops) unless --exit is given.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { listSessions, loadStoreKeys } from "../gateway/recording/catalog.ts";
import { DirStore } from "../gateway/recording/store.ts";
import { verifySession } from "../gateway/recording/verify.ts";
import { connectionHints, DevEnvironment, parseDevOptions } from "./dev.ts";

export const QUICKSTART_HELP = `Usage: drawbridge quickstart [dev options] [--exit]

Starts Drawbridge standalone on the examples/ grants repository (see \`drawbridge dev --help\` for
the options), runs a scripted agent through a masked query, a refused write, a held DELETE approved
by a demo approver and a blocked DROP, shows the recordings, and leaves everything running.

  --exit        stop after the scripted agent (for CI)
  -h, --help    show this help
`;

const CI_GRANT = "default/ci-deployer-orders-ro";
const BOT_GRANT = "default/support-bot-tickets-rw";
const APPROVER = { user: "sam@example.com", groups: ["support-leads"] };

type Out = (line?: string) => void;

export interface QuickstartResult {
	masked: boolean;
	updateRefused: boolean;
	deleteApproved: boolean;
	selfApprovalRefused: boolean;
	dropBlocked: boolean;
	recordings: number;
	verified: number;
}

function clientFor(env: DevEnvironment, database: string, token: string): pg.Client {
	return new pg.Client({
		host: "127.0.0.1",
		port: env.ports.postgres,
		database,
		user: "agent",
		password: token,
		ssl: { ca: readFileSync(env.tls!.caFile, "utf8"), servername: "localhost" },
		application_name: "drawbridge-quickstart-agent",
	});
}

async function approve(env: DevEnvironment, id: string, token: string): Promise<{ status: number; body: Record<string, unknown> }> {
	const res = await fetch(`http://127.0.0.1:${env.ports.admin}/api/v1/approvals/${id}/approve`, {
		method: "POST",
		headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
		body: JSON.stringify({ comment: "quickstart demo approver" }),
	});
	return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

/** The scripted agent. Returns what happened, for the test. */
export async function runScriptedAgent(env: DevEnvironment, out: Out): Promise<QuickstartResult> {
	const result: QuickstartResult = {
		masked: false,
		updateRefused: false,
		deleteApproved: false,
		selfApprovalRefused: false,
		dropBlocked: false,
		recordings: 0,
		verified: 0,
	};

	out("── Journey 1: a CI job reads production for one deploy ─────────────────────────────");
	const ci = clientFor(env, "orders-prod", await env.grantToken(CI_GRANT));
	await ci.connect();
	out(`ci/deployer connected to orders-prod with a token bound to grant ${CI_GRANT} (no database password)`);
	const rows = await ci.query("SELECT id, name, email, card_number FROM customers ORDER BY id LIMIT 3");
	out("$ SELECT id, name, email, card_number FROM customers ORDER BY id LIMIT 3");
	for (const r of rows.rows as { id: number; name: string; email: string; card_number: string }[]) {
		out(`  ${String(r.id).padEnd(3)} ${r.name.padEnd(18)} ${r.email.padEnd(30)} ${r.card_number}`);
	}
	result.masked = rows.rows.every((r: { email: string; card_number: string }) => r.email.includes("*") && /^\*+\d{4}$/.test(r.card_number));
	out(result.masked ? "  → emails and card numbers were masked by MaskingPolicy customer-pii" : "  → WARNING: values were not masked");
	out("$ UPDATE customers SET name = 'x' WHERE id = 1");
	try {
		await ci.query("UPDATE customers SET name = 'x' WHERE id = 1");
		out("  → WARNING: the update ran");
	} catch (err) {
		const e = err as { code?: string; message: string };
		result.updateRefused = e.code === "42501";
		out(`  → ERROR ${e.code}: ${e.message}`);
	}
	await ci.end();

	out("");
	out("── Journey 2: an AI agent meets a guardrail ─────────────────────────────────────────");
	// A second quickstart on the same state directory finds last run's old tickets deleted.
	env.restoreDemoTickets("tickets-prod");
	const botToken = await env.grantToken(BOT_GRANT);
	const bot = clientFor(env, "tickets-prod", botToken);
	await bot.connect();
	out(`support/support-bot connected to tickets-prod (read-write, grant ${BOT_GRANT})`);
	const pending = new Promise<string>((resolve) => {
		bot.on("notice", (n: { message?: string }) => {
			out(`  NOTICE: ${n.message}`);
			const id = /\b(ar-[a-z0-9-]+)\b/.exec(n.message ?? "")?.[1];
			if (id) resolve(id);
		});
	});
	// The rule reuses an approval of the very same command for 10 minutes (reuseWindow), so a run
	// soon after another would see this DELETE go through at once: the comment makes each run's its own.
	const cleanup = `DELETE FROM tickets WHERE created < now() - interval '1 year' -- quickstart ${new Date().toISOString()}`;
	out(`$ ${cleanup}`);
	const deletion = bot.query(cleanup);
	deletion.catch(() => {});
	// Never wait for a hold that is not coming: a DELETE that ends first was not held.
	const first = await Promise.race([pending, deletion.then(() => undefined, () => undefined)]);
	if (first === undefined) out("  → the DELETE was not held for approval");
	else {
		const id = first;
		const self = await approve(env, id, botToken);
		result.selfApprovalRefused = self.status === 403;
		out(`  the bot tries to approve ${id} itself → HTTP ${self.status}: ${String((self.body.error as { message?: string } | undefined)?.message ?? "")}`);
		const approverToken = await env.userToken(APPROVER.user, APPROVER.groups);
		const ok = await approve(env, id, approverToken);
		out(`  ${APPROVER.user} (group support-leads) approves ${id} → HTTP ${ok.status}, phase ${String(ok.body.phase)}`);
		try {
			const res = await deletion;
			result.deleteApproved = ok.status === 200 && (res.rowCount ?? 0) > 0;
			out(`  → DELETE ${res.rowCount}`);
		} catch (err) {
			out(`  → ERROR: ${(err as Error).message}`);
		}
	}
	out("$ DROP TABLE tickets");
	try {
		await bot.query("DROP TABLE tickets");
		out("  → WARNING: the table was dropped");
	} catch (err) {
		const e = err as { code?: string; message: string };
		result.dropBlocked = e.code === "42501";
		out(`  → ERROR ${e.code}: ${e.message}`);
	}
	await bot.end();

	out("");
	out("── Evidence: every session is recorded ──────────────────────────────────────────────");
	await env.gateway?.flushRecordings();
	const store = new DirStore(env.recordingsDir);
	const sessions = await listSessions(store, {});
	const keys = await loadStoreKeys(store);
	result.recordings = sessions.length;
	for (const s of sessions) {
		const v = await verifySession(store, s.prefix, keys.set);
		if (v.ok) result.verified++;
		out(`  ${s.prefix}  ${v.ok ? "verified" : `NOT VERIFIED: ${v.problems.map((p) => p.message).join("; ")}`}`);
	}
	return result;
}

export async function main(argv: string[]): Promise<number> {
	const exit = argv.includes("--exit");
	const rest = argv.filter((a) => a !== "--exit");
	if (rest.includes("--help") || rest.includes("-h")) {
		process.stdout.write(QUICKSTART_HELP);
		return 0;
	}
	const options = parseDevOptions(rest);
	if (options === "help") {
		process.stdout.write(QUICKSTART_HELP);
		return 0;
	}
	const out: Out = (line = "") => process.stdout.write(`${line}\n`);
	out("Starting Drawbridge standalone on examples/ …");
	const env = new DevEnvironment(options);
	await env.start();
	let result: QuickstartResult;
	try {
		result = await runScriptedAgent(env, out);
	} catch (err) {
		await env.stop();
		throw err;
	}
	const all =
		result.masked && result.updateRefused && result.deleteApproved && result.selfApprovalRefused && result.dropBlocked && result.verified === result.recordings;
	out("");
	out(all ? "All journeys behaved as expected." : "Some step did not behave as expected (see above).");
	out("");
	out("Where to look next:");
	out(`  recordings:  npm run -s drawbridge -- recordings list --dir ${env.recordingsDir}`);
	out(`               npm run -s drawbridge -- recordings show --dir ${env.recordingsDir} <session-id>`);
	out(`               npm run -s drawbridge -- recordings replay --dir ${env.recordingsDir} <session-id>`);
	out(`  approvals:   http://127.0.0.1:${env.ports.admin}/approvals`);
	out(`  metrics:     http://127.0.0.1:${env.ports.admin}/metrics`);
	out("  connect yourself:");
	for (const line of connectionHints(env)) out(line);
	out(`  grants:      edit and commit files under examples/; dev mode applies them within a second`);
	out(`  state:       ${join(options.stateDir)}`);
	if (exit) {
		await env.stop();
		return all ? 0 : 1;
	}
	out("");
	out("Drawbridge keeps running; Ctrl-C stops it.");
	return new Promise<number>((resolveExit) => {
		const stop = () => void env.stop().then(() => resolveExit(0));
		process.once("SIGINT", stop);
		process.once("SIGTERM", stop);
	});
}
