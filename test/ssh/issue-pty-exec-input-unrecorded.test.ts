/**
 * Regression (recordings red-team round 10, unrecorded actions). An exec with a pty (`ssh -t gw
 * bash`) is a terminal like the shell, but where no rule checks shell lines only its output was
 * recorded, not what was typed into it (a shell's input is). Through ssh2's client → gateway → real
 * sshd: exec `bash` with a pty, `stty -echo`, then `touch <marker>`: the file was made and the
 * recording held the exec `bash` and the command's silence, nothing of the `touch`. Its input is
 * recorded now as `terminal` `i` events, as a shell's.
 */
import assert from "node:assert/strict";
import { existsSync, rmSync } from "node:fs";
import { after, test } from "node:test";
import { recordedGateway } from "./recorded-gateway.ts";

// no rule with ssh.commands: typed lines are not checked, keystrokes pass straight through
const w = recordedGateway({ allowShell: true });
const { recorder } = w;
const marker = `/tmp/drawbridge-pty-exec-${process.pid}`;

after(() => {
	rmSync(marker, { force: true });
});

test("what is typed into an exec with a pty is recorded, echo or not", async () => {
	const c = await w.login();
	try {
		const ch = await new Promise<import("ssh2").ClientChannel>((resolve, reject) =>
			c.exec("bash --norc --noprofile", { pty: { term: "xterm", rows: 24, cols: 80 } }, (err, s) => (err ? reject(err) : resolve(s))),
		);
		let out = "";
		const waiters: { re: RegExp; resolve: () => void }[] = [];
		ch.on("data", (b: Buffer) => {
			out += b.toString("utf8");
			for (const w of waiters.splice(0)) {
				if (w.re.test(out)) w.resolve();
				else waiters.push(w);
			}
		});
		const seen = (re: RegExp) =>
			new Promise<void>((resolve, reject) => {
				if (re.test(out)) return resolve();
				const t = setTimeout(() => reject(new Error(`no ${re} in ${JSON.stringify(out)}`)), 30_000);
				waiters.push({
					re,
					resolve: () => {
						clearTimeout(t);
						resolve();
					},
				});
			});
		ch.write("stty -echo; echo ready-$((1+1))\n");
		await seen(/ready-2/);
		ch.write(`touch ${marker}; echo done-$((6*7))\n`);
		await seen(/done-42/);
		ch.end("exit\n");
		await new Promise((r) => ch.on("close", r));
	} finally {
		c.end();
	}
	assert.ok(existsSync(marker), "the typed command ran on the target");
	const output = recorder.events("terminal").filter((e) => e.stream === "o").map((e) => e.data).join("");
	assert.match(output, /done-42/);
	assert.ok(!output.includes(`touch ${marker}`), "after stty -echo the output does not show the typed line");
	const input = recorder.events("terminal").filter((e) => e.stream === "i").map((e) => e.data).join("");
	assert.ok(input.includes(`touch ${marker}`), `the typed line is missing from the recording's input: ${JSON.stringify(input)}`);
	assert.ok(recorder.events("exec").some((e) => e.command === "bash --norc --noprofile"));
});
