/**
 * Rule globs with several `*` against a long command (red-team round 11). ssh2's client → gateway →
 * real sshd, under an exec grant and a GuardrailPolicy rule blocking `*a*b*c*d*` (a rule written as
 * "anything mentioning a, then b, then c, then d").
 *
 * Globs were compiled to one regular expression, `^[\s\S]*a[\s\S]*b[\s\S]*c[\s\S]*d[\s\S]*$`, which
 * backtracks over every way to place each `*` when the value does not match: `echo abcabc…` (21,000
 * characters, no `d`) held the gateway's event loop for far longer than any session lives, every
 * other session (SSH, Kubernetes, PostgreSQL) and every decision with it. Any grantee could do that with
 * one exec. On the old code this file does not finish (the gateway runs in the test's process, so the
 * test's own timeout cannot fire either). Globs are matched piece by piece now, in linear time, with
 * the same answers (checked against the single expression below).
 */
import assert from "node:assert/strict";
import { createRequire } from "node:module";
import { after, before, test } from "node:test";
import { compileCaseSensitiveGlob, compileGlob } from "../../gateway/policy/glob.ts";
import { type SshListener, startSshListener } from "../../gateway/ssh/listener.ts";
import { type SshdHandle, startSshd } from "../env/index.ts";
import { approvalService, MemoryRecorder, makeBundle, sshdConnection, sshdCredentials, sshGrant, storeWith, type TokenIssuer, tokenIssuer } from "./fixtures.ts";
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
			grants: [sshGrant(sshd, "lee", "web")],
			guardrailPolicies: [{ key: "ops/web-rules", selector: { matchLabels: { env: "prod" } }, rules: [{ name: "no-abcd", action: "block", ssh: { commands: ["*a*b*c*d*"] } }] }],
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

async function exec(command: string): Promise<{ out: string; code: number | undefined }> {
	const c = new ssh2.Client();
	const password = await issuer.token("lee");
	await new Promise<void>((resolve, reject) => {
		c.on("ready", () => resolve());
		c.on("error", reject);
		c.connect({ host: "127.0.0.1", port: gw.address.port, username: `${sshd.user}@web`, password, hostVerifier: () => true });
	});
	try {
		return await new Promise((resolve, reject) => {
			c.exec(command, (err, s) => {
				if (err) return reject(err);
				let out = "";
				let code: number | undefined;
				s.on("data", (b: Buffer) => (out += b.toString()));
				s.stderr.on("data", (b: Buffer) => (out += b.toString()));
				s.on("exit", (n: number | null) => (code = n ?? undefined));
				s.on("close", () => resolve({ out, code }));
			});
		});
	} finally {
		c.end();
	}
}

test("control: a command the rule names is refused", { timeout: 60_000 }, async () => {
	const r = await exec("echo a b c d");
	assert.notEqual(r.code, 0, r.out);
	assert.match(r.out, /no-abcd/);
});

test("a long command the rule does not name is decided, and runs", { timeout: 60_000 }, async () => {
	const long = "abc".repeat(7000);
	const r = await exec(`echo ${long}`);
	assert.equal(r.code, 0, r.out);
	assert.equal(r.out.trim(), long);
	// And one it names, as long, is still refused.
	const named = await exec(`echo ${long}d`);
	assert.notEqual(named.code, 0, named.out.slice(0, 200));
	assert.match(named.out, /no-abcd/);
});

test("piecewise matching answers as the single expression did", () => {
	const reference = (pattern: string, caseSensitive: boolean) => {
		let src = "^";
		for (const ch of pattern) src += ch === "*" ? "[\\s\\S]*" : ch === "?" ? "[\\s\\S]" : ch.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
		const re = new RegExp(`${src}$`, caseSensitive ? "u" : "iu");
		return (v: string) => re.test(v);
	};
	// A small alphabet with case pairs, a character folding to `k` (U+212A KELVIN SIGN), an astral one
	// (`?` is one code point) and regular-expression syntax.
	const alphabet = ["a", "b", "A", "k", "\u212a", "\u{1f600}", ".", "("];
	let seed = 11;
	const rand = (n: number) => {
		seed = (seed * 1103515245 + 12345) % 2147483648;
		return seed % n;
	};
	const word = (from: string[], max: number) => Array.from({ length: rand(max + 1) }, () => from[rand(from.length)]!).join("");
	for (let i = 0; i < 4000; i++) {
		const pattern = word([...alphabet, "*", "*", "?"], 6);
		const value = word(alphabet, 9);
		for (const cs of [false, true]) {
			const got = (cs ? compileCaseSensitiveGlob : compileGlob)(pattern)(value);
			assert.equal(got, reference(pattern, cs)(value), `${JSON.stringify(pattern)} on ${JSON.stringify(value)} (case-sensitive ${cs})`);
		}
	}
	for (const [pattern, value, want] of [
		["ab*ba", "aba", false],
		["ab*ba", "abba", true],
		["*a*a*", "aa", true],
		["*a*a*", "a", false],
		["a*", "A", true],
		["*?", "\u{1f600}", true],
		["?*?", "\u{1f600}", false],
	] as const) {
		assert.equal(compileGlob(pattern)(value), want, `${pattern} on ${value}`);
	}
});
