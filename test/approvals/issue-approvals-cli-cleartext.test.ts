/**
 * Red-team regression (CLI, round 10): `drawbridge approvals --server http://<another host>` sent the
 * approver's token in clear. The token is the approver's OIDC ID token, which the gateway accepts on
 * its data paths and for approving: whoever is on the path (a hotel network, a proxy, a typo'd host)
 * could approve as them or connect to production as them. `approvals login --issuer http://...` did
 * the same with the sign-in. Plain http is refused now except to this machine (exit 2, nothing sent);
 * the recordings CLI already refused it for `--keys-url`. A real HTTP server on this machine's
 * non-loopback address counts what reaches it.
 */
import assert from "node:assert/strict";
import { createServer, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { networkInterfaces } from "node:os";
import { after, before, test } from "node:test";
import { main } from "../../cli/approvals.ts";

const TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJzYW0ifQ.c2lnbmF0dXJl";
const seen: IncomingHttpHeaders[] = [];
let server: Server;
let address: string;

before(async () => {
	const external = Object.values(networkInterfaces())
		.flat()
		.find((i) => i && i.family === "IPv4" && !i.internal);
	assert.ok(external, "this machine needs a non-loopback IPv4 address for the test");
	address = external.address;
	server = createServer((req, res) => {
		seen.push(req.headers);
		res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ items: [] }));
	});
	await new Promise<void>((resolve) => server.listen(0, address, resolve));
});
after(() => new Promise<void>((resolve) => server.close(() => resolve())));

async function cli(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
	let stdout = "";
	let stderr = "";
	const code = await main(args, { env: { DRAWBRIDGE_TOKEN: TOKEN, HOME: "/nonexistent" }, stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) });
	return { code, stdout, stderr };
}

test("issue approvals-cli-cleartext: the token never goes out over plain http to another host", async () => {
	const port = (server.address() as AddressInfo).port;
	for (const command of [["list"], ["show", "ar-0123456789"], ["approve", "ar-0123456789"], ["deny", "ar-0123456789"]]) {
		const r = await cli([...command, "--server", `http://${address}:${port}`]);
		assert.equal(r.code, 2, `${command[0]}: ${r.stdout}${r.stderr}`);
		assert.match(r.stderr, /plain http: only to this machine/);
	}
	// Before: every command reached the server with `Authorization: Bearer <token>`.
	assert.deepEqual(seen.map((h) => h.authorization), [], "the token crossed the network in clear");

	const login = await cli(["login", "--issuer", `http://${address}:${port}/realms/x`, "--login-timeout-seconds", "5"]);
	assert.equal(login.code, 2, login.stderr);
	assert.match(login.stderr, /plain http: only to this machine/);
	assert.equal(seen.length, 0, "login fetched the provider's discovery in clear");
});

test("issue approvals-cli-cleartext: plain http to this machine still works (drawbridge dev, port forwards)", async () => {
	const local = createServer((_req, res) => res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ items: [] })));
	await new Promise<void>((resolve) => local.listen(0, "127.0.0.1", resolve));
	try {
		const r = await cli(["list", "--server", `http://127.0.0.1:${(local.address() as AddressInfo).port}`]);
		assert.equal(r.code, 0, r.stderr);
		assert.equal(r.stdout, "No approval requests.\n");
	} finally {
		await new Promise<void>((resolve) => local.close(() => resolve()));
	}
});
