import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { after, test } from "node:test";
import { parse } from "yaml";
import { main } from "../../cli/validate.ts";
import { KINDS, validateResource } from "../../crds/index.ts";
import { rulesOf } from "../../crds/schema/kit.ts";
import { loadManifests } from "../../crds/load.ts";
import { parseLintConfig, validateRepository } from "../../crds/repo.ts";
import { readSnapshot } from "../../operator/gitsync/repo.ts";
import { EXAMPLES_DIR, exampleManifestFiles, INVALID_DIR, loadCorpus } from "./corpus.ts";

async function run(argv: string[], stdinText = ""): Promise<{ code: number; stdout: string; stderr: string }> {
	let stdout = "";
	let stderr = "";
	const code = await main(argv, { stdout: (t) => void (stdout += t), stderr: (t) => void (stderr += t), stdin: () => stdinText });
	return { code, stdout, stderr };
}

const tmpRoots: string[] = [];
after(() => {
	for (const d of tmpRoots) rmSync(d, { recursive: true, force: true });
});

/** A scratch repository: examples/ copied, then `files` written over it. */
function repo(files: Record<string, string>, { withExamples = true } = {}): string {
	const dir = mkdtempSync(join(tmpdir(), "drawbridge-validate-"));
	tmpRoots.push(dir);
	if (withExamples) {
		for (const f of [...exampleManifestFiles(), join(EXAMPLES_DIR, ".drawbridge.yaml")]) {
			const rel = f.slice(EXAMPLES_DIR.length + 1);
			mkdirSync(dirname(join(dir, rel)), { recursive: true });
			writeFileSync(join(dir, rel), readFileSync(f));
		}
	}
	for (const [rel, text] of Object.entries(files)) {
		mkdirSync(dirname(join(dir, rel)), { recursive: true });
		writeFileSync(join(dir, rel), text);
	}
	return dir;
}

const GRANT_HEAD = "apiVersion: access.drawbridge.dev/v1alpha1\nkind: AccessGrant\nmetadata:\n  name: NAME\nspec:\n";

test("examples/ is a valid repository: exit 0, every resource counted, no warnings", async () => {
	const files = exampleManifestFiles();
	const expected = files.flatMap((f) => loadManifests(readFileSync(f, "utf8"), f).manifests.map((m) => `${m.object.kind}/${(m.object.metadata as { name: string }).name}`)).sort();
	const r = await run([EXAMPLES_DIR]);
	assert.equal(r.code, 0, r.stdout + r.stderr);
	assert.match(r.stdout, new RegExp(`^ok: ${expected.length} resources in ${files.length} files, 0 errors, 0 warnings$`, "m"));
	const json = JSON.parse((await run(["--format", "json", EXAMPLES_DIR])).stdout);
	assert.equal(json.valid, true);
	const names = json.resources.map((x: { kind: string; name: string }) => `${x.kind}/${x.name}`).sort();
	assert.deepEqual(names, expected);
	// What the issue asks the examples to show.
	for (const must of [
		"Connection/orders-prod",
		"Connection/db-primary",
		"Connection/payments-cluster",
		"AccessGrant/ci-deployer-orders-ro",
		"AccessGrant/oncall-break-glass-ssh",
		"AccessGrant/oncall-break-glass-kube",
		"AccessGrant/reporting-bot-orders",
		"MaskingPolicy/customer-pii",
		"GuardrailPolicy/prod-guardrails",
		"GitSource/grants",
	]) {
		assert.ok(names.includes(must), must);
	}
});

test("--help, bad options and missing paths", async () => {
	const help = await run(["--help"]);
	assert.equal(help.code, 0);
	assert.match(help.stdout, /^Usage: drawbridge validate/);
	assert.match(help.stdout, /--format text\|json/);
	const bad = await run(["--frobnicate"]);
	assert.equal(bad.code, 2);
	assert.match(bad.stderr, /unknown option --frobnicate/);
	const fmt = await run(["--format", "xml", EXAMPLES_DIR]);
	assert.equal(fmt.code, 2);
	const missing = await run(["/nonexistent/grants"]);
	assert.equal(missing.code, 2);
	assert.match(missing.stderr, /no such file or directory/);
});

test("every corpus manifest is rejected offline, naming its field at a line of that file", async () => {
	const corpus = loadCorpus();
	assert.ok(corpus.length >= 30, `corpus has ${corpus.length} cases`);
	for (const c of corpus) {
		const { manifests, errors } = loadManifests(c.text, c.name);
		assert.deepEqual(errors, [], c.name);
		const r = validateResource(manifests[0]!.object);
		if (c.apiserver) {
			assert.ok(
				r.errors.some((e) => e.field === c.field),
				`${c.name}: expected an error at ${c.field}, got ${JSON.stringify(r.errors.map((e) => e.field))}`,
			);
		} else {
			// Only a grants repository refuses it: the object alone is valid, as the apiserver says too.
			assert.deepEqual(r.errors, [], c.name);
		}
	}
	const r = await run(["--no-config", INVALID_DIR]);
	assert.equal(r.code, 1);
	const lines = r.stdout.trim().split("\n");
	for (const c of corpus) {
		const line = lines.find((l) => l.includes(`${c.name}:`) && l.includes(`: error: ${c.field}: `));
		assert.ok(line, `${c.name}: no "file:line:col: error: ${c.field}: ..." line in\n${r.stdout}`);
		const [, lineNo, col] = /:(\d+):(\d+): error: /.exec(line)!;
		const fileLines = c.text.split("\n");
		assert.ok(Number(lineNo) >= 3 && Number(lineNo) <= fileLines.length, `${c.name}: line ${lineNo}`);
		assert.ok(Number(col) >= 1);
		// The reported line holds the field's key, a parent's key, its list item, or (for a missing
		// top-level field) the start of the document.
		const text = fileLines[Number(lineNo) - 1]!;
		// (a key with an invisible character is named with it escaped: `client_id\u{3164}`)
		const keys = c.field.replace(/\\u\{[0-9a-f]+\}/g, "").split(/[.[\]]/).filter((s) => s && !/^\d+$/.test(s));
		assert.ok(keys.some((k) => text.includes(`${k}:`)) || /^\s*- /.test(text) || /^apiVersion:/.test(text) || keys.some((k) => text.includes(k)), `${c.name}: line ${lineNo} ${JSON.stringify(text)} does not hold ${c.field}`);
	}
});

test("positions: the error points at the offending value", async () => {
	const dir = repo(
		{
			"grants/typo.yaml": `${GRANT_HEAD.replace("NAME", "typo")}  connection: orders-prod\n  subjects:\n    - kind: User\n      name: a\n  postgres:\n    access: read-only\n  duration: 3x\n  ticket: OPS-1\n  justification: x\n`,
		},
		{ withExamples: true },
	);
	const r = await run([dir]);
	assert.equal(r.code, 1);
	assert.match(r.stdout, /grants\/typo\.yaml:12:13: error: spec\.duration: Invalid value: "3x": should match/);
});

test("references: missing Connection, wrong access block, approvers required by a guardrail, duplicates", async () => {
	const dir = repo({
		"grants/missing-conn.yaml": `${GRANT_HEAD.replace("NAME", "missing-conn")}  connection: orders-staging\n  subjects: [{kind: User, name: a}]\n  postgres: {access: read-only}\n  duration: 1h\n`,
		"grants/wrong-block.yaml": `${GRANT_HEAD.replace("NAME", "wrong-block")}  connection: db-primary\n  subjects: [{kind: User, name: a}]\n  postgres: {access: read-only}\n  duration: 1h\n  ticket: OPS-1\n  justification: x\n  approvers: {subjects: [{kind: Group, name: g}]}\n`,
		"grants/no-approvers.yaml": `${GRANT_HEAD.replace("NAME", "no-approvers")}  connection: orders-prod\n  subjects: [{kind: User, name: a}]\n  postgres: {access: read-write}\n  duration: 1h\n  ticket: OPS-1\n  justification: x\n`,
		"grants/dup.yaml": `${GRANT_HEAD.replace("NAME", "ci-deployer-orders-ro")}  connection: payments-cluster\n  subjects: [{kind: User, name: a}]\n  kubernetes: {namespaces: [a], verbs: [get], resources: [pods]}\n  duration: 1h\n  ticket: OPS-1\n  justification: x\n`,
		"policies/nothing.yaml":
			"apiVersion: access.drawbridge.dev/v1alpha1\nkind: MaskingPolicy\nmetadata:\n  name: staging\nspec:\n  selector:\n    matchLabels: {env: staging}\n  rules:\n    - name: r\n      patterns: ['(unclosed']\n      strategy: {type: redact}\n",
	});
	const r = await run(["--format", "json", dir]);
	assert.equal(r.code, 1);
	const { diagnostics } = JSON.parse(r.stdout) as { diagnostics: { file: string; line: number; field: string; code: string; severity: string; message: string }[] };
	const find = (file: string, field: string) => diagnostics.find((d) => d.file.endsWith(file) && d.field === field);
	const missing = find("grants/missing-conn.yaml", "spec.connection");
	assert.equal(missing?.code, "REFERENCE");
	assert.equal(missing?.line, 6);
	assert.match(missing!.message, /Connection "orders-staging" not found/);
	assert.match(find("grants/wrong-block.yaml", "spec.postgres")!.message, /type ssh; use spec.ssh/);
	const appr = find("grants/no-approvers.yaml", "spec");
	assert.match(appr!.message, /spec.approvers is required: GuardrailPolicy "prod-guardrails" rule "delete-needs-approval"/);
	assert.equal(find("grants/dup.yaml", "metadata.name")?.code, "DUPLICATE");
	assert.equal(find("policies/nothing.yaml", "spec.selector")?.severity, "warning");
	assert.match(find("policies/nothing.yaml", "spec.rules[0].patterns[0]")!.message, /invalid regular expression/);
	// The examples' break-glass ssh grant needs no approvers for the `sudo *` rule: it names its own.
	assert.equal(diagnostics.filter((d) => d.file.includes("break-glass")).length, 0);
});

test("lints from .drawbridge.yaml: max duration per label, tickets, justification, ticket format", async () => {
	const head = (name: string, conn: string) => `${GRANT_HEAD.replace("NAME", name)}  connection: ${conn}\n  subjects: [{kind: User, name: a}]\n`;
	const approvers = "  approvers: {subjects: [{kind: Group, name: g}]}\n";
	const dir = repo({
		"grants/too-long.yaml": `${head("too-long", "orders-prod")}  postgres: {access: read-only}\n  duration: 40d\n  ticket: OPS-1\n  justification: x\n${approvers}`,
		"grants/sre-too-long.yaml": `${head("sre-too-long", "db-primary")}  ssh: {logins: [a], allowShell: true}\n  duration: 8h\n  ticket: OPS-1\n  justification: x\n`,
		"grants/no-ticket.yaml": `${head("no-ticket", "orders-prod")}  postgres: {access: read-only}\n  duration: 1h\n  justification: x\n${approvers}`,
		"grants/bad-ticket.yaml": `${head("bad-ticket", "orders-prod")}  postgres: {access: read-only}\n  duration: 1h\n  ticket: "see slack"\n  justification: x\n${approvers}`,
		"grants/window.yaml": `${head("window", "orders-prod")}  postgres: {access: read-only}\n  notBefore: "2026-01-01T00:00:00Z"\n  expiresAt: "2026-03-01T00:00:00Z"\n  ticket: OPS-1\n${approvers}`,
	});
	const r = await run([dir]);
	assert.equal(r.code, 1);
	const out = r.stdout;
	assert.match(out, /grants\/too-long\.yaml:\d+:\d+: error: spec\.duration: grant lasts longer than 31d, the maximum on Connections with env=prod/);
	assert.match(out, /grants\/sre-too-long\.yaml:\d+:\d+: error: spec\.duration: grant lasts longer than 4h, the maximum on Connections with env=prod,team=sre/);
	assert.match(out, /grants\/no-ticket\.yaml:\d+:\d+: error: spec: spec\.ticket is required for grants on Connections with env=prod/);
	assert.match(out, /grants\/bad-ticket\.yaml:\d+:\d+: error: spec\.ticket: ticket "see slack" does not match/);
	assert.match(out, /grants\/window\.yaml:\d+:\d+: error: spec\.expiresAt: grant lasts longer than 31d/);
	assert.match(out, /grants\/window\.yaml:\d+:\d+: error: spec: spec\.justification is required/);
	assert.match(out, /\[LINT\]/);
	// The same repository without the lint configuration only has the schema-level view: valid.
	const noCfg = await run(["--no-config", dir]);
	assert.equal(noCfg.code, 0, noCfg.stdout);
});

test("a broken .drawbridge.yaml is reported with its position", async () => {
	const { diagnostics } = parseLintConfig("maxDuration:\n  - selector: {env: prod}\n    max: forever\nrequireTickets: []\n", ".drawbridge.yaml");
	assert.deepEqual(
		diagnostics.map((d) => [d.line, d.col, d.field]),
		[
			[3, 10, "maxDuration[0].max"],
			[4, 1, "requireTickets"],
		],
	);
	const dir = repo({ ".drawbridge.yaml": "ticketPattern: '(['\n" });
	const r = await run([dir]);
	assert.equal(r.code, 1);
	assert.match(r.stdout, /\.drawbridge\.yaml:1:16: error: ticketPattern: invalid regular expression/);
});

test("malformed YAML: tabs, duplicate keys, and one broken document among valid ones", async () => {
	const conn = (name: string) => `apiVersion: access.drawbridge.dev/v1alpha1\nkind: Connection\nmetadata:\n  name: ${name}\nspec:\n  type: kubernetes\n  host: h\n  port: 6443\n`;
	const dir = repo(
		{
			"tabs.yaml": "apiVersion: access.drawbridge.dev/v1alpha1\nkind: Connection\nmetadata:\n\tname: tabbed\n",
			"dup.yaml": `${conn("dup")}  port: 443\n`,
			"multi.yaml": `${conn("first")}---\n${conn("second").replace("port: 6443", "port: [6443")}---\n${conn("third").replace("port: 6443", "port: 0")}`,
		},
		{ withExamples: false },
	);
	const r = await run(["--no-config", dir]);
	assert.equal(r.code, 1);
	const out = r.stdout;
	assert.match(out, /tabs\.yaml:4:1: error: tab character in indentation; YAML indentation must use spaces \[TAB_INDENT\]/);
	assert.match(out, /dup\.yaml:9:3: error: duplicate key "port" \[DUPLICATE_KEY\]/);
	assert.match(out, /multi\.yaml:1[6-8]:\d+: error: .*\[SYNTAX\]/);
	// The third document is still validated after the broken second one.
	assert.match(out, /multi\.yaml:26:9: error: spec\.port: Invalid value: 0: should be greater than or equal to 1 \[SCHEMA\]/);
	const json = JSON.parse((await run(["--no-config", "--format", "json", dir])).stdout);
	assert.deepEqual(
		json.resources.map((x: { name: string; valid: boolean }) => [x.name, x.valid]),
		[
			["first", true],
			["third", false],
		],
	);
});

test("other Kubernetes objects are skipped with a warning; status in a manifest is a warning", async () => {
	const report = validateRepository([
		{ file: "secret.yaml", text: "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n" },
		{
			file: "conn.yaml",
			text: "apiVersion: access.drawbridge.dev/v1alpha1\nkind: Connection\nmetadata:\n  name: c\nspec:\n  type: kubernetes\n  host: h\n  port: 1\nstatus:\n  activeGrants: 1\n",
		},
	]);
	assert.deepEqual(
		report.diagnostics.map((d) => [d.file, d.severity, d.code, d.line]),
		[
			["conn.yaml", "warning", "SCHEMA", 9],
			["secret.yaml", "warning", "SKIPPED", 1],
		],
	);
});

test("the example CI workflow runs drawbridge validate on pull requests and reads fields the JSON output has", async () => {
	const wf = parse(readFileSync(join(EXAMPLES_DIR, ".github/workflows/validate.yml"), "utf8"));
	assert.ok(wf.on.pull_request);
	const steps = wf.jobs.validate.steps as { run?: string; if?: string }[];
	const check = steps.find((s) => /"\$DRAWBRIDGE_IMAGE" validate --format text \.$/.test(s.run ?? ""));
	assert.ok(check, "a step runs `drawbridge validate` (the image's entrypoint)");
	const annotate = steps.find((s) => s.if === "failure()")!.run!;
	assert.match(annotate, /validate --format json \./);
	// Every field the jq filter reads exists in a diagnostic of a failing run.
	const used = [...annotate.matchAll(/\\\(\.(\w+)\)/g)].map((m) => m[1]!);
	assert.deepEqual([...new Set(used)].sort(), ["col", "field", "file", "line", "message", "severity"]);
	const r = await run(["--no-config", "--format", "json", INVALID_DIR]);
	const d = JSON.parse(r.stdout).diagnostics[0];
	for (const f of used) assert.notEqual(d[f], undefined, f);
	const owners = readFileSync(join(EXAMPLES_DIR, ".github/CODEOWNERS"), "utf8");
	for (const folder of ["/connections/", "/policies/", "/grants/ci/", "/grants/bots/", "/grants/oncall/"]) assert.match(owners, new RegExp(`^${folder}\\s+@`, "m"));
});

test("every cross-field rule (CEL twin) is exercised by some corpus case", () => {
	const messages = new Set<string>();
	const visit = (schema: Record<string, unknown>): void => {
		for (const r of rulesOf(schema as never)) if (!r.transition) messages.add(r.message);
		for (const child of Object.values((schema.properties as Record<string, Record<string, unknown>>) ?? {})) visit(child);
		if (schema.items) visit(schema.items as Record<string, unknown>);
	};
	for (const k of KINDS) visit(k.spec as unknown as Record<string, unknown>);
	const hit = new Set<string>();
	for (const c of loadCorpus()) {
		const { manifests } = loadManifests(c.text, c.name);
		for (const e of validateResource(manifests[0]!.object).errors) hit.add(e.message);
	}
	assert.deepEqual([...messages].filter((m) => !hit.has(m)), []);
});

test("CEL-twin errors are coded RULE; a grant already expired is a warning", () => {
	const text = `${GRANT_HEAD.replace("NAME", "old")}  connection: c\n  subjects: [{kind: User, name: a}]\n  postgres: {access: read-only}\n  expiresAt: "2026-01-01T00:00:00Z"\n---\n${GRANT_HEAD.replace("NAME", "long")}  connection: c\n  subjects: [{kind: User, name: a}]\n  postgres: {access: read-only}\n  duration: 100d\n`;
	const conn = "apiVersion: access.drawbridge.dev/v1alpha1\nkind: Connection\nmetadata:\n  name: c\nspec:\n  type: postgres\n  host: h\n  port: 5432\n  postgres: {database: d}\n";
	const report = validateRepository(
		[
			{ file: "g.yaml", text },
			{ file: "c.yaml", text: conn },
		],
		{},
		new Date("2026-06-01T00:00:00Z"),
	);
	assert.deepEqual(
		report.diagnostics.map((d) => [d.file, d.line, d.severity, d.code, d.field]),
		[
			["g.yaml", 9, "warning", "EXPIRED", "spec.expiresAt"],
			["g.yaml", 19, "error", "RULE", "spec.duration"],
		],
	);
});

test("`-` validates manifests from standard input together with files", async () => {
	const conn = readFileSync(join(EXAMPLES_DIR, "connections", "orders-prod.yaml"), "utf8");
	const grant = `${GRANT_HEAD.replace("NAME", "piped")}  connection: orders-prod\n  subjects: [{kind: User, name: a}]\n  postgres: {access: read-only}\n  duration: 1h\n  approvers: {subjects: [{kind: Group, name: g}]}\n`;
	const policies = join(EXAMPLES_DIR, "policies");
	const ok = await run(["--no-config", policies, "-"], `${conn}---\n${grant}`);
	assert.equal(ok.code, 0, ok.stdout);
	assert.match(ok.stdout, /^ok: 4 resources in 3 files/m);
	const bad = await run(["--no-config", "-"], grant);
	assert.equal(bad.code, 1);
	assert.match(bad.stdout, /^<stdin>:6:15: error: spec\.connection: Connection "orders-prod" not found in the repository \[REFERENCE\]$/m);
});

test(".drawbridge.yaml: exclude skips paths, warnings: error makes warnings fail the check", async () => {
	const broken = "apiVersion: access.drawbridge.dev/v1alpha1\nkind: Connection\nmetadata:\n  name: broken\nspec:\n  type: mysql\n";
	const secret = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n";
	const cfg = readFileSync(join(EXAMPLES_DIR, ".drawbridge.yaml"), "utf8");
	const dir = repo({ "drafts/broken.yaml": broken, "vendor/x/secret.yaml": secret, ".drawbridge.yaml": `${cfg}exclude: [drafts/]\n` });
	const r = await run([dir]);
	assert.equal(r.code, 0, r.stdout);
	assert.match(r.stdout, /secret\.yaml:1:1: warning: apiVersion: not a Drawbridge resource/);
	const strict = repo({ "vendor/x/secret.yaml": secret, ".drawbridge.yaml": `${cfg}warnings: error\n` });
	const s = await run([strict]);
	assert.equal(s.code, 1);
	assert.match(s.stdout, /secret\.yaml:1:1: error: apiVersion: not a Drawbridge resource/);
});

test("every file the operator syncs is validated (`.YAML`, `node_modules/`), and no file it skips", async () => {
	const grant = (name: string) =>
		`${GRANT_HEAD.replace("NAME", name)}  connection: orders-prod\n  subjects: [{kind: User, name: mallory}]\n  postgres: {access: read-write}\n  duration: 90d\n  ticket: OPS-1\n  justification: x\n  approvers: {subjects: [{kind: Group, name: g}]}\n`;
	const dir = repo({
		// 90 days on a prod Connection: over the 31d maxDuration lint, which the pull-request check enforces.
		"grants/mallory.YAML": grant("mallory-upper"),
		"grants/node_modules/pkg/mallory.yaml": grant("mallory-node-modules"),
		"grants/mallory.Yml": grant("mallory-yml"),
		// Hidden files are not synced: not validated either.
		"grants/.draft.yaml": "apiVersion: access.drawbridge.dev/v1alpha1\nkind: Connection\nmetadata:\n  name: draft\nspec:\n  type: mysql\n",
	});
	const r = await run(["--format", "json", dir]);
	const { diagnostics } = JSON.parse(r.stdout) as { diagnostics: { file: string; code: string; field: string }[] };
	for (const f of ["grants/mallory.YAML", "grants/node_modules/pkg/mallory.yaml", "grants/mallory.Yml"]) {
		assert.ok(
			diagnostics.some((d) => d.file.endsWith(f) && d.code === "LINT" && d.field === "spec.duration"),
			`${f} is synced by the operator but was not checked: ${JSON.stringify(diagnostics)}`,
		);
	}
	assert.ok(!diagnostics.some((d) => d.file.includes(".draft.yaml")), JSON.stringify(diagnostics));
	assert.equal(r.code, 1);
	// The operator's own listing of the same tree (readSnapshot on a git repository of it) names the same files.
	const git = (args: string[]) => execFileSync("git", args, { cwd: dir, env: { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@x", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@x", GIT_CONFIG_NOSYSTEM: "1", HOME: dir } }).toString().trim();
	git(["init", "-q", "-b", "main"]);
	git(["add", "-A", "-f"]);
	git(["commit", "-q", "-m", "all"]);
	const snap = await readSnapshot(join(dir, ".git"), git(["rev-parse", "HEAD"]), { path: ".", repository: "https://git.example/g.git", branch: "main" });
	const json = JSON.parse((await run(["--format", "json", dir])).stdout) as { files: number };
	assert.equal(json.files, snap.files.length, `operator reads ${snap.files.map((f) => f.path).join(", ")}`);
});

test("a file of 140 000 documents is reported, not a crash", () => {
	const report = validateRepository([{ file: "many.yaml", text: "--- {}\n".repeat(140_000) }]);
	assert.equal(report.diagnostics.filter((d) => d.severity === "error").length, 140_000);
	assert.equal(report.diagnostics[0]?.field, "apiVersion");
});
