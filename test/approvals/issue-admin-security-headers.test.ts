/**
 * Regression (red-team of the admin server): only the viewer's pages and the approvals page carried
 * security headers. Everything else the admin server answers — the approvals API (JSON holding the
 * requester's command text), the viewer's public keys, /metrics, /healthz, /readyz, the approvals
 * page's script and style, and every 404 (fastify echoes the requested path in it) — went out without
 * `X-Content-Type-Options: nosniff`, without any framing rule, and embeddable by any site. The
 * approvals page relied on CSP `frame-ancestors` alone (no `X-Frame-Options` for browsers without
 * CSP 2) to keep its Approve button out of other sites' frames. Every admin response now carries
 * nosniff, `X-Frame-Options: DENY`, `Cross-Origin-Resource-Policy: same-origin`, a Referrer-Policy,
 * and a CSP (a page's own, else one that runs and frames nothing).
 *
 * Real components: the admin server (buildAdminServer) with the approvals routes and pages over the
 * local approvals store, the recordings viewer over a directory store, a real BundleStore.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import type { FastifyInstance } from "fastify";
import { buildAdminServer } from "../../gateway/admin/server.ts";
import { registerViewer } from "../../gateway/admin/viewer.ts";
import { LocalApprovalStore } from "../../gateway/approvals/local-store.ts";
import { registerApprovalRoutes } from "../../gateway/approvals/routes.ts";
import { StoreApprovalService } from "../../gateway/approvals/service.ts";
import { BundleStore } from "../../gateway/config/store.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { tempDir } from "../recording/fixtures.ts";

let app: FastifyInstance;
let service: StoreApprovalService;

before(async () => {
	const recordings = new DirStore(await tempDir("admin-headers-store"));
	await recordings.init();
	service = new StoreApprovalService({ store: new LocalApprovalStore(), sweepIntervalMs: 0 });
	const refuse = async () => {
		throw new Error("no token");
	};
	app = await buildAdminServer({
		store: new BundleStore(),
		plugins: [
			(a) => registerApprovalRoutes(a, { service, authenticate: refuse }),
			(a) => registerViewer(a, { store: recordings, auditorGroup: "auditors", authenticate: () => undefined }),
		],
	});
	await app.ready();
});

after(async () => {
	await app?.close();
	await service?.close();
});

const ROUTES = [
	"/healthz",
	"/readyz",
	"/metrics",
	"/api/v1/approvals",
	"/api/v1/approvals/ar-0123456789",
	"/approvals",
	"/approvals/ar-0123456789?decision=approve",
	"/approvals-assets/app.js",
	"/approvals-assets/app.css",
	"/api/v1/recordings/keys",
	"/viewer/login",
	"/viewer/api/sessions",
	"/viewer/static/viewer.js",
	"/no/such/route/<script>alert(1)</script>",
];

test("issue admin-security-headers: every admin response is unsniffable, unframeable and not embeddable cross-site", async () => {
	for (const url of ROUTES) {
		const r = await app.inject({ url });
		assert.equal(r.headers["x-content-type-options"], "nosniff", url);
		assert.equal(r.headers["x-frame-options"], "DENY", url);
		assert.equal(r.headers["cross-origin-resource-policy"], "same-origin", url);
		assert.equal(r.headers["referrer-policy"], "no-referrer", url);
		assert.match(String(r.headers["content-security-policy"]), /frame-ancestors 'none'/, url);
	}
});

test("issue admin-security-headers: pages keep their own CSP; other answers get one that runs nothing", async () => {
	const page = await app.inject({ url: "/approvals" });
	assert.match(String(page.headers["content-security-policy"]), /script-src 'self'/);
	const viewer = await app.inject({ url: "/viewer/login" });
	assert.match(String(viewer.headers["content-security-policy"]), /script-src 'self' 'wasm-unsafe-eval'/);
	for (const url of ["/metrics", "/api/v1/approvals", "/no/such/route"]) {
		const r = await app.inject({ url });
		assert.match(String(r.headers["content-security-policy"]), /^default-src 'none'/, url);
		assert.doesNotMatch(String(r.headers["content-security-policy"]), /script-src/, url);
	}
});
