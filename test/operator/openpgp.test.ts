/**
 * OpenPGP commit-signature checks against real GnuPG: Ed25519 and RSA keys made by gpg, commits signed
 * by `git commit -S`, verified by operator/gitsync/openpgp.ts; tampering, other keys and unsigned
 * commits refused.
 */
import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { promisify } from "node:util";
import * as fs from "node:fs";
import git from "isomorphic-git";
import { PgpError, dearmor, parseArmoredPublicKeys, verifyDetachedSignature } from "../../operator/gitsync/openpgp.ts";

const run = promisify(execFile);

async function gpgKey(home: string, algo: "ed25519" | "rsa3072", uid: string): Promise<{ armored: string; fpr: string }> {
	const env = { ...process.env, GNUPGHOME: home };
	await run("gpg", ["--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", uid, algo, "sign", "never"], { env });
	const { stdout: armored } = await run("gpg", ["--armor", "--export", uid], { env });
	const { stdout: list } = await run("gpg", ["--with-colons", "--list-keys", uid], { env });
	const fpr = /^fpr:+([0-9A-F]{40}):/m.exec(list)![1]!;
	return { armored, fpr };
}

test("git commits signed by gpg (Ed25519 and RSA) verify; tampered, foreign-key and unsigned commits do not", async (t) => {
	const dir = await mkdtemp(join(tmpdir(), "dbpgp-"));
	t.after(() => rm(dir, { recursive: true, force: true }));
	const home = join(dir, "gnupg");
	fs.mkdirSync(home, { mode: 0o700 });
	const ed = await gpgKey(home, "ed25519", "Merger Ed <ed@example.com>");
	const rsa = await gpgKey(home, "rsa3072", "Merger Rsa <rsa@example.com>");
	const other = await gpgKey(home, "ed25519", "Someone Else <else@example.com>");
	const edKeys = parseArmoredPublicKeys(ed.armored);
	assert.equal(edKeys[0]!.fingerprint, ed.fpr, "fingerprint computed like gpg");
	const work = join(dir, "repo");
	const env = { ...process.env, GNUPGHOME: home, GIT_AUTHOR_NAME: "a", GIT_AUTHOR_EMAIL: "a@x", GIT_COMMITTER_NAME: "c", GIT_COMMITTER_EMAIL: "c@x" };
	await run("git", ["init", "-q", "-b", "main", work]);
	const commit = async (msg: string, key?: string) => {
		await writeFile(join(work, "f.txt"), `${msg}\n`);
		await run("git", ["-C", work, "add", "."], { env });
		await run("git", ["-C", work, "-c", "gpg.program=gpg", "commit", "-q", ...(key ? [`-S${key}`] : []), "-m", msg], { env });
		const oid = (await run("git", ["-C", work, "rev-parse", "HEAD"])).stdout.trim();
		return git.readCommit({ fs, gitdir: join(work, ".git"), oid });
	};
	const trusted = [...parseArmoredPublicKeys(ed.armored), ...parseArmoredPublicKeys(rsa.armored)];
	const c1 = await commit("ed signed", ed.fpr);
	assert.equal(verifyDetachedSignature(c1.commit.gpgsig!, Buffer.from(c1.payload), trusted).fingerprint, ed.fpr);
	const c2 = await commit("rsa signed", rsa.fpr);
	assert.equal(verifyDetachedSignature(c2.commit.gpgsig!, Buffer.from(c2.payload), trusted).fingerprint, rsa.fpr);
	const code = (fn: () => unknown) => {
		try {
			fn();
			return "ok";
		} catch (e) {
			return e instanceof PgpError ? e.code : String(e);
		}
	};
	assert.equal(code(() => verifyDetachedSignature(c1.commit.gpgsig!, Buffer.from(c1.payload.replace("ed signed", "ed signeD")), trusted)), "BAD_SIGNATURE");
	assert.equal(code(() => verifyDetachedSignature(c2.commit.gpgsig!, Buffer.from(`${c2.payload} `), trusted)), "BAD_SIGNATURE");
	// Same data and hash prefix, damaged signature value: the public-key check itself must fail.
	for (const c of [c1, c2]) {
		const raw = dearmor(c.commit.gpgsig!);
		raw[raw.length - 1] = raw[raw.length - 1]! ^ 0x01;
		const damaged = `-----BEGIN PGP SIGNATURE-----\n\n${raw.toString("base64")}\n-----END PGP SIGNATURE-----\n`;
		assert.equal(code(() => verifyDetachedSignature(damaged, Buffer.from(c.payload), trusted)), "BAD_SIGNATURE");
	}
	const c3 = await commit("foreign", other.fpr);
	assert.equal(code(() => verifyDetachedSignature(c3.commit.gpgsig!, Buffer.from(c3.payload), trusted)), "UNTRUSTED_KEY");
	const c4 = await commit("unsigned");
	assert.equal(c4.commit.gpgsig, undefined);
	assert.equal(code(() => verifyDetachedSignature("", Buffer.from(c4.payload), trusted)), "MALFORMED");
	assert.equal(code(() => parseArmoredPublicKeys("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nAAAA\n")), "MALFORMED");
});
