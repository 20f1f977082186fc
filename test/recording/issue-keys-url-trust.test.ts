/**
 * Regression (red-team of recording verification's trust anchor): `recordings verify|show --keys-url
 * URL` pins the keys a gateway serves, and its results read "pinned". It took any URL: plain
 * `http://` to another host (whoever is on the path, or answers for the name, serves their own key and
 * every recording they forge verifies as pinned), and it followed redirects (to any host, or from
 * https down to plain http). It now requires https (plain http only on a loopback address, as for
 * issuers' JWKS), refuses redirects, and reads at most 1 MiB.
 */
import assert from "node:assert/strict";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { after, before, test } from "node:test";
import { type CliIo, main } from "../../cli/recordings.ts";
import { generateRecordingKey } from "../../gateway/recording/keys.ts";
import { DirStore } from "../../gateway/recording/store.ts";
import { makeRecorder, meta, sqlEvents, tempDir } from "./fixtures.ts";

function io() {
	const out: string[] = [];
	const err: string[] = [];
	const cli: CliIo = { env: {}, stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), stderrIsTty: false, sleep: async () => {} };
	return { cli, out: () => out.join(""), err: () => err.join("") };
}

let root: string;
let server: Server;
let base: string;
const m = meta();

before(async () => {
	root = await tempDir("keys-url");
	const store = new DirStore(root);
	await store.init();
	const { rec, key } = await makeRecorder(store, await tempDir("keys-url-spool"));
	try {
		const s = await rec.openSession(m);
		for (const e of sqlEvents(2)) s.emit(e);
		await s.close({ reason: "client-closed" });
		await rec.drain(20_000);
	} finally {
		await rec.stop();
	}
	const other = (await generateRecordingKey()).key;
	server = createServer((req, res) => {
		if (req.url === "/keys") return void res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: [key.publicJwk] }));
		// Where an attacker sends the auditor: a key set of their own.
		if (req.url === "/elsewhere") return void res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: [other.publicJwk, key.publicJwk] }));
		if (req.url === "/redirect") return void res.writeHead(302, { location: "/elsewhere" }).end();
		if (req.url === "/huge") return void res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ keys: [key.publicJwk], pad: "x".repeat(2 * 1024 * 1024) }));
		res.writeHead(404).end();
	});
	await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
	base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});

after(() => new Promise<void>((r) => server.close(() => r())));

test("--keys-url over plain http to another host, or not http(s), is refused before anything is fetched", async () => {
	for (const url of ["http://gateway-admin.example.test/api/v1/recordings/keys", "http://10.0.0.7:8080/api/v1/recordings/keys", "ftp://gateway.example.test/keys", "file:///etc/keys.json"]) {
		const r = io();
		assert.equal(await main(["verify", m.sessionId, "--dir", root, "--keys-url", url], r.cli), 2, url);
		assert.match(r.err(), /--keys-url must be https: \(plain http: only on a loopback address\)/, url);
		assert.equal(r.out(), "");
	}
});

test("--keys-url on loopback works; a redirect or an oversized answer is refused", async () => {
	let r = io();
	assert.equal(await main(["verify", m.sessionId, "--dir", root, "--keys-url", `${base}/keys`], r.cli), 0, r.err());
	assert.match(r.out(), /manifest signed by pinned key/);

	r = io();
	assert.equal(await main(["verify", m.sessionId, "--dir", root, "--keys-url", `${base}/redirect`], r.cli), 3);
	assert.match(r.err(), /cannot fetch recording keys from .*\/redirect/);
	assert.equal(r.out(), "");

	r = io();
	assert.equal(await main(["verify", m.sessionId, "--dir", root, "--keys-url", `${base}/huge`], r.cli), 3);
	assert.match(r.err(), /larger than 1048576 bytes/);
});
