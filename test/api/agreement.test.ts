/**
 * Property test: the offline validator and a real kube-apiserver agree on randomly mutated
 * resources. Each run takes a valid object, applies a few mutations drawn from pools of interesting
 * values (boundaries of every cap, odd timestamps, wrong types, unknown fields, removed fields), and
 * sends it to the apiserver (dry run, strict field validation) and to `validateResource`. Both must
 * accept, or both reject — and when both reject, on at least one common field. Seeded, so a failure
 * is reproducible.
 *
 * And the pull-request check against the operator: `drawbridge validate` and the operator's loader
 * (what a GitSource syncs) refuse the same files and documents with the same message at the same
 * position, on the whole invalid corpus, on file-level refusals and on the examples (accepted by both).
 */
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { relative } from "node:path";
import { after, before, test } from "node:test";
import fc from "fast-check";
import { problemText, SYNCED_KINDS } from "../../crds/gitops.ts";
import { KINDS, validateResource } from "../../crds/index.ts";
import { validateRepository } from "../../crds/repo.ts";
import { loadSnapshot } from "../../operator/gitsync/load.ts";
import { type KubeHandle, printLogsOnFailure, startKube } from "../env/index.ts";
import { CRDS_DIR, EXAMPLES_DIR, exampleManifestFiles, loadCorpus } from "./corpus.ts";

let kube: KubeHandle;
before(async () => {
	kube = await startKube();
	const r = await kube.kubectl(["apply", "-k", CRDS_DIR]);
	assert.equal(r.code, 0, r.stderr);
	const w = await kube.kubectl(["wait", "--for=condition=Established", "crd", "-l", "app.kubernetes.io/part-of=drawbridge", "--timeout=60s"]);
	assert.equal(w.code, 0, w.stderr);
	await kube.createNamespace("agree");
});
after(async () => {
	await kube?.stop();
});
printLogsOnFailure(() => [["kube", kube]]);

type Obj = Record<string, unknown>;

const TIMESTAMPS = [
	"2026-12-01T00:00:00Z",
	"2026-12-01T00:00:00.5Z",
	"2026-12-01T00:00:00.123456789Z",
	"2026-12-01T09:30:00+02:00",
	"2027-03-01T00:00:00Z",
	"2026-09-02T00:00:00Z",
	"2026-12-01T00:00:00",
	"2026-12-01 00:00:00Z",
	"2026-13-01T00:00:00Z",
	"2026-12-01",
	"tomorrow",
	"",
	7,
];
const DURATIONS = ["1s", "30m", "2h", "7d", "90d", "91d", "2160h", "2161h", "129600m", "129601m", "7776000s", "7776001s", "0h", "1.5h", "1h30m", "2H", "", "9999999d", 5];
const STRINGS = ["x", "", "orders-prod", "Orders_Prod", "a".repeat(64), "a".repeat(254), 42, true, null, ["x"], { a: "b" }];
const INTS = [0, 1, 2, 3, 10, 11, -1, 65535, 65536, 1.5, "1", null];
const BOOLS = [true, false, "yes", 1, null];

interface Mutation {
	path: (string | number)[];
	values: unknown[];
}

const GRANT: Obj = {
	connection: "orders-prod",
	subjects: [
		{ kind: "User", name: "alice" },
		{ kind: "ServiceAccount", namespace: "ci", name: "deployer" },
	],
	postgres: { access: "read-only" },
	duration: "2h",
	approvers: { subjects: [{ kind: "Group", name: "g" }, { kind: "User", name: "u" }], minApprovals: 1 },
	ticket: "OPS-1",
};
const GRANT_MUTATIONS: Mutation[] = [
	{ path: ["connection"], values: STRINGS },
	{ path: ["duration"], values: [...DURATIONS, undefined] },
	{ path: ["expiresAt"], values: [...TIMESTAMPS, undefined] },
	{ path: ["notBefore"], values: [...TIMESTAMPS, undefined] },
	{ path: ["subjects"], values: [[], "alice", [{ kind: "Group", name: "g" }], undefined] },
	{ path: ["subjects", 0, "kind"], values: ["User", "Group", "ServiceAccount", "Claims", "Robot", "user", 1] },
	{ path: ["subjects", 0, "namespace"], values: ["ci", "Bad_NS", "", undefined] },
	{ path: ["subjects", 0, "name"], values: [...STRINGS, undefined] },
	{ path: ["subjects", 0, "issuer"], values: ["https://login.example.com", "", undefined] },
	{ path: ["subjects", 0, "claims"], values: [{ client_id: "bot" }, {}, { a: 1 }, undefined] },
	{ path: ["subjects", 1, "namespace"], values: [undefined, "x"] },
	{ path: ["postgres", "access"], values: ["read-only", "read-write", "admin", "root", "", undefined] },
	{ path: ["postgres"], values: [undefined, {}, "read-only"] },
	{ path: ["ssh"], values: [{ logins: ["lee"], allowShell: true }, { logins: ["lee"] }, { logins: [] , allowSftp: true }, { logins: ["Lee"], allowSftp: true }, { logins: ["lee"], allowShell: "yes" }, { logins: ["lee"], allowShell: true, allowPortForwarding: true }, { logins: ["lee"], allowShell: true, allowPortForwarding: true, allowedForwards: ["localhost:5432"] }] },
	{ path: ["kubernetes"], values: [{ namespaces: ["payments"], verbs: ["get"], resources: ["pods"] }, { namespaces: ["*"], verbs: ["nuke"], resources: ["pods"] }, { namespaces: ["payments"], verbs: ["get"], resources: ["pods/log/x"] }] },
	{ path: ["ssh", "allowShell"], values: BOOLS },
	{ path: ["ssh", "allowPortForwarding"], values: BOOLS },
	{ path: ["ssh", "allowedForwards"], values: [["localhost:5432"], ["*:*", "[::1]:6379", "db.internal:*"], ["10.0.0.*:443"], ["localhost"], ["a:99999"], ["a:0"], [], "x"] },
	{ path: ["approvers", "minApprovals"], values: INTS },
	{ path: ["approvers", "subjects"], values: [[], [{ kind: "Group", name: "g" }], undefined] },
	{ path: ["approvers"], values: [undefined, {}] },
	{ path: ["ticket"], values: [...STRINGS, "T".repeat(128), "T".repeat(129)] },
	{ path: ["justification"], values: ["because", "", 3] },
	{ path: ["extraField"], values: [undefined, "x"] },
];

const CONNECTION: Obj = {
	type: "postgres",
	host: "db.internal",
	port: 5432,
	credentialSecretRef: { name: "db-admin" },
	tls: { mode: "verify-full", caSecretRef: { name: "db-ca" } },
	postgres: { database: "shop", credentialMode: "dynamic" },
};
const KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMTuIia41upZnf+wCqy0No113B9gcqXVcp1ioiHMqA2D";
const CONNECTION_MUTATIONS: Mutation[] = [
	{ path: ["type"], values: ["postgres", "ssh", "kubernetes", "mysql"] },
	{ path: ["host"], values: ["10.0.0.1", "db.internal", "::1", "-bad", "", "a b"] },
	{ path: ["port"], values: INTS },
	{ path: ["credentialSecretRef"], values: [undefined, { name: "x" }, { name: "X" }, { name: "x", key: "k" }] },
	{ path: ["tls", "mode"], values: ["disable", "require", "verify-ca", "verify-full", "strict", undefined] },
	{ path: ["tls", "caSecretRef"], values: [undefined, { name: "ca", key: "ca.crt" }, { name: "ca", key: "bad key" }] },
	{ path: ["tls"], values: [undefined] },
	{ path: ["postgres"], values: [undefined, { database: "shop" }, { database: "" }, { database: "shop", credentialMode: "magic" }] },
	{ path: ["ssh"], values: [undefined, { hostKeys: [KEY] }, { hostKeys: [KEY], auth: "certificate" }, { hostKeys: [] }, { hostKeys: ["not a key"], auth: "certificate" }] },
	{ path: ["kubernetes"], values: [undefined, {}, { impersonate: false }, { impersonate: "no" }] },
	{ path: ["kubernetes", "impersonate"], values: BOOLS },
	{ path: ["description"], values: [undefined, "x", "d".repeat(1025)] },
];

const MASKING: Obj = {
	selector: { matchLabels: { env: "prod" } },
	rules: [
		{ name: "email", columns: ["customers.email"], strategy: { type: "partial", keepLast: 4 } },
		{ name: "cards", detectors: ["creditCard"], strategy: { type: "redact" } },
	],
};
const MASKING_MUTATIONS: Mutation[] = [
	{ path: ["rules", 0, "strategy"], values: [{ type: "hash" }, { type: "hash", length: 7 }, { type: "hash", length: 64 }, { type: "partial" }, { type: "partial", keepLast: 33 }, { type: "redact", keepFirst: 1 }, { type: "null", replacement: "x" }, { type: "mask" }] },
	{ path: ["rules", 0, "columns"], values: [undefined, [], ["email"], ["public.customers.email"], ["a.b.c.d"], ["*.*"]] },
	{ path: ["rules", 0, "detectors"], values: [undefined, [], ["email", "iban"], ["ssn"]] },
	{ path: ["rules", 0, "patterns"], values: [undefined, [], ["x+"], [""]] },
	{ path: ["rules", 1, "name"], values: ["email", "cards", "Cards", ""] },
	{ path: ["rules"], values: [[], undefined] },
	{ path: ["selector"], values: [{}, undefined, { matchLabels: { env: 1 } }] },
	{ path: ["exempt"], values: [undefined, [], [{ kind: "Group", name: "dpo" }]] },
];

const GUARDRAIL: Obj = {
	selector: { matchLabels: { env: "prod" } },
	rules: [
		{ name: "drop", action: "block", sql: { statementKinds: ["DROP"] } },
		{ name: "delete", action: "requireApproval", sql: { statementKinds: ["DELETE"] }, approval: { timeout: "15m" } },
	],
};
const GUARDRAIL_MUTATIONS: Mutation[] = [
	{ path: ["rules", 0, "action"], values: ["block", "requireApproval", "audit", "deny"] },
	{ path: ["rules", 0, "sql"], values: [undefined, {}, { withoutWhere: true }, { statementKinds: ["drop"] }, { tables: ["public.*"] }, { functions: ["pg_read_file"] }] },
	{ path: ["rules", 0, "kubernetes"], values: [undefined, {}, { verbs: ["delete"] }, { resources: ["pods/exec"] }] },
	{ path: ["rules", 0, "ssh"], values: [undefined, { commands: [] }, { commands: ["rm -rf *"] }] },
	{ path: ["rules", 1, "approval", "timeout"], values: ["24h", "1d", "25h", "86401s", "2d", "0m", undefined] },
	{ path: ["rules", 1, "approval", "minApprovals"], values: [undefined, 1, 2, 0] },
	{ path: ["rules", 1, "approval", "approvers"], values: [undefined, [], [{ kind: "Group", name: "dba" }]] },
	{ path: ["rules", 1, "name"], values: ["drop", "delete", "x"] },
];

const BASES: { kind: string; spec: Obj; mutations: Mutation[] }[] = [
	{ kind: "AccessGrant", spec: GRANT, mutations: GRANT_MUTATIONS },
	{ kind: "Connection", spec: CONNECTION, mutations: CONNECTION_MUTATIONS },
	{ kind: "MaskingPolicy", spec: MASKING, mutations: MASKING_MUTATIONS },
	{ kind: "GuardrailPolicy", spec: GUARDRAIL, mutations: GUARDRAIL_MUTATIONS },
];

function setPath(root: Obj, path: (string | number)[], value: unknown): void {
	let node: unknown = root;
	for (const seg of path.slice(0, -1)) {
		if (typeof node !== "object" || node === null) return;
		node = (node as Record<string | number, unknown>)[seg];
	}
	if (typeof node !== "object" || node === null) return;
	const last = path.at(-1)!;
	if (value === undefined) {
		if (Array.isArray(node) && typeof last === "number") return;
		delete (node as Record<string | number, unknown>)[last];
	} else {
		(node as Record<string | number, unknown>)[last] = structuredClone(value);
	}
}

function plural(kind: string): string {
	return KINDS.find((k) => k.kind === kind)!.plural;
}

/** Field paths named in an apiserver Status (causes, or the message for strict-decoding errors). */
function serverFields(body: { details?: { causes?: { field?: string }[] }; message?: string }): string[] {
	const fields = (body.details?.causes ?? []).map((c) => c.field ?? "").filter(Boolean);
	for (const m of (body.message ?? "").matchAll(/unknown field "([^"]+)"/g)) fields.push(m[1]!);
	return fields;
}

test("offline validation and the apiserver agree on 400 randomly mutated resources", async () => {
	const disagreements: string[] = [];
	let rejected = 0;
	let n = 0;
	const arb = fc.integer({ min: 0, max: BASES.length - 1 }).chain((b) =>
		fc.tuple(
			fc.constant(b),
			fc.array(
				fc.integer({ min: 0, max: BASES[b]!.mutations.length - 1 }).chain((m) => fc.tuple(fc.constant(m), fc.integer({ min: 0, max: BASES[b]!.mutations[m]!.values.length - 1 }))),
				{ minLength: 1, maxLength: 3 },
			),
		),
	);
	const samples = fc.sample(arb, { numRuns: 400, seed: 20261125 });
	for (const [b, muts] of samples) {
		const base = BASES[b]!;
		const spec = structuredClone(base.spec);
		for (const [m, v] of muts) setPath(spec, base.mutations[m]!.path, base.mutations[m]!.values[v]);
		const name = `agree-${n++}`;
		const obj = { apiVersion: "access.drawbridge.dev/v1alpha1", kind: base.kind, metadata: { name, namespace: "agree" }, spec };
		const res = await kube.request<{ details?: { causes?: { field?: string }[] }; message?: string }>(
			"POST",
			`/apis/access.drawbridge.dev/v1alpha1/namespaces/agree/${plural(base.kind)}?dryRun=All&fieldValidation=Strict`,
			obj,
		);
		const serverOk = res.status >= 200 && res.status < 300;
		const offline = validateResource(obj);
		const offlineOk = offline.errors.length === 0;
		if (!serverOk) rejected++;
		const label = `${base.kind} ${JSON.stringify(spec)}`;
		if (serverOk !== offlineOk) {
			disagreements.push(`${label}\n  apiserver: ${serverOk ? "accepts" : `${res.status} ${res.body?.message ?? res.text}`}\n  offline: ${offlineOk ? "accepts" : offline.errors.map((e) => `${e.field}: ${e.message}`).join("; ")}`);
		} else if (!serverOk) {
			const sf = serverFields(res.body ?? {});
			const of = offline.errors.map((e) => e.field);
			// A value of the wrong shape may surface at the apiserver as an unknown field below it
			// (`spec.connection: {a: b}` -> unknown field "spec.connection.a"): a prefix counts.
			const related = (a: string, b: string) => a === b || a.startsWith(`${b}.`) || a.startsWith(`${b}[`);
			if (sf.length > 0 && !sf.some((f) => of.some((o) => related(f, o)))) {
				disagreements.push(`${label}\n  apiserver fields: ${sf.join(", ")} (${res.body?.message})\n  offline fields: ${of.join(", ")}`);
			}
		}
	}
	assert.deepEqual(disagreements, [], `${disagreements.length} disagreements`);
	// The pools are built so that both outcomes are common; a test where everything is accepted (or
	// rejected) would prove nothing.
	assert.ok(rejected > 100 && rejected < 380, `rejected ${rejected} of 400`);
	console.log(`agreement: ${n} resources, ${rejected} rejected by both, ${n - rejected} accepted by both`);
});

const GITSOURCE_NS = "team-a";

/** What the operator's loader and `drawbridge validate` say about the same files (paths as in the repository). */
function bothViews(files: { path: string; content: Uint8Array }[]) {
	const approvedBy = { sha: "0".repeat(40), author: "a <a@x>", committer: "a <a@x>", committedAt: "2026-11-01T00:00:00Z", subject: "s" };
	const snap = {
		repository: "https://git.example/grants.git",
		branch: "main",
		commit: "0".repeat(40),
		files: files.map((f) => ({ path: f.path, content: f.content, blobOid: f.path, approvedBy })),
	};
	const operator = loadSnapshot(snap, GITSOURCE_NS, { namespaces: [] });
	const validate = validateRepository(
		files.map((f) => ({ file: f.path, text: f.content })),
		{ gitSource: { namespace: GITSOURCE_NS } },
		new Date("2026-01-01T00:00:00Z"),
	);
	// validate's own repository checks (references, lints, duplicates, expiry) go beyond one resource.
	const shared = validate.diagnostics.filter((d) => !["REFERENCE", "LINT", "DUPLICATE", "EXPIRED"].includes(d.code) && (d.severity === "error" || d.code === "SKIPPED"));
	return { operator, validate, shared };
}

/** Every operator problem is a validate diagnostic (same text, line, column) and the other way round. */
function disagreementsOf(where: string, v: ReturnType<typeof bothViews>): string[] {
	const out: string[] = [];
	const fromValidate = v.shared.map((d) => `${d.file}:${d.line}:${d.col} ${problemText(d)}`).sort();
	const fromOperator = v.operator.problems.map((p) => `${p.path}:${p.line}:${p.column} ${p.message}`).sort();
	if (JSON.stringify(fromValidate) !== JSON.stringify(fromOperator)) out.push(`${where}\n  validate: ${fromValidate.join("\n            ")}\n  operator: ${fromOperator.join("\n            ")}`);
	return out;
}

test("drawbridge validate and the operator's loader refuse every corpus case alike: same message, same position", () => {
	const disagreements: string[] = [];
	const corpus = loadCorpus();
	assert.ok(corpus.filter((c) => !c.apiserver).length >= 6);
	for (const c of corpus) {
		const path = `grants/${c.name}`;
		const v = bothViews([{ path, content: readFileSync(c.path) }]);
		disagreements.push(...disagreementsOf(c.name, v));
		// Refused by both: nothing synced, an error at the case's field in the check.
		if (v.operator.resources.length > 0) disagreements.push(`${c.name}: the operator syncs ${v.operator.resources.map((r) => r.key).join(", ")}`);
		if (!v.validate.diagnostics.some((d) => d.severity === "error" && d.field === c.field)) disagreements.push(`${c.name}: validate names no error at ${c.field}`);
	}
	assert.deepEqual(disagreements, []);
});

test("...and file-level refusals: not UTF-8, too large, a name a reader cannot see; a document of another kind", () => {
	const grant = readFileSync(exampleManifestFiles().find((f) => f.endsWith("deployer-orders-ro.yaml"))!);
	const files = [
		{ path: "grants/latin1.yaml", content: Buffer.concat([grant, Buffer.from([0x23, 0x20, 0xe9, 0x0a])]) },
		{ path: "grants/huge.yaml", content: Buffer.concat([grant, Buffer.alloc((1 << 20) + 1, 0x23)]) },
		{ path: "grants/\u001b[2Kok.yaml", content: grant },
		{ path: "grants/secret.yaml", content: Buffer.from("apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n") },
	];
	const v = bothViews(files);
	assert.deepEqual(disagreementsOf("file-level", v), []);
	assert.deepEqual(v.operator.resources, []);
	assert.equal(v.shared.filter((d) => d.code === "FILE").length, 3);
});

test("...and accept the examples alike", () => {
	const files = exampleManifestFiles().map((f) => ({ path: relative(EXAMPLES_DIR, f), content: readFileSync(f) }));
	const v = bothViews(files);
	assert.deepEqual(disagreementsOf("examples", v), []);
	assert.deepEqual(v.shared, []);
	assert.deepEqual(
		v.operator.resources.map((r) => `${r.kind}/${r.object.metadata.name}`).sort(),
		v.validate.resources.filter((r) => r.valid && (SYNCED_KINDS as readonly string[]).includes(r.kind)).map((r) => `${r.kind}/${r.name}`).sort(),
	);
});
