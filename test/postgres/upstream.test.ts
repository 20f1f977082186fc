import assert from "node:assert/strict";
import { after, before, test } from "node:test";
import { isPgGatewayError } from "../../gateway/postgres/errors.ts";
import { clientMessages } from "../../gateway/postgres/serializer.ts";
import { decodeServerMessage, ServerParser } from "../../gateway/postgres/server-parser.ts";
import { connectUpstream, type UpstreamTarget } from "../../gateway/postgres/upstream.ts";
import { type PostgresHandle, startPostgres } from "../env/index.ts";

let pg: PostgresHandle;
before(async () => {
	// pwuser authenticates with the "password" method (cleartext), over TLS or plain TCP.
	pg = await startPostgres({ hba: ["hostssl all pwuser 127.0.0.1/32 password", "hostnossl all pwuser 127.0.0.1/32 password"] });
	await pg.query("create role pwuser login password 'pw-secret'");
});
after(async () => {
	await pg?.stop();
});

function target(over: Partial<UpstreamTarget> = {}): UpstreamTarget {
	return {
		host: pg.host,
		port: pg.port,
		database: pg.database,
		user: pg.superuser,
		password: pg.password,
		sslmode: "verify-full",
		caPem: pg.caPem,
		serverName: "localhost",
		...over,
	};
}

test("SCRAM-SHA-256 over verified TLS, ParameterStatus and BackendKeyData collected", async () => {
	const up = await connectUpstream(target({ parameters: { application_name: "gw-test" } }));
	assert.equal(up.parameters.get("application_name"), "gw-test");
	assert.ok(up.parameters.get("server_version"));
	assert.ok(up.processId > 0);
	assert.equal(up.status, "I");
	const parser = new ServerParser();
	up.socket.resume();
	const got: string[] = [];
	await new Promise<void>((resolve) => {
		up.socket.on("data", (c: Buffer) => {
			parser.push(c);
			for (let f = parser.next(); f; f = parser.next()) {
				const m = decodeServerMessage(f);
				got.push(m.type);
				if (m.type === "readyForQuery") resolve();
			}
		});
		up.socket.write(clientMessages.query("select count(*) from customers"));
	});
	assert.deepEqual(got, ["rowDescription", "dataRow", "commandComplete", "readyForQuery"]);
	up.socket.end(clientMessages.terminate());
});

test("wrong password, wrong CA name and plaintext are clean errors", async () => {
	await assert.rejects(connectUpstream(target({ password: "nope" })), (e: unknown) => isPgGatewayError(e) && /28P01/.test(e.message));
	await assert.rejects(
		connectUpstream(target({ serverName: "evil.example" })),
		(e: unknown) => isPgGatewayError(e) && e.code === "upstream_unavailable",
	);
	await assert.rejects(connectUpstream(target({ caPem: undefined })), (e: unknown) => isPgGatewayError(e) && /TLS/.test(e.message));
	await assert.rejects(connectUpstream(target({ sslmode: "disable" })), (e: unknown) => isPgGatewayError(e) && /refused/.test(e.message));
});

test("a cleartext password request is answered only over verify-full TLS", async () => {
	const pw = { user: "pwuser", password: "pw-secret" };
	const up = await connectUpstream(target(pw));
	assert.equal(up.status, "I", "verify-full: the server's identity is verified, the password may go");
	up.socket.end(clientMessages.terminate());
	for (const sslmode of ["disable", "require", "verify-ca"] as const) {
		await assert.rejects(
			connectUpstream(target({ ...pw, sslmode })),
			(e: unknown) => isPgGatewayError(e) && e.code === "upstream_unavailable" && /clear text/.test(e.message) && e.message.includes(`sslmode=${sslmode}`),
			`sslmode=${sslmode}: the password is not sent`,
		);
	}
});
