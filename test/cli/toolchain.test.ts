// The toolchain promise: after `npm ci`, npm scripts (this test run included) use the pinned Node 24
// from node_modules, whatever node the machine has. A clean clone once lacked it when the `node`
// package's install script was denied; this catches that.
import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";

const ROOT = join(import.meta.dirname, "..", "..");

test("tests run on the pinned Node 24 from node_modules", () => {
	const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { devDependencies: Record<string, string>; engines: { node: string } };
	const pinned = pkg.devDependencies.node;
	assert.ok(pinned, "node is a pinned dev dependency");
	assert.equal(process.versions.node, pinned, `running ${process.version}, pinned ${pinned}`);
	assert.ok(existsSync(join(ROOT, "node_modules", ".bin", "node")), "node_modules/.bin/node exists");
	assert.equal(pkg.engines.node, ">=24.0.0");
});
