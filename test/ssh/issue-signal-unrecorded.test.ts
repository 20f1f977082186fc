/**
 * Regression (recordings red-team round 10, unrecorded actions). An SSH client may send a `signal`
 * request on a session channel (RFC 4254 section 6.9); the gateway relays it to the target, whose sshd
 * delivers it to the running command. Through ssh2's client → gateway → real sshd: exec `sleep N`,
 * then `signal TERM`: the command died, and the recording held the exec ending by signal TERM with
 * nothing saying the agent sent it (a command killed halfway, an approved migration included, looked
 * like the target's doing). Relayed signals are recorded now (a notice naming the signal and the
 * command), as are refused ones.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { run } from "../env/index.ts";
import { recordedGateway } from "./recorded-gateway.ts";

const w = recordedGateway({ allowedCommands: ["sleep *"] });
const { recorder } = w;
/** A sleep no other test runs, to find it on the target. */
const SECONDS = 600 + (process.pid % 1000);

test("a signal sent to a running command is recorded", async () => {
	const c = await w.login();
	try {
		const ch = await new Promise<import("ssh2").ClientChannel>((resolve, reject) => c.exec(`sleep ${SECONDS}`, (err, s) => (err ? reject(err) : resolve(s))));
		const exited = new Promise<{ code: number | null; signal?: string }>((resolve) =>
			ch.on("exit", (code: number | null, signal?: string) => resolve({ code, ...(signal ? { signal } : {}) })),
		);
		// wait until the command runs on the target
		const deadline = Date.now() + 60_000;
		while ((await run("pgrep", ["-f", `^sleep ${SECONDS}$`])).code !== 0) {
			if (Date.now() > deadline) throw new Error("the sleep never started on the target");
			await new Promise((r) => setTimeout(r, 50));
		}
		ch.signal("TERM");
		const exit = await exited;
		assert.match(exit.signal ?? "", /TERM$/, JSON.stringify(exit));
		ch.close();
	} finally {
		c.end();
	}
	const deadline = Date.now() + 60_000;
	while (!recorder.events("exec").some((e) => e.command === `sleep ${SECONDS}` && e.signal !== undefined) && Date.now() < deadline) {
		await new Promise((r) => setTimeout(r, 50));
	}
	const notices = recorder.events("notice").map((e) => e.message);
	assert.ok(
		notices.some((m) => m === `signal TERM sent to "sleep ${SECONDS}"`),
		`the signal is missing from the recording: ${JSON.stringify(notices)}`,
	);
});
