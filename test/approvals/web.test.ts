/**
 * The approvals web page in a real browser (chromium via playwright-core) against a real fastify
 * server: the Slack "Approve" link opens the page, the approver pastes a real OIDC token, approves, and
 * the waiting request resolves. Also: request data is rendered as text, never as markup.
 */
import assert from "node:assert/strict";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { type Browser, chromium } from "playwright-core";
import { LocalApprovalStore } from "../../gateway/approvals/local-store.ts";
import { registerApprovalRoutes, verifierAuthenticator } from "../../gateway/approvals/routes.ts";
import { StoreApprovalService } from "../../gateway/approvals/service.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import { type OidcHandle, printLogsOnFailure, startOidc } from "../env/index.ts";
import { input } from "./fixtures.ts";

let oidc: OidcHandle;
let app: FastifyInstance;
let service: StoreApprovalService;
let browser: Browser;
let base: string;

before(async () => {
	oidc = await startOidc();
	const verifier = new TokenVerifier([
		{ name: "oidc", kind: "oidc", issuer: oidc.issuer, audiences: ["drawbridge"], jwksUri: oidc.jwksUri, algorithms: ["RS256"], usernameClaim: "email" },
	]);
	app = Fastify();
	service = new StoreApprovalService({ store: new LocalApprovalStore(), sweepIntervalMs: 0, waitPollIntervalMs: 300 });
	await registerApprovalRoutes(app, { service, authenticate: verifierAuthenticator(verifier) });
	await app.listen({ port: 0, host: "127.0.0.1" });
	base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
	browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
});

after(async () => {
	await browser?.close();
	await app?.close();
	await service?.close();
	await oidc?.stop();
});
printLogsOnFailure(() => [["oidc", oidc]]);

test("approve from the page a notification links to", async () => {
	const held = await service.request(input({ command: "DELETE FROM tickets WHERE note = '<img src=x onerror=alert(1)>'" }));
	const waiting = service.waitForDecision(held.id, new AbortController().signal);
	const page = await browser.newPage();
	const dialogs: string[] = [];
	page.on("dialog", (d) => {
		dialogs.push(d.message());
		void d.accept();
	});
	const response = await page.goto(`${base}/approvals/${held.id}?decision=approve`);
	assert.match(response?.headers()["content-security-policy"] ?? "", /script-src 'self'/);
	await page.fill("#token", await oidc.idToken("sam"));
	await page.click("#save");
	await page.waitForSelector("pre");
	assert.equal(await page.textContent("pre"), "DELETE FROM tickets WHERE note = '<img src=x onerror=alert(1)>'", "rendered as text");
	assert.equal(await page.locator("img").count(), 0);
	await page.click("button:text('Approve')");
	await page.locator("#message", { hasText: "now Approved" }).waitFor();
	assert.deepEqual(dialogs, [`Approve ${held.id}?`]);
	const result = await waiting;
	assert.equal(result.phase, "Approved");
	assert.equal(result.decisions[0]?.by, "user:sam@example.com");
	await page.close();
});

test("the page shows the API's refusal (self-approval is not possible from the browser either)", async () => {
	const alice = { issuer: oidc.issuer, subject: "alice", username: "alice@example.com", groups: ["support-leads"] };
	const held = await service.request(input({ requester: alice }));
	const page = await browser.newPage();
	page.on("dialog", (d) => void d.accept());
	await page.goto(`${base}/approvals/${held.id}`);
	await page.fill("#token", await oidc.idToken("alice"));
	await page.click("#save");
	await page.waitForSelector("pre");
	await page.click("button:text('Approve')");
	await page.locator("#message", { hasText: "HTTP 403" }).waitFor();
	assert.match((await page.textContent("#message")) ?? "", /self-approval/);
	assert.equal((await service.get(held.id))?.phase, "Pending");
	await page.close();
});
