/**
 * The auditor web viewer in headless Chromium (playwright-core + Debian's chromium), with real OIDC
 * ID tokens from the harness's oidc-provider verified by the gateway's TokenVerifier: log in, filter,
 * open a session, play it, screenshot. Plus the auth rules over plain HTTP.
 */
import assert from "node:assert/strict";
import { mkdir } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { after, before, test } from "node:test";
import Fastify, { type FastifyInstance, type FastifyRequest } from "fastify";
import { type Browser, chromium } from "playwright-core";
import { registerViewer } from "../../gateway/admin/viewer.ts";
import { loadStoreKeys } from "../../gateway/recording/catalog.ts";
import { sessionPrefix } from "../../gateway/recording/format.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import { freePort, type OidcHandle, printLogsOnFailure, startOidc } from "../env/index.ts";
import { auditorIdentity, blockedAndApproved, makeRecorder, meta, sqlEvents, tempDir } from "./fixtures.ts";

let oidc: OidcHandle;
let app: FastifyInstance;
let url: string;
let browser: Browser | undefined;
let store: DirStore;
const sql = meta({ startedAt: "2027-03-05T10:00:00.000Z" });
const ssh = meta({ startedAt: "2027-03-06T08:00:00.000Z", protocol: "ssh", connection: "db-primary", target: { login: "lee" }, identity: { issuer: "https://issuer.test", subject: "lee", username: "lee", groups: ["oncall"] }, grant: "oncall/break-glass" });
const kube = meta({ startedAt: "2027-03-07T09:00:00.000Z", protocol: "kubernetes", connection: "prod-cluster", target: { user: "lee" }, identity: { issuer: "https://issuer.test", subject: "lee", username: "lee", groups: ["oncall"] }, grant: "oncall/break-glass" });
const tampered = meta({ startedAt: "2027-03-08T09:00:00.000Z", connection: "orders-prod" });
/** Poll from the test side (the viewer's CSP forbids the page-side eval that waitForFunction needs). */
async function until(check: () => Promise<boolean>, what: string, timeoutMs = 15_000): Promise<void> {
	const end = Date.now() + timeoutMs;
	while (Date.now() < end) {
		if (await check()) return;
		await new Promise((r) => setTimeout(r, 100));
	}
	throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
}

export const SCREENSHOTS = join(tmpdir(), "drawbridge-viewer-screenshots");

before(async () => {
	oidc = await startOidc();
	store = new DirStore(await tempDir("viewer-store"));
	await store.init();
	let clock = 0;
	const { rec } = await makeRecorder(store, await tempDir("viewer-spool"), { now: () => (clock += 200) });
	try {
		clock = Date.parse(sql.startedAt);
		let s = await rec.openSession(sql);
		for (const e of sqlEvents(5)) s.emit(e);
		for (const e of blockedAndApproved) s.emit(e);
		s.emit({ type: "statement", sql: "SELECT '<script>alert(1)</script>'", statementKinds: ["select"], decision: "allow", rows: 1 });
		s.emit({ type: "statement", sql: "SELECT id, email FROM customers LIMIT 2", statementKinds: ["select"], decision: "allow", rows: 2, resultColumns: ["id", "email"], resultRows: [["1", "<b>redacted</b>"], ["2", null]] });
		await s.close({ reason: "client-closed" });
		clock = Date.parse(ssh.startedAt);
		s = await rec.openSession(ssh);
		s.emit({ type: "terminal", stream: "r", data: "80x12" });
		s.emit({ type: "terminal", stream: "o", data: "lee@db-primary:~$ " });
		s.emit({ type: "terminal", stream: "i", data: "sudo systemctl restart postgresql\r" });
		s.emit({ type: "exec", command: "sudo systemctl restart postgresql", decision: "audit", rule: "audit-sudo", exitCode: 0 });
		s.emit({ type: "terminal", stream: "o", data: "sudo systemctl restart postgresql\r\n" });
		s.emit({ type: "terminal", stream: "o", data: "\u001b[32mpostgresql restarted OK\u001b[0m\r\nlee@db-primary:~$ " });
		await s.close({ reason: "client-closed" });
		clock = Date.parse(kube.startedAt);
		s = await rec.openSession(kube);
		s.emit({ type: "kube.request", verb: "list", resource: "pods", namespace: "payments", path: "/api/v1/namespaces/payments/pods", decision: "allow", status: 200, durationMs: 12 });
		s.emit({ type: "kube.request", verb: "get", resource: "pods", subresource: "log", namespace: "payments", name: "api-7d9", path: "/api/v1/namespaces/payments/pods/api-7d9/log", decision: "allow", status: 200 });
		s.emit({ type: "kube.request", verb: "delete", resource: "namespaces", name: "payments", path: "/api/v1/namespaces/payments", decision: "block", rule: "no-namespace-delete", status: 403 });
		await s.close({ reason: "client-closed" });
		clock = Date.parse(tampered.startedAt);
		s = await rec.openSession(tampered);
		for (const e of sqlEvents(3)) s.emit(e);
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
	const tp = sessionPrefix(tampered);
	await store.put(`${tp}chunk-000001.jsonl.gz`, Buffer.from("not the original chunk"));

	const verifier = new TokenVerifier([
		{ name: "test-oidc", kind: "oidc", issuer: oidc.issuer, audiences: ["drawbridge", "drawbridge-viewer"], jwksUri: oidc.jwksUri, algorithms: ["RS256"] },
	]);
	const authenticate = async (request: FastifyRequest) => {
		const m = /^Bearer (.+)$/.exec(request.headers.authorization ?? "");
		return m ? verifier.verify(m[1]!) : undefined;
	};
	const port = await freePort();
	url = `http://127.0.0.1:${port}`;
	const redirectUri = `${url}/viewer/oidc/callback`;
	const clientSecret = oidc.registerClient("drawbridge-viewer", { redirect_uris: [redirectUri] });
	app = Fastify();
	await registerViewer(app, {
		store,
		authenticate,
		auditorGroup: "auditors",
		oidc: { issuer: oidc.issuer, clientId: "drawbridge-viewer", clientSecret, redirectUri },
	});
	await app.listen({ host: "127.0.0.1", port });
});

after(async () => {
	await browser?.close();
	await app?.close();
	await oidc?.stop();
});
printLogsOnFailure(() => [["oidc", oidc]]);

test("viewer auth: 401 without a token, 403 outside the auditor group, 200 for auditors; keys are public", async () => {
	let r = await fetch(`${url}/viewer/api/sessions`);
	assert.equal(r.status, 401);
	assert.match(r.headers.get("www-authenticate") ?? "", /Bearer/);
	r = await fetch(`${url}/viewer/`, { redirect: "manual" });
	assert.equal(r.status, 302);
	assert.equal(r.headers.get("location"), "/viewer/login");
	const bob = await oidc.idToken("bob");
	r = await fetch(`${url}/viewer/api/sessions`, { headers: { authorization: `Bearer ${bob}` } });
	assert.equal(r.status, 403);
	assert.match(((await r.json()) as { error: { message: string } }).error.message, /bob is not a member of the auditor group "auditors"/);
	r = await fetch(`${url}/viewer/api/sessions`, { headers: { authorization: "Bearer not.a.token" } });
	assert.equal(r.status, 401);
	const wrongAudience = await oidc.idToken("noor", { audience: "something-else" });
	r = await fetch(`${url}/viewer/api/sessions`, { headers: { authorization: `Bearer ${wrongAudience}` } });
	assert.equal(r.status, 401);
	const noor = await oidc.idToken("noor");
	r = await fetch(`${url}/viewer/api/sessions?connection=orders-prod`, { headers: { authorization: `Bearer ${noor}` } });
	assert.equal(r.status, 200);
	assert.equal(((await r.json()) as { sessions: unknown[] }).sessions.length, 2);
	r = await fetch(`${url}/viewer/api/cast?prefix=../../etc/passwd`, { headers: { authorization: `Bearer ${noor}` } });
	assert.equal(r.status, 400);
	r = await fetch(`${url}/api/v1/recordings/keys`);
	assert.equal(r.status, 200);
	const jwks = (await r.json()) as { keys: { crv?: string; d?: string }[] };
	assert.equal(jwks.keys.length, 1);
	assert.equal(jwks.keys[0]!.crv, "Ed25519");
	assert.equal(jwks.keys[0]!.d, undefined);
});

test("viewer in headless Chromium: log in, filter, badges, SQL timeline, Kubernetes log, play the SSH session, screenshot", async () => {
	await mkdir(SCREENSHOTS, { recursive: true });
	browser = await chromium.launch({
		executablePath: "/usr/bin/chromium",
		args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
	});
	const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
	const consoleErrors: string[] = [];
	page.on("console", (m) => {
		// Failed loads are checked by URL below; anything else logged as an error fails the test.
		if (m.type() === "error" && !m.text().startsWith("Failed to load resource")) consoleErrors.push(m.text());
	});
	const failedLoads: string[] = [];
	page.on("response", (r) => {
		const path = new URL(r.url()).pathname;
		if (r.status() >= 400 && path !== "/favicon.ico") failedLoads.push(`${r.status()} ${r.request().method()} ${path}`);
	});
	page.on("pageerror", (e) => consoleErrors.push(e.message));

	// Not an auditor: refused at login.
	await page.goto(`${url}/viewer/`);
	assert.match(page.url(), /\/viewer\/login$/);
	await page.fill("#token", await oidc.idToken("bob"));
	await page.click("#signin");
	assert.match(await page.textContent("#login-message") ?? "", /bob is not a member of the auditor group "auditors"/);

	// Auditor logs in.
	await page.fill("#token", await oidc.idToken("noor"));
	await page.click("#signin");
	await page.waitForSelector("#sessions");
	assert.equal(await page.locator("#sessions tbody tr").count(), 4);
	await until(async () => (await page.locator("[data-verify]", { hasText: "verifying…" }).count()) === 0, "verification badges");
	const badge = (id: string) => page.locator(`tr[data-session="${id}"] [data-verify]`).textContent();
	// This viewer has no pinned keys: it says so on the badge and above the list.
	assert.equal(await badge(sql.sessionId), "verified (bucket keys)");
	assert.match((await page.textContent("#keys-warning")) ?? "", /Unpinned recording keys\. .*whoever can write the bucket can publish a key of their own/);
	assert.equal(await badge(tampered.sessionId), "TAMPERED");
	await page.screenshot({ path: join(SCREENSHOTS, "1-list.png"), fullPage: true });

	// Filter: connection + blocked.
	await page.fill("input[name=connection]", "orders-prod");
	await page.selectOption("select[name=blocked]", "yes");
	await page.click("#apply");
	await page.waitForURL(/connection=orders-prod/);
	assert.equal(await page.locator("#sessions tbody tr").count(), 1);
	assert.match((await page.textContent("#count")) ?? "", /^1 session/);

	// SQL session: timeline with decisions and approvals, approving PR link, escaped content.
	await page.click(`tr[data-session="${sql.sessionId}"] a.open`);
	await page.waitForSelector("#timeline");
	assert.equal(await page.textContent("#verify"), "verified (bucket keys)");
	assert.equal(await page.getAttribute("#origin", "href"), "https://git.test/grants/pull/42");
	const timeline = (await page.textContent("#timeline")) ?? "";
	assert.match(timeline, /DROP TABLE customers/);
	assert.match(timeline, /no-ddl/);
	assert.match(timeline, /ar-7f3c/);
	assert.match(timeline, /by user:sam/);
	assert.equal(await page.locator("#timeline .d-block").count(), 1);
	assert.equal(await page.locator("#timeline .d-approved").count(), 2);
	assert.match(timeline, /<script>alert\(1\)<\/script>/, "recorded HTML is shown as text, not run");
	assert.equal(await page.locator("details.rows summary").textContent(), "2 captured row(s)");
	await page.click("details.rows summary");
	assert.match((await page.textContent("details.rows table")) ?? "", /<b>redacted<\/b>/, "captured values are escaped");
	await page.screenshot({ path: join(SCREENSHOTS, "2-sql-session.png"), fullPage: true });

	// Back to the full list, open the Kubernetes session.
	await page.goto(`${url}/viewer/?protocol=kubernetes`);
	await page.click(`tr[data-session="${kube.sessionId}"] a.open`);
	await page.waitForSelector("#kube");
	assert.equal(await page.locator("#kube tbody tr").count(), 3);
	assert.match((await page.textContent("#kube")) ?? "", /delete\s*namespaces.*no-namespace-delete.*403/s);
	await page.screenshot({ path: join(SCREENSHOTS, "3-kube-session.png"), fullPage: true });

	// SSH session: play it in asciinema-player.
	await page.goto(`${url}/viewer/?identity=lee&protocol=ssh`);
	await page.click(`tr[data-session="${ssh.sessionId}"] a.open`);
	await page.waitForSelector("#player .ap-player, #player .ap-wrapper", { timeout: 15_000 });
	await page.click("#player");
	await until(async () => /postgresql restarted OK/.test((await page.textContent("#player")) ?? ""), "terminal playback shows the output");
	await page.screenshot({ path: join(SCREENSHOTS, "4-ssh-playback.png"), fullPage: true });
	const castHref = await page.getAttribute("#download-cast", "href");
	const cast = await page.evaluate(async (href) => (await fetch(href!)).text(), castHref);
	assert.equal(JSON.parse(cast.split("\n")[0]!).version, 2, "the download is an asciicast v2 file");
	assert.match((await page.textContent("#timeline")) ?? "", /sudo systemctl restart postgresql.*audit-sudo/s);

	// Tampered session: the page says so, naming the object.
	await page.goto(`${url}/viewer/session?prefix=${encodeURIComponent(sessionPrefix(tampered))}`);
	assert.equal(await page.textContent("#verify"), "TAMPERED");
	assert.match((await page.textContent(".problems")) ?? "", /chunk-000001\.jsonl\.gz: modified/);

	// Sign out: back to login, pages need a token again.
	await page.goto(`${url}/viewer/`);
	await page.click("header button");
	await page.waitForURL(/\/viewer\/login$/);
	await page.goto(`${url}/viewer/`);
	assert.match(page.url(), /\/viewer\/login$/);
	assert.deepEqual(consoleErrors, []);
	assert.deepEqual(failedLoads, ["403 POST /viewer/login"], "only bob's refused login failed");
});

test("viewer in headless Chromium: sign in through the OIDC provider (code flow + PKCE); non-auditors are refused", async () => {
	browser ??= await chromium.launch({
		executablePath: "/usr/bin/chromium",
		args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
	});
	const context = await browser.newContext();
	const page = await context.newPage();
	await page.goto(`${url}/viewer/`);
	assert.match(page.url(), /\/viewer\/login$/);
	await page.fill("#login-hint", "bob");
	await page.click("#sso");
	await page.waitForURL(/\/viewer\/oidc\/callback\?/, { timeout: 15_000 });
	assert.match((await page.textContent("#login-message")) ?? "", /bob is not a member of the auditor group "auditors"/);
	assert.equal((await context.cookies()).find((c) => c.name === "drawbridge_viewer"), undefined, "no viewer session for bob");
	await context.close();
	// Noor, in her own browser.
	const context2 = await browser.newContext();
	const page2 = await context2.newPage();
	await page2.goto(`${url}/viewer/`);
	await page2.fill("#login-hint", "noor");
	await page2.click("#sso");
	await page2.waitForSelector("#sessions", { timeout: 15_000 });
	assert.match((await page2.textContent("header .who")) ?? "", /signed in as noor/);
	assert.equal(await page2.locator("#sessions tbody tr").count(), 4);
	const cookies = await context2.cookies();
	const session = cookies.find((c) => c.name === "drawbridge_viewer");
	assert.ok(session?.httpOnly, "session cookie is HttpOnly");
	assert.equal(session?.sameSite, "Strict");
	assert.equal(cookies.find((c) => c.name === "drawbridge_viewer_oidc"), undefined, "one-time OIDC state cookie is gone");
	await page2.screenshot({ path: join(SCREENSHOTS, "0-oidc-signed-in.png") });
	// A forged callback (no matching state) is refused.
	await page2.goto(`${url}/viewer/oidc/callback?code=abc&state=forged`);
	assert.match((await page2.textContent("#login-message")) ?? "", /does not match this browser's sign-in request/);
	await context2.close();
});

test("the verification says where its keys came from: the bucket (warning) or pinned (no warning)", async () => {
	const noor = await oidc.idToken("noor");
	const auth = { authorization: `Bearer ${noor}` };
	const prefix = encodeURIComponent(sessionPrefix(sql));
	let v = (await (await fetch(`${url}/viewer/api/verify?prefix=${prefix}`, { headers: auth })).json()) as { ok: boolean; keys: string };
	assert.deepEqual([v.ok, v.keys], [true, "bucket"]);
	let html = await (await fetch(`${url}/viewer/session?prefix=${prefix}`, { headers: auth })).text();
	assert.match(html, /<span class="badge warn" id="verify"[^>]*>verified \(bucket keys\)<\/span>.*a key taken from the bucket itself, not pinned/);

	// The same recordings behind a viewer given pinned keys (what --recording-trusted-keys-file does).
	const pinnedApp = Fastify();
	const identity = auditorIdentity("https://issuer.test");
	const pinned = (await loadStoreKeys(store)).set;
	await registerViewer(pinnedApp, { store, auditorGroup: "auditors", authenticate: () => identity, publicKeys: async () => pinned });
	const pinnedUrl = await pinnedApp.listen({ host: "127.0.0.1", port: 0 });
	try {
		v = (await (await fetch(`${pinnedUrl}/viewer/api/verify?prefix=${prefix}`, { headers: auth })).json()) as { ok: boolean; keys: string };
		assert.deepEqual([v.ok, v.keys], [true, "pinned"]);
		html = await (await fetch(`${pinnedUrl}/viewer/session?prefix=${prefix}`, { headers: auth })).text();
		assert.match(html, /<span class="badge ok" id="verify">verified<\/span>.*\(pinned\)/);
		assert.doesNotMatch(html, /keys-warning|bucket keys/);
		const list = await (await fetch(`${pinnedUrl}/viewer/`, { headers: auth })).text();
		assert.doesNotMatch(list, /keys-warning/);
	} finally {
		await pinnedApp.close();
	}
});
