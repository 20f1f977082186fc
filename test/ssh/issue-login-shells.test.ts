// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the strings are shell lines for zsh and bash, `${…}` included on purpose
/**
 * Regression: the login shell. sshd runs an exec request as `<login shell> -c '<command>'`, and the
 * gateway does not know which shell that is. The tokenizer reads bash's ANSI-C strings (`$'…\'…'`: a
 * backslash escapes the quote); dash, /bin/sh on Debian and Ubuntu and the shell `useradd` gives
 * there by default, has no such strings: it reads `$` and a plain '…' that ends at the first quote.
 * So `echo $'\' ; touch PWNED⏎echo \''` was one `echo` to the allowlist (`echo *`) while dash ran
 * `touch PWNED`. A `$'…'` string that ends elsewhere for dash is now not analysed (refused under an
 * allowlist), and rules also see what dash would run. The line is run for real with dash and bash.
 * Likewise zsh (macOS's login shell, and many users'): `$~v` expands v's value as a glob pattern, and a
 * glob qualifier in it runs a command: `echo '*(e:touch PWNED:)'; echo $~_` passed `echo *`. `$~`,
 * `${~…}` and their `=`/`^` combinations are refused under an allowlist now (bash has neither).
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { evaluateSshCommand, parseShellCommand } from "../../gateway/policy/ssh.ts";

const base = { logins: ["app"], allowShell: false, allowSftp: false, allowPortForwarding: false, allowAgentForwarding: false };
const allowlist = { ...base, allowedCommands: ["echo *", "uptime"] };
const RULES: GuardrailRule[] = [{ name: "no-touch", action: "block", ssh: { commands: ["touch *"] } }];

function runsPayload(shell: string, line: string): boolean {
	const dir = mkdtempSync(join(tmpdir(), "drawbridge-login-shell-"));
	// A file for globs to match (as a home directory has): zsh runs a glob qualifier once per match.
	writeFileSync(join(dir, "notes.txt"), "");
	try {
		const r = spawnSync(shell, ["-c", line], { cwd: dir, stdio: "ignore", timeout: 5000 });
		assert.equal(r.error, undefined, `${shell} runs`);
		return existsSync(join(dir, "PWNED"));
	} finally {
		rmSync(dir, { recursive: true, force: true });
	}
}

test("issue login-shells: a $'…\\'…' string hid a command that dash runs from allowedCommands and rules", () => {
	for (const line of ["echo $'\\' ; touch PWNED\necho \\''", "uptime\necho $'x\\' && touch PWNED\necho \\''"]) {
		assert.ok(runsPayload("dash", line), `dash runs the payload of ${JSON.stringify(line)}`);
		assert.equal(runsPayload("bash", line), false, `bash does not: ${JSON.stringify(line)}`);
		const v = evaluateSshCommand(line, allowlist, []);
		assert.equal(v.action, "block", JSON.stringify(line));
		assert.match(v.message ?? "", /cannot be analysed.*dash/);
		assert.deepEqual([evaluateSshCommand(line, base, RULES).action, evaluateSshCommand(line, base, RULES).rule], ["block", "no-touch"], JSON.stringify(line));
	}
	// Both shells read these the same way: still one word each.
	for (const line of ["echo $'a\\tb' c", "echo $'\\x41' $'it''s'"]) {
		assert.equal(evaluateSshCommand(line, allowlist, []).action, "allow", JSON.stringify(line));
	}
	assert.deepEqual(
		parseShellCommand("echo $'\\' ; touch PWNED\necho \\''").segments.map((s) => s.command),
		// bash's reading (one echo), then dash's.
		["echo ' ; touch PWNED\necho '", "echo $\\", "touch PWNED", "echo"],
	);
});

test("issue login-shells: zsh's $~v expands a value as a glob, whose qualifier ran a command past allowedCommands", () => {
	for (const line of ["echo '*(e:touch PWNED:)'; echo $~_", "echo '*(e:touch PWNED:)'; echo ${~_}", "echo '*(e:touch PWNED:)'; echo $^~_", "echo '*(e:touch PWNED:)'; echo ${^~_}"]) {
		assert.ok(runsPayload("zsh", line), `zsh runs the payload of ${JSON.stringify(line)}`);
		const v = evaluateSshCommand(line, allowlist, []);
		assert.equal(v.action, "block", JSON.stringify(line));
		assert.match(v.message ?? "", /expansion that evaluates text as code/);
	}
	// Plain zsh and bash expansions of the same value stay allowed.
	assert.equal(evaluateSshCommand("echo '*(e:x:)'; echo $_ ${_}", allowlist, []).action, "allow");
});
