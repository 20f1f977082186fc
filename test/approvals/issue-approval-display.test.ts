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
import { test } from "node:test";
import { SLACK_COMMAND_CHARS } from "../../gateway/approvals/webhook.ts";
import { input } from "./fixtures.ts";
import { approvalSurfaces } from "./surfaces.ts";

const SECRET = "whsec-display-0123456789";
/** Reordering, overwriting and invisible characters an agent can put in its own statement. */
const HIDDEN = ["\u202e", "\u2066", "\u2069", "\u200f", "\u061c", "\r", "\u001b", "\u0008", "\u200b", "\u2028", "\ufeff", "\u{e0041}"];
const TROJAN = "DELETE FROM tickets --\u202e1 = di EREHW\u2066\r\u001b[2K\u0008\u200b\u2028\ufeff\u{e0041}\u200f\u061c\u2069";

const s = approvalSurfaces(SECRET);

function assertNothingHidden(text: string, where: string): void {
	for (const ch of HIDDEN) {
		assert.ok(!text.includes(ch), `${where} carries U+${ch.codePointAt(0)!.toString(16).padStart(4, "0")} raw: ${JSON.stringify(text)}`);
	}
}

test("Slack shows reordering, overwriting and invisible characters of a command as escapes", async () => {
	const held = await s.service.request(input({ command: TROJAN, sessionId: "slack-trojan" }));
	await s.notifier.idle();
	const body = s.slack.bodies.find((b) => b.includes(held.id));
	assert.ok(body, "the request was announced");
	const message = JSON.parse(body) as { text: string; blocks: { text?: { text: string } }[] };
	const code = message.blocks.map((b) => b.text?.text ?? "").find((t) => t.startsWith("```"));
	assert.ok(code, "the command is in a code block");
	assertNothingHidden(code, "the Slack code block");
	assertNothingHidden(JSON.stringify(message), "the Slack message");
	assert.match(code, /--\\u202e1 = di EREHW\\u2066\\r\\x1b\[2K\\x08\\u200b\\u2028\\ufeff\\u\{e0041\}\\u200f\\u061c\\u2069/);
	// the stored request keeps the exact text (reuse compares it; the CLI escapes it for terminals)
	assert.equal((await s.service.get(held.id))?.command, TROJAN);
});

test("a command longer than a Slack block says how much of it is shown", async () => {
	const command = `DELETE FROM tickets WHERE id = 1 /* ${"x".repeat(SLACK_COMMAND_CHARS)} */; DELETE FROM tickets`;
	const held = await s.service.request(input({ command, sessionId: "slack-long" }));
	await s.notifier.idle();
	const body = s.slack.bodies.find((b) => b.includes(held.id));
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
	const held = await s.service.request(input({ command: TROJAN, sessionId: "web-trojan" }));
	const page = await s.browser.newPage();
	page.on("dialog", (d) => void d.accept());
	await page.goto(`${s.base}/approvals/${held.id}?decision=approve`);
	await page.fill("#token", await s.oidc.idToken("sam"));
	await page.click("#save");
	await page.waitForSelector("pre");
	const shown = (await page.textContent("pre")) ?? "";
	assertNothingHidden(shown, "the page's command");
	assert.match(shown, /^DELETE FROM tickets --\\u202e1 = di EREHW\\u2066\\r\\x1b\[2K/);
	const heading = (await page.textContent("h3")) ?? "";
	assert.match(heading, new RegExp(`${TROJAN.length} characters, 1 lines`));
	// the list view too
	await page.goto(`${s.base}/approvals`);
	await page.waitForSelector("table");
	assertNothingHidden((await page.textContent("table")) ?? "", "the list");
	await page.close();
});
