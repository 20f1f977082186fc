/**
 * Red-team regression (GitOps, round 10): the operator refuses a resource carrying text a reviewer
 * cannot see, but its list was C0/C1 controls, a few bidi and zero-width characters and the BOM. A
 * soft hyphen (U+00AD), tag characters (U+E0000 block), the combining grapheme joiner, variation
 * selectors, the Arabic letter mark, Hangul fillers, U+2028 and the Mongolian vowel separator are
 * drawn as nothing by diff views too, and passed: a merged GuardrailPolicy blocking DELETE on
 * `accounts` + U+00AD blocked nothing (no table has that name), a grant read as one for `alice` named
 * someone else. Every format, control and default-ignorable character is refused now (tab and newline
 * excepted), and shown escaped in status and Events. The real loader over a repository snapshot.
 */
import assert from "node:assert/strict";
import { test } from "node:test";
import { printable } from "../../operator/gitsync/commits.ts";
import { loadSnapshot } from "../../operator/gitsync/load.ts";
import type { Snapshot } from "../../operator/gitsync/repo.ts";

const origin = { sha: "a".repeat(40), author: "a <a@x>", committer: "c <c@x>", committedAt: "2026-03-01T10:00:00.000Z", subject: "s" };

function snap(files: Record<string, string>): Snapshot {
	return {
		repository: "https://git.example/org/grants",
		branch: "main",
		commit: "a".repeat(40),
		files: Object.entries(files).map(([path, text]) => ({ path, content: new TextEncoder().encode(text), blobOid: "b", approvedBy: origin })),
	};
}

const CONNECTION = `apiVersion: access.drawbridge.dev/v1alpha1
kind: Connection
metadata: {name: orders, labels: {env: prod}}
spec: {type: postgres, host: db.internal, port: 5432, postgres: {database: app}, credentialSecretRef: {name: orders-admin}}
`;

const grant = (subject: string) => `apiVersion: access.drawbridge.dev/v1alpha1
kind: AccessGrant
metadata: {name: g}
spec:
  connection: orders
  subjects: [{kind: User, name: ${JSON.stringify(subject)}}]
  postgres: {access: read-write}
  duration: 1h
  justification: |
    ticket OPS-1
    two lines are fine
`;

const guardrail = (table: string) => `apiVersion: access.drawbridge.dev/v1alpha1
kind: GuardrailPolicy
metadata: {name: no-deletes}
spec:
  selector: {matchLabels: {env: prod}}
  rules:
    - name: block-account-deletes
      action: block
      sql: {statementKinds: [DELETE], tables: [${JSON.stringify(table)}]}
`;

/** Characters that render as nothing (or as a blank) and passed the loader before. */
const UNSEEN: [string, string][] = [
	["soft hyphen", "\u00ad"],
	["tag latin small a", "\u{e0061}"],
	["tag cancel", "\u{e007f}"],
	["combining grapheme joiner", "\u034f"],
	["variation selector 16", "\ufe0f"],
	["variation selector 17", "\u{e0100}"],
	["arabic letter mark", "\u061c"],
	["hangul filler", "\u3164"],
	["halfwidth hangul filler", "\uffa0"],
	["line separator", "\u2028"],
	["mongolian vowel separator", "\u180e"],
	["interlinear annotation anchor", "\ufff9"],
];

test("issue invisible-characters: every character a reviewer cannot see is refused in a resource", () => {
	for (const [what, ch] of UNSEEN) {
		const shown = `\\u{${ch.codePointAt(0)!.toString(16)}}`;
		const g = loadSnapshot(snap({ "c.yaml": CONNECTION, "g.yaml": grant(`alice${ch}`) }), "team");
		assert.deepEqual(g.resources.map((r) => r.kind), ["Connection"], `${what}: the grant for "alice${shown}" was loaded`);
		assert.equal(g.problems[0]?.message, `spec.subjects[0].name: contains control or invisible characters (${shown}) a reviewer cannot see; the resource is skipped`, what);
		const p = loadSnapshot(snap({ "c.yaml": CONNECTION, "p.yaml": guardrail(`public.accounts${ch}`) }), "team");
		assert.deepEqual(p.resources.map((r) => r.kind), ["Connection"], `${what}: the guardrail on "accounts${shown}" was loaded`);
		assert.equal(printable(`x${ch}y`), `x${shown}y`, `${what} is shown escaped in status and Events`);
	}
});

test("issue invisible-characters: visible text still loads (accents, CJK, emoji without selectors, newlines and tabs in text)", () => {
	const r = loadSnapshot(snap({ "c.yaml": CONNECTION, "g.yaml": grant("müller@例え.jp 🙂"), "p.yaml": guardrail("public.accounts") }), "team");
	assert.deepEqual(r.problems, []);
	assert.deepEqual(r.resources.map((x) => x.kind).sort(), ["AccessGrant", "Connection", "GuardrailPolicy"]);
});
