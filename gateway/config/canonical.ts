import { createHash } from "node:crypto";
import type { ConfigBundle } from "./bundle.ts";

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
