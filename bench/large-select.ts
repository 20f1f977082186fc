/**
 * The large-result client of the PostgreSQL benches: runs one SELECT over TLS with our own wire
 * parser and counts DataRows, keeping nothing, so the measure is the path's throughput and not a
 * client library's row decoding.
 */
import { ServerCode } from "../gateway/postgres/protocol.ts";
import { clientMessages } from "../gateway/postgres/serializer.ts";
import { ServerParser } from "../gateway/postgres/server-parser.ts";
import { connectUpstream, type UpstreamTarget } from "../gateway/postgres/upstream.ts";

/** Rows per second of `sql` through `target`; throws unless exactly `expectRows` rows arrived. */
export async function streamRows(target: UpstreamTarget, sql: string, expectRows: number): Promise<number> {
	const up = await connectUpstream(target);
	const parser = new ServerParser();
	const t0 = performance.now();
	let rows = 0;
	await new Promise<void>((resolve, reject) => {
		up.socket.on("data", (c: Buffer) => {
			parser.push(c);
			for (let f = parser.next(); f; f = parser.next()) {
				if (f.code === ServerCode.DataRow) rows++;
				else if (f.code === ServerCode.ErrorResponse) reject(new Error(f.raw.toString("utf8", 5)));
				else if (f.code === ServerCode.ReadyForQuery) resolve();
			}
		});
		up.socket.resume();
		up.socket.write(clientMessages.query(sql));
	});
	const s = (performance.now() - t0) / 1000;
	up.socket.end(clientMessages.terminate());
	if (rows !== expectRows) throw new Error(`expected ${expectRows} rows, got ${rows}`);
	return rows / s;
}
