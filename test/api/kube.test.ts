/**
 * The API against a real kube-apiserver (test/env startKube): the generated CRDs install and become
 * Established; every example applies and reads back with its printer columns and defaults; the
 * invalid corpus is rejected by the apiserver AND by the offline validator, case by case, both naming
 * the same field; boundary cases are accepted by both.
 */
import assert from "node:assert/strict";
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { loadManifests, validateResource } from "../../crds/index.ts";
import { type KubeHandle, printLogsOnFailure, startKube } from "../env/index.ts";
import { API_TEST_DIR, CRDS_DIR, exampleManifestFiles, loadCorpus } from "./corpus.ts";

let kube: KubeHandle;

async function kubectl(args: string[], input?: string): Promise<{ code: number; stdout: string; stderr: string }> {
	return kube.kubectl(args, input === undefined ? {} : { input });
}

async function ok(args: string[], input?: string): Promise<string> {
	const r = await kubectl(args, input);
	assert.equal(r.code, 0, `kubectl ${args.join(" ")} failed:\n${r.stderr}`);
	return r.stdout;
}

before(async () => {
	kube = await startKube();
	await ok(["apply", "-k", CRDS_DIR]);
	await ok(["wait", "--for=condition=Established", "crd", "-l", "app.kubernetes.io/part-of=drawbridge", "--timeout=60s"]);
	for (const ns of ["examples", "corpus", "valid"]) await kube.createNamespace(ns);
});
after(async () => {
	await kube?.stop();
});
printLogsOnFailure(() => [["kube", kube]]);

test("the CRDs install, are Established with accepted names, and have the status subresource", async () => {
	const list = JSON.parse(await ok(["get", "crd", "-l", "app.kubernetes.io/part-of=drawbridge", "-o", "json"]));
	const names = list.items.map((c: { metadata: { name: string } }) => c.metadata.name).sort();
	assert.deepEqual(names, [
		"accessgrants.access.drawbridge.dev",
		"approvalrequests.access.drawbridge.dev",
		"connections.access.drawbridge.dev",
		"gitsources.access.drawbridge.dev",
		"guardrailpolicies.access.drawbridge.dev",
		"maskingpolicies.access.drawbridge.dev",
	]);
	for (const crd of list.items) {
		const cond = (t: string) => crd.status.conditions.find((c: { type: string }) => c.type === t)?.status;
		assert.equal(cond("Established"), "True", crd.metadata.name);
		assert.equal(cond("NamesAccepted"), "True", crd.metadata.name);
		assert.deepEqual(crd.spec.versions[0].subresources, { status: {} });
	}
	const resources = await ok(["api-resources", "--api-group=access.drawbridge.dev", "-o", "name"]);
	assert.equal(resources.trim().split("\n").length, 6);
});

test("every example applies with kubectl and reads back with printer columns and server defaults", async () => {
	const files = exampleManifestFiles();
	assert.ok(files.length >= 8);
	for (const f of files) await ok(["apply", "-n", "examples", "-f", f]);

	const grants = await ok(["get", "accessgrants", "-n", "examples"]);
	const [header, ...rows] = grants.trim().split("\n");
	assert.deepEqual(header!.split(/\s+/), ["NAME", "SUBJECT", "CONNECTION", "PHASE", "EXPIRES", "AGE"]);
	const row = (name: string) => rows.find((r) => r.startsWith(`${name} `))?.split(/\s+/);
	assert.deepEqual(row("ci-deployer-orders-ro")?.slice(0, 3), ["ci-deployer-orders-ro", "deployer", "orders-prod"]);
	assert.deepEqual(row("oncall-break-glass-ssh")?.slice(0, 3), ["oncall-break-glass-ssh", "oncall", "db-primary"]);
	assert.deepEqual(row("oncall-break-glass-kube")?.slice(0, 3), ["oncall-break-glass-kube", "oncall", "payments-cluster"]);
	assert.ok(row("reporting-bot-orders"), grants);

	const wide = await ok(["get", "ag", "-n", "examples", "-o", "wide"]);
	assert.match(wide, /^NAME\s+SUBJECT\s+CONNECTION\s+ACCESS\s+PHASE\s+DURATION\s+EXPIRES\s+TICKET\s+AGE/);
	assert.match(wide, /ci-deployer-orders-ro\s+deployer\s+orders-prod\s+read-only\s+2h\s+OPS-142/);

	const conns = await ok(["get", "conn", "-n", "examples"]);
	assert.match(conns, /^NAME\s+TYPE\s+HOST\s+PORT\s+ENV\s+AGE/);
	assert.match(conns, /orders-prod\s+postgres\s+orders-db\.prod\.internal\s+5432\s+prod/);
	assert.match(conns, /db-primary\s+ssh\s+db-primary\.prod\.internal\s+22\s+prod/);
	assert.match(await ok(["get", "guardrailpolicies", "-n", "examples"]), /prod-guardrails\s+prod/);
	assert.match(await ok(["get", "mp", "-n", "examples"]), /customer-pii\s+prod/);
	assert.match(await ok(["get", "gs", "-n", "examples"]), /^NAME\s+URL\s+BRANCH\s+COMMIT\s+READY\s+AGE\ngrants\s+https:\/\/git\.example\.com\/platform\/grants\.git\s+main/);

	// The category lists every kind at once.
	const all = await ok(["get", "drawbridge", "-n", "examples", "-o", "name"]);
	const documents = files.flatMap((f) => loadManifests(readFileSync(f, "utf8"), f).manifests);
	assert.equal(all.trim().split("\n").length, documents.length, all);

	// Defaults applied by the apiserver are exactly the offline validator's.
	for (const f of files) {
		const { manifests } = loadManifests(readFileSync(f, "utf8"), f);
		for (const m of manifests) {
			const offline = validateResource(m.object);
			assert.deepEqual(offline.errors, [], f);
			const meta = m.object.metadata as { name: string };
			const server = JSON.parse(await ok(["get", String(m.object.kind), meta.name, "-n", "examples", "-o", "json"]));
			assert.deepEqual(server.spec, (offline.value as { spec: unknown }).spec, `${f}: server defaults differ from offline defaults`);
		}
	}
});

test("status is a subresource: the Phase and Expires columns show what the operator writes", async () => {
	await ok([
		"patch",
		"accessgrant",
		"ci-deployer-orders-ro",
		"-n",
		"examples",
		"--subresource=status",
		"--type=merge",
		"-p",
		JSON.stringify({ status: { phase: "Active", expiresAt: "2099-01-01T00:00:00Z", origin: { commit: "abc123", pullRequest: 42 } } }),
	]);
	const out = await ok(["get", "ag", "ci-deployer-orders-ro", "-n", "examples"]);
	assert.match(out, /ci-deployer-orders-ro\s+deployer\s+orders-prod\s+Active\s+2099-01-01T00:00:00Z/);
	// A status with an unknown phase is refused by the schema.
	const bad = await kubectl(["patch", "ag", "ci-deployer-orders-ro", "-n", "examples", "--subresource=status", "--type=merge", "-p", '{"status":{"phase":"Sleeping"}}']);
	assert.notEqual(bad.code, 0);
	assert.match(bad.stderr, /status\.phase: Unsupported value: "Sleeping"/);
});

test("ApprovalRequest spec is immutable (CEL transition rule); the printer columns show the request", async () => {
	const file = join(API_TEST_DIR, "valid", "07-approvalrequest.yaml");
	await ok(["apply", "-n", "valid", "-f", file]);
	const out = await ok(["get", "approvalrequests", "-n", "valid"]);
	assert.match(out, /^NAME\s+REQUESTER\s+CONNECTION\s+COMMAND\s+PHASE\s+RULE\s+EXPIRES\s+DECIDED\s+AGE/);
	assert.match(out, /ar-7f3c\s+support-bot\s+tickets-prod\s+DELETE FROM tickets/);
	const edit = await kubectl(["patch", "ar", "ar-7f3c", "-n", "valid", "--type=merge", "-p", '{"spec":{"command":"DROP TABLE tickets"}}']);
	assert.notEqual(edit.code, 0);
	assert.match(edit.stderr, /spec: Invalid value: "object": spec is immutable; decisions go in status/);
	const decision = { decision: "approve", by: "user:sam", issuer: "https://login.example.com", subject: "sam-0042", at: "2026-11-25T23:01:00Z" };
	const status = { phase: "Approved", decidedAt: "2026-11-25T23:01:00Z", decisions: [decision] };
	await ok(["patch", "ar", "ar-7f3c", "-n", "valid", "--subresource=status", "--type=merge", "-p", JSON.stringify({ status })]);
	assert.match(await ok(["get", "ar", "ar-7f3c", "-n", "valid"]), /ar-7f3c\s+support-bot\s+tickets-prod\s+DELETE.*Approved\s+delete-needs-approval\s+\S+\s+2026-11-25T23:01:00Z/);
	// The approver's issuer and subject survive the apiserver (not pruned by the structural schema).
	const stored = JSON.parse(await ok(["get", "ar", "ar-7f3c", "-n", "valid", "-o", "json"]));
	assert.deepEqual(stored.status.decisions, [decision]);
});

test("the invalid corpus: the apiserver and drawbridge validate reject every case, naming the same field", async () => {
	const corpus = loadCorpus();
	assert.ok(corpus.length >= 30, `only ${corpus.length} cases`);
	const disagreements: string[] = [];
	for (const c of corpus.filter((x) => x.apiserver)) {
		const server = await kubectl(["apply", "--dry-run=server", "-n", "corpus", "-f", c.path]);
		const { manifests } = loadManifests(c.text, c.name);
		const offline = validateResource(manifests[0]!.object);
		const serverRejects = server.code !== 0;
		const offlineRejects = offline.errors.length > 0;
		const serverNames = server.stderr.includes(`${c.field}:`) || server.stderr.includes(`unknown field "${c.field}"`);
		const offlineNames = offline.errors.some((e) => e.field === c.field);
		if (!serverRejects || !offlineRejects || !serverNames || !offlineNames) {
			disagreements.push(
				`${c.name} (${c.field}): apiserver ${serverRejects ? "rejects" : "ACCEPTS"}${serverRejects && !serverNames ? " without naming the field" : ""}: ${server.stderr.trim()}\n  offline ${offlineRejects ? "rejects" : "ACCEPTS"}: ${offline.errors.map((e) => `${e.field}: ${e.message}`).join("; ")}`,
			);
		}
	}
	assert.deepEqual(disagreements, []);
});

test("the corpus cases only a grants repository refuses are accepted by the apiserver", async () => {
	const cases = loadCorpus().filter((c) => !c.apiserver);
	assert.ok(cases.length >= 6, `only ${cases.length} cases`);
	for (const c of cases) {
		const ns = /^ {2}namespace: (\S+)$/m.exec(c.text)?.[1] ?? "corpus";
		if (ns !== "corpus") await kubectl(["create", "namespace", ns]);
		const server = await kubectl(["apply", "--dry-run=server", "-n", ns, "-f", c.path]);
		assert.equal(server.code, 0, `${c.name}: ${server.stderr}`);
	}
});

test("boundary cases are accepted by both the apiserver and the offline validator", async () => {
	const dir = join(API_TEST_DIR, "valid");
	const files = readdirSync(dir).filter((f) => f.endsWith(".yaml"));
	assert.ok(files.length >= 6);
	for (const f of files) {
		const path = join(dir, f);
		const server = await kubectl(["apply", "--dry-run=server", "-n", "valid", "-f", path]);
		assert.equal(server.code, 0, `${f}: apiserver rejects: ${server.stderr}`);
		const { manifests, errors } = loadManifests(readFileSync(path, "utf8"), f);
		assert.deepEqual(errors, []);
		assert.deepEqual(validateResource(manifests[0]!.object).errors, [], f);
	}
});

test("YAML scalars kubectl reads differently from YAML 1.2 are read the same offline", async () => {
	// ticket is a string field: a scalar both sides read as a string is accepted, anything else rejected.
	const scalars = ["yes", "Yes", "on", "off", "y", "n", "NO", "False", "~", "null", "0755", "0o17", "0x1F", "12:30", "1e3", ".5", ".inf", "1_000", "+12", "2026-01-01", "2026-01-01T00:00:00Z", "=", "<<", "'yes'", "OPS-1"];
	const differ: string[] = [];
	for (const v of scalars) {
		const text = `apiVersion: access.drawbridge.dev/v1alpha1\nkind: AccessGrant\nmetadata:\n  name: scalar\nspec:\n  connection: c\n  subjects: [{kind: User, name: a}]\n  postgres: {access: read-only}\n  duration: 1h\n  ticket: ${v}\n`;
		const server = await kubectl(["apply", "--dry-run=server", "-n", "valid", "-f", "-"], text);
		const { manifests, errors } = loadManifests(text, "scalar.yaml");
		const offlineOk = errors.length === 0 && validateResource(manifests[0]!.object).errors.length === 0;
		if ((server.code === 0) !== offlineOk) differ.push(`ticket: ${v} — kubectl ${server.code === 0 ? "accepts" : "rejects"}, offline ${offlineOk ? "accepts" : "rejects"}`);
	}
	assert.deepEqual(differ, []);
});
