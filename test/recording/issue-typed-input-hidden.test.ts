/**
 * Regression (recordings red-team round 10, "the auditor tools show exactly what happened"). What an
 * agent typed into an SSH terminal is recorded (`terminal` `i` events), but the viewer's session page
 * showed only the player, which plays the output: after `stty -echo` (or in any program that does not
 * echo) the commands typed into a shell whose lines no rule checks were on no page of the viewer, only
 * in the JSON download; `drawbridge recordings show` summed them up as "N bytes input". Both timelines
 * now list typed lines (control keys as visible escapes) among the commands and notices. Real
 * recorder, directory store, CLI and viewer (fastify).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import Fastify from "fastify";
import { type CliIo, main } from "../../cli/recordings.ts";
import { registerViewer } from "../../gateway/admin/viewer.ts";
import { loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { sessionPrefix } from "../../gateway/recording/format.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { auditorIdentity, makeRecorder, meta, tempDir } from "./fixtures.ts";

test("show and the viewer's timeline show what was typed, echoed or not", async () => {
	const root = await tempDir("viewer-typed-store");
	const store = new DirStore(root);
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("viewer-typed-spool"));
	const m = meta({ protocol: "ssh", connection: "db-primary", target: { login: "lee" } });
	try {
		const s = await rec.openSession(m);
		s.emit({ type: "exec", command: "<shell>", decision: "allow" });
		s.emit({ type: "terminal", stream: "o", data: "$ " });
		s.emit({ type: "terminal", stream: "i", data: "stty -echo\r" });
		s.emit({ type: "terminal", stream: "o", data: "\r\n$ " });
		// typed key by key, not echoed
		for (const k of "rm -rf /srv/backups\r") s.emit({ type: "terminal", stream: "i", data: k });
		s.emit({ type: "terminal", stream: "o", data: "\r\n$ " });
		s.emit({ type: "terminal", stream: "i", data: "exit" });
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
	const out: string[] = [];
	const cli: CliIo = { env: {}, stdout: (x) => void out.push(x), stderr: () => undefined, stderrIsTty: false, sleep: async () => undefined };
	assert.equal(await main(["show", m.sessionId, "--dir", root], cli), 0);
	const text = out.join("");
	assert.match(text, /TYPED {2}rm -rf \/srv\/backups\\r/, `the typed command is not in show: ${text}`);
	assert.match(text, /TYPED {2}exit\n/);
	const identity = auditorIdentity("https://issuer.test");
	const pinned = (await loadStoreKeys(store)).set;
	const app = Fastify();
	await registerViewer(app, { store, auditorGroup: "auditors", authenticate: () => identity, publicKeys: async () => pinned });
	try {
		const html = (await app.inject({ url: `/viewer/session?prefix=${encodeURIComponent(sessionPrefix(m))}`, headers: { authorization: "Bearer x" } })).body;
		assert.match(html, /id="verify">verified</);
		assert.match(html, /rm -rf \/srv\/backups/, "the typed command is on no page of the viewer");
		assert.match(html, /stty -echo/);
		// a line not ended by Enter is shown too
		assert.match(html, /<td class="sql">exit<\/td>/);
	} finally {
		await app.close();
	}
});
