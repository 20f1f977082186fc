// `drawbridge --help` and every subcommand's --help answer with usage text and exit 0; an unknown
// command exits 2 with the command list.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { test } from "node:test";
import { SUBCOMMAND_NAMES } from "../../cli/drawbridge.ts";

const BIN = join(import.meta.dirname, "..", "..", "bin", "drawbridge.mjs");

function drawbridge(...args: string[]) {
	return spawnSync(process.execPath, [BIN, ...args], { encoding: "utf8", timeout: 60_000 });
}

test("drawbridge --help lists every subcommand", () => {
	const r = drawbridge("--help");
	assert.equal(r.status, 0, r.stderr);
	for (const name of SUBCOMMAND_NAMES) assert.match(r.stdout, new RegExp(`^  ${name}\\s`, "m"));
});

for (const name of SUBCOMMAND_NAMES) {
	test(`drawbridge ${name} --help prints its usage`, () => {
		const r = drawbridge(name, "--help");
		assert.equal(r.status, 0, `exit ${r.status}: ${r.stderr}`);
		assert.match(r.stdout, /usage/i);
		assert.match(r.stdout, new RegExp(name));
	});
}

test("an unknown command exits 2 and names itself", () => {
	const r = drawbridge("frobnicate");
	assert.equal(r.status, 2);
	assert.match(r.stderr, /unknown command "frobnicate"/);
});

test("drawbridge dev token refuses a lifetime the dev gateway would refuse, and mints a shorter one", () => {
	const state = mkdtempSync(join(tmpdir(), "drawbridge-dev-token-"));
	try {
		const long = drawbridge("dev", "token", "--user", "agent", "--state", state, "--ttl", "48h");
		assert.equal(long.status, 2, long.stderr);
		assert.match(long.stderr, /--ttl 48h is longer than the dev gateway accepts: .* at most 24 h/);
		assert.equal(long.stdout, "");
		const ok = drawbridge("dev", "token", "--user", "agent", "--state", state, "--ttl", "2h");
		assert.equal(ok.status, 0, ok.stderr);
		const [, payload] = ok.stdout.trim().split(".");
		const claims = JSON.parse(Buffer.from(payload!, "base64url").toString("utf8")) as { exp: number; iat: number };
		assert.equal(claims.exp - claims.iat, 7200);
	} finally {
		rmSync(state, { recursive: true, force: true });
	}
});
