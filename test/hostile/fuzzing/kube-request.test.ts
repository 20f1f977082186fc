/**
 * Fuzzing the Kubernetes request parser (gateway/kube/request.ts) with fast-check. The property
 * that matters for security: for every request target the gateway accepts (unsafePathReason says
 * nothing), the path the parser classifies is byte for byte the path the apiserver will resolve —
 * no normalisation (dot segments, percent-decoding, backslashes) can make the two disagree — and the
 * parser never throws on accepted input.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import fc from "fast-check";
import { parseKubeRequest, unsafePathReason } from "../../../gateway/kube/request.ts";

// Characters an HTTP request target can carry at all (RFC 3986 pchar plus "%", "\\", "?", "#"):
// Node's HTTP parser refuses spaces and control characters in the request line before we see it.
const PCHAR = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=:@%\\?#/";
const segment = fc.oneof(
	fc.constantFrom("api", "apis", "v1", "apps", "namespaces", "payments", "billing", "pods", "configmaps", "secrets", "log", "exec", "status", "watch", "proxy", "finalize", "..", ".", "", "%2F", "%2e%2e", "%2E", "%00", "%ZZ", "%", "\\", ";", "?watch=1", "#frag", "//"),
	fc.string({ unit: fc.constantFrom(...PCHAR), maxLength: 12 }),
);
const target = fc.array(segment, { maxLength: 9 }).map((segs) => `/${segs.join("/")}`);
const method = fc.constantFrom("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "CONNECT", "get", "PROPFIND", "");

test("accepted targets: parsed path equals the path sent upstream, and parsing never throws", () => {
	fc.assert(
		fc.property(method, target, (m, t) => {
			const reason = unsafePathReason(t);
			if (reason !== undefined) {
				assert.equal(typeof reason, "string");
				return;
			}
			const pathOnly = t.split("?")[0]!;
			const r = parseKubeRequest(m, t);
			assert.equal(r.path, new URL(pathOnly, "http://x").pathname);
			// What the apiserver resolves (no normalisation) is what the gateway classified.
			assert.equal(r.path, pathOnly.split("#")[0]);
			if (r.namespace !== undefined) assert.ok(!r.namespace.includes("/"), r.namespace);
			assert.equal(typeof r.verb, "string");
		}),
		{ numRuns: 5000 },
	);
});

test("arbitrary strings: unsafePathReason never throws, and parse of any accepted one never throws", () => {
	fc.assert(
		fc.property(method, fc.string({ maxLength: 200 }), (m, s) => {
			const reason = unsafePathReason(s);
			if (reason === undefined) parseKubeRequest(m, s);
		}),
		{ numRuns: 5000 },
	);
});
