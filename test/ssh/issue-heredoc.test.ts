// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the strings are shell lines for bash, `${…}` included on purpose
/**
 * Regression: here-documents. The SSH policy tokenizer read a here-document's body as commands, while
 * bash reads it as data and resumes reading commands after the delimiter line. A quote in the body
 * (data to bash) opened a quoted word for the tokenizer that ran on over the following commands, so
 * `echo a <<EOF⏎echo '⏎EOF⏎touch PWNED #'` passed `allowedCommands: ["echo *"]` as the two commands
 * `echo a << EOF` and `echo <quoted text>` while bash ran `touch PWNED` (the closing quote sits in a
 * comment). The body is now skipped as bash skips it; an unquoted delimiter's body is expanded, so its
 * `$(…)`, backquotes and `${…}` are checked like text in "...". Each line is run for real with bash
 * (temp dir, payload `touch PWNED`) to show the payload runs; each was allowed by the old tokenizer.
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
const allowlist = { ...base, allowedCommands: ["echo *", "cat *", "uptime"] };
const RULES: GuardrailRule[] = [{ name: "no-touch", action: "block", ssh: { commands: ["touch *"] } }];

function runsPayload(line: string): boolean {
	const dir = mkdtempSync(join(tmpdir(), "drawbridge-heredoc-"));
	try {
		spawnSync("bash", ["-c", line], { cwd: dir, stdio: "ignore", timeout: 5000 });
		return existsSync(join(dir, "PWNED"));
	} finally {
		rmSync(dir, { recursive: true, force: true });
	}
}

const BYPASSES = [
	// A single quote in the body, closed in a comment after the payload.
	"echo a <<EOF\necho '\nEOF\ntouch PWNED #'",
	// A double quote likewise; a quoted delimiter; `<<-` with tab-indented body and delimiter.
	'echo a <<EOF\necho "\nEOF\ntouch PWNED #"',
	"echo a <<'EOF'\necho '\nEOF\ntouch PWNED #'",
	"echo a <<-EOF\n\techo '\n\tEOF\ntouch PWNED #'",
	// Two here-documents on one line: the payload follows the second body.
	"cat <<A <<B\necho '\nA\nx\nB\ntouch PWNED #'",
	// An unquoted delimiter's body is expanded: a substitution in it runs.
	"cat <<EOF\n$(touch PWNED)\nEOF",
	"cat <<EOF\n`touch PWNED`\nEOF",
	"cat <<EOF\n${a[$(touch PWNED)]}\nEOF",
];

test("issue heredoc: a quote in a here-document's body hid the next command from allowedCommands and rules", () => {
	for (const line of BYPASSES) {
		assert.ok(runsPayload(line), `bash runs the payload of ${JSON.stringify(line)}`);
		const v = evaluateSshCommand(line, allowlist, []);
		assert.equal(v.action, "block", `allowlist: ${JSON.stringify(line)}`);
		assert.equal(evaluateSshCommand(line, base, RULES).action, "block", `denylist: ${JSON.stringify(line)}`);
	}
	assert.deepEqual(
		parseShellCommand("echo a <<EOF\necho '\nEOF\ntouch PWNED #'").segments.map((s) => s.command),
		["echo a << EOF", "touch PWNED"],
	);
});

test("issue heredoc: here-documents bash does not expand, or whose expansions are allowed, still pass", () => {
	for (const line of [
		"cat <<'EOF'\n$(touch PWNED) `touch PWNED` ${a[$(touch PWNED)]} '\nEOF",
		'cat <<"EOF"\n$(touch PWNED)\nEOF\necho done',
		"cat <<\\EOF\n$(touch PWNED)\nEOF",
		"cat <<EOF\n\\$(touch PWNED) it's $(uptime)\nEOF",
		"cat <<EOF\nno end delimiter, bash reads to the end '",
	]) {
		assert.equal(runsPayload(line), false, `bash does not run the payload of ${JSON.stringify(line)}`);
		assert.equal(evaluateSshCommand(line, allowlist, []).action, "allow", JSON.stringify(line));
	}
});

test("issue heredoc: here-documents inside substitutions are refused under an allowlist", () => {
	const line = "echo $(cat <<EOF\n'\nEOF\n)";
	assert.equal(evaluateSshCommand(line, allowlist, []).action, "block");
	// A line that never gives the delimiter word cannot be analysed.
	assert.equal(evaluateSshCommand("cat <<\necho x", allowlist, []).action, "block");
	assert.equal(evaluateSshCommand("cat <<;echo x", allowlist, []).action, "block");
});

test("issue heredoc: a body line ending in a backslash joins the next one for bash, so EO\\⏎F ended the document", () => {
	// bash (and zsh) join the lines of a document with an unquoted delimiter before comparing them with
	// it; dash does not. So bash ran the touch below while the tokenizer read it as the body.
	const line = "echo a <<EOF\nEO\\\nF\ntouch PWNED\nEOF";
	assert.ok(runsPayload(line), "bash runs the payload");
	assert.equal(evaluateSshCommand(line, allowlist, []).action, "block");
	assert.match(evaluateSshCommand(line, allowlist, []).message ?? "", /backslash/);
	assert.deepEqual([evaluateSshCommand(line, base, RULES).action, evaluateSshCommand(line, base, RULES).rule], ["block", "no-touch"]);
	// A quoted delimiter joins nothing; an even run of backslashes is text.
	assert.equal(evaluateSshCommand("cat <<'EOF'\nEO\\\nF\nEOF", allowlist, []).action, "allow");
	assert.equal(evaluateSshCommand("cat <<EOF\na\\\\\nEOF", allowlist, []).action, "allow");
});
