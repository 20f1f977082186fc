/**
 * The gateway's own connection to the real PostgreSQL server: TLS per the Connection's sslmode
 * (CA-verified for verify-ca/verify-full), StartupMessage, SCRAM-SHA-256 (or none if the server
 * asks; cleartext only over verify-full TLS; MD5 is refused), then ParameterStatus and BackendKeyData up to the first
 * ReadyForQuery. Also: CancelRequest to the upstream.
 */
import { connect as netConnect, type Socket } from "node:net";
import { checkServerIdentity, connect as tlsConnect, type TLSSocket } from "node:tls";
import { PgGatewayError } from "./errors.ts";
import { AuthCode, type TxStatus } from "./protocol.ts";
import { SCRAM_MECHANISM, ScramClient } from "./scram.ts";
import { clientMessages } from "./serializer.ts";
import { decodeErrorFields, decodeServerMessage, ServerParser } from "./server-parser.ts";

export interface UpstreamTarget {
	host: string;
	port: number;
	database: string;
	user: string;
	password: string;
	sslmode: "disable" | "require" | "verify-ca" | "verify-full";
	caPem?: string;
	/** Name checked against the certificate for verify-full (default: host). */
	serverName?: string;
	/** Extra startup parameters (application_name, options, ...). */
	parameters?: Record<string, string>;
	connectTimeoutMs?: number;
	maxMessageBytes?: number;
}

export interface UpstreamConnection {
	socket: Socket | TLSSocket;
	parameters: Map<string, string>;
	processId: number;
	secretKey: Buffer;
	status: TxStatus;
	/** Bytes received after the first ReadyForQuery (normally none). */
	leftover: Buffer;
}

function openSocket(target: UpstreamTarget): Promise<Socket | TLSSocket> {
	const timeoutMs = target.connectTimeoutMs ?? 10_000;
	return new Promise((resolve, reject) => {
		const raw = netConnect({ host: target.host, port: target.port });
		raw.setNoDelay(true);
		const timer = setTimeout(() => {
			raw.destroy();
			reject(new PgGatewayError("upstream_unavailable", `upstream ${target.host}:${target.port} did not answer in ${timeoutMs} ms`));
		}, timeoutMs);
		const fail = (err: Error) => {
			clearTimeout(timer);
			raw.destroy();
			reject(
				err instanceof PgGatewayError
					? err
					: new PgGatewayError("upstream_unavailable", `cannot reach upstream ${target.host}:${target.port}: ${err.message}`),
			);
		};
		raw.once("error", fail);
		raw.once("connect", () => {
			if (target.sslmode === "disable") {
				clearTimeout(timer);
				raw.off("error", fail);
				resolve(raw);
				return;
			}
			raw.write(clientMessages.sslRequest());
			raw.once("data", (b: Buffer) => {
				if (b.length !== 1 || b[0] !== 0x53) {
					fail(new PgGatewayError("upstream_unavailable", `upstream ${target.host}:${target.port} refused TLS (sslmode=${target.sslmode})`));
					return;
				}
				const verify = target.sslmode === "verify-ca" || target.sslmode === "verify-full";
				const servername = target.serverName ?? target.host;
				const tls = tlsConnect({
					socket: raw,
					...(target.caPem ? { ca: target.caPem } : {}),
					rejectUnauthorized: verify,
					// SNI must not be an IP address
					...(/^[\d.]+$|:/.test(servername) ? {} : { servername }),
					checkServerIdentity: (_host, cert) =>
						target.sslmode === "verify-full" ? checkServerIdentity(servername, cert) : undefined,
				});
				tls.once("secureConnect", () => {
					clearTimeout(timer);
					raw.off("error", fail);
					tls.off("error", fail);
					resolve(tls);
				});
				tls.once("error", (e) =>
					fail(new PgGatewayError("upstream_unavailable", `TLS to upstream ${target.host}:${target.port} failed: ${e.message}`)),
				);
			});
		});
	});
}

/** Connect and authenticate; resolves at the first ReadyForQuery. */
export async function connectUpstream(target: UpstreamTarget): Promise<UpstreamConnection> {
	const socket = await openSocket(target);
	try {
		return await handshake(socket, target);
	} catch (e) {
		socket.destroy();
		throw e;
	}
}

function handshake(socket: Socket | TLSSocket, target: UpstreamTarget): Promise<UpstreamConnection> {
	return new Promise((resolve, reject) => {
		const parser = new ServerParser(target.maxMessageBytes);
		const parameters = new Map<string, string>();
		let processId = 0;
		let secretKey: Buffer = Buffer.alloc(0);
		let scram: ScramClient | undefined;
		let busy = Promise.resolve();
		const timer = setTimeout(
			() => finish(new PgGatewayError("upstream_unavailable", "upstream authentication timed out")),
			target.connectTimeoutMs ?? 10_000,
		);
		const finish = (err?: Error, status?: TxStatus) => {
			clearTimeout(timer);
			socket.off("data", onData);
			socket.off("error", onError);
			socket.off("close", onClose);
			if (err) reject(err);
			else {
				socket.pause();
				const leftover = Buffer.from(parser.takeBuffered());
				resolve({ socket, parameters, processId, secretKey, status: status ?? "I", leftover });
			}
		};
		const onError = (e: Error) => finish(new PgGatewayError("upstream_unavailable", `upstream connection failed: ${e.message}`));
		const onClose = () => finish(new PgGatewayError("upstream_unavailable", "upstream closed the connection during startup"));
		const step = async () => {
			for (let f = parser.next(); f; f = parser.next()) {
				const m = decodeServerMessage(f);
				switch (m.type) {
					case "authentication":
						switch (m.auth) {
							case AuthCode.Ok:
								break;
							case AuthCode.CleartextPassword:
								// The password itself goes over the wire: only to a server whose identity TLS has
								// verified. Otherwise whoever answers at the Connection's host (a changed Connection,
								// a spoofed address, a proxy) could ask for the credential in clear and keep it.
								if (target.sslmode !== "verify-full") {
									throw new PgGatewayError(
										"upstream_unavailable",
										`upstream ${target.host}:${target.port} asked for the password in clear text over a connection whose server identity is not verified (sslmode=${target.sslmode}); the gateway sends it only with sslmode verify-full (configure scram-sha-256 on the server, or verify-full on the Connection)`,
									);
								}
								socket.write(clientMessages.password(target.password));
								break;
							case AuthCode.SASL: {
								const mechs = m.data.toString("utf8").split("\0").filter(Boolean);
								if (!mechs.includes(SCRAM_MECHANISM)) {
									throw new PgGatewayError("upstream_unavailable", `upstream offers no ${SCRAM_MECHANISM} (offers ${mechs.join(", ")})`);
								}
								scram = new ScramClient(target.password);
								socket.write(clientMessages.saslInitialResponse(SCRAM_MECHANISM, scram.initial()));
								break;
							}
							case AuthCode.SASLContinue:
								if (!scram) throw new PgGatewayError("upstream_protocol", "SASLContinue before SASL");
								socket.write(clientMessages.saslResponse(await scram.continue(m.data)));
								break;
							case AuthCode.SASLFinal:
								if (!scram) throw new PgGatewayError("upstream_protocol", "SASLFinal before SASL");
								scram.final(m.data);
								break;
							default:
								throw new PgGatewayError(
									"upstream_unavailable",
									`upstream requested unsupported authentication method ${m.auth} (configure scram-sha-256)`,
								);
						}
						break;
					case "parameterStatus":
						parameters.set(m.name, m.value);
						break;
					case "backendKeyData":
						processId = m.processId;
						secretKey = m.secretKey;
						break;
					case "errorResponse": {
						const fields = decodeErrorFields(f);
						throw new PgGatewayError(
							"upstream_unavailable",
							`upstream refused the gateway's connection: ${fields.M ?? "error"} (SQLSTATE ${fields.C ?? "?"})`,
						);
					}
					case "noticeResponse":
					case "negotiateProtocolVersion":
						break;
					case "readyForQuery":
						finish(undefined, m.status);
						return;
					default:
						throw new PgGatewayError("upstream_protocol", `unexpected upstream message ${m.type} during startup`);
				}
			}
		};
		const onData = (chunk: Buffer) => {
			parser.push(chunk);
			busy = busy.then(step).catch((e: Error) => finish(e));
		};
		socket.on("data", onData);
		socket.on("error", onError);
		socket.on("close", onClose);
		const params: Record<string, string> = { ...(target.parameters ?? {}), user: target.user, database: target.database };
		socket.write(clientMessages.startup(params));
	});
}

/** Send a CancelRequest for (processId, secretKey) to the upstream. Best effort, never throws. */
export async function cancelUpstream(target: UpstreamTarget, processId: number, secretKey: Buffer): Promise<void> {
	try {
		const socket = await openSocket({ ...target, connectTimeoutMs: target.connectTimeoutMs ?? 5_000 });
		await new Promise<void>((resolve) => {
			socket.once("close", () => resolve());
			socket.once("error", () => resolve());
			socket.end(clientMessages.cancelRequest(processId, secretKey));
			setTimeout(() => {
				socket.destroy();
				resolve();
			}, 5_000).unref();
		});
	} catch {
		// the client gets no answer to a CancelRequest either way
	}
}


/**
 * The session's own search_path, read on the upstream session before it is relayed: a DBA's
 * `ALTER ROLE|DATABASE ... SET search_path` applies to it, and `"$user"` is its role. The catalog
 * resolves unqualified names with this (it sets its own on its own connection). Masking relied on
 * the default `"$user", public`: with `app, public` set for the role and a view `app.orders` over
 * phones, `SELECT status || '' FROM orders` was analysed as `public.orders` and showed raw phones.
 */
export function readSearchPath(up: UpstreamConnection, timeoutMs = 10_000): Promise<string> {
	return new Promise((resolve, reject) => {
		const parser = new ServerParser();
		let value: string | undefined;
		let error: string | undefined;
		const timer = setTimeout(() => finish(new PgGatewayError("upstream_unavailable", "upstream did not report its search_path")), timeoutMs);
		const finish = (err?: Error) => {
			clearTimeout(timer);
			up.socket.off("data", onData);
			up.socket.off("error", onError);
			up.socket.off("close", onClose);
			up.socket.pause();
			up.leftover = Buffer.from(parser.takeBuffered());
			if (err) reject(err);
			else if (error !== undefined || value === undefined) {
				reject(new PgGatewayError("upstream_unavailable", `cannot read the upstream search_path: ${error ?? "no value"}`));
			} else resolve(value);
		};
		const onData = (chunk: Buffer) => {
			parser.push(chunk);
			for (let f = parser.next(); f; f = parser.next()) {
				const m = decodeServerMessage(f);
				if (m.type === "dataRow") value = m.values[0]?.toString("utf8");
				else if (m.type === "errorResponse") error = decodeErrorFields(f).M ?? "error";
				else if (m.type === "readyForQuery") {
					up.status = m.status;
					return finish();
				}
			}
		};
		const onError = (e: Error) => finish(new PgGatewayError("upstream_unavailable", `upstream connection failed: ${e.message}`));
		const onClose = () => finish(new PgGatewayError("upstream_unavailable", "upstream closed the connection"));
		up.socket.on("data", onData);
		up.socket.on("error", onError);
		up.socket.on("close", onClose);
		if (up.leftover.length > 0) onData(up.leftover);
		up.socket.write(
			clientMessages.query(
				"SELECT pg_catalog.regexp_replace(pg_catalog.current_setting('search_path'), '\"?\\$user\"?', pg_catalog.quote_ident(current_user), 'g')",
			),
		);
		up.socket.resume();
	});
}
