/**
 * The invalid-manifest corpus: test/api/invalid/*.yaml, one rejected object per file, with the field
 * the rejection must name in a `# field: <path>` header line. Used by the offline tests and by the
 * apiserver agreement test. Cases with a `# refused by: operator` line are what only a grants
 * repository refuses (the operator's loader and `drawbridge validate`); the apiserver accepts them.
 */
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

export const API_TEST_DIR = dirname(fileURLToPath(import.meta.url));
export const INVALID_DIR = join(API_TEST_DIR, "invalid");
export const REPO_ROOT = join(API_TEST_DIR, "..", "..");
export const EXAMPLES_DIR = join(REPO_ROOT, "examples");
export const CRDS_DIR = join(REPO_ROOT, "crds");

export interface CorpusCase {
	name: string;
	path: string;
	text: string;
	/** Field path both the apiserver and `drawbridge validate` must name. */
	field: string;
	description: string;
	/**
	 * False for what only a grants repository refuses (header `# refused by: operator`): the apiserver
	 * accepts the object, `drawbridge validate` and the operator's loader refuse it, by the same code
	 * (crds/gitops.ts).
	 */
	apiserver: boolean;
}

export function loadCorpus(): CorpusCase[] {
	return readdirSync(INVALID_DIR)
		.filter((f) => f.endsWith(".yaml"))
		.sort()
		.map((name) => {
			const path = join(INVALID_DIR, name);
			const text = readFileSync(path, "utf8");
			const field = /^# field: (\S+)$/m.exec(text)?.[1];
			if (!field) throw new Error(`${name}: no "# field: <path>" header`);
			const description = /^# (?!field:)(.*)$/m.exec(text)?.[1] ?? "";
			const apiserver = !/^# refused by: operator\b/m.test(text);
			return { name, path, text, field, description, apiserver };
		});
}

/** Every example manifest file (the ones `kubectl apply` should accept). */
export function exampleManifestFiles(): string[] {
	const out: string[] = [];
	const walk = (dir: string) => {
		for (const e of readdirSync(dir, { withFileTypes: true }).sort((a, b) => a.name.localeCompare(b.name))) {
			if (e.name.startsWith(".")) continue;
			const p = join(dir, e.name);
			if (e.isDirectory()) walk(p);
			else if (e.name.endsWith(".yaml")) out.push(p);
		}
	};
	walk(EXAMPLES_DIR);
	return out;
}
