/**
 * Red-team findings on the GitOps path (someone who can get a file merged into the grants repository),
 * each failing on the code before the fix:
 *
 * 1. `expiresAt` without `notBefore` had no cap: the CRD caps `duration` and `expiresAt - notBefore`
 *    at 90 days, but `expiresAt: 2999-01-01` alone made a grant Active for 973 years.
 * 2. A manifest could set the operator's provenance annotations (`access.drawbridge.dev/pull-request`,
 *    `approval-url`): the grant's status, the bundle and every recording named a pull request and an
 *    approval link that never existed.
 * 3. `metadata.namespace` placed resources in any namespace: a GitSource of team A wrote grants into
 *    team B's namespace, against team B's Connections (and their credential Secrets).
 * 4. A file of 100 000 empty documents became 100 000 problems, and each sync wrote one Warning Event
 *    per problem not among the 256 kept in status (every sync, forever).
 * 5. File names, YAML keys and commit authors reached status, Events and annotations raw: ANSI
 *    escapes and newlines in a terminal running `kubectl describe`; zero-width and bidi characters in
 *    subjects hid from reviewers who they named.
 * 6. The gateway applied a MaskingPolicy or GuardrailPolicy to every Connection with matching labels in
 *    every namespace (the docs and the operator's status say: in its namespace), and one policy's
 *    `exempt` lifted every other policy's masks on the Connection.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { AccessGrant, Connection } from "../../crds/index.ts";
import type { ConfigBundle } from "../../gateway/config/bundle.ts";
import { LoadedBundle } from "../../gateway/config/store.ts";
import { subjectMatches } from "../../gateway/identity/grants.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import { formatPerson } from "../../operator/gitsync/commits.ts";
import { loadSnapshot, MAX_PROBLEMS_PER_FILE } from "../../operator/gitsync/load.ts";
import type { Snapshot } from "../../operator/gitsync/repo.ts";
import { decideGrant } from "../../operator/reconcile/desired/accessgrant.ts";
import { ANNOTATIONS } from "../../operator/reconcile/labels.ts";

const T0 = new Date("2026-03-01T10:00:00Z");
const origin = { sha: "a".repeat(40), author: "a <a@x>", committer: "c <c@x>", committedAt: T0.toISOString(), subject: "s" };

function snap(files: Record<string, string>): Snapshot {
	return {
		repository: "https://git.example/org/grants",
		branch: "main",
		commit: "a".repeat(40),
		files: Object.entries(files).map(([path, text]) => ({ path, content: new TextEncoder().encode(text), blobOid: "b", approvedBy: origin })),
	};
}

const CONNECTION = `apiVersion: access.drawbridge.dev/v1alpha1
kind: Connection
metadata: {name: orders}
spec: {type: postgres, host: db.internal, port: 5432, postgres: {database: app}, credentialSecretRef: {name: orders-admin}}
`;

const grantYaml = (meta: string, extra = "  duration: 1h\n", subject = "alice") => `apiVersion: access.drawbridge.dev/v1alpha1
kind: AccessGrant
metadata:
  name: g
${meta}spec:
  connection: orders
  subjects: [{kind: User, name: "${subject}"}]
  postgres: {access: read-only}
${extra}`;

function conn(): Connection {
	return {
		apiVersion: "access.drawbridge.dev/v1alpha1",
		kind: "Connection",
		metadata: { name: "orders", namespace: "team" },
		spec: { type: "postgres", host: "db.internal", port: 5432, postgres: { database: "orders" }, credentialSecretRef: { name: "db-admin" } },
	};
}

function grant(spec: Partial<AccessGrant["spec"]>): AccessGrant {
	return {
		apiVersion: "access.drawbridge.dev/v1alpha1",
		kind: "AccessGrant",
		metadata: { name: "g", namespace: "team", annotations: { [ANNOTATIONS.committedAt]: T0.toISOString() } },
		spec: { connection: "orders", subjects: [{ kind: "User", name: "alice" }], postgres: { access: "read-only" }, ...spec } as AccessGrant["spec"],
	};
}

test("1. a grant lasts at most 90 days in every form: expiresAt alone counts from the merge", () => {
	const forever = decideGrant(grant({ expiresAt: "2999-01-01T00:00:00Z" }), conn(), T0);
	assert.equal(forever.phase, "Invalid");
	assert.equal(forever.reason, "InvalidSpec");
	assert.match(forever.message, /cannot last longer than 90 days.*approving commit/);
	// 90 days exactly from the merge is fine; so is a bounded window starting later.
	const ninety = new Date(T0.getTime() + 90 * 86_400_000).toISOString();
	assert.equal(decideGrant(grant({ expiresAt: ninety }), conn(), T0).phase, "Active");
	assert.equal(decideGrant(grant({ notBefore: "2026-05-01T00:00:00Z", expiresAt: "2026-07-01T00:00:00Z" }), conn(), T0).phase, "Pending");
	// A notBefore far in the past does not stretch a duration-less window either.
	assert.equal(decideGrant(grant({ expiresAt: new Date(T0.getTime() + 91 * 86_400_000).toISOString() }), conn(), T0).phase, "Invalid");
});

test("2. provenance annotations and the ownership label are the operator's: a manifest setting them is skipped, the rest loads", () => {
	for (const meta of [
		`  annotations:\n    ${ANNOTATIONS.pullRequest}: "4242"\n    ${ANNOTATIONS.url}: https://evil.example/pull/4242\n`,
		`  annotations:\n    Access.Drawbridge.dev/Commit: "${"b".repeat(40)}"\n`,
		`  labels:\n    access.drawbridge.dev/git-source: other.source\n`,
	]) {
		const r = loadSnapshot(snap({ "c.yaml": CONNECTION, "g.yaml": grantYaml(meta) }), "team");
		assert.deepEqual(r.resources.map((x) => `${x.kind}:${x.key}`), ["Connection:team/orders"], meta);
		assert.equal(r.problems.length, 1, meta);
		assert.match(r.problems[0]!.message, /reserved for the operator/);
		assert.equal(r.problems[0]!.path, "g.yaml");
		assert.ok(r.problems[0]!.line! >= 5, "positioned at the key");
	}
	// Other annotations and labels still pass.
	const ok = loadSnapshot(snap({ "g.yaml": grantYaml("  annotations:\n    team.example/owner: payments\n  labels:\n    env: prod\n") }), "team");
	assert.equal(ok.resources.length, 1);
});

test("3. resources stay in the GitSource's namespace unless it is the operator's own", () => {
	const files = { "c.yaml": CONNECTION, "g.yaml": grantYaml("  namespace: payments\n") };
	const team = loadSnapshot(snap(files), "team");
	assert.deepEqual(team.resources.map((x) => x.key), ["team/orders"]);
	assert.match(team.problems[0]!.message, /metadata\.namespace: "payments" is outside this GitSource's namespace "team"/);
	assert.equal(team.problems[0]!.line, 5);
	// Naming its own namespace is fine; the operator namespace's GitSource (namespaces: "any") may place anywhere.
	assert.equal(loadSnapshot(snap({ "g.yaml": grantYaml("  namespace: team\n") }), "team").resources.length, 1);
	const admin = loadSnapshot(snap(files), "drawbridge-system", { namespaces: "any" });
	assert.deepEqual(admin.resources.map((x) => x.key).sort(), ["drawbridge-system/orders", "payments/g"]);
	assert.equal(admin.problems.length, 0);
});

test("4. a file full of broken documents is a bounded number of problems", () => {
	const r = loadSnapshot(snap({ "c.yaml": CONNECTION, "many.yaml": "---\n{}\n".repeat(100_000) }), "team");
	assert.deepEqual(r.resources.map((x) => x.key), ["team/orders"], "the rest of the repository still loads");
	assert.equal(r.problems.length, MAX_PROBLEMS_PER_FILE + 1);
	assert.ok(r.problems.some((p) => p.path === "many.yaml" && p.message === "99984 more problem(s) in this file not listed"));
});

test("5. control and invisible characters: never raw in problems or commit metadata; hidden text in a resource is refused", () => {
	const evilPath = "grants/\u001b[2J\u001b[31mok\nREADME.yaml";
	const r = loadSnapshot(snap({ [evilPath]: CONNECTION, "k.yaml": `"a\u001b[31m": 1\n"a\u001b[31m": 2\n` }), "team");
	assert.equal(r.resources.length, 0, "a file whose name carries control characters is not applied");
	for (const p of r.problems) assert.doesNotMatch(`${p.path} ${p.message}`, /[\u0000-\u001f\u007f-\u009f]/, JSON.stringify(p));
	assert.ok(r.problems.some((p) => p.path === "grants/\\u{1b}[2J\\u{1b}[31mok\\u{a}README.yaml" && /control or invisible/.test(p.message)));
	assert.equal(formatPerson({ name: "Eve\u001b]8;;https://evil\u0007", email: "e@x\r\nInjected: yes" }), "Eve\\u{1b}]8;;https://evil\\u{7} <e@x\\u{d}\\u{a}Injected: yes>");

	const hidden: [string, string][] = [
		["alice\u200b", "\\u{200b}"],
		["\u202eecila", "\\u{202e}"],
		["al\u0000ice", "\\u{0}"],
	];
	for (const [subject, shown] of hidden) {
		const h = loadSnapshot(snap({ "c.yaml": CONNECTION, "g.yaml": grantYaml("", "  duration: 1h\n", subject.replace("\u0000", "\\0")) }), "team");
		assert.deepEqual(h.resources.map((x) => x.kind), ["Connection"], JSON.stringify(subject));
		assert.equal(h.problems.length, 1);
		assert.equal(h.problems[0]!.message, `spec.subjects[0].name: contains control or invisible characters (${shown}) a reviewer cannot see; the resource is skipped`);
	}
	// Newlines in a justification are ordinary text.
	const j = loadSnapshot(snap({ "c.yaml": CONNECTION, "g.yaml": grantYaml("", "  duration: 1h\n  justification: |\n    line one\n    line two\n") }), "team");
	assert.equal(j.resources.length, 2);
});

test("6. the gateway applies policies to Connections of their own namespace only, and one policy's exempt does not lift another's masks", () => {
	const connection = (ns: string, name: string) => ({ key: `${ns}/${name}`, name, namespace: ns, type: "postgres" as const, labels: { env: "prod" }, host: "127.0.0.1", port: 5432 });
	const redact = (name: string) => ({ name, columns: ["customers.email"], strategy: { type: "redact" as const } });
	const bundle: ConfigBundle = {
		apiVersion: "drawbridge.dev/bundle/v1",
		version: 1,
		generatedAt: T0.toISOString(),
		hash: "",
		issuers: [],
		connections: [connection("payments", "payments-db"), connection("team", "team-db")],
		grants: [],
		maskingPolicies: [
			{ key: "payments/pii", selector: { matchLabels: { env: "prod" } }, rules: [redact("email")], exempt: [{ kind: "Group", name: "payments-dpo" }] },
			// Another namespace's policy with an empty selector, exempting its author, and a rule that masks nothing real.
			{ key: "team/mine", selector: {}, rules: [{ name: "noop", columns: ["nothing.nothing"], strategy: { type: "null" } }], exempt: [{ kind: "User", name: "mallory" }] },
			// Same namespace, exempting mallory as well: alone it must not lift payments/pii.
			{ key: "payments/extra", selector: {}, rules: [redact("phone")], exempt: [{ kind: "User", name: "mallory" }, { kind: "Group", name: "payments-dpo" }] },
		],
		guardrailPolicies: [{ key: "team/allow", selector: {}, rules: [{ name: "audit-all", action: "audit", sql: { statementKinds: ["SELECT"] } }] }],
		credentials: {},
		maskingKey: Buffer.alloc(32, 1).toString("base64"),
	} as unknown as ConfigBundle;
	const loaded = new LoadedBundle(bundle, new TokenVerifier([]));
	const payments = loaded.policiesFor("payments-db");
	assert.deepEqual(payments.maskRules.map((r) => r.name), ["email", "phone"], "team/mine does not select payments' Connection");
	assert.deepEqual(payments.guardrailRules, [], "team/allow does not select payments' Connection");
	const mallory = { subject: "mallory", username: "mallory", groups: [] as string[] };
	const dpo = { subject: "dana", username: "dana", groups: ["payments-dpo"] };
	const exempt = (id: typeof mallory) => payments.maskExempt.some((s) => subjectMatches(id as never, s));
	assert.equal(exempt(mallory), false, "exempt by payments/extra only: payments/pii still masks");
	assert.equal(exempt(dpo), true, "exempt by every policy selecting the Connection");
	assert.deepEqual(loaded.policiesFor("team-db").maskRules.map((r) => r.name), ["noop"]);
});
