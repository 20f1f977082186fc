/**
 * Regression (red-team of the auditor web viewer): terminal playback reordered what the terminal
 * showed. A terminal does not run the bidi algorithm, so output holding `FED CBA` after a U+202E
 * (RIGHT-TO-LEFT OVERRIDE) reads `FED CBA` there; asciinema-player draws the screen as HTML text and
 * the browser reordered it to `ABC DEF`, and dropped zero-width characters from view. A recorded
 * agent could make the auditor's replay read differently from what was on the screen. The player now
 * gets the stream with format characters (bidi controls, zero-width, separators) as U+FFFD; the
 * downloadable terminal.cast keeps the recorded bytes.
 *
 * Real components: the recorder writes an SSH-style terminal stream into a directory store; the viewer
 * (fastify) serves the page and the player; headless Chromium plays it (the browser's layout is what
 * reordered the text).
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Browser } from "playwright-core";
import { sessionPrefix } from "../../gateway/recording/format.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { makeRecorder, meta, tempDir, viewerInChromium } from "./fixtures.ts";

const OUTPUT = "$ ls\r\nMARK1 \u202eFED CBA\u202c MARK2 zero\u200bwidth\u2028END\r\n$ ";
const ssh = meta({ protocol: "ssh", connection: "db-primary", target: { login: "lee" } });
let viewer: Awaited<ReturnType<typeof viewerInChromium>> | undefined;
let browser: Browser;
let url: string;

before(async () => {
	const store = new DirStore(await tempDir("viewer-player-bidi-store"));
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("viewer-player-bidi-spool"));
	try {
		const s = await rec.openSession(ssh);
		s.emit({ type: "terminal", stream: "r", data: "80x12" });
		s.emit({ type: "terminal", stream: "o", data: OUTPUT });
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
	viewer = await viewerInChromium(store);
	({ url, browser } = viewer);
});

after(async () => {
	await viewer?.close();
});

/** Poll from the test side (the viewer's CSP forbids the page-side eval that waitForFunction needs). */
async function until(check: () => Promise<boolean>, what: string): Promise<void> {
	for (let i = 0; i < 300; i++) {
		if (await check()) return;
		await new Promise((r) => setTimeout(r, 100));
	}
	throw new Error(`gave up waiting for ${what}`);
}

test("issue viewer-player-bidi: the player shows format characters as U+FFFD, so the browser reorders nothing", async () => {
	const context = await browser.newContext({ extraHTTPHeaders: { authorization: "Bearer auditor" } });
	const page = await context.newPage();
	await page.goto(`${url}/viewer/session?prefix=${encodeURIComponent(sessionPrefix(ssh))}`);
	await page.waitForSelector("#player .ap-player, #player .ap-wrapper", { timeout: 15_000 });
	await page.click("#player");
	await until(async () => /MARK2/.test((await page.textContent("#player")) ?? ""), "the playback shows the output");
	const shown = (await page.textContent("#player")) ?? "";
	assert.doesNotMatch(shown, /[\u202e\u202c\u200b\u2028]/, JSON.stringify(shown));
	assert.match(shown, /MARK1 \ufffdFED CBA\ufffd MARK2 zero\ufffdwidth\ufffdEND/);
	// The download is the recording as it is.
	const href = (await page.getAttribute("#download-cast", "href"))!;
	const raw = await page.evaluate(async (h) => (await fetch(h)).text(), href);
	const event = JSON.parse(raw.split("\n").find((l) => l.includes("MARK1"))!) as [number, string, string];
	assert.equal(event[2], OUTPUT);
	await context.close();
});
