/** A raw protocol client for tests: our own serializers and parser over TLS, message by message. */
import { connect, type Socket } from "node:net";
import { connect as tlsConnect, type TLSSocket } from "node:tls";
import type { ServerMessage } from "../../gateway/postgres/protocol.ts";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { decodeServerMessage, ServerParser } from "../../gateway/postgres/server-parser.ts";

export class RawClient {
	private readonly parser = new ServerParser();
	private readonly queue: ServerMessage[] = [];
	private waiter: (() => void) | undefined;
	closed = false;

	private constructor(readonly socket: Socket | TLSSocket) {
		socket.on("data", (c: Buffer) => {
			this.parser.push(c);
			for (let f = this.parser.next(); f; f = this.parser.next()) this.queue.push(decodeServerMessage(f));
			this.waiter?.();
		});
		socket.on("close", () => {
			this.closed = true;
			this.waiter?.();
		});
		socket.on("error", () => undefined);
	}

	/** TCP (and TLS unless `plain`) to the gateway, without startup. */
	static async open(port: number, caPem: string, plain = false): Promise<RawClient> {
		const raw = await new Promise<Socket>((resolve, reject) => {
			const s = connect(port, "127.0.0.1", () => resolve(s));
			s.once("error", reject);
		});
		if (plain) return new RawClient(raw);
		raw.write(clientMessages.sslRequest());
		await new Promise<void>((resolve, reject) =>
			raw.once("data", (b: Buffer) => (b[0] === 0x53 ? resolve() : reject(new Error("TLS refused")))),
		);
		const tls = await new Promise<TLSSocket>((resolve, reject) => {
			const t = tlsConnect({ socket: raw, ca: caPem, servername: "localhost" }, () => resolve(t));
			t.once("error", reject);
		});
		return new RawClient(tls);
	}

	static async login(port: number, caPem: string, database: string, token: string): Promise<RawClient> {
		const c = await RawClient.open(port, caPem);
		c.send(clientMessages.startup({ user: "agent", database }));
		const auth = await c.next();
		if (auth.type !== "authentication" || auth.auth !== 3) throw new Error(`expected cleartext request, got ${JSON.stringify(auth)}`);
		c.send(clientMessages.password(token));
		for (;;) {
			const m = await c.next();
			if (m.type === "errorResponse") throw new Error(JSON.stringify(m));
			if (m.type === "readyForQuery") return c;
		}
	}

	send(...bufs: Buffer[]): void {
		this.socket.write(Buffer.concat(bufs));
	}

	async next(timeoutMs = 10_000): Promise<ServerMessage> {
		const deadline = Date.now() + timeoutMs;
		while (this.queue.length === 0) {
			if (this.closed) throw new Error("connection closed");
			if (Date.now() > deadline) throw new Error("timeout waiting for a message");
			await new Promise<void>((resolve) => {
				const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
				this.waiter = () => {
					clearTimeout(t);
					resolve();
				};
			});
			this.waiter = undefined;
		}
		return this.queue.shift()!;
	}

	/** Messages up to and including the first of `type`. */
	async until(type: ServerMessage["type"], timeoutMs = 10_000): Promise<ServerMessage[]> {
		const out: ServerMessage[] = [];
		for (;;) {
			const m = await this.next(timeoutMs);
			out.push(m);
			if (m.type === type) return out;
		}
	}

	/** Everything until the socket closes. */
	async rest(timeoutMs = 10_000): Promise<ServerMessage[]> {
		const out: ServerMessage[] = [];
		for (;;) {
			try {
				out.push(await this.next(timeoutMs));
			} catch {
				return out;
			}
		}
	}

	end(): void {
		this.socket.end(clientMessages.terminate());
	}
}

export function types(ms: ServerMessage[]): string[] {
	return ms.map((m) => m.type);
}
