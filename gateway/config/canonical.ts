import { createHash } from "node:crypto";
import type { ConfigBundle, SubjectMatcher } from "./bundle.ts";

/** JSON with object keys sorted at every level: the same content always gives the same bytes. */
export function canonicalJson(value: unknown): string {
	return JSON.stringify(sortKeys(value));
}

function sortKeys(value: unknown): unknown {
	if (Array.isArray(value)) return value.map(sortKeys);
	if (value !== null && typeof value === "object") {
		const out: Record<string, unknown> = {};
		for (const key of Object.keys(value).sort()) {
			const v = (value as Record<string, unknown>)[key];
			if (v !== undefined) out[key] = sortKeys(v);
		}
		return out;
	}
	return value;
}

/** SHA-256 (hex) over the canonical JSON of every bundle field except `hash`. */
export function bundleHash(bundle: Omit<ConfigBundle, "hash"> & { hash?: string }): string {
	const { hash: _ignored, ...rest } = bundle;
	return createHash("sha256").update(canonicalJson(rest)).digest("hex");
}

/** Fill in `hash` for a bundle under construction. */
export function sealBundle(bundle: Omit<ConfigBundle, "hash">): ConfigBundle {
	return { ...bundle, hash: bundleHash(bundle) };
}

const subjectsDigests = new WeakMap<readonly SubjectMatcher[], string>();

/**
 * Digest of a grant's subjects, order ignored: `sha256:` and base64url. The operator writes it into
 * every credential it mints for the grant (the `grantSubjects` claim of a token, `subjects=` in an SSH
 * certificate's key id) and the gateway compares it with the grant's subjects in the bundle. A grant
 * credential is shared by whoever the grant names (one token Secret per grant), so a change of
 * subjects must end the credentials minted before it: a removed subject kept a copy.
 */
export function grantSubjectsDigest(subjects: readonly SubjectMatcher[]): string {
	const cached = subjectsDigests.get(subjects);
	if (cached !== undefined) return cached;
	const entries = subjects.map((s) => canonicalJson(s)).sort();
	const digest = `sha256:${createHash("sha256").update(JSON.stringify(entries)).digest("base64url")}`;
	subjectsDigests.set(subjects, digest);
	return digest;
}
