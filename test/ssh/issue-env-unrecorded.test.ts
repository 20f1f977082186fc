/**
 * Regression (recordings red-team round 10, unrecorded actions). An SSH client's `env` requests set
 * the environment of the command it runs next: the gateway relays LANG, LC_* and TERM with plain
 * values and drops the rest. Only values it dropped for their form left a notice; a relayed `LC_ALL`
 * (a locale changes how the target's programs read bytes: round 9's BIG5 finding) and every name
 * dropped for not being relayed (`LD_PRELOAD`, `BASH_ENV`) left no trace. Through ssh2's client →
 * gateway → real sshd, both are recorded as notices now.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { recordedGateway } from "./recorded-gateway.ts";

const w = recordedGateway({ allowedCommands: ["echo *"] });
const { recorder } = w;

test("env requests relayed or dropped are recorded", async () => {
	const c = await w.login();
	let out = "";
	try {
		await new Promise<void>((resolve, reject) =>
			c.exec("echo locale-$LC_ALL", { env: { LC_ALL: "C.UTF-8", LD_PRELOAD: "/tmp/evil.so" } }, (err, ch) => {
				if (err) return reject(err);
				ch.on("data", (b: Buffer) => (out += b.toString()));
				ch.on("close", () => resolve());
			}),
		);
	} finally {
		c.end();
	}
	assert.match(out, /locale-/, "the command ran");
	const notices = recorder.events("notice").map((e) => e.message);
	assert.ok(notices.includes("env LC_ALL=C.UTF-8 relayed to the target"), `relayed env missing from the recording: ${JSON.stringify(notices)}`);
	assert.ok(notices.some((m) => m.startsWith("env LD_PRELOAD dropped")), JSON.stringify(notices));
});
