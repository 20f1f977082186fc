/**
 * Red-team regression (approvals, round 10): who asked, as approvers read it, was the person a grant's
 * shared credential names.
 *
 * The operator mints one token per grant; its `sub` is the grant's first User subject, which whoever
 * writes the grant chooses (any team's repository may name the ceo first), and every subject of the
 * grant holds it. A request made with it was announced in Slack and by `drawbridge approvals show` /
 * `list` as `Requester: user:alice@example.com`, and the webhook payload carried no hint either: an
 * approver decided believing alice asked, while any of the grant's subjects may have. Only the web
 * page said so. Every surface now names the shared credential and all of its holders, and the webhook
 * payload carries them (`requester.sharedBy`). A real OIDC provider, the real approvals REST API and
 * CLI, the real webhook notifier posting to a local receiver.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { main } from "../../cli/approvals.ts";
import { requesterOf } from "../../gateway/approvals/decision.ts";
import { LocalApprovalStore } from "../../gateway/approvals/local-store.ts";
import { registerApprovalRoutes, verifierAuthenticator } from "../../gateway/approvals/routes.ts";
import { StoreApprovalService } from "../../gateway/approvals/service.ts";
import { type ApprovalWebhookPayload, verifyWebhookSignature, WebhookNotifier } from "../../gateway/approvals/webhook.ts";
import type { Identity, SubjectMatcher } from "../../gateway/config/bundle.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import { type OidcHandle, printLogsOnFailure, startOidc } from "../env/index.ts";
import { input } from "./fixtures.ts";

const SECRET = "whsec-shared-requester-0123";
const SUBJECTS: SubjectMatcher[] = [
	{ kind: "User", name: "alice@example.com" },
	{ kind: "User", name: "mallory@example.com" },
	{ kind: "Group", name: "contractors" },
];
const HOLDERS = "user:alice@example.com, user:mallory@example.com, group:contractors";

/** The identity the gateway verifies from the grant's shared token (operator issuer, `sub` = first User). */
const sharedIdentity: Identity = {
	issuer: "https://drawbridge-operator.test",
	issuerKind: "drawbridge",
	subject: "alice@example.com",
	username: "alice@example.com",
	groups: ["contractors"],
	grant: "team-a/batch",
	grantSubjects: "sha256:x",
	tokenExpiresAt: new Date(Date.now() + 3_600_000),
	claims: {},
};

/** Records the bodies of signed POSTs (Slack and a drawbridge-format receiver). */
class Receiver {
	readonly bodies: string[] = [];
	readonly #server: Server = createServer((req, res) => {
		const chunks: Buffer[] = [];
		req.on("data", (c: Buffer) => chunks.push(c));
		req.on("end", () => {
			const body = Buffer.concat(chunks).toString("utf8");
			const ok = verifyWebhookSignature(SECRET, req.headers["drawbridge-signature"] as string | undefined, body).ok;
			if (ok) this.bodies.push(body);
			res.writeHead(ok ? 200 : 401).end();
		});
	});
	url = "";
	async start(): Promise<this> {
		await new Promise<void>((r) => this.#server.listen(0, "127.0.0.1", r));
		this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/hook`;
		return this;
	}
	async stop(): Promise<void> {
		this.#server.closeAllConnections();
		await new Promise<void>((r) => this.#server.close(() => r()));
	}
}

let slack: Receiver;
let hook: Receiver;
let notifier: WebhookNotifier;
let service: StoreApprovalService;
let oidc: OidcHandle;
let app: FastifyInstance;
let base: string;

before(async () => {
	[slack, hook, oidc] = await Promise.all([new Receiver().start(), new Receiver().start(), startOidc()]);
	notifier = new WebhookNotifier({
		targets: [
			{ name: "slack", url: slack.url, secret: SECRET, format: "slack" },
			{ name: "bot", url: hook.url, secret: SECRET },
		],
		initialBackoffMs: 50,
	});
	service = new StoreApprovalService({ store: new LocalApprovalStore(), notifier, sweepIntervalMs: 0 });
	const verifier = new TokenVerifier([
		{ name: "oidc", kind: "oidc", issuer: oidc.issuer, audiences: ["drawbridge"], jwksUri: oidc.jwksUri, algorithms: ["RS256"], usernameClaim: "email" },
	]);
	app = Fastify();
	await registerApprovalRoutes(app, { service, authenticate: verifierAuthenticator(verifier), pages: false });
	await app.listen({ port: 0, host: "127.0.0.1" });
	base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
});

after(async () => {
	await app?.close();
	await service?.close();
	notifier?.close();
	await slack?.stop();
	await hook?.stop();
	await oidc?.stop();
});
printLogsOnFailure(() => [["oidc", oidc]]);

async function cli(args: string[], token: string): Promise<string> {
	let stdout = "";
	let stderr = "";
	const code = await main([...args, "--server", base], { env: { DRAWBRIDGE_TOKEN: token, HOME: "/nonexistent" }, stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) });
	assert.equal(code, 0, stderr);
	return stdout;
}

test("issue approval-shared-requester-shown: every surface names the shared credential and all who hold it", async () => {
	const held = await service.request(
		input({ grant: "team-a/batch", requester: requesterOf(sharedIdentity, { subjects: SUBJECTS }), approvers: [{ kind: "Group", name: "support-leads" }] }),
	);
	await notifier.idle();

	// Slack. Before: "*Requester*\nuser:alice@example.com".
	const slackBody = slack.bodies.find((b) => b.includes(held.id));
	assert.ok(slackBody, "announced in Slack");
	const slackMessage = JSON.parse(slackBody) as { text: string; blocks: { fields?: { text: string }[] }[] };
	const requesterField = slackMessage.blocks.flatMap((b) => b.fields ?? []).find((f) => f.text.startsWith("*Requester*"));
	assert.equal(requesterField?.text, `*Requester*\nuser:alice@example.com (the grant's shared credential: any of ${HOLDERS})`);
	assert.match(slackMessage.text, /the grant's shared credential: any of/);

	// The drawbridge-format payload. Before: no sharedBy, a bot read "alice".
	const payload = JSON.parse(hook.bodies.find((b) => b.includes(held.id))!) as ApprovalWebhookPayload;
	assert.deepEqual(payload.approval.requester.sharedBy, SUBJECTS);

	// The CLI an approver reads before deciding. Before: "Requester:  user:alice@example.com (issuer ...)".
	const sam = await oidc.idToken("sam");
	const shown = await cli(["show", held.id], sam);
	assert.match(shown, new RegExp(`Requester: {2}user:alice@example\\.com \\(the grant's shared credential: any of ${HOLDERS}\\)`));
	const listed = await cli(["list"], sam);
	assert.ok(listed.includes(`any of ${HOLDERS}`), listed);
});

test("issue approval-shared-requester-shown: a personal token's request still reads as its person", async () => {
	const held = await service.request(input({ sessionId: "personal" }));
	await notifier.idle();
	const shown = await cli(["show", held.id], await oidc.idToken("sam"));
	assert.match(shown, /Requester: {2}serviceaccount:support\/bot \(issuer /);
	const slackMessage = JSON.parse(slack.bodies.find((b) => b.includes(held.id))!) as { blocks: { fields?: { text: string }[] }[] };
	assert.equal(slackMessage.blocks.flatMap((b) => b.fields ?? []).find((f) => f.text.startsWith("*Requester*"))?.text, "*Requester*\nserviceaccount:support/bot");
});
