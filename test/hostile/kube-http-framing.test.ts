/**
 * HTTP framing against the Kubernetes listener (red-team round 7: checked and holding, kept as
 * regressions). Raw TLS to the real gateway in front of a real kube-apiserver:
 * - pipelined requests in one write, and kept-alive requests on one connection, each carrying a
 *   different token: each request is authenticated and decided on its own token, never the
 *   connection's first;
 * - request smuggling forms (`Transfer-Encoding: chunked` together with `Content-Length`, a
 *   `Transfer-Encoding` other than chunked, duplicate `Content-Length`, whitespace before a colon):
 *   refused by Node's parser with 400 before the gateway sees them, so nothing reaches the apiserver
 *   with a framing the two could read differently.
 */
import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import tls from "node:tls";
import type { KubeListener } from "../../gateway/kube/listener.ts";
import { type KubeHandle, startKube } from "../env/index.ts";
import { type TokenIssuer, tokenIssuer } from "../ssh/fixtures.ts";
import { kubeGateway, userGrant } from "../kube/fixtures.ts";

let kube: KubeHandle;
let gw: KubeListener;
let issuer: TokenIssuer;

before(async () => {
	[issuer, kube] = await Promise.all([tokenIssuer(), startKube()]);
	await kube.createNamespace("prod");
	const crb = await kube.kubectl(["create", "clusterrolebinding", "agents-admin", "--clusterrole=cluster-admin", "--group=agents"]);
	assert.equal(crb.code, 0, crb.stderr);
	gw = await kubeGateway(
		issuer,
		kube,
		{
			grants: [
				userGrant("reader", { namespaces: ["prod"], verbs: ["get", "list"], resources: ["configmaps"] }),
				userGrant("writer", { namespaces: ["prod"], verbs: ["*"], resources: ["configmaps"] }),
			],
		},
		"gateway-kube-framing",
	);
});

after(async () => {
	await gw?.close();
	await kube?.stop();
});

/** Writes `raw` on one TLS connection and returns everything read until the server closes or goes quiet. */
function exchange(raw: string, quietMs = 1500): Promise<string> {
	return new Promise((resolve, reject) => {
		const s = tls.connect({ host: "127.0.0.1", port: gw.address.port, ca: kube.caPem, servername: "localhost" }, () => s.write(raw));
		let out = "";
		let timer: NodeJS.Timeout | undefined;
		const arm = () => {
			if (timer) clearTimeout(timer);
			timer = setTimeout(() => s.end(), quietMs);
		};
		s.on("data", (c: Buffer) => {
			out += c.toString();
			arm();
		});
		s.on("close", () => {
			if (timer) clearTimeout(timer);
			resolve(out);
		});
		s.on("error", reject);
		arm();
	});
}

const statuses = (text: string) => [...text.matchAll(/HTTP\/1\.1 (\d{3}) /g)].map((m) => Number(m[1]));

test("pipelined and kept-alive requests are each decided on their own token", async () => {
	const reader = await issuer.token("reader", { groups: ["agents"] });
	const writer = await issuer.token("writer", { groups: ["agents"] });
	const del = (token: string, name: string) =>
		`DELETE /k8s/cluster-prod/api/v1/namespaces/prod/configmaps/${name} HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${token}\r\n\r\n`;
	for (const name of ["one", "two"]) assert.equal((await kube.request("POST", "/api/v1/namespaces/prod/configmaps", { metadata: { name } })).status, 201);
	// The writer first, then the reader on the same connection: the reader's delete is refused.
	const text = await exchange(del(writer, "one") + del(reader, "two") + del("not-a-token", "two"));
	assert.deepEqual(statuses(text), [200, 403, 401], text);
	assert.equal((await kube.request("GET", "/api/v1/namespaces/prod/configmaps/one")).status, 404);
	assert.equal((await kube.request("GET", "/api/v1/namespaces/prod/configmaps/two")).status, 200);
});

test("smuggling forms are refused by the parser with 400; nothing reaches the apiserver", async () => {
	const token = await issuer.token("writer", { groups: ["agents"] });
	const head = `POST /k8s/cluster-prod/api/v1/namespaces/prod/configmaps HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${token}\r\nContent-Type: application/json\r\n`;
	const smuggled = `DELETE /k8s/cluster-prod/api/v1/namespaces/prod/configmaps/keep HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer ${token}\r\n\r\n`;
	assert.equal((await kube.request("POST", "/api/v1/namespaces/prod/configmaps", { metadata: { name: "keep" } })).status, 201);
	const body = '{"metadata":{"name":"x"}}';
	const forms = [
		`${head}Content-Length: ${body.length}\r\nTransfer-Encoding: chunked\r\n\r\n${body.length.toString(16)}\r\n${body}\r\n0\r\n\r\n${smuggled}`,
		`${head}Transfer-Encoding: gzip, chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n${smuggled}`,
		`${head}Content-Length: ${body.length}\r\nContent-Length: 0\r\n\r\n${body}${smuggled}`,
		`${head}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n${smuggled}`,
	];
	for (const raw of forms) {
		const text = await exchange(raw);
		assert.deepEqual(statuses(text), [400], `${JSON.stringify(raw.slice(head.length, head.length + 60))}: ${text}`);
	}
	assert.equal((await kube.request("GET", "/api/v1/namespaces/prod/configmaps/keep")).status, 200);
	assert.equal((await kube.request("GET", "/api/v1/namespaces/prod/configmaps/x")).status, 404);
});
