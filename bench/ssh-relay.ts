/**
 * The floor for any Node.js SSH relay built on ssh2: an ssh2 Server that accepts any authentication,
 * opens one ssh2 Client connection to the target per client connection (with the bench's key), runs each
 * exec there, and pipes the channel's stdout/stderr/stdin with nothing else: no certificate check, no
 * grant, no guardrail, no recording, none of the gateway's session code. What ssh2 and Node alone cost
 * per MiB relayed. `bench/ssh.ts` measures it in the same interleaved runs as the direct path and the
 * gateway, so the gateway's own overhead can be read apart from the library's. Not a product component.
 *
 * Same TCP options (noDelay on the accepted socket) and the same gateway → target cipher/MAC preference
 * as the gateway, so only the gateway's own code differs.
 */
import { type AddressInfo, createServer } from "node:net";
import ssh2 from "ssh2";
import type { ClientChannel, Connection, ServerChannel } from "ssh2";

const { Server, Client } = ssh2;

export interface BareRelayOptions {
	hostKeyPem: string;
	upstream: { host: string; port: number; username: string; privateKey: string };
	ciphers: readonly string[];
	hmacs: readonly string[];
}

export interface BareRelay {
	address: AddressInfo;
	close(): Promise<void>;
}

function relayChannel(ch: ServerChannel, up: ClientChannel): void {
	let exitCode: number | undefined;
	up.on("exit", (code: number | null) => {
		if (code !== null) exitCode = code;
	});
	up.pipe(ch, { end: false });
	up.stderr.pipe(ch.stderr, { end: false });
	ch.pipe(up, { end: false });
	ch.on("end", () => up.end());
	let ends = 0;
	const ended = () => {
		if (++ends < 2) return;
		// Zero-length write: completes after every byte piped before it.
		ch.write(Buffer.alloc(0), () => {
			if (exitCode !== undefined) ch.exit(exitCode);
			ch.end();
			ch.close();
		});
	};
	up.on("end", ended);
	up.stderr.on("end", ended);
	ch.on("close", () => up.close());
}

function onClient(client: Connection, opts: BareRelayOptions): void {
	client.on("error", () => {});
	client.on("authentication", (ctx) => ctx.accept());
	let upstream: Promise<InstanceType<typeof Client>> | undefined;
	const connectUp = () => {
		upstream ??= new Promise((resolve, reject) => {
			const c = new Client();
			c.on("ready", () => resolve(c));
			c.on("error", reject);
			c.connect({
				...opts.upstream,
				algorithms: { cipher: [...opts.ciphers] as never, hmac: [...opts.hmacs] as never },
			});
			client.on("close", () => c.end());
		});
		return upstream;
	};
	client.on("ready", () => {
		client.on("session", (accept) => {
			const session = accept();
			session.on("exec", (acceptExec, _reject, info) => {
				const ch = acceptExec();
				void connectUp().then(
					(c) =>
						c.exec(info.command, (err, up) => {
							if (err) {
								ch.exit(255);
								ch.close();
								return;
							}
							relayChannel(ch, up);
						}),
					() => {
						ch.exit(255);
						ch.close();
					},
				);
			});
		});
	});
}

export async function startBareSshRelay(opts: BareRelayOptions): Promise<BareRelay> {
	const server = new Server({ hostKeys: [opts.hostKeyPem], ident: "bare-relay" }, (client) => onClient(client, opts));
	const net = createServer({ noDelay: true }, (sock) => server.injectSocket(sock));
	await new Promise<void>((resolve) => net.listen(0, "127.0.0.1", resolve));
	return {
		address: net.address() as AddressInfo,
		close: () =>
			new Promise<void>((resolve) => {
				net.close(() => resolve());
				server.close();
			}),
	};
}
