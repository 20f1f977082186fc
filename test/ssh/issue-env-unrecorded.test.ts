/**
 * Regression (recordings red-team round 10, unrecorded actions). An SSH client's `env` requests set
 * the environment of the command it runs next: the gateway relays LANG, LC_* and TERM with plain
 * values and drops the rest. Only values it dropped for their form left a notice; a relayed `LC_ALL`
 * (a locale changes how the target's programs read bytes: round 9's BIG5 finding) and every name
 * dropped for not being relayed (`LD_PRELOAD`, `BASH_ENV`) left no trace. Through ssh2's client →
 * gateway → real sshd, both are recorded as notices now.
 */
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";
import { type SshListener, startSshListener } from "../../gateway/ssh/listener.ts";
import { type SshdHandle, startSshd } from "../env/index.ts";
import { approvalService, makeBundle, MemoryRecorder, sshdConnection, sshdCredentials, sshGrant, storeWith, type TokenIssuer, tokenIssuer } from "./fixtures.ts";
import { KeyDir } from "./keys.ts";

const ssh2 = createRequire(import.meta.url)("ssh2") as typeof import("ssh2");

const keys = new KeyDir();
let sshd: SshdHandle;
let issuer: TokenIssuer;
let gw: SshListener;
const recorder = new MemoryRecorder();

before(async () => {
	issuer = await tokenIssuer();
	sshd = await startSshd();
	const store = storeWith(
		makeBundle(issuer, {
			connections: [sshdConnection(sshd, "web")],
			grants: [sshGrant(sshd, "lee", "web", { allowedCommands: ["echo *"] })],
			credentials: sshdCredentials(sshd),
		}),
	);
	gw = await startSshListener({ store, recorder, approvals: approvalService(), hostKeyPem: keys.keygen("ed25519").privateKey });
});

after(async () => {
	await gw?.close();
	await sshd?.stop();
	keys.cleanup();
});

test("env requests relayed or dropped are recorded", async () => {
	const token = await issuer.token("lee");
	const c = new ssh2.Client();
	await new Promise<void>((resolve, reject) => {
		c.on("ready", () => resolve());
		c.on("error", reject);
		c.connect({ host: "127.0.0.1", port: gw.address.port, username: `${sshd.user}@web`, password: token, hostVerifier: () => true });
	});
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
