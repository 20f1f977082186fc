/**
 * The admin server (fastify): health, readiness, Prometheus metrics, and whatever plugins the
 * gateway registers (approvals API, recordings viewer). Built by `buildAdminServer()` and listened
 * separately, so tests can `inject()` or listen on port 0 (STYLE 10).
 */
import Fastify, { type FastifyInstance } from "fastify";
import { collectDefaultMetrics, Gauge, Registry } from "prom-client";
import type { BundleStore } from "../config/store.ts";

export interface AdminServerOptions {
	store: BundleStore;
	registry?: Registry;
	/** Extra readiness checks (e.g. recorder spool writable); each returns an error string or undefined. */
	readinessChecks?: (() => string | undefined)[];
	/** Plugins registered after the core routes (approvals API, viewer). */
	plugins?: ((app: FastifyInstance) => Promise<void> | void)[];
	logger?: boolean;
}

export async function buildAdminServer(options: AdminServerOptions): Promise<FastifyInstance> {
	const registry = options.registry ?? new Registry();
	if (!options.registry) collectDefaultMetrics({ register: registry, prefix: "drawbridge_gateway_" });
	const bundleVersion = new Gauge({
		name: "drawbridge_gateway_bundle_version",
		help: "Version of the config bundle this gateway runs (0 before the first bundle).",
		registers: [registry],
		collect() {
			this.set(options.store.loaded ? options.store.current.version : 0);
		},
	});
	void bundleVersion;

	const app = Fastify({ logger: options.logger ?? false, bodyLimit: 1024 * 1024 });
	// Every answer of the admin server, not only the viewer's and approvals' pages: the JSON APIs
	// (which carry recorded and requested text), metrics, health, the assets and the 404s are never
	// sniffed into another type, framed, or embedded by another site, send no Referer, and are not
	// stored by caches. A page that sets its own CSP (or cache policy) keeps it; everything else gets
	// one that runs and frames nothing.
	app.addHook("onSend", async (_request, reply, payload) => {
		reply.header("x-content-type-options", "nosniff");
		reply.header("x-frame-options", "DENY");
		reply.header("cross-origin-resource-policy", "same-origin");
		if (!reply.hasHeader("content-security-policy")) reply.header("content-security-policy", "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'");
		if (!reply.hasHeader("referrer-policy")) reply.header("referrer-policy", "no-referrer");
		// The approvals API answers with requested commands and who asked, for a bearer token: nothing is
		// kept in a browser's or proxy's cache unless a route says otherwise (static assets, public keys).
		if (!reply.hasHeader("cache-control")) reply.header("cache-control", "no-store");
		return payload;
	});
	app.get("/healthz", async () => ({ status: "ok" }));
	app.get("/readyz", async (_req, reply) => {
		const problems: string[] = [];
		if (!options.store.loaded) problems.push("no config bundle loaded yet");
		for (const check of options.readinessChecks ?? []) {
			const problem = check();
			if (problem) problems.push(problem);
		}
		if (problems.length > 0) return reply.code(503).send({ status: "not ready", problems });
		return { status: "ready", bundleVersion: options.store.current.version, bundleHash: options.store.current.bundle.hash };
	});
	app.get("/metrics", async (_req, reply) => {
		reply.header("content-type", registry.contentType);
		return registry.metrics();
	});
	for (const plugin of options.plugins ?? []) await plugin(app);
	return app;
}
