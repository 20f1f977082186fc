// Regression (hardening finding): the SSH listener had no handshake/authentication deadline, so a
// TCP client that connected and never spoke — or spoke its identification line and then stalled —
// held its socket forever (an easy way to exhaust the gateway). Now the raw socket is cut.
import assert from "node:assert/strict";
import { createConnection, type Socket } from "node:net";
import { after, before, test } from "node:test";
import { startSshListener, type SshListener } from "../../gateway/ssh/listener.ts";
import { approvalService, makeBundle, MemoryRecorder, storeWith, tokenIssuer } from "./fixtures.ts";
import { KeyDir } from "./keys.ts";

let gw: SshListener;
const keys = new KeyDir();

before(async () => {
	const issuer = await tokenIssuer();
	gw = await startSshListener({
		store: storeWith(makeBundle(issuer, {})),
		recorder: new MemoryRecorder(),
		approvals: approvalService(),
		hostKeyPem: keys.keygen("ed25519").privateKey,
		authTimeoutMs: 1000,
	});
});
after(async () => {
	await gw?.close();
	keys.cleanup();
});

function closedWithin(sock: Socket, ms: number): Promise<boolean> {
	return new Promise((resolve) => {
		const t = setTimeout(() => resolve(false), ms);
		sock.on("close", () => {
			clearTimeout(t);
			resolve(true);
		});
		sock.on("error", () => {});
	});
}

test("a client that connects and never speaks is cut at the deadline", async () => {
	const sock = createConnection({ host: "127.0.0.1", port: gw.address.port });
	sock.on("data", () => {});
	assert.equal(await closedWithin(sock, 10_000), true);
});

test("a client that sends its identification and then stalls is cut too", async () => {
	const sock = createConnection({ host: "127.0.0.1", port: gw.address.port });
	sock.on("connect", () => sock.write("SSH-2.0-OpenSSH_9.2\r\n"));
	sock.on("data", () => {});
	assert.equal(await closedWithin(sock, 10_000), true);
});
