/**
 * A grant's credential outlived the removal of a subject (red team, round 9).
 *
 * The operator delivers ONE credential per grant (the token Secret `drawbridge-token-<grant>`: a JWT
 * with `grant: <namespace/name>` and, for ssh grants, an SSH user certificate with `grant=` in its key
 * id), shared by everyone the grant names. The gateway let such a credential open its grant whatever
 * the grant's subjects were now: a commit removing kim from `subjects` ended kim's live sessions
 * ("changed; reconnect"), and kim reconnected at once with the copy of the credential kim already had,
 * until its `exp` (an hour by default), and with an SSH certificate of the grant the same way.
 * Removing a subject revoked nothing for the credentials minted before.
 *
 * Now the operator writes the digest of the grant's subjects into every credential it mints
 * (`grantSubjects` claim, `subjects=` in the key id, minted again when the subjects change) and the
 * gateway opens the grant only while the bundle's subjects have that digest; a credential without it
 * is refused. Real PostgreSQL listener in front of a real PostgreSQL; real SSH listener with OpenSSH's
 * `ssh` in front of a real sshd.
 */
import assert from "node:assert/strict";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { after, before, test } from "node:test";
import pg from "pg";
import type { BundleGrant, SubjectMatcher } from "../../gateway/config/bundle.ts";
import { grantSubjectsDigest } from "../../gateway/config/canonical.ts";
import { type SshListener, startSshListener } from "../../gateway/ssh/listener.ts";
import { run, type SshdHandle, startSshd } from "../env/index.ts";
import { type GatewayFixture, type GrantSpec, startGatewayFixture } from "../faults/fixture.ts";
import { approvalService, makeBundle, MemoryRecorder, sshdConnection, sshdCredentials, sshGrant, storeWith, tokenIssuer } from "../ssh/fixtures.ts";
import { KeyDir } from "../ssh/keys.ts";

const BOTH: SubjectMatcher[] = [
	{ kind: "User", name: "lee" },
	{ kind: "User", name: "kim" },
];
const LEE_ONLY: SubjectMatcher[] = [{ kind: "User", name: "lee" }];

let fx: GatewayFixture;

before(async () => {
	fx = await startGatewayFixture({ grants: [oncall(BOTH)] });
});

after(async () => {
	await fx?.stop();
});

function oncall(subjects: SubjectMatcher[]): GrantSpec {
	return { name: "oncall-rw", user: "lee", access: "read-write", subjects };
}

/** What the operator mints for grant team/oncall-rw: `sub` is the first User subject. */
function grantToken(subjects: SubjectMatcher[] | undefined): Promise<string> {
	return fx.token("lee", {
		issuer: "operator",
		claims: { grant: "team/oncall-rw", ...(subjects ? { grantSubjects: grantSubjectsDigest(subjects) } : {}) },
	});
}

async function tryQuery(token: string): Promise<{ ok: true } | { ok: false; code: string; message: string }> {
	const client = new pg.Client(fx.clientConfig("agent", token));
	client.on("error", () => {});
	try {
		await client.connect();
		await client.query("SELECT 1");
		return { ok: true };
	} catch (e) {
		const err = e as { code?: string; message: string };
		return { ok: false, code: err.code ?? "", message: err.message };
	} finally {
		await client.end().catch(() => {});
	}
}

test("issue grant-credential-subjects: PostgreSQL refuses the grant's token minted before a subject was removed", async () => {
	const old = await grantToken(BOTH);
	assert.deepEqual(await tryQuery(old), { ok: true }, "the token of the grant as it is opens it");

	// kim is removed from the grant in git; kim kept a copy of the token.
	fx.reload({ grants: [oncall(LEE_ONLY)] });
	const refused = await tryQuery(old);
	assert.equal(refused.ok, false, "the token minted for the old subjects still opened the grant");
	assert.ok(!refused.ok && refused.code === "28000", JSON.stringify(refused));
	assert.match(!refused.ok ? refused.message : "", /issued for grant team\/oncall-rw before its subjects changed/);

	// The operator mints the token again for the new subjects: that one opens the grant.
	assert.deepEqual(await tryQuery(await grantToken(LEE_ONLY)), { ok: true });
	// A credential of the grant without the digest (minted by an operator before this check) opens nothing.
	const bare = await tryQuery(await grantToken(undefined));
	assert.ok(!bare.ok && bare.code === "28000", JSON.stringify(bare));
	// Adding a subject changes the digest too: the new token is needed again.
	fx.reload({ grants: [oncall([...LEE_ONLY, { kind: "Group", name: "oncall" }])] });
	const afterAdd = await tryQuery(await grantToken(LEE_ONLY));
	assert.ok(!afterAdd.ok && afterAdd.code === "28000", JSON.stringify(afterAdd));
	// Order does not matter: the digest is over the set.
	fx.reload({ grants: [oncall([...BOTH].reverse())] });
	assert.deepEqual(await tryQuery(old), { ok: true });
});

test("issue grant-credential-subjects: SSH refuses the grant's certificate signed before a subject was removed", async (t) => {
	const keys = new KeyDir();
	const sshd: SshdHandle = await startSshd();
	let gw: SshListener | undefined;
	t.after(async () => {
		await gw?.close();
		await sshd.stop();
		keys.cleanup();
	});
	const issuer = await tokenIssuer();
	const ca = keys.keygen("ed25519");
	const agent = keys.keygen("ed25519");
	const connection = sshdConnection(sshd, "box");
	const bundle = (subjects: SubjectMatcher[], version: number) =>
		makeBundle(
			issuer,
			{
				connections: [connection],
				grants: [{ ...sshGrant(sshd, "oncall", "box", { allowedCommands: ["echo *"] }), subjects } satisfies BundleGrant],
				ssh: { userCaKeys: [ca.publicKey] },
				credentials: sshdCredentials(sshd),
			},
			version,
		);
	const store = storeWith(bundle(BOTH, 1));
	const auth: { ok: boolean; method: string; reason?: string }[] = [];
	gw = await startSshListener({ store, recorder: new MemoryRecorder(), approvals: approvalService(), hostKeyPem: keys.keygen("ed25519").privateKey });
	gw.on("auth", (e) => auth.push(e));
	const knownHosts = join(keys.dir, "known_hosts");
	writeFileSync(knownHosts, `[127.0.0.1]:${gw.address.port} ${gw.hostPublicKey}\n`);
	const certFor = (subjects: SubjectMatcher[] | undefined, name: string): string => {
		const file = join(keys.dir, `${name}-cert.pub`);
		const id = `sub=lee;grant=ops/oncall${subjects ? `;subjects=${grantSubjectsDigest(subjects)}` : ""}`;
		writeFileSync(file, `${keys.sign(ca, agent, { id, principals: [sshd.user], validity: "-5m:+1h" })}\n`);
		return file;
	};
	const ssh = (certFile: string) =>
		run(
			"ssh",
			[
				...["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", `UserKnownHostsFile=${knownHosts}`],
				...["-o", "IdentitiesOnly=yes", "-o", "PreferredAuthentications=publickey", "-i", agent.path, "-o", `CertificateFile=${certFile}`],
				...["-p", String(gw!.address.port), "-l", `${sshd.user}@box`, "127.0.0.1", "echo cert-ok"],
			],
			{ timeoutMs: 30_000, input: "" },
		);

	const old = certFor(BOTH, "old");
	const first = await ssh(old);
	assert.equal(first.stdout.trim(), "cert-ok", first.stderr);

	store.update(bundle(LEE_ONLY, 2));
	const before = auth.length;
	const refused = await ssh(old);
	assert.notEqual(refused.code, 0, "the certificate signed for the old subjects still opened the grant");
	assert.doesNotMatch(refused.stdout, /cert-ok/);
	const failures = auth.slice(before).filter((e) => !e.ok && e.method === "publickey");
	assert.ok(
		failures.some((e) => /issued for grant ops\/oncall before its subjects changed/.test(e.reason ?? "")),
		JSON.stringify(auth.slice(before)),
	);

	const current = await ssh(certFor(LEE_ONLY, "current"));
	assert.equal(current.stdout.trim(), "cert-ok", current.stderr);
	const bare = await ssh(certFor(undefined, "bare"));
	assert.notEqual(bare.code, 0, "a certificate of the grant without the digest opened it");
});
