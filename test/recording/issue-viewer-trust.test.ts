/**
 * Regressions (red-team of the auditor web viewer):
 *
 * 1. A grant-scoped Drawbridge token got into the viewer. The operator mints a grant's token with the
 *    grant's Group subjects as `groups`, so the data-path credential of any grant naming the auditor
 *    group (say a read-only database grant for `auditors`, its token in a CI Secret) read every
 *    recording of every connection. The approvals API already refused these tokens (rule 2); the
 *    viewer now does too: auditors sign in with their OIDC identity.
 * 2. Recorded numbers (kube status, sftp bytes, exit codes, counts) were put into the page unescaped:
 *    whoever can write the bucket could place markup in an auditor's page (scripts stay blocked by
 *    the CSP, links and forms did not). Every recorded value is escaped now.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { registerViewer } from "../../gateway/admin/viewer.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import type { RecordingEvent } from "../../gateway/recording/events.ts";
import { sessionPrefix } from "../../gateway/recording/format.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { makeRecorder, meta, tempDir } from "./fixtures.ts";

let app: FastifyInstance;
let oidcToken: (claims: Record<string, unknown>) => Promise<string>;
let operatorToken: (claims: Record<string, unknown>) => Promise<string>;
const session = meta({ startedAt: "2027-04-01T10:00:00.000Z", protocol: "ssh" });

async function issuer(iss: string) {
	const { privateKey, publicKey } = await generateKeyPair("ES256", { extractable: true });
	const jwk = { ...(await exportJWK(publicKey)), kid: "k", alg: "ES256" };
	const now = Math.floor(Date.now() / 1000);
	const sign = (claims: Record<string, unknown>) =>
		new SignJWT({ iss, aud: "drawbridge", iat: now, exp: now + 600, ...claims }).setProtectedHeader({ alg: "ES256", kid: "k" }).sign(privateKey);
	return { jwk, sign };
}

before(async () => {
	const store = new DirStore(await tempDir("viewer-trust-store"));
	await store.init();
	const { rec } = await makeRecorder(store, await tempDir("viewer-trust-spool"));
	try {
		const s = await rec.openSession(session);
		// What a bucket writer can put in place of numbers (the data paths write numbers).
		const hostile = "<a id=injected href=https://evil.example>x</a>" as unknown as number;
		s.emit({ type: "exec", command: "uptime", decision: "allow", exitCode: hostile } as RecordingEvent);
		s.emit({ type: "sftp", op: "read", path: "/etc/motd", bytes: hostile, decision: "allow" } as RecordingEvent);
		s.emit({ type: "kube.request", verb: "get", resource: "pods", path: "/api/v1/pods", decision: "allow", status: hostile } as RecordingEvent);
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
	const idp = await issuer("https://idp.test");
	const op = await issuer("https://operator.test");
	oidcToken = idp.sign;
	operatorToken = op.sign;
	const verifier = new TokenVerifier([
		{ name: "idp", kind: "oidc", issuer: "https://idp.test", audiences: ["drawbridge"], jwks: { keys: [idp.jwk] }, algorithms: ["ES256"] },
		{ name: "operator", kind: "drawbridge", issuer: "https://operator.test", audiences: ["drawbridge"], jwks: { keys: [op.jwk] }, algorithms: ["ES256"] },
	]);
	const authenticate = async (request: FastifyRequest) => {
		const m = /^Bearer (.+)$/.exec(request.headers.authorization ?? "");
		return m ? verifier.verify(m[1]!) : undefined;
	};
	app = Fastify();
	await registerViewer(app, { store, authenticate, auditorGroup: "auditors" });
	await app.ready();
});

after(async () => {
	await app?.close();
});

test("issue viewer-trust: a grant-scoped operator token whose groups name the auditor group is refused", async () => {
	const auditor = await oidcToken({ sub: "noor", groups: ["auditors"] });
	let r = await app.inject({ url: "/viewer/api/sessions", headers: { authorization: `Bearer ${auditor}` } });
	assert.equal(r.statusCode, 200);
	const grantToken = await operatorToken({ sub: "grant:data/auditors-ro", grant: "data/auditors-ro", groups: ["auditors"] });
	r = await app.inject({ url: "/viewer/api/sessions", headers: { authorization: `Bearer ${grantToken}` } });
	assert.equal(r.statusCode, 403, r.body);
	assert.match(r.body, /grant-scoped/);
	r = await app.inject({ method: "POST", url: "/viewer/login", payload: `token=${grantToken}`, headers: { "content-type": "application/x-www-form-urlencoded" } });
	assert.equal(r.statusCode, 403);
	assert.equal(r.headers["set-cookie"], undefined);
	r = await app.inject({ url: "/viewer/", headers: { cookie: `drawbridge_viewer=${grantToken}` } });
	assert.equal(r.statusCode, 403);
	assert.doesNotMatch(r.body, /data-session=/);
});

test("issue viewer-trust: recorded numbers are escaped like every other recorded value", async () => {
	const auditor = await oidcToken({ sub: "noor", groups: ["auditors"] });
	const r = await app.inject({ url: `/viewer/session?prefix=${encodeURIComponent(sessionPrefix(session))}`, headers: { authorization: `Bearer ${auditor}` } });
	assert.equal(r.statusCode, 200);
	assert.doesNotMatch(r.body, /<a id=injected/);
	assert.match(r.body, /&lt;a id=injected/);
});
