/**
 * Red-team regression (identity, round 10): a masking exemption reached everyone holding a grant's
 * shared credential.
 *
 * The operator mints one token per grant, delivered to every subject of the grant through one Secret;
 * its `sub` is the grant's first User subject. The masking policy exempts the DBA alice (break-glass).
 * A grant giving alice and a contractor, bob, read-only access was merged; bob connected with the
 * grant's token, which says `sub: alice`, and read every phone and email unmasked: the exemption was
 * matched against the token's `sub` as if alice were on the other end. A shared credential is exempt
 * now only when every subject of its grant is exempt; alice's own token still is. Real PostgreSQL
 * through the real listener.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { SubjectMatcher } from "../../gateway/config/bundle.ts";
import { grantSubjectsDigest } from "../../gateway/config/canonical.ts";
import { CORPUS_MASK_RULES } from "../../gateway/policy/corpus/sql-bypass.ts";
import { seedRows } from "../env/index.ts";
import { type GatewayFixture, startGatewayFixture } from "../faults/fixture.ts";

const ONCALL: SubjectMatcher[] = [
	{ kind: "User", name: "alice" },
	{ kind: "User", name: "bob" },
];
const ALICE_ONLY: SubjectMatcher[] = [{ kind: "User", name: "alice" }];

let fx: GatewayFixture;
before(async () => {
	fx = await startGatewayFixture({
		grants: [
			{ name: "oncall-ro", user: "alice", access: "read-only", subjects: ONCALL },
			{ name: "alice-breakglass", user: "alice", access: "read-only", subjects: ALICE_ONLY },
		],
		maskRules: CORPUS_MASK_RULES,
		maskExempt: [{ kind: "User", name: "alice" }],
	});
});
after(async () => {
	await fx?.stop();
});

async function phones(password: string): Promise<string> {
	const { default: pgmod } = await import("pg");
	const c = new pgmod.Client(fx.clientConfig("agent", password));
	c.on("error", () => {});
	await c.connect();
	try {
		const r = await c.query("SELECT phone, email FROM customers ORDER BY id");
		return JSON.stringify(r.rows);
	} finally {
		await c.end().catch(() => {});
	}
}

const shared = (grant: string, subjects: SubjectMatcher[]) =>
	fx.token("alice", { issuer: "operator", claims: { grant: `team/${grant}`, grantSubjects: grantSubjectsDigest(subjects) } });

test("issue shared-credential-exemption: the token of a grant naming an exempt subject first does not lift masking for the others", async () => {
	const seed = seedRows().customers[0]!;
	// Before: raw phones and emails for whoever of alice and bob held the grant's token.
	const text = await phones(await shared("oncall-ro", ONCALL));
	assert.ok(!text.includes(seed.phone) && !text.includes(seed.email), `unmasked through the shared token: ${text.slice(0, 200)}`);
	// Alice's own token is still exempt, and so is a grant credential only exempt subjects hold.
	assert.ok((await phones(await fx.token("alice"))).includes(seed.phone), "alice's own token is exempt");
	assert.ok((await phones(await shared("alice-breakglass", ALICE_ONLY))).includes(seed.phone), "a grant of exempt subjects only is exempt");
});
