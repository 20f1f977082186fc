// ssh2's native crypto binding is part of the SSH data path's performance budget: without it every
// byte is encrypted through a new node:crypto context per packet (and chacha20-poly1305 through a JS
// poly1305), and bench/ssh.ts measured the gateway at about half its throughput with it. `npm ci`
// builds it (scripts/build-ssh2-binding.mjs, root postinstall; scripts/test-deps retries): this test
// makes a silent fallback a red build instead of a slow gateway.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { createRequire } from "node:module";
import { test } from "node:test";
import { fileURLToPath } from "node:url";
import { DEFAULT_UPSTREAM_CIPHERS, sshCryptoBinding } from "../../gateway/ssh/listener.ts";

const require = createRequire(import.meta.url);

test("ssh2's native crypto binding is built and loaded", () => {
	const { bindingAvailable } = require("ssh2/lib/protocol/crypto.js") as { bindingAvailable: boolean };
	assert.equal(
		bindingAvailable,
		true,
		"ssh2's sshcrypto.node is missing or does not load: run `node_modules/.bin/node scripts/build-ssh2-binding.mjs` and read its output",
	);
	assert.equal(sshCryptoBinding, true);
});

test("with the binding the gateway prefers AES-GCM towards targets", () => {
	assert.equal(DEFAULT_UPSTREAM_CIPHERS[0], "aes128-gcm@openssh.com");
});

test("the build script is idempotent and says so", () => {
	const script = fileURLToPath(new URL("../../scripts/build-ssh2-binding.mjs", import.meta.url));
	const r = spawnSync(process.execPath, [script], { encoding: "utf8" });
	assert.equal(r.status, 0, r.stderr);
	assert.ok(r.stdout.includes(`already built for Node ${process.version}`), r.stdout);
});
