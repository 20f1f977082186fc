/**
 * Keys that run the typed line without an Enter (red-team round 9). Real OpenSSH `ssh -tt` → gateway
 * → real sshd, login shell bash, under a grant with a shell and a GuardrailPolicy rule blocking
 * `touch *` (shell lines are checked: the gateway holds each line's Enter until the line is decided).
 *
 * The line tracker held CR and LF only. bash's readline also accepts the line on Ctrl-O
 * (operate-and-get-next, bound by bash by default): `touch f` then Ctrl-O ran `touch f` with no
 * decision and no `exec` event in the recording. And a CR or LF right after an ESC was swallowed as
 * part of an escape sequence and relayed undecided (a shell reading in cooked mode, dash, `read`,
 * ends the line there). Now Ctrl-O is a held terminator like Enter, a control byte ends an escape
 * sequence (CR/LF after ESC are held), and the refusal's line kill starts with ^G (after a relayed
 * ESC readline would take the ^U for Meta-^U, and the Enter after it would run the line).
 */
import assert from "node:assert/strict";
import { existsSync, rmSync } from "node:fs";
import { test } from "node:test";
import { LineTracker } from "../../gateway/ssh/guard.ts";
import { guardedShell } from "./guarded-shell.ts";

const w = guardedShell("accept-keys");
const { marker, recorder } = w;

/** Types `touch marker` ended by `key` at a prompt, then a sentinel line; returns the terminal output. */
async function attempt(key: string): Promise<string> {
	const s = w.session();
	try {
		await s.waitFor(/\$ $/m);
		s.type(`touch ${marker}${key}`);
		// The sentinel runs after whatever the key did to the line (refused, or still pending); if the key
		// ran the line undecided, the marker shows it (the sentinel then joins the tracked line and is refused).
		s.type("echo sentinel-$((40+2))\r");
		await s.waitFor(/sentinel-42/, () => existsSync(marker));
		return s.output();
	} finally {
		await s.end();
	}
}

test("control: touch typed with Enter is refused by the rule", { timeout: 60_000 }, async () => {
	rmSync(marker, { force: true });
	const out = await attempt("\r");
	assert.match(out, /no-touch/);
	assert.equal(existsSync(marker), false);
});

test("touch typed with Ctrl-O (operate-and-get-next) instead of Enter is decided like Enter", { timeout: 60_000 }, async () => {
	rmSync(marker, { force: true });
	const out = await attempt("\x0f");
	assert.equal(existsSync(marker), false, `touch ran without a decision:\n${out}`);
	assert.ok(recorder.events("exec").some((e) => e.command === `touch ${marker}` && e.decision === "block"), JSON.stringify(recorder.events("exec")));
	// After a relayed ESC the refusal's ^U would be Meta-^U to readline: the kill starts with ^G now.
	rmSync(marker, { force: true });
	const esc = await attempt("\x1b\r");
	assert.equal(existsSync(marker), false, `touch ran:\n${esc}`);
});

test("line tracker: ^O is a held terminator; a CR or LF right after ESC ends the escape and is held", () => {
	for (const [input, terminator] of [
		["touch f\x0f", "\x0f"],
		["touch f\x1b\r", "\r"],
		["touch f\x1b\n", "\n"],
		["touch f\x1b[A\r", "\r"],
	] as const) {
		const lines = new LineTracker().feed(Buffer.from(input)).filter((s) => s.kind === "line");
		assert.equal(lines.length, 1, JSON.stringify(input));
		const line = lines[0]!;
		assert.ok(line.kind === "line" && line.terminator.toString() === terminator && line.line === "touch f", JSON.stringify(input));
	}
});
