import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { test } from "node:test";
import { Type } from "@sinclair/typebox";
import { parse } from "yaml";
import { BEGIN, DOC_PATH, END, renderDoc } from "./docs.ts";
import { CRD_DIR, renderCrds } from "./generate.ts";
import {
	formatDuration,
	grantLengthMs,
	grantPhaseAt,
	grantWindow,
	KINDS,
	loadManifests,
	mustParseDuration,
	parseDuration,
	validateResource,
	validateSpec,
} from "./index.ts";
import { allCrds, SchemaError, toOpenAPI } from "./openapi.ts";
import { rulesOf } from "./schema/kit.ts";

// biome-ignore lint/suspicious/noExplicitAny: tests poke into generated JSON.
type J = any;

test("committed CRD YAML equals the generator output (run npm run crds:generate)", () => {
	for (const [file, text] of renderCrds()) {
		assert.equal(readFileSync(join(CRD_DIR, file), "utf8"), text, `crds/${file} is stale`);
	}
});

test("every kind has a CRD with status subresource, printer columns, short names and category", () => {
	const crds = allCrds();
	assert.equal(crds.length, 6);
	for (const { crd } of crds) {
		const spec = crd.spec as Record<string, J>;
		assert.equal(spec.group, "access.drawbridge.dev");
		assert.deepEqual(spec.names.categories, ["drawbridge"]);
		assert.ok(spec.names.shortNames.length > 0);
		const v = spec.versions[0];
		assert.equal(v.name, "v1alpha1");
		assert.deepEqual(v.subresources, { status: {} });
		assert.ok(v.additionalPrinterColumns.some((c: { name: string }) => c.name === "Age"));
	}
	const grant = crds.find((c) => (c.crd.spec as J).names.kind === "AccessGrant")!.crd.spec as J;
	assert.deepEqual(
		grant.versions[0].additionalPrinterColumns.filter((c: J) => !c.priority).map((c: J) => c.name),
		["Subject", "Connection", "Phase", "Expires", "Age"],
	);
	const ar = crds.find((c) => (c.crd.spec as J).names.kind === "ApprovalRequest")!.crd.spec as J;
	for (const col of ["Requester", "Command", "Phase", "Rule", "Expires", "Decided"]) assert.ok(ar.versions[0].additionalPrinterColumns.some((c: J) => c.name === col), col);
});

/** Walk a generated OpenAPI schema, calling `fn(path, node)` for every node. */
function walk(node: J, path: string, fn: (path: string, node: J) => void): void {
	fn(path, node);
	for (const [k, child] of Object.entries(node.properties ?? {})) walk(child, `${path}.${k}`, fn);
	if (node.items) walk(node.items, `${path}[]`, fn);
	if (node.additionalProperties && typeof node.additionalProperties === "object") walk(node.additionalProperties, `${path}{}`, fn);
}

test("generated schemas are structural: a type everywhere, descriptions on every field, no unions", () => {
	for (const { crd } of allCrds()) {
		const root = (crd.spec as J).versions[0].schema.openAPIV3Schema;
		walk(root, (crd.spec as J).names.kind, (path, node) => {
			assert.ok(node.type, `${path}: no type`);
			for (const banned of ["anyOf", "oneOf", "allOf", "not", "$ref", "$id", "patternProperties", "const"]) {
				assert.equal(node[banned], undefined, `${path}: ${banned}`);
			}
			if (node.properties) assert.equal(node.additionalProperties, undefined, `${path}: properties and additionalProperties`);
			if (!path.endsWith("[]") && !path.endsWith("{}") && !path.endsWith(".metadata")) {
				assert.ok(typeof node.description === "string" && node.description.length > 3, `${path}: no description`);
			}
		});
	}
});

test("the converter refuses a field without description and unsupported schemas", () => {
	assert.throws(() => toOpenAPI(Type.Object({ a: Type.String() }, { description: "x" }), "T"), SchemaError);
	assert.throws(() => toOpenAPI(Type.Union([Type.String(), Type.Integer()], { description: "x" }), "T"), SchemaError);
});

test("every CEL rule in the CRDs comes from a Rule with a TypeScript twin", () => {
	let count = 0;
	const visit = (schema: J): void => {
		for (const r of rulesOf(schema)) {
			assert.equal(typeof r.check, "function");
			assert.ok(r.cel.length > 0 && r.message.length > 0);
			count++;
		}
		for (const child of Object.values(schema.properties ?? {})) visit(child);
		if (schema.items) visit(schema.items);
	};
	for (const k of KINDS) visit(k.spec);
	let celCount = 0;
	for (const { crd } of allCrds()) {
		walk((crd.spec as J).versions[0].schema.openAPIV3Schema, "", (_p, node) => {
			celCount += node["x-kubernetes-validations"]?.length ?? 0;
		});
	}
	// Subject rules appear once per use of Subject in the YAML but once per schema object in TS.
	assert.ok(count >= 25, `only ${count} rules`);
	assert.ok(celCount >= count);
});

test("parseDuration and formatDuration", () => {
	assert.equal(parseDuration("2h"), 7_200_000);
	assert.equal(parseDuration("30m"), 1_800_000);
	assert.equal(parseDuration("7d"), 604_800_000);
	assert.equal(parseDuration("90s"), 90_000);
	assert.equal(parseDuration("1h30m"), 5_400_000);
	for (const bad of ["", "0h", "2", "h", "2x", "-1h", "1.5h", "2 h", "1m1h", "99999999999999999999d"]) assert.equal(parseDuration(bad), undefined, bad);
	assert.throws(() => mustParseDuration("soon"), /invalid duration "soon"/);
	assert.equal(formatDuration(5_400_000), "1h30m");
	assert.equal(formatDuration(604_800_000), "7d");
});

test("grantWindow: duration from the merge or notBefore; expiresAt as given; phases", () => {
	const merged = new Date("2026-11-25T10:00:00Z");
	assert.deepEqual(grantWindow({ duration: "2h" }, merged), { notBefore: merged, expiresAt: new Date("2026-11-25T12:00:00Z") });
	assert.deepEqual(grantWindow({ duration: "30m", notBefore: "2026-12-01T00:00:00Z" }, merged), {
		notBefore: new Date("2026-12-01T00:00:00Z"),
		expiresAt: new Date("2026-12-01T00:30:00Z"),
	});
	const w = grantWindow({ notBefore: "2026-12-01T00:00:00Z", expiresAt: "2026-12-31T00:00:00Z" }, merged);
	assert.equal(grantPhaseAt(w, merged), "Pending");
	assert.equal(grantPhaseAt(w, new Date("2026-12-15T00:00:00Z")), "Active");
	assert.equal(grantPhaseAt(w, new Date("2026-12-31T00:00:00Z")), "Expired");
	assert.throws(() => grantWindow({}, merged), TypeError);
	assert.throws(() => grantWindow({ duration: "2h", expiresAt: "2026-12-31T00:00:00Z" }, merged), TypeError);
	assert.equal(grantLengthMs({ duration: "2h" }), 7_200_000);
	assert.equal(grantLengthMs({ expiresAt: "2026-12-31T00:00:00Z" }), undefined);
});

test("validateResource applies defaults and accepts a minimal grant", () => {
	const r = validateResource({
		apiVersion: "access.drawbridge.dev/v1alpha1",
		kind: "AccessGrant",
		metadata: { name: "g" },
		spec: { connection: "db", subjects: [{ kind: "User", name: "a" }], ssh: { logins: ["a"], allowShell: true }, duration: "1h" },
	});
	assert.deepEqual(r.errors, []);
	assert.deepEqual((r.value as J).spec.ssh, { logins: ["a"], allowShell: true, allowSftp: false, allowPortForwarding: false, allowAgentForwarding: false });
	assert.deepEqual(validateSpec("Connection", { type: "kubernetes", host: "h", port: 6443 }), []);
});

test("AccessGrant ssh: allowPortForwarding needs allowedForwards, host:port without globs", () => {
	const grant = (ssh: Record<string, unknown>) =>
		validateResource({
			apiVersion: "access.drawbridge.dev/v1alpha1",
			kind: "AccessGrant",
			metadata: { name: "g" },
			spec: { connection: "db", subjects: [{ kind: "User", name: "a" }], ssh: { logins: ["a"], allowShell: true, ...ssh }, duration: "1h" },
		}).errors;
	assert.match(JSON.stringify(grant({ allowPortForwarding: true })), /allowPortForwarding needs allowedForwards/);
	for (const ok of ["localhost:5432", "db.internal:*", "10.0.0.7:443", "[::1]:6379", "[fd00::1]:22", "*:*", "*:8080"]) {
		assert.deepEqual(grant({ allowPortForwarding: true, allowedForwards: [ok] }), [], ok);
	}
	for (const bad of ["10.0.0.*:443", "db.*:22", "localhost", "::1:22", "localhost:0", "localhost:-1", "host:22/tcp", ":22", "-a:22", "a b:22"]) {
		assert.notDeepEqual(grant({ allowPortForwarding: true, allowedForwards: [bad] }), [], bad);
	}
});

test("validateResource: apiVersion and kind errors", () => {
	const kind = validateResource({ apiVersion: "access.drawbridge.dev/v1alpha1", kind: "Grant", metadata: { name: "x" }, spec: {} });
	assert.equal(kind.errors[0]?.field, "kind");
	const ver = validateResource({ apiVersion: "access.drawbridge.dev/v1", kind: "AccessGrant", metadata: { name: "x" }, spec: {} });
	assert.equal(ver.errors[0]?.field, "apiVersion");
	const status = validateResource({
		apiVersion: "access.drawbridge.dev/v1alpha1",
		kind: "Connection",
		metadata: { name: "x" },
		spec: { type: "kubernetes", host: "h", port: 1 },
		status: { phase: "Active" },
	});
	assert.deepEqual(status.errors, []);
	assert.equal(status.warnings[0]?.field, "status");
});

test("loadManifests: positions, tabs, duplicate keys, a broken document among valid ones", () => {
	const text = [
		"apiVersion: v1", // doc 0 line 1
		"kind: A",
		"metadata:",
		"  name: a",
		"---",
		"kind: B", // doc 1 line 6
		"metadata:",
		"\tname: b", // line 8: tab indent
		"---",
		"kind: C", // doc 2 line 10
		"kind: D", // line 11: duplicate key
		"---",
		"kind: E", // doc 3 line 13
		"spec:",
		"  list: [1, 2",
		"---",
		"- not a mapping", // doc 4 line 17
		"---",
		"apiVersion: v1", // doc 5 line 19
		"kind: F",
		"spec:",
		"  allowShell: yes",
		"  when: 2026-01-01T00:00:00Z",
		"",
	].join("\n");
	const { manifests, errors } = loadManifests(text, "f.yaml");
	assert.deepEqual(
		manifests.map((m) => [m.document, m.object.kind, m.line]),
		[
			[0, "A", 1],
			[5, "F", 19],
		],
	);
	const f = manifests[1]!.object as J;
	assert.equal(f.spec.allowShell, true, "YAML 1.1 booleans as kubectl reads them");
	assert.equal(f.spec.when, "2026-01-01T00:00:00Z", "timestamps stay strings");
	const byDoc = (d: number) => errors.filter((e) => e.document === d);
	assert.deepEqual(
		byDoc(1).map((e) => [e.code, e.line, e.col]),
		[["TAB_INDENT", 8, 1]],
	);
	assert.match(byDoc(1)[0]!.message, /tab/);
	assert.deepEqual(
		byDoc(2).map((e) => [e.code, e.line, e.col]),
		[["DUPLICATE_KEY", 11, 1]],
	);
	assert.match(byDoc(2)[0]!.message, /duplicate key "kind"/);
	assert.equal(byDoc(3)[0]?.code, "SYNTAX");
	assert.ok(byDoc(3)[0]!.line >= 15, JSON.stringify(byDoc(3)));
	assert.deepEqual(
		byDoc(4).map((e) => [e.code, e.line]),
		[["NOT_A_MAPPING", 17]],
	);
	assert.deepEqual(manifests[1]!.positionOf(["spec", "allowShell"]), { line: 22, col: 15 });
	assert.deepEqual(manifests[1]!.positionOf(["spec", "allowShell"], "key"), { line: 22, col: 3 });
	assert.deepEqual(manifests[1]!.positionOf(["spec", "missing"]), { line: 21, col: 1 }, "a missing field points at its parent key");
});

test("loadManifests refuses alias bombs", () => {
	const lines = ["a: &a [x, x, x, x, x, x, x, x, x, x]"];
	for (let i = 0; i < 8; i++) lines.push(`${String.fromCharCode(98 + i)}: &${String.fromCharCode(98 + i)} [${Array(10).fill(`*${String.fromCharCode(97 + i)}`).join(", ")}]`);
	const { manifests, errors } = loadManifests(lines.join("\n"), "bomb.yaml");
	assert.equal(manifests.length, 0);
	assert.equal(errors[0]?.code, "ALIAS_LIMIT");
});

test("generated YAML parses back to the CRD objects", () => {
	for (const { file, crd } of allCrds()) assert.deepEqual(parse(readFileSync(join(CRD_DIR, file), "utf8")), crd);
});

test("docs/resources.md reference is generated from the schemas and current (npm run docs:resources)", () => {
	const current = readFileSync(DOC_PATH, "utf8");
	assert.ok(current.includes(BEGIN) && current.includes(END));
	assert.equal(renderDoc(current), current, "docs/resources.md is stale");
	for (const k of KINDS) assert.ok(current.includes(`### ${k.kind}\n`), k.kind);
	assert.ok(current.includes("`spec.subjects[].kind`"));
});

test("loadManifests and validateRepository never throw on hostile input", async () => {
	const { validateRepository } = await import("./repo.ts");
	const fc = (await import("fast-check")).default;
	const example = readFileSync(join(CRD_DIR, "..", "examples", "grants", "oncall", "break-glass.yaml"), "utf8");
	const fragments = ["---\n", "\t", ": ", "- ", "&a ", "*a ", "!!binary ", "{", "}", "[", "]", "'", '"', "\n", "  ", "spec:", "kind: AccessGrant", "apiVersion: access.drawbridge.dev/v1alpha1", "<<: *a", "? ", "|", ">", "%YAML 1.2\n", "\u0000", "\uFEFF"];
	fc.assert(
		fc.property(fc.array(fc.oneof(fc.constantFrom(...fragments), fc.string({ maxLength: 8 })), { maxLength: 40 }), fc.nat(example.length), (parts, cut) => {
			for (const text of [parts.join(""), example.slice(0, cut) + parts.join("") + example.slice(cut)]) {
				const { manifests } = loadManifests(text, "fuzz.yaml");
				for (const m of manifests) validateResource(m.object);
				validateRepository([{ file: "fuzz.yaml", text }]);
			}
		}),
		{ numRuns: 300, seed: 7 },
	);
});
