// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the strings are shell lines for bash, `${…}` included on purpose
/**
 * Regressions: comments, as bash reads them, where two scanners of the SSH policy did not.
 * - The end of a `$( … )` was found by counting parentheses outside quotes: `$( # )⏎…` ended at the
 *   `)` in the comment, and a quote after it (still inside the substitution for bash) started a quoted
 *   word for the tokenizer that hid the substitution's next command: `echo $( # ) '⏎touch PWNED #'⏎)`
 *   passed `allowedCommands: ["echo *"]` and a `touch *` rule. The end is now found by the tokenizer
 *   itself (comments, quotes, here-documents, nesting).
 * - The check for expansions that evaluate text as code (`${v@P}`, `${v:off}`, `${a[…]}`) had its own
 *   scanner, which took a quote in a comment for the start of a quoted string and skipped what
 *   followed: `echo x # '⏎echo '$(touch PWNED)'; echo ${_@P} #'` ran `touch` under `echo *`. The
 *   tokenizer now reports each such expansion where it reads a `$` that bash expands.
 * - `${…}` is one word to the shell, blanks and `#` inside it included; the tokenizer split it at the
 *   blank and read ` #}` as a comment, so `echo ${x:- #} ; touch PWNED` was one `echo` to the
 *   allowlist while bash, dash and zsh ran `touch`. The tokenizer keeps `${…}` whole now, and under an
 *   allowlist a body holding quotes, backslashes, braces or operators is refused (the shells disagree
 *   on where such a body ends).
 * Each line is run for real with bash (temp dir) to show the payload runs; each was allowed before.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import type { GuardrailRule } from "../../gateway/config/bundle.ts";
import { evaluateSshCommand, evaluatingExpansion } from "../../gateway/policy/ssh.ts";

const base = { logins: ["app"], allowShell: false, allowSftp: false, allowPortForwarding: false, allowAgentForwarding: false };
const allowlist = { ...base, allowedCommands: ["echo *", "uptime"] };
const RULES: GuardrailRule[] = [{ name: "no-touch", action: "block", ssh: { commands: ["touch *"] } }];
const PAYLOAD = "x[$(touch PWNED)]";

function runsPayload(line: string): boolean {
	const dir = mkdtempSync(join(tmpdir(), "drawbridge-comments-"));
	try {
		spawnSync("bash", ["-c", line], { cwd: dir, stdio: "ignore", timeout: 5000 });
		return existsSync(join(dir, "PWNED"));
	} finally {
		rmSync(dir, { recursive: true, force: true });
	}
}

/** `template` with OFF replaced by the offset of PAYLOAD in the final line (which OFF's own digits move). */
function withOffset(template: string): string {
	let line = template;
	for (let k = 0; k < 4; k++) line = template.replace("OFF", String(line.indexOf(PAYLOAD))).replace("LEN", String(PAYLOAD.length));
	return line;
}

test("issue shell-comments: a ) in a comment ended a $( ) early, and a quote after it hid the next command", () => {
	for (const line of ["echo $( # ) '\ntouch PWNED #'\n)", 'echo "$( # ) \'\ntouch PWNED #\'\n)"', "echo $(uptime # ) '\ntouch PWNED #'\n)"]) {
		assert.ok(runsPayload(line), `bash runs the payload of ${JSON.stringify(line)}`);
		assert.equal(evaluateSshCommand(line, allowlist, []).action, "block", `allowlist: ${JSON.stringify(line)}`);
		assert.equal(evaluateSshCommand(line, base, RULES).action, "block", `denylist: ${JSON.stringify(line)}`);
	}
	// Still understood: parentheses, quotes and comments inside a substitution.
	for (const line of ["echo $( (echo a) ) x", 'echo "$(echo ")")" y', "echo $(echo a # b )\n) z", "echo $(echo \"'\")"]) {
		assert.equal(evaluateSshCommand(line, allowlist, []).action, "allow", JSON.stringify(line));
	}
});

test("issue shell-comments: a quote in a comment hid an expansion that evaluates text as code", () => {
	for (const line of [
		"echo x # '\necho '$(touch PWNED)'; echo ${_@P} #'",
		withOffset("echo x # '\necho ${PATH:${BASH_EXECUTION_STRING:OFF:LEN}} # x[$(touch PWNED)] '"),
		withOffset("echo x # \"\necho ${PATH:0:${BASH_EXECUTION_STRING:OFF:LEN}} # x[$(touch PWNED)] \""),
	]) {
		assert.ok(runsPayload(line), `bash runs the payload of ${JSON.stringify(line)}`);
		const v = evaluateSshCommand(line, allowlist, []);
		assert.equal(v.action, "block", JSON.stringify(line));
		assert.match(v.message ?? "", /expansion that evaluates text as code/);
		assert.ok(evaluatingExpansion(line), JSON.stringify(line));
	}
	// Expansions inside a comment, single quotes or a quoted here-document are text: not refused.
	for (const line of ["echo hi # ${a[1]}", "echo '${a[1]}' # '", "echo a <<'E'\n${a[1]}\nE"]) {
		assert.equal(evaluatingExpansion(line), undefined, JSON.stringify(line));
		assert.equal(evaluateSshCommand(line, allowlist, []).action, "allow", JSON.stringify(line));
	}
});

test("issue shell-comments: a blank and # inside ${…} hid the next command", () => {
	for (const line of ["echo ${x:- #} ; touch PWNED", "echo ${x:-	#}; touch PWNED", "echo ${x:+ #} x; touch PWNED"]) {
		assert.ok(runsPayload(line), `bash runs the payload of ${JSON.stringify(line)}`);
		assert.equal(evaluateSshCommand(line, allowlist, []).action, "block", `allowlist: ${JSON.stringify(line)}`);
		assert.equal(evaluateSshCommand(line, base, RULES).action, "block", `denylist: ${JSON.stringify(line)}`);
	}
	// Bodies whose end the shells could read differently are not analysed under an allowlist.
	for (const line of ['echo ${x:-"}"}', "echo ${x:-'}'}", "echo ${x:-\\}}", "echo ${x:-a;b}"]) {
		assert.equal(evaluateSshCommand(line, allowlist, []).action, "block", JSON.stringify(line));
	}
	for (const line of ["echo ${x: -1} ${x:- a b} ${x:-#} ${PATH#*:}", 'echo "${x:- #}"']) {
		assert.equal(evaluateSshCommand(line, allowlist, []).action, "allow", JSON.stringify(line));
	}
});
