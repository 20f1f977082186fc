/**
 * Regression (red-team of the auditor web viewer): recorded text reached the auditor's page with its
 * bidi overrides, zero-width characters, `\r` and ESC intact (HTML-escaped, but not made visible). The
 * recorded agent writes that text, so it decides what the auditor reads: `DELETE FROM accounts
 * --<U+202E>1 = di EREHW` shows as `DELETE FROM accounts --WHERE id = 1`, a bounded delete, in the
 * timeline of a session that deleted every row; a zero-width space makes `secrets` not match a search
 * of the page. The approvals page already showed such characters as escapes (issue-approval-display);
 * the viewer does the same now for every recorded value it renders: statements, commands, SFTP and
 * Kubernetes paths, identity names, errors.
 *
 * Real components: the recorder writes the session into a directory store; the viewer (fastify)
 * renders it; the page loaded in Chromium is checked too.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { Browser } from "playwright-core";
import { sessionPrefix } from "../../gateway/recording/format.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { makeRecorder, meta, tempDir, viewerInChromium } from "./fixtures.ts";

const RLO = "\u202e";
const ZWSP = "\u200b";
const LRI = "\u2066";
const session = meta({
	protocol: "postgres",
	identity: { issuer: "https://idp.test", subject: "mallory", username: `mallory${RLO}nimda`, groups: [] },
});
let viewer: Awaited<ReturnType<typeof viewerInChromium>> | undefined;
let browser: Browser;
let url: string;

before(async () => {
	const store = new DirStore(await tempDir("viewer-hidden-store"));
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("viewer-hidden-spool"));
	try {
		const s = await rec.openSession(session);
		s.emit({ type: "statement", sql: `DELETE FROM accounts --${RLO}1 = di EREHW`, statementKinds: ["delete"], decision: "allow", rows: 5000, commandTag: "DELETE 5000" });
		s.emit({ type: "exec", command: `rm -rf /srv/data\r\u001b[2Kls -l`, decision: "allow", exitCode: 0 });
		s.emit({ type: "sftp", op: "read", path: `/etc/${LRI}shadow`, decision: "allow", bytes: 1024 });
		s.emit({ type: "kube.request", verb: "get", resource: "secrets", namespace: "prod", name: `db${ZWSP}`, path: `/api/v1/namespaces/prod/secrets/db${ZWSP}`, decision: "allow", status: 200 });
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

const HIDDEN = /[\u202e\u200b\u2066\r\u001b]/;

test("issue viewer-hidden-text: recorded bidi, zero-width, CR and ESC characters are shown as escapes", async () => {
	const headers = { authorization: "Bearer auditor" };
	const page = await viewer!.app.inject({ url: `/viewer/session?prefix=${encodeURIComponent(sessionPrefix(session))}`, headers });
	assert.equal(page.statusCode, 200);
	assert.doesNotMatch(page.body, HIDDEN);
	assert.ok(page.body.includes("DELETE FROM accounts --\\u202e1 = di EREHW"), "the override is named where it was");
	assert.ok(page.body.includes("rm -rf /srv/data\\r\\x1b[2Kls -l"));
	assert.ok(page.body.includes("/etc/\\u2066shadow"));
	assert.ok(page.body.includes("secrets/db\\u200b"));
	assert.ok(page.body.includes("mallory\\u202enimda"));
	const list = await viewer!.app.inject({ url: "/viewer/", headers });
	assert.doesNotMatch(list.body, HIDDEN);
	assert.ok(list.body.includes("mallory\\u202enimda"));
	// The JSON API keeps the recorded bytes as they are (it is data, not a rendering).
	const json = await viewer!.app.inject({ url: `/viewer/api/session?prefix=${encodeURIComponent(sessionPrefix(session))}`, headers });
	assert.ok(JSON.parse(json.body).events.some((e: { sql?: string }) => e.sql?.includes(RLO)));
});

test("issue viewer-hidden-text: in Chromium the timeline reads as what ran", async () => {
	const context = await browser.newContext({ extraHTTPHeaders: { authorization: "Bearer auditor" } });
	const page = await context.newPage();
	await page.goto(`${url}/viewer/session?prefix=${encodeURIComponent(sessionPrefix(session))}`);
	const sql = await page.locator("#timeline tr.ev-statement td.sql").textContent();
	assert.equal(sql, "DELETE FROM accounts --\\u202e1 = di EREHW");
	assert.doesNotMatch(String(await page.locator("body").textContent()), HIDDEN);
	await context.close();
});
