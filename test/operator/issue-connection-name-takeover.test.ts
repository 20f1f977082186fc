/**
 * Red-team regression (GitOps, round 9): another team took over a Connection's name.
 *
 * Agents name a Connection by `metadata.name` alone (the PostgreSQL database name, the SSH target, the
 * kube path), so the bundle holds one Connection per name, and the operator chose which by
 * `namespace/name` order. Team `shop` has run `orders-prod` for months; team `aaa`'s own grants
 * repository (its GitSource may write only its own namespace) merges a Connection also named
 * `orders-prod`, pointing at a host of its own, and a grant on it naming shop's engineer. `aaa/...`
 * sorts first, so the next bundle dropped shop's Connection and every grant on it (shop's sessions
 * ended as revoked) and sent shop's engineer, connecting to `orders-prod`, to aaa's server. Now the
 * Connection that has the name longest (oldest `creationTimestamp`) keeps it; the newcomer is left out
 * with its grants. Operator compile step (pure) and the gateway's real BundleStore and grant lookup.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import type { AccessGrant, Connection } from "../../crds/index.ts";
import { BundleStore } from "../../gateway/config/store.ts";
import { findGrants } from "../../gateway/identity/grants.ts";
import { compileBundle, withoutDuplicateNames } from "../../operator/config/compile.ts";
import { connectionStatus } from "../../operator/reconcile/desired/status.ts";
import { ANNOTATIONS } from "../../operator/reconcile/labels.ts";

const T0 = new Date("2026-03-01T10:00:00Z");
const days = (n: number) => new Date(T0.getTime() + n * 86_400_000);

function connection(namespace: string, host: string, created: Date): Connection {
	return {
		apiVersion: "access.drawbridge.dev/v1alpha1",
		kind: "Connection",
		metadata: { name: "orders-prod", namespace, creationTimestamp: created.toISOString() },
		spec: { type: "postgres", host, port: 5432, postgres: { database: "orders", credentialMode: "static" }, credentialSecretRef: { name: "db-admin" } },
	};
}

function grant(namespace: string, name: string, user: string): AccessGrant {
	return {
		apiVersion: "access.drawbridge.dev/v1alpha1",
		kind: "AccessGrant",
		metadata: {
			name,
			namespace,
			creationTimestamp: days(90).toISOString(),
			annotations: { [ANNOTATIONS.committedAt]: days(90).toISOString(), [ANNOTATIONS.commit]: "abc" },
		},
		spec: { connection: "orders-prod", subjects: [{ kind: "User", name: user }], postgres: { access: "read-write" }, duration: "7d" },
	};
}

test("issue connection-name-takeover: a Connection of the same name merged later in another namespace does not take the name", () => {
	const shop = connection("shop", "orders.shop.internal", T0);
	const squatter = connection("aaa", "evil.example", days(90));
	const now = new Date(days(90).getTime() + 60_000);
	const b = compileBundle(
		{
			connections: [shop, squatter],
			grants: [grant("shop", "alice-orders", "alice"), grant("aaa", "alice-trap", "alice")],
			maskingPolicies: [],
			guardrailPolicies: [],
			issuers: [],
			connectionCredentials: {
				"shop/orders-prod": { type: "password", username: "shop", password: "s" },
				"aaa/orders-prod": { type: "password", username: "aaa", password: "a" },
			},
			grantCredentials: {},
			maskingKey: Buffer.alloc(32, 1).toString("base64"),
			now,
		},
		{ version: 2, generatedAt: now },
	);
	// Before: aaa/orders-prod (evil.example) and aaa/alice-trap; shop's grant gone.
	assert.deepEqual(
		b.connections.map((c) => [c.key, c.host]),
		[["shop/orders-prod", "orders.shop.internal"]],
	);
	assert.deepEqual(b.grants.map((g) => g.key), ["shop/alice-orders"]);
	assert.deepEqual(Object.keys(b.credentials), ["conn:shop/orders-prod"]);

	// What the gateway does with it: alice connecting to orders-prod gets shop's grant and host.
	const store = new BundleStore();
	store.update(b);
	const loaded = store.current!;
	const alice = { issuer: "https://idp", issuerKind: "oidc" as const, subject: "alice", username: "alice", groups: [], tokenExpiresAt: days(91), claims: {} };
	const lookup = findGrants(alice, "orders-prod", loaded.grantsFor("orders-prod"), now);
	assert.deepEqual(lookup.active.map((g) => g.key), ["shop/alice-orders"]);
	assert.equal(loaded.connection("orders-prod")?.host, "orders.shop.internal");
});

test("issue connection-name-takeover: the name goes to the oldest Connection, whatever the namespaces; ties and missing times by namespace/name", () => {
	const a = connection("aaa", "a", days(5));
	const z = connection("zzz", "z", days(1));
	assert.deepEqual(withoutDuplicateNames([a, z]).kept.map((c) => c.metadata.namespace), ["zzz"]);
	assert.deepEqual(withoutDuplicateNames([a, z]).dropped.map((c) => c.metadata.namespace), ["aaa"]);
	const same = connection("zzz", "z", days(5));
	assert.deepEqual(withoutDuplicateNames([same, a]).kept.map((c) => c.metadata.namespace), ["aaa"]);
	const untimed = { ...connection("aaa", "a", T0), metadata: { name: "orders-prod", namespace: "aaa" } };
	assert.deepEqual(withoutDuplicateNames([untimed, z]).kept.map((c) => c.metadata.namespace), ["zzz"], "a Connection without a creation time never wins over one with it");
	assert.deepEqual(withoutDuplicateNames([{ ...untimed }, { ...untimed, metadata: { name: "orders-prod", namespace: "bbb" } }]).kept.map((c) => c.metadata.namespace), ["aaa"]);
});

test("issue connection-name-takeover: the newcomer's status says why it is left out", () => {
	const squatter = connection("aaa", "evil.example", days(90));
	const s = connectionStatus(squatter, [], { credential: "ok" }, undefined, days(90), "shop/orders-prod");
	const ready = s.conditions!.find((c) => c.type === "Ready")!;
	assert.equal(ready.status, "False");
	assert.equal(ready.reason, "NameInUse");
	assert.match(ready.message, /used by the older Connection shop\/orders-prod/);
});
