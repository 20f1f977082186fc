/**
 * Approvals with real OIDC ID tokens (test/env startOidc: oidc-provider, authorization-code flow),
 * verified by the identity module against the provider's JWKS over HTTP, through the REST API and the
 * `drawbridge approvals` CLI. The requester's identity comes from a verified token too.
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { main } from "../../cli/approvals.ts";
import { LocalApprovalStore } from "../../gateway/approvals/local-store.ts";
import { registerApprovalRoutes, verifierAuthenticator } from "../../gateway/approvals/routes.ts";
import { StoreApprovalService } from "../../gateway/approvals/service.ts";
import type { Identity } from "../../gateway/config/bundle.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import { type OidcHandle, printLogsOnFailure, startOidc } from "../env/index.ts";
import { input } from "./fixtures.ts";

let oidc: OidcHandle;
let app: FastifyInstance;
let service: StoreApprovalService;
let verifier: TokenVerifier;
let base: string;

before(async () => {
	oidc = await startOidc();
	verifier = new TokenVerifier([
		{
			name: "test-oidc",
			kind: "oidc",
			issuer: oidc.issuer,
			audiences: ["drawbridge"],
			jwksUri: oidc.jwksUri,
			algorithms: ["RS256"],
			usernameClaim: "email",
			clockToleranceSec: 0,
		},
	]);
	service = new StoreApprovalService({ store: new LocalApprovalStore(), sweepIntervalMs: 0, waitPollIntervalMs: 500 });
	app = Fastify();
	await registerApprovalRoutes(app, { service, authenticate: verifierAuthenticator(verifier) });
	await app.listen({ port: 0, host: "127.0.0.1" });
	base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
});

after(async () => {
	await app?.close();
	await service?.close();
	await oidc?.stop();
});
printLogsOnFailure(() => [["oidc", oidc]]);

async function cli(args: string[], token: string) {
	let stdout = "";
	let stderr = "";
	const code = await main([...args, "--server", base], {
		env: { DRAWBRIDGE_TOKEN: token, HOME: "/nonexistent" },
		stdout: (s) => void (stdout += s),
		stderr: (s) => void (stderr += s),
	});
	return { code, stdout, stderr };
}

/** A request held for `alice` (verified from her own OIDC token), approvers: group support-leads. */
async function heldFor(requester: Identity, overrides: Parameters<typeof input>[0] = {}) {
	return service.request(
		input({
			requester: { issuer: requester.issuer, subject: requester.subject, username: requester.username, groups: requester.groups },
			approvers: [{ kind: "Group", name: "support-leads" }],
			...overrides,
		}),
	);
}

test("an approver with a valid OIDC token approves through the CLI; the waiting request resolves", async () => {
	const alice = await verifier.verify(await oidc.idToken("alice"));
	assert.equal(alice.username, "alice@example.com");
	const held = await heldFor(alice);
	const waiting = service.waitForDecision(held.id, new AbortController().signal);
	const samToken = await oidc.idToken("sam");
	const listed = await cli(["list"], samToken);
	assert.equal(listed.code, 0, listed.stderr);
	assert.match(listed.stdout, new RegExp(`${held.id}\\s+Pending\\s+user:alice@example.com`));
	const approved = await cli(["approve", held.id, "-m", "cleanup is expected"], samToken);
	assert.equal(approved.code, 0, approved.stderr);
	assert.match(approved.stdout, /now Approved/);
	const result = await waiting;
	assert.equal(result.phase, "Approved");
	assert.deepEqual(result.decisions.map((d) => [d.by, d.issuer, d.subject, d.comment]), [["user:sam@example.com", oidc.issuer, "sam", "cleanup is expected"]]);
});

test("self-approval with the requester's own OIDC token is refused (alice is in support-leads)", async () => {
	const alice = await verifier.verify(await oidc.idToken("alice"));
	const held = await heldFor(alice);
	const self = await cli(["approve", held.id], await oidc.idToken("alice"));
	assert.equal(self.code, 1);
	assert.match(self.stderr, /HTTP 403, self-approval/);
	assert.equal((await service.get(held.id))?.phase, "Pending");
});

test("approval by a non-approver (bob, group developers) is refused", async () => {
	const alice = await verifier.verify(await oidc.idToken("alice"));
	const held = await heldFor(alice);
	const bob = await cli(["approve", held.id], await oidc.idToken("bob"));
	assert.equal(bob.code, 1);
	assert.match(bob.stderr, /HTTP 403, not-an-approver/);
	const res = await fetch(`${base}/api/v1/approvals/${held.id}/approve`, {
		method: "POST",
		headers: { authorization: `Bearer ${await oidc.idToken("bob")}`, "content-type": "application/json" },
		body: "{}",
	});
	assert.equal(res.status, 403);
});

test("approval with an expired OIDC token is refused with 401", async () => {
	const alice = await verifier.verify(await oidc.idToken("alice"));
	const held = await heldFor(alice);
	const shortLived = await oidc.idToken("sam", { expiresIn: 1 });
	await new Promise((r) => setTimeout(r, 2100));
	const late = await cli(["approve", held.id], shortLived);
	assert.equal(late.code, 1);
	assert.match(late.stderr, /token refused: token expired at .*HTTP 401, unauthenticated/);
	assert.equal((await service.get(held.id))?.phase, "Pending");
});

test("a token for another audience is refused with 401", async () => {
	const alice = await verifier.verify(await oidc.idToken("alice"));
	const held = await heldFor(alice);
	const other = await cli(["approve", held.id], await oidc.idToken("sam", { audience: "some-other-app" }));
	assert.equal(other.code, 1);
	assert.match(other.stderr, /HTTP 401/);
});

test("approval after the request expired is refused with 410 and the request reads Expired", async () => {
	const alice = await verifier.verify(await oidc.idToken("alice"));
	const held = await heldFor(alice, { timeoutSeconds: 1 });
	const samToken = await oidc.idToken("sam");
	await new Promise((r) => setTimeout(r, 1100));
	const late = await cli(["approve", held.id], samToken);
	assert.equal(late.code, 1);
	assert.match(late.stderr, /HTTP 410, expired/);
	assert.equal((await service.get(held.id))?.phase, "Expired");
});
