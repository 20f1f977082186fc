/**
 * A locale that makes the target's shell read the command line differently (red-team round 9). ssh2's
 * client → gateway → real sshd (Debian's `AcceptEnv LANG LC_*`), login shell bash, under an exec-only
 * grant (allowedCommands ["echo *"]).
 *
 * The gateway relayed LANG / LC_* with any plain name, `zh_TW.BIG5` included. In BIG5 (also
 * BIG5-HKSCS, GBK, GB18030, SHIFT_JIS) the second byte of a character may be an ASCII byte, `\`
 * among them, and bash's parser does not take such a byte for a backslash: `echo \xa1\; touch f` is
 * `echo` with the argument `\xa1;` to the gateway's tokenizer (an allowed `echo *`) and
 * `echo \xa1\ ; touch f` to bash. (The gateway relays the command as UTF-8: the agent's byte 0xa1
 * becomes U+FFFD, EF BF BD, whose last byte is a BIG5 lead byte just the same.) Now LANG, LC_ALL and
 * LC_CTYPE travel only as C, POSIX or a UTF-8 locale; others are dropped with a notice.
 *
 * The target has a BIG5 locale: compiled here with localedef into a private directory, which the test
 * sshd hands to sessions as LOCPATH (a system with `locales-all`, or zh_TW.BIG5 in /etc/locale.gen, has
 * it without that).
 */
import assert from "node:assert/strict";
import { chmodSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { isSafeCharsetLocale, type SshListener, startSshListener } from "../../gateway/ssh/listener.ts";
import { runOk, type SshdHandle, startSshd } from "../env/index.ts";
import { approvalService, MemoryRecorder, makeBundle, sshdConnection, sshdCredentials, sshGrant, storeWith, type TokenIssuer, tokenIssuer } from "./fixtures.ts";
import { KeyDir } from "./keys.ts";

const ssh2 = createRequire(import.meta.url)("ssh2") as typeof import("ssh2");
type ConnectConfig = Parameters<InstanceType<typeof ssh2.Client>["connect"]>[0];

const keys = new KeyDir();
let sshd: SshdHandle;
let issuer: TokenIssuer;
let gw: SshListener;
let locales: string;
const recorder = new MemoryRecorder();
const marker = `/tmp/drawbridge-sshlocale-${process.pid}`;
/** `\xa1` (U+FFFD once UTF-8 decoded), then `\;`: for the gateway an escaped `;`, for bash in BIG5 half a character and a `;`. */
const LINE = `echo \uFFFD\\; touch ${marker}`;

before(async () => {
	locales = mkdtempSync(join(tmpdir(), "drawbridge-locales-"));
	chmodSync(locales, 0o755);
	await runOk("localedef", ["-i", "zh_TW", "-f", "BIG5", join(locales, "zh_TW.BIG5")], { timeoutMs: 120_000 });
	issuer = await tokenIssuer();
	sshd = await startSshd({ extraConfig: ["AcceptEnv LANG LC_*", `SetEnv LOCPATH=${locales}`] });
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
	rmSync(marker, { force: true });
	await gw?.close();
	await sshd?.stop();
	keys.cleanup();
	if (locales) rmSync(locales, { recursive: true, force: true });
});

/** One exec with env requests: through the gateway (token as password), or straight to sshd (its client key). */
async function exec(command: string, env: Record<string, string>, direct = false): Promise<{ err?: Error; out: string }> {
	const c = new ssh2.Client();
	const config: ConnectConfig = direct
		? { host: "127.0.0.1", port: sshd.port, username: sshd.user, privateKey: readFileSync(sshd.clientKeyFile), hostVerifier: () => true }
		: { host: "127.0.0.1", port: gw.address.port, username: `${sshd.user}@web`, password: await issuer.token("lee"), hostVerifier: () => true };
	await new Promise<void>((resolve, reject) => {
		c.on("ready", () => resolve());
		c.on("error", reject);
		c.connect(config);
	});
	try {
		return await new Promise((resolve) => {
			c.exec(command, { env }, (err, s) => {
				if (err) return resolve({ err, out: "" });
				let out = "";
				s.on("data", (b: Buffer) => (out += b.toString("latin1")));
				s.stderr.on("data", (b: Buffer) => (out += b.toString("latin1")));
				s.on("close", () => resolve({ out }));
			});
		});
	} finally {
		c.end();
	}
}

test("the premise, without the gateway: bash in zh_TW.BIG5 runs the second command; in C.UTF-8 it does not", { timeout: 60_000 }, async () => {
	rmSync(marker, { force: true });
	const utf8 = await exec(LINE, { LC_ALL: "C.UTF-8" }, true);
	assert.equal(existsSync(marker), false, utf8.out);
	const big5 = await exec(LINE, { LC_ALL: "zh_TW.BIG5" }, true);
	assert.equal(existsSync(marker), true, `bash did not split the line in BIG5: ${big5.out}`);
	rmSync(marker, { force: true });
});

test("through the gateway the allowed `echo *` runs nothing else, whichever variable names BIG5", { timeout: 60_000 }, async () => {
	const envs: Record<string, string>[] = [{ LC_ALL: "zh_TW.BIG5" }, { LANG: "zh_TW.BIG5" }, { LC_CTYPE: "zh_TW.BIG5" }, { LANG: "zh_TW.big5", LC_ALL: "zh_TW.BIG5" }];
	for (const env of envs) {
		rmSync(marker, { force: true });
		const r = await exec(LINE, env);
		assert.equal(r.err, undefined);
		// On the old code the gateway relayed the locale and bash ran touch.
		assert.equal(existsSync(marker), false, `${JSON.stringify(env)}: ${r.out}`);
	}
	assert.ok(recorder.events("notice").some((e) => /env LC_ALL dropped: zh_TW\.BIG5 is not a UTF-8 locale/.test(e.message)));
	// UTF-8 locales and other categories still travel.
	const plain = await exec("echo [$LANG] [$LC_CTYPE] [$LC_TIME]", { LANG: "C.UTF-8", LC_CTYPE: "en_US.utf8", LC_TIME: "de_DE@euro" });
	assert.match(plain.out, /\[C\.UTF-8\] \[en_US\.utf8\] \[de_DE@euro\]/);
});

test("isSafeCharsetLocale", () => {
	for (const v of ["", "C", "POSIX", "C.UTF-8", "C.utf8", "en_US.UTF-8", "sr_RS.UTF-8@latin", "zh_TW.utf8"]) assert.ok(isSafeCharsetLocale(v), v);
	for (const v of ["zh_TW.BIG5", "zh_TW", "zh_CN.GBK", "zh_CN.GB18030", "ja_JP.SJIS", "zh_HK.BIG5-HKSCS", "en_US", "de_DE@euro", "UTF-8"]) assert.ok(!isSafeCharsetLocale(v), v);
});
