import assert from "node:assert/strict";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, test } from "node:test";
import { FileHighWater } from "./highwater.ts";

const dir = mkdtempSync(join(tmpdir(), "drawbridge-highwater-"));
after(() => rmSync(dir, { recursive: true, force: true }));

test("the file mark is absent at first, only rises, and survives a new reader", async () => {
	const path = join(dir, "sub", "bundle-state.json");
	const a = new FileHighWater(path);
	assert.equal(await a.read(), undefined);
	await a.raise({ version: 4, hash: "h4", generatedAt: "g", acceptedAt: "t" });
	await a.raise({ version: 3, hash: "h3", generatedAt: "g", acceptedAt: "t" });
	const b = new FileHighWater(path);
	assert.deepEqual(await b.read(), { version: 4, hash: "h4", generatedAt: "g", acceptedAt: "t" });
	assert.equal(b.location, `file:${path}`);
});

test("a damaged mark is an error naming the recovery, never 'no mark'", async () => {
	const path = join(dir, "broken.json");
	writeFileSync(path, "{not json");
	await assert.rejects(new FileHighWater(path).read(), /bundle high-water mark is not JSON.*Bundle rollback refused/);
	writeFileSync(path, JSON.stringify({ version: "7" }));
	await assert.rejects(new FileHighWater(path).read(), /needs an integer version/);
});
