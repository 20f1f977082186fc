/**
 * REST API + CLI over a real fastify server on port 0, with tokens verified by the real identity
 * module (TokenVerifier). The issuer here is a key pair of our own (signed with jose); the OIDC
 * round trip against a real provider lives in oidc.test.ts.
 */
import assert from "node:assert/strict";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { exportJWK, generateKeyPair, SignJWT } from "jose";
import { main } from "../../cli/approvals.ts";
import { LocalApprovalStore } from "../../gateway/approvals/local-store.ts";
import { registerApprovalRoutes, verifierAuthenticator } from "../../gateway/approvals/routes.ts";
import { StoreApprovalService } from "../../gateway/approvals/service.ts";
import type { ApprovalRequestRecord } from "../../gateway/approvals/types.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import { input } from "./fixtures.ts";

const ISSUER = "https://idp.approvals.test";
let app: FastifyInstance;
let base: string;
let service: StoreApprovalService;
let sign: (sub: string, email: string, groups: string[], expSec?: number) => Promise<string>;
let dir: string;

before(async () => {
	const { privateKey, publicKey } = await generateKeyPair("ES256");
	const jwk = { ...(await exportJWK(publicKey)), kid: "k1", alg: "ES256", use: "sig" };
	sign = (sub, email, groups, expSec = 600) =>
		new SignJWT({ email, groups })
			.setProtectedHeader({ alg: "ES256", kid: "k1" })
			.setIssuer(ISSUER)
			.setAudience("drawbridge")
			.setSubject(sub)
			.setIssuedAt(Math.floor(Date.now() / 1000) - 60)
			.setExpirationTime(Math.floor(Date.now() / 1000) + expSec)
			.sign(privateKey);
	const verifier = new TokenVerifier([
		{ name: "idp", kind: "oidc", issuer: ISSUER, audiences: ["drawbridge"], jwks: { keys: [jwk] }, algorithms: ["ES256"], usernameClaim: "email", clockToleranceSec: 0 },
	]);
	service = new StoreApprovalService({ store: new LocalApprovalStore(), sweepIntervalMs: 0 });
	app = Fastify();
	await registerApprovalRoutes(app, { service, authenticate: verifierAuthenticator(verifier) });
	await app.listen({ port: 0, host: "127.0.0.1" });
	base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
	dir = await mkdtemp(join(tmpdir(), "approvals-cli-"));
});

after(async () => {
	await app?.close();
	await service?.close();
	if (dir) await rm(dir, { recursive: true, force: true });
});

const ann = { issuer: ISSUER, subject: "ann", username: "ann@example.com", groups: ["support"] };

async function api(method: string, path: string, token?: string, body?: unknown) {
	const res = await fetch(base + path, {
		method,
		headers: { ...(token ? { authorization: `Bearer ${token}` } : {}), ...(body ? { "content-type": "application/json" } : {}) },
		...(body ? { body: JSON.stringify(body) } : {}),
	});
	return { status: res.status, body: (await res.json()) as { error?: { code: string; message: string } } & Partial<ApprovalRequestRecord> & { items?: ApprovalRequestRecord[] } };
}

async function cli(args: string[], env: Record<string, string> = {}) {
	let stdout = "";
	let stderr = "";
	const code = await main(args, { env: { HOME: dir, ...env }, stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) });
	return { code, stdout, stderr };
}

test("HTTP errors: 401 no/invalid/expired token, 403 self and non-approver, 404, 409, 410", async () => {
	const r = await service.request(input({ requester: ann, approvers: [{ kind: "Group", name: "support-leads" }, { kind: "Group", name: "support" }] }));
	const samTok = await sign("sam", "sam@example.com", ["support-leads"]);
	const annTok = await sign("ann", "ann@example.com", ["support"]);
	const eveTok = await sign("eve", "eve@example.com", ["sales"]);
	const expiredTok = await sign("sam", "sam@example.com", ["support-leads"], -5);

	const noToken = await api("POST", `/api/v1/approvals/${r.id}/approve`);
	assert.equal(noToken.status, 401);
	assert.equal(noToken.body.error?.code, "unauthenticated");
	assert.equal((await api("POST", `/api/v1/approvals/${r.id}/approve`, "not-a-jwt")).status, 401);
	const expired = await api("POST", `/api/v1/approvals/${r.id}/approve`, expiredTok, {});
	assert.equal(expired.status, 401);
	assert.match(expired.body.error?.message ?? "", /expired/);

	const self = await api("POST", `/api/v1/approvals/${r.id}/approve`, annTok, {});
	assert.deepEqual([self.status, self.body.error?.code], [403, "self-approval"]);
	const outsider = await api("POST", `/api/v1/approvals/${r.id}/approve`, eveTok, {});
	assert.deepEqual([outsider.status, outsider.body.error?.code], [403, "not-an-approver"]);
	assert.equal((await api("GET", `/api/v1/approvals/${r.id}`, eveTok)).status, 403, "outsiders cannot read it");
	assert.equal((await api("GET", "/api/v1/approvals/ar-ffffffffff", samTok)).status, 404);
	assert.equal((await api("POST", "/api/v1/approvals/..%2Fx/approve", samTok, {})).status, 404);
	assert.equal((await api("POST", `/api/v1/approvals/${r.id}/approve`, samTok, { comment: 42 })).status, 400);
	assert.equal((await api("GET", "/api/v1/approvals?phase=Bogus", samTok)).status, 400);

	const ok = await api("POST", `/api/v1/approvals/${r.id}/approve`, samTok, { comment: "fine" });
	assert.equal(ok.status, 200);
	assert.equal(ok.body.phase, "Approved");
	const again = await api("POST", `/api/v1/approvals/${r.id}/deny`, samTok, {});
	assert.deepEqual([again.status, again.body.error?.code], [409, "already-decided"]);

	const short = await service.request(input({ timeoutSeconds: 0.2 }));
	await new Promise((res) => setTimeout(res, 300));
	const late = await api("POST", `/api/v1/approvals/${short.id}/approve`, samTok, {});
	assert.deepEqual([late.status, late.body.error?.code], [410, "expired"]);
	assert.equal((await service.get(short.id))?.phase, "Expired", "the late attempt also records the expiry");
});

test("list shows only what the caller may see", async () => {
	const mine = await service.request(input({ requester: ann }));
	const samTok = await sign("sam", "sam@example.com", ["support-leads"]);
	const eveTok = await sign("eve", "eve@example.com", ["sales"]);
	const annTok = await sign("ann", "ann@example.com", ["support"]);
	const forSam = await api("GET", "/api/v1/approvals?phase=Pending", samTok);
	assert.ok(forSam.body.items?.some((i) => i.id === mine.id));
	assert.ok(forSam.body.items?.every((i) => i.phase === "Pending"));
	assert.deepEqual((await api("GET", "/api/v1/approvals", eveTok)).body.items, []);
	const forAnn = await api("GET", "/api/v1/approvals", annTok);
	assert.ok(forAnn.body.items?.some((i) => i.id === mine.id), "the requester sees their own request");
});

test("CLI: list, show, approve with a token file; refusals exit 1 with the server's reason", async () => {
	const r = await service.request(input({ minApprovals: 2, requester: ann }));
	const samFile = join(dir, "sam.token");
	await writeFile(samFile, `${await sign("sam", "sam@example.com", ["support-leads"])}\n`);
	const kimTok = await sign("kim", "kim@example.com", ["support-leads"]);
	const annTok = await sign("ann", "ann@example.com", ["support"]);

	const help = await cli(["--help"]);
	assert.equal(help.code, 0);
	assert.match(help.stdout, /drawbridge approvals <command>/);
	assert.equal((await cli(["frobnicate"])).code, 2);
	assert.equal((await cli(["approve"])).code, 2);
	const noTok = await cli(["list", "--server", base]);
	assert.equal(noTok.code, 2);
	assert.match(noTok.stderr, /no token/);

	const list = await cli(["list", "--server", base, "--token-file", samFile]);
	assert.equal(list.code, 0, list.stderr);
	assert.match(list.stdout, new RegExp(`${r.id}\\s+Pending\\s+serviceaccount:support/bot|${r.id}\\s+Pending\\s+user:ann@example.com`));

	const show = await cli(["show", r.id, "--server", base], { DRAWBRIDGE_TOKEN: kimTok });
	assert.equal(show.code, 0, show.stderr);
	assert.match(show.stdout, /DELETE FROM tickets/);
	assert.match(show.stdout, /group:support-leads \(2 approvals needed\)/);

	const self = await cli(["approve", r.id, "--server", base, "--token", annTok]);
	assert.equal(self.code, 1);
	assert.match(self.stderr, /HTTP 403, self-approval/);

	const first = await cli(["approve", r.id, "-m", "ok by me", "--server", base, "--token-file", samFile]);
	assert.equal(first.code, 0, first.stderr);
	assert.match(first.stdout, /still Pending \(1\/2 approvals\)/);
	const second = await cli(["approve", r.id], { DRAWBRIDGE_TOKEN: kimTok, DRAWBRIDGE_SERVER: base });
	assert.equal(second.code, 0, second.stderr);
	assert.match(second.stdout, new RegExp(`${r.id}: now Approved`));

	const json = await cli(["show", r.id, "--json", "--server", base], { DRAWBRIDGE_TOKEN: kimTok });
	const record = JSON.parse(json.stdout) as ApprovalRequestRecord;
	assert.deepEqual(
		record.decisions.map((d) => [d.by, d.comment]),
		[
			["user:sam@example.com", "ok by me"],
			["user:kim@example.com", undefined],
		],
	);
	const unreachable = await cli(["list", "--server", "http://127.0.0.1:1"], { DRAWBRIDGE_TOKEN: kimTok });
	assert.equal(unreachable.code, 1);
	assert.match(unreachable.stderr, /cannot reach/);
});
