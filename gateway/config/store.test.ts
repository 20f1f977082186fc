import assert from "node:assert/strict";
import { test } from "node:test";
import { BUNDLE_API_VERSION, type BundleGrant, type ConfigBundle } from "./bundle.ts";
import { sealBundle } from "./canonical.ts";
import { BundleError, BundleStore } from "./store.ts";

const key = Buffer.alloc(32, 7).toString("base64");

function grant(expiresInMs: number, key_ = "team/g"): BundleGrant {
	return {
		key: key_, name: "g", namespace: "team", connection: "orders-prod",
		subjects: [{ kind: "User", name: "alice" }],
		notBefore: new Date(Date.now() - 1000).toISOString(),
		expiresAt: new Date(Date.now() + expiresInMs).toISOString(),
		approvers: { subjects: [], minApprovals: 1 }, origin: { commit: "abc", pullRequest: 7 },
	};
}

function bundle(version: number, grants: BundleGrant[]): ConfigBundle {
	return sealBundle({
		apiVersion: BUNDLE_API_VERSION, version, generatedAt: new Date().toISOString(),
		issuers: [{ name: "op", kind: "drawbridge", issuer: "https://op", audiences: ["drawbridge"], jwks: { keys: [] }, algorithms: ["EdDSA"] }],
		connections: [{ key: "team/orders-prod", name: "orders-prod", namespace: "team", type: "postgres", labels: { env: "prod" }, host: "127.0.0.1", port: 5432 }],
		grants,
		maskingPolicies: [
			{ key: "team/m", selector: { matchLabels: { env: "prod" } }, rules: [{ name: "email", columns: ["customers.email"], strategy: { type: "redact" } }] },
			{ key: "team/n", selector: { matchLabels: { env: "dev" } }, rules: [{ name: "dev-only", columns: ["*"], strategy: { type: "null" } }] },
		],
		guardrailPolicies: [], credentials: {}, maskingKey: key,
	});
}

test("a tampered or malformed bundle is refused and the current one stays", () => {
	const store = new BundleStore();
	assert.ok(store.update(bundle(1, [grant(60_000)])));
	const tampered = { ...bundle(2, [grant(60_000)]), grants: [] };
	assert.throws(() => store.update(tampered), (e: unknown) => e instanceof BundleError && e.code === "hash-mismatch");
	assert.throws(() => store.update({ apiVersion: "x" }), (e: unknown) => e instanceof BundleError && e.code === "invalid");
	assert.equal(store.current.version, 1);
	assert.equal(store.update(bundle(1, [grant(60_000)])), false);
});

test("policies are selected by connection labels", () => {
	const store = new BundleStore();
	store.update(bundle(1, []));
	assert.deepEqual(store.current.policiesFor("orders-prod").maskRules.map((r) => r.name), ["email"]);
	assert.ok(Object.isFrozen(store.current.bundle.grants));
});

test("watchGrant fires expired at the grant's end and revoked when it leaves the bundle", async () => {
	const store = new BundleStore();
	store.update(bundle(1, [grant(150, "team/a"), grant(60_000, "team/b")]));
	const ends: string[] = [];
	store.watchGrant("team/a", (reason, g) => ends.push(`${g.key}:${reason}`));
	store.watchGrant("team/b", (reason, g) => ends.push(`${g.key}:${reason}`));
	await new Promise((r) => setTimeout(r, 300));
	assert.deepEqual(ends, ["team/a:expired"]);
	store.update(bundle(2, [grant(150, "team/a")]));
	assert.deepEqual(ends, ["team/a:expired", "team/b:revoked"]);
});

test("a later bundle that extends a grant reschedules its end", async () => {
	const store = new BundleStore();
	store.update(bundle(1, [grant(100, "team/a")]));
	const ends: string[] = [];
	store.watchGrant("team/a", (reason) => ends.push(reason));
	store.update(bundle(2, [grant(60_000, "team/a")]));
	await new Promise((r) => setTimeout(r, 250));
	assert.deepEqual(ends, []);
});

test("a bundle older than the high-water mark is refused after a restart, with code rollback and a refused event", () => {
	const before = new BundleStore();
	assert.ok(before.update(bundle(6, [])));
	const mark = before.highWater!;
	assert.equal(mark.version, 6);
	// A new process with the stored mark: the older bundle (its grant since revoked) is refused.
	const after = new BundleStore({ highWater: mark, highWaterLocation: "file:/state.json" });
	const refused: number[] = [];
	after.on("refused", (_err, b) => refused.push(b.version));
	assert.throws(
		() => after.update(bundle(5, [grant(60_000)])),
		(e: unknown) => e instanceof BundleError && e.code === "rollback" && /older than version 6 .*file:\/state\.json/.test(e.message),
	);
	assert.deepEqual(refused, [5]);
	assert.equal(after.loaded, false);
	// Same version, other content: a second bundle numbered 6 is not the one accepted.
	assert.throws(() => after.update(bundle(6, [grant(60_000)])), (e: unknown) => e instanceof BundleError && e.code === "rollback");
	// The very bundle of the mark, and anything newer, is taken.
	const same = new BundleStore({ highWater: { ...mark, hash: bundle(7, []).hash, version: 7 } });
	assert.throws(() => same.update(bundle(6, [])), (e: unknown) => e instanceof BundleError && e.code === "rollback");
	assert.ok(after.update(bundle(7, [])));
	assert.equal(after.highWater?.version, 7);
	// While running, an older version is refused too (the current one seen again is just ignored).
	assert.throws(() => after.update(bundle(6, [])), (e: unknown) => e instanceof BundleError && e.code === "rollback");
	assert.equal(after.current.version, 7);
});

test("the bundle of the mark itself is accepted at start (a restart with an unchanged Secret)", () => {
	const b = bundle(9, []);
	const store = new BundleStore({ highWater: { version: 9, hash: b.hash, generatedAt: b.generatedAt, acceptedAt: "" } });
	assert.ok(store.update(b));
	assert.equal(store.current.version, 9);
});
