/**
 * Red-team regression (GitOps, round 9): two grants shared one token Secret.
 *
 * The operator writes a grant's token into the Secret `drawbridge-token-<grant name>` and cut that name
 * at 253 characters (a Secret name's limit). AccessGrant names may be 253 characters long, so two grants
 * of one namespace whose names share their first 236 characters (a long `oncall-...-alice` and a
 * `...-mallory` merged next to it) got the same Secret: each reconcile found the other's token there and
 * wrote its own over it. Whoever may read "their" Secret by name (RBAC `resourceNames`) read the other
 * grant's token half of the time. Long names now end in a digest of the whole grant name, and the
 * operator refuses to overwrite a token Secret labelled for another grant.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { tokenSecretName } from "../../operator/reconcile/desired/accessgrant.ts";

const DNS1123_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

test("issue token-secret-name-collision: grants whose long names share a prefix get different, valid Secret names", () => {
	const prefix = `oncall-${"x".repeat(229)}`; // 236 characters: all a truncated name kept
	const alice = `${prefix}-alice`;
	const mallory = `${prefix}-mallory`;
	assert.ok(alice.length <= 253 && mallory.length <= 253, "valid AccessGrant names");
	const a = tokenSecretName(alice);
	const m = tokenSecretName(mallory);
	assert.notEqual(a, m, "two grants, one Secret");
	for (const n of [a, m]) {
		assert.ok(n.length <= 253, `${n.length} characters`);
		assert.match(n, DNS1123_SUBDOMAIN);
		assert.ok(n.startsWith("drawbridge-token-oncall-"));
	}
	assert.equal(tokenSecretName(alice), a, "deterministic");
});

test("issue token-secret-name-collision: a cut that would end a label with `.` or `-` still gives a valid name; short names are unchanged", () => {
	for (const tail of [".", "-", ".a", "-a"]) {
		const name = `${"a".repeat(235)}${tail}${"b".repeat(253 - 235 - tail.length)}`;
		const n = tokenSecretName(name);
		assert.ok(n.length <= 253, `${n.length}`);
		assert.match(n, DNS1123_SUBDOMAIN, n.slice(-40));
	}
	assert.equal(tokenSecretName("alice-orders"), "drawbridge-token-alice-orders");
	assert.equal(tokenSecretName("a".repeat(236)), `drawbridge-token-${"a".repeat(236)}`);
});
