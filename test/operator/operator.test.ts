/**
 * The operator end to end against a real kube-apiserver, a real git server over HTTP and a real
 * PostgreSQL: merge → Active with token + dynamic role; expiry; removal from git → Revoked; a broken
 * file next to valid ones; drift correction; resources created in the cluster directly.
 */
import assert from "node:assert/strict";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import { createLocalJWKSet, createRemoteJWKSet, decodeJwt, jwtVerify } from "jose";
import type pg from "pg";
import type { ConfigBundle } from "../../gateway/config/bundle.ts";
import { grantSubjectsDigest } from "../../gateway/config/canonical.ts";
import { findGrants } from "../../gateway/identity/grants.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import { recordingKeyFromJwk } from "../../gateway/recording/keys.ts";
import type { Operator } from "../../operator/operator.ts";
import { makeTempDir, printLogsOnFailure, runOk, startSshd } from "../env/index.ts";
import { parseCertificate, verifyCertificate } from "../../crds/ssh-certificate.ts";
import {
	type Env,
	NS,
	OP_NS,
	connectionYaml,
	type GrantObj,
	getGrant,
	getSecret,
	gitSourceYaml,
	grantYaml,
	kubectlOk,
	leastPrivilegeKubeconfig,
	pushWebhook,
	roleCount,
	sqlstate,
	startEnv,
	startOperator,
	stopEnv,
	waitFor,
} from "./helpers.ts";

let env: Env;
let op: Operator;
let admin: pg.Client;

before(async () => {
	env = await startEnv();
	admin = await env.pg.connect();
	// The operator runs as its ServiceAccount with exactly deploy/base/operator-rbac.yaml's permissions.
	// Short token lifetime so refresh before expiry is observable within the test.
	op = await startOperator(env, "op-main", ["--kubeconfig", await leastPrivilegeKubeconfig(env), "--token-ttl", "15s"]);
	await waitFor("leadership", async () => op.isLeader(), 15_000);
});
after(async () => {
	await op?.stop();
	await admin?.end();
	await stopEnv(env);
});
printLogsOnFailure(() => [["kube", env?.kube], ["postgres", env?.pg], ["git", env?.git]]);

async function bundle(): Promise<ConfigBundle> {
	const s = await getSecret(env, OP_NS, "drawbridge-gateway-bundle");
	assert.ok(s, "bundle Secret exists");
	return JSON.parse(s["bundle.json"]!) as ConfigBundle;
}

test("a merged grant becomes Active: token verifies, dynamic role has exactly its privileges, status names commit and PR", async () => {
	const { sha } = await env.git.mergePullRequest("grants", {
		number: 42,
		branch: "add-alice",
		title: "Grant alice read-only on orders",
		files: {
			"grants/connection.yaml": connectionYaml(env),
			"grants/alice.yaml": grantYaml("alice-orders"),
			"grants/masking.yaml": `apiVersion: access.drawbridge.dev/v1alpha1
kind: MaskingPolicy
metadata:
  name: pii
spec:
  selector:
    matchLabels: { env: prod }
  rules:
    - name: email
      columns: ["customers.email"]
      strategy: { type: partial, keepLast: 4 }
`,
		},
	});
	await kubectlOk(env.kube, ["apply", "-f", "-"], gitSourceYaml(env));
	const g = await waitFor("grant Active", async () => {
		const x = await getGrant(env, "alice-orders");
		return x?.status?.phase === "Active" && x.status.credential?.type === "postgresRole" ? x : undefined;
	});
	assert.equal(g.status!.origin!.commit, sha);
	assert.equal(g.status!.origin!.pullRequest, 42);
	assert.equal(g.status!.origin!.path, "grants/alice.yaml");
	assert.ok(g.metadata.finalizers?.includes("access.drawbridge.dev/credentials"));
	assert.equal(g.status!.conditions!.find((c) => c.type === "Ready")!.status, "True");

	// Token in the agent's namespace verifies with jose against the operator's JWKS endpoint ...
	const tok = await waitFor("token Secret", () => getSecret(env, NS, "drawbridge-token-alice-orders"));
	const jwks = createRemoteJWKSet(new URL(`http://127.0.0.1:${op.port}/.well-known/jwks.json`));
	const { payload } = await jwtVerify(tok.token!, jwks, { issuer: "https://drawbridge-operator.test", audience: "drawbridge-gateway" });
	assert.equal(payload.grant, `${NS}/alice-orders`);
	assert.equal(payload.sub, "alice");
	assert.ok(payload.exp! * 1000 <= Date.parse(g.status!.expiresAt!));
	// ... and at the gateway's verifier configured from the bundle alone.
	const b = await waitFor("bundle with the grant", async () => {
		const x = await bundle();
		return x.grants.some((gr) => gr.key === `${NS}/alice-orders` && gr.postgres?.credentialRef) ? x : undefined;
	});
	const identity = await new TokenVerifier(b.issuers).verify(tok.token!);
	assert.equal(identity.grant, `${NS}/alice-orders`);
	// The cluster's service-account issuer was discovered and its JWKS inlined: a projected token of a
	// service account verifies at the gateway with no secret from the operator.
	const kubeIssuer = b.issuers.find((i) => i.kind === "kubernetes");
	assert.equal(kubeIssuer?.issuer, env.kube.serviceAccountIssuer);
	assert.ok(kubeIssuer?.jwks?.keys.length);
	const saToken = await env.kube.serviceAccountToken("ci", "deployer", { audiences: ["drawbridge-gateway"], expirationSeconds: 600 });
	const saIdentity = await new TokenVerifier(b.issuers).verify(saToken);
	assert.deepEqual(saIdentity.serviceAccount, { namespace: "ci", name: "deployer" });
	const verifierJwks = createLocalJWKSet(b.issuers.find((i) => i.kind === "drawbridge")!.jwks as never);
	await jwtVerify(tok.token!, verifierJwks);

	// The dynamic role from the bundle logs in with only the granted privileges.
	const grantInBundle = b.grants.find((gr) => gr.key === `${NS}/alice-orders`)!;
	assert.equal(grantInBundle.origin.pullRequest, 42);
	const cred = b.credentials[grantInBundle.postgres!.credentialRef!];
	assert.ok(cred && cred.type === "password");
	assert.equal(cred.username, g.status!.credential!.username);
	const c = await env.pg.connect({ user: cred.username, password: cred.password });
	try {
		assert.ok((await c.query("SELECT count(*) FROM customers")).rows.length === 1);
		assert.equal(await sqlstate(c.query("DELETE FROM orders")), "25006");
		await c.query("SET default_transaction_read_only = off");
		assert.equal(await sqlstate(c.query("DELETE FROM orders")), "42501");
	} finally {
		await c.end();
	}
	const ev = await kubectlOk(env.kube, ["get", "events", "-n", NS, "--field-selector", "involvedObject.name=alice-orders", "-o", "jsonpath={.items[*].reason}"]);
	assert.match(ev, /Active/);
	assert.doesNotMatch(ev, /Invalid/, "no transient ConnectionNotFound while the Connection applied in the same sync is not cached yet");
	// Connection and policy status for kubectl get.
	await waitFor("Connection status", async () => {
		const r = await env.kube.request<{ status?: { activeGrants?: number; conditions?: { type: string; status: string }[] } }>("GET", `/apis/access.drawbridge.dev/v1alpha1/namespaces/${NS}/connections/orders`);
		return r.body.status?.activeGrants === 1 && r.body.status.conditions?.some((c) => c.type === "Ready" && c.status === "True");
	});
	await waitFor("MaskingPolicy status", async () => {
		const r = await env.kube.request<{ status?: { selectedConnections?: number } }>("GET", `/apis/access.drawbridge.dev/v1alpha1/namespaces/${NS}/maskingpolicies/pii`);
		return r.body.status?.selectedConnections === 1;
	});
	assert.equal(b.maskingPolicies.length, 1);
});

test("the grant's end passes: Expired within a second, role dropped, its session terminated, token refused", async () => {
	// Long enough that a loaded machine still sees it Active first; the assertions below time the end.
	const expiresAt = new Date(Date.now() + 12_000);
	await env.git.mergePullRequest("grants", {
		number: 43,
		branch: "short",
		title: "Short grant",
		files: { "grants/short.yaml": grantYaml("short", { expiresAt: expiresAt.toISOString().replace(/\.\d{3}Z$/, "Z"), access: "read-write" }) },
	});
	assert.equal(await pushWebhook(op.port), 202);
	const g = await waitFor("short grant Active", async () => {
		const x = await getGrant(env, "short");
		return x?.status?.phase === "Active" && x.status.credential?.username ? x : undefined;
	});
	const role = g.status!.credential!.username!;
	const rs = await getSecret(env, OP_NS, g.status!.credential!.secretName!);
	const session = await env.pg.connect({ user: role, password: rs!.password! });
	session.on("error", () => {});
	assert.equal(await sqlstate(session.query("UPDATE customers SET name = name WHERE id = 1")), "ok");
	const tok = await getSecret(env, NS, "drawbridge-token-short");
	const end = Date.parse(g.status!.expiresAt!);
	await waitFor("Expired", async () => (await getGrant(env, "short"))?.status?.phase === "Expired", 25_000, 50);
	const roleGoneAt = await waitFor("role dropped", async () => ((await roleCount(admin, role)).length === 0 ? Date.now() : undefined), 10_000, 50);
	assert.ok(roleGoneAt - end < 2_000, `role dropped ${roleGoneAt - end} ms after the end`);
	assert.notEqual(await sqlstate(session.query("SELECT 1")), "ok", "its session was terminated");
	await session.end().catch(() => {});
	assert.equal(await sqlstate(env.pg.connect({ user: role, password: rs!.password! })), "28P01");
	assert.equal(await getSecret(env, NS, "drawbridge-token-short"), undefined, "token Secret deleted");
	assert.equal(await getSecret(env, OP_NS, g.status!.credential!.secretName!), undefined, "role Secret deleted");
	const b = await bundle();
	// The token's exp is the grant's end: refused outright without clock skew ...
	await assert.rejects(new TokenVerifier(b.issuers.map((i) => ({ ...i, clockToleranceSec: 0 }))).verify(tok!.token!), "token past the grant's end is refused");
	// ... and within the gateway's default skew its grant no longer unlocks anything.
	const id = await new TokenVerifier(b.issuers).verify(tok!.token!);
	const lookup = findGrants(id, "orders", b.grants, new Date());
	assert.equal(lookup.active.length, 0);
	assert.equal(lookup.inactive[0]?.reason, "expired");
	assert.equal(b.grants.find((x) => x.key === `${NS}/short`)?.postgres?.credentialRef, undefined);
});

test("deleting the file from git revokes: grant pruned, Revoked event, role and token gone", async () => {
	const before = await getGrant(env, "alice-orders");
	const role = before!.status!.credential!.username!;
	await env.git.mergePullRequest("grants", { number: 44, branch: "rm-alice", title: "Remove alice", files: { "grants/alice.yaml": null } });
	assert.equal(await pushWebhook(op.port), 202);
	await waitFor("grant deleted", async () => (await getGrant(env, "alice-orders")) === undefined);
	assert.deepEqual(await roleCount(admin, role), []);
	assert.equal(await getSecret(env, NS, "drawbridge-token-alice-orders"), undefined);
	const ev = await kubectlOk(env.kube, ["get", "events", "-n", NS, "--field-selector", "involvedObject.name=alice-orders", "-o", "jsonpath={.items[*].reason}"]);
	assert.match(ev, /Revoked/);
	const b = await waitFor("bundle without the grant", async () => {
		const x = await bundle();
		return x.grants.some((g) => g.key === `${NS}/alice-orders`) ? undefined : x;
	});
	assert.ok(b.connections.some((c) => c.name === "orders"), "the connection stays");
});

test("a broken YAML file next to valid ones: valid ones apply, the broken one is reported with its path and line", async () => {
	await env.git.mergePullRequest("grants", {
		number: 45,
		branch: "mixed",
		title: "Add bob, and a broken file",
		files: {
			"grants/bob.yaml": grantYaml("bob-orders", { subject: "bob" }),
			"grants/broken.yaml": "apiVersion: access.drawbridge.dev/v1alpha1\nkind: AccessGrant\nmetadata:\n  name: broken\nspec:\n\tconnection: orders\n",
			"grants/invalid.yaml": grantYaml("invalid-one").replace("duration: 2h", "duration: forever"),
		},
	});
	assert.equal(await pushWebhook(op.port), 202);
	await waitFor("bob Active", async () => (await getGrant(env, "bob-orders"))?.status?.phase === "Active");
	const gs = await waitFor("GitSource reports errors", async () => {
		const r = await env.kube.request<{ status?: { errors?: { path: string; line?: number; message: string }[]; conditions?: { type: string; status: string }[] } }>(
			"GET",
			`/apis/access.drawbridge.dev/v1alpha1/namespaces/${NS}/gitsources/grants`,
		);
		return (r.body.status?.errors?.length ?? 0) >= 2 ? r.body : undefined;
	});
	const paths = gs.status!.errors!.map((e) => e.path);
	assert.ok(paths.includes("grants/broken.yaml"));
	assert.ok(paths.includes("grants/invalid.yaml"));
	assert.equal(gs.status!.errors!.find((e) => e.path === "grants/broken.yaml")!.line, 6);
	assert.match(gs.status!.errors!.find((e) => e.path === "grants/invalid.yaml")!.message, /spec\.duration/);
	assert.equal(gs.status!.conditions!.find((c) => c.type === "FilesValid")!.status, "False");
	assert.equal(await getGrant(env, "invalid-one"), undefined);
	const ev = await kubectlOk(env.kube, ["get", "events", "-n", NS, "--field-selector", "involvedObject.name=grants", "-o", "jsonpath={.items[*].message}"]);
	assert.match(ev, /grants\/broken\.yaml:6/);
	const metrics = await (await fetch(`http://127.0.0.1:${op.port}/metrics`)).text();
	assert.match(metrics, /drawbridge_operator_git_invalid_files\{source="team\/grants"\} 2/);
	assert.match(metrics, /drawbridge_operator_git_sync_duration_seconds_count/);

	// Breaking bob's own file later keeps bob's grant as it was (a broken file never takes down a grant).
	await env.git.commit("grants", { message: "oops", files: { "grants/bob.yaml": "kind: [\n" } });
	assert.equal(await pushWebhook(op.port), 202);
	await waitFor("bob.yaml reported", async () => {
		const r = await env.kube.request<{ status?: { errors?: { path: string }[] } }>("GET", `/apis/access.drawbridge.dev/v1alpha1/namespaces/${NS}/gitsources/grants`);
		return r.body.status?.errors?.some((e) => e.path === "grants/bob.yaml");
	});
	assert.equal((await getGrant(env, "bob-orders"))?.status?.phase, "Active");
});

test("drift made by hand is corrected on the next sync; in-cluster (Argo CD style) grants are reconciled the same way", async () => {
	const fix = await env.git.commit("grants", { message: "fix bob", files: { "grants/bob.yaml": grantYaml("bob-orders", { subject: "bob" }) } });
	await kubectlOk(env.kube, ["patch", "accessgrant", "bob-orders", "-n", NS, "--type=merge", "-p", '{"spec":{"postgres":{"access":"admin"}}}']);
	assert.equal(await pushWebhook(op.port), 202);
	await waitFor("spec restored", async () => ((await getGrant(env, "bob-orders"))?.spec.postgres as { access: string } | undefined)?.access === "read-only");
	// Re-approved by a direct commit without a PR: the origin follows, no stale PR number (#45) remains.
	const bob = await waitFor("bob's origin updated", async () => {
		const g = await getGrant(env, "bob-orders");
		return g?.status?.origin?.commit === fix ? g : undefined;
	});
	assert.equal(bob.status!.origin!.pullRequest, undefined);

	await kubectlOk(env.kube, ["apply", "-n", NS, "-f", "-"], grantYaml("argo-made", { subject: "carol" }));
	const g = await waitFor("in-cluster grant Active", async () => {
		const x = await getGrant(env, "argo-made");
		return x?.status?.phase === "Active" && x.status.credential ? x : undefined;
	});
	assert.equal(g.status!.origin!.commit, undefined, "no git origin");
	await kubectlOk(env.kube, ["delete", "accessgrant", "argo-made", "-n", NS]);
	await waitFor("argo grant gone", async () => (await getGrant(env, "argo-made")) === undefined);
	assert.deepEqual(await roleCount(admin, g.status!.credential!.username!), []);
	// Not pruned by git: it never carried the git-owned label. Re-sync keeps bob, doesn't recreate argo-made.
	assert.equal(await pushWebhook(op.port), 202);
	await op.idle();
	assert.equal(await getGrant(env, "argo-made"), undefined);
});

test("webhooks with a bad signature are refused and sync nothing", async () => {
	const body = JSON.stringify({ ref: "refs/heads/main" });
	const bad = await fetch(`http://127.0.0.1:${op.port}/webhook/${NS}/grants`, { method: "POST", headers: { "x-hub-signature-256": `sha256=${"0".repeat(64)}` }, body });
	assert.equal(bad.status, 401);
	const none = await fetch(`http://127.0.0.1:${op.port}/webhook/${NS}/grants`, { method: "POST", body });
	assert.equal(none.status, 401);
	const unknown = await fetch(`http://127.0.0.1:${op.port}/webhook/${NS}/nope`, { method: "POST", body });
	assert.equal(unknown.status, 404);
	assert.equal((await fetch(`http://127.0.0.1:${op.port}/healthz`)).status, 200);
	assert.equal((await fetch(`http://127.0.0.1:${op.port}/readyz`)).status, 200);
});

test("Pending until notBefore, then Active on time; a grant for a missing Connection is Invalid with its reason", async () => {
	const start = new Date(Math.ceil((Date.now() + 10_000) / 1000) * 1000);
	const later = grantYaml("later", { subject: "dana", duration: "1h" }).replace("  duration: 1h", `  notBefore: "${start.toISOString().replace(/\.\d{3}Z$/, "Z")}"\n  duration: 1h`);
	const orphan = grantYaml("orphan", { subject: "erin", connection: "no-such-connection" });
	await env.git.mergePullRequest("grants", { number: 46, branch: "later", title: "later + orphan", files: { "grants/later.yaml": later, "grants/orphan.yaml": orphan } });
	assert.equal(await pushWebhook(op.port), 202);
	const pending = await waitFor("Pending", async () => {
		const g = await getGrant(env, "later");
		return g?.status?.phase === "Pending" ? g : undefined;
	});
	assert.equal(pending.status!.conditions!.find((c) => c.type === "Ready")!.reason, "NotYetValid");
	assert.equal(await getSecret(env, NS, "drawbridge-token-later"), undefined, "no credential before the start");
	const activeAt = await waitFor("Active", async () => ((await getGrant(env, "later"))?.status?.phase === "Active" ? Date.now() : undefined), 25_000, 50);
	assert.ok(activeAt >= start.getTime() && activeAt - start.getTime() < 2_000, `active ${activeAt - start.getTime()} ms after notBefore`);
	await waitFor("token after the start", () => getSecret(env, NS, "drawbridge-token-later"));
	const o = await waitFor("Invalid", async () => {
		const g = await getGrant(env, "orphan");
		return g?.status?.phase === "Invalid" ? g : undefined;
	});
	assert.equal(o.status!.conditions!.find((c) => c.type === "Ready")!.reason, "ConnectionNotFound");
	const ev = await kubectlOk(env.kube, ["get", "events", "-n", NS, "--field-selector", "involvedObject.name=orphan,type=Warning", "-o", "jsonpath={.items[*].reason}"]);
	assert.match(ev, /Invalid/);
});

test("tokens are refreshed before they expire and never outlive the grant", async () => {
	const first = await waitFor("bob's token", () => getSecret(env, NS, "drawbridge-token-bob-orders"));
	const t1 = decodeJwt(first.token!);
	assert.ok(t1.exp! - t1.iat! <= 15, "token-ttl caps the lifetime");
	const refreshed = await waitFor(
		"a new token",
		async () => {
			const x = await getSecret(env, NS, "drawbridge-token-bob-orders");
			return x && x.token !== first.token ? x : undefined;
		},
		20_000,
		200,
	);
	const t2 = decodeJwt(refreshed.token!);
	assert.notEqual(t2.jti, t1.jti);
	assert.ok(t2.iat! < t1.exp!, "replaced before the old one expired");
	assert.ok(t2.iat! - t1.iat! >= 9, "not before two thirds of its life");
});

test("an ssh grant delivers an OpenSSH key and a user certificate that a real sshd trusting the operator's CA accepts", async (t) => {
	const caRes = await fetch(`http://127.0.0.1:${op.port}/ssh/user-ca.pub`);
	assert.equal(caRes.status, 200);
	const userCa = (await caRes.text()).trim();
	const sshd = await startSshd({ trustedUserCaKey: userCa });
	t.after(() => sshd.stop());
	const connection = `apiVersion: access.drawbridge.dev/v1alpha1
kind: Connection
metadata:
  name: box
spec:
  type: ssh
  host: 127.0.0.1
  port: ${sshd.port}
  ssh:
    hostKeys: ["${sshd.hostPublicKey.split(" ").slice(0, 2).join(" ")}"]
    auth: certificate
`;
	const grant = `apiVersion: access.drawbridge.dev/v1alpha1
kind: AccessGrant
metadata:
  name: lee-box
spec:
  connection: box
  subjects: [{ kind: User, name: lee }]
  ssh:
    logins: [${sshd.user}]
    allowShell: true
  duration: 30m
`;
	await env.git.mergePullRequest("grants", { number: 50, branch: "ssh", title: "break-glass", files: { "grants/box.yaml": connection, "grants/lee.yaml": grant } });
	assert.equal(await pushWebhook(op.port), 202);
	await waitFor("ssh grant Active", async () => (await getGrant(env, "lee-box"))?.status?.phase === "Active");
	const s = await waitFor("ssh key in the token Secret", async () => {
		const x = await getSecret(env, NS, "drawbridge-token-lee-box");
		return x?.["ssh-certificate"] ? x : undefined;
	});
	const cert = parseCertificate(s["ssh-certificate"]!.trim());
	assert.deepEqual(cert.principals, [sshd.user]);
	assert.equal(cert.keyId, `sub=lee;grant=${NS}/lee-box;subjects=${grantSubjectsDigest([{ kind: "User", name: "lee" }])}`);
	assert.ok(Number(cert.validBefore) * 1000 <= Date.parse((await getGrant(env, "lee-box"))!.status!.expiresAt!));
	verifyCertificate(cert, { trustedCaKeys: [userCa], principal: sshd.user });
	const keyFile = join(env.cacheRoot, "lee_key");
	writeFileSync(keyFile, s["ssh-privatekey"]!, { mode: 0o600 });
	writeFileSync(`${keyFile}-cert.pub`, s["ssh-certificate"]!);
	const r = await sshd.ssh(["echo", "cert-ok"], { identityFile: keyFile, extraOptions: ["-o", `CertificateFile=${keyFile}-cert.pub`] });
	assert.equal(r.stdout.trim(), "cert-ok", r.stderr);
	const b = await waitFor("bundle with SSH CAs", async () => {
		const x = await bundle();
		return x.ssh?.upstreamCaCredentialRef ? x : undefined;
	});
	assert.deepEqual(b.ssh!.userCaKeys, [userCa]);
	assert.equal(b.credentials[b.ssh!.upstreamCaCredentialRef!]!.type, "sshKey");
	assert.equal(b.ssh!.upstreamCaPublicKey, (await (await fetch(`http://127.0.0.1:${op.port}/ssh/upstream-ca.pub`)).text()).trim());
});

test("issue grant-credential-subjects: removing a subject in git gives the grant a token for its new subjects; the old one no longer opens it", async () => {
	const pair = grantYaml("pair-orders").replace("      name: alice\n", "      name: alice\n    - kind: Group\n      name: oncall\n");
	assert.match(pair, /name: oncall/);
	await env.git.mergePullRequest("grants", { number: 60, branch: "pair", title: "alice and oncall on orders", files: { "grants/pair.yaml": pair } });
	assert.equal(await pushWebhook(op.port), 202);
	const first = await waitFor("the pair's token", () => getSecret(env, NS, "drawbridge-token-pair-orders"));
	const inBundle = (b: ConfigBundle) => b.grants.find((g) => g.key === `${NS}/pair-orders`);
	const b1 = await waitFor("bundle with the pair grant", async () => {
		const x = await bundle();
		return inBundle(x)?.subjects.length === 2 ? x : undefined;
	});
	const firstIat = new Date((decodeJwt(first.token!).iat ?? 0) * 1000);
	// Verified at the instant it was minted: this suite's tokens live 15 s.
	const at = (when: Date) => ({ now: () => when });
	const id1 = await new TokenVerifier(b1.issuers, at(firstIat)).verify(first.token!);
	assert.equal(id1.grantSubjects, grantSubjectsDigest(inBundle(b1)!.subjects));
	assert.equal(findGrants(id1, "orders", b1.grants, firstIat).active.length, 1);

	await env.git.mergePullRequest("grants", { number: 61, branch: "pair-narrow", title: "only alice", files: { "grants/pair.yaml": grantYaml("pair-orders") } });
	assert.equal(await pushWebhook(op.port), 202);
	const b2 = await waitFor("bundle without oncall", async () => {
		const x = await bundle();
		return inBundle(x)?.subjects.length === 1 ? x : undefined;
	});
	const digest = grantSubjectsDigest(inBundle(b2)!.subjects);
	const current = await waitFor("a token for the new subjects", async () => {
		const x = await getSecret(env, NS, "drawbridge-token-pair-orders");
		return x?.token && decodeJwt(x.token).grantSubjects === digest ? x : undefined;
	});
	const now = new Date((decodeJwt(current.token!).iat ?? 0) * 1000);
	const fresh = await new TokenVerifier(b2.issuers, at(now)).verify(current.token!);
	assert.equal(findGrants(fresh, "orders", b2.grants, now).active.length, 1);
	// The copy someone kept of the first token: refused by the grant lookup, naming why.
	const old = await new TokenVerifier(b2.issuers, at(firstIat)).verify(first.token!);
	const lookup = findGrants(old, "orders", b2.grants, firstIat);
	assert.equal(lookup.active.length, 0);
	assert.equal(lookup.inactive[0]?.reason, "subjects-changed");
	await env.git.mergePullRequest("grants", { number: 62, branch: "pair-gone", title: "remove the pair grant", files: { "grants/pair.yaml": null } });
	assert.equal(await pushWebhook(op.port), 202);
});

test("with trustedKeys only commits signed by a trusted OpenPGP key count: an unsigned direct push grants nothing", async (t) => {
	const dir = makeTempDir("pgp");
	const home = join(dir, "gnupg");
	mkdirSync(home, { mode: 0o700 });
	const genv = { ...process.env, GNUPGHOME: home, GIT_AUTHOR_NAME: "Mallory", GIT_AUTHOR_EMAIL: "m@example.com", GIT_COMMITTER_NAME: "Mallory", GIT_COMMITTER_EMAIL: "m@example.com" };
	await runOk("gpg", ["--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--quick-gen-key", "Merge Bot <merge@example.com>", "ed25519", "sign", "never"], { env: genv });
	const armored = (await runOk("gpg", ["--armor", "--export", "merge@example.com"], { env: genv })).stdout;
	await env.git.createRepo("signed");
	const work = join(dir, "work");
	await runOk("git", ["clone", "-q", env.git.authedRepoUrl("signed"), work], { env: genv });
	const g = (...args: string[]) => runOk("git", ["-C", work, "-c", "gpg.program=gpg", ...args], { env: genv });
	mkdirSync(join(work, "grants"), { recursive: true });
	writeFileSync(join(work, "grants", "sneaky.yaml"), grantYaml("sneaky", { subject: "mallory" }));
	await g("add", ".");
	await g("commit", "-q", "-m", "direct push, no review");
	await g("push", "-q", "origin", "main");
	const source = gitSourceYaml(env, "signed").replace(`/grants.git`, "/signed.git") + `  trustedKeys:\n    - name: merge-bot\n      publicKey: |\n${armored.trim().split("\n").map((l) => `        ${l}`).join("\n")}\n`;
	await kubectlOk(env.kube, ["apply", "-f", "-"], source);
	t.after(() => kubectlOk(env.kube, ["delete", "gitsource", "signed", "-n", NS]).then(() => undefined));
	const status = await waitFor("UntrustedCommit", async () => {
		const r = await env.kube.request<{ status?: { conditions?: { type: string; status: string; reason: string }[] } }>("GET", `/apis/access.drawbridge.dev/v1alpha1/namespaces/${NS}/gitsources/signed`);
		return r.body.status?.conditions?.find((c) => c.type === "Ready" && c.reason === "UntrustedCommit");
	});
	assert.equal(status.status, "False");
	assert.equal(await getGrant(env, "sneaky"), undefined, "nothing from an unsigned head is applied");
	// The merge bot signs the next commit: now it counts.
	writeFileSync(join(work, "grants", "sneaky.yaml"), grantYaml("sneaky", { subject: "reviewed" }));
	await g("add", ".");
	await g("commit", "-q", "-Smerge@example.com", "-m", "Merge pull request #77 from org/reviewed");
	await g("push", "-q", "origin", "main");
	const sha = (await g("rev-parse", "HEAD")).stdout.trim();
	assert.equal(await pushWebhook(op.port, "signed"), 202);
	const grant = await waitFor("signed grant Active", async () => {
		const x = await getGrant(env, "sneaky");
		return x?.status?.phase === "Active" ? x : undefined;
	});
	assert.equal(grant.status!.origin!.commit, sha);
	assert.equal(grant.status!.origin!.pullRequest, 77);
});

test("the operator's RBAC is least privilege: no cluster-wide Secret listing, no approvals, no RBAC", async () => {
	const sa = "system:serviceaccount:drawbridge-system:drawbridge-operator";
	const can = async (...args: string[]) => (await env.kube.kubectl(["auth", "can-i", ...args, `--as=${sa}`])).stdout.trim();
	assert.equal(await can("list", "secrets", "-A"), "no");
	assert.equal(await can("watch", "secrets", "-n", NS), "no");
	assert.equal(await can("list", "secrets", "-n", OP_NS), "yes");
	assert.equal(await can("patch", "secrets", "-n", NS), "no");
	assert.equal(await can("create", "approvalrequests.access.drawbridge.dev", "-n", NS), "no");
	assert.equal(await can("create", "clusterrolebindings"), "no");
	assert.equal(await can("update", "leases", "-n", NS), "no");
	assert.equal(await can("delete", "gitsources.access.drawbridge.dev", "-n", NS), "no");
	assert.equal(await can("patch", "accessgrants.access.drawbridge.dev", "-n", NS), "yes");
	// ConfigMaps: only the recording trusted keys it writes and the bundle high-water mark it reads.
	assert.equal(await can("update", "configmaps/drawbridge-recording-trusted-keys", "-n", OP_NS), "yes");
	assert.equal(await can("update", "configmaps/drawbridge-gateway-bundle-highwater", "-n", OP_NS), "no");
	assert.equal(await can("get", "configmaps/drawbridge-gateway-bundle-highwater", "-n", OP_NS), "yes");
	assert.equal(await can("update", "configmaps", "-n", NS), "no");
	// The running operator made the gateways' recording key and the public set pinned to it.
	const cm = await env.kube.request<{ data: Record<string, string> }>("GET", `/api/v1/namespaces/${OP_NS}/configmaps/drawbridge-recording-trusted-keys`);
	assert.equal(cm.status, 200);
	const key = await getSecret(env, OP_NS, "drawbridge-recording-key");
	const { kid } = await recordingKeyFromJwk(JSON.parse(key!["recording-key.jwk"]!));
	assert.deepEqual((JSON.parse(cm.body.data["keys.json"]!) as { keys: { kid: string }[] }).keys.map((k) => k.kid), [kid]);
});

test("a grant on a Connection whose name an older Connection of another namespace holds is Invalid (ConnectionNameInUse) with no token; Active once the name is free", async () => {
	// Team aaa's Connection takes the name of team's older `orders`: the bundle keeps team's, so aaa's
	// grant cannot be used and must not say Active or hold a token (it did: only the Connection's
	// status told).
	await kubectlOk(env.kube, ["create", "namespace", "aaa"]);
	await kubectlOk(
		env.kube,
		["apply", "-n", "aaa", "-f", "-"],
		`apiVersion: access.drawbridge.dev/v1alpha1
kind: Connection
metadata:
  name: orders
spec:
  type: postgres
  host: 127.0.0.1
  port: ${env.pg.port}
  credentialSecretRef:
    name: aaa-admin
  postgres:
    database: ${env.pg.database}
    credentialMode: static
`,
	);
	await kubectlOk(env.kube, ["apply", "-n", "aaa", "-f", "-"], grantYaml("aaa-reader", { subject: "mallory" }));
	const aaaGrant = async () => {
		const r = await env.kube.request<GrantObj>("GET", "/apis/access.drawbridge.dev/v1alpha1/namespaces/aaa/accessgrants/aaa-reader");
		return r.status === 200 ? r.body : undefined;
	};
	const invalid = await waitFor("Invalid", async () => {
		const g = await aaaGrant();
		return g?.status?.phase === "Invalid" ? g : undefined;
	});
	const ready = invalid.status!.conditions!.find((c) => c.type === "Ready")!;
	assert.equal(ready.reason, "ConnectionNameInUse");
	assert.match((ready as { message?: string }).message ?? "", new RegExp(`older Connection ${NS}/orders`));
	assert.equal(await getSecret(env, "aaa", "drawbridge-token-aaa-reader"), undefined, "no token for a grant left out of the bundle");
	// The holder goes: the name is aaa's now, and its grant is reconciled at once (not at the next resync).
	await kubectlOk(env.kube, ["delete", "connection", "orders", "-n", NS, "--wait=false"]);
	await waitFor("Active", async () => (await aaaGrant())?.status?.phase === "Active");
	await waitFor("token", () => getSecret(env, "aaa", "drawbridge-token-aaa-reader"));
});
