/**
 * Pure reconcile pieces: the AccessGrant decision table, conditions, the work queue's dedup / dirty /
 * backoff / scheduling, and the bundle compiler (deterministic hash, what is in and out).
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { AccessGrant, Connection, GuardrailPolicy, MaskingPolicy } from "../../crds/index.ts";
import { bundleHash } from "../../gateway/config/canonical.ts";
import { compileBundle, compileBundleContent, contentHash, nextBundleChange } from "../../operator/config/compile.ts";
import { approvalTime, decideGrant, firstSeenOf, grantConditions, setCondition } from "../../operator/reconcile/desired/accessgrant.ts";
import { type ConnectionSecretsCheck, connectionStatus, policyStatus } from "../../operator/reconcile/desired/status.ts";
import { ANNOTATIONS } from "../../operator/reconcile/labels.ts";
import { WorkQueue } from "../../operator/reconcile/queue.ts";

const T0 = new Date("2026-03-01T10:00:00Z");
const min = (n: number) => new Date(T0.getTime() + n * 60_000);

function conn(name: string, type: "postgres" | "ssh" | "kubernetes", dynamic = false): Connection {
	const spec: Connection["spec"] =
		type === "postgres"
			? { type, host: "db.internal", port: 5432, postgres: { database: "orders", credentialMode: dynamic ? "dynamic" : "static" }, credentialSecretRef: { name: "db-admin" } }
			: type === "ssh"
				? { type, host: "host", port: 22, ssh: { hostKeys: ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIG1vY2s="], auth: "certificate" } }
				: { type, host: "10.0.0.1", port: 6443 };
	return { apiVersion: "access.drawbridge.dev/v1alpha1", kind: "Connection", metadata: { name, namespace: "team", labels: { env: "prod" } }, spec };
}

function grant(name: string, spec: Partial<AccessGrant["spec"]>, meta: Partial<AccessGrant["metadata"]> = {}): AccessGrant {
	return {
		apiVersion: "access.drawbridge.dev/v1alpha1",
		kind: "AccessGrant",
		metadata: {
			name,
			namespace: "team",
			creationTimestamp: T0.toISOString(),
			annotations: { [ANNOTATIONS.committedAt]: T0.toISOString(), [ANNOTATIONS.commit]: "abc", [ANNOTATIONS.pullRequest]: "42" },
			...meta,
		},
		spec: { connection: "orders", subjects: [{ kind: "User", name: "alice" }], postgres: { access: "read-only" }, duration: "30m", ...spec } as AccessGrant["spec"],
	};
}

test("decideGrant (table)", () => {
	const orders = conn("orders", "postgres", true);
	const cases: [string, AccessGrant, Connection | undefined, Date, string, string, Date | undefined][] = [
		["active", grant("g", {}), orders, min(5), "Active", "Granted", min(30)],
		["pending", grant("g", { notBefore: min(10).toISOString(), duration: "1h" }), orders, min(5), "Pending", "NotYetValid", min(10)],
		["starts exactly now", grant("g", { notBefore: min(10).toISOString(), duration: "1h" }), orders, min(10), "Active", "Granted", min(70)],
		["expired at the boundary", grant("g", {}), orders, min(30), "Expired", "GrantEnded", undefined],
		["expiresAt form", grant("g", { duration: undefined, expiresAt: min(20).toISOString() }), orders, min(19), "Active", "Granted", min(20)],
		["no connection", grant("g", { connection: "nope" }), undefined, min(5), "Invalid", "ConnectionNotFound", undefined],
		["type mismatch", grant("g", {}), conn("orders", "ssh"), min(5), "Invalid", "ConnectionTypeMismatch", undefined],
		["bad spec", grant("g", { duration: "forever" }), orders, min(5), "Invalid", "InvalidSpec", undefined],
		["deleted", grant("g", {}, { deletionTimestamp: min(1).toISOString() }), orders, min(5), "Revoked", "RemovedFromSource", undefined],
	];
	for (const [name, g, c, now, phase, reason, requeue] of cases) {
		const d = decideGrant(g, c, now);
		assert.equal(d.phase, phase, name);
		assert.equal(d.reason, reason, name);
		assert.equal(d.requeueAt?.toISOString(), requeue?.toISOString(), `${name} requeue`);
	}
	const d = decideGrant(grant("g", {}), orders, min(1));
	assert.equal(d.origin.pullRequest, 42);
	assert.match(d.pgRole!.role, /^db_[0-9a-f]{24}$/);
	assert.deepEqual(d.token, { secretName: "drawbridge-token-g", subject: "alice", groups: [] });
	const sa = decideGrant(grant("g", { subjects: [{ kind: "ServiceAccount", namespace: "ci", name: "deployer" }] }), conn("orders", "postgres"), min(1));
	assert.equal(sa.token, undefined, "service accounts present their own tokens");
	assert.equal(sa.pgRole, undefined, "static connection: no dynamic role");
	// In-cluster resource without git annotations: duration counts from creation.
	const argo = decideGrant(grant("g", {}, { annotations: {}, creationTimestamp: min(10).toISOString() }), orders, min(35));
	assert.equal(argo.phase, "Active");
	assert.equal(argo.window!.expiresAt.toISOString(), min(40).toISOString());
});

test("a committer time later than the operator's first sight of the commit counts from first sight", () => {
	const orders = conn("orders", "postgres", true);
	// Committed "a month ahead"; first decided at min(5): the 30 minutes run from min(5).
	const future = grant("g", {}, { annotations: { [ANNOTATIONS.committedAt]: min(43_200).toISOString(), [ANNOTATIONS.commit]: "abc" } });
	const first = decideGrant(future, orders, min(5));
	assert.equal(first.phase, "Active");
	assert.equal(first.firstSeenAt, min(5).toISOString());
	assert.equal(first.window!.expiresAt.toISOString(), min(35).toISOString());
	// Later decisions read firstSeenAt back from status while it names the same commit: no sliding.
	const withStatus = { ...future, status: { origin: { commit: "abc", firstSeenAt: min(5).toISOString() } } } as AccessGrant;
	const later = decideGrant(withStatus, orders, min(36));
	assert.equal(later.phase, "Expired");
	assert.equal(later.firstSeenAt, min(5).toISOString());
	// A new approving commit is seen anew.
	const reapproved = { ...withStatus, metadata: { ...withStatus.metadata, annotations: { ...withStatus.metadata.annotations, [ANNOTATIONS.commit]: "def" } } } as AccessGrant;
	assert.equal(decideGrant(reapproved, orders, min(40)).window!.notBefore.toISOString(), min(40).toISOString());
	// An earlier committer time is taken as written (it only shortens the window).
	assert.equal(decideGrant(grant("g", {}), orders, min(20)).window!.notBefore.toISOString(), T0.toISOString());
	assert.equal(approvalTime({ committedAt: min(10).toISOString() }, min(3).toISOString()).toISOString(), min(3).toISOString());
	assert.equal(approvalTime({ committedAt: min(10).toISOString() }, undefined).toISOString(), min(10).toISOString());
	// No commit (created in the cluster): creationTimestamp, set by the API server.
	assert.equal(firstSeenOf(grant("g", {}, { annotations: {} }), min(1)), undefined);
});

test("conditions keep lastTransitionTime while status is unchanged", () => {
	const a = setCondition(undefined, { type: "Ready", status: "True", reason: "Granted", message: "x" }, min(0));
	const b = setCondition(a, { type: "Ready", status: "True", reason: "Granted", message: "y" }, min(5));
	assert.equal(b[0]!.lastTransitionTime, min(0).toISOString());
	const c = setCondition(b, { type: "Ready", status: "False", reason: "GrantEnded", message: "z" }, min(9));
	assert.equal(c[0]!.lastTransitionTime, min(9).toISOString());
	const d = decideGrant(grant("g", {}), conn("orders", "postgres", true), min(1));
	const conds = grantConditions(undefined, d, 3, min(1));
	assert.deepEqual(conds.map((x) => [x.type, x.status, x.observedGeneration]), [["Ready", "True", 3], ["CredentialsIssued", "True", 3]]);
	assert.equal(grantConditions(undefined, d, 3, min(1), "db down").find((x) => x.type === "Ready")!.status, "False");
});

test("WorkQueue: dedup, dirty re-run, no concurrent runs per key, backoff, earliest schedule wins", async () => {
	const q = new WorkQueue({ concurrency: 4, retryBaseMs: 10, retryMaxMs: 40 });
	const runs: string[] = [];
	let inFlight = 0;
	let maxInFlightA = 0;
	let failuresLeft = 2;
	let release: (() => void) | undefined;
	const gate = new Promise<void>((r) => (release = r));
	q.add("a");
	q.add("a");
	q.add("b");
	q.start(async (key) => {
		runs.push(key);
		if (key === "a") {
			inFlight++;
			maxInFlightA = Math.max(maxInFlightA, inFlight);
			if (runs.filter((k) => k === "a").length === 1) await gate;
			inFlight--;
		}
		if (key === "c" && failuresLeft-- > 0) throw new Error("transient");
		return undefined;
	});
	q.add("a"); // while "a" is processing: marked dirty, runs once more afterwards
	q.add("a");
	release!();
	await q.idle();
	assert.deepEqual(runs.filter((k) => k === "a").length, 2);
	assert.equal(maxInFlightA, 1);
	assert.equal(runs.filter((k) => k === "b").length, 1);
	q.add("c");
	await new Promise((r) => setTimeout(r, 200));
	assert.equal(runs.filter((k) => k === "c").length, 3, "two failures retried, then success");
	q.addAt("d", new Date(Date.now() + 10_000));
	q.addAt("d", new Date(Date.now() + 50));
	q.addAt("d", new Date(Date.now() + 20_000));
	assert.ok(q.scheduledAt("d")!.getTime() < Date.now() + 1000);
	await new Promise((r) => setTimeout(r, 120));
	assert.equal(runs.filter((k) => k === "d").length, 1);
	q.stop();
});

test("compileBundle: deterministic, hashed, only usable grants, credentials wired", () => {
	const orders = conn("orders", "postgres", true);
	const box = conn("box", "ssh");
	const mp: MaskingPolicy = {
		apiVersion: "access.drawbridge.dev/v1alpha1",
		kind: "MaskingPolicy",
		metadata: { name: "pii", namespace: "team" },
		spec: { selector: { matchLabels: { env: "prod" } }, rules: [{ name: "email", columns: ["customers.email"], strategy: { type: "partial", keepLast: 4 } }] },
	};
	const gp: GuardrailPolicy = {
		apiVersion: "access.drawbridge.dev/v1alpha1",
		kind: "GuardrailPolicy",
		metadata: { name: "no-drop", namespace: "team" },
		spec: {
			selector: {},
			rules: [{ name: "hold-delete", action: "requireApproval", sql: { statementKinds: ["DELETE"] }, approval: { timeout: "15m", reuseWindow: "5m" } }],
		},
	};
	const grants = [
		grant("active", {}),
		grant("pending", { notBefore: min(60).toISOString(), duration: "1h" }),
		grant("expired", { duration: "1m" }),
		grant("invalid", { connection: "missing" }),
		grant("revoked", {}, { deletionTimestamp: min(1).toISOString() }),
		grant("ssh", { connection: "box", postgres: undefined, ssh: { logins: ["deploy"], allowShell: true } }),
	];
	const inputs = {
		connections: [orders, box],
		grants,
		maskingPolicies: [mp],
		guardrailPolicies: [gp],
		issuers: [{ name: "drawbridge", kind: "drawbridge" as const, issuer: "https://op", audiences: ["gw"], jwks: { keys: [] }, algorithms: ["EdDSA"] }],
		connectionCredentials: { "team/orders": { type: "password" as const, username: "admin", password: "pw" } },
		grantCredentials: {
			"team/active": { type: "password" as const, username: "db_1", password: "p1" },
			"team/expired": { type: "password" as const, username: "db_2", password: "p2" },
		},
		maskingKey: Buffer.alloc(32, 1).toString("base64"),
		now: min(5),
	};
	const b = compileBundle(inputs, { version: 7, generatedAt: min(5) });
	assert.equal(b.hash, bundleHash(b));
	assert.equal(b.version, 7);
	assert.deepEqual(b.grants.map((g) => g.key), ["team/active", "team/expired", "team/pending", "team/ssh"]);
	const active = b.grants.find((g) => g.key === "team/active")!;
	assert.equal(active.postgres!.credentialRef, "grant:team/active");
	assert.equal(active.origin.pullRequest, 42);
	assert.equal(active.expiresAt, min(30).toISOString());
	assert.equal(b.grants.find((g) => g.key === "team/expired")!.postgres!.credentialRef, undefined, "expired grants carry no credential");
	assert.deepEqual(Object.keys(b.credentials).sort(), ["conn:team/orders", "grant:team/active"]);
	assert.equal(b.connections.find((c) => c.name === "orders")!.postgres!.sslmode, "verify-full");
	assert.deepEqual(b.guardrailPolicies[0]!.rules[0]!.approval, { timeoutSeconds: 900, reuseWindowSeconds: 300 });
	assert.deepEqual(b.grants.find((g) => g.key === "team/ssh")!.ssh, { logins: ["deploy"], allowShell: true, allowSftp: false, allowPortForwarding: false, allowAgentForwarding: false });
	// Same inputs in another order → same content hash.
	const shuffled = { ...inputs, grants: [...grants].reverse(), connections: [box, orders] };
	assert.equal(contentHash(compileBundleContent(shuffled)), contentHash(compileBundleContent(inputs)));
	assert.notEqual(contentHash(compileBundleContent({ ...inputs, now: min(31) })), contentHash(compileBundleContent(inputs)), "expiry changes the bundle");
	assert.equal(nextBundleChange(inputs, min(5))!.toISOString(), min(30).toISOString());
});

test("Connection and policy status (table)", () => {
	const orders = conn("orders", "postgres", true);
	const active = { ...grant("a", {}), status: { phase: "Active" as const } };
	const expired = { ...grant("b", {}), status: { phase: "Expired" as const } };
	const cases: [ConnectionSecretsCheck, string, string][] = [
		[{ credential: "ok" }, "True", "Ready"],
		[{ credential: "missing" }, "False", "SecretNotFound"],
		[{ credential: "incomplete" }, "False", "CredentialIncomplete"],
		[{ credential: "ok", ca: "missing" }, "False", "CaNotFound"],
		[{}, "True", "Ready"],
	];
	for (const [check, status, reason] of cases) {
		const s = connectionStatus(orders, [active, expired], check, undefined, min(1));
		assert.equal(s.activeGrants, 1);
		assert.deepEqual([s.conditions![0]!.status, s.conditions![0]!.reason], [status, reason], JSON.stringify(check));
	}
	const policy = { metadata: { namespace: "team" }, spec: { selector: { matchLabels: { env: "prod" } } } };
	assert.equal(policyStatus(policy, [orders, conn("box", "ssh")], undefined, min(1)).selectedConnections, 2);
	assert.equal(policyStatus({ ...policy, spec: { selector: { matchLabels: { env: "dev" } } } }, [orders], undefined, min(1)).conditions![0]!.reason, "NoConnections");
	assert.equal(policyStatus({ ...policy, metadata: { namespace: "other" } }, [orders], undefined, min(1)).selectedConnections, 0);
	assert.equal(policyStatus({ ...policy, spec: { selector: {} } }, [orders], undefined, min(1)).selectedConnections, 1);
});
