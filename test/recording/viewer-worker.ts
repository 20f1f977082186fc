/**
 * The auditor viewer on a real fastify server in a worker thread, for tests whose attack would block
 * an event loop: the test thread stays free to notice that the server stopped answering. Every
 * request with a bearer header is signed in as an auditor (the viewer's sign-in is tested elsewhere).
 * workerData: { dir } (a DirStore root). Posts { port } once listening.
 */
import { parentPort, workerData } from "node:worker_threads";
import Fastify from "fastify";
import { registerViewer } from "../../gateway/admin/viewer.ts";
import { DirStore } from "../../gateway/recording/store.ts";

const store = new DirStore((workerData as { dir: string }).dir);
await store.init();
const app = Fastify();
await registerViewer(app, {
	store,
	auditorGroup: "auditors",
	authenticate: () => ({
		issuer: "https://idp.test",
		issuerKind: "oidc",
		subject: "noor",
		username: "noor",
		groups: ["auditors"],
		tokenExpiresAt: new Date(Date.now() + 600_000),
		claims: {},
	}),
});
await app.listen({ host: "127.0.0.1", port: 0 });
const address = app.server.address();
parentPort!.postMessage({ port: typeof address === "object" && address ? address.port : 0 });
