/**
 * Commands that change how the shell reads what comes after them (red-team round 10, lead 1). Real
 * sshd, login shell bash; a grant with a shell and `allowedCommands: ["export *", "echo *"]`, and a
 * GuardrailPolicy rule blocking `touch *`.
 *
 * The gateway decides a line by reading it as bash reads it, and a shell line by rebuilding it from
 * keystrokes as readline's default keys do. On the old code each of these ran `touch` past both:
 * - exec `export LC_ALL=zh_TW.BIG5⏎echo \xa1\; touch f`: the locale the env request may no longer
 *   carry (round 9) was set by the command itself; bash reads the second line in BIG5, where the `\`
 *   is half of a character and `;` ends the echo, while the allowlist saw one `echo` (and the rule
 *   none of `touch`);
 * - typed `bind -x '"\C-t": touch f'`, then ^T: readline runs the command on the key, no line is
 *   typed for the gateway to decide (and no exec event is recorded);
 * - typed `bind '"\C-t": "touch f\n"'`, then ^T: a macro types the line and its Enter inside readline.
 * Such commands (`bind` other than listing, LANG/LC_ALL/LC_CTYPE set to a non-UTF-8 charset by any
 * assignment, INPUTRC/TERMINFO/TERMCAP, `set -o vi`) are refused by an allowlist now, and matched by
 * every rule whatever its commands.
 *
 * The target has a BIG5 locale: compiled with localedef into a private directory, which the test sshd
 * hands to sessions as LOCPATH.
 */
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { evaluateSshCommand, parseShellCommand } from "../../gateway/policy/ssh.ts";
import { runOk } from "../env/index.ts";
import { guardedShell } from "./guarded-shell.ts";

const ssh2 = createRequire(import.meta.url)("ssh2") as typeof import("ssh2");
type ConnectConfig = Parameters<InstanceType<typeof ssh2.Client>["connect"]>[0];

let locales: string;
before(async () => {
	locales = mkdtempSync(join(tmpdir(), "drawbridge-locales-"));
	chmodSync(locales, 0o755);
	await runOk("localedef", ["-i", "zh_TW", "-f", "BIG5", join(locales, "zh_TW.BIG5")], { timeoutMs: 120_000 });
});
after(() => {
	if (locales) rmSync(locales, { recursive: true, force: true });
});
const w = guardedShell("shell-reading", { ssh: { allowedCommands: ["export *", "echo *"] }, sshdConfig: () => [`SetEnv LOCPATH=${locales}`] });
const { marker } = w;

/** Line 1 sets the locale; line 2 is one `echo` read as UTF-8 (`\;` escaped) and `echo …; touch` in BIG5. */
const EXEC = `export LC_ALL=zh_TW.BIG5\necho \uFFFD\\; touch ${marker}`;

/** One exec: through the gateway (token as password), or straight to sshd (its client key). */
async function exec(command: string, direct = false): Promise<string> {
	const c = new ssh2.Client();
	const config: ConnectConfig = direct
		? { host: "127.0.0.1", port: w.sshd.port, username: w.sshd.user, privateKey: readFileSync(w.sshd.clientKeyFile), hostVerifier: () => true }
		: { host: "127.0.0.1", port: w.gw.address.port, username: `${w.sshd.user}@web`, password: await w.issuer.token("lee"), hostVerifier: () => true };
	await new Promise<void>((resolve, reject) => {
		c.on("ready", () => resolve());
		c.on("error", reject);
		c.connect(config);
	});
	try {
		return await new Promise((resolve, reject) => {
			c.exec(command, (err, s) => {
				if (err) return reject(err);
				let out = "";
				s.on("data", (b: Buffer) => (out += b.toString("latin1")));
				s.stderr.on("data", (b: Buffer) => (out += b.toString("latin1")));
				s.on("close", () => resolve(out));
			});
		});
	} finally {
		c.end();
	}
}

/** Types `line` and Enter at a prompt, then ^T, then ^C and a sentinel line; returns the terminal output. */
async function bindThenKey(line: string): Promise<string> {
	rmSync(marker, { force: true });
	const s = w.session();
	try {
		await s.waitFor(/\$ $/m);
		const before = s.output().length;
		s.type(`${line}\r`);
		// The next prompt (bash may follow it with an erase-line sequence).
		await s.waitFor(/(?!)/, () => /\$ (?:\x1b\[[0-9;]*[A-Za-z])*$/.test(s.output().slice(before))).catch((e: Error) => {
			throw new Error(`${e.message}; the terminal showed: ${JSON.stringify(s.output())}`);
		});
		// ^T, then wait for the shell to answer it (a command run and the prompt redrawn, or readline's
		// bell for a transpose on an empty line): a ^C in the same write would flush it unread.
		const keyed = s.output().length;
		s.type("\x14");
		await s.waitFor(/(?!)/, () => s.output().length > keyed || existsSync(marker));
		// ^C, then the sentinel once the fresh prompt shows (typed at once, bash's SIGINT handling can eat
		// its first key).
		const cancelled = s.output().length;
		s.type("\x03");
		await s.waitFor(/(?!)/, () => /\$ (?:\x1b\[[0-9;]*[A-Za-z])*$/.test(s.output().slice(cancelled)));
		s.type("echo sentinel-$((40+2))\r");
		await s.waitFor(/sentinel-42/, () => existsSync(marker)).catch((e: Error) => {
			throw new Error(`${e.message}; the terminal showed: ${JSON.stringify(s.output())}`);
		});
		return s.output();
	} finally {
		await s.end();
	}
}

test("the premise, without the gateway: bash reads the line after `export LC_ALL=zh_TW.BIG5` in BIG5", { timeout: 60_000 }, async () => {
	rmSync(marker, { force: true });
	const utf8 = await exec(EXEC.replace("zh_TW.BIG5", "C.UTF-8"), true);
	assert.equal(existsSync(marker), false, utf8);
	const big5 = await exec(EXEC, true);
	assert.equal(existsSync(marker), true, `bash did not split the second line in BIG5: ${big5}`);
	rmSync(marker, { force: true });
});

test("exec: a command that sets a non-UTF-8 locale is refused by the allowlist; the next line does not run", { timeout: 60_000 }, async () => {
	rmSync(marker, { force: true });
	const out = await exec(EXEC);
	assert.equal(existsSync(marker), false, `touch ran: ${out}`);
	assert.match(out, /changes how the shell reads what follows/);
	// UTF-8 locales still pass.
	const ok = await exec("export LC_ALL=C.UTF-8\necho locale-[$LC_ALL]");
	assert.match(ok, /locale-\[C\.UTF-8\]/);
});

test("shell: `bind -x` (a command on a key) and a macro binding are refused under a rule; the key then runs nothing", { timeout: 90_000 }, async () => {
	const x = await bindThenKey(`bind -x '"\\C-t": touch ${marker}'`);
	assert.equal(existsSync(marker), false, `the key ran touch:\n${x}`);
	assert.match(x, /changes how the shell reads what follows.*no-touch/s);
	const macro = await bindThenKey(`bind '"\\C-t": "touch ${marker}\\n"'`);
	assert.equal(existsSync(marker), false, `the macro ran touch:\n${macro}`);
	// Listing the bindings is not a change.
	const list = await bindThenKey("bind -p");
	assert.doesNotMatch(list, /changes how the shell reads/);
});

test("shell: zsh's `bindkey -s` (a macro on a key) is refused too", { timeout: 60_000 }, async () => {
	rmSync(marker, { force: true });
	const s = w.session();
	try {
		await s.waitFor(/\$ $/m);
		s.type("zsh -f\r");
		await s.waitFor(/% (?:\x1b\[[0-9;?]*[A-Za-z])*$/).catch((e: Error) => {
			throw new Error(`${e.message}; the terminal showed: ${JSON.stringify(s.output())}`);
		});
		const before = s.output().length;
		s.type(`bindkey -s '^T' 'touch ${marker}\\n'\r`);
		await s.waitFor(/(?!)/, () => /% (?:\x1b\[[0-9;?]*[A-Za-z])*$/.test(s.output().slice(before)));
		const keyed = s.output().length;
		s.type("\x14");
		await s.waitFor(/(?!)/, () => s.output().length > keyed || existsSync(marker));
		const cancelled = s.output().length;
		s.type("\x03");
		await s.waitFor(/(?!)/, () => /% (?:\x1b\[[0-9;?]*[A-Za-z])*$/.test(s.output().slice(cancelled)));
		s.type("echo sentinel-$((40+2))\r");
		await s.waitFor(/sentinel-42/, () => existsSync(marker));
		assert.equal(existsSync(marker), false, `the key ran touch:\n${s.output()}`);
		assert.match(s.output(), /bindkey changes the line editor's keys/);
		s.type("exit\r");
	} finally {
		await s.end();
	}
});

/** Types each line at a prompt (waiting for the next one); returns the terminal output. */
async function typeLines(...lines: string[]): Promise<string> {
	const s = w.session();
	try {
		await s.waitFor(/\$ $/m);
		for (const line of lines) {
			const before = s.output().length;
			s.type(`${line}\r`);
			await s.waitFor(/(?!)/, () => /\$ (?:\x1b\[[0-9;?]*[A-Za-z])*$/.test(s.output().slice(before)) || existsSync(marker));
		}
		return s.output();
	} finally {
		await s.end();
	}
}

test("shell: history written unrun (`history -s`) and run by `!!` or `fc -s` is matched like what it runs", { timeout: 60_000 }, async () => {
	rmSync(marker, { force: true });
	const bang = await typeLines(`history -s 'touch ${marker}'`, "!!");
	assert.equal(existsSync(marker), false, `!! ran touch:\n${bang}`);
	assert.match(bang, /is a history expansion/);
	const fc = await typeLines(`history -s 'touch ${marker}'`, "fc -s touch");
	assert.equal(existsSync(marker), false, `fc ran touch:\n${fc}`);
	// Text that bash does not expand still runs.
	const plain = await typeLines("echo 'hi!x' \"a! b\" done-$((1+1))");
	assert.match(plain, /hi!x a! b done-2/);
});

test("readingChange: which commands change how the shell reads what follows", async () => {
	// Imported here: the tests above run on code without it (they fail there on what runs, not on an import).
	const { readingChange } = await import("../../gateway/policy/ssh.ts");
	const change = (line: string) => parseShellCommand(line).segments.map(readingChange).find((x) => x !== undefined);
	for (const l of [
		"bind -x '\"\\C-t\": rm -rf x'",
		"builtin bind '\"\\C-t\": \"rm x\\n\"'",
		"bind -r '\\C-u'",
		"bind -f /tmp/keys",
		"LC_ALL=zh_TW.BIG5",
		"export LANG=zh_TW.BIG5",
		"declare -x LC_CTYPE=zh_CN.GBK",
		"LC_ALL=zh_TW.BIG5 bash",
		"env LC_ALL=zh_TW.BIG5 bash",
		"LC_ALL=$x",
		"LANG+=.BIG5",
		"read LC_ALL",
		"printf -v LC_ALL %s zh_TW.BIG5",
		"for LC_ALL in zh_TW.BIG5; do :; done",
		"declare -n r=LC_ALL",
		`: $${"{"}LC_ALL:=zh_TW.BIG5}`,
		"INPUTRC=/tmp/keys bash",
		"export TERMINFO=/tmp/ti",
		"set -o vi",
		"bash -o vi",
		"bindkey -s '^T' 'rm x\\n'",
		"bindkey '^T' accept-line",
		"fc -s touch",
		"fc -e vi 3",
	]) {
		assert.ok(change(l), l);
	}
	for (const l of ["fc -l", "fc -ln -5", "bindkey", "bindkey -L", "bind -p", "bind -P", "bind -lv", "LC_ALL=C sort f", "export LANG=en_US.UTF-8", `echo $LANG $${"{"}LC_ALL:-C}`, "unset LC_ALL", "grep LANG /etc/default/locale", "set -o pipefail", "echo hi"]) {
		assert.equal(change(l), undefined, l);
	}
	// Rules match such a line whatever their commands; without any guard nothing is decided.
	const grant = { logins: ["u"], allowShell: true, allowSftp: false, allowPortForwarding: false, allowAgentForwarding: false };
	const rules = [{ name: "approve-rm", action: "requireApproval" as const, ssh: { commands: ["rm *"] } }];
	assert.equal(evaluateSshCommand("bind -x '\"\\C-t\": ls'", grant, rules).action, "requireApproval");
	assert.equal(evaluateSshCommand("bind -x '\"\\C-t\": ls'", grant, []).action, "allow");
	assert.equal(evaluateSshCommand("bind -p", grant, rules).action, "allow");
	// History expansion, in typed lines only (bash -c has none).
	const { historyExpansion } = await import("../../gateway/policy/ssh.ts");
	for (const l of ["!!", "sudo !!", "!-2", "!touch", "echo \"!$\"", "^a^b", "!?x?"]) assert.ok(historyExpansion(l), l);
	for (const l of ["echo 'a!b'", "[ ! -f x ]", "echo hi!", "x!=y", "echo \\!a", 'echo "a!"', "echo !(x)"]) assert.equal(historyExpansion(l), undefined, l);
	assert.equal(evaluateSshCommand("!!", grant, rules, undefined, { interactive: true }).action, "requireApproval");
	assert.equal(evaluateSshCommand("!!", grant, rules).action, "allow");
});
