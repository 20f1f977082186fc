// biome-ignore-all lint/suspicious/noTemplateCurlyInString: the strings are shell lines for bash, `${…}` included on purpose
/**
 * Regression (red team, round 7): expansions that make bash evaluate text the allowlist never sees as
 * a command. An indexed array's subscript (`${a[X]}`) and a substring's offset and length
 * (`${v:X:Y}`) are arithmetic, `$[X]` too, and arithmetic expands an `a[$(cmd)]` it finds in the text
 * it is given, including text another expansion produced. The command line itself is such a text
 * (`BASH_EXECUTION_STRING`), so
 *
 *     echo ${a[${BASH_EXECUTION_STRING:43:17}]} 'x[$(touch PWNED)]'
 *
 * passed `allowedCommands: ["echo *"]` (the payload is single-quoted: no substitution is written) and
 * ran `touch`. Each line is run for real with bash (payload `touch PWNED`), and must be refused under
 * the allowlist; ordinary parameter expansions stay allowed.
 */
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { evaluateSshCommand, evaluatingExpansion } from "../../gateway/policy/ssh.ts";

const base = { logins: ["app"], allowShell: false, allowSftp: false, allowPortForwarding: false, allowAgentForwarding: false };
const allowlist = { ...base, allowedCommands: ["echo *", "uptime"] };
const PAYLOAD = "x[$(touch PWNED)]";

function runsPayload(line: string): boolean {
	const dir = mkdtempSync(join(tmpdir(), "drawbridge-arith-"));
	try {
		spawnSync("bash", ["-c", line], { cwd: dir, stdio: "ignore", timeout: 5000 });
		return existsSync(join(dir, "PWNED"));
	} finally {
		rmSync(dir, { recursive: true, force: true });
	}
}

/** `template` with OFF replaced by the offset of the quoted payload in the final line (which OFF's own digits move). */
function withOffset(template: string): string {
	let line = template;
	for (let k = 0; k < 4; k++) {
		const off = line.indexOf(`'${PAYLOAD}'`) + 1;
		line = template.replace("OFF", String(off)).replace("LEN", String(PAYLOAD.length));
	}
	return line;
}

test("issue arithmetic-expansion: text produced by an expansion and evaluated as arithmetic ran past allowedCommands", () => {
	const lines = [
		withOffset(`echo \${a[\${BASH_EXECUTION_STRING:OFF:LEN}]} '${PAYLOAD}'`),
		withOffset(`echo "\${a[\${BASH_EXECUTION_STRING:OFF:LEN}]}" '${PAYLOAD}'`),
		withOffset(`echo \${PATH:\${BASH_EXECUTION_STRING:OFF:LEN}} '${PAYLOAD}'`),
		withOffset(`echo \${PATH:0:\${BASH_EXECUTION_STRING:OFF:LEN}} '${PAYLOAD}'`),
		withOffset(`echo $[\${BASH_EXECUTION_STRING:OFF:LEN}] '${PAYLOAD}'`),
		// Prompt expansion of the command line (or of $_, the last word of the previous command).
		"echo '$(touch PWNED)' ${BASH_EXECUTION_STRING@P}",
		"echo '$(touch PWNED)' ${BASH_COMMAND@P}",
		"echo '$(touch PWNED)'; echo ${_@P}",
	];
	for (const line of lines) {
		assert.ok(runsPayload(line), `bash runs the payload of ${line}`);
		const v = evaluateSshCommand(line, allowlist, []);
		assert.equal(v.action, "block", line);
		assert.match(v.message ?? "", /expansion that evaluates text as code/);
	}
});

test("issue arithmetic-expansion: a quoted name[$(cmd)] given to test -v, printf -v or read ran past allowedCommands", () => {
	const wide = { ...base, allowedCommands: ["echo *", "test *", "[ *", "printf *", "read *"] };
	const wider = { ...wide, allowedCommands: [...wide.allowedCommands, "[[ *"] };
	for (const line of [
		"test -v 'a[$(touch PWNED)]'",
		"[ -v 'a[$(touch PWNED)]' ]",
		"printf -v 'a[$(touch PWNED)]' x",
		"read 'a[$(touch PWNED)]' <<< x",
		'printf -v "a[\\`touch PWNED\\`]" x',
		// The subscript names `_`, the previous command's last word: arithmetic evaluates its value.
		"echo 'x[$(touch PWNED)]'; test -v 'a[_]'",
		"echo 'x[$(touch PWNED)]'; printf -v a[_] y",
		"echo 'x[$(touch PWNED)]'; read a[_] <<< y",
		"echo 'x[$(touch PWNED)]'; [[ _ -eq 1 ]]",
	]) {
		assert.ok(runsPayload(line), `bash runs the payload of ${line}`);
		const v = evaluateSshCommand(line, wider, []);
		assert.equal(v.action, "block", line);
		assert.match(v.message ?? "", /which bash evaluates as arithmetic/);
	}
	for (const line of ["test -f /var/run/app.pid", "[ -d /tmp ]", "printf '%s\\n' hi", "echo 'a[1]' x[2] y[z]", "test -v 'a[1]'", "[[ 3 -eq 3 ]]", "[[ -f /tmp/x ]]"]) {
		assert.equal(evaluateSshCommand(line, wider, []).action, "allow", line);
	}
});

test("evaluatingExpansion: what is refused and what stays allowed under an allowlist", () => {
	for (const line of ["echo ${a[1]}", "echo ${!x}", "echo ${(e)_}", "echo ${(P)x}", "echo ${x:$y}", "echo ${x:y}", "echo ${x:1:n}", "echo $[1]", "echo ${x:-$HOME}", 'echo "${a[0]}"']) {
		assert.ok(evaluatingExpansion(line), line);
		assert.equal(evaluateSshCommand(line, allowlist, []).action, "block", line);
	}
	for (const line of ["echo hi", "echo ${HOME} ${x:-default} ${#PATH} ${PATH%%:*} ${x: -1} ${x:1:2} \"${HOME}/x\"", "echo '${a[x]}' \\${a[1]} $'${a[2]}'", "echo a[1] [x]"]) {
		assert.equal(evaluatingExpansion(line), undefined, line);
		assert.equal(evaluateSshCommand(line, allowlist, []).action, "allow", line);
	}
	// The denylist (no allowedCommands) is a tripwire and does not look at expansions.
	assert.equal(evaluateSshCommand("echo ${a[1]}", base, []).action, "allow");
});
