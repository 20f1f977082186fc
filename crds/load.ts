/**
 * Multi-document YAML loading with positions.
 *
 * `loadManifests(text, file)` parses every document, keeps a LineCounter so any field path can be
 * mapped back to `line:col`, and reports (instead of throwing) tabs used for indentation, duplicate
 * keys, syntax errors and non-mapping documents, each at its position. A broken document never
 * hides the valid ones next to it: they are still returned.
 *
 * Scalars follow the YAML 1.2 core schema plus the YAML 1.1 booleans and `_`-separated integers that
 * kubectl's decoder (sigs.k8s.io/yaml) also accepts (`yes`/`no`/`on`/`off`/`y`/`n`, `1_000`), so
 * `allowShell: yes` means the same here as under `kubectl apply` (test/api/kube.test.ts checks a
 * table of such scalars against kubectl). Timestamps stay strings, as the Kubernetes API expects.
 */
import { type Document, type ScalarTag, isMap, isPair, isScalar, isSeq, LineCounter, type Node, parseAllDocuments } from "yaml";
import type { PathSegment } from "./validate.ts";

export interface Position {
	/** 1-based. */
	line: number;
	/** 1-based. */
	col: number;
}

export type LoadErrorCode = "TAB_INDENT" | "DUPLICATE_KEY" | "SYNTAX" | "NOT_A_MAPPING" | "ALIAS_LIMIT";

export interface LoadError extends Position {
	file: string;
	code: LoadErrorCode;
	message: string;
	/** 0-based index of the document in the file. */
	document: number;
}

export interface Manifest extends Position {
	file: string;
	/** 0-based index of the document in the file. */
	document: number;
	object: Record<string, unknown>;
	/** Position of the node at `path` (or of its nearest existing ancestor). */
	positionOf(path: readonly PathSegment[], at?: "key" | "value"): Position;
}

export interface LoadResult {
	manifests: Manifest[];
	errors: LoadError[];
}

const MAX_ALIASES = 100;

const YAML11_BOOL: ScalarTag = {
	identify: (v) => typeof v === "boolean",
	default: true,
	tag: "tag:yaml.org,2002:bool",
	test: /^(?:y|Y|yes|Yes|YES|n|N|no|No|NO|on|On|ON|off|Off|OFF)$/,
	resolve: (str) => /^(?:y|Y|yes|Yes|YES|on|On|ON)$/.test(str),
};

/** YAML 1.1 integers with `_` separators (`1_000`), which kubectl's decoder also reads as numbers. */
const YAML11_INT_UNDERSCORE: ScalarTag = {
	identify: () => false,
	default: true,
	tag: "tag:yaml.org,2002:int",
	test: /^[-+]?[0-9][0-9_]*_[0-9_]*$/,
	resolve: (str) => Number.parseInt(str.replace(/_/g, ""), 10),
};

export function loadManifests(text: string, file: string): LoadResult {
	const manifests: Manifest[] = [];
	const errors: LoadError[] = [];
	const lineCounter = new LineCounter();
	const docs = parseAllDocuments(text, {
		lineCounter,
		schema: "core",
		uniqueKeys: true,
		prettyErrors: false,
		customTags: (tags) => [...tags, YAML11_BOOL, YAML11_INT_UNDERSCORE],
	});
	const list = Array.isArray(docs) ? docs : [docs];
	const pos = (offset: number): Position => {
		const p = lineCounter.linePos(offset);
		return { line: p.line, col: p.col };
	};
	const tabLines = findTabIndents(text);
	list.forEach((doc, index) => {
		const [start, , end] = doc.range;
		const docErrors: LoadError[] = [];
		for (const t of tabLines) {
			if (t.offset >= start && t.offset < Math.max(end, start + 1)) {
				docErrors.push({ file, document: index, code: "TAB_INDENT", message: "tab character in indentation; YAML indentation must use spaces", ...pos(t.offset) });
			}
		}
		for (const e of doc.errors) {
			if (e.code === "TAB_AS_INDENT" && docErrors.some((d) => d.code === "TAB_INDENT")) continue;
			const code: LoadErrorCode = e.code === "DUPLICATE_KEY" ? "DUPLICATE_KEY" : e.code === "TAB_AS_INDENT" ? "TAB_INDENT" : "SYNTAX";
			const message =
				code === "DUPLICATE_KEY"
					? `duplicate key ${JSON.stringify(keyAt(text, e.pos[0]))}`
					: code === "TAB_INDENT"
						? "tab character in indentation; YAML indentation must use spaces"
						: e.message.split("\n")[0]!;
			docErrors.push({ file, document: index, code, message, ...pos(e.pos[0]) });
		}
		if (docErrors.length > 0) {
			docErrors.sort((a, b) => a.line - b.line || a.col - b.col);
			errors.push(...docErrors);
			return;
		}
		if (doc.contents === null || (isScalar(doc.contents) && doc.contents.value === null)) return; // empty document
		if (!isMap(doc.contents)) {
			errors.push({ file, document: index, code: "NOT_A_MAPPING", message: "a manifest must be a mapping (apiVersion, kind, metadata, spec)", ...pos(doc.contents.range?.[0] ?? start) });
			return;
		}
		let object: Record<string, unknown>;
		try {
			object = doc.toJS({ maxAliasCount: MAX_ALIASES }) as Record<string, unknown>;
		} catch (e) {
			errors.push({ file, document: index, code: "ALIAS_LIMIT", message: (e as Error).message, ...pos(doc.contents.range[0]) });
			return;
		}
		const root = doc.contents.range[0];
		manifests.push({
			file,
			document: index,
			object,
			...pos(root),
			positionOf: (path, at = "value") => pos(offsetOf(doc, path, at) ?? root),
		});
	});
	return { manifests, errors };
}

/** The mapping key starting at `offset` (for messages). */
function keyAt(text: string, offset: number): string {
	const m = /^("(?:[^"\\\n]|\\.)*"|'[^'\n]*'|[^:\n]*?)\s*:/.exec(text.slice(offset, offset + 300));
	const key = m?.[1] ?? text.slice(offset, offset + 1);
	return key.length >= 2 && (key[0] === '"' || key[0] === "'") ? key.slice(1, -1) : key;
}

/** Offsets of tabs in the leading whitespace of lines (outside block scalars we cannot tell; YAML forbids them there anyway). */
function findTabIndents(text: string): { offset: number }[] {
	const out: { offset: number }[] = [];
	let lineStart = 0;
	while (lineStart <= text.length) {
		let i = lineStart;
		while (i < text.length && (text[i] === " " || text[i] === "\t")) {
			if (text[i] === "\t") {
				out.push({ offset: i });
				break;
			}
			i++;
		}
		const nl = text.indexOf("\n", lineStart);
		if (nl < 0) break;
		lineStart = nl + 1;
	}
	return out;
}

/**
 * Offset of the node at `path` (its value, or its key with at = "key"). For a missing field, the
 * offset of the nearest existing ancestor's key (or list item), so "Required value" errors point at
 * the parent field.
 */
function offsetOf(doc: Document, path: readonly PathSegment[], at: "key" | "value"): number | undefined {
	let node: unknown = doc.contents;
	let anchor: number | undefined = (node as Node | null)?.range?.[0];
	for (const [i, seg] of path.entries()) {
		const last = i === path.length - 1;
		if (isMap(node)) {
			const pair = node.items.find((p) => isPair(p) && isScalar(p.key) && String(p.key.value) === String(seg));
			if (!pair) return anchor;
			const keyStart = isScalar(pair.key) ? pair.key.range?.[0] : undefined;
			const value = pair.value as Node | null;
			// Scalars are reported at their value; mappings and lists at their key (`spec:`).
			if (last) return (at === "key" || isMap(value) || isSeq(value) ? keyStart : (value?.range?.[0] ?? keyStart)) ?? anchor;
			anchor = keyStart ?? anchor;
			node = value;
		} else if (isSeq(node) && typeof seg === "number") {
			const item = node.items[seg] as Node | undefined;
			if (!item) return anchor;
			anchor = item.range?.[0] ?? anchor;
			if (last) return anchor;
			node = item;
		} else {
			return anchor;
		}
	}
	return anchor;
}
