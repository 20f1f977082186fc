/**
 * Lines the shell-line guard decided were not the lines bash ran (red-team round 10). Real OpenSSH
 * `ssh -tt` → gateway → real sshd, login shell bash, under a grant with a shell and a GuardrailPolicy
 * rule blocking `touch *` (the gateway holds each line's Enter until the line is decided).
 *
 * On the old code each of these ran `touch`:
 * - `touch f`, ^A, Enter: the line was refused, but the refusal's line kill (^U) kills only what is
 *   left of the cursor, so the Enter sent after it ran the whole line;
 * - `ouch f`, ^A, `t`, Enter: the tracker appended the `t` (it does not follow cursor keys) and
 *   decided `ouch ft`, while readline ran `touch f`; its "dirty" mark was never looked at;
 * - `touch f; ` ^V ^U ` echo x`, Enter: ^V makes the ^U a literal for readline, the tracker killed
 *   the line with it and decided ` echo x`;
 * - `tou\`, Enter, `ch f`, Enter, and `echo '`, Enter, `'; touch f`, Enter: each line was decided on
 *   its own, while bash runs a command that goes on over lines (a trailing backslash, an open quote)
 *   as one.
 * Now the refusal's kill moves to the end of the line first (^G ^E ^U), a line touched by keys the
 * tracker cannot follow is refused, ^V quotes the next key, and a line that continues a command is
 * decided with the lines before it.
 */
import assert from "node:assert/strict";
import { existsSync, rmSync } from "node:fs";
import { test } from "node:test";
import { LineTracker } from "../../gateway/ssh/guard.ts";
import { guardedShell } from "./guarded-shell.ts";

const w = guardedShell("line-edits");
const { marker, recorder } = w;

/**
 * Types each of `keys` at a prompt (each waits for the output to show the prompt again, or the
 * continuation prompt), then ^C and a sentinel line; returns the terminal output.
 */
async function attempt(...keys: string[]): Promise<string> {
	rmSync(marker, { force: true });
	const s = w.session();
	try {
		await s.waitFor(/\$ $/m);
		for (const k of keys) {
			const before = s.output().length;
			s.type(k);
			// The next prompt (PS1 `$ ` or the continuation prompt `> `), or the marker if the line ran.
			// (bash may follow the prompt with an erase-line sequence)
			await s.waitFor(/(?!)/, () => /[$>] (?:\x1b\[[0-9;]*[A-Za-z])*$/.test(s.output().slice(before)) || existsSync(marker)).catch((e: Error) => {
				throw new Error(`${e.message}; the terminal showed: ${JSON.stringify(s.output())}`);
			});
		}
		// ^C ends whatever command is still open; the sentinel then runs at the fresh prompt (typed at once,
		// bash's SIGINT handling can eat its first key).
		const cancelled = s.output().length;
		s.type("\x03");
		await s.waitFor(/(?!)/, () => /\$ (?:\x1b\[[0-9;]*[A-Za-z])*$/.test(s.output().slice(cancelled)) || existsSync(marker));
		s.type("echo sentinel-$((40+2))\r");
		await s.waitFor(/sentinel-42/, () => existsSync(marker)).catch((e: Error) => {
			throw new Error(`${e.message}; the terminal showed: ${JSON.stringify(s.output())}`);
		});
		return s.output();
	} finally {
		await s.end();
	}
}

test("control: touch typed with Enter is refused by the rule, and a harmless line runs", { timeout: 60_000 }, async () => {
	const out = await attempt(`touch ${marker}\r`, "echo ok-$((1+2))\r");
	assert.match(out, /no-touch/);
	assert.match(out, /ok-3/);
	assert.equal(existsSync(marker), false);
});

test("a refused line with the cursor moved to its start is killed whole (^U alone left it, and the Enter ran it)", { timeout: 60_000 }, async () => {
	const out = await attempt(`touch ${marker}\x01\r`);
	assert.equal(existsSync(marker), false, `touch ran after its refusal:\n${out}`);
});

test("a line edited with cursor keys is refused: the tracker cannot tell what readline holds", { timeout: 60_000 }, async () => {
	const out = await attempt(`ouch ${marker}\x01t\r`);
	assert.equal(existsSync(marker), false, `touch ran:\n${out}`);
	assert.match(out, /edited with keys the gateway cannot follow/);
	assert.ok(recorder.events("exec").some((e) => e.decision === "block" && e.rule === "shell-line-edited"));
	// Arrow keys (history) too.
	const up = await attempt(`touch ${marker}\x1b[D\r`);
	assert.equal(existsSync(marker), false, `touch ran:\n${up}`);
});

test("^V makes the next key a literal: a ^U after it no longer hides what came before", { timeout: 60_000 }, async () => {
	const out = await attempt(`touch ${marker}; \x16\x15 echo x\r`);
	assert.equal(existsSync(marker), false, `touch ran:\n${out}`);
});

test("a command that goes on over lines is decided whole: trailing backslash, open quote", { timeout: 60_000 }, async () => {
	const joined = await attempt("tou\\\r", `ch ${marker}\r`);
	assert.equal(existsSync(marker), false, `touch ran:\n${joined}`);
	assert.ok(recorder.events("exec").some((e) => e.decision === "block" && e.command === `tou\\\nch ${marker}`), JSON.stringify(recorder.events("exec")));
	const quoted = await attempt("echo '\r", `'; touch ${marker}\r`);
	assert.equal(existsSync(marker), false, `touch ran:\n${quoted}`);
	// A harmless command over two lines still runs.
	const ok = await attempt("echo 'two\r", "lines'\r");
	assert.match(ok, /two\r?\nlines/);
});

test("paste markers where paste mode is off (dash): the CR inside is an Enter, held and decided", { timeout: 60_000 }, async () => {
	// Read as pasted text, the CR went through undecided, and dash (which has no paste mode) ran the line.
	const out = await attempt("sh\r", `\x1b[200~echo a; touch ${marker}\r`);
	assert.equal(existsSync(marker), false, `touch ran:\n${out}`);
	assert.match(out, /no-touch/);
});

test("a line refused inside a bracketed paste is killed: the kill is not pasted as text", { timeout: 60_000 }, async () => {
	// bash 5.1+ reads a paste as text until its end marker: the kill sent before it was inserted into the
	// paste, and the paste's final Enter ran the refused line (`touch <marker> x^G^E^U`).
	const out = await attempt(`\x1b[200~echo a; touch ${marker} x\rls\x1b[201~\r`);
	assert.equal(existsSync(marker), false, `touch ran:\n${out}`);
	assert.match(out, /no-touch/);
});

test("the alternate screen switched to by the w.agent (printf) is no full-screen program: edited lines are still refused", { timeout: 60_000 }, async () => {
	// Round 11: the switch alone exempted edited lines, and the w.agent writes the target's output.
	const out = await attempt("printf '\\e[?1049h'\r", `ouch ${marker}\x01t\r`);
	assert.equal(existsSync(marker), false, `touch ran:\n${out}`);
	assert.match(out, /edited with keys the gateway cannot follow/);
});

test("full-screen programs: only a decided line starting one, and a switch after it, exempt edited lines", async () => {
	// Imported here: the test above runs on code without them (it fails there on what runs, not on an import).
	const { TerminalModes, fullScreenCommand } = await import("../../gateway/ssh/guard.ts");
	for (const c of ["vim /etc/hosts", "less -S log.txt", "sudo top", "/usr/bin/htop", "man 5 crontab", "vim ~/.bashrc"]) assert.ok(fullScreenCommand(c), c);
	for (const c of ["printf '\\e[?1049h'", "vim; touch f", "less f & touch g", "LESS=-r less f", "vim $(touch f)", "tmux", "screen", "more f", "echo vim", "vim\ntouch f", "mc"]) {
		assert.ok(!fullScreenCommand(c), c);
	}
	const alt = Buffer.from("\x1b[?1049h");
	const main = Buffer.from("\x1b[?1049l");
	// The w.agent switches, then nothing it typed started a program.
	const m = new TerminalModes();
	m.relayed("printf x");
	m.feed(alt);
	assert.equal(m.fullScreenProgram, false);
	// Switched before the program's line (`less -FX` never switches): still not.
	m.relayed("less -FX short.txt");
	assert.equal(m.fullScreenProgram, false);
	// vim started by a decided line, then its switch: its keys are its own until it leaves.
	m.feed(main);
	m.relayed("vim notes.txt");
	assert.equal(m.fullScreenProgram, false);
	m.feed(Buffer.from("\x1b[?10"));
	m.feed(Buffer.from("49h"));
	assert.equal(m.fullScreenProgram, true);
	m.feed(main);
	assert.equal(m.fullScreenProgram, false);
	// Leaving ends it: switching back later (a background printf) does not bring it back.
	m.feed(alt);
	assert.equal(m.fullScreenProgram, false);
});

test("line tracker: cursor keys, ^V, bracketed paste; commands that go on", async () => {
	// Imported here: the tests above run on code without them (they fail there on what runs, not on an import).
	const { TerminalModes } = await import("../../gateway/ssh/guard.ts");
	const { commandGoesOn } = await import("../../gateway/ssh/listener.ts");
	const lines = (input: string) => new LineTracker().feed(Buffer.from(input)).flatMap((s) => (s.kind === "line" ? [[s.line, s.dirty] as const] : []));
	assert.deepEqual(lines("ouch f\x01t\r"), [["ouch ft", true]]);
	// ^U after an edit does not make the line clean again (it kills only what is left of the cursor).
	assert.deepEqual(lines("touch f\x01\x15\r"), [["", true]]);
	// ^C does: the shell drops the whole line.
	assert.deepEqual(lines("touch f\x01\x03ls\r"), [["ls", false]]);
	// ^V: the next byte is inserted, a CR too.
	assert.deepEqual(lines("a\x16\rb\r"), [["ab", true]]);
	// ^L redraws: the line is unchanged.
	assert.deepEqual(lines("ls\x0c -l\r"), [["ls -l", false]]);
	// Bracketed paste markers do not edit; what is inside is read as typed: a CR there is held like Enter
	// (where paste mode is off, dash, cooked mode, it is one), other control bytes mark the line.
	assert.deepEqual(lines("\x1b[200~echo a\x1b[201~\r"), [["echo a", false]]);
	assert.deepEqual(lines("\x1b[200~; touch f\rls\x1b[201~\r"), [
		["; touch f", false],
		["ls", false],
	]);
	assert.deepEqual(lines("\x1b[200~echo a\x1b[D\x1b[201~\r"), [["echo a", true]]);
	const cancel = new LineTracker().feed(Buffer.from("x\x03y"));
	assert.deepEqual(
		cancel.map((s) => s.kind),
		["bytes", "cancel", "bytes"],
	);
	// A full-screen program's output (vim, less: the alternate screen) has the keyboard until it leaves it.
	const screen = new TerminalModes();
	screen.feed(Buffer.from("text\x1b[?10"));
	assert.equal(screen.alternateScreen, false);
	screen.feed(Buffer.from("49h~"));
	assert.equal(screen.alternateScreen, true);
	screen.feed(Buffer.from("\x1b[?1049l$ "));
	assert.equal(screen.alternateScreen, false);
	for (const c of ["tou\\", "echo '", 'echo "a', "echo $(", "echo `x"]) assert.ok(commandGoesOn(c), c);
	for (const c of ["touch f", "echo '\\'", "tou\\\\", "echo 'a'"]) assert.ok(!commandGoesOn(c), c);
});
