/**
 * `drawbridge approvals login` against a real OIDC provider (startOidc) with a real browser (chromium)
 * following the sign-in redirects to the CLI's loopback callback; the stored token then approves a
 * request through the REST API.
 */
import assert from "node:assert/strict";
import { mkdtemp, readFile, rm, stat } from "node:fs/promises";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { type Browser, chromium } from "playwright-core";
import { main } from "../../cli/approvals.ts";
import { LocalApprovalStore } from "../../gateway/approvals/local-store.ts";
import { registerApprovalRoutes, verifierAuthenticator } from "../../gateway/approvals/routes.ts";
import { StoreApprovalService } from "../../gateway/approvals/service.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import { type OidcHandle, printLogsOnFailure, startOidc } from "../env/index.ts";
import { input } from "./fixtures.ts";

let oidc: OidcHandle;
let browser: Browser;
let app: FastifyInstance;
let service: StoreApprovalService;
let base: string;
let home: string;

before(async () => {
	oidc = await startOidc();
	// A public client for the CLI: no secret, PKCE only, loopback redirect on any port.
	oidc.registerClient("drawbridge-cli", { token_endpoint_auth_method: "none" });
	browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
	const verifier = new TokenVerifier([
		{ name: "oidc", kind: "oidc", issuer: oidc.issuer, audiences: ["drawbridge-cli"], jwksUri: oidc.jwksUri, algorithms: ["RS256"], usernameClaim: "email" },
	]);
	service = new StoreApprovalService({ store: new LocalApprovalStore(), sweepIntervalMs: 0 });
	app = Fastify();
	await registerApprovalRoutes(app, { service, authenticate: verifierAuthenticator(verifier), pages: false });
	await app.listen({ port: 0, host: "127.0.0.1" });
	base = `http://127.0.0.1:${(app.server.address() as AddressInfo).port}`;
	home = await mkdtemp(join(tmpdir(), "approvals-login-"));
});

after(async () => {
	await browser?.close();
	await app?.close();
	await service?.close();
	await oidc?.stop();
	if (home) await rm(home, { recursive: true, force: true });
});
printLogsOnFailure(() => [["oidc", oidc]]);

function runCli(args: string[], onStderr: (s: string) => void = () => {}) {
	let stdout = "";
	let stderr = "";
	const done = main(args, {
		env: { HOME: home },
		stdout: (s) => void (stdout += s),
		stderr: (s) => {
			stderr += s;
			onStderr(s);
		},
	});
	return done.then((code) => ({ code, stdout, stderr }));
}

test("login stores an ID token (0600) that then approves through the API", async () => {
	let signInUrl = "";
	const page = await browser.newPage();
	const login = runCli(["login", "--issuer", oidc.issuer, "--client-id", "drawbridge-cli", "--login-hint", "sam"], (s) => {
		const m = /(http:\/\/\S+\/auth\?\S+)/.exec(s);
		if (m?.[1]) {
			signInUrl = m[1];
			void page.goto(signInUrl);
		}
	});
	const result = await login;
	assert.equal(result.code, 0, result.stderr);
	assert.match(signInUrl, /code_challenge_method=S256/);
	assert.match(signInUrl, /redirect_uri=http%3A%2F%2F127.0.0.1%3A\d+%2Fcallback/);
	assert.match(result.stdout, /Signed in as sam@example.com; token saved to .*\.config\/drawbridge\/token/);
	await page.waitForLoadState();
	assert.match((await page.textContent("body")) ?? "", /Signed in/);
	await page.close();

	const tokenFile = join(home, ".config", "drawbridge", "token");
	assert.equal((await stat(tokenFile)).mode & 0o777, 0o600);
	assert.match(await readFile(tokenFile, "utf8"), /^ey[\w-]+\.[\w-]+\.[\w-]+\n$/);

	const held = await service.request(input());
	const approve = await runCli(["approve", held.id, "--server", base]);
	assert.equal(approve.code, 0, approve.stderr);
	assert.equal((await service.get(held.id))?.decisions[0]?.by, "user:sam@example.com");
});

test("login gives up when nobody signs in, and needs an issuer", async () => {
	const none = await runCli(["login", "--issuer", oidc.issuer, "--client-id", "drawbridge-cli", "--login-timeout-seconds", "0.5"]);
	assert.equal(none.code, 1);
	assert.match(none.stderr, /no sign-in within/);
	const usage = await runCli(["login"]);
	assert.equal(usage.code, 2);
	assert.match(usage.stderr, /--issuer/);
});
