#!/usr/bin/env node
// Build ssh2's optional native crypto binding (AES-GCM, chacha20-poly1305, CTR+HMAC in C++ over
// OpenSSL) offline, for the Node.js that runs this script. Run by the root package's `postinstall`
// (so `npm ci` builds it) and by scripts/test-deps; idempotent, and never fails the install: without
// the binding ssh2 falls back to per-packet `node:crypto` / a JS poly1305 and the SSH data path is
// ~2x slower (docs/adr/0006-ssh2-crypto-binding.md, gateway/ssh/README.md "Throughput").
//
// Why not ssh2's own install script (denied in package.json `allowScripts`): it runs `node-gyp` without
// `--nodedir`, and node-gyp then downloads the Node headers from nodejs.org, which our machines cannot
// reach. The headers ship with the Node binary: in its install prefix (official tarballs, the node
// Docker images) or in the `node` npm package's platform package (node_modules/.bin/node).
//
// DRAWBRIDGE_SKIP_SSH2_BINDING=1 skips it (ssh2 then uses its fallback).
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, realpathSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
const say = (msg) => console.log(`[ssh2-binding] ${msg}`);

function main() {
	if (process.env.DRAWBRIDGE_SKIP_SSH2_BINDING) return say("skipped (DRAWBRIDGE_SKIP_SSH2_BINDING)");
	const require = createRequire(join(ROOT, "package.json"));
	// Only for the Node the project runs on: a build for the machine's older node (scripts run outside
	// npm) would replace the one the gateway loads.
	const wanted = Number(/\d+/.exec(require("./package.json").engines?.node ?? "")?.[0] ?? 0);
	const major = Number(process.versions.node.split(".")[0]);
	if (major < wanted) return say(`skipped: Node ${process.version} is older than the project's (>= ${wanted}); run it with node_modules/.bin/node`);
	let ssh2Dir;
	try {
		ssh2Dir = dirname(require.resolve("ssh2/package.json"));
	} catch {
		return say("ssh2 is not installed: nothing to build");
	}
	const cryptoDir = join(ssh2Dir, "lib", "protocol", "crypto");
	const addon = join(cryptoDir, "build", "Release", "sshcrypto.node");
	if (loads(addon)) return say(`already built for Node ${process.version}`);

	const nodedir = findNodeDir();
	if (!nodedir) return fallback(`no Node ${process.version} headers found next to ${process.execPath} or in node_modules`);
	const nodeGyp = findNodeGyp();
	if (!nodeGyp) return fallback("node-gyp not found (it ships with npm)");
	const opensslMajor = /^\d+/.exec(process.versions.openssl)?.[0] ?? "3";
	const t0 = Date.now();
	const r = spawnSync(process.execPath, [nodeGyp, "rebuild", `--nodedir=${nodedir}`, `--real_openssl_major=${opensslMajor}`], {
		cwd: cryptoDir,
		encoding: "utf8",
		env: gypEnv(),
		maxBuffer: 64 * 1024 * 1024,
		timeout: 300_000,
	});
	if (r.error || r.status !== 0) {
		const out = `${r.stdout ?? ""}${r.stderr ?? ""}`.trim().split("\n").slice(-15).join("\n");
		rmSync(join(cryptoDir, "build"), { recursive: true, force: true });
		return fallback(`node-gyp failed (${r.error?.message ?? `exit ${r.status}`}):\n${out}`);
	}
	if (!loads(addon)) {
		rmSync(join(cryptoDir, "build"), { recursive: true, force: true });
		return fallback("built, but the addon does not load in this Node");
	}
	say(`built for Node ${process.version} in ${((Date.now() - t0) / 1000).toFixed(1)} s (headers: ${nodedir})`);
}

/**
 * npm hands its scripts its own settings as npm_config_* variables, and node-gyp reads them as
 * options: npm running on the machine's Node 20 sets npm_config_nodedir=/usr (Node 20's headers), which
 * beat our --nodedir and built an addon Node 24 refuses ("did not self-register"). Drop them all.
 */
function gypEnv() {
	const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !/^npm_config_/i.test(k)));
	// binding.gyp runs `node -e "require('nan')"`: the same node as ours.
	env.PATH = `${dirname(process.execPath)}:${process.env.PATH ?? ""}`;
	return env;
}

function loads(addon) {
	if (!existsSync(addon)) return false;
	try {
		createRequire(import.meta.url)(addon);
		return true;
	} catch {
		return false;
	}
}

/** A directory with include/node/node_version.h of exactly this Node's version. */
function findNodeDir() {
	const platformPkg = `node-${process.platform}-${process.arch}`;
	const candidates = [
		resolve(dirname(realpathSync(process.execPath)), ".."),
		join(ROOT, "node_modules", "node", "node_modules", platformPkg),
		join(ROOT, "node_modules", platformPkg),
	];
	return candidates.find((dir) => headerVersion(dir) === process.versions.node);
}

function headerVersion(dir) {
	const h = join(dir, "include", "node", "node_version.h");
	if (!existsSync(h)) return undefined;
	const text = readFileSync(h, "utf8");
	const part = (name) => new RegExp(`#define ${name} (\\d+)`).exec(text)?.[1];
	return `${part("NODE_MAJOR_VERSION")}.${part("NODE_MINOR_VERSION")}.${part("NODE_PATCH_VERSION")}`;
}

function findNodeGyp() {
	const candidates = [];
	// npm tells its lifecycle scripts where its bundled node-gyp is.
	if (process.env.npm_config_node_gyp) candidates.push(process.env.npm_config_node_gyp);
	const npmCli = process.env.npm_execpath;
	if (npmCli) candidates.push(join(dirname(realpathSync(npmCli)), "..", "node_modules", "node-gyp", "bin", "node-gyp.js"));
	for (const prefix of [resolve(dirname(realpathSync(process.execPath)), ".."), "/usr/local", "/usr"]) {
		candidates.push(join(prefix, "lib", "node_modules", "npm", "node_modules", "node-gyp", "bin", "node-gyp.js"));
	}
	return candidates.find((p) => existsSync(p));
}

function fallback(why) {
	say(`not built: ${why}`);
	say("ssh2 will use its slower pure-Node crypto fallback; the gateway works, SSH throughput is lower");
}

try {
	main();
} catch (e) {
	fallback(e instanceof Error ? e.message : String(e));
}
