/**
 * The operator's HTTP endpoints (every replica serves them, leader or not):
 *   GET  /healthz                          process is alive
 *   GET  /readyz                           caches synced, signing keys loaded
 *   GET  /metrics                          Prometheus text format
 *   GET  /.well-known/jwks.json (/jwks.json) the public signing keys (operator tokens)
 *   GET  /.well-known/openid-configuration issuer + jwks_uri, so OIDC-style verifiers can discover keys
 *   GET  /ssh/user-ca.pub, /ssh/upstream-ca.pub  SSH CA public keys (gateway / target sshd TrustedUserCAKeys)
 *   POST /webhook/<namespace>/<gitsource>  GitHub / Gitea push webhook (HMAC verified) → sync now
 * The bundle itself is not served over HTTP: it holds backend secrets, and the Secret gateways watch
 * is already a push channel with Kubernetes RBAC in front of it.
 */

import { type IncomingMessage, type Server, type ServerResponse, createServer } from "node:http";
import type { AddressInfo } from "node:net";
import type { Logger } from "pino";
import type { OperatorMetrics } from "./metrics.ts";

export interface ServerHandlers {
	ready(): boolean;
	jwks(): { keys: Record<string, string>[] } | undefined;
	sshCaPublicKeys(): { user: string; upstream: string } | undefined;
	issuer: string;
	/** Verifies and acts on a webhook; returns the HTTP status and a short message. */
	webhook(namespace: string, name: string, headers: IncomingMessage["headers"], body: Buffer): Promise<{ status: number; message: string }>;
}

const MAX_BODY = 1 << 20;

function send(res: ServerResponse, status: number, body: string, type = "text/plain; charset=utf-8"): void {
	res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
	res.end(body);
}

export class OperatorServer {
	private server: Server | undefined;

	constructor(
		private readonly h: ServerHandlers,
		private readonly metrics: OperatorMetrics,
		private readonly log: Logger,
	) {}

	async listen(host: string, port: number): Promise<AddressInfo> {
		this.server = createServer((req, res) => void this.handle(req, res));
		this.server.requestTimeout = 30_000;
		await new Promise<void>((resolve, reject) => {
			this.server!.once("error", reject);
			this.server!.listen(port, host, () => resolve());
		});
		return this.server.address() as AddressInfo;
	}

	async close(): Promise<void> {
		if (!this.server) return;
		this.server.closeAllConnections();
		await new Promise<void>((r) => this.server!.close(() => r()));
	}

	private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
		const url = new URL(req.url ?? "/", "http://operator");
		try {
			if (req.method === "GET" && url.pathname === "/healthz") return send(res, 200, "ok\n");
			if (req.method === "GET" && url.pathname === "/readyz") return this.h.ready() ? send(res, 200, "ready\n") : send(res, 503, "not ready\n");
			if (req.method === "GET" && url.pathname === "/metrics") return send(res, 200, await this.metrics.registry.metrics(), this.metrics.registry.contentType);
			if (req.method === "GET" && (url.pathname === "/.well-known/jwks.json" || url.pathname === "/jwks.json")) {
				const jwks = this.h.jwks();
				return jwks ? send(res, 200, JSON.stringify(jwks), "application/jwk-set+json") : send(res, 503, "signing keys not loaded\n");
			}
			if (req.method === "GET" && (url.pathname === "/ssh/user-ca.pub" || url.pathname === "/ssh/upstream-ca.pub")) {
				const cas = this.h.sshCaPublicKeys();
				if (!cas) return send(res, 503, "SSH CA not loaded\n");
				return send(res, 200, `${url.pathname === "/ssh/user-ca.pub" ? cas.user : cas.upstream}\n`);
			}
			if (req.method === "GET" && url.pathname === "/.well-known/openid-configuration") {
				const iss = this.h.issuer.replace(/\/+$/, "");
				return send(res, 200, JSON.stringify({ issuer: this.h.issuer, jwks_uri: `${iss}/.well-known/jwks.json`, id_token_signing_alg_values_supported: ["EdDSA"] }), "application/json");
			}
			const m = /^\/webhook\/([a-z0-9][-a-z0-9]*)\/([a-z0-9][-a-z0-9.]*)$/.exec(url.pathname);
			if (m) {
				if (req.method !== "POST") return send(res, 405, "POST only\n");
				const chunks: Buffer[] = [];
				let size = 0;
				for await (const c of req) {
					size += (c as Buffer).length;
					if (size > MAX_BODY) return send(res, 413, "body too large\n");
					chunks.push(c as Buffer);
				}
				const r = await this.h.webhook(m[1]!, m[2]!, req.headers, Buffer.concat(chunks));
				return send(res, r.status, `${r.message}\n`);
			}
			send(res, 404, "not found\n");
		} catch (e) {
			this.log.error({ err: (e as Error).message, path: url.pathname }, "http handler failed");
			if (!res.headersSent) send(res, 500, "internal error\n");
		}
	}
}
