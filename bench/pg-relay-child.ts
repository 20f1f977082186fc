/**
 * The floor for any Node.js PostgreSQL proxy on this machine: a relay that terminates TLS toward the
 * client (SSLRequest answered 'S'), opens TLS to the server (SSLRequest, verify-full), and copies bytes
 * both ways without looking at them (the client's own SCRAM login goes through to the server). No
 * parsing, no policy, no recording: what Node's TLS and stream stack alone cost per round trip.
 * `bench/pg-cpu.ts` measures it next to PgBouncer and the gateway, so the gateway's ratio can be read
 * against what Node itself allows. Not a product component.
 *
 * Usage: ./node_modules/.bin/node --import tsx bench/pg-relay-child.ts CONFIG.json
 *
 * CONFIG.json: {stateFile, tls: {certPem, keyPem}, upstream: {host, port, caPem, serverName}}; writes
 * {port} to the state file once listening. Prints nothing.
 */
import { readFileSync, writeFileSync } from "node:fs";
import { createServer, connect as netConnect, type Socket } from "node:net";
import { connect as tlsConnect, createSecureContext, TLSSocket } from "node:tls";
import { benchArgs } from "./args.ts";

type Config = {
	stateFile: string;
	tls: { certPem: string; keyPem: string };
	upstream: { host: string; port: number; caPem: string; serverName: string };
};
const { positionals } = benchArgs(import.meta.url, { options: {}, positionals: ["CONFIG.json"] });
const cfg = JSON.parse(readFileSync(positionals[0]!, "utf8")) as Config;
const serverCtx = createSecureContext({ cert: cfg.tls.certPem, key: cfg.tls.keyPem });
const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

/** Read exactly n bytes from a socket that is not yet flowing. */
function readN(s: Socket, n: number): Promise<Buffer> {
	return new Promise((resolve, reject) => {
		let got = Buffer.alloc(0);
		const onData = (c: Buffer) => {
			got = Buffer.concat([got, c]);
			if (got.length >= n) {
				s.off("data", onData);
				s.off("error", reject);
				s.pause();
				if (got.length > n) s.unshift(got.subarray(n));
				resolve(got.subarray(0, n));
			}
		};
		s.on("data", onData);
		s.once("error", reject);
	});
}

const server = createServer({ noDelay: true }, async (raw) => {
	raw.on("error", () => raw.destroy());
	try {
		const req = await readN(raw, 8);
		if (!req.equals(SSL_REQUEST)) throw new Error("relay: expected SSLRequest");
		raw.write("S");
		const client = new TLSSocket(raw, { isServer: true, secureContext: serverCtx });
		const upRaw = netConnect({ host: cfg.upstream.host, port: cfg.upstream.port, noDelay: true });
		upRaw.write(SSL_REQUEST);
		const answer = await readN(upRaw, 1);
		if (answer[0] !== 0x53) throw new Error("relay: upstream refused TLS");
		const up = tlsConnect({ socket: upRaw, ca: cfg.upstream.caPem, servername: cfg.upstream.serverName });
		const end = () => {
			client.destroy();
			up.destroy();
		};
		for (const s of [client, up]) {
			s.on("error", end);
			s.on("close", end);
		}
		client.on("data", (c: Buffer) => {
			if (!up.write(c)) {
				client.pause();
				up.once("drain", () => client.resume());
			}
		});
		up.on("data", (c: Buffer) => {
			if (!client.write(c)) {
				up.pause();
				client.once("drain", () => up.resume());
			}
		});
	} catch {
		raw.destroy();
	}
});
server.listen(0, "127.0.0.1", () => {
	const addr = server.address();
	if (addr === null || typeof addr === "string") throw new Error("relay: no port");
	writeFileSync(cfg.stateFile, JSON.stringify({ port: addr.port }));
});
