/**
 * Fuzzing the positioned multi-document YAML loader (crds/load.ts) with fast-check: whatever the
 * text, loadManifests returns manifests and positioned errors and never throws; alias bombs are
 * refused by the alias limit instead of expanding.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { stringify } from "yaml";
import { loadManifests } from "../../../crds/load.ts";

function checkResult(text: string): void {
	const r = loadManifests(text, "fuzz.yaml");
	assert.ok(Array.isArray(r.manifests) && Array.isArray(r.errors));
	const lines = text.split(/\r\n|\r|\n/).length;
	for (const e of r.errors) {
		assert.equal(e.file, "fuzz.yaml");
		assert.ok(Number.isInteger(e.line) && e.line >= 1 && e.line <= lines + 1, `line ${e.line} of ${lines}`);
		assert.ok(Number.isInteger(e.col) && e.col >= 1, `col ${e.col}`);
		assert.equal(typeof e.message, "string");
	}
	for (const m of r.manifests) {
		assert.equal(typeof m.object, "object");
		assert.ok(m.object !== null && !Array.isArray(m.object));
		const p = m.positionOf(["metadata", "name"]);
		assert.ok(p.line >= 1 && p.col >= 1);
	}
}

const yamlish = fc.array(
	fc.oneof(
		fc.constantFrom("---", "...", "apiVersion: v1", "kind: AccessGrant", "metadata:", "  name: x", "  name: &a [*a]", "\tkey: tab", "- item", "? complex", ": value", "key: {a: b", "key: [1, 2", "'unterminated", '"esc \\u00', "%YAML 1.1", "%TAG ! tag:x,2000:", "!!binary |", "  Zm9v", "<<: *anchor", "&anchor a: 1", "a: 1\na: 2", "#comment", "", "  ", "key: |", "key: >-", "\u00a0key: nbsp", "\ufeffkey: bom"),
		fc.string({ maxLength: 40 }),
	),
	{ maxLength: 30 },
);

test("random text and YAML-shaped line soup never make loadManifests throw", () => {
	fc.assert(fc.property(fc.oneof(fc.string({ maxLength: 400 }), yamlish.map((ls) => ls.join("\n"))), (text) => checkResult(text)), { numRuns: 2000 });
});

test("any JSON-compatible value serialised as YAML (one or many documents) loads without throwing", () => {
	fc.assert(
		fc.property(fc.array(fc.jsonValue({ maxDepth: 4 }), { minLength: 1, maxLength: 4 }), (docs) => {
			const text = docs.map((d) => stringify(d)).join("---\n");
			checkResult(text);
			const r = loadManifests(text, "fuzz.yaml");
			// Mappings come back as manifests (or as errors), never silently dropped.
			const mappings = docs.filter((d) => d !== null && typeof d === "object" && !Array.isArray(d)).length;
			assert.ok(r.manifests.length + r.errors.length >= Math.min(mappings, 1) || mappings === 0);
		}),
		{ numRuns: 500 },
	);
});

test("an alias bomb (billion laughs) is refused by the alias limit, not expanded", () => {
	const lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
	for (let i = 0; i < 9; i++) {
		const prev = String.fromCharCode(97 + i);
		const cur = String.fromCharCode(98 + i);
		lines.push(`${cur}: &${cur} [${Array(10).fill(`*${prev}`).join(", ")}]`);
	}
	const t0 = process.hrtime.bigint();
	const r = loadManifests(lines.join("\n"), "bomb.yaml");
	void t0;
	assert.equal(r.manifests.length, 0);
	assert.ok(r.errors.some((e) => e.code === "ALIAS_LIMIT"), JSON.stringify(r.errors));
});
