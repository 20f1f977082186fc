/**
 * Red-team regression (approvals): what approvers read must be what runs. The held command is the
 * agent's own text, and it reached the Slack message and the approvals web page with bidi overrides,
 * isolates, `\r`, ESC and zero-width characters intact: `DELETE FROM tickets --<U+202E>1 = di EREHW`
 * renders right to left as `DELETE FROM tickets --WHERE id = 1` (Trojan Source, CVE-2021-42574), so an
 * approver read a one-row delete and approved emptying the table. The CLI already escaped them for
 * terminals; Slack and the web page now show every such character as a visible escape. And a command
 * too long for one Slack block said so only with a trailing `…`: the message now says in words how
 * much is shown. A real Slack stand-in (`FakeSlackReceiver`, an HTTP server), a real browser
 * (chromium) on the real admin routes.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { type Browser, chromium } from "playwright-core";
import { LocalApprovalStore } from "../../gateway/approvals/local-store.ts";
import { registerApprovalRoutes, verifierAuthenticator } from "../../gateway/approvals/routes.ts";
import { StoreApprovalService } from "../../gateway/approvals/service.ts";
import { SLACK_COMMAND_CHARS, verifyWebhookSignature, WebhookNotifier } from "../../gateway/approvals/webhook.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import { type OidcHandle, printLogsOnFailure, startOidc } from "../env/index.ts";
import { input } from "./fixtures.ts";

const SECRET = "whsec-display-0123456789";
/** Reordering, overwriting and invisible characters an agent can put in its own statement. */
const HIDDEN = ["\u202e", "\u2066", "\u2069", "\u200f", "\u061c", "\r", "\u001b", "\u0008", "\u200b", "\u2028", "\ufeff", "\u{e0041}"];
const TROJAN = "DELETE FROM tickets --\u202e1 = di EREHW\u2066\r\u001b[2K\u0008\u200b\u2028\ufeff\u{e0041}\u200f\u061c\u2069";

/** Stands in for Slack: records the raw bodies of signed POSTs. */
class FakeSlackReceiver {
	readonly bodies: string[] = [];
	readonly #server: Server = createServer((req, res) => {
		const chunks: Buffer[] = [];
		req.on("data", (c: Buffer) => chunks.push(c));
		req.on("end", () => {
			const body = Buffer.concat(chunks).toString("utf8");
			const ok = verifyWebhookSignature(SECRET, req.headers["drawbridge-signature"] as string | undefined, body).ok;
			if (ok) this.bodies.push(body);
			res.writeHead(ok ? 200 : 401).end(ok ? "ok" : "bad signature");
		});
	});
	url = "";
	async start(): Promise<this> {
		await new Promise<void>((r) => this.#server.listen(0, "127.0.0.1", r));
		this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/services/T000/B000`;
		return this;
	}
	async stop(): Promise<void> {
		this.#server.closeAllConnections();
		await new Promise<void>((r) => this.#server.close(() => r()));
	}
}

let slack: FakeSlackReceiver;
let notifier: WebhookNotifier;
let service: StoreApprovalService;
let oidc: OidcHandle;
let app: FastifyInstance;
let browser: Browser;
let base: string;

before(async () => {
	[slack, oidc] = await Promise.all([new FakeSlackReceiver().start(), startOidc()]);
	notifier = new WebhookNotifier({ targets: [{ name: "slack", url: slack.url, secret: SECRET, format: "slack" }], initialBackoffMs: 50 });
	service = new StoreApprovalService({ store: new LocalApprovalStore(), notifier, sweepIntervalMs: 0, waitPollIntervalMs: 300 });
	const verifier = new TokenVerifier([
		{ name: "oidc", kind: "oidc", issuer: oidc.issuer, audiences: ["drawbridge"], jwksUri: oidc.jwksUri, algorithms: ["RS256"], usernameClaim: "email" },
	]);
	app = Fastify();
	await registerApprovalRoutes(app, { service, authenticate: verifierAuthenticator(verifier) });
	await app.listen({ port: 0, host: "127.0.0.1" });
	base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
	browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
});

after(async () => {
	await browser?.close();
	await app?.close();
	await service?.close();
	notifier?.close();
	await slack?.stop();
	await oidc?.stop();
});
printLogsOnFailure(() => [["oidc", oidc]]);

function assertNothingHidden(text: string, where: string): void {
	for (const ch of HIDDEN) {
		assert.ok(!text.includes(ch), `${where} carries U+${ch.codePointAt(0)!.toString(16).padStart(4, "0")} raw: ${JSON.stringify(text)}`);
	}
}

test("Slack shows reordering, overwriting and invisible characters of a command as escapes", async () => {
	const held = await service.request(input({ command: TROJAN, sessionId: "slack-trojan" }));
	await notifier.idle();
	const body = slack.bodies.find((b) => b.includes(held.id));
	assert.ok(body, "the request was announced");
	const message = JSON.parse(body) as { text: string; blocks: { text?: { text: string } }[] };
	const code = message.blocks.map((b) => b.text?.text ?? "").find((t) => t.startsWith("```"));
	assert.ok(code, "the command is in a code block");
	assertNothingHidden(code, "the Slack code block");
	assertNothingHidden(JSON.stringify(message), "the Slack message");
	assert.match(code, /--\\u202e1 = di EREHW\\u2066\\r\\x1b\[2K\\x08\\u200b\\u2028\\ufeff\\u\{e0041\}\\u200f\\u061c\\u2069/);
	// the stored request keeps the exact text (reuse compares it; the CLI escapes it for terminals)
	assert.equal((await service.get(held.id))?.command, TROJAN);
});

test("a command longer than a Slack block says how much of it is shown", async () => {
	const command = `DELETE FROM tickets WHERE id = 1 /* ${"x".repeat(SLACK_COMMAND_CHARS)} */; DELETE FROM tickets`;
	const held = await service.request(input({ command, sessionId: "slack-long" }));
	await notifier.idle();
	const body = slack.bodies.find((b) => b.includes(held.id));
	assert.ok(body);
	const message = JSON.parse(body) as { text: string; blocks: { type: string; text?: { text: string } }[] };
	const warning = message.blocks.map((b) => b.text?.text ?? "").find((t) => /Only the first/.test(t));
	assert.ok(warning, `a block says the command is cut: ${body.slice(0, 400)}`);
	assert.match(warning, new RegExp(`first ${SLACK_COMMAND_CHARS} of ${command.length} characters`));
	assert.match(message.text, /too long/);
	const code = message.blocks.map((b) => b.text?.text ?? "").find((t) => t.startsWith("```"));
	assert.ok(code && !code.includes("*/; DELETE FROM tickets"), "the tail is not in the code block");
});

test("the web page shows them as escapes too, and how long the command is", async () => {
	const held = await service.request(input({ command: TROJAN, sessionId: "web-trojan" }));
	const page = await browser.newPage();
	page.on("dialog", (d) => void d.accept());
	await page.goto(`${base}/approvals/${held.id}?decision=approve`);
	await page.fill("#token", await oidc.idToken("sam"));
	await page.click("#save");
	await page.waitForSelector("pre");
	const shown = (await page.textContent("pre")) ?? "";
	assertNothingHidden(shown, "the page's command");
	assert.match(shown, /^DELETE FROM tickets --\\u202e1 = di EREHW\\u2066\\r\\x1b\[2K/);
	const heading = (await page.textContent("h3")) ?? "";
	assert.match(heading, new RegExp(`${TROJAN.length} characters, 1 lines`));
	// the list view too
	await page.goto(`${base}/approvals`);
	await page.waitForSelector("table");
	assertNothingHidden((await page.textContent("table")) ?? "", "the list");
	await page.close();
});
