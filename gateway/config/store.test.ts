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
