/**
 * Regressions: command lines the SSH policy tokenizer read differently from the shell. Each line is
 * run for real with bash (in a temp dir, payload `touch PWNED`) to show the payload runs, and the
 * policy must refuse it: `allowedCommands` (the documented hard boundary) for the ANSI-C quote, and
 * the `ssh.commands` denylist for the rest (best effort, but these are forms the parser claims to see:
 * simple commands in any position, wrappers, substitutions). Each failed on the old tokenizer.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { evaluateSshCommand, parseShellCommand } from "../../gateway/policy/ssh.ts";

const base = { logins: ["app"], allowShell: false, allowSftp: false, allowPortForwarding: false, allowAgentForwarding: false };
const allowlist = { ...base, allowedCommands: ["echo *", "uptime"] };
const RULES: GuardrailRule[] = [{ name: "no-touch", action: "block", ssh: { commands: ["touch *"] } }];

function runsPayload(line: string): boolean {
	const dir = mkdtempSync(join(tmpdir(), "drawbridge-shell-"));
	try {
		spawnSync("bash", ["-c", line], { cwd: dir, stdio: "ignore", timeout: 5000 });
		return existsSync(join(dir, "PWNED"));
	} finally {
		rmSync(dir, { recursive: true, force: true });
	}
}

test("issue shell-parse: $'...' ANSI-C quoting hid a command from allowedCommands", () => {
	for (const line of ["echo $'\\'' ; touch PWNED\n'", "uptime\necho $'\\'' && touch PWNED\n'"]) {
		assert.ok(runsPayload(line), `bash runs the payload of ${JSON.stringify(line)}`);
		const v = evaluateSshCommand(line, allowlist, []);
		assert.equal(v.action, "block", JSON.stringify(line));
		assert.equal(evaluateSshCommand(line, base, RULES).action, "block", `denylist: ${JSON.stringify(line)}`);
	}
	// Still understood: an ANSI-C string is one word, escapes decoded. (One holding `\'` is refused since
	// round 8: dash ends it at that quote; test/ssh/issue-login-shells.test.ts.)
	assert.equal(evaluateSshCommand("echo $'a\\tb' c", allowlist, []).action, "allow");
	assert.equal(evaluateSshCommand("echo $'a\\'b' c", allowlist, []).action, "block");
	assert.deepEqual(
		parseShellCommand("$'\\x74ouch' PWNED").segments.map((s) => s.command),
		["touch PWNED"],
	);
});

test("issue shell-parse: reserved words, env -S and escaped backticks hid a command from rules", () => {
	for (const line of [
		"if touch PWNED; then :; fi",
		"echo x; if true; then touch PWNED; fi",
		"for i in 1; do touch PWNED; done",
		"while touch PWNED; do break; done",
		"until touch PWNED; do :; done",
		"! touch PWNED",
		"env -S 'touch PWNED'",
		"env --split-string='touch PWNED'",
		"echo `echo \\`touch PWNED\\``",
		"$'\\x74ouch' PWNED",
	]) {
		assert.ok(runsPayload(line), `bash runs the payload of ${JSON.stringify(line)}`);
		const v = evaluateSshCommand(line, base, RULES);
		assert.deepEqual([v.action, v.rule], ["block", "no-touch"], JSON.stringify(line));
	}
});

test("issue shell-parse: a backslash in \"...\" before another character is kept, as bash keeps it (round 8)", () => {
	// bash quotes only $ ` " \ and a newline with a backslash inside "..."; the tokenizer dropped every
	// such backslash, so the allowlist compared `cat /srv/notes` while bash ran `cat /srv/not\es`.
	const line = 'printf "%s|" "a\\b" "c\\$d" "e\\"f" "g\\\\h" "i\\`j" "k\\\nl"';
	const r = spawnSync("bash", ["-c", line], { encoding: "utf8" });
	assert.equal(r.stdout, "a\\b|c$d|e\"f|g\\h|i`j|kl|");
	assert.deepEqual(
		parseShellCommand(line).segments.map((s) => s.written),
		['printf %s| a\\b c$d e"f g\\h i`j kl'],
	);
	const exact = { ...base, allowedCommands: ["cat /srv/notes"] };
	assert.equal(evaluateSshCommand('cat "/srv/not\\es"', exact, []).action, "block");
	assert.equal(evaluateSshCommand('cat "/srv/notes"', exact, []).action, "allow");
});

test("issue shell-parse: a } that is an argument was dropped as a group's end (round 8)", () => {
	// bash reads `}` as the end of a `{ …; }` group only where a command could start.
	assert.equal(spawnSync("bash", ["-c", 'printf "%s|" a }'], { encoding: "utf8" }).stdout, "a|}|");
	const exact = { ...base, allowedCommands: ["uptime", "echo a"] };
	for (const line of ["uptime }", "echo a }"]) assert.equal(evaluateSshCommand(line, exact, []).action, "block", line);
	for (const line of ["uptime", "{ uptime; }", "{ echo a;}"]) {
		assert.equal(evaluateSshCommand(line, exact, []).action, "allow", line);
	}
	assert.deepEqual(
		parseShellCommand("{ echo a; } ; echo a }").segments.map((s) => s.written),
		["echo a", "echo a }"],
	);
});
