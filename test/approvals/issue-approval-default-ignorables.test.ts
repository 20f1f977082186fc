/**
 * Red-team regression (approvals, round 11): what approvers read must be what runs, and the characters
 * that hid parts of a held command from them were a list of general categories (controls, format,
 * separators) that left out the other default-ignorable code points: Hangul fillers, variation
 * selectors, the combining grapheme joiner. An agent's statement carrying them reached Slack, the
 * approvals web page and `drawbridge approvals show` raw (the CLI escaped only controls and bidi
 * characters, not even zero-width ones). Every surface now shows them as escapes, with the one
 * predicate the grants-repository loader refuses (crds/text.ts). A real Slack stand-in (an HTTP
 * server), a real browser (chromium) on the real admin routes, the CLI's own formatting.
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
import { verifyWebhookSignature, WebhookNotifier } from "../../gateway/approvals/webhook.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import { type OidcHandle, printLogsOnFailure, startOidc } from "../env/index.ts";
import { formatList, formatRecord } from "../../cli/approvals.ts";
import { input } from "./fixtures.ts";

const SECRET = "whsec-ignorable-0123456789";
/**
 * Default-ignorable code points that are not format characters (general category Lo, Mn or Cn), so
 * `[\p{Cc}\p{Cf}\p{Zl}\p{Zp}]` let them through: Hangul fillers (U+115F, U+1160, U+3164, U+FFA0),
 * variation selectors (U+FE0F, U+E0100), the combining grapheme joiner (U+034F), a Mongolian free
 * variation selector (U+180B), an unassigned default-ignorable (U+2065). Each renders as nothing or
 * as blank space, so `tickets<U+3164>` and `tickets` read the same to an approver.
 */
const IGNORABLE = ["\u115f", "\u1160", "\u3164", "\uffa0", "\ufe0f", "\u{e0100}", "\u034f", "\u180b", "\u2065"];
const COMMAND = `DELETE FROM tickets${IGNORABLE.join("")} WHERE id = 1`;
/** How every surface shows them. */
const ESCAPED = "DELETE FROM tickets\\u115f\\u1160\\u3164\\uffa0\\ufe0f\\u{e0100}\\u034f\\u180b\\u2065 WHERE id = 1";

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
	for (const ch of IGNORABLE) {
		assert.ok(!text.includes(ch), `${where} carries U+${ch.codePointAt(0)!.toString(16).padStart(4, "0")} raw: ${JSON.stringify(text)}`);
	}
}

test("Slack shows default-ignorable characters of a command as escapes", async () => {
	const held = await service.request(input({ command: COMMAND, sessionId: "slack-ignorable" }));
	await notifier.idle();
	const bodies = slack.bodies.filter((b) => b.includes(held.id));
	assert.ok(bodies.length > 0, "the request was announced");
	for (const body of bodies) assertNothingHidden(JSON.stringify(JSON.parse(body)), "the Slack message");
	const code = (JSON.parse(bodies[0]!) as { blocks: { text?: { text: string } }[] }).blocks.map((b) => b.text?.text ?? "").find((t) => t.startsWith("```"));
	assert.ok(code, "the command is in a code block");
	assert.ok(code.includes(ESCAPED), code);
});

test("the web page shows them as escapes", async () => {
	const held = await service.request(input({ command: COMMAND, sessionId: "web-ignorable" }));
	const page = await browser.newPage();
	page.on("dialog", (d) => void d.accept());
	await page.goto(`${base}/approvals/${held.id}`);
	await page.fill("#token", await oidc.idToken("sam"));
	await page.click("#save");
	await page.waitForSelector("pre");
	const shown = (await page.textContent("pre")) ?? "";
	assertNothingHidden(shown, "the page's command");
	assert.equal(shown, ESCAPED);
	await page.goto(`${base}/approvals`);
	await page.waitForSelector("table");
	assertNothingHidden((await page.textContent("table")) ?? "", "the list");
	await page.close();
});

test("drawbridge approvals show and list print them as escapes", async () => {
	const held = await service.request(input({ command: COMMAND, sessionId: "cli-ignorable" }));
	const record = await service.get(held.id);
	assert.ok(record);
	const shown = formatRecord(record);
	assertNothingHidden(shown, "approvals show");
	assert.ok(shown.includes(`    ${ESCAPED}\n`), shown);
	assertNothingHidden(formatList([record]), "approvals list");
});
