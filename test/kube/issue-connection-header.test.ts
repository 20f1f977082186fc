/**
 * Regression: the agent's `Connection` header on upgrade requests (red-team round 8, through the real
 * gateway to a real kube-apiserver).
 *
 * For upgrade requests (exec, attach, port-forward, WebSocket watches) the gateway forwarded the
 * agent's `Connection` header as it came. Its options name hop-by-hop header fields, and an HTTP
 * intermediary must remove the fields it names before forwarding (RFC 9110 section 7.6.1; Go's
 * httputil.ReverseProxy does, and so do the L7 proxies, auth proxies and load balancers put in front
 * of apiservers). So an agent sending `Connection: Upgrade, Impersonate-User, Impersonate-Group` had
 * such a proxy strip the gateway's own impersonation headers: the request then ran as the gateway's
 * credential (typically cluster-admin), past the agent's RBAC. The gateway now sends its own
 * `Connection: Upgrade` and never the agent's options. Here the proxy is a small RFC-conformant one
 * between gateway and apiserver, the gateway authenticating with a service-account bearer token (a
 * client certificate does not pass a TLS-terminating proxy).
 */
import assert from "node:assert/strict";
import type http from "node:http";
import https from "node:https";
import type { Duplex } from "node:stream";
import { after, before, test } from "node:test";
import { type KubeListener, startKubeListener } from "../../gateway/kube/listener.ts";
import { issueCert, type KubeHandle, startKube } from "../env/index.ts";
import { approvalService, makeBundle, MemoryRecorder, storeWith, type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";
import { httpsText, kubeConnection, userGrant } from "./fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;
let proxy: https.Server;
/** Connection options the proxy saw on upgrade requests, lower case. */
const seenOptions: string[][] = [];
/** Header names the proxy received from the gateway, per request. */
const seenNames: string[][] = [];

/**
 * An HTTP/1.1 intermediary doing what RFC 9110 7.6.1 asks: remove the fields the Connection header
 * names, and the Connection header itself, then send its own (`Upgrade` for an upgrade).
 */
function conformantHeaders(raw: http.IncomingHttpHeaders, apiserverHost: string): http.OutgoingHttpHeaders {
	const options = String(raw.connection ?? "")
		.split(",")
		.map((o) => o.trim().toLowerCase())
		.filter((o) => o !== "");
	seenOptions.push(options);
	seenNames.push(Object.keys(raw));
	const out: http.OutgoingHttpHeaders = {};
	for (const [k, v] of Object.entries(raw)) if (v !== undefined && k !== "connection" && k !== "host" && !options.includes(k)) out[k] = v;
	out.host = apiserverHost;
	if (raw.upgrade) out.connection = "Upgrade";
	return out;
}

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	await kube.createNamespace("prod");
	await kube.kubectl(["-n", "prod", "create", "secret", "generic", "db", "--from-literal=password=hunter2-prod"]);
	// The gateway's own identity: a service account with cluster-admin (as gateways are often set up).
	assert.equal((await kube.kubectl(["-n", "kube-system", "create", "serviceaccount", "drawbridge"])).code, 0);
	const crb = await kube.kubectl(["create", "clusterrolebinding", "drawbridge-admin", "--clusterrole=cluster-admin", "--serviceaccount=kube-system:drawbridge"]);
	assert.equal(crb.code, 0, crb.stderr);
	const tok = await kube.kubectl(["-n", "kube-system", "create", "token", "drawbridge", "--duration=1h"]);
	assert.equal(tok.code, 0, tok.stderr);
	// The agent, lee, has no RBAC at all in the cluster.

	const upstream = new URL(kube.url);
	const cert = await issueCert(kube.ca, { cn: "front-proxy", ips: ["127.0.0.1"], dns: ["localhost"], name: "front-proxy-conn" });
	proxy = https.createServer({ cert: cert.certPem, key: cert.keyPem }, (req, res) => {
		const up = https.request(
			{ hostname: upstream.hostname, port: upstream.port, method: req.method, path: req.url, ca: kube.caPem, headers: conformantHeaders(req.headers, upstream.host) },
			(ures) => {
				res.writeHead(ures.statusCode ?? 502, ures.headers);
				ures.pipe(res);
			},
		);
		up.on("error", () => res.destroy());
		req.pipe(up);
	});
	proxy.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
		socket.on("error", () => {});
		const up = https.request({
			hostname: upstream.hostname,
			port: upstream.port,
			method: req.method,
			path: req.url,
			ca: kube.caPem,
			headers: conformantHeaders(req.headers, upstream.host),
		});
		const relay = (ures: http.IncomingMessage, usocket?: Duplex, uhead?: Buffer) => {
			let text = `HTTP/1.1 ${ures.statusCode} ${ures.statusMessage}\r\n`;
			for (let i = 0; i < ures.rawHeaders.length; i += 2) {
				const name = ures.rawHeaders[i]!.toLowerCase();
				if (!usocket && (name === "connection" || name === "transfer-encoding" || name === "content-length")) continue;
				text += `${ures.rawHeaders[i]}: ${ures.rawHeaders[i + 1]}\r\n`;
			}
			if (usocket) {
				socket.write(`${text}\r\n`);
				if (uhead?.length) socket.write(uhead);
				if (head.length) usocket.write(head);
				usocket.pipe(socket).pipe(usocket);
				return;
			}
			const chunks: Buffer[] = [];
			ures.on("data", (c: Buffer) => chunks.push(c));
			ures.on("end", () => {
				const body = Buffer.concat(chunks);
				socket.end(Buffer.concat([Buffer.from(`${text}content-length: ${body.length}\r\nconnection: close\r\n\r\n`), body]));
			});
		};
		up.on("upgrade", (ures, usocket, uhead) => relay(ures, usocket, uhead));
		up.on("response", (ures) => relay(ures));
		up.on("error", () => socket.destroy());
		up.end();
	});
	await new Promise<void>((resolve) => proxy.listen(0, "127.0.0.1", resolve));
	const port = (proxy.address() as { port: number }).port;

	const connection = { ...kubeConnection(kube), port, kubernetes: { server: `https://127.0.0.1:${port}`, caPem: kube.caPem } };
	const gwCert = await issueCert(kube.ca, { cn: "drawbridge-gateway", ips: ["127.0.0.1"], dns: ["localhost"], name: "gateway-kube-conn" });
	const store = storeWith(
		makeBundle(issuer, {
			connections: [connection],
			grants: [userGrant("lee", { namespaces: ["prod"], verbs: ["get", "list", "watch"], resources: ["secrets"] })],
			credentials: { "kube-gw": { type: "kubernetes", token: tok.stdout.trim() } },
		}),
	);
	gw = await startKubeListener({ store, recorder: new MemoryRecorder(), approvals: approvalService(), tls: { certPem: gwCert.certPem, keyPem: gwCert.keyPem } });
});

after(async () => {
	await gw?.close();
	await new Promise<void>((resolve) => (proxy ? proxy.close(() => resolve()) : resolve()));
	proxy?.closeAllConnections();
	await kube?.stop();
});

async function upgradeGet(connection: string): Promise<{ status: number; text: string }> {
	const token = await issuer.token("lee");
	return httpsText(
		{
			hostname: "127.0.0.1",
			port: gw.address.port,
			method: "GET",
			path: "/k8s/cluster-prod/api/v1/namespaces/prod/secrets",
			ca: kube.caPem,
			agent: false,
			headers: { authorization: `Bearer ${token}`, connection, upgrade: "websocket" },
		},
		undefined,
		30_000,
	);
}

test("an agent's Connection options never reach the apiserver's side: a conformant proxy keeps the gateway's impersonation", async () => {
	// The agent alone: RBAC refuses lee (the gateway impersonates it).
	const plain = await upgradeGet("Upgrade");
	assert.equal(plain.status, 403, plain.text);
	assert.match(plain.text, /User \\"lee\\" cannot list resource \\"secrets\\"/);
	assert.doesNotMatch(plain.text, /hunter2/);
	// Naming the impersonation headers as hop-by-hop: on the old code the proxy removed them and the
	// apiserver answered the gateway's own identity, cluster-admin: 200 and every Secret of prod.
	for (const connection of ["Upgrade, Impersonate-User, Impersonate-Group", "upgrade,impersonate-user", "Upgrade, Authorization"]) {
		seenOptions.length = 0;
		const r = await upgradeGet(connection);
		assert.notEqual(r.status, 200, `${connection}: ${r.text.slice(0, 200)}`);
		assert.doesNotMatch(r.text, /hunter2|cHJvZA|aHVudGVy/, connection);
		assert.deepEqual(seenOptions, [["upgrade"]], connection);
	}
});

test("an agent's X-Remote-* headers never reach the apiserver's side (they would name the user to a front-proxy-trusting apiserver)", async () => {
	const token = await issuer.token("lee");
	seenNames.length = 0;
	const r = await httpsText({
		hostname: "127.0.0.1",
		port: gw.address.port,
		method: "GET",
		path: "/k8s/cluster-prod/api/v1/namespaces/prod/secrets",
		ca: kube.caPem,
		agent: false,
		headers: {
			authorization: `Bearer ${token}`,
			"X-Remote-User": "system:admin",
			"x-remote-group": "system:masters",
			"X-Remote-Extra-Scopes": "all",
			"X-Remote-Uid": "0",
		},
	});
	assert.equal(r.status, 403, r.text);
	assert.equal(seenNames.length, 1);
	assert.deepEqual(
		seenNames[0]!.filter((n) => n.startsWith("x-remote-")),
		[],
		`forwarded: ${seenNames[0]!.join(", ")}`,
	);
	assert.ok(seenNames[0]!.includes("impersonate-user"));
});
