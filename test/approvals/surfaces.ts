/**
 * The surfaces approvers read a held command on, for display tests: a Slack stand-in (an HTTP server
 * that keeps the bodies of correctly signed POSTs), the approval service announcing to it, the real
 * admin routes behind an OIDC verifier (a real OIDC provider), and a real browser (chromium).
 */
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before } from "node:test";
import Fastify, { type FastifyInstance } from "fastify";
import { type Browser, chromium } from "playwright-core";
import { LocalApprovalStore } from "../../gateway/approvals/local-store.ts";
import { registerApprovalRoutes, verifierAuthenticator } from "../../gateway/approvals/routes.ts";
import { StoreApprovalService } from "../../gateway/approvals/service.ts";
import { verifyWebhookSignature, WebhookNotifier } from "../../gateway/approvals/webhook.ts";
import { TokenVerifier } from "../../gateway/identity/verify.ts";
import { type OidcHandle, printLogsOnFailure, startOidc } from "../env/index.ts";

/** Stands in for Slack: records the raw bodies of POSTs signed with `secret`. */
export class FakeSlackReceiver {
	readonly bodies: string[] = [];
	readonly #server: Server;
	url = "";
	constructor(secret: string) {
		this.#server = createServer((req, res) => {
			const chunks: Buffer[] = [];
			req.on("data", (c: Buffer) => chunks.push(c));
			req.on("end", () => {
				const body = Buffer.concat(chunks).toString("utf8");
				const ok = verifyWebhookSignature(secret, req.headers["drawbridge-signature"] as string | undefined, body).ok;
				if (ok) this.bodies.push(body);
				res.writeHead(ok ? 200 : 401).end(ok ? "ok" : "bad signature");
			});
		});
	}
	async start(): Promise<this> {
		await new Promise<void>((r) => this.#server.listen(0, "127.0.0.1", r));
		this.url = `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}/services/T000/B000`;
		return this;
	}
	async stop(): Promise<void> {
		this.#server.closeAllConnections();
		await new Promise<void>((r) => this.#server.close(() => r()));
	}
}

export interface ApprovalSurfaces {
	slack: FakeSlackReceiver;
	notifier: WebhookNotifier;
	service: StoreApprovalService;
	oidc: OidcHandle;
	app: FastifyInstance;
	browser: Browser;
	/** The admin routes' base URL. */
	base: string;
}

/** Starts the surfaces before the file's tests (its fields are set then) and stops them after. */
export function approvalSurfaces(secret: string): ApprovalSurfaces {
	const s = {} as ApprovalSurfaces;
	before(async () => {
		[s.slack, s.oidc] = await Promise.all([new FakeSlackReceiver(secret).start(), startOidc()]);
		s.notifier = new WebhookNotifier({ targets: [{ name: "slack", url: s.slack.url, secret, format: "slack" }], initialBackoffMs: 50 });
		s.service = new StoreApprovalService({ store: new LocalApprovalStore(), notifier: s.notifier, sweepIntervalMs: 0, waitPollIntervalMs: 300 });
		const verifier = new TokenVerifier([
			{ name: "oidc", kind: "oidc", issuer: s.oidc.issuer, audiences: ["drawbridge"], jwksUri: s.oidc.jwksUri, algorithms: ["RS256"], usernameClaim: "email" },
		]);
		s.app = Fastify();
		await registerApprovalRoutes(s.app, { service: s.service, authenticate: verifierAuthenticator(verifier) });
		await s.app.listen({ port: 0, host: "127.0.0.1" });
		s.base = `http://127.0.0.1:${(s.app.server.address() as AddressInfo).port}`;
		s.browser = await chromium.launch({ executablePath: "/usr/bin/chromium", args: ["--no-sandbox"] });
	});
	after(async () => {
		await s.browser?.close();
		await s.app?.close();
		await s.service?.close();
		s.notifier?.close();
		await s.slack?.stop();
		await s.oidc?.stop();
	});
	printLogsOnFailure(() => [["oidc", s.oidc]]);
	return s;
}
