/**
 * A tiny query client over one upstream connection, for the gateway's own catalog look-ups (never
 * on a client's session). Extended protocol with text parameters, queries serialised.
 */
import { PgGatewayError } from "./errors.ts";
import { ServerCode } from "./protocol.ts";
import { clientMessages } from "./serializer.ts";
import { decodeDataRow, decodeErrorFields, ServerParser } from "./server-parser.ts";
import { connectUpstream, type UpstreamConnection, type UpstreamTarget } from "./upstream.ts";

export class SideConnection {
	private chain: Promise<unknown> = Promise.resolve();
	private closed = false;

	private constructor(private readonly up: UpstreamConnection) {
		up.socket.on("error", () => {
			this.closed = true;
		});
		up.socket.on("close", () => {
			this.closed = true;
		});
	}

	static async open(target: UpstreamTarget): Promise<SideConnection> {
		return new SideConnection(await connectUpstream(target));
	}

	get usable(): boolean {
		return !this.closed;
	}

	/** Rows as arrays of text values. */
	query(sql: string, params: (string | null)[] = []): Promise<(string | null)[][]> {
		const run = this.chain.then(() => this.run(sql, params));
		this.chain = run.catch(() => undefined);
		return run;
	}

	private run(sql: string, params: (string | null)[]): Promise<(string | null)[][]> {
		if (this.closed) return Promise.reject(new PgGatewayError("upstream_unavailable", "catalog connection closed"));
		const socket = this.up.socket;
		return new Promise((resolve, reject) => {
			const parser = new ServerParser();
			const rows: (string | null)[][] = [];
			let error: Error | undefined;
			const done = (err?: Error) => {
				socket.off("data", onData);
				socket.off("close", onClose);
				socket.pause();
				if (err) reject(err);
				else resolve(rows);
			};
			const onClose = () => done(new PgGatewayError("upstream_unavailable", "catalog connection closed"));
			const onData = (chunk: Buffer) => {
				parser.push(chunk);
				try {
					for (let f = parser.next(); f; f = parser.next()) {
						if (f.code === ServerCode.DataRow) {
							rows.push(decodeDataRow(f).map((v) => (v === null ? null : v.toString("utf8"))));
						} else if (f.code === ServerCode.ErrorResponse) {
							const e = decodeErrorFields(f);
							error = new PgGatewayError("upstream_protocol", `catalog query failed: ${e.M} (${e.C})`);
						} else if (f.code === ServerCode.ReadyForQuery) {
							done(error);
							return;
						}
					}
				} catch (e) {
					done(e as Error);
				}
			};
			socket.on("data", onData);
			socket.on("close", onClose);
			socket.resume();
			socket.write(
				Buffer.concat([
					clientMessages.parse("", sql),
					clientMessages.bind(
						"",
						"",
						params.map((p) => (p === null ? null : Buffer.from(p))),
					),
					clientMessages.execute(""),
					clientMessages.sync(),
				]),
			);
		});
	}

	close(): void {
		this.closed = true;
		this.up.socket.end(clientMessages.terminate());
	}
}
