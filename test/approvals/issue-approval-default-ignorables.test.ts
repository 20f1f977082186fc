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
import { test } from "node:test";
import { formatList, formatRecord } from "../../cli/approvals.ts";
import { input } from "./fixtures.ts";
import { approvalSurfaces } from "./surfaces.ts";

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

const s = approvalSurfaces(SECRET);

function assertNothingHidden(text: string, where: string): void {
	for (const ch of IGNORABLE) {
		assert.ok(!text.includes(ch), `${where} carries U+${ch.codePointAt(0)!.toString(16).padStart(4, "0")} raw: ${JSON.stringify(text)}`);
	}
}

test("Slack shows default-ignorable characters of a command as escapes", async () => {
	const held = await s.service.request(input({ command: COMMAND, sessionId: "slack-ignorable" }));
	await s.notifier.idle();
	const bodies = s.slack.bodies.filter((b) => b.includes(held.id));
	assert.ok(bodies.length > 0, "the request was announced");
	for (const body of bodies) assertNothingHidden(JSON.stringify(JSON.parse(body)), "the Slack message");
	const code = (JSON.parse(bodies[0]!) as { blocks: { text?: { text: string } }[] }).blocks.map((b) => b.text?.text ?? "").find((t) => t.startsWith("```"));
	assert.ok(code, "the command is in a code block");
	assert.ok(code.includes(ESCAPED), code);
});

test("the web page shows them as escapes", async () => {
	const held = await s.service.request(input({ command: COMMAND, sessionId: "web-ignorable" }));
	const page = await s.browser.newPage();
	page.on("dialog", (d) => void d.accept());
	await page.goto(`${s.base}/approvals/${held.id}`);
	await page.fill("#token", await s.oidc.idToken("sam"));
	await page.click("#save");
	await page.waitForSelector("pre");
	const shown = (await page.textContent("pre")) ?? "";
	assertNothingHidden(shown, "the page's command");
	assert.equal(shown, ESCAPED);
	await page.goto(`${s.base}/approvals`);
	await page.waitForSelector("table");
	assertNothingHidden((await page.textContent("table")) ?? "", "the list");
	await page.close();
});

test("drawbridge approvals show and list print them as escapes", async () => {
	const held = await s.service.request(input({ command: COMMAND, sessionId: "cli-ignorable" }));
	const record = await s.service.get(held.id);
	assert.ok(record);
	const shown = formatRecord(record);
	assertNothingHidden(shown, "approvals show");
	assert.ok(shown.includes(`    ${ESCAPED}\n`), shown);
	assertNothingHidden(formatList([record]), "approvals list");
});
